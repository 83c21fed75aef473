//! The VolumeBinding plugin's PreBind, as the scheduler runs it before binding a pod
//! whose claims waited for it: a static volume chosen for a claim gets the claim in its
//! `claimRef` (the PV controller completes the binding), a claim to provision gets the
//! `volume.kubernetes.io/selected-node` annotation (the class's provisioner on that node
//! makes the volume); then the pod waits until every claim is bound.

use crate::persistentvolume::claim_path;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use skiff_scheduler::volumes::Prebind;
use skiff_types::volumes::{BIND_COMPLETED, BOUND_BY_CONTROLLER, SELECTED_NODE};
use std::time::{Duration, Instant};

/// kube-scheduler's default `bindTimeoutSeconds`.
const BIND_TIMEOUT: Duration = Duration::from_secs(600);

async fn get<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    path: &str,
) -> Result<T, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("valid request");
    client.request::<T>(req).await.map_err(|e| e.to_string())
}

async fn put<T: serde::Serialize>(
    client: &kube::Client,
    path: &str,
    obj: &T,
) -> Result<(), String> {
    let body = serde_json::to_vec(obj).map_err(|e| e.to_string())?;
    let req = http::Request::put(path)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("valid request");
    client
        .request_text(req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs the steps and waits for the claims; the error is the FailedScheduling message.
pub async fn prebind(
    client: &kube::Client,
    pod: &serde_json::Value,
    node: &str,
    steps: &[Prebind],
) -> Result<(), String> {
    if steps.is_empty() {
        return Ok(());
    }
    for step in steps {
        let done = match step {
            Prebind::Volume { claim, volume } => bind_volume(client, claim, volume).await,
            Prebind::Provision { claim } => select_node(client, claim, node).await,
        };
        done.map_err(|e| {
            format!("running PreBind plugin \"VolumeBinding\": binding volumes: {e}")
        })?;
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    tracing::debug!(pod = %format!("{ns}/{}", pod["metadata"]["name"].as_str().unwrap_or("")), node, "waiting for claims to bind");
    wait_bound(client, steps).await
}

async fn bind_volume(client: &kube::Client, claim: &str, volume: &str) -> Result<(), String> {
    let c: PersistentVolumeClaim = get(client, &claim_path(claim)).await?;
    let path = format!("/api/v1/persistentvolumes/{volume}");
    let mut pv: PersistentVolume = get(client, &path).await?;
    let spec = pv.spec.get_or_insert_with(Default::default);
    if spec.claim_ref.is_some() {
        return match skiff_scheduler::volumes::refers_to(&pv, &c) {
            true => Ok(()),
            false => Err(format!(
                "volume \"{volume}\" already bound to a different claim"
            )),
        };
    }
    spec.claim_ref = Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        ..Default::default()
    });
    pv.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    put(client, &path, &pv).await
}

async fn select_node(client: &kube::Client, claim: &str, node: &str) -> Result<(), String> {
    let path = claim_path(claim);
    // A conflict means someone else wrote the claim meanwhile: read it again.
    for _ in 0..5 {
        let mut c: PersistentVolumeClaim = get(client, &path).await?;
        let ann = c.metadata.annotations.get_or_insert_with(Default::default);
        if ann.get(SELECTED_NODE).map(String::as_str) == Some(node) {
            return Ok(());
        }
        ann.insert(SELECTED_NODE.into(), node.into());
        match put(client, &path, &c).await {
            Err(e) if e.contains("409") || e.contains("modified") => continue,
            other => return other,
        }
    }
    Err(format!("claim {claim} kept changing"))
}

fn bound(c: &PersistentVolumeClaim) -> bool {
    let named = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    let completed = c
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BIND_COMPLETED));
    named && completed
}

async fn wait_bound(client: &kube::Client, steps: &[Prebind]) -> Result<(), String> {
    let deadline = Instant::now() + BIND_TIMEOUT;
    let mut pause = Duration::from_millis(100);
    for step in steps {
        let (Prebind::Volume { claim, .. } | Prebind::Provision { claim }) = step;
        loop {
            let c: PersistentVolumeClaim = get(client, &claim_path(claim)).await?;
            if bound(&c) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "running PreBind plugin \"VolumeBinding\": binding volumes: timed out waiting for claim {claim} to bind"
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    Ok(())
}
