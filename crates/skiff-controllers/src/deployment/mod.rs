//! The Deployment controller, with Kubernetes' semantics: a ReplicaSet per pod
//! template (named and labelled by `pod-template-hash`), `revision` annotations,
//! RollingUpdate within maxSurge/maxUnavailable and Recreate, proportional scaling of a
//! rollout in flight, `paused`, the Progressing and Available conditions with
//! `progressDeadlineSeconds`, and `revisionHistoryLimit`. `kubectl rollout undo`,
//! `restart`, `set image` and `scale` need nothing more: they edit the Deployment, and
//! an existing ReplicaSet whose template matches becomes the new one again.
//!
//! The decisions (`rollout`, `status`) are pure over typed Deployments and
//! ReplicaSets; `run` keeps both from reflectors and applies what a sync plans.

mod hash;
mod rollout;
mod status;
#[cfg(test)]
mod tests;

pub use hash::template_hash;
pub use rollout::{
    fenceposts, history_to_delete, is_scaling_event, new_replica_set, new_rs_replicas,
    scale_down_old, scale_step, split,
};
pub use status::{status, timed_out};

use crate::claim;
use crate::control;
use crate::owner;
use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations that are the controller's own, not copied to ReplicaSets.
const NOT_COPIED: &[&str] = &[
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
];

type Annotations = BTreeMap<String, String>;

fn name<K: Metadata<Ty = ObjectMeta>>(o: &K) -> &str {
    o.metadata().name.as_deref().unwrap_or("")
}

fn annotation<'a, K: Metadata<Ty = ObjectMeta>>(o: &'a K, key: &str) -> Option<&'a str> {
    o.metadata()
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn created<K: Metadata<Ty = ObjectMeta>>(o: &K) -> Option<Timestamp> {
    o.metadata().creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, by name among equals.
fn age_key(rs: &ReplicaSet) -> (Option<Timestamp>, String) {
    (created(rs), name(rs).to_string())
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// spec.replicas (the API server defaults it to 1).
fn want(d: &Deployment) -> i64 {
    d.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, i64::from)
}

fn replicas(rs: &ReplicaSet) -> i64 {
    rs.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, i64::from)
}

fn available(rs: &ReplicaSet) -> i64 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .map_or(0, i64::from)
}

fn rs_template(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref()?.template.as_ref()
}

fn recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused) == Some(true)
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref()?.progress_deadline_seconds
}

fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn collision_count(d: &Deployment) -> i64 {
    d.status
        .as_ref()
        .and_then(|s| s.collision_count)
        .map_or(0, i64::from)
}

/// A pod count as the API's int32.
fn count(n: i64) -> i32 {
    n.clamp(0, i32::MAX.into()) as i32
}

struct State {
    deployments: HashMap<String, Arc<Value>>,
    sets: HashMap<String, Arc<Value>>,
}

impl State {
    /// The Deployment's ReplicaSets, typed for the decisions.
    fn sets_of(&self, d: &Deployment) -> Vec<ReplicaSet> {
        let uid = d.metadata.uid.as_deref().unwrap_or("");
        let ns = d.metadata.namespace.as_deref();
        self.sets
            .values()
            .filter(|rs| {
                reflect::names(&***rs).0 == ns
                    && owner::controller_of(rs).is_some_and(|c| c.uid == uid)
            })
            .filter_map(|rs| crate::typed(rs))
            .collect()
    }

    fn owner_key(&self, rs: &Value) -> Option<String> {
        let ns = reflect::names(rs).0.unwrap_or("");
        owner::controller_of(rs)
            .filter(|c| c.kind == "Deployment")
            .map(|c| format!("{ns}/{}", c.name))
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/apps/v1/deployments"),
        informers.watch("/apis/apps/v1/replicasets"),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        st: State {
            deployments: HashMap::new(),
            sets: HashMap::new(),
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
        &mut self.st.deployments
    }

    fn observe(&mut self, _sets: usize, c: Change, dirty: &mut control::Dirty) {
        set_change(&mut self.st, dirty, c);
    }

    async fn sync(&mut self, _key: &str, d: Option<Arc<Value>>) -> Option<Duration> {
        sync(&self.client, &self.recorder, &mut self.st, &*d?).await
    }
}

const KIND: claim::OwnerKind = claim::OwnerKind {
    api_version: "apps/v1",
    kind: "Deployment",
    plural: "deployments",
};

fn set_change(st: &mut State, dirty: &mut HashSet<String>, c: Change) {
    // A ReplicaSet taken from a Deployment concerns the one it left, too.
    if let Change::Apply(rs) | Change::Delete(rs) = &c
        && let Some(old) = st.sets.get(&reflect::key(rs))
    {
        dirty.extend(st.owner_key(old));
    }
    match &c {
        Change::Reset(_) => dirty.extend(st.deployments.keys().cloned()),
        Change::Apply(rs) | Change::Delete(rs) => match st.owner_key(rs) {
            Some(k) => {
                dirty.insert(k);
            }
            // An orphan may be adopted by a Deployment of its namespace.
            None if owner::controller_of(rs).is_none() => {
                let ns = reflect::names(rs).0.unwrap_or("");
                dirty.extend(
                    st.deployments
                        .keys()
                        .filter(|k| k.starts_with(&format!("{ns}/")))
                        .cloned(),
                );
            }
            None => {}
        },
    }
    reflect::apply_to(&mut st.sets, c);
}

/// Whether pods of the old ReplicaSets still run (Recreate waits for them to be gone).
async fn old_pods_running(client: &kube::Client, d: &Deployment, old: &[&ReplicaSet]) -> bool {
    let uids: HashSet<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    if uids.is_empty() {
        return false;
    }
    let ns = d.metadata.namespace.as_deref().unwrap_or("");
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
    let Ok(list) = pods.list(&Default::default()).await else {
        return true;
    };
    list.items.iter().any(|p| {
        let owned = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && uids.contains(o.uid.as_str()));
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        owned && !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

/// Whether a Recreate rollout, its sets all emptied, still waits for their pods to go
/// (asked of the API only then).
async fn recreate_waits(client: &kube::Client, d: &Deployment, sets: &[&ReplicaSet]) -> bool {
    let (new, old) = split(d, sets);
    old.iter().all(|rs| replicas(rs) == 0)
        && new.is_none_or(|n| replicas(n) == 0)
        && old_pods_running(client, d, &old).await
}

/// Adopts and releases ReplicaSets by the Deployment's selector; false while an
/// adoption waits.
async fn claim_sets(client: &kube::Client, st: &mut State, raw: &Value) -> bool {
    let ns = reflect::names(raw).0;
    let selector = claim::OwnerSelector::of(raw);
    let in_ns: Vec<&Value> = st
        .sets
        .values()
        .filter(|rs| reflect::names(&***rs).0 == ns)
        .map(|v| &**v)
        .collect();
    let claimed = claim::claim(raw, &in_ns, |rs| selector.selects(rs));
    let Some(updated) =
        claim::settle(client, ("apps/v1", "replicasets"), &claimed, raw, &KIND).await
    else {
        return false;
    };
    for rs in updated {
        st.sets.insert(reflect::key(&rs), Arc::new(rs));
    }
    true
}

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    raw: &Value,
) -> Option<Duration> {
    let d: Deployment = crate::typed(raw)?;
    // Claim first: an adopted orphan may be this template's ReplicaSet.
    if !claim_sets(client, st, raw).await {
        return Some(claim::ADOPTION_RETRY);
    }
    let sets = st.sets_of(&d);
    let refs: Vec<&ReplicaSet> = sets.iter().collect();
    let waiting = recreate(&d) && recreate_waits(client, &d, &refs).await;
    let w = rollout::plan(&d, &refs, waiting);
    let mut writer = Writer {
        client,
        recorder,
        st,
        d: &d,
        raw,
    };
    let mut event = None;
    if let Some(rs) = &w.create {
        event = match writer.create(rs, &w).await {
            Ok(event) => Some(event),
            Err(again) => return again,
        };
    }
    writer.annotate(&w.annotate).await;
    writer.scale(&w.scale).await;
    writer.delete(&w.delete).await;
    writer.finish(event).await;
    // Look again for progress deadlines and minReadySeconds.
    let min_ready = min_ready_seconds(&d);
    if min_ready > 0 {
        return Some(Duration::from_secs(min_ready as u64 + 1));
    }
    progress_deadline(&d)
        .filter(|_| !paused(&d))
        .map(|s| Duration::from_secs(s.max(0) as u64 + 1))
}

/// Applies one sync's writes, keeping the ReplicaSets it wrote in the state.
struct Writer<'a> {
    client: &'a kube::Client,
    recorder: &'a Recorder,
    st: &'a mut State,
    d: &'a Deployment,
    /// The Deployment as the informer holds it, for writes that carry it whole.
    raw: &'a Value,
}

impl Writer<'_> {
    fn ns(&self) -> &str {
        self.d.metadata.namespace.as_deref().unwrap_or("")
    }

    fn keep(&mut self, rs: Value) {
        self.st.sets.insert(reflect::key(&rs), Arc::new(rs));
    }

    /// Creates the new ReplicaSet: the Progressing event to report, or when to sync
    /// again if that failed.
    async fn create(
        &mut self,
        rs: &ReplicaSet,
        w: &rollout::Writes,
    ) -> Result<(&'static str, String), Option<Duration>> {
        let ns = self.ns().to_string();
        let body = serde_json::to_value(rs).expect("a ReplicaSet serializes");
        let path = format!("/apis/apps/v1/namespaces/{ns}/replicasets");
        match owner::send(
            self.client,
            http::Method::POST,
            path,
            "application/json",
            &body,
        )
        .await
        {
            Ok(created) => {
                let message = w.event.clone().map(|e| e.1).unwrap_or_default();
                self.recorder
                    .record(self.raw, "Normal", "ScalingReplicaSet", message);
                let event = (
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{}\"", name(rs)),
                );
                self.keep(created);
                Ok(event)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.collided(&ns, rs).await;
                Err(None)
            }
            Err(e) => {
                tracing::debug!(error = %e, "creating the new ReplicaSet failed");
                Err(Some(Duration::from_secs(5)))
            }
        }
    }

    /// A ReplicaSet by the new one's name with another template: count the collision,
    /// and the next hash differs.
    async fn collided(&self, ns: &str, rs: &ReplicaSet) {
        let existing = self.st.sets.get(&format!("{ns}/{}", name(rs)));
        let theirs: Option<ReplicaSet> = existing.and_then(|e| crate::typed(e));
        let key = hash::TemplateKey::of(self.d.spec.as_ref().map(|s| &s.template));
        if theirs.is_some_and(|e| hash::TemplateKey::of(rs_template(&e)) == key) {
            return;
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        status.collision_count = Some(count(collision_count(self.d) + 1));
        let status = serde_json::to_value(status).expect("a status serializes");
        owner::put_status(self.client, "apps/v1", "deployments", self.raw, status).await;
    }

    async fn patch(&self, rs_name: &str, body: &Value) -> Result<Value, kube::Error> {
        let path = format!(
            "/apis/apps/v1/namespaces/{}/replicasets/{rs_name}",
            self.ns()
        );
        let ct = "application/merge-patch+json";
        owner::send(self.client, http::Method::PATCH, path, ct, body).await
    }

    async fn annotate(&mut self, sets: &BTreeMap<String, Annotations>) {
        for (rs_name, annotations) in sets {
            let body = json!({"metadata": {"annotations": annotations}});
            if let Ok(updated) = self.patch(rs_name, &body).await {
                self.keep(updated);
            }
        }
    }

    async fn scale(&mut self, sizes: &BTreeMap<String, (i64, Annotations)>) {
        for (rs_name, (size, annotations)) in sizes {
            let key = format!("{}/{rs_name}", self.ns());
            let before = self
                .st
                .sets
                .get(&key)
                .and_then(|rs| crate::typed(rs))
                .map_or(0, |rs| replicas(&rs));
            let mut body = json!({"spec": {"replicas": size}});
            if !annotations.is_empty() {
                body["metadata"] = json!({"annotations": annotations});
            }
            match self.patch(rs_name, &body).await {
                Ok(updated) => {
                    let verb = if *size > before { "up" } else { "down" };
                    let message =
                        format!("Scaled {verb} replica set {rs_name} from {before} to {size}");
                    self.recorder
                        .record(self.raw, "Normal", "ScalingReplicaSet", message);
                    self.keep(updated);
                }
                Err(e) => tracing::debug!(error = %e, rs = %rs_name, "scaling failed"),
            }
        }
    }

    async fn delete(&mut self, names: &[String]) {
        let body =
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
        for rs_name in names {
            let path = format!(
                "/apis/apps/v1/namespaces/{}/replicasets/{rs_name}",
                self.ns()
            );
            let sent = owner::send(
                self.client,
                http::Method::DELETE,
                path,
                "application/json",
                &body,
            );
            if sent.await.is_ok() {
                let key = format!("{}/{rs_name}", self.ns());
                self.st.sets.remove(&key);
            }
        }
    }

    /// The Deployment's revision annotation and status, from its sets as now written.
    async fn finish(&mut self, mut event: Option<(&'static str, String)>) {
        let d = self.d;
        let sets = self.st.sets_of(d);
        let refs: Vec<&ReplicaSet> = sets.iter().collect();
        let (new, _) = split(d, &refs);
        if let Some(n) = new {
            self.record_revision(n).await;
            let reported = status::condition(d, "Progressing")
                .and_then(|c| c.message.as_deref())
                .is_some_and(|m| m.contains(name(n)));
            if event.is_none() && !reported {
                event = Some((
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{}\"", name(n)),
                ));
            }
        }
        let s = status(d, new, &refs, event, Timestamp::now());
        let s = serde_json::to_value(s).expect("a status serializes");
        owner::put_status(self.client, "apps/v1", "deployments", self.raw, s).await;
    }

    /// The Deployment carries its newest revision: an update, as Kubernetes' deployment
    /// controller writes it (its role may update Deployments, not patch them); a
    /// conflict waits for the next sync.
    async fn record_revision(&self, new: &ReplicaSet) {
        let rev = revision(new);
        if rev <= 0 || annotation(self.d, REVISION) == Some(rev.to_string().as_str()) {
            return;
        }
        let mut body = self.d.clone();
        body.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(REVISION.into(), rev.to_string());
        let body = serde_json::to_value(body).expect("a Deployment serializes");
        let path = format!(
            "/apis/apps/v1/namespaces/{}/deployments/{}",
            self.ns(),
            name(self.d)
        );
        let _ = owner::send(
            self.client,
            http::Method::PUT,
            path,
            "application/json",
            &body,
        )
        .await;
    }
}
