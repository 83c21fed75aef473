//! The built-in local-path provisioner, run by each node's agent for that node (and by
//! the simulated fleet for its nodes): a claim of the `skiff.io/local-path` class whose
//! pod the scheduler sent here gets a directory under the node's data dir and a
//! PersistentVolume for it, pinned to the node by required node affinity; a Released
//! volume it made with reclaim policy Delete loses its directory and then its object;
//! a bound claim that asks for more storage, where its class allows expansion, gets it
//! (a directory has no size to grow, so capacity is recorded on both objects).
//! What to do is decided by [`plan`], purely; the rest is IO.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use skiff_scheduler::volumes::{capacity_bytes, claim_class, claim_ref, request_bytes};
use skiff_types::volumes::{
    LOCAL_PATH_PROVISIONER, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Annotation on the volumes made here: the node whose directory it is.
pub const NODE_ANNOTATION: &str = "skiff.io/local-path-node";

#[derive(Default)]
pub struct World {
    pub claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: BTreeMap<String, Arc<PersistentVolume>>,
    pub classes: BTreeMap<String, Arc<StorageClass>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Provision { claim: String, node: String },
    Delete { volume: String },
    Expand { claim: String, volume: String },
}

/// The volume name a claim gets (upstream provisioners' `pvc-<claim uid>`).
pub fn volume_name(c: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", c.metadata.uid.as_deref().unwrap_or(""))
}

fn annotation<'a>(
    m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

fn ours(v: &PersistentVolume, nodes: &HashSet<String>) -> bool {
    annotation(&v.metadata, PROVISIONED_BY) == Some(LOCAL_PATH_PROVISIONER)
        && annotation(&v.metadata, NODE_ANNOTATION).is_some_and(|n| nodes.contains(n))
}

/// What this node's provisioner should do now.
pub fn plan(w: &World, nodes: &HashSet<String>) -> Vec<Step> {
    let mut out = Vec::new();
    for c in w.claims.values() {
        let node = annotation(&c.metadata, SELECTED_NODE).filter(|n| nodes.contains(*n));
        let unbound = c
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty);
        if let Some(node) = node
            && unbound
            && c.metadata.deletion_timestamp.is_none()
            && annotation(&c.metadata, STORAGE_PROVISIONER) == Some(LOCAL_PATH_PROVISIONER)
            && !w.volumes.contains_key(&volume_name(c))
        {
            out.push(Step::Provision {
                claim: reflect_key(c),
                node: node.to_string(),
            });
        }
    }
    for (name, v) in &w.volumes {
        if !ours(v, nodes) {
            continue;
        }
        let phase = v.status.as_ref().and_then(|s| s.phase.as_deref());
        let policy = v
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
        if phase == Some("Released") && policy == Some("Delete") {
            out.push(Step::Delete {
                volume: name.clone(),
            });
            continue;
        }
        let claim = claim_ref(v).and_then(|(k, _)| w.claims.get(&k));
        if let Some(c) = claim
            && phase == Some("Bound")
            && request_bytes(c) > capacity_bytes(v)
            && w.classes
                .get(claim_class(c))
                .and_then(|s| s.allow_volume_expansion)
                == Some(true)
        {
            out.push(Step::Expand {
                claim: reflect_key(c),
                volume: name.clone(),
            });
        }
    }
    out
}

fn reflect_key(c: &PersistentVolumeClaim) -> String {
    skiff_scheduler::volumes::claim_key(c)
}

/// The directory of a claim's volume under `base` (`pvc-<uid>_<ns>_<name>`, as
/// rancher's local-path lays them out, so an operator can tell them apart).
pub fn dir_for(base: &Path, c: &PersistentVolumeClaim) -> PathBuf {
    base.join(format!(
        "{}_{}_{}",
        volume_name(c),
        c.metadata.namespace.as_deref().unwrap_or(""),
        c.metadata.name.as_deref().unwrap_or("")
    ))
}

/// The volume object for a claim provisioned on `node` at `path`.
pub fn volume_for(
    c: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    node: &str,
    path: &Path,
) -> Value {
    let spec = c.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref()?.get("storage").cloned());
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(c), "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER, NODE_ANNOTATION: node}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": class.and_then(|c| c.reclaim_policy.clone()).unwrap_or_else(|| "Delete".into()),
            "storageClassName": claim_class(c),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": path.display().to_string(), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": c.metadata.namespace,
                         "name": c.metadata.name, "uid": c.metadata.uid, "resourceVersion": c.metadata.resource_version},
        },
    })
}

/// Where volumes go, and whether there are directories at all (simulated nodes have none).
#[derive(Clone)]
pub struct Options {
    pub nodes: HashSet<String>,
    /// `<data dir>/storage`; None on simulated nodes.
    pub base: Option<PathBuf>,
}

/// Runs the provisioner until `shutdown`.
pub async fn run(client: kube::Client, opts: Options, mut shutdown: watch::Receiver<bool>) {
    let mut claims_rx =
        reflect::watch_values(client.clone(), "/api/v1/persistentvolumeclaims", None);
    let mut volumes_rx = reflect::watch_values(client.clone(), "/api/v1/persistentvolumes", None);
    let mut classes_rx = reflect::watch_values(
        client.clone(),
        "/apis/storage.k8s.io/v1/storageclasses",
        None,
    );
    let recorder = Recorder::new(client.clone(), LOCAL_PATH_PROVISIONER);
    let mut w = World::default();
    let mut synced = [false; 3];
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut resync = tokio::time::interval(std::time::Duration::from_secs(15));
    loop {
        tokio::select! {
            Some(c) = claims_rx.recv() => { synced[0] |= matches!(c, Change::Reset(_)); reflect::absorb(c, &mut w.claims, |_, t| Arc::new(t)); }
            Some(c) = volumes_rx.recv() => { synced[1] |= matches!(c, Change::Reset(_)); reflect::absorb(c, &mut w.volumes, |_, t| Arc::new(t)); }
            Some(c) = classes_rx.recv() => { synced[2] |= matches!(c, Change::Reset(_)); reflect::absorb(c, &mut w.classes, |_, t| Arc::new(t)); }
            _ = resync.tick() => in_flight.clear(),
            _ = shutdown.changed() => return,
        }
        if !synced.iter().all(|s| *s) {
            continue;
        }
        for step in plan(&w, &opts.nodes) {
            // One attempt per step until its outcome shows up or the next resync.
            if !in_flight.insert(format!("{step:?}")) {
                continue;
            }
            if let Err(e) = act(&client, &recorder, &w, &opts, &step).await {
                tracing::warn!(?step, error = %e, "local-path step failed; retried on the next resync");
            }
        }
    }
}

fn claim_path(key: &str) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
}

async fn send(
    client: &kube::Client,
    method: http::Method,
    path: String,
    body: Option<&Value>,
) -> Result<(), String> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .expect("valid request");
    match client.request_text(req).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn claim_value(c: &PersistentVolumeClaim) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["kind"] = json!("PersistentVolumeClaim");
    v["apiVersion"] = json!("v1");
    v
}

async fn act(
    client: &kube::Client,
    recorder: &Recorder,
    w: &World,
    opts: &Options,
    step: &Step,
) -> Result<(), String> {
    match step {
        Step::Provision { claim, node } => {
            let Some(c) = w.claims.get(claim) else {
                return Ok(());
            };
            let cv = claim_value(c);
            recorder.record(
                &cv,
                "Normal",
                "Provisioning",
                format!("External provisioner is provisioning volume for claim \"{claim}\""),
            );
            let path = match &opts.base {
                Some(base) => {
                    let dir = dir_for(base, c);
                    make_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    dir
                }
                None => dir_for(Path::new("/simulated"), c),
            };
            let pv = volume_for(c, w.classes.get(claim_class(c)).map(|s| &**s), node, &path);
            send(
                client,
                http::Method::POST,
                "/api/v1/persistentvolumes".into(),
                Some(&pv),
            )
            .await?;
            recorder.record(
                &cv,
                "Normal",
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {}", volume_name(c)),
            );
            Ok(())
        }
        Step::Delete { volume } => {
            let Some(v) = w.volumes.get(volume) else {
                return Ok(());
            };
            if let (Some(base), Some(path)) = (&opts.base, host_path(v)) {
                // Only ever a directory this provisioner made, under its base.
                if path.starts_with(base) && path.exists() {
                    std::fs::remove_dir_all(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            send(
                client,
                http::Method::DELETE,
                format!("/api/v1/persistentvolumes/{volume}"),
                None,
            )
            .await
        }
        Step::Expand { claim, volume } => expand(client, w, claim, volume).await,
    }
}

fn host_path(v: &PersistentVolume) -> Option<PathBuf> {
    let spec = v.spec.as_ref()?;
    spec.host_path
        .as_ref()
        .map(|h| PathBuf::from(&h.path))
        .or_else(|| spec.local.as_ref().map(|l| PathBuf::from(&l.path)))
}

/// World-writable, as rancher's local-path makes them, so pods of any user can write;
/// `fsGroup` narrows the group when a pod asks.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

async fn expand(client: &kube::Client, w: &World, claim: &str, volume: &str) -> Result<(), String> {
    let (Some(c), Some(v)) = (w.claims.get(claim), w.volumes.get(volume)) else {
        return Ok(());
    };
    let want = c.spec.as_ref().and_then(|s| {
        s.resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("storage")
            .cloned()
    });
    let Some(want) = want else { return Ok(()) };
    let mut pv = serde_json::to_value(&**v).map_err(|e| e.to_string())?;
    pv["spec"]["capacity"]["storage"] = json!(want);
    send(
        client,
        http::Method::PUT,
        format!("/api/v1/persistentvolumes/{volume}"),
        Some(&pv),
    )
    .await?;
    let mut cv = claim_value(c);
    cv["status"]["capacity"]["storage"] = json!(want);
    send(
        client,
        http::Method::PUT,
        format!("{}/status", claim_path(claim)),
        Some(&cv),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(extra: Value) -> Arc<PersistentVolumeClaim> {
        let mut c = json!({"metadata": {"name": "data-web-0", "namespace": "default", "uid": "u1",
            "annotations": {SELECTED_NODE: "n1", STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local-path"}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        Arc::new(serde_json::from_value(c).unwrap())
    }

    fn world(claims: &[Arc<PersistentVolumeClaim>], vols: &[Value]) -> World {
        let mut w = World::default();
        for c in claims {
            w.claims.insert(reflect_key(c), c.clone());
        }
        for v in vols {
            let v: PersistentVolume = serde_json::from_value(v.clone()).unwrap();
            w.volumes
                .insert(v.metadata.name.clone().unwrap(), Arc::new(v));
        }
        let sc = json!({"metadata": {"name": "local-path"}, "provisioner": LOCAL_PATH_PROVISIONER, "allowVolumeExpansion": true});
        w.classes.insert(
            "local-path".into(),
            Arc::new(serde_json::from_value(sc).unwrap()),
        );
        w
    }

    fn nodes(n: &[&str]) -> HashSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn claims_sent_here_are_provisioned_once() {
        let c = claim(json!({}));
        let w = world(std::slice::from_ref(&c), &[]);
        assert_eq!(
            plan(&w, &nodes(&["n1"])),
            [Step::Provision {
                claim: "default/data-web-0".into(),
                node: "n1".into()
            }]
        );
        assert!(plan(&w, &nodes(&["n2"])).is_empty());
        let pv = volume_for(&c, None, "n1", Path::new("/d/storage/x"));
        assert_eq!(pv["metadata"]["name"], "pvc-u1");
        assert_eq!(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
                [0],
            "n1"
        );
        assert_eq!(pv["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
        let w = world(&[c], &[pv]);
        assert!(plan(&w, &nodes(&["n1"])).is_empty());
    }

    #[test]
    fn released_delete_volumes_go_and_bound_ones_grow_when_the_class_allows() {
        let c = claim(json!({}));
        let mut pv = volume_for(&c, None, "n1", Path::new("/d/storage/x"));
        pv["status"] = json!({"phase": "Released"});
        assert_eq!(
            plan(&world(&[], &[pv.clone()]), &nodes(&["n1"])),
            [Step::Delete {
                volume: "pvc-u1".into()
            }]
        );
        assert!(plan(&world(&[], &[pv.clone()]), &nodes(&["n2"])).is_empty());
        pv["spec"]["persistentVolumeReclaimPolicy"] = json!("Retain");
        assert!(plan(&world(&[], &[pv.clone()]), &nodes(&["n1"])).is_empty());
        pv["status"] = json!({"phase": "Bound"});
        let bigger = claim(
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}, "storageClassName": "local-path", "volumeName": "pvc-u1"}}),
        );
        assert_eq!(
            plan(&world(&[bigger], &[pv]), &nodes(&["n1"])),
            [Step::Expand {
                claim: "default/data-web-0".into(),
                volume: "pvc-u1".into()
            }]
        );
    }
}
