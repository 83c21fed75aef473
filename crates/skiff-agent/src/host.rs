//! The node's host: capacity, address, the CNI network config, and the routes that keep
//! cluster CIDRs from leaking out of the machine.

use std::collections::BTreeMap;
use std::path::Path;

pub const POD_CIDR: &str = "10.42.0.0/16";
pub const SERVICE_CIDR: &str = "10.43.0.0/16";
pub const BRIDGE: &str = "skiff0";

/// Capacity as kubelet reports it: cores, memory in Ki, 110 pods, the data dir's disk.
pub fn capacity(data_dir: &Path) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    c.insert("cpu".into(), cpus.to_string());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    c.insert("memory".into(), format!("{mem_kib}Ki"));
    c.insert("pods".into(), "110".into());
    if let Ok(st) = nix::sys::statvfs::statvfs(data_dir) {
        let bytes = st.blocks() * st.fragment_size();
        c.insert("ephemeral-storage".into(), format!("{}Ki", bytes / 1024));
    }
    c
}

/// Allocatable: capacity less kubelet's default hard eviction threshold for memory
/// (100Mi), as a node with no reservations configured reports it.
pub fn allocatable(capacity: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = capacity.clone();
    if let Some(kib) = capacity
        .get("memory")
        .and_then(|m| m.strip_suffix("Ki"))
        .and_then(|n| n.parse::<u64>().ok())
    {
        a.insert(
            "memory".into(),
            format!("{}Ki", kib.saturating_sub(100 * 1024)),
        );
    }
    a
}

/// The machine's primary IPv4 address (the default route's interface, else the first
/// up, non-loopback one), else 127.0.0.1.
pub fn node_ip() -> String {
    skiff_pki::primary_ipv4().map_or_else(|| "127.0.0.1".into(), |ip| ip.to_string())
}

/// The CNI conflist containerd reads: a bridge with host-local IPAM on the node's pod
/// CIDR, portmap for hostPorts. No masquerade: pod traffic is not NATed off the machine.
pub fn cni_conflist(pod_cidr: &str, ipam_dir: &Path, mtu: Option<u32>) -> String {
    let mut c = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "skiff",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir.display().to_string(),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    });
    if let Some(mtu) = mtu {
        c["plugins"][0]["mtu"] = mtu.into();
    }
    c.to_string()
}

async fn ip(args: &[&str]) -> std::io::Result<std::process::Output> {
    tokio::process::Command::new("ip").args(args).output().await
}

/// Unreachable routes for the pod and service CIDRs, so an address nothing here serves
/// fails locally instead of following the default route off the machine. The node's own
/// /24 on the bridge is more specific and still wins.
pub async fn install_blackhole_routes() -> std::io::Result<()> {
    for cidr in [POD_CIDR, SERVICE_CIDR] {
        let out = ip(&["route", "replace", "unreachable", cidr]).await?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "ip route replace unreachable {cidr}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Removes what `install_blackhole_routes` and the bridge plugin left, once no pod runs.
pub async fn remove_network() {
    for cidr in [POD_CIDR, SERVICE_CIDR] {
        let _ = ip(&["route", "del", "unreachable", cidr]).await;
    }
    let _ = ip(&["link", "del", BRIDGE]).await;
}

/// `<cgroup_root>/kubepods/<rest>`, as a cgroupfs path (`/` is the default root).
pub fn under_cgroup_root(cgroup_root: &str, rest: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    format!("{root}{rest}")
}

/// Cgroup directories under `<cgroup_root>/kubepods` in every mounted hierarchy (v1
/// controllers and the unified one), deepest first.
fn kubepods_dirs(cgroup_root: &str, filter: &dyn Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    let sub = under_cgroup_root(cgroup_root, "/kubepods");
    for root in roots.flatten() {
        let base = root.path().join(sub.trim_start_matches('/'));
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            if !d.is_dir() {
                continue;
            }
            if let Ok(children) = std::fs::read_dir(&d) {
                for c in children.flatten() {
                    if c.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(c.path());
                    }
                }
            }
            if filter(&d.display().to_string()) {
                out.push(d);
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Removes the pod's (empty) cgroups, which kubelet, not the runtime, owns.
pub fn remove_pod_cgroups(cgroup_root: &str, uid: &str) {
    let leaf = format!("/pod{uid}");
    for d in kubepods_dirs(cgroup_root, &|p| p.ends_with(&leaf)) {
        let _ = std::fs::remove_dir(d);
    }
}

/// Removes the whole (empty) `kubepods` tree, and a cgroup root of the agent's own, at
/// shutdown once no pod is left.
pub fn remove_kubepods_cgroups(cgroup_root: &str) {
    for d in kubepods_dirs(cgroup_root, &|_| true) {
        let _ = std::fs::remove_dir(d);
    }
    let root = cgroup_root.trim_matches('/');
    if root.is_empty() {
        return;
    }
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            let _ = std::fs::remove_dir(h.path().join(root));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_keeps_the_eviction_threshold() {
        let mut c = BTreeMap::new();
        c.insert("memory".to_string(), "2048000Ki".to_string());
        c.insert("cpu".to_string(), "2".to_string());
        let a = allocatable(&c);
        assert_eq!(a["memory"], "1945600Ki");
        assert_eq!(a["cpu"], "2");
    }

    #[test]
    fn conflist_uses_the_node_cidr() {
        let v: serde_json::Value =
            serde_json::from_str(&cni_conflist("10.42.3.0/24", Path::new("/d"), None)).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.42.3.0/24"
        );
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert_eq!(v["plugins"][1]["type"], "portmap");
    }
}
