//! The PersistentVolume controller, with kube-controller-manager's PVC and PV protection
//! controllers beside it: binds claims to volumes ([`plan`] decides, by upstream's rules),
//! hands claims to their class's provisioner, releases and reclaims volumes whose claim
//! is gone, keeps phases, and lifts the protection finalizers once nothing uses a claim
//! or binds a volume. Level-triggered over shared informers, resynced every 15 s as
//! upstream's binder is.

pub mod plan;

use crate::owner;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use plan::{Action, World};
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use skiff_types::volumes::{BIND_COMPLETED, BOUND_BY_CONTROLLER, PV_PROTECTION, PVC_PROTECTION};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const RESYNC: Duration = Duration::from_secs(15);
const PARALLEL: usize = 8;

/// The identities the loops act as, each with its upstream controller's role.
#[derive(Clone)]
pub struct Clients {
    pub binder: kube::Client,
    pub pvc_protection: kube::Client,
    pub pv_protection: kube::Client,
}

#[derive(Default)]
struct State {
    claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    classes: BTreeMap<String, Arc<StorageClass>>,
    /// Pod key -> the claims (`ns/name`) it uses while not finished.
    pod_claims: HashMap<String, Vec<String>>,
    synced: [bool; 4],
    /// The last event said about each (object, reason): repeats are not said again.
    said: HashMap<(String, &'static str), String>,
}

fn claims_of(p: &Value) -> Vec<String> {
    if matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return Vec::new();
    }
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
    p["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .map(|c| format!("{ns}/{c}"))
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Claims,
    Volumes,
    Classes,
    Pods,
}

impl State {
    fn take(&mut self, kind: Kind, c: Change) {
        self.synced[kind as usize] |= matches!(c, Change::Reset(_));
        match kind {
            Kind::Claims => drop(reflect::absorb(c, &mut self.claims, |_, t| Arc::new(t))),
            Kind::Volumes => drop(reflect::absorb(c, &mut self.volumes, |_, t| Arc::new(t))),
            Kind::Classes => drop(reflect::absorb(c, &mut self.classes, |_, t| Arc::new(t))),
            Kind::Pods => self.on_pods(c),
        }
    }

    fn on_pods(&mut self, c: Change) {
        match c {
            Change::Reset(items) => {
                self.pod_claims = items
                    .iter()
                    .map(|p| (reflect::key(p), claims_of(p)))
                    .collect();
            }
            Change::Apply(p) => {
                self.pod_claims.insert(reflect::key(&p), claims_of(&p));
            }
            Change::Delete(p) => {
                self.pod_claims.remove(&reflect::key(&p));
            }
        }
    }

    fn in_use(&self) -> HashSet<String> {
        self.pod_claims.values().flatten().cloned().collect()
    }
}

/// Runs until `shutdown`.
pub async fn run(
    clients: Clients,
    informers: crate::Informers,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut claims_rx = informers.watch("/api/v1/persistentvolumeclaims");
    let mut volumes_rx = informers.watch("/api/v1/persistentvolumes");
    let mut classes_rx = informers.watch("/apis/storage.k8s.io/v1/storageclasses");
    let mut pods_rx = informers.watch(crate::trim::PODS);
    let recorder = Recorder::new(clients.binder.clone(), "persistentvolume-controller");
    let mut s = State::default();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            Some(c) = claims_rx.recv() => s.take(Kind::Claims, c),
            Some(c) = volumes_rx.recv() => s.take(Kind::Volumes, c),
            Some(c) = classes_rx.recv() => s.take(Kind::Classes, c),
            Some(c) = pods_rx.recv() => s.take(Kind::Pods, c),
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Take in what else arrived before deciding.
        for (kind, rx) in [
            (Kind::Claims, &mut claims_rx),
            (Kind::Volumes, &mut volumes_rx),
            (Kind::Classes, &mut classes_rx),
            (Kind::Pods, &mut pods_rx),
        ] {
            while let Ok(c) = rx.try_recv() {
                s.take(kind, c);
            }
        }
        if !s.synced.iter().all(|x| *x) {
            tracing::trace!(synced = ?s.synced, "volume informers not synced yet");
            continue;
        }
        let in_use = s.in_use();
        let world = World {
            claims: &s.claims,
            volumes: &s.volumes,
            classes: &s.classes,
            in_use: &in_use,
        };
        let actions = plan::plan(&world);
        tracing::trace!(
            claims = s.claims.len(),
            volumes = s.volumes.len(),
            actions = actions.len(),
            "volume sync"
        );
        // What was said about objects now gone is forgotten.
        let (claims, volumes) = (&s.claims, &s.volumes);
        s.said
            .retain(|(o, _), _| claims.contains_key(o) || volumes.contains_key(o));
        let mut writes = Vec::new();
        for a in actions {
            match a {
                Action::Event(e) => say(&mut s.said, &recorder, &s.claims, &s.volumes, e),
                other => writes.push(other),
            }
        }
        let (s_ref, c_ref) = (&s, &clients);
        futures::stream::iter(writes)
            .for_each_concurrent(PARALLEL, |a| async move {
                if let Err(e) = act(c_ref, s_ref, &a).await {
                    tracing::debug!(action = ?a, error = %e, "volume step failed; the next sync retries");
                }
            })
            .await;
    }
}

fn say(
    said: &mut HashMap<(String, &'static str), String>,
    recorder: &Recorder,
    claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
    volumes: &BTreeMap<String, Arc<PersistentVolume>>,
    e: plan::Event,
) {
    let key = (e.object.clone(), e.reason);
    if said.get(&key) == Some(&e.message) {
        return;
    }
    let obj = if e.on_claim {
        claims
            .get(&e.object)
            .and_then(|c| serde_json::to_value(&**c).ok())
    } else {
        volumes
            .get(&e.object)
            .and_then(|v| serde_json::to_value(&**v).ok())
    };
    let Some(mut obj) = obj else { return };
    obj["kind"] = json!(if e.on_claim {
        "PersistentVolumeClaim"
    } else {
        "PersistentVolume"
    });
    obj["apiVersion"] = json!("v1");
    recorder.record(&obj, e.type_, e.reason, e.message.clone());
    said.insert(key, e.message);
}

/// The API path of a claim from its `ns/name` key.
pub(crate) fn claim_path(key: &str) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
}

fn volume_path(name: &str) -> String {
    format!("/api/v1/persistentvolumes/{name}")
}

async fn put<T: serde::Serialize>(
    client: &kube::Client,
    path: String,
    obj: &T,
) -> crate::Result<()> {
    let body = serde_json::to_value(obj)?;
    owner::send(client, http::Method::PUT, path, "application/json", &body).await?;
    Ok(())
}

fn annotate(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, k: &str, v: &str) {
    m.annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
}

async fn act(c: &Clients, s: &State, a: &Action) -> crate::Result<()> {
    let claim = |k: &str| s.claims.get(k).map(|c| (**c).clone());
    let volume = |k: &str| s.volumes.get(k).map(|v| (**v).clone());
    match a {
        Action::ClaimVolume {
            volume: vn,
            claim: ck,
        } => {
            let (Some(mut v), Some(cl)) = (volume(vn), claim(ck)) else {
                return Ok(());
            };
            let spec = v.spec.get_or_insert_with(Default::default);
            let user_bound = spec.claim_ref.is_some();
            spec.claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: cl.metadata.namespace.clone(),
                name: cl.metadata.name.clone(),
                uid: cl.metadata.uid.clone(),
                resource_version: cl.metadata.resource_version.clone(),
                ..Default::default()
            });
            if !user_bound {
                annotate(&mut v.metadata, BOUND_BY_CONTROLLER, "yes");
            }
            put(&c.binder, volume_path(vn), &v).await
        }
        Action::NameVolume {
            claim: ck,
            volume: vn,
        } => {
            let Some(mut cl) = claim(ck) else {
                return Ok(());
            };
            let spec = cl.spec.get_or_insert_with(Default::default);
            let user_named = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
            spec.volume_name = Some(vn.clone());
            annotate(&mut cl.metadata, BIND_COMPLETED, "yes");
            if !user_named {
                annotate(&mut cl.metadata, BOUND_BY_CONTROLLER, "yes");
            }
            put(&c.binder, claim_path(ck), &cl).await
        }
        Action::VolumePhase {
            volume: vn,
            phase,
            message,
        } => {
            let Some(mut v) = volume(vn) else {
                return Ok(());
            };
            v.status = Some(PersistentVolumeStatus {
                phase: Some(phase.to_string()),
                message: message.clone(),
                last_phase_transition_time: Some(now()),
                ..Default::default()
            });
            put(&c.binder, format!("{}/status", volume_path(vn)), &v).await
        }
        Action::ClaimPhase { claim: ck, phase } => {
            let Some(mut cl) = claim(ck) else {
                return Ok(());
            };
            let bound_to = cl
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .and_then(|v| volume(&v));
            let mut status = cl.status.take().unwrap_or_default();
            status.phase = Some(phase.to_string());
            if *phase == "Bound"
                && let Some(spec) = bound_to.and_then(|v| v.spec)
            {
                status.capacity = spec.capacity;
                status.access_modes = spec.access_modes;
            }
            cl.status = Some(PersistentVolumeClaimStatus { ..status });
            put(&c.binder, format!("{}/status", claim_path(ck)), &cl).await
        }
        Action::Provision {
            claim: ck,
            provisioner,
        } => {
            let Some(mut cl) = claim(ck) else {
                return Ok(());
            };
            for (k, v) in plan::provisioner_annotations(provisioner) {
                annotate(&mut cl.metadata, k, &v);
            }
            put(&c.binder, claim_path(ck), &cl).await
        }
        Action::Unbind { volume: vn } => {
            let Some(mut v) = volume(vn) else {
                return Ok(());
            };
            if let Some(spec) = v.spec.as_mut() {
                spec.claim_ref = None;
            }
            if let Some(a) = v.metadata.annotations.as_mut() {
                a.remove(BOUND_BY_CONTROLLER);
            }
            put(&c.binder, volume_path(vn), &v).await
        }
        Action::Release { volume: vn } => release(c, s, vn).await,
        Action::RemoveClaimFinalizer { claim: ck } => {
            if used_by_a_pod(&c.pvc_protection, ck).await? {
                return Ok(());
            }
            let Some(mut cl) = claim(ck) else {
                return Ok(());
            };
            if let Some(f) = cl.metadata.finalizers.as_mut() {
                f.retain(|x| x != PVC_PROTECTION);
            }
            put(&c.pvc_protection, claim_path(ck), &cl).await
        }
        Action::RemoveVolumeFinalizer { volume: vn } => {
            let Some(mut v) = volume(vn) else {
                return Ok(());
            };
            if let Some(f) = v.metadata.finalizers.as_mut() {
                f.retain(|x| x != PV_PROTECTION);
            }
            put(&c.pv_protection, volume_path(vn), &v).await
        }
        Action::Event(_) => Ok(()),
    }
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// Released only once a read confirms the claim is gone (or replaced): the informer may
/// not have seen a claim created a moment ago.
async fn release(c: &Clients, s: &State, vn: &str) -> crate::Result<()> {
    let Some(v) = s.volumes.get(vn) else {
        return Ok(());
    };
    let Some((key, Some(uid))) = skiff_scheduler::volumes::claim_ref(v) else {
        return Ok(());
    };
    let req = http::Request::get(claim_path(&key))
        .body(Vec::new())
        .expect("valid request");
    match c.binder.request::<Value>(req).await {
        Ok(cl) if cl["metadata"]["uid"] == uid => return Ok(()),
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let mut v = (**v).clone();
    v.status = Some(PersistentVolumeStatus {
        phase: Some("Released".into()),
        last_phase_transition_time: Some(now()),
        ..Default::default()
    });
    put(&c.binder, format!("{}/status", volume_path(vn)), &v).await
}

/// PVC protection's check against the API itself: a pod created a moment ago may not be
/// in the informer yet.
async fn used_by_a_pod(client: &kube::Client, claim: &str) -> crate::Result<bool> {
    let (ns, name) = claim.split_once('/').unwrap_or(("", claim));
    let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods"))
        .body(Vec::new())
        .expect("valid request");
    let pods: Value = client.request(req).await?;
    Ok(pods["items"].as_array().into_iter().flatten().any(|p| {
        claims_of(p)
            .iter()
            .any(|c| c.split_once('/').map(|(_, n)| n) == Some(name))
    }))
}
