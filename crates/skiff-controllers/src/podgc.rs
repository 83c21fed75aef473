//! Pod garbage collection, as kube-controller-manager's PodGC does it every 20 s:
//! - terminated pods (Succeeded, Failed) beyond `--terminated-pod-gc-threshold`, evicted
//!   ones first, then the oldest;
//! - pods bound to a node that no longer exists (seen missing for a quarantine period and
//!   confirmed missing by a read), marked Failed with a `DisruptionTarget` condition;
//! - terminating pods that were never scheduled (no kubelet will ever finish them);
//! - terminating pods on a node that is not ready and carries the
//!   `node.kubernetes.io/out-of-service` taint.
//!
//! Each is force-deleted (grace period 0): nothing is left to stop their containers.

use crate::owner;
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Pods collected at once.
const PARALLEL: usize = 16;

/// The controller's knobs (Kubernetes' defaults in [`Default`]).
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Terminated pods kept before the oldest are deleted; 0 keeps them all.
    pub terminated_threshold: usize,
    /// How often the pods are looked over.
    pub period: Duration,
    /// How long a node must be missing before its pods count as orphaned (a node
    /// informer may lag behind a pod bound to a node just created).
    pub quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            terminated_threshold: 12500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Terminated,
    OutOfService,
    Orphaned,
    UnscheduledTerminating,
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn is_terminal(p: &Value) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn terminating(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn out_of_service(node: &Value) -> bool {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["key"] == OUT_OF_SERVICE && t["effect"] == "NoExecute")
}

/// The pods to collect and why, each once. `nodes`: the nodes known now; `deleted`:
/// nodes confirmed gone.
pub fn plan<'a>(
    pods: &[&'a Value],
    nodes: &HashMap<&str, &Value>,
    deleted: &HashSet<String>,
    threshold: usize,
) -> Vec<(&'a Value, Why)> {
    let mut out: Vec<(&Value, Why)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut take = |out: &mut Vec<(&'a Value, Why)>, p: &'a Value, why: Why| {
        if seen.insert(p["metadata"]["uid"].as_str().unwrap_or("")) {
            out.push((p, why));
        }
    };
    if threshold > 0 {
        let mut done: Vec<&Value> = pods.iter().copied().filter(|p| is_terminal(p)).collect();
        if done.len() > threshold {
            let evicted = |p: &Value| p["status"]["reason"] == "Evicted";
            let created = |p: &Value| {
                p["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            };
            done.sort_by(|a, b| {
                evicted(b)
                    .cmp(&evicted(a))
                    .then_with(|| created(a).cmp(&created(b)))
            });
            let surplus = done.len() - threshold;
            for p in done.into_iter().take(surplus) {
                take(&mut out, p, Why::Terminated);
            }
        }
    }
    for p in pods.iter().copied() {
        let node = node_of(p);
        if terminating(p)
            && nodes
                .get(node)
                .copied()
                .is_some_and(|n| !ready(n) && out_of_service(n))
        {
            take(&mut out, p, Why::OutOfService);
        } else if !node.is_empty() && deleted.contains(node) {
            take(&mut out, p, Why::Orphaned);
        } else if node.is_empty() && terminating(p) {
            take(&mut out, p, Why::UnscheduledTerminating);
        }
    }
    out
}

/// The status patch that marks a pod Failed before it is force-deleted (none for a pod
/// already terminal), with `DisruptionTarget` for orphans as Kubernetes sets it.
pub fn failed_status(p: &Value, why: Why, now: &str) -> Option<Value> {
    if is_terminal(p) {
        return None;
    }
    let mut status = json!({"phase": "Failed"});
    if why == Why::Orphaned {
        status["conditions"] = json!([{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": now,
        }]);
    }
    Some(json!({"status": status}))
}

/// Tracks nodes that pods name but the node view lacks, until they have been missing for
/// the quarantine period.
#[derive(Default)]
pub struct Quarantine {
    missing_since: HashMap<String, Instant>,
}

impl Quarantine {
    /// Records this round's missing nodes; returns those missing for `period` or more.
    pub fn observe(
        &mut self,
        missing: HashSet<String>,
        now: Instant,
        period: Duration,
    ) -> Vec<String> {
        self.missing_since.retain(|n, _| missing.contains(n));
        for n in missing {
            self.missing_since.entry(n).or_insert(now);
        }
        self.missing_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= period)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Whether the API confirms `node` is gone (a read, not the possibly stale view).
async fn node_gone(client: &kube::Client, node: &str) -> bool {
    let req = http::Request::get(format!("/api/v1/nodes/{node}"))
        .body(Vec::new())
        .expect("valid request");
    matches!(client.request::<Value>(req).await, Err(kube::Error::Api(s)) if s.code == 404)
}

async fn collect(client: &kube::Client, p: &Value, why: Why) {
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
    let name = p["metadata"]["name"].as_str().unwrap_or("");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(patch) = failed_status(p, why, &now) {
        // Strategic merge: the condition joins the pod's others (merged by type).
        let path = format!("{}/status", owner::object_path("v1", "pods", p));
        match owner::send(
            client,
            http::Method::PATCH,
            path,
            "application/strategic-merge-patch+json",
            &patch,
        )
        .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not mark pod failed; next round retries");
                return;
            }
        }
    }
    tracing::info!(pod = %format!("{ns}/{name}"), reason = ?why, "PodGC is force deleting pod");
    if let Some(Err(e)) = owner::delete_pods_with(client, std::slice::from_ref(p), Some(0))
        .await
        .pop()
    {
        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "force deletion failed; next round retries");
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pods_rx = informers.watch("/api/v1/pods");
    let mut nodes_rx = informers.watch("/api/v1/nodes");
    let mut pods: HashMap<String, Arc<Value>> = HashMap::new();
    let mut nodes: HashMap<String, Arc<Value>> = HashMap::new();
    let (mut pods_synced, mut nodes_synced) = (false, false);
    let mut quarantine = Quarantine::default();
    let mut tick = tokio::time::interval(config.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            c = pods_rx.recv() => {
                let Some(c) = c else { return };
                pods_synced |= matches!(c, Change::Reset(_));
                reflect::apply_to(&mut pods, c);
                continue;
            }
            c = nodes_rx.recv() => {
                let Some(c) = c else { return };
                nodes_synced |= matches!(c, Change::Reset(_));
                reflect::apply_to(&mut nodes, c);
                continue;
            }
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !(pods_synced && nodes_synced) {
            continue;
        }
        let by_name: HashMap<&str, &Value> = nodes
            .values()
            .map(|n| (n["metadata"]["name"].as_str().unwrap_or(""), &**n))
            .collect();
        let missing: HashSet<String> = pods
            .values()
            .map(|p| node_of(p))
            .filter(|n| !n.is_empty() && !by_name.contains_key(*n))
            .map(str::to_string)
            .collect();
        let mut deleted = HashSet::new();
        for n in quarantine.observe(missing, Instant::now(), config.quarantine) {
            if node_gone(&client, &n).await {
                deleted.insert(n);
            }
        }
        let all: Vec<&Value> = pods.values().map(|v| &**v).collect();
        // A few at a time, as Kubernetes' PodGC runs its deletions in parallel.
        let doomed = plan(&all, &by_name, &deleted, config.terminated_threshold);
        futures::stream::iter(doomed)
            .for_each_concurrent(PARALLEL, |(p, why)| collect(&client, p, why))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, created: &str) -> Value {
        json!({"metadata": {"name": name, "uid": name, "namespace": "default", "creationTimestamp": created},
               "spec": {"nodeName": node}, "status": {"phase": phase}})
    }

    fn names(plan: &[(&Value, Why)]) -> Vec<(String, Why)> {
        plan.iter()
            .map(|(p, w)| (p["metadata"]["name"].as_str().unwrap().to_string(), *w))
            .collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_then_oldest_first() {
        let mut evicted = pod("evicted", "n", "Failed", "2026-01-03T00:00:00Z");
        evicted["status"]["reason"] = json!("Evicted");
        let pods = [
            pod("old", "n", "Succeeded", "2026-01-01T00:00:00Z"),
            pod("mid", "n", "Failed", "2026-01-02T00:00:00Z"),
            evicted,
            pod("new", "n", "Succeeded", "2026-01-04T00:00:00Z"),
            pod("running", "n", "Running", "2025-01-01T00:00:00Z"),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let n = json!({});
        let nodes = HashMap::from([("n", &n)]);
        let p = plan(&refs, &nodes, &HashSet::new(), 2);
        assert_eq!(
            names(&p),
            [
                ("evicted".into(), Why::Terminated),
                ("old".into(), Why::Terminated)
            ]
        );
        assert!(plan(&refs, &nodes, &HashSet::new(), 4).is_empty());
        // 0 turns the threshold off.
        assert!(plan(&refs, &nodes, &HashSet::new(), 0).is_empty());
    }

    #[test]
    fn orphans_unscheduled_and_out_of_service() {
        let mut unscheduled = pod("unscheduled", "", "Pending", "2026-01-01T00:00:00Z");
        unscheduled["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut stuck = pod("stuck", "down", "Running", "2026-01-01T00:00:00Z");
        stuck["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let pods = [
            pod("orphan", "gone", "Running", "2026-01-01T00:00:00Z"),
            pod("pending", "", "Pending", "2026-01-01T00:00:00Z"),
            unscheduled,
            stuck,
            pod("fine", "down", "Running", "2026-01-01T00:00:00Z"),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let down = json!({"spec": {"taints": [{"key": OUT_OF_SERVICE, "effect": "NoExecute"}]},
                          "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let nodes = HashMap::from([("down", &down)]);
        let deleted = HashSet::from(["gone".to_string()]);
        assert_eq!(
            names(&plan(&refs, &nodes, &deleted, 0)),
            [
                ("orphan".into(), Why::Orphaned),
                ("unscheduled".into(), Why::UnscheduledTerminating),
                ("stuck".into(), Why::OutOfService),
            ]
        );
        // A ready node keeps its terminating pods for its kubelet to finish.
        let mut up = down.clone();
        up["status"]["conditions"][0]["status"] = json!("True");
        let nodes = HashMap::from([("down", &up)]);
        assert_eq!(plan(&refs, &nodes, &HashSet::new(), 0).len(), 1);
    }

    #[test]
    fn orphans_are_failed_with_a_disruption_condition() {
        let p = pod("a", "gone", "Running", "2026-01-01T00:00:00Z");
        let s = failed_status(&p, Why::Orphaned, "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(s["status"]["phase"], "Failed");
        assert_eq!(s["status"]["conditions"][0]["reason"], "DeletionByPodGC");
        assert!(
            failed_status(&p, Why::UnscheduledTerminating, "t").unwrap()["status"]["conditions"]
                .is_null()
        );
        let done = pod("b", "gone", "Succeeded", "2026-01-01T00:00:00Z");
        assert!(failed_status(&done, Why::Orphaned, "t").is_none());
    }

    #[test]
    fn quarantine_waits_for_a_node_to_stay_missing() {
        let mut q = Quarantine::default();
        let t0 = Instant::now();
        let p = Duration::from_secs(40);
        let gone = || HashSet::from(["gone".to_string()]);
        assert!(q.observe(gone(), t0, p).is_empty());
        assert!(
            q.observe(gone(), t0 + Duration::from_secs(20), p)
                .is_empty()
        );
        assert_eq!(q.observe(gone(), t0 + p, p), ["gone".to_string()]);
        // Seen again: the clock starts over.
        assert!(q.observe(HashSet::new(), t0 + p, p).is_empty());
        assert!(q.observe(gone(), t0 + p + p / 2, p).is_empty());
    }
}
