//! The scheduler loop: pods without a node, in priority order, are placed by
//! `skiff_scheduler::schedule` on a snapshot of nodes and pods and bound through the
//! `pods/binding` subresource. A pod that fits nowhere gets `PodScheduled=False`
//! (`Unschedulable`) and a `FailedScheduling` event, and is retried with back-off and
//! whenever pods or nodes change.

use crate::{Result, events};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use skiff_scheduler::{Snapshot, schedule};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Runs until `shutdown` turns true.
pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    spawn_waker(Api::<Pod>::all(client.clone()), wake_tx.clone());
    spawn_waker(Api::<Node>::all(client.clone()), wake_tx);
    let mut backoff = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = wake_rx.recv() => {}
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        // Let a burst of changes settle into one round.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while wake_rx.try_recv().is_ok() {}
        match round(&client).await {
            Ok(0) => backoff = Duration::from_secs(30),
            Ok(_) => backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
            Err(e) => {
                tracing::warn!(error = %e, "scheduling round failed");
                backoff = Duration::from_secs(1);
            }
        }
    }
}

fn spawn_waker<K>(api: Api<K>, tx: mpsc::Sender<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            if ev.is_ok() {
                let _ = tx.try_send(());
            }
        }
    });
}

fn pending(p: &Value) -> bool {
    p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        && p["spec"]["schedulerName"]
            .as_str()
            .unwrap_or(SCHEDULER_NAME)
            == SCHEDULER_NAME
        && p["metadata"]["deletionTimestamp"].is_null()
        && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// One pass over all pending pods; returns how many are still unschedulable.
pub async fn round(client: &kube::Client) -> Result<usize> {
    let nodes: Vec<Value> = crate::list_all::<Node>(client).await?;
    let pods: Vec<Value> = crate::list_all::<Pod>(client).await?;
    let mut snap = Snapshot::build(&nodes, &pods);
    let mut queue: Vec<&Value> = pods.iter().filter(|p| pending(p)).collect();
    // Higher priority first, then first come first served.
    queue.sort_by(|a, b| {
        let pa = a["spec"]["priority"].as_i64().unwrap_or(0);
        let pb = b["spec"]["priority"].as_i64().unwrap_or(0);
        pb.cmp(&pa).then_with(|| {
            a["metadata"]["creationTimestamp"]
                .as_str()
                .cmp(&b["metadata"]["creationTimestamp"].as_str())
        })
    });
    let mut unschedulable = 0;
    let mut binds: Vec<(&Value, String)> = Vec::new();
    for pod in queue {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        match schedule(pod, &snap) {
            Ok(node) => {
                // Assume the pod on its node before the bind returns, so the rest of this
                // round sees it and binds can run concurrently.
                snap.assume(&node, &skiff_scheduler::PodInfo::from_json(pod));
                binds.push((pod, node));
            }
            Err(fit) => {
                unschedulable += 1;
                if let Some(plan) = skiff_scheduler::preempt(pod, &snap) {
                    preempt(client, pod, &plan, &pods).await;
                    if let Some(n) = snap.nodes.iter_mut().find(|n| n.name == plan.node) {
                        // Victims leave (their deletion is under way); do not pick them again.
                        n.pods.retain(|q| {
                            !plan
                                .victims
                                .iter()
                                .any(|(ns, name)| *ns == q.namespace && *name == q.name)
                        });
                    }
                }
                let msg = fit.to_string();
                let current = pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "PodScheduled")
                    .and_then(|c| c["message"].as_str());
                if current == Some(msg.as_str()) {
                    continue;
                }
                let patch = json!({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                    "lastProbeTime": null, "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                }]}});
                let pods_ns: Api<Pod> = Api::namespaced(client.clone(), ns);
                if let Err(e) = pods_ns
                    .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    tracing::debug!(error = %e, "condition not recorded");
                }
                if let Err(e) = events::record(
                    client,
                    pod,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    SCHEDULER_NAME,
                )
                .await
                {
                    tracing::debug!(error = %e, "event not recorded");
                }
            }
        }
    }
    futures::stream::iter(binds)
        .for_each_concurrent(BIND_CONCURRENCY, |(pod, node)| async move {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = pod["metadata"]["name"].as_str().unwrap_or("");
            if let Err(e) = bind(client, ns, name, &node).await {
                // The next round sees the pod still pending and decides again.
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "bind failed; retrying next round");
                return;
            }
            let msg = format!("Successfully assigned {ns}/{name} to {node}");
            if let Err(e) = events::record(client, pod, "Normal", "Scheduled", &msg, SCHEDULER_NAME).await {
                tracing::debug!(error = %e, "event not recorded");
            }
        })
        .await;
    Ok(unschedulable)
}

/// Bindings in flight at once.
const BIND_CONCURRENCY: usize = 32;

/// Deletes the victims (gracefully) and nominates the node for the preemptor.
async fn preempt(
    client: &kube::Client,
    pod: &Value,
    plan: &skiff_scheduler::Preemption,
    pods: &[Value],
) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    if pod["status"]["nominatedNodeName"].as_str() == Some(plan.node.as_str()) {
        return;
    }
    for (vns, vname) in &plan.victims {
        let api: Api<Pod> = Api::namespaced(client.clone(), vns);
        match api.delete(vname, &kube::api::DeleteParams::default()).await {
            Ok(_) => {
                if let Some(v) = pods.iter().find(|p| {
                    p["metadata"]["namespace"] == vns.as_str()
                        && p["metadata"]["name"] == vname.as_str()
                }) {
                    let msg = format!(
                        "Preempted by pod {} on node {}",
                        pod["metadata"]["uid"].as_str().unwrap_or(""),
                        plan.node
                    );
                    let _ = events::record(client, v, "Normal", "Preempted", &msg, SCHEDULER_NAME)
                        .await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "victim not deleted"),
        }
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = json!({"status": {"nominatedNodeName": plan.node}});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(error = %e, "nominatedNodeName not recorded");
    }
}

async fn bind(client: &kube::Client, ns: &str, name: &str, node: &str) -> Result<()> {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&binding)?)
        .expect("valid request");
    client.request_text(req).await?;
    Ok(())
}
