//! The ReplicaSet controller: keep `spec.replicas` pods matching the selector, as
//! Kubernetes' does. Orphans that match are adopted and owned pods that stopped matching
//! are released (through ownerReferences); surplus pods go in Kubernetes' order
//! (unscheduled, pending, not ready, doubled up on a node, ready for less time, more
//! restarts, newer); creations come in slow-start batches, and expectations keep a
//! burst from being counted twice while the watch catches up.
//!
//! `reconcile` is the pure decision, on the typed ReplicaSet and the pods' facts; `run`
//! keeps the view from reflectors and acts. Claims and owner references go through the
//! generic owner machinery, which works on the objects as the informers hold them.

use crate::claim;
use crate::control;
use crate::owner::{self, Expectations};
use crate::podfacts::{PodFacts, sort_for_deletion};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
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
    pub status: ReplicaSetStatus,
}

fn replicas(rs: &ReplicaSet) -> usize {
    let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    want.max(0) as usize
}

fn min_ready_seconds(rs: &ReplicaSet) -> i64 {
    let s = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
    s.map_or(0, i64::from)
}

fn template(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref()?.template.as_ref()
}

/// One sync of `rs` (`raw` is the same object as the informers hold it) over the pods
/// of its namespace.
pub fn reconcile(
    rs: &ReplicaSet,
    raw: &Value,
    pods: &[&Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let mut plan = Plan::default();
    // Kubernetes claims among active pods only (finished or terminating pods are
    // neither adopted, released nor counted).
    let candidates: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| PodFacts::of(p).is_active())
        .collect();
    let selector = claim::OwnerSelector::of(raw);
    let claimed = claim::claim(raw, &candidates, |p| selector.selects(p));
    let names = |pods: &[&Value]| -> Vec<String> {
        let name = |p: &&Value| PodFacts::of(p).metadata.name.to_string();
        pods.iter().map(name).collect()
    };
    plan.adopt = names(&claimed.adopt);
    plan.release = names(&claimed.release);
    let mut active = claimed.mine;
    let want = replicas(rs);
    if rs.metadata.deletion_timestamp.is_none() {
        if active.len() < want {
            plan.create = (want - active.len()).min(BURST);
        } else if active.len() > want {
            sort_for_deletion(&mut active);
            let surplus = (active.len() - want).min(BURST);
            plan.delete = names(&active[..surplus]);
        }
    }
    plan.status = counts(rs, &active, now);
    plan
}

/// The status counts of `rs` over its active pods.
fn counts(
    rs: &ReplicaSet,
    active: &[&Value],
    now: chrono::DateTime<chrono::Utc>,
) -> ReplicaSetStatus {
    let facts: Vec<PodFacts> = active.iter().map(|p| PodFacts::of(p)).collect();
    let template_labels = template(rs)
        .and_then(|t| t.metadata.as_ref()?.labels.as_ref())
        .cloned()
        .unwrap_or_default();
    let fully = facts.iter().filter(|f| {
        let mut l = f.labels();
        template_labels
            .iter()
            .all(|(k, v)| l.any(|(lk, lv)| lk == k && lv == v))
    });
    let min_ready = min_ready_seconds(rs);
    ReplicaSetStatus {
        replicas: crate::int32(facts.len()),
        fully_labeled_replicas: Some(crate::int32(fully.count())),
        ready_replicas: Some(crate::int32(facts.iter().filter(|f| f.is_ready()).count())),
        available_replicas: Some(crate::int32(
            facts
                .iter()
                .filter(|f| f.is_available(min_ready, now))
                .count(),
        )),
        observed_generation: Some(rs.metadata.generation.unwrap_or(0)),
        ..Default::default()
    }
}

/// The pod a ReplicaSet's template makes.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let m = &rs.metadata;
    let t = template(rs).cloned().unwrap_or_default();
    let tm = t.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", m.name.as_deref().unwrap_or(""))),
            namespace: m.namespace.clone(),
            owner_references: Some(vec![KIND.controller_ref(m)]),
            labels: tm.labels,
            annotations: tm.annotations,
            ..Default::default()
        },
        spec: t.spec,
        status: None,
    }
}

/// The conditions after a sync: `ReplicaFailure` set while creating or deleting
/// fails (keeping its time while the reason stays), dropped once a sync goes through.
fn conditions(
    current: &[ReplicaSetCondition],
    failure: Option<(&str, &str)>,
    now: Timestamp,
) -> Vec<ReplicaSetCondition> {
    const FAILURE: &str = "ReplicaFailure";
    let mut out: Vec<ReplicaSetCondition> = current
        .iter()
        .filter(|c| c.type_ != FAILURE)
        .cloned()
        .collect();
    if let Some((reason, message)) = failure {
        let since = current
            .iter()
            .find(|c| c.type_ == FAILURE && c.reason.as_deref() == Some(reason))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(ReplicaSetCondition {
            type_: FAILURE.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(since),
        });
    }
    out
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
    raw: &Value,
) -> Option<Duration> {
    let rs: ReplicaSet = crate::typed(raw)?;
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let pods = st.pods.in_namespace(&ns);
    let plan = reconcile(&rs, raw, &pods, chrono::Utc::now());
    // The plan counts what it adopts as its own: act on all of it or on none.
    let named = |names: &[String]| -> Vec<&Value> {
        names.iter().filter_map(|n| st.pods.get(&ns, n)).collect()
    };
    let claimed = claim::Claim {
        mine: Vec::new(),
        adopt: named(&plan.adopt),
        release: named(&plan.release),
    };
    if claim::settle(client, ("v1", "pods"), &claimed, raw, &KIND)
        .await
        .is_none()
    {
        return Some(claim::ADOPTION_RETRY);
    }
    let victims: Vec<Value> = plan
        .delete
        .iter()
        .filter_map(|n| st.pods.get(&ns, n).cloned())
        .collect();
    let act = owner::Act {
        client,
        recorder,
        owner: raw,
        key,
    };
    let mut failure = create(&act, st, &rs, plan.create).await;
    let failed_delete = act.delete_pods(&mut st.expectations, &victims, "Error deleting");
    failure = failed_delete.await.map(|e| ("FailedDelete", e)).or(failure);
    let current = rs.status.as_ref().and_then(|s| s.conditions.as_deref());
    let failure = failure.as_ref().map(|(r, m)| (*r, m.as_str()));
    let conditions = conditions(current.unwrap_or(&[]), failure, Timestamp::now());
    let status = ReplicaSetStatus {
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..plan.status.clone()
    };
    let status = serde_json::to_value(status).expect("a status serializes");
    owner::put_status(client, "apps/v1", "replicasets", raw, status).await;
    // Ready pods not yet available: look again when they will be.
    let min_ready = min_ready_seconds(&rs);
    (min_ready > 0 && plan.status.ready_replicas != plan.status.available_replicas)
        .then(|| Duration::from_secs(min_ready as u64 + 1))
}

/// Creates `n` pods from the set's template in slow-start batches; the failure
/// (reason, message) to report, if any.
async fn create(
    act: &owner::Act<'_>,
    st: &mut State,
    rs: &ReplicaSet,
    n: usize,
) -> Option<(&'static str, String)> {
    if n == 0 {
        return None;
    }
    st.expectations.expect_creates(act.key, n);
    let ns = rs.metadata.namespace.as_deref().unwrap_or("");
    let pod = serde_json::to_value(pod_from_template(rs)).expect("a pod serializes");
    let (made, err) = owner::create_in_batches(act.client, ns, &pod, n).await;
    for name in &made {
        act.event("Normal", "SuccessfulCreate", format!("Created pod: {name}"));
    }
    let e = err?;
    // What was not created will not be observed.
    st.expectations.lower_creates(act.key, n - made.len());
    act.event("Warning", "FailedCreate", format!("Error creating: {e}"));
    Some(("FailedCreate", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(rs: &Value, pods: &[&Value]) -> Plan {
        reconcile(&crate::typed(rs).unwrap(), rs, pods, now())
    }

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
        let p = plan(&rs(4), &[&a, &orphan, &foreign, &done]);
        assert_eq!(p.adopt, vec!["o"]);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        assert_eq!(p.status.replicas, 2);
        assert_eq!(p.status.ready_replicas, Some(1));
        assert_eq!(p.status.available_replicas, Some(1));
        assert_eq!(p.status.fully_labeled_replicas, Some(2));
        assert_eq!(p.status.observed_generation, Some(3));
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
        let p = plan(&rs(1), &all);
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
        let p = plan(&rs(1), &[&lone_new, &x1, &x2]);
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
        let p = plan(&set, &[&moved, &r]);
        assert_eq!(p.release, vec!["m"]);
        assert_eq!(p.create, 0);
        assert_eq!(p.status.ready_replicas, Some(1));
        assert_eq!(p.status.available_replicas, Some(0));
    }

    #[test]
    fn a_failure_condition_keeps_its_time_and_goes_with_success() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let c = conditions(&[], Some(("FailedCreate", "quota")), t0);
        assert_eq!(
            (c[0].type_.as_str(), c[0].reason.as_deref()),
            ("ReplicaFailure", Some("FailedCreate"))
        );
        let again = conditions(&c, Some(("FailedCreate", "quota again")), later);
        assert_eq!(again[0].last_transition_time, Some(Time(t0)));
        assert_eq!(again[0].message.as_deref(), Some("quota again"));
        let other = conditions(&c, Some(("FailedDelete", "gone")), later);
        assert_eq!(other[0].last_transition_time, Some(Time(later)));
        assert!(conditions(&again, None, later).is_empty());
        let s = serde_json::to_value(&again[0]).unwrap();
        assert_eq!(s["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn template_makes_an_owned_pod() {
        let p = serde_json::to_value(pod_from_template(&crate::typed(&rs(1)).unwrap())).unwrap();
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
