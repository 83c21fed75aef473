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
use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
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

fn name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

fn spec(set: &StatefulSet) -> &StatefulSetSpec {
    static EMPTY: std::sync::LazyLock<StatefulSetSpec> = std::sync::LazyLock::new(Default::default);
    set.spec.as_ref().unwrap_or(&EMPTY)
}

/// A pod's ordinal in `set`, from its name.
pub fn ordinal(set: &StatefulSet, pod: &Value) -> Option<i64> {
    ordinal_in(name(set), pod)
}

fn ordinal_in(set_name: &str, pod: &Value) -> Option<i64> {
    let pod = PodFacts::of(pod).metadata.name;
    pod.strip_prefix(set_name)?.strip_prefix('-')?.parse().ok()
}

fn running_and_ready(f: &PodFacts) -> bool {
    f.phase() == "Running" && f.is_ready() && !f.deleting()
}

fn revision_of<'a>(f: &PodFacts<'a>) -> &'a str {
    f.labels()
        .find(|(k, _)| *k == REVISION_LABEL)
        .map_or("", |(_, v)| v)
}

/// What a sync does with a StatefulSet's rollout settings.
struct Settings {
    replicas: i64,
    start: i64,
    ordered: bool,
    rolling: bool,
    partition: i64,
    min_ready: i64,
}

impl Settings {
    fn of(set: &StatefulSet) -> Settings {
        let s = spec(set);
        let strategy = s.update_strategy.as_ref();
        let rolling_update = strategy.and_then(|u| u.rolling_update.as_ref());
        Settings {
            replicas: s.replicas.map_or(1, i64::from).max(0),
            start: s
                .ordinals
                .as_ref()
                .and_then(|o| o.start)
                .map_or(0, i64::from),
            ordered: s.pod_management_policy.as_deref() != Some("Parallel"),
            rolling: strategy.and_then(|u| u.type_.as_deref()) != Some("OnDelete"),
            partition: rolling_update
                .and_then(|r| r.partition)
                .map_or(0, i64::from),
            min_ready: s.min_ready_seconds.map_or(0, i64::from),
        }
    }

    fn in_range(&self, o: i64) -> bool {
        o >= self.start && o < self.start + self.replicas
    }

    fn ordinals(&self) -> std::ops::Range<i64> {
        self.start..self.start + self.replicas
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Ordinals to create, with the revision (name) whose template each gets.
    pub create: Vec<(i64, String)>,
    pub delete: Vec<String>,
    pub status: StatefulSetStatus,
}

/// One sync of `set`: `update` is the revision of its template, `current` the one the
/// set last completed a rollout at.
pub fn reconcile(
    set: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[&Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let cfg = Settings::of(set);
    let by_ord: BTreeMap<i64, PodFacts> = pods
        .iter()
        .filter_map(|p| Some((ordinal(set, p)?, PodFacts::of(p))))
        .collect();
    let mut plan = Plan::default();
    let mut blocked = false;
    if set.metadata.deletion_timestamp.is_none() {
        blocked = create_or_replace(&cfg, &by_ord, current, update, &mut plan);
    }
    if !blocked {
        blocked = scale_down(&cfg, &by_ord, &mut plan);
    }
    // RollingUpdate: the highest out-of-date ordinal at or above the partition, once
    // everything is up.
    let all_up = cfg
        .ordinals()
        .all(|o| by_ord.get(&o).is_some_and(running_and_ready));
    if cfg.rolling
        && !blocked
        && all_up
        && plan.create.is_empty()
        && plan.delete.is_empty()
        && let Some(p) = cfg
            .ordinals()
            .rev()
            .filter(|o| *o >= cfg.partition)
            .filter_map(|o| by_ord.get(&o))
            .find(|p| revision_of(p) != update)
    {
        plan.delete.push(p.metadata.name.to_string());
    }
    plan.status = status(set, &cfg, &by_ord, current, update, now);
    plan
}

/// Creation and replacement, in ordinal order; whether an ordered set must wait.
fn create_or_replace(
    cfg: &Settings,
    by_ord: &BTreeMap<i64, PodFacts>,
    current: &str,
    update: &str,
    plan: &mut Plan,
) -> bool {
    let mut blocked = false;
    for o in cfg.ordinals() {
        match by_ord.get(&o) {
            None => {
                if blocked {
                    break;
                }
                let rev = if cfg.rolling && o < cfg.partition && !current.is_empty() {
                    current
                } else {
                    update
                };
                plan.create.push((o, rev.to_string()));
                blocked |= cfg.ordered;
            }
            Some(p) if matches!(p.phase(), "Failed" | "Succeeded") => {
                // Ended pods are replaced (deleted now, made again next time).
                if !p.deleting() {
                    plan.delete.push(p.metadata.name.to_string());
                }
                blocked |= cfg.ordered;
            }
            Some(p) => blocked |= cfg.ordered && !running_and_ready(p),
        }
    }
    blocked
}

/// Scale-down: from the highest ordinal, one at a time when ordered; whether an
/// ordered set must wait.
fn scale_down(cfg: &Settings, by_ord: &BTreeMap<i64, PodFacts>, plan: &mut Plan) -> bool {
    let condemned = by_ord.iter().rev().filter(|(o, _)| !cfg.in_range(**o));
    for (_, p) in condemned {
        if !p.deleting() {
            plan.delete.push(p.metadata.name.to_string());
        }
        if cfg.ordered {
            return true;
        }
    }
    false
}

fn status(
    set: &StatefulSet,
    cfg: &Settings,
    by_ord: &BTreeMap<i64, PodFacts>,
    current: &str,
    update: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> StatefulSetStatus {
    let live: Vec<&PodFacts> = by_ord
        .iter()
        .filter(|(o, p)| cfg.in_range(**o) && !p.deleting())
        .map(|(_, p)| p)
        .collect();
    let at = |rev: &str| live.iter().filter(|p| revision_of(p) == rev).count();
    let updated = at(update) as i64;
    let ready = live.iter().filter(|p| p.is_ready()).count();
    // The rollout is complete when every replica runs the update revision and is ready.
    let done = updated == cfg.replicas && ready as i64 == cfg.replicas;
    let current_rev = if done || current.is_empty() {
        update
    } else {
        current
    };
    let available = live.iter().filter(|p| p.is_available(cfg.min_ready, now));
    StatefulSetStatus {
        observed_generation: Some(set.metadata.generation.unwrap_or(0)),
        replicas: crate::int32(live.len()),
        ready_replicas: Some(crate::int32(ready)),
        available_replicas: Some(crate::int32(available.count())),
        current_replicas: Some(crate::int32(at(current_rev))),
        updated_replicas: Some(crate::int32(updated)),
        current_revision: Some(current_rev.to_string()),
        update_revision: Some(update.to_string()),
        collision_count: Some(
            set.status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0),
        ),
        ..Default::default()
    }
}

/// The claim names of pod `pod_name` (one per volumeClaimTemplate), with the template
/// each comes from.
pub fn claims<'a>(
    set: &'a StatefulSet,
    pod_name: &str,
) -> Vec<(String, &'a PersistentVolumeClaim)> {
    let templates = spec(set).volume_claim_templates.as_deref().unwrap_or(&[]);
    templates
        .iter()
        .map(|t| {
            let template = t.metadata.name.as_deref().unwrap_or("");
            (format!("{template}-{pod_name}"), t)
        })
        .collect()
}

/// Pod `ordinal` from `template` (the set's, or an older revision's), at `revision`.
pub fn pod_for(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i64) -> Pod {
    let pod_name = format!("{}-{ordinal}", name(set));
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(pod_name.clone());
    let service = spec(set).service_name.as_deref().filter(|s| !s.is_empty());
    if let Some(svc) = service {
        pod_spec.subdomain = Some(svc.into());
    }
    let mut volumes = pod_spec.volumes.take().unwrap_or_default();
    for (claim, t) in claims(set, &pod_name) {
        let vol = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != vol);
        volumes.push(Volume {
            name: vol,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: None,
            }),
            ..Default::default()
        });
    }
    pod_spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![KIND.controller_ref(&set.metadata)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The claim for a pod, labelled with the set's selector.
pub fn claim_for(
    set: &StatefulSet,
    claim: &str,
    template: &PersistentVolumeClaim,
) -> PersistentVolumeClaim {
    let s = spec(set);
    let retention = s.persistent_volume_claim_retention_policy.as_ref();
    // whenDeleted: Delete makes the claim the set's, so the collector takes it along.
    let owned = retention.and_then(|r| r.when_deleted.as_deref()) == Some("Delete");
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim.into()),
            namespace: set.metadata.namespace.clone(),
            labels: s.selector.match_labels.clone(),
            annotations: template.metadata.annotations.clone(),
            owner_references: owned.then(|| vec![KIND.controller_ref(&set.metadata)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The template a ControllerRevision of a StatefulSet holds (its `data` is the patch
/// that restores the set's template).
fn revision_template(revision: &Value) -> Option<PodTemplateSpec> {
    #[derive(serde::Deserialize)]
    struct Data {
        spec: DataSpec,
    }
    #[derive(serde::Deserialize)]
    struct DataSpec {
        template: PodTemplateSpec,
    }
    let r: ControllerRevision = crate::typed(revision)?;
    let data = Data::deserialize(&r.data?.0).ok()?;
    Some(data.spec.template)
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
    ordinal_in(reflect::names(set).1, pod).is_some() && claim::selects(set, pod)
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
    raw: &Value,
) -> Option<Duration> {
    let set: StatefulSet = crate::typed(raw)?;
    let template = spec(&set).template.clone();
    let json = serde_json::to_value(&template).expect("a template serializes");
    let collisions = set.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&json, collisions.map_or(0, i64::from));
    let update = format!("{}-{hash}", name(&set));
    let selector = claim::OwnerSelector::of(raw);
    let Some(pods) = st
        .pods
        .claim_for(client, raw, &KIND, |p| {
            ordinal(&set, p).is_some() && selector.selects(p)
        })
        .await
    else {
        return Some(ADOPTION_RETRY);
    };
    if set.metadata.deletion_timestamp.is_none() {
        let prefix = format!("{}-", name(&set));
        let in_use: HashSet<String> = pods
            .iter()
            .map(|p| {
                revision_of(&PodFacts::of(p))
                    .trim_start_matches(&prefix)
                    .to_string()
            })
            .collect();
        let kind = "StatefulSet";
        crate::revisions::ensure(client, &mut st.revisions, raw, kind, &hash, &in_use).await;
    }
    let status = set.status.as_ref();
    let current = status
        .and_then(|s| s.current_revision.as_deref())
        .unwrap_or("");
    let refs: Vec<&Value> = pods.iter().collect();
    let plan = reconcile(&set, current, &update, &refs, chrono::Utc::now());
    let act = Act {
        client,
        recorder,
        raw,
        set: &set,
    };
    for (ordinal, revision) in &plan.create {
        // An older revision's template, for ordinals below the partition.
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let older = (*revision != update)
            .then(|| st.revisions.get(&format!("{ns}/{revision}")))
            .flatten()
            .and_then(|r| revision_template(r));
        let pod = pod_for(
            &set,
            older.as_ref().unwrap_or(&template),
            revision,
            *ordinal,
        );
        if let Some(retry) = act.create(pod).await {
            return Some(retry);
        }
    }
    act.delete(&owner::named(&pods, &plan.delete)).await;
    let status = serde_json::to_value(&plan.status).expect("a status serializes");
    owner::put_status(client, "apps/v1", "statefulsets", raw, status).await;
    let min_ready = Settings::of(&set).min_ready;
    (min_ready > 0).then(|| Duration::from_secs(min_ready as u64 + 1))
}

/// A sync's creations and deletions, recorded as events on the set.
struct Act<'a> {
    client: &'a kube::Client,
    recorder: &'a Recorder,
    raw: &'a Value,
    set: &'a StatefulSet,
}

impl Act<'_> {
    /// Creates the pod's claims, then the pod; when to retry if a claim could not be
    /// made.
    async fn create(&self, pod: Pod) -> Option<Duration> {
        let (set, ns) = (name(self.set), self.set.metadata.namespace.as_deref());
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        for (claim, t) in claims(self.set, &pod_name) {
            let body = claim_for(self.set, &claim, t);
            match self.post("persistentvolumeclaims", ns, &body).await {
                Ok(()) => self.event(
                    "Normal",
                    "SuccessfulCreate",
                    format!("create Claim {claim} Pod {pod_name} in StatefulSet {set} success"),
                ),
                Err(e) => {
                    let msg = format!(
                        "create Claim {claim} for Pod {pod_name} in StatefulSet {set} failed error: {e}"
                    );
                    self.event("Warning", "FailedCreate", msg);
                    return Some(Duration::from_secs(5));
                }
            }
        }
        match self.post("pods", ns, &pod).await {
            Ok(()) => self.event(
                "Normal",
                "SuccessfulCreate",
                format!("create Pod {pod_name} in StatefulSet {set} successful"),
            ),
            Err(e) => self.event(
                "Warning",
                "FailedCreate",
                format!("create Pod {pod_name} in StatefulSet {set} failed error: {e}"),
            ),
        }
        None
    }

    /// POSTs `body` to core collection `plural`; one that exists already is no error.
    async fn post(
        &self,
        plural: &str,
        ns: Option<&str>,
        body: &impl serde::Serialize,
    ) -> Result<(), kube::Error> {
        let path = format!("/api/v1/namespaces/{}/{plural}", ns.unwrap_or(""));
        let body = serde_json::to_value(body).expect("an object serializes");
        let ct = "application/json";
        match owner::send(self.client, http::Method::POST, path, ct, &body).await {
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            r => r.map(drop),
        }
    }

    async fn delete(&self, victims: &[Value]) {
        let results = owner::delete_pods(self.client, victims).await;
        for (p, r) in victims.iter().zip(results) {
            if r.is_ok() {
                let pod = PodFacts::of(p).metadata.name;
                let msg = format!(
                    "delete Pod {pod} in StatefulSet {} successful",
                    name(self.set)
                );
                self.event("Normal", "SuccessfulDelete", msg);
            }
        }
    }

    fn event(&self, kind: &'static str, reason: &'static str, message: String) {
        self.recorder.record(self.raw, kind, reason, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(extra: Value) -> StatefulSet {
        crate::typed(&set_json(extra)).unwrap()
    }

    fn set_json(extra: Value) -> Value {
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
        assert_eq!(p.status.current_revision.as_deref(), Some("web-r1"));
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
        assert_eq!(p.status.updated_replicas, Some(1));
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let s = set(json!({}));
        let p = serde_json::to_value(pod_for(&s, &spec(&s).template, "web-r1", 2)).unwrap();
        assert_eq!(p["metadata"]["name"], "web-2");
        assert_eq!(p["spec"]["hostname"], "web-2");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "www-web-2"
        );
        let template = &spec(&s).volume_claim_templates.as_ref().unwrap()[0];
        let c = serde_json::to_value(claim_for(&s, "www-web-2", template)).unwrap();
        assert_eq!(c["metadata"]["labels"]["app"], "nginx");
        assert!(
            c["metadata"]["ownerReferences"].is_null(),
            "claims outlive the set by default"
        );
    }

    #[test]
    fn an_older_revision_gives_back_its_template() {
        let s = set(json!({}));
        let raw = serde_json::to_value(&s).unwrap();
        let r = crate::revisions::revision_for(&raw, "StatefulSet", "h1", 1);
        assert_eq!(revision_template(&r), Some(spec(&s).template.clone()));
    }

    /// Sets made before the template was read through its type keep their revisions.
    #[test]
    fn the_typed_template_hashes_as_its_json() {
        let raw = set_json(json!({}));
        let typed = serde_json::to_value(&spec(&set(json!({}))).template).unwrap();
        assert_eq!(
            template_hash(&typed, 0),
            template_hash(&raw["spec"]["template"], 0)
        );
    }
}
