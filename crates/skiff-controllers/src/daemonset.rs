//! The DaemonSet controller, as Kubernetes': one pod on every node the template may run
//! on (nodeSelector, required node affinity, taints with the DaemonSet default
//! tolerations), placed through the scheduler with a `metadata.name` node affinity;
//! new nodes get theirs, pods on nodes that are gone or no longer eligible go; template
//! history in ControllerRevisions (`controller-revision-hash`), RollingUpdate within
//! maxUnavailable and OnDelete.
//!
//! `reconcile` is the pure decision; `run` keeps DaemonSets, nodes and pods and acts.

use crate::claim::{self, ADOPTION_RETRY};
use crate::control;
use crate::deployment::template_hash;
use crate::owner;
use crate::podfacts::PodFacts;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;
use skiff_kube::events::Recorder;
use skiff_kube::informer::View;
use skiff_kube::reflect::{self, Change};
use skiff_scheduler::{NodeInfo, term_matches, tolerated};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const REVISION_HASH: &str = "controller-revision-hash";

/// What every daemon pod tolerates (Kubernetes' `AddOrUpdateDaemonPodTolerations`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut t = vec![
        exists("node.kubernetes.io/not-ready", "NoExecute"),
        exists("node.kubernetes.io/unreachable", "NoExecute"),
        exists("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(exists(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// The pod's tolerations with the daemon defaults it does not have (by key and effect).
fn tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut t = spec.tolerations.clone().unwrap_or_default();
    for d in default_tolerations(spec.host_network == Some(true)) {
        if !t.iter().any(|x| x.key == d.key && x.effect == d.effect) {
            t.push(d);
        }
    }
    t
}

fn spec(ds: &DaemonSet) -> &DaemonSetSpec {
    static EMPTY: std::sync::LazyLock<DaemonSetSpec> = std::sync::LazyLock::new(Default::default);
    ds.spec.as_ref().unwrap_or(&EMPTY)
}

fn template(ds: &DaemonSet) -> &PodTemplateSpec {
    &spec(ds).template
}

fn required_terms(spec: &PodSpec) -> Option<&[NodeSelectorTerm]> {
    let affinity = spec.affinity.as_ref()?.node_affinity.as_ref()?;
    let required = affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    Some(&required.node_selector_terms)
}

/// A typed object as the scheduler's JSON-based filters read it.
fn json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("an API object serializes")
}

/// (may a new daemon pod go there, may an existing one stay) for `node`.
pub fn eligibility(ds: &DaemonSet, node: &Value) -> (bool, bool) {
    let pod = template(ds).spec.clone().unwrap_or_default();
    let info = NodeInfo::from_json(node);
    let selector = pod.node_selector.iter().flatten();
    let selector_ok = selector
        .into_iter()
        .all(|(k, v)| info.labels.get(k) == Some(v));
    let affinity_ok =
        required_terms(&pod).is_none_or(|ts| ts.iter().any(|t| term_matches(&json(t), &info)));
    if !(selector_ok && affinity_ok) {
        return (false, false);
    }
    let tol: Vec<Value> = tolerations(&pod).iter().map(json).collect();
    let untolerated = |effect: &str| {
        info.taints
            .iter()
            .any(|t| t["effect"] == effect && !tolerated(&tol, t))
    };
    let stay = !untolerated("NoExecute");
    (stay && !untolerated("NoSchedule"), stay)
}

fn pod_hash<'a>(f: &PodFacts<'a>) -> &'a str {
    f.labels()
        .find(|(k, _)| *k == REVISION_HASH)
        .map_or("", |(_, v)| v)
}

/// The node a daemon pod is for: bound, or pinned by the node affinity this controller
/// wrote.
fn node_of(p: &Value) -> String {
    let bound = PodFacts::of(p).node();
    if !bound.is_empty() {
        return bound.to_string();
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Pinned {
        spec: PodSpec,
    }
    let pinned = Pinned::deserialize(p).unwrap_or_default();
    let pin = required_terms(&pinned.spec).and_then(|ts| {
        ts.first()?
            .match_fields
            .as_ref()?
            .first()?
            .values
            .as_ref()?
            .first()
    });
    pin.cloned().unwrap_or_default()
}

/// How many of `desired` daemon pods a rolling update may have unavailable: a count or
/// a percentage of the desired number rounded up, and at least one (no surge).
fn max_unavailable(ds: &DaemonSet, desired: i64) -> i64 {
    let strategy = spec(ds).update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let n = match rolling.and_then(|r| r.max_unavailable.as_ref()) {
        None => 1,
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(pct)) => (pct * desired + 99) / 100,
            _ => 1,
        },
    };
    n.max(1)
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    pub delete: Vec<String>,
    /// Pods on nodes that no longer exist: deleted at once (grace 0).
    pub orphaned: Vec<String>,
    pub status: DaemonSetStatus,
}

/// What one node holds of the set, as a sync counts it.
#[derive(Default)]
struct Tally {
    desired: i64,
    current: i64,
    misscheduled: i64,
    ready: i64,
    updated: i64,
    available: i64,
    unavailable_now: i64,
    /// (node, pod) of old pods still serving, which a rolling update may replace.
    old_available: Vec<(String, String)>,
}

/// One sync of `ds` (current template hash `hash`) over all nodes and its pods.
pub fn reconcile(
    ds: &DaemonSet,
    hash: &str,
    nodes: &[&Value],
    pods: &[&Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let known: HashSet<&str> = nodes.iter().map(|n| reflect::names(*n).1).collect();
    let mut by_node: BTreeMap<String, Vec<PodFacts>> = BTreeMap::new();
    for p in pods {
        let n = node_of(p);
        let f = PodFacts::of(p);
        if !n.is_empty() && !known.contains(n.as_str()) {
            // On a node that is gone, terminating or not.
            plan.orphaned.push(f.metadata.name.to_string());
        }
        if !f.deleting() {
            by_node.entry(n).or_default().push(f);
        }
    }
    let mut tally = Tally::default();
    for node in nodes {
        let n = reflect::names(*node).1;
        let here = by_node.remove(n).unwrap_or_default();
        tally_node(ds, hash, node, here, now, &mut tally, &mut plan);
    }
    // RollingUpdate: old available pods go while the unavailable budget allows.
    let budget = (max_unavailable(ds, tally.desired) - tally.unavailable_now).max(0) as usize;
    let replace = tally.old_available.into_iter().take(budget);
    plan.delete.extend(replace.map(|(_, p)| p));
    plan.delete.sort();
    plan.delete.dedup();
    plan.status = DaemonSetStatus {
        current_number_scheduled: crate::int32(tally.current),
        number_misscheduled: crate::int32(tally.misscheduled),
        desired_number_scheduled: crate::int32(tally.desired),
        number_ready: crate::int32(tally.ready),
        updated_number_scheduled: Some(crate::int32(tally.updated)),
        number_available: Some(crate::int32(tally.available)),
        number_unavailable: Some(crate::int32((tally.desired - tally.available).max(0))),
        observed_generation: Some(ds.metadata.generation.unwrap_or(0)),
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        ..Default::default()
    };
    plan
}

/// The decisions and counts for one node and the set's pods on it.
fn tally_node(
    ds: &DaemonSet,
    hash: &str,
    node: &Value,
    mut here: Vec<PodFacts>,
    now: chrono::DateTime<chrono::Utc>,
    t: &mut Tally,
    plan: &mut Plan,
) {
    let n = reflect::names(node).1;
    let rolling = spec(ds)
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref());
    let rolling = rolling != Some("OnDelete");
    let min_ready = spec(ds).min_ready_seconds.map_or(0, i64::from);
    let name = |f: &PodFacts| f.metadata.name.to_string();
    let (schedule, stay) = eligibility(ds, node);
    // Failed daemon pods are replaced.
    plan.delete
        .extend(here.iter().filter(|p| p.phase() == "Failed").map(name));
    here.retain(|p| !matches!(p.phase(), "Failed" | "Succeeded"));
    t.desired += i64::from(schedule);
    if !stay {
        t.misscheduled += i64::from(!here.is_empty());
        plan.delete.extend(here.iter().map(name));
        return;
    }
    if here.is_empty() {
        if schedule {
            plan.create.push(n.to_string());
            t.unavailable_now += 1;
        }
        return;
    }
    if schedule {
        t.current += 1;
    } else {
        // Staying where a new one could not go (a NoSchedule taint came later).
        t.misscheduled += 1;
    }
    // One per node: the oldest stays.
    here.sort_by_key(|p| p.metadata.creation_timestamp.unwrap_or(""));
    plan.delete.extend(here.iter().skip(1).map(name));
    let p = &here[0];
    let avail = p.is_available(min_ready, now);
    t.ready += i64::from(p.is_ready());
    t.available += i64::from(avail);
    t.unavailable_now += i64::from(!avail);
    if pod_hash(p) == hash {
        t.updated += 1;
    } else if rolling {
        if avail {
            t.old_available.push((n.to_string(), name(p)));
        } else {
            // Not serving anyway: replace it at once.
            plan.delete.push(name(p));
        }
    }
}

/// The daemon pod for `node`.
pub fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let t = template(ds);
    let meta = t.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.into());
    let generation = ds.metadata.generation.unwrap_or(1).to_string();
    labels.insert("pod-template-generation".into(), generation);
    let mut pod = t.spec.clone().unwrap_or_default();
    pod.tolerations = Some(tolerations(&pod));
    pin(&mut pod, node);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or(""))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![KIND.controller_ref(&ds.metadata)]),
            ..Default::default()
        },
        spec: Some(pod),
        status: None,
    }
}

/// Only this node: a matchFields term on `metadata.name` replaces any node-name terms
/// of each required term, as Kubernetes does.
fn pin(pod: &mut PodSpec, node: &str) {
    let pin = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let mut affinity: Affinity = pod.affinity.take().unwrap_or_default();
    let mut node_affinity = affinity.node_affinity.take().unwrap_or_default();
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .take();
    let mut terms = required.map(|r| r.node_selector_terms).unwrap_or_default();
    if terms.is_empty() {
        terms.push(NodeSelectorTerm::default());
    }
    for t in &mut terms {
        t.match_fields = Some(vec![pin.clone()]);
    }
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: terms,
    });
    affinity.node_affinity = Some(node_affinity);
    pod.affinity = Some(affinity);
}

struct State {
    sets: HashMap<String, Arc<Value>>,
    nodes: HashMap<String, Arc<Value>>,
    /// Pods with a DaemonSet controller, and orphans (to adopt).
    pods: claim::Pods,
    revisions: HashMap<String, Arc<Value>>,
}

const KIND: claim::OwnerKind = claim::OwnerKind {
    api_version: "apps/v1",
    kind: "DaemonSet",
    plural: "daemonsets",
};

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/apps/v1/daemonsets"),
        informers.watch("/api/v1/nodes"),
        informers.watch_view(
            "/api/v1/pods",
            View::only(|p| claim::owned_by_or_orphan(p, "DaemonSet")),
        ),
        informers.watch("/apis/apps/v1/controllerrevisions"),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        client,
        st: State {
            sets: HashMap::new(),
            nodes: HashMap::new(),
            pods: claim::Pods::default(),
            revisions: HashMap::new(),
        },
        expectations: owner::Expectations::default(),
    };
    control::run(controller, sources, shutdown).await
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    st: State,
    expectations: owner::Expectations,
}

impl control::Reconcile for Controller {
    fn expectations(&mut self) -> Option<&mut owner::Expectations> {
        Some(&mut self.expectations)
    }

    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
        &mut self.st.sets
    }

    fn observe(&mut self, source: usize, c: Change, dirty: &mut control::Dirty) {
        match source {
            1 => {
                // A node change concerns every DaemonSet.
                dirty.extend(self.st.sets.keys().cloned());
                reflect::apply_to(&mut self.st.nodes, c);
            }
            2 => self.st.pods.apply(
                c,
                "DaemonSet",
                &self.st.sets,
                claim::selects,
                dirty,
                Some(&mut self.expectations),
            ),
            _ => reflect::apply_to(&mut self.st.revisions, c),
        }
    }

    async fn sync(&mut self, key: &str, ds: Option<Arc<Value>>) -> Option<Duration> {
        let ds = ds?;
        sync(
            &self.client,
            &self.recorder,
            &mut self.st,
            &mut self.expectations,
            key,
            &ds,
        )
        .await
    }
}

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    exp: &mut owner::Expectations,
    key: &str,
    raw: &Value,
) -> Option<Duration> {
    let ds: DaemonSet = crate::typed(raw)?;
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&json(template(&ds)), collisions.map_or(0, i64::from));
    let selector = claim::OwnerSelector::of(raw);
    let Some(pods) = st
        .pods
        .claim_for(client, raw, &KIND, |p| selector.selects(p))
        .await
    else {
        return Some(ADOPTION_RETRY);
    };
    let deleting = ds.metadata.deletion_timestamp.is_some();
    if !deleting {
        let hashes = pods.iter().map(|p| pod_hash(&PodFacts::of(p)).to_string());
        let in_use: HashSet<String> = hashes.collect();
        let kind = "DaemonSet";
        crate::revisions::ensure(client, &mut st.revisions, raw, kind, &hash, &in_use).await;
    }
    let nodes: Vec<Arc<Value>> = st.nodes.values().cloned().collect();
    let (nrefs, prefs): (Vec<&Value>, Vec<&Value>) =
        (nodes.iter().map(|n| &**n).collect(), pods.iter().collect());
    let mut plan = reconcile(&ds, &hash, &nrefs, &prefs, chrono::Utc::now());
    if deleting {
        plan.create.clear();
    }
    let act = owner::Act {
        client,
        recorder,
        owner: raw,
        key,
    };
    create(&act, exp, &ds, &hash, &plan.create).await;
    let victims = owner::named(&pods, &plan.delete);
    act.delete_pods(exp, &victims, "Error deleting pod").await;
    delete_orphaned(&act, &owner::named(&pods, &plan.orphaned)).await;
    let status = json(&plan.status);
    owner::put_status(client, "apps/v1", "daemonsets", raw, status).await;
    let min_ready = spec(&ds).min_ready_seconds.unwrap_or(0);
    (min_ready > 0).then(|| Duration::from_secs(min_ready as u64 + 1))
}

/// Creates a daemon pod for each of `nodes`.
async fn create(
    act: &owner::Act<'_>,
    exp: &mut owner::Expectations,
    ds: &DaemonSet,
    hash: &str,
    nodes: &[String],
) {
    if nodes.is_empty() {
        return;
    }
    exp.expect_creates(act.key, nodes.len());
    let ns = ds.metadata.namespace.as_deref().unwrap_or("");
    let path = format!("/api/v1/namespaces/{ns}/pods");
    let bodies: Vec<Value> = nodes.iter().map(|n| json(&pod_for(ds, hash, n))).collect();
    let results = futures::future::join_all(bodies.iter().map(|b| {
        let ct = "application/json";
        owner::send(act.client, http::Method::POST, path.clone(), ct, b)
    }))
    .await;
    for (n, r) in nodes.iter().zip(results) {
        match r {
            Ok(p) => {
                let msg = format!("Created pod: {}", reflect::names(&p).1);
                act.event("Normal", "SuccessfulCreate", msg);
            }
            Err(e) => {
                exp.lower_creates(act.key, 1);
                let msg = format!("Error creating pod on node {n}: {e}");
                act.event("Warning", "FailedCreate", msg);
            }
        }
    }
}

/// Deletes pods on nodes that are gone: no kubelet is left to finish them (grace 0).
async fn delete_orphaned(act: &owner::Act<'_>, victims: &[Value]) {
    let results = owner::delete_pods_with(act.client, victims, Some(0)).await;
    for (p, r) in victims.iter().zip(results) {
        if r.is_ok() {
            let msg = format!("Deleted pod: {}", reflect::names(p).1);
            act.event("Normal", "SuccessfulDelete", msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(extra: Value) -> DaemonSet {
        crate::typed(&ds_json(extra)).unwrap()
    }

    fn ds_json(extra: Value) -> Value {
        let mut d = json!({"metadata": {"name": "log", "namespace": "kube-system", "uid": "ds-uid", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "log"}}, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "log"}}, "spec": {"containers": [{"name": "c", "image": "fluentd"}]}}}});
        for (k, v) in extra.as_object().unwrap() {
            d["spec"]["template"]["spec"][k] = v.clone();
        }
        d
    }

    fn node(n: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": n, "labels": labels}, "spec": {"taints": taints}})
    }

    fn pod(n: &str, node: &str, hash: &str, ready: bool) -> Value {
        let mut p = json!({"metadata": {"name": n, "uid": format!("{n}-uid"), "labels": {REVISION_HASH: hash}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": node}, "status": {"phase": "Running"}});
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        }
        p
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = ds(json!({"nodeSelector": {"disk": "ssd"}}));
        let a = node("a", json!({"disk": "ssd"}), json!([]));
        let b = node("b", json!({"disk": "hdd"}), json!([]));
        let c = node(
            "c",
            json!({"disk": "ssd"}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let unready = node(
            "d",
            json!({"disk": "ssd"}),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        let on_b = pod("x", "b", "h1", true);
        let p = reconcile(&d, "h1", &[&a, &b, &c, &unready], &[&on_b], now());
        assert_eq!(
            p.create,
            vec!["a", "d"],
            "not-ready is tolerated by default"
        );
        assert_eq!(p.delete, vec!["x"], "b no longer matches");
        assert_eq!(p.status.desired_number_scheduled, 2);
        assert_eq!(p.status.number_misscheduled, 1);
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_gone_nodes() {
        let d = ds(json!({}));
        let nodes: Vec<Value> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, json!({}), json!([])))
            .collect();
        let pods = [
            pod("pa", "a", "old", true),
            pod("pb", "b", "old", true),
            pod("pc", "c", "old", true),
            pod("pz", "gone", "new", true),
        ];
        let nrefs: Vec<&Value> = nodes.iter().collect();
        let prefs: Vec<&Value> = pods.iter().collect();
        let p = reconcile(&d, "new", &nrefs, &prefs, now());
        assert_eq!(p.delete, vec!["pa"], "one old pod at a time");
        assert_eq!(p.orphaned, vec!["pz"], "the one on a gone node");
        assert_eq!(p.status.updated_number_scheduled, Some(0));
        let mut on_delete = ds_json(json!({}));
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        let on_delete: DaemonSet = crate::typed(&on_delete).unwrap();
        assert_eq!(
            reconcile(&on_delete, "new", &nrefs, &prefs[..3], now()).delete,
            Vec::<String>::new()
        );
    }

    #[test]
    fn daemon_pods_are_pinned_and_tolerant() {
        let p = json(&pod_for(&ds(json!({})), "h1", "node-1"));
        let pin = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0];
        assert_eq!(pin["values"][0], "node-1");
        assert_eq!(p["metadata"]["labels"][REVISION_HASH], "h1");
        let keys: Vec<&str> = p["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["key"].as_str())
            .collect();
        assert!(
            keys.contains(&"node.kubernetes.io/unreachable")
                && keys.contains(&"node.kubernetes.io/unschedulable")
        );
        let cr = crate::revisions::revision_for(&ds_json(json!({})), "DaemonSet", "h1", 2);
        assert_eq!(cr["metadata"]["name"], "log-h1");
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
    }

    #[test]
    fn max_unavailable_is_of_the_desired_pods_rounded_up() {
        let with = |v: Value| {
            let mut d = ds_json(json!({}));
            d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = v;
            crate::typed::<DaemonSet>(&d).unwrap()
        };
        assert_eq!(max_unavailable(&with(json!("50%")), 3), 2);
        assert_eq!(max_unavailable(&with(json!("10%")), 3), 1);
        assert_eq!(max_unavailable(&with(json!(2)), 3), 2);
        assert_eq!(max_unavailable(&with(Value::Null), 3), 1, "the default");
    }

    #[test]
    fn an_unbound_daemon_pod_is_counted_on_its_pinned_node() {
        let p = json(&pod_for(&ds(json!({})), "h1", "node-1"));
        assert_eq!(node_of(&p), "node-1");
        let mut bound = p.clone();
        bound["spec"]["nodeName"] = json!("node-2");
        assert_eq!(node_of(&bound), "node-2");
    }
}
