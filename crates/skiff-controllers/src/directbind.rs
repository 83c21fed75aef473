//! The scheduler's ceiling for `skiff bench scheduler`: binds every unscheduled pod to
//! the nodes in turn, with no decisions and no events, through the same in-process
//! transport, identity and `pods/binding` calls as the scheduler. Enabled only by the
//! hidden `--bench-direct-binder` flag.

use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use std::collections::HashSet;
use tokio::sync::watch;

const IN_FLIGHT: usize = 32;

pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let mut nodes_rx = reflect::watch_values(client.clone(), "/api/v1/nodes", None);
    let mut pods_rx = reflect::watch_values(client.clone(), "/api/v1/pods", Some("spec.nodeName="));
    let mut nodes: Vec<String> = Vec::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut next = 0usize;
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut pending: Vec<std::sync::Arc<Value>> = Vec::new();
    loop {
        tokio::select! {
            c = nodes_rx.recv() => match c {
                Some(Change::Reset(items)) => {
                    nodes = items.iter().filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string)).collect();
                }
                Some(Change::Apply(n)) => {
                    if let Some(name) = n["metadata"]["name"].as_str()
                        && !nodes.iter().any(|x| x == name)
                    {
                        nodes.push(name.to_string());
                    }
                }
                Some(Change::Delete(n)) => nodes.retain(|x| Some(x.as_str()) != n["metadata"]["name"].as_str()),
                None => return,
            },
            c = pods_rx.recv() => match c {
                Some(Change::Reset(items)) => pending.extend(items),
                Some(Change::Apply(p)) => pending.push(p),
                Some(Change::Delete(_)) => {}
                None => return,
            },
            _ = shutdown.changed() => return,
        }
        if nodes.is_empty() {
            continue;
        }
        for pod in pending.drain(..) {
            let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
            if !pod["metadata"]["deletionTimestamp"].is_null() || !queued.insert(uid) {
                continue;
            }
            let node = nodes[next % nodes.len()].clone();
            next += 1;
            let client = client.clone();
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(async move {
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
                let name = pod["metadata"]["name"].as_str().unwrap_or("");
                let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                               "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                let req =
                    http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
                        .header("Content-Type", "application/json")
                        .body(serde_json::to_vec(&b).expect("JSON values serialize"))
                        .expect("valid request");
                if let Err(e) = client.request_text(req).await {
                    tracing::debug!(pod = %name, error = %e, "direct bind failed");
                }
                drop(permit);
            });
        }
    }
}
