//! The scheduler loop. Reflectors on pods and nodes keep a [`Snapshot`] up to date change
//! by change; pods without a node wait in a priority queue and are placed one at a time
//! by `skiff_scheduler::schedule_info`, assumed on their node at once, and bound through
//! the `pods/binding` subresource concurrently while the next pods are decided. A pod
//! that fits nowhere gets `PodScheduled=False` (`Unschedulable`) and a `FailedScheduling`
//! event, and waits until a change that could help (a node added or changed, a pod
//! deleted or finished) or at most five minutes, with per-pod back-off, as Kubernetes'
//! scheduling queue does.

use crate::Result;
use serde_json::{Value, json};
use skiff_kube::events;
use skiff_kube::reflect::{self, Change};
use skiff_scheduler::volumes::Prebind;
use skiff_scheduler::{NodeInfo, PodInfo, Snapshot, schedule_info};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Bindings (and status writes) in flight at once.
const BIND_CONCURRENCY: usize = 32;
/// Pods decided before looking at new events again.
const BATCH: usize = 256;
/// Kubernetes' podInitialBackoffDuration and podMaxBackoffDuration.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Kubernetes' podMaxInUnschedulablePodsDuration: retried even if nothing changed.
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(300);

/// Whether this scheduler should place the pod.
fn wants(p: &Value) -> bool {
    p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        && p["spec"]["schedulerName"]
            .as_str()
            .unwrap_or(SCHEDULER_NAME)
            == SCHEDULER_NAME
        && p["metadata"]["deletionTimestamp"].is_null()
        && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn is_bound(p: &Value) -> bool {
    p["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
}

fn has_pod_affinity(p: &Value) -> bool {
    !p["spec"]["affinity"]["podAffinity"].is_null()
        || p["spec"]["topologySpreadConstraints"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
}

#[derive(Debug)]
struct Entry {
    /// Shared with decisions in flight, so deciding never copies a pod.
    pod: Arc<Value>,
    seq: u64,
    attempts: u32,
    /// Set while the pod waits as unschedulable: when it last failed.
    failed_at: Option<Instant>,
    /// Not to be tried before this (back-off after a failure).
    not_before: Option<Instant>,
}

impl Entry {
    fn backoff(&self) -> Duration {
        let shift = self.attempts.saturating_sub(1).min(16);
        (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
    }
}

/// Ordering of the active queue: higher priority first, then first come first served.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    priority: i64,
    seq: std::cmp::Reverse<u64>,
    key: String,
}

/// The scheduler's view and queues; pure, so the queueing rules are unit-tested.
#[derive(Debug, Default)]
pub struct State {
    snap: Snapshot,
    pending: HashMap<String, Entry>,
    active: BinaryHeap<Ready>,
    /// Pending pods decided and bound (or being bound) but not yet seen bound.
    assumed: HashSet<String>,
    /// Pending pods that fit nowhere, waiting for a change (or the flush).
    unschedulable: HashSet<String>,
    /// Back-off expiries: (when, key); stale entries are skipped.
    backoff: BinaryHeap<std::cmp::Reverse<(Instant, String)>>,
    last_flush_check: Option<Instant>,
    seq: u64,
    pods_synced: bool,
    nodes_synced: bool,
    /// Where the next node search starts (rotated as Kubernetes does).
    start: usize,
}

/// What the loop should do with a pod it took from the queue.
#[derive(Debug)]
pub enum Decision {
    Bind {
        pod: Arc<Value>,
        node: String,
        /// What the pod's waiting claims need before the pod is bound.
        prebind: Vec<Prebind>,
    },
    Unschedulable {
        pod: Arc<Value>,
        message: String,
        preemption: Option<skiff_scheduler::Preemption>,
    },
}

impl State {
    pub fn synced(&self) -> bool {
        self.pods_synced && self.nodes_synced
    }

    fn push_active(&mut self, key: &str) {
        if let Some(e) = self.pending.get(key) {
            self.active.push(Ready {
                priority: e.pod["spec"]["priority"].as_i64().unwrap_or(0),
                seq: std::cmp::Reverse(e.seq),
                key: key.to_string(),
            });
        }
    }

    /// Moves waiting unschedulable pods (those `which` selects) back to the queue; their
    /// back-off still applies.
    fn requeue_unschedulable(&mut self, which: impl Fn(&Value) -> bool) {
        if self.unschedulable.is_empty() {
            return;
        }
        let keys: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| self.pending.get(*k).is_some_and(|e| which(&e.pod)))
            .cloned()
            .collect();
        for k in keys {
            self.unschedulable.remove(&k);
            self.activate_after_backoff(&k);
        }
    }

    /// Queues a pod now, or when its back-off runs out.
    fn activate_after_backoff(&mut self, key: &str) {
        let Some(e) = self.pending.get_mut(key) else {
            return;
        };
        e.failed_at = None;
        match e.not_before {
            Some(t) if t > Instant::now() => {
                self.backoff.push(std::cmp::Reverse((t, key.to_string())));
            }
            _ => {
                e.not_before = None;
                self.push_active(key);
            }
        }
    }

    pub fn on_pod(&mut self, c: Change) {
        match c {
            Change::Reset(items) => {
                self.pods_synced = true;
                let live: HashSet<String> = items.iter().map(reflect::key).collect();
                let stale: Vec<String> = self
                    .pending
                    .keys()
                    .chain(self.snap.placed_keys())
                    .filter(|k| !live.contains(*k))
                    .cloned()
                    .collect();
                for k in stale {
                    self.forget(&k);
                }
                for p in items {
                    self.apply_pod(p);
                }
                self.requeue_unschedulable(|_| true);
            }
            Change::Apply(p) => self.apply_pod(p),
            Change::Delete(p) => {
                let k = reflect::key(&p);
                let freed = self.snap.is_placed_key(&k);
                self.forget(&k);
                if freed {
                    self.requeue_unschedulable(|_| true);
                }
            }
        }
    }

    fn forget(&mut self, key: &str) {
        self.pending.remove(key);
        self.assumed.remove(key);
        self.unschedulable.remove(key);
        if let Some((ns, name)) = key.split_once('/') {
            self.snap.unplace(ns, name);
        }
    }

    fn apply_pod(&mut self, p: Arc<Value>) {
        let k = reflect::key(&p);
        if is_bound(&p) {
            let was_placed = self.snap.is_placed_key(&k) && !self.assumed.contains(&k);
            self.pending.remove(&k);
            self.assumed.remove(&k);
            self.unschedulable.remove(&k);
            let finished = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            self.snap.set_pod(&p);
            if finished && was_placed {
                // Its resources are free now.
                self.requeue_unschedulable(|_| true);
            } else if !was_placed && !finished {
                self.requeue_unschedulable(has_pod_affinity);
            }
            return;
        }
        if !wants(&p) {
            self.forget(&k);
            return;
        }
        if self.assumed.contains(&k) {
            // An older version of a pod we already placed; its bound version follows.
            return;
        }
        match self.pending.get_mut(&k) {
            Some(e) => {
                let spec_changed = e.pod["metadata"]["generation"] != p["metadata"]["generation"]
                    || e.pod["metadata"]["labels"] != p["metadata"]["labels"];
                e.pod = p;
                if spec_changed && self.unschedulable.remove(&k) {
                    self.activate_after_backoff(&k);
                }
            }
            None => {
                self.seq += 1;
                self.pending.insert(
                    k.clone(),
                    Entry {
                        pod: p,
                        seq: self.seq,
                        attempts: 0,
                        failed_at: None,
                        not_before: None,
                    },
                );
                self.push_active(&k);
            }
        }
    }

    pub fn on_node(&mut self, c: Change) {
        match c {
            Change::Reset(items) => {
                self.nodes_synced = true;
                let live: HashSet<String> = items.iter().map(reflect::key).collect();
                let stale: Vec<String> = self
                    .snap
                    .nodes
                    .iter()
                    .map(|n| n.name.clone())
                    .filter(|n| !live.contains(n))
                    .collect();
                for n in stale {
                    self.snap.remove_node(&n);
                }
                for n in &items {
                    self.snap.set_node(n);
                }
                self.requeue_unschedulable(|_| true);
            }
            Change::Apply(n) => {
                let fresh = NodeInfo::from_json(&n);
                let changed = self.snap.node(&fresh.name).is_none_or(|cur| {
                    cur.labels != fresh.labels
                        || cur.taints != fresh.taints
                        || cur.unschedulable != fresh.unschedulable
                        || cur.allocatable != fresh.allocatable
                });
                if changed {
                    self.snap.set_node(&n);
                    self.requeue_unschedulable(|_| true);
                }
            }
            Change::Delete(n) => self.snap.remove_node(&reflect::key(&n)),
        }
    }

    /// A change of claims, volumes or classes: pods with claims may fit now.
    pub fn on_storage(&mut self, what: Storage, c: Change) {
        let v = &mut self.snap.volumes;
        match what {
            Storage::Claims => {
                reflect::absorb(c, &mut v.claims, |_, t| Arc::new(t));
            }
            Storage::Volumes => {
                reflect::absorb(c, &mut v.volumes, |_, t| Arc::new(t));
                // A promise is kept (or broken) once the volume's new state is seen.
                let volumes = &v.volumes;
                v.assumed.retain(|name, _| {
                    volumes
                        .get(name)
                        .is_some_and(|pv| skiff_scheduler::volumes::claim_ref(pv).is_none())
                });
            }
            Storage::Classes => {
                reflect::absorb(c, &mut v.classes, |_, t| Arc::new(t));
            }
        }
        self.requeue_unschedulable(|p| {
            p["spec"]["volumes"].as_array().is_some_and(|v| {
                v.iter()
                    .any(|v| v["persistentVolumeClaim"].is_object() || v["ephemeral"].is_object())
            })
        });
    }

    /// Moves pods whose back-off ran out, and pods unschedulable for too long, to the
    /// active queue; returns when this should be called again at the latest.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        while let Some(std::cmp::Reverse((t, _))) = self.backoff.peek() {
            if *t > now {
                break;
            }
            let std::cmp::Reverse((t, k)) = self.backoff.pop().expect("peeked");
            if let Some(e) = self.pending.get_mut(&k)
                && e.not_before == Some(t)
                && !self.unschedulable.contains(&k)
            {
                e.not_before = None;
                self.push_active(&k);
            }
        }
        let check_flush = self
            .last_flush_check
            .is_none_or(|l| now.saturating_duration_since(l) >= Duration::from_secs(1));
        if check_flush && !self.unschedulable.is_empty() {
            self.last_flush_check = Some(now);
            let stale: Vec<String> = self
                .unschedulable
                .iter()
                .filter(|k| {
                    self.pending
                        .get(*k)
                        .and_then(|e| e.failed_at)
                        .is_none_or(|f| f + UNSCHEDULABLE_FLUSH <= now)
                })
                .cloned()
                .collect();
            for k in stale {
                self.unschedulable.remove(&k);
                if let Some(e) = self.pending.get_mut(&k) {
                    e.failed_at = None;
                    e.not_before = None;
                }
                self.push_active(&k);
            }
        }
        let next_backoff = self.backoff.peek().map(|std::cmp::Reverse((t, _))| *t);
        let next_flush = (!self.unschedulable.is_empty()).then(|| now + Duration::from_secs(1));
        match (next_backoff, next_flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the next pod from the queue and decides where it goes. A pod placed is
    /// assumed on its node at once.
    pub fn next_decision(&mut self) -> Option<Decision> {
        while let Some(r) = self.active.pop() {
            let Some(e) = self.pending.get(&r.key) else {
                continue;
            };
            // Stale queue entries: the pod waits (failed since) or was queued twice.
            if self.unschedulable.contains(&r.key)
                || e.not_before.is_some()
                || e.seq != r.seq.0
                || self.assumed.contains(&r.key)
            {
                continue;
            }
            let pod = e.pod.clone();
            let info = PodInfo::from_json(&pod);
            let total = self.snap.nodes.len().max(1);
            match schedule_info(&info, &self.snap, self.start % total) {
                Ok((node, examined)) => {
                    self.start = (self.start + examined) % total;
                    let prebind = match self.snap.node(&node) {
                        Some(n) if !info.claims.is_empty() => {
                            let n = n.clone();
                            self.snap.volumes.assume(&info.namespace, &info.claims, &n)
                        }
                        _ => Vec::new(),
                    };
                    self.snap.assume(&node, &info);
                    self.assumed.insert(r.key.clone());
                    return Some(Decision::Bind { pod, node, prebind });
                }
                Err(fit) => {
                    let preemption = skiff_scheduler::preempt(&pod, &self.snap);
                    let e = self.pending.get_mut(&r.key).expect("checked above");
                    e.attempts += 1;
                    let now = Instant::now();
                    e.failed_at = Some(now);
                    e.not_before = Some(now + e.backoff());
                    // Victims of a preemption are on their way out; their deletion
                    // requeues the pod like any other change that could help.
                    self.unschedulable.insert(r.key.clone());
                    return Some(Decision::Unschedulable {
                        pod,
                        message: fit.to_string(),
                        preemption,
                    });
                }
            }
        }
        None
    }

    /// A binding failed: forget the assumption and try the pod again after back-off.
    pub fn bind_failed(&mut self, key: &str, gone: bool) {
        self.assumed.remove(key);
        if let Some((ns, name)) = key.split_once('/') {
            self.snap.unplace(ns, name);
        }
        if gone {
            self.pending.remove(key);
            return;
        }
        if let Some(e) = self.pending.get_mut(key) {
            e.attempts += 1;
            let t = Instant::now() + e.backoff();
            e.not_before = Some(t);
            self.backoff.push(std::cmp::Reverse((t, key.to_string())));
        }
    }

    pub fn queued(&self) -> usize {
        self.active.len()
    }
}

/// The storage kinds the VolumeBinding plugin reads.
#[derive(Debug, Clone, Copy)]
pub enum Storage {
    Claims,
    Volumes,
    Classes,
}

/// Runs until `shutdown` turns true.
pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let mut pods_rx = reflect::watch_values(client.clone(), "/api/v1/pods", None);
    let mut nodes_rx = reflect::watch_values(client.clone(), "/api/v1/nodes", None);
    let mut storage_rx = storage_changes(&client);
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<(String, bool)>();
    let permits = Arc::new(Semaphore::new(BIND_CONCURRENCY));
    let recorder = events::Recorder::new(client.clone(), SCHEDULER_NAME);
    let mut state = State::default();
    let mut wake: Option<Instant> = None;
    loop {
        let sleep_for = wake
            .map(|w| w.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            Some(c) = pods_rx.recv() => state.on_pod(c),
            Some(c) = nodes_rx.recv() => state.on_node(c),
            Some((what, c)) = storage_rx.recv() => state.on_storage(what, c),
            Some((k, gone)) = failed_rx.recv() => state.bind_failed(&k, gone),
            _ = tokio::time::sleep(sleep_for) => {}
            _ = shutdown.changed() => return,
        }
        // Take in everything that arrived meanwhile before deciding anything.
        loop {
            let mut any = false;
            while let Ok(c) = nodes_rx.try_recv() {
                state.on_node(c);
                any = true;
            }
            while let Ok(c) = pods_rx.try_recv() {
                state.on_pod(c);
                any = true;
            }
            while let Ok((what, c)) = storage_rx.try_recv() {
                state.on_storage(what, c);
                any = true;
            }
            while let Ok((k, gone)) = failed_rx.try_recv() {
                state.bind_failed(&k, gone);
                any = true;
            }
            if !any {
                break;
            }
        }
        wake = state.tick(Instant::now());
        if !state.synced() {
            continue;
        }
        for _ in 0..BATCH {
            let Some(d) = state.next_decision() else {
                break;
            };
            // A pod waiting for its volumes may wait minutes: it takes no seat, so it
            // never holds up the binding of others (upstream's binding cycles are
            // unbounded goroutines).
            let waits = matches!(&d, Decision::Bind { prebind, .. } if !prebind.is_empty());
            let permit = if waits {
                None
            } else {
                let Ok(p) = permits.clone().acquire_owned().await else {
                    return;
                };
                Some(p)
            };
            let client = client.clone();
            let failed_tx = failed_tx.clone();
            let recorder = recorder.clone();
            tokio::spawn(async move {
                match d {
                    Decision::Bind { pod, node, prebind } => {
                        let ready =
                            crate::volumebind::prebind(&client, &pod, &node, &prebind).await;
                        let bound = match ready {
                            Ok(()) => bind_and_record(&client, &recorder, &pod, &node).await,
                            Err(msg) => {
                                record_unschedulable(&client, &recorder, &pod, &msg).await;
                                Err(false)
                            }
                        };
                        if let Err(gone) = bound {
                            let _ = failed_tx.send((reflect::key(&pod), gone));
                        }
                    }
                    Decision::Unschedulable {
                        pod,
                        message,
                        preemption,
                    } => {
                        if let Some(plan) = preemption {
                            preempt(&client, &pod, &plan).await;
                        }
                        record_unschedulable(&client, &recorder, &pod, &message).await;
                    }
                }
                drop(permit);
            });
        }
        if state.queued() > 0 {
            // More to decide: come straight back after looking at new events.
            wake = Some(Instant::now());
        }
    }
}

/// One channel of claim, volume and class changes, so the loop waits on one more branch.
fn storage_changes(client: &kube::Client) -> mpsc::UnboundedReceiver<(Storage, Change)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (what, path) in [
        (Storage::Claims, "/api/v1/persistentvolumeclaims"),
        (Storage::Volumes, "/api/v1/persistentvolumes"),
        (Storage::Classes, "/apis/storage.k8s.io/v1/storageclasses"),
    ] {
        let mut rx = reflect::watch_values(client.clone(), path, None);
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                if tx.send((what, c)).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// Binds; on failure says whether the pod is gone (no retry).
async fn bind_and_record(
    client: &kube::Client,
    recorder: &events::Recorder,
    pod: &Value,
    node: &str,
) -> std::result::Result<(), bool> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    if let Err(e) = bind(client, ns, name, node).await {
        tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "bind failed");
        let gone = matches!(&e, crate::Error::Api(kube::Error::Api(s)) if s.code == 404);
        return Err(gone);
    }
    recorder.record(
        pod,
        "Normal",
        "Scheduled",
        format!("Successfully assigned {ns}/{name} to {node}"),
    );
    Ok(())
}

async fn record_unschedulable(
    client: &kube::Client,
    recorder: &events::Recorder,
    pod: &Value,
    msg: &str,
) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let current = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
        .and_then(|c| c["message"].as_str());
    if current == Some(msg) {
        return;
    }
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
        "lastProbeTime": null, "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }]}});
    let req = http::Request::patch(format!("/api/v1/namespaces/{ns}/pods/{name}/status"))
        .header("Content-Type", "application/strategic-merge-patch+json")
        .body(patch.to_string().into_bytes())
        .expect("valid request");
    if let Err(e) = client.request_text(req).await {
        tracing::debug!(error = %e, "condition not recorded");
    }
    recorder.record(pod, "Warning", "FailedScheduling", msg.to_string());
}

/// Deletes the victims (gracefully) and nominates the node for the preemptor.
async fn preempt(client: &kube::Client, pod: &Value, plan: &skiff_scheduler::Preemption) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    if pod["status"]["nominatedNodeName"].as_str() == Some(plan.node.as_str()) {
        return;
    }
    for (vns, vname) in &plan.victims {
        let req = http::Request::delete(format!("/api/v1/namespaces/{vns}/pods/{vname}"))
            .body(Vec::new())
            .expect("valid request");
        match client.request::<Value>(req).await {
            Ok(victim) => {
                let msg = format!(
                    "Preempted by pod {} on node {}",
                    pod["metadata"]["uid"].as_str().unwrap_or(""),
                    plan.node
                );
                let _ =
                    events::record(client, &victim, "Normal", "Preempted", &msg, SCHEDULER_NAME)
                        .await;
            }
            Err(e) => tracing::debug!(error = %e, "victim not deleted"),
        }
    }
    let patch = json!({"status": {"nominatedNodeName": plan.node}});
    let req = http::Request::patch(format!("/api/v1/namespaces/{ns}/pods/{name}/status"))
        .header("Content-Type", "application/merge-patch+json")
        .body(patch.to_string().into_bytes())
        .expect("valid request");
    if let Err(e) = client.request_text(req).await {
        tracing::debug!(error = %e, "nominatedNodeName not recorded");
    }
}

async fn bind(client: &kube::Client, ns: &str, name: &str, node: &str) -> Result<()> {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&binding)?)
        .expect("valid request");
    client.request_text(req).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}, "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "110"}}})
    }

    fn pod(name: &str, cpu: &str, priority: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "generation": 1}, "spec": {"priority": priority, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}})
    }

    fn with_claim(mut p: Value, claim: &str) -> Value {
        p["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]);
        p
    }

    #[test]
    fn claims_decide_where_a_pod_may_go_and_what_happens_before_it_is_bound() {
        let mut s = synced(vec![node("a", "4"), node("b", "4")], vec![]);
        let class = |n: &str, mode: &str| json!({"metadata": {"name": n}, "provisioner": "skiff.io/local-path", "volumeBindingMode": mode});
        s.on_storage(
            Storage::Classes,
            Change::reset(vec![
                class("local-path", "WaitForFirstConsumer"),
                class("now", "Immediate"),
            ]),
        );
        let claim = |n: &str, class: &str, volume: Option<&str>| {
            json!({"metadata": {"name": n, "namespace": "default", "uid": n},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": class, "volumeName": volume}})
        };
        s.on_storage(
            Storage::Claims,
            Change::reset(vec![
                claim("wait", "local-path", None),
                claim("now", "now", None),
                claim("bound", "local-path", Some("on-b")),
            ]),
        );
        let on_b = json!({"metadata": {"name": "on-b"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
            "claimRef": {"namespace": "default", "name": "bound", "uid": "bound"}, "hostPath": {"path": "/x"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}}});
        s.on_storage(Storage::Volumes, Change::reset(vec![on_b]));

        s.on_pod(Change::apply(with_claim(pod("p1", "1", 0), "bound")));
        let Some(Decision::Bind { node, prebind, .. }) = s.next_decision() else {
            panic!()
        };
        assert_eq!((node.as_str(), prebind.len()), ("b", 0));

        s.on_pod(Change::apply(with_claim(pod("p2", "1", 0), "wait")));
        let Some(Decision::Bind { prebind, .. }) = s.next_decision() else {
            panic!()
        };
        assert_eq!(
            prebind,
            [Prebind::Provision {
                claim: "default/wait".into()
            }]
        );

        s.on_pod(Change::apply(with_claim(pod("p3", "1", 0), "now")));
        let Some(Decision::Unschedulable { message, .. }) = s.next_decision() else {
            panic!()
        };
        assert_eq!(
            message,
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        );
    }

    fn synced(nodes: Vec<Value>, pods: Vec<Value>) -> State {
        let mut s = State::default();
        s.on_node(Change::reset(nodes));
        s.on_pod(Change::reset(pods));
        s
    }

    fn bound_to(mut p: Value, node: &str) -> Value {
        p["spec"]["nodeName"] = json!(node);
        p
    }

    #[test]
    fn priority_order_assume_and_confirmation() {
        let mut s = synced(
            vec![node("a", "1")],
            vec![pod("low", "600m", 0), pod("high", "600m", 100)],
        );
        assert!(s.synced());
        let Some(Decision::Bind { pod: p, node, .. }) = s.next_decision() else {
            panic!("high first")
        };
        assert_eq!(
            (p["metadata"]["name"].as_str(), node.as_str()),
            (Some("high"), "a")
        );
        // The assumed pod takes the room: the low one does not fit any more.
        let Some(Decision::Unschedulable { message, .. }) = s.next_decision() else {
            panic!("low is unschedulable")
        };
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        assert!(s.next_decision().is_none());
        // A stale pending version of the assumed pod changes nothing.
        s.on_pod(Change::apply(pod("high", "600m", 100)));
        assert!(s.next_decision().is_none());
        // Its bound version replaces the assumption.
        s.on_pod(Change::apply(bound_to(pod("high", "600m", 100), "a")));
        assert_eq!(s.snap.node("a").unwrap().pod_count, 1);
        // Deleting it frees the node: the waiting pod is retried after its back-off.
        s.on_pod(Change::delete(bound_to(pod("high", "600m", 100), "a")));
        assert!(s.next_decision().is_none(), "back-off still running");
        s.tick(Instant::now() + Duration::from_secs(2));
        assert!(matches!(s.next_decision(), Some(Decision::Bind { .. })));
    }

    #[test]
    fn unschedulable_pods_wait_for_relevant_changes() {
        let mut s = synced(vec![node("a", "1")], vec![pod("big", "2", 0)]);
        assert!(matches!(
            s.next_decision(),
            Some(Decision::Unschedulable { .. })
        ));
        // Node heartbeats that change nothing the scheduler reads do not requeue.
        let mut hb = node("a", "1");
        hb["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        s.on_node(Change::apply(hb));
        s.tick(Instant::now() + Duration::from_secs(60));
        assert!(s.next_decision().is_none());
        // A bigger node does, once the back-off has passed.
        s.on_node(Change::apply(node("b", "4")));
        s.tick(Instant::now() + Duration::from_secs(60));
        let Some(Decision::Bind { node: chosen, .. }) = s.next_decision() else {
            panic!("fits on b")
        };
        assert_eq!(chosen, "b");
        // And without any change it would have been retried after five minutes.
        let mut s = synced(vec![node("a", "1")], vec![pod("big", "2", 0)]);
        s.next_decision();
        s.tick(Instant::now() + Duration::from_secs(301));
        assert!(matches!(
            s.next_decision(),
            Some(Decision::Unschedulable { .. })
        ));
    }

    #[test]
    fn failed_binds_are_retried_and_deleted_pods_dropped() {
        let mut s = synced(vec![node("a", "1")], vec![pod("p", "100m", 0)]);
        assert!(matches!(s.next_decision(), Some(Decision::Bind { .. })));
        s.bind_failed("default/p", false);
        assert_eq!(s.snap.node("a").unwrap().pod_count, 0);
        s.tick(Instant::now() + Duration::from_secs(2));
        assert!(matches!(s.next_decision(), Some(Decision::Bind { .. })));
        s.bind_failed("default/p", true);
        s.tick(Instant::now() + Duration::from_secs(60));
        assert!(s.next_decision().is_none());
        // A relist drops what no longer exists.
        let mut s = synced(
            vec![node("a", "1")],
            vec![bound_to(pod("q", "100m", 0), "a")],
        );
        assert_eq!(s.snap.node("a").unwrap().pod_count, 1);
        s.on_pod(Change::reset(vec![]));
        assert_eq!(s.snap.node("a").unwrap().pod_count, 0);
    }
}
