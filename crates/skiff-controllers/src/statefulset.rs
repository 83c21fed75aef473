//! The StatefulSet controller, as Kubernetes': stable pod names `<set>-<ordinal>` with
//! hostname and subdomain (the headless Service), one PersistentVolumeClaim per
//! volumeClaimTemplate and pod (`<claim>-<set>-<ordinal>`, kept when pods go),
//! OrderedReady (one at a time, each Running and Ready before the next; scale-down from
//! the highest ordinal) or Parallel pod management, and RollingUpdate from the highest
//! ordinal down to `partition`, or OnDelete. Template history is in ControllerRevisions;
//! pods are labelled with the revision's name.
//!
//! `reconcile` is the pure decision; `run` keeps StatefulSets and their pods and acts.

use crate::claim::{self, ADOPTION_RETRY};
use crate::control;
use crate::deployment::template_hash;
use crate::owner;
use crate::podfacts::PodFacts;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::informer::View;
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// A pod's ordinal in `set`, from its name.
pub fn ordinal(set: &Value, pod: &Value) -> Option<i64> {
    name(pod)
        .strip_prefix(&format!("{}-", name(set)))?
        .parse()
        .ok()
}

fn running_and_ready(p: &Value) -> bool {
    let f = PodFacts::of(p);
    f.phase() == "Running" && f.is_ready() && !f.deleting()
}

fn revision_of(p: &Value) -> &str {
    p["metadata"]["labels"][REVISION_LABEL]
        .as_str()
        .unwrap_or("")
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Ordinals to create, with the revision (name) whose template each gets.
    pub create: Vec<(i64, String)>,
    pub delete: Vec<String>,
    pub status: Value,
}

/// One sync of `set`: `update` is the revision of its template, `current` the one the
/// set last completed a rollout at.
pub fn reconcile(
    set: &Value,
    current: &str,
    update: &str,
    pods: &[&Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let start = set["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
    let ordered = set["spec"]["podManagementPolicy"] != "Parallel";
    let rolling = set["spec"]["updateStrategy"]["type"] != "OnDelete";
    let partition = set["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        .as_i64()
        .unwrap_or(0);
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let by_ord: BTreeMap<i64, &Value> = pods
        .iter()
        .filter_map(|p| Some((ordinal(set, p)?, *p)))
        .collect();
    let in_range = |o: i64| o >= start && o < start + replicas;
    let deleting = !set["metadata"]["deletionTimestamp"].is_null();

    // Creation and replacement, in ordinal order.
    let mut blocked = false;
    for o in start..start + replicas {
        if deleting {
            break;
        }
        match by_ord.get(&o) {
            None => {
                if blocked {
                    break;
                }
                let rev = if rolling && o < partition && !current.is_empty() {
                    current
                } else {
                    update
                };
                plan.create.push((o, rev.to_string()));
                if ordered {
                    blocked = true;
                }
            }
            Some(p) if matches!(p["status"]["phase"].as_str(), Some("Failed" | "Succeeded")) => {
                // Ended pods are replaced (deleted now, made again next time).
                if p["metadata"]["deletionTimestamp"].is_null() {
                    plan.delete.push(name(p));
                }
                if ordered {
                    blocked = true;
                }
            }
            Some(p) => {
                if ordered && !running_and_ready(p) {
                    blocked = true;
                }
            }
        }
    }
    // Scale-down: from the highest ordinal, one at a time when ordered, and only while
    // nothing below is unhealthy.
    let condemned: Vec<&Value> = by_ord
        .iter()
        .rev()
        .filter(|(o, _)| !in_range(**o))
        .map(|(_, p)| *p)
        .collect();
    if !blocked {
        for p in condemned {
            if !p["metadata"]["deletionTimestamp"].is_null() {
                if ordered {
                    blocked = true;
                    break;
                }
                continue;
            }
            plan.delete.push(name(p));
            if ordered {
                blocked = true;
                break;
            }
        }
    }
    // RollingUpdate: the highest out-of-date ordinal at or above the partition, once
    // everything is up.
    let all_up =
        (start..start + replicas).all(|o| by_ord.get(&o).is_some_and(|p| running_and_ready(p)));
    if rolling
        && !blocked
        && all_up
        && plan.create.is_empty()
        && plan.delete.is_empty()
        && let Some(p) = (start..start + replicas)
            .rev()
            .filter(|o| *o >= partition)
            .filter_map(|o| by_ord.get(&o))
            .find(|p| revision_of(p) != update)
    {
        plan.delete.push(name(p));
    }

    let live: Vec<&Value> = by_ord
        .iter()
        .filter(|(o, p)| in_range(**o) && p["metadata"]["deletionTimestamp"].is_null())
        .map(|(_, p)| *p)
        .collect();
    let updated = live.iter().filter(|p| revision_of(p) == update).count() as i64;
    let ready = live.iter().filter(|p| PodFacts::of(p).is_ready()).count() as i64;
    // The rollout is complete when every replica runs the update revision and is ready.
    let current_rev = if (updated == replicas && ready == replicas) || current.is_empty() {
        update.to_string()
    } else {
        current.to_string()
    };
    plan.status = json!({
        "observedGeneration": set["metadata"]["generation"].as_i64().unwrap_or(0),
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": live.iter().filter(|p| PodFacts::of(p).is_available(min_ready, now)).count(),
        "currentReplicas": live.iter().filter(|p| revision_of(p) == current_rev).count(),
        "updatedReplicas": updated,
        "currentRevision": current_rev,
        "updateRevision": update,
        "collisionCount": set["status"]["collisionCount"].as_i64().unwrap_or(0),
    });
    plan
}

/// The claim names of pod `pod_name` (one per volumeClaimTemplate).
pub fn claims(set: &Value, pod_name: &str) -> Vec<(String, Value)> {
    set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let claim = format!(
                "{}-{pod_name}",
                t["metadata"]["name"].as_str().unwrap_or("")
            );
            (claim, t.clone())
        })
        .collect()
}

/// Pod `ordinal` from `template` (the set's, or an older revision's), at `revision`.
pub fn pod_for(set: &Value, template: &Value, revision: &str, ordinal: i64) -> Value {
    let pod_name = format!("{}-{ordinal}", name(set));
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(pod_name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[REVISION_LABEL] = json!(revision);
    let mut meta = json!({
        "name": pod_name,
        "namespace": set["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner::controller_ref("apps/v1", "StatefulSet", set)],
    });
    if template["metadata"]["annotations"].is_object() {
        meta["annotations"] = template["metadata"]["annotations"].clone();
    }
    let mut spec = template["spec"].clone();
    spec["hostname"] = json!(pod_name);
    if let Some(svc) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        spec["subdomain"] = json!(svc);
    }
    let mut volumes: Vec<Value> = spec["volumes"].as_array().cloned().unwrap_or_default();
    for (claim, t) in claims(set, &pod_name) {
        let vol = t["metadata"]["name"].clone();
        volumes.retain(|v| v["name"] != vol);
        volumes.push(json!({"name": vol, "persistentVolumeClaim": {"claimName": claim}}));
    }
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// The claim for a pod, labelled with the set's selector.
pub fn claim_for(set: &Value, claim: &str, template: &Value) -> Value {
    let mut meta = json!({
        "name": claim,
        "namespace": set["metadata"]["namespace"],
        "labels": set["spec"]["selector"]["matchLabels"].clone(),
    });
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        meta["annotations"] = json!(a);
    }
    // whenDeleted: Delete makes the claim the set's, so the collector takes it along.
    if set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete" {
        meta["ownerReferences"] = json!([owner::controller_ref("apps/v1", "StatefulSet", set)]);
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": template["spec"]})
}

struct State {
    sets: HashMap<String, Arc<Value>>,
    /// Pods with a StatefulSet controller, and orphans (to adopt).
    pods: claim::Pods,
    revisions: HashMap<String, Arc<Value>>,
}

/// A set claims the pods its selector matches that are named as its members
/// (`<set>-<ordinal>`), as Kubernetes' `isMemberOf`.
fn is_member(set: &Value, pod: &Value) -> bool {
    ordinal(set, pod).is_some() && claim::selects(set, pod)
}

const KIND: claim::OwnerKind = claim::OwnerKind {
    api_version: "apps/v1",
    kind: "StatefulSet",
    plural: "statefulsets",
};

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/apps/v1/statefulsets"),
        informers.watch_view(
            "/api/v1/pods",
            View::only(|p| claim::owned_by_or_orphan(p, "StatefulSet")),
        ),
        informers.watch("/apis/apps/v1/controllerrevisions"),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "statefulset-controller"),
        client,
        st: State {
            sets: HashMap::new(),
            pods: claim::Pods::default(),
            revisions: HashMap::new(),
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
    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
        &mut self.st.sets
    }

    fn observe(&mut self, source: usize, c: Change, dirty: &mut control::Dirty) {
        match source {
            1 => self
                .st
                .pods
                .apply(c, "StatefulSet", &self.st.sets, is_member, dirty, None),
            _ => reflect::apply_to(&mut self.st.revisions, c),
        }
    }

    async fn sync(&mut self, _key: &str, set: Option<Arc<Value>>) -> Option<Duration> {
        sync(&self.client, &self.recorder, &mut self.st, &*set?).await
    }
}

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    set: &Value,
) -> Option<Duration> {
    let ns = set["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let hash = template_hash(
        &set["spec"]["template"],
        set["status"]["collisionCount"].as_i64().unwrap_or(0),
    );
    let update = format!("{}-{hash}", name(set));
    let selector = claim::OwnerSelector::of(set);
    let Some(pods) = st
        .pods
        .claim_for(client, set, &KIND, |p| {
            ordinal(set, p).is_some() && selector.selects(p)
        })
        .await
    else {
        return Some(ADOPTION_RETRY);
    };
    if set["metadata"]["deletionTimestamp"].is_null() {
        let prefix = format!("{}-", name(set));
        let in_use: HashSet<String> = pods
            .iter()
            .map(|p| revision_of(p).trim_start_matches(&prefix).to_string())
            .collect();
        crate::revisions::ensure(
            client,
            &mut st.revisions,
            set,
            "StatefulSet",
            &hash,
            &in_use,
        )
        .await;
    }
    let current = set["status"]["currentRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let refs: Vec<&Value> = pods.iter().collect();
    let plan = reconcile(set, &current, &update, &refs, chrono::Utc::now());
    for (ordinal, revision) in &plan.create {
        // An older revision's template, for ordinals below the partition.
        let template = if *revision == update {
            set["spec"]["template"].clone()
        } else {
            st.revisions
                .get(&format!("{ns}/{revision}"))
                .map(|r| {
                    let mut t = r["data"]["spec"]["template"].clone();
                    t.as_object_mut().map(|m| m.remove("$patch"));
                    t
                })
                .unwrap_or_else(|| set["spec"]["template"].clone())
        };
        let pod = pod_for(set, &template, revision, *ordinal);
        let pod_name = name(&pod);
        for (claim, t) in claims(set, &pod_name) {
            match owner::send(
                client,
                http::Method::POST,
                format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
                "application/json",
                &claim_for(set, &claim, &t),
            )
            .await
            {
                Ok(_) => recorder.record(
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    format!(
                        "create Claim {claim} Pod {pod_name} in StatefulSet {} success",
                        name(set)
                    ),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    recorder.record(set, "Warning", "FailedCreate", format!("create Claim {claim} for Pod {pod_name} in StatefulSet {} failed error: {e}", name(set)));
                    return Some(Duration::from_secs(5));
                }
            }
        }
        match owner::send(
            client,
            http::Method::POST,
            format!("/api/v1/namespaces/{ns}/pods"),
            "application/json",
            &pod,
        )
        .await
        {
            Ok(_) => recorder.record(
                set,
                "Normal",
                "SuccessfulCreate",
                format!(
                    "create Pod {pod_name} in StatefulSet {} successful",
                    name(set)
                ),
            ),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => recorder.record(
                set,
                "Warning",
                "FailedCreate",
                format!(
                    "create Pod {pod_name} in StatefulSet {} failed error: {e}",
                    name(set)
                ),
            ),
        }
    }
    let victims = owner::named(&pods, &plan.delete);
    for (p, r) in victims
        .iter()
        .zip(owner::delete_pods(client, &victims).await)
    {
        if r.is_ok() {
            recorder.record(
                set,
                "Normal",
                "SuccessfulDelete",
                format!(
                    "delete Pod {} in StatefulSet {} successful",
                    name(p),
                    name(set)
                ),
            );
        }
    }
    owner::put_status(client, "apps/v1", "statefulsets", set, plan.status).await;
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    (min_ready > 0).then(|| Duration::from_secs(min_ready as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(extra: Value) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1},
            "spec": {"replicas": 3, "serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
        for (k, v) in extra.as_object().unwrap() {
            s["spec"][k] = v.clone();
        }
        s
    }

    fn pod(n: i64, rev: &str, ready: bool) -> Value {
        let mut p = json!({"metadata": {"name": format!("web-{n}"), "uid": format!("u{n}"), "labels": {REVISION_LABEL: rev}},
            "status": {"phase": "Running"}});
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        }
        p
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = set(json!({}));
        let p = reconcile(&s, "", "web-r1", &[], now());
        assert_eq!(p.create, vec![(0, "web-r1".to_string())]);
        let p0 = pod(0, "web-r1", false);
        assert!(
            reconcile(&s, "", "web-r1", &[&p0], now()).create.is_empty(),
            "web-0 is not ready yet"
        );
        let p0 = pod(0, "web-r1", true);
        assert_eq!(
            reconcile(&s, "", "web-r1", &[&p0], now()).create,
            vec![(1, "web-r1".to_string())]
        );
        let par = set(json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(reconcile(&par, "", "web-r1", &[], now()).create.len(), 3);
    }

    #[test]
    fn scale_down_from_the_top_and_roll_from_the_top() {
        let s = set(json!({"replicas": 1}));
        let pods: Vec<Value> = (0..3).map(|n| pod(n, "web-r1", true)).collect();
        let refs: Vec<&Value> = pods.iter().collect();
        assert_eq!(
            reconcile(&s, "web-r1", "web-r1", &refs, now()).delete,
            vec!["web-2"]
        );
        let s = set(json!({}));
        let p = reconcile(&s, "web-r1", "web-r2", &refs, now());
        assert_eq!(p.delete, vec!["web-2"]);
        assert_eq!(p.status["currentRevision"], "web-r1");
        // With partition 2, web-1 and web-0 stay at r1.
        let s = set(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        );
        let mixed = [
            pod(0, "web-r1", true),
            pod(1, "web-r1", true),
            pod(2, "web-r2", true),
        ];
        let refs: Vec<&Value> = mixed.iter().collect();
        let p = reconcile(&s, "web-r1", "web-r2", &refs, now());
        assert!(p.delete.is_empty());
        assert_eq!(p.status["updatedReplicas"], 1);
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let s = set(json!({}));
        let p = pod_for(&s, &s["spec"]["template"], "web-r1", 2);
        assert_eq!(p["metadata"]["name"], "web-2");
        assert_eq!(p["spec"]["hostname"], "web-2");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "www-web-2"
        );
        let c = claim_for(&s, "www-web-2", &s["spec"]["volumeClaimTemplates"][0]);
        assert_eq!(c["metadata"]["labels"]["app"], "nginx");
        assert!(
            c["metadata"]["ownerReferences"].is_null(),
            "claims outlive the set by default"
        );
    }
}
