//! Node registration, heartbeats through a `coordination.k8s.io` Lease in
//! `kube-node-lease` (every 10 s), and node status (on change or every minute).

use crate::{Result, now, now_micro};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i64 = 40;
pub const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// What a node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// cpu, memory, pods, ...
    pub capacity: BTreeMap<String, String>,
    pub allocatable: BTreeMap<String, String>,
    pub internal_ip: String,
    pub runtime_version: String,
    pub os_image: String,
    pub kernel_version: String,
    /// Where the agent's HTTPS endpoint listens (logs, exec, port-forward).
    pub kubelet_port: u16,
    pub ids: HostIds,
}

/// The machine's identities as kubelet reports them in `nodeInfo` (empty where the
/// host has none, as on a VM without DMI).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIds {
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
}

impl HostIds {
    /// Read from where kubelet reads them.
    pub fn of_this_host() -> HostIds {
        let read = |paths: &[&str]| {
            paths
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        HostIds {
            machine_id: read(&["/etc/machine-id", "/var/lib/dbus/machine-id"]),
            system_uuid: read(&["/sys/class/dmi/id/product_uuid"]),
            boot_id: read(&["/proc/sys/kernel/random/boot_id"]),
        }
    }
}

/// kubelet's wording while the pod network is not configured yet.
pub const NETWORK_NOT_READY: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

/// The node's conditions. `since`: the transition time to set on the Ready condition
/// (and, at registration, on all); None leaves the stored ones, which a strategic merge
/// keeps (conditions merge by type), so `lastTransitionTime` says when Ready last
/// changed, not when status was last posted.
fn conditions(ready: bool, since: Option<&str>, all: bool) -> Value {
    let t = now();
    let c = |ty: &str, status: &str, reason: &str, msg: &str, stamp: bool| {
        let mut v = json!({"type": ty, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": t});
        if let Some(s) = since.filter(|_| stamp) {
            v["lastTransitionTime"] = json!(s);
        }
        v
    };
    let (status, reason, msg) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        ("False", "KubeletNotReady", NETWORK_NOT_READY)
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            all
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            all
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            all
        ),
        c("Ready", status, reason, msg, true),
    ])
}

fn status(spec: &NodeSpec, ready: bool, since: Option<&str>, all: bool) -> Value {
    json!({
        "capacity": spec.capacity,
        "allocatable": spec.allocatable,
        "conditions": conditions(ready, since, all),
        "addresses": [{"type": "InternalIP", "address": spec.internal_ip}, {"type": "Hostname", "address": spec.name}],
        "nodeInfo": {
            "machineID": spec.ids.machine_id, "systemUUID": spec.ids.system_uuid,
            "bootID": spec.ids.boot_id,
            "kernelVersion": spec.kernel_version, "osImage": spec.os_image,
            "containerRuntimeVersion": spec.runtime_version,
            "kubeletVersion": "v1.33.0+skiff", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": spec.kubelet_port}},
    })
}

/// Creates the Node (or refreshes its status if it exists).
/// `ready`: whether the node can run pods on the pod network now.
pub async fn register(client: &kube::Client, spec: &NodeSpec, ready: bool) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let t = now();
    // Not ready yet: registered tainted, as kubelet does, so nothing is scheduled here
    // before the node lifecycle controller has seen it Ready and lifted the taint.
    let node_spec = if ready {
        json!({})
    } else {
        json!({"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]})
    };
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec.name, "labels": spec.labels}, "spec": node_spec, "status": status(spec, ready, Some(&t), true)});
    match api
        .create(&PostParams::default(), &serde_json::from_value(node)?)
        .await
    {
        Ok(_) => Ok(()),
        // Back after a restart: readiness is reported as changed, since what the API
        // shows (perhaps Unknown, from the lifecycle controller) is not known here.
        Err(kube::Error::Api(e)) if e.code == 409 => report_status(client, spec, ready, true).await,
        Err(e) => Err(e.into()),
    }
}

/// Posts the node's status; `changed`: readiness differs from what was last posted
/// (its transition time is set).
pub async fn report_status(
    client: &kube::Client,
    spec: &NodeSpec,
    ready: bool,
    changed: bool,
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let t = now();
    let patch = json!({"status": status(spec, ready, changed.then_some(t.as_str()), false)});
    api.patch_status(
        &spec.name,
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await?;
    Ok(())
}

/// Whether the Node object says Ready=True.
pub fn shows_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Reports the node's status if the API shows it not Ready (the node lifecycle
/// controller marks a node Unknown when its Lease lapsed), as kubelet's status check
/// every 10 s does; the minute's refresh covers the rest.
pub async fn repost_if_not_ready(client: &kube::Client, spec: &NodeSpec) -> Result<bool> {
    let req = http::Request::get(format!("/api/v1/nodes/{}", spec.name))
        .body(Vec::new())
        .expect("valid request");
    let node: Value = client.request(req).await?;
    if shows_ready(&node) {
        return Ok(false);
    }
    report_status(client, spec, true, true).await?;
    Ok(true)
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &kube::Client, node: &str) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now_micro()});
    let patch = json!({"spec": spec});
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": node, "namespace": LEASE_NAMESPACE}, "spec": spec});
            api.create(&PostParams::default(), &serde_json::from_value(lease)?)
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The node's pod CIDR, once the server's IPAM has assigned it.
pub async fn pod_cidr(client: &kube::Client, node: &str) -> Result<Option<String>> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api.get(node).await?.spec.and_then(|s| s.pod_cidr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_transition_times() {
        let c = conditions(false, Some("2026-01-01T00:00:00Z"), true);
        let ready = &c[3];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["message"], NETWORK_NOT_READY);
        assert_eq!(c[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        // A refresh keeps the stored transition times (the strategic merge leaves them).
        let c = conditions(true, None, false);
        assert_eq!(c[3]["status"], "True");
        assert!(c[3].get("lastTransitionTime").is_none());
        assert!(c[3]["lastHeartbeatTime"].is_string());
        // A change of readiness stamps only Ready.
        let c = conditions(true, Some("t"), false);
        assert_eq!(c[3]["lastTransitionTime"], "t");
        assert!(c[0].get("lastTransitionTime").is_none());
    }
}
