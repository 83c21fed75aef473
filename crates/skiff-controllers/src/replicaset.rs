//! The ReplicaSet controller: keep `spec.replicas` pods matching the selector, as
//! Kubernetes' does. Orphans that match are adopted and owned pods that stopped matching
//! are released (through ownerReferences); surplus pods go in Kubernetes' order
//! (unscheduled, pending, not ready, doubled up on a node, ready for less time, more
//! restarts, newer); creations come in slow-start batches, and expectations keep a
//! burst from being counted twice while the watch catches up.
//!
//! `reconcile` is the pure decision; `run` keeps the view from reflectors and acts.

use crate::claim::{self, labels};
use crate::control;
use crate::owner::{self, Expectations};
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::Change;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Kubernetes' cap on pods created or deleted in one sync.
pub const BURST: usize = 500;

/// What one sync of a ReplicaSet does.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphans to take (pod names).
    pub adopt: Vec<String>,
    /// Owned pods that no longer match (pod names).
    pub release: Vec<String>,
    pub create: usize,
    /// Surplus pods, most deletable first (pod names).
    pub delete: Vec<String>,
    /// The status to publish (without conditions, which depend on the actions' outcome).
    pub status: Value,
}

pub fn is_active(p: &Value) -> bool {
    !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        && p["metadata"]["deletionTimestamp"].is_null()
}

fn ready_since(p: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_default()
        })
}

pub fn is_ready(p: &Value) -> bool {
    ready_since(p).is_some()
}

/// Ready for at least `min_ready` seconds.
pub fn is_available(p: &Value, min_ready: i64, now: chrono::DateTime<chrono::Utc>) -> bool {
    ready_since(p)
        .is_some_and(|t| min_ready <= 0 || t + chrono::Duration::seconds(min_ready) <= now)
}

fn restarts(p: &Value) -> i64 {
    p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .max()
        .unwrap_or(0)
}

/// Pods with a lower cost go first when a set scales down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Sorts `pods` most deletable first, as Kubernetes' `ActivePodsWithRanks`; `rank` is
/// how many of the set share each pod's node.
pub fn sort_for_deletion(pods: &mut [&Value]) {
    let mut per_node: HashMap<&str, i64> = HashMap::new();
    for p in pods.iter() {
        if let Some(n) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let key = |p: &Value| {
        let node = p["spec"]["nodeName"].as_str().unwrap_or("");
        let phase = match p["status"]["phase"].as_str() {
            Some("Pending") => 0,
            Some("Running") => 2,
            _ => 1,
        };
        let cost: i64 = p["metadata"]["annotations"][POD_DELETION_COST]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let rank = if node.is_empty() {
            0
        } else {
            per_node.get(node).copied().unwrap_or(0)
        };
        // Ready longer sorts later: negate the time it became ready.
        let ready_at = ready_since(p).map(|t| -t.timestamp()).unwrap_or(i64::MIN);
        let created = p["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| -t.timestamp())
            .unwrap_or(i64::MIN);
        (
            !node.is_empty(),
            phase,
            is_ready(p),
            cost,
            -rank,
            ready_at,
            -restarts(p),
            created,
        )
    };
    pods.sort_by_key(|p| key(p));
}

/// One sync of `rs` over the pods of its namespace.
pub fn reconcile(rs: &Value, pods: &[&Value], now: chrono::DateTime<chrono::Utc>) -> Plan {
    let rs_deleting = !rs["metadata"]["deletionTimestamp"].is_null();
    let mut plan = Plan::default();
    // Kubernetes claims among active pods only (finished or terminating pods are
    // neither adopted, released nor counted).
    let candidates: Vec<&Value> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let selector = claim::OwnerSelector::of(rs);
    let claimed = claim::claim(rs, &candidates, |p| selector.selects(p));
    let name = |p: &&Value| p["metadata"]["name"].as_str().unwrap_or("").to_string();
    plan.adopt = claimed.adopt.iter().map(name).collect();
    plan.release = claimed.release.iter().map(name).collect();
    let mut active = claimed.mine;
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    if !rs_deleting {
        if active.len() < want {
            plan.create = (want - active.len()).min(BURST);
        } else if active.len() > want {
            sort_for_deletion(&mut active);
            plan.delete = active
                .iter()
                .take((active.len() - want).min(BURST))
                .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
                .collect();
        }
    }
    let template_labels = labels(&rs["spec"]["template"]["metadata"]["labels"]);
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let fully = active
        .iter()
        .filter(|p| {
            let l = labels(&p["metadata"]["labels"]);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    plan.status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully,
        "readyReplicas": active.iter().filter(|p| is_ready(p)).count(),
        "availableReplicas": active.iter().filter(|p| is_available(p, min_ready, now)).count(),
        "observedGeneration": rs["metadata"]["generation"].as_i64().unwrap_or(0),
    });
    plan
}

/// The pod a ReplicaSet's template makes.
pub fn pod_from_template(rs: &Value) -> Value {
    let m = &rs["metadata"];
    let t = &rs["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", m["name"].as_str().unwrap_or("")),
        "namespace": m["namespace"],
        "ownerReferences": [owner::controller_ref("apps/v1", "ReplicaSet", rs)],
    });
    for k in ["labels", "annotations"] {
        if t["metadata"][k].is_object() {
            meta[k] = t["metadata"][k].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]})
}

struct State {
    sets: HashMap<String, Arc<Value>>,
    /// Every pod (its own, orphans to adopt, and the others as they may become either).
    pods: claim::Pods,
    expectations: Expectations,
}

const KIND: claim::OwnerKind = claim::OwnerKind {
    api_version: "apps/v1",
    kind: "ReplicaSet",
    plural: "replicasets",
};

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/apps/v1/replicasets"),
        informers.watch("/api/v1/pods"),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "replicaset-controller"),
        client,
        st: State {
            sets: HashMap::new(),
            pods: claim::Pods::default(),
            expectations: Expectations::default(),
        },
    };
    control::run(controller, sources, shutdown).await
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    st: State,
}

impl control::Reconcile for Controller {
    fn expectations(&mut self) -> Option<&mut owner::Expectations> {
        Some(&mut self.st.expectations)
    }

    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
        &mut self.st.sets
    }

    fn observe(&mut self, _pods: usize, c: Change, dirty: &mut control::Dirty) {
        pod_change(&mut self.st, dirty, c);
    }

    async fn sync(&mut self, key: &str, rs: Option<Arc<Value>>) -> Option<Duration> {
        let rs = rs?;
        sync(&self.client, &self.recorder, &mut self.st, key, &rs).await
    }
}

fn pod_change(st: &mut State, dirty: &mut HashSet<String>, c: Change) {
    st.pods.apply(
        c,
        "ReplicaSet",
        &st.sets,
        claim::selects,
        dirty,
        Some(&mut st.expectations),
    );
}

/// One sync; returns when to look again (availability after minReadySeconds).
async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    key: &str,
    rs: &Value,
) -> Option<Duration> {
    let ns = rs["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let now = chrono::Utc::now();
    let pods = st.pods.in_namespace(&ns);
    let plan = reconcile(rs, &pods, now);
    let by_name = |n: &str| st.pods.get(&ns, n).cloned();
    // The plan counts what it adopts as its own: act on all of it or on none.
    let named = |names: &[String]| -> Vec<&Value> {
        names.iter().filter_map(|n| st.pods.get(&ns, n)).collect()
    };
    let claimed = claim::Claim {
        mine: Vec::new(),
        adopt: named(&plan.adopt),
        release: named(&plan.release),
    };
    if claim::settle(client, ("v1", "pods"), &claimed, rs, &KIND)
        .await
        .is_none()
    {
        return Some(claim::ADOPTION_RETRY);
    }
    let mut failure: Option<(&str, String)> = None;
    if plan.create > 0 {
        st.expectations.expect_creates(key, plan.create);
        let template = pod_from_template(rs);
        let (made, err) = owner::create_in_batches(client, &ns, &template, plan.create).await;
        for name in &made {
            recorder.record(
                rs,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {name}"),
            );
        }
        if let Some(e) = err {
            // What was not created will not be observed.
            st.expectations.lower_creates(key, plan.create - made.len());
            recorder.record(
                rs,
                "Warning",
                "FailedCreate",
                format!("Error creating: {e}"),
            );
            failure = Some(("FailedCreate", e));
        }
    }
    if !plan.delete.is_empty() {
        let victims: Vec<Value> = plan.delete.iter().filter_map(|n| by_name(n)).collect();
        st.expectations.expect_deletes(
            key,
            victims
                .iter()
                .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string)),
        );
        for (p, res) in victims
            .iter()
            .zip(owner::delete_pods(client, &victims).await)
        {
            let name = p["metadata"]["name"].as_str().unwrap_or("");
            match res {
                Ok(()) => recorder.record(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(e) => {
                    st.expectations
                        .observed_delete(key, p["metadata"]["uid"].as_str().unwrap_or(""));
                    recorder.record(
                        rs,
                        "Warning",
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                    failure = Some(("FailedDelete", e));
                }
            }
        }
    }
    let mut status = plan.status.clone();
    status["conditions"] = owner::failure_condition(
        &rs["status"]["conditions"],
        failure.as_ref().map(|(r, m)| (*r, m.as_str())),
    );
    if status["conditions"]
        .as_array()
        .is_some_and(|c| c.is_empty())
    {
        status.as_object_mut().map(|m| m.remove("conditions"));
    }
    owner::put_status(client, "apps/v1", "replicasets", rs, status).await;
    // Ready pods not yet available: look again when they will be.
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    (min_ready > 0 && plan.status["readyReplicas"] != plan.status["availableReplicas"])
        .then(|| Duration::from_secs(min_ready as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 3},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    fn pod(
        name: &str,
        owner: Option<&str>,
        node: &str,
        phase: &str,
        ready_at: Option<&str>,
        created: &str,
    ) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                "labels": {"app": "web", "tier": "fe"}, "creationTimestamp": created},
            "spec": {"nodeName": node}, "status": {"phase": phase}});
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": o, "controller": true}]);
        }
        if let Some(t) = ready_at {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
        }
        p
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn creates_the_missing_and_adopts_orphans() {
        let a = pod(
            "a",
            Some("rs-uid"),
            "n1",
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let orphan = pod("o", None, "n1", "Running", None, "2026-01-01T00:00:00Z");
        let mut foreign = pod(
            "f",
            Some("other"),
            "n1",
            "Running",
            None,
            "2026-01-01T00:00:00Z",
        );
        foreign["metadata"]["ownerReferences"][0]["name"] = json!("other");
        let done = pod(
            "d",
            Some("rs-uid"),
            "n1",
            "Succeeded",
            None,
            "2026-01-01T00:00:00Z",
        );
        let p = reconcile(&rs(4), &[&a, &orphan, &foreign, &done], now());
        assert_eq!(p.adopt, vec!["o"]);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        assert_eq!(p.status["replicas"], 2);
        assert_eq!(p.status["readyReplicas"], 1);
        assert_eq!(p.status["availableReplicas"], 1);
        assert_eq!(p.status["fullyLabeledReplicas"], 2);
        assert_eq!(p.status["observedGeneration"], 3);
    }

    #[test]
    fn deletes_in_kubernetes_order() {
        let t = "2026-01-01T00:00:00Z";
        let unscheduled = pod("unscheduled", Some("rs-uid"), "", "Pending", None, t);
        let pending = pod("pending", Some("rs-uid"), "n1", "Pending", None, t);
        let not_ready = pod("not-ready", Some("rs-uid"), "n2", "Running", None, t);
        let ready_old = pod(
            "ready-old",
            Some("rs-uid"),
            "n3",
            "Running",
            Some("2026-01-01T00:01:00Z"),
            t,
        );
        let ready_new = pod(
            "ready-new",
            Some("rs-uid"),
            "n4",
            "Running",
            Some("2026-01-01T00:05:00Z"),
            t,
        );
        let all = [&ready_old, &ready_new, &not_ready, &pending, &unscheduled];
        let p = reconcile(&rs(1), &all, now());
        assert_eq!(
            p.delete,
            vec!["unscheduled", "pending", "not-ready", "ready-new"]
        );
        // Doubled-up pods go before lone ones; newer before older otherwise.
        let x1 = pod(
            "x1",
            Some("rs-uid"),
            "n1",
            "Running",
            Some(t),
            "2026-01-01T00:00:00Z",
        );
        let x2 = pod(
            "x2",
            Some("rs-uid"),
            "n1",
            "Running",
            Some(t),
            "2026-01-01T00:00:01Z",
        );
        let lone_new = pod(
            "lone",
            Some("rs-uid"),
            "n2",
            "Running",
            Some(t),
            "2026-01-01T00:09:00Z",
        );
        let p = reconcile(&rs(1), &[&lone_new, &x1, &x2], now());
        assert_eq!(p.delete, vec!["x2", "x1"]);
    }

    #[test]
    fn releases_pods_that_stop_matching_and_respects_min_ready() {
        let mut moved = pod(
            "m",
            Some("rs-uid"),
            "n1",
            "Running",
            None,
            "2026-01-01T00:00:00Z",
        );
        moved["metadata"]["labels"]["app"] = json!("debug");
        let r = pod(
            "r",
            Some("rs-uid"),
            "n1",
            "Running",
            Some("2026-01-01T00:09:50Z"),
            "2026-01-01T00:00:00Z",
        );
        let mut set = rs(1);
        set["spec"]["minReadySeconds"] = json!(30);
        let p = reconcile(&set, &[&moved, &r], now());
        assert_eq!(p.release, vec!["m"]);
        assert_eq!(p.create, 0);
        assert_eq!(p.status["readyReplicas"], 1);
        assert_eq!(p.status["availableReplicas"], 0);
    }

    #[test]
    fn template_makes_an_owned_pod() {
        let p = pod_from_template(&rs(1));
        assert_eq!(p["metadata"]["generateName"], "web-");
        assert_eq!(p["metadata"]["labels"]["tier"], "fe");
        let o = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (o["kind"].as_str(), o["uid"].as_str()),
            (Some("ReplicaSet"), Some("rs-uid"))
        );
        assert_eq!(o["controller"], true);
        assert_eq!(o["blockOwnerDeletion"], true);
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx");
    }
}
