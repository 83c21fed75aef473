//! Node lifecycle: a node whose Lease is not renewed within the grace period becomes
//! `Ready=Unknown` and gets the `node.kubernetes.io/unreachable` taints; a `Ready=False`
//! node gets `node.kubernetes.io/not-ready`; the taints go when the node is back. Pods on
//! a node with a NoExecute taint they do not tolerate are evicted, at once or when their
//! `tolerationSeconds` run out.

use crate::Result;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Ready,
    NotReady,
    Unknown,
}

/// How a node is doing, from its Ready condition and the age of its Lease.
pub fn health(
    node: &Value,
    lease_renew: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    grace: Duration,
) -> Health {
    let fresh = lease_renew.is_some_and(|t| (now - t).to_std().map(|d| d <= grace).unwrap_or(true));
    if !fresh {
        return Health::Unknown;
    }
    match ready_status(node) {
        Some("True") => Health::Ready,
        Some("False") => Health::NotReady,
        _ => Health::Unknown,
    }
}

fn ready_status(node: &Value) -> Option<&str> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?["status"]
        .as_str()
}

/// The taints a node should carry for its health, keeping every other taint.
pub fn desired_taints(current: &[Value], h: &Health, now: &str) -> Vec<Value> {
    let mut out: Vec<Value> = current
        .iter()
        .filter(|t| t["key"] != UNREACHABLE && t["key"] != NOT_READY)
        .cloned()
        .collect();
    let key = match h {
        Health::Ready => return out,
        Health::NotReady => NOT_READY,
        Health::Unknown => UNREACHABLE,
    };
    for effect in ["NoSchedule", "NoExecute"] {
        // Keep the original timeAdded so toleration clocks do not restart.
        let existing = current
            .iter()
            .find(|t| t["key"] == key && t["effect"] == effect)
            .cloned();
        out.push(
            existing.unwrap_or_else(|| json!({"key": key, "effect": effect, "timeAdded": now})),
        );
    }
    out
}

/// When (if ever) a pod must be evicted for a NoExecute taint: None = tolerated forever.
pub fn eviction_due(pod: &Value, taint: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let added = taint["timeAdded"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let matching: Vec<&Value> = tolerations
        .iter()
        .filter(|t| skiff_scheduler::tolerates(t, taint))
        .collect();
    if matching.is_empty() {
        return Some(added);
    }
    // The shortest tolerationSeconds among matching tolerations; any without one: forever.
    if matching.iter().any(|t| t["tolerationSeconds"].is_null()) {
        return None;
    }
    let secs = matching
        .iter()
        .filter_map(|t| t["tolerationSeconds"].as_i64())
        .min()
        .unwrap_or(0)
        .max(0);
    Some(added + chrono::Duration::seconds(secs))
}

pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Reflectors, not lists per round: with thousands of nodes a full list every second
    // would dominate the server's work.
    let mut nodes_rx = informers.watch("/api/v1/nodes");
    // Through the shared informers (the controller manager's own identity), as in
    // Kubernetes: the node controller's role does not read Leases.
    let mut leases_rx =
        informers.watch("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
    let mut nodes: HashMap<String, Arc<Value>> = HashMap::new();
    // Parsed once per change, not once per node per second.
    let mut renewed: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let (mut nodes_synced, mut leases_synced) = (false, false);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(c) = nodes_rx.recv() => {
                nodes_synced |= matches!(c, Change::Reset(_));
                reflect::apply_to(&mut nodes, c);
                continue;
            }
            Some(c) = leases_rx.recv() => {
                let name = |l: &Value| l["metadata"]["name"].as_str().unwrap_or("").to_string();
                match c {
                    Change::Reset(items) => {
                        leases_synced = true;
                        renewed = items
                            .iter()
                            .filter_map(|l| Some((name(l), lease_renewed(l)?)))
                            .collect();
                    }
                    Change::Apply(l) => {
                        if let Some(t) = lease_renewed(&l) {
                            renewed.insert(name(&l), t);
                        }
                    }
                    Change::Delete(l) => {
                        renewed.remove(&name(&l));
                    }
                }
                continue;
            }
            _ = shutdown.changed() => return,
        }
        if !(nodes_synced && leases_synced) {
            continue;
        }
        if let Err(e) = round(&client, grace, &nodes, &renewed).await {
            tracing::warn!(error = %e, "node lifecycle round failed");
        }
    }
}

/// The conditions node lifecycle writes for a node it has lost: Ready and the three
/// pressures turn Unknown ("stopped posting"), and the ones its kubelet never posted are
/// added as Unknown ("never posted"), so `kubectl describe node` shows them; any other
/// condition is kept as it was.
pub fn unknown_conditions(existing: &[Value], created: &str, now: &str) -> Vec<Value> {
    const LOST: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
    let mut out: Vec<Value> = existing
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if LOST.iter().any(|t| c["type"] == *t) && c["status"] != "Unknown" {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(now);
            }
            c
        })
        .collect();
    for t in LOST {
        if !existing.iter().any(|c| c["type"] == t) {
            out.push(json!({
                "type": t,
                "status": "Unknown",
                "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": created,
                "lastTransitionTime": now,
            }));
        }
    }
    out
}

fn lease_renewed(lease: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    lease["spec"]["renewTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

async fn round(
    client: &kube::Client,
    grace: Duration,
    nodes: &HashMap<String, Arc<Value>>,
    renewed: &HashMap<String, chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    let now = chrono::Utc::now();
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let nodes_api: Api<Node> = Api::all(client.clone());
    let mut tainted: Vec<(String, Vec<Value>)> = Vec::new();
    for (name, v) in nodes {
        // The common case, a healthy node without health taints, costs two lookups.
        if renewed
            .get(name)
            .is_some_and(|t| (now - *t).to_std().map(|d| d <= grace).unwrap_or(true))
            && ready_status(v) == Some("True")
            && !v["spec"]["taints"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["key"] == UNREACHABLE || t["key"] == NOT_READY)
            })
        {
            continue;
        }
        let renew = renewed
            .get(name)
            .copied()
            // A node that never renewed gets the grace period from its creation.
            .or_else(|| {
                v["metadata"]["creationTimestamp"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
            });
        let h = health(v, renew, now, grace);
        let current = v["spec"]["taints"].as_array().cloned().unwrap_or_default();
        let want = desired_taints(&current, &h, &now_s);
        if want != current {
            tracing::info!(node = %name, health = ?h, "node taints change");
            let patch = json!({"spec": {"taints": want}});
            nodes_api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        if h == Health::Unknown {
            let ready_unknown = v["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
            if !ready_unknown {
                let existing = v["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let created = v["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or(&now_s);
                let conds = unknown_conditions(&existing, created, &now_s);
                nodes_api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": {"conditions": conds}})),
                    )
                    .await?;
            }
        }
        let no_execute: Vec<Value> = want
            .into_iter()
            .filter(|t| t["effect"] == "NoExecute")
            .collect();
        if !no_execute.is_empty() {
            tainted.push((name.clone(), no_execute));
        }
    }
    for (node, taints) in tainted {
        // Only the pods of tainted nodes, which are rare, are read.
        let pods = Api::<Pod>::all(client.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?
            .items;
        for pod in pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let pod = serde_json::to_value(&pod)?;
            let due = taints.iter().filter_map(|t| eviction_due(&pod, t)).min();
            if due.is_some_and(|d| d <= now) {
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
                let name = pod["metadata"]["name"].as_str().unwrap_or("");
                tracing::info!(pod = %format!("{ns}/{name}"), %node, "evicting pod from tainted node");
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let _ = skiff_kube::events::record(
                            client,
                            &pod,
                            "Normal",
                            "TaintManagerEviction",
                            &format!("Marking for deletion Pod {ns}/{name}"),
                            "taint-eviction-controller",
                        )
                        .await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &str) -> Value {
        json!({"status": {"conditions": [{"type": "Ready", "status": status}]}})
    }

    #[test]
    fn health_from_lease_and_condition() {
        let now = chrono::Utc::now();
        let g = Duration::from_secs(40);
        assert_eq!(
            health(
                &ready("True"),
                Some(now - chrono::Duration::seconds(5)),
                now,
                g
            ),
            Health::Ready
        );
        assert_eq!(
            health(
                &ready("True"),
                Some(now - chrono::Duration::seconds(41)),
                now,
                g
            ),
            Health::Unknown
        );
        assert_eq!(health(&ready("True"), None, now, g), Health::Unknown);
        assert_eq!(health(&ready("False"), Some(now), now, g), Health::NotReady);
    }

    #[test]
    fn taints_follow_health_and_keep_others() {
        let other = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        let t = desired_taints(
            std::slice::from_ref(&other),
            &Health::Unknown,
            "2025-01-01T00:00:00Z",
        );
        assert_eq!(t.len(), 3);
        assert!(
            t.iter()
                .any(|x| x["key"] == UNREACHABLE && x["effect"] == "NoExecute")
        );
        // timeAdded survives later rounds.
        let again = desired_taints(&t, &Health::Unknown, "2030-01-01T00:00:00Z");
        assert_eq!(again, t);
        assert_eq!(desired_taints(&t, &Health::Ready, "x"), vec![other.clone()]);
        assert!(
            desired_taints(&[other], &Health::NotReady, "x")
                .iter()
                .any(|x| x["key"] == NOT_READY)
        );
    }

    #[test]
    fn lost_nodes_conditions_turn_unknown_and_missing_ones_are_added() {
        let t0 = "2026-01-01T00:00:00Z";
        let now = "2026-01-01T00:01:00Z";
        let never = unknown_conditions(&[], t0, now);
        let types: Vec<&str> = never.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
        );
        assert!(never.iter().all(|c| c["status"] == "Unknown"
            && c["reason"] == "NodeStatusNeverUpdated"
            && c["message"] == "Kubelet never posted node status."
            && c["lastHeartbeatTime"] == t0));
        let posted = [
            json!({"type": "Ready", "status": "True", "reason": "KubeletReady"}),
            json!({"type": "NetworkUnavailable", "status": "False"}),
        ];
        let lost = unknown_conditions(&posted, t0, now);
        assert_eq!(lost[0]["status"], "Unknown");
        assert_eq!(lost[0]["reason"], "NodeStatusUnknown");
        assert_eq!(lost[0]["lastTransitionTime"], now);
        assert_eq!(lost[1], posted[1], "other conditions are kept");
        assert_eq!(lost.len(), 5);
        assert_eq!(lost[2]["reason"], "NodeStatusNeverUpdated");
    }

    #[test]
    fn eviction_times() {
        let taint =
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"});
        let none = json!({"spec": {}});
        assert_eq!(
            eviction_due(&none, &taint).unwrap().to_rfc3339(),
            "2025-01-01T00:00:00+00:00"
        );
        let five = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        assert_eq!(
            eviction_due(&five, &taint).unwrap().to_rfc3339(),
            "2025-01-01T00:00:05+00:00"
        );
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert!(eviction_due(&forever, &taint).is_none());
    }
}
