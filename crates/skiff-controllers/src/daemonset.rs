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
use serde_json::{Value, json};
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
pub fn default_tolerations(host_network: bool) -> Vec<Value> {
    let mut t = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

fn tolerations(spec: &Value) -> Vec<Value> {
    let mut t: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for d in default_tolerations(spec["hostNetwork"] == true) {
        if !t
            .iter()
            .any(|x| x["key"] == d["key"] && x["effect"] == d["effect"])
        {
            t.push(d);
        }
    }
    t
}

/// (may a new daemon pod go there, may an existing one stay) for `node`.
pub fn eligibility(ds: &Value, node: &Value) -> (bool, bool) {
    let spec = &ds["spec"]["template"]["spec"];
    let info = NodeInfo::from_json(node);
    let selector_ok = spec["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| info.labels.get(k).map(String::as_str) == v.as_str());
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array();
    let affinity_ok = terms.is_none_or(|ts| ts.iter().any(|t| term_matches(t, &info)));
    if !(selector_ok && affinity_ok) {
        return (false, false);
    }
    let tol = tolerations(spec);
    let untolerated = |effect: &str| {
        info.taints
            .iter()
            .any(|t| t["effect"] == effect && !tolerated(&tol, t))
    };
    let stay = !untolerated("NoExecute");
    (stay && !untolerated("NoSchedule"), stay)
}

fn pod_hash(p: &Value) -> &str {
    p["metadata"]["labels"][REVISION_HASH]
        .as_str()
        .unwrap_or("")
}

fn node_of(p: &Value) -> String {
    // Bound, or pinned by the node affinity this controller wrote.
    if let Some(n) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    pub delete: Vec<String>,
    /// Pods on nodes that no longer exist: deleted at once (grace 0).
    pub orphaned: Vec<String>,
    pub status: Value,
}

/// One sync of `ds` (current template hash `hash`) over all nodes and its pods.
pub fn reconcile(
    ds: &Value,
    hash: &str,
    nodes: &[&Value],
    pods: &[&Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for p in pods {
        if p["metadata"]["deletionTimestamp"].is_null() {
            by_node.entry(node_of(p)).or_default().push(p);
        }
    }
    let known: HashSet<String> = nodes.iter().map(|n| name(n)).collect();
    // Pods on nodes that are gone, terminating or not.
    for p in pods {
        let n = node_of(p);
        if !n.is_empty() && !known.contains(&n) {
            plan.orphaned.push(name(p));
        }
    }
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
        (0, 0, 0, 0, 0, 0);
    let rolling = ds["spec"]["updateStrategy"]["type"] != "OnDelete";
    let max_unavailable = {
        let v = &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"];
        let total = nodes.len() as i64;
        match v {
            Value::String(s) if s.ends_with('%') => {
                (s.trim_end_matches('%').parse::<i64>().unwrap_or(0) * total / 100).max(1)
            }
            Value::Null => 1,
            v => v.as_i64().unwrap_or(1).max(0),
        }
    };
    let mut old_available: Vec<(String, String)> = Vec::new();
    let mut unavailable_now = 0;
    for node in nodes {
        let n = name(node);
        let (schedule, stay) = eligibility(ds, node);
        let mut here: Vec<&Value> = by_node.get(&n).cloned().unwrap_or_default();
        // Failed daemon pods are replaced.
        for p in here.iter().filter(|p| p["status"]["phase"] == "Failed") {
            plan.delete.push(name(p));
        }
        here.retain(|p| p["status"]["phase"] != "Failed" && p["status"]["phase"] != "Succeeded");
        if schedule {
            desired += 1;
        }
        if !stay {
            if !here.is_empty() {
                misscheduled += 1;
            }
            plan.delete.extend(here.iter().map(|p| name(p)));
            continue;
        }
        if here.is_empty() {
            if schedule {
                plan.create.push(n.clone());
                unavailable_now += 1;
            }
            continue;
        }
        if !schedule {
            // Staying where a new one could not go (a NoSchedule taint came later).
            misscheduled += 1;
        } else {
            current += 1;
        }
        // One per node: the oldest stays.
        here.sort_by_key(|p| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
        plan.delete.extend(here.iter().skip(1).map(|p| name(p)));
        let p = here[0];
        let f = PodFacts::of(p);
        let (is_ready, avail) = (f.is_ready(), f.is_available(min_ready, now));
        if is_ready {
            ready += 1;
        }
        if avail {
            available += 1;
        } else {
            unavailable_now += 1;
        }
        if pod_hash(p) == hash {
            updated += 1;
        } else if rolling {
            if avail {
                old_available.push((n.clone(), name(p)));
            } else {
                // Not serving anyway: replace it at once.
                plan.delete.push(name(p));
            }
        }
    }
    // RollingUpdate: old available pods go while the unavailable budget allows.
    let budget = (max_unavailable - unavailable_now).max(0) as usize;
    plan.delete
        .extend(old_available.into_iter().take(budget).map(|(_, p)| p));
    plan.delete.sort();
    plan.delete.dedup();
    plan.status = json!({
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": (desired - available).max(0),
        "observedGeneration": ds["metadata"]["generation"].as_i64().unwrap_or(0),
    });
    if let Some(c) = ds["status"]["collisionCount"].as_i64() {
        plan.status["collisionCount"] = json!(c);
    }
    plan
}

/// The daemon pod for `node`.
pub fn pod_for(ds: &Value, hash: &str, node: &str) -> Value {
    let t = &ds["spec"]["template"];
    let mut labels = t["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION_HASH] = json!(hash);
    labels["pod-template-generation"] = json!(
        ds["metadata"]["generation"]
            .as_i64()
            .unwrap_or(1)
            .to_string()
    );
    let mut meta = json!({
        "generateName": format!("{}-", name(ds)),
        "namespace": ds["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner::controller_ref("apps/v1", "DaemonSet", ds)],
    });
    if t["metadata"]["annotations"].is_object() {
        meta["annotations"] = t["metadata"]["annotations"].clone();
    }
    let mut spec = t["spec"].clone();
    spec["tolerations"] = json!(tolerations(&t["spec"]));
    // Only this node: matchFields replaces any node-name terms, as Kubernetes does.
    let pin = json!({"key": "metadata.name", "operator": "In", "values": [node]});
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let terms: Vec<Value> = if terms.is_empty() {
        vec![json!({"matchFields": [pin]})]
    } else {
        terms
            .into_iter()
            .map(|mut t| {
                t["matchFields"] = json!([pin.clone()]);
                t
            })
            .collect()
    };
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": terms});
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
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
    ds: &Value,
) -> Option<Duration> {
    let ns = ds["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let hash = template_hash(
        &ds["spec"]["template"],
        ds["status"]["collisionCount"].as_i64().unwrap_or(0),
    );
    let selector = claim::OwnerSelector::of(ds);
    let Some(pods) = st
        .pods
        .claim_for(client, ds, &KIND, |p| selector.selects(p))
        .await
    else {
        return Some(ADOPTION_RETRY);
    };
    if ds["metadata"]["deletionTimestamp"].is_null() {
        let in_use: HashSet<String> = pods.iter().map(|p| pod_hash(p).to_string()).collect();
        crate::revisions::ensure(client, &mut st.revisions, ds, "DaemonSet", &hash, &in_use).await;
    }
    let nodes: Vec<Arc<Value>> = st.nodes.values().cloned().collect();
    let (nrefs, prefs): (Vec<&Value>, Vec<&Value>) =
        (nodes.iter().map(|n| &**n).collect(), pods.iter().collect());
    let mut plan = reconcile(ds, &hash, &nrefs, &prefs, chrono::Utc::now());
    if !ds["metadata"]["deletionTimestamp"].is_null() {
        plan.create.clear();
    }
    if !plan.create.is_empty() {
        exp.expect_creates(key, plan.create.len());
        let bodies: Vec<Value> = plan.create.iter().map(|n| pod_for(ds, &hash, n)).collect();
        let results = futures::future::join_all(bodies.iter().map(|b| {
            owner::send(
                client,
                http::Method::POST,
                format!("/api/v1/namespaces/{ns}/pods"),
                "application/json",
                b,
            )
        }))
        .await;
        for (n, r) in plan.create.iter().zip(results) {
            match r {
                Ok(p) => recorder.record(
                    ds,
                    "Normal",
                    "SuccessfulCreate",
                    format!("Created pod: {}", name(&p)),
                ),
                Err(e) => {
                    exp.lower_creates(key, 1);
                    recorder.record(
                        ds,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating pod on node {n}: {e}"),
                    );
                }
            }
        }
    }
    if !plan.delete.is_empty() {
        let victims = owner::named(&pods, &plan.delete);
        exp.expect_deletes(
            key,
            victims
                .iter()
                .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string)),
        );
        for (p, r) in victims
            .iter()
            .zip(owner::delete_pods(client, &victims).await)
        {
            match r {
                Ok(()) => recorder.record(
                    ds,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name(p)),
                ),
                Err(e) => {
                    exp.observed_delete(key, p["metadata"]["uid"].as_str().unwrap_or(""));
                    recorder.record(
                        ds,
                        "Warning",
                        "FailedDelete",
                        format!("Error deleting pod: {e}"),
                    );
                }
            }
        }
    }
    if !plan.orphaned.is_empty() {
        let victims = owner::named(&pods, &plan.orphaned);
        for (p, r) in victims
            .iter()
            .zip(owner::delete_pods_with(client, &victims, Some(0)).await)
        {
            if r.is_ok() {
                recorder.record(
                    ds,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name(p)),
                );
            }
        }
    }
    owner::put_status(client, "apps/v1", "daemonsets", ds, plan.status).await;
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    (min_ready > 0).then(|| Duration::from_secs(min_ready as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(extra: Value) -> Value {
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
        assert_eq!(p.status["desiredNumberScheduled"], 2);
        assert_eq!(p.status["numberMisscheduled"], 1);
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
        assert_eq!(p.status["updatedNumberScheduled"], 0);
        let mut on_delete = d.clone();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert_eq!(
            reconcile(&on_delete, "new", &nrefs, &prefs[..3], now()).delete,
            Vec::<String>::new()
        );
    }

    #[test]
    fn daemon_pods_are_pinned_and_tolerant() {
        let p = pod_for(&ds(json!({})), "h1", "node-1");
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
        let cr = crate::revisions::revision_for(&ds(json!({})), "DaemonSet", "h1", 2);
        assert_eq!(cr["metadata"]["name"], "log-h1");
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
    }
}
