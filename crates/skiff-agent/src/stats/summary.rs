//! kubelet's Summary API (`stats/v1alpha1`, served at `/stats/summary`) as data, and the
//! pure step from the runtime's measurements and the host's to it.

use super::host::Host;
use crate::criconv::LABEL_POD_UID;
use crate::runtime::Usage;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use skiff_cri::cri;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

/// The default interface's counters inline (as kubelet embeds them), then every one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    pub time: String,
    #[serde(flatten)]
    pub default: InterfaceStats,
    pub interfaces: Vec<InterfaceStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// The previous cumulative CPU reading of each container, pod and the node, so that a
/// reading becomes a rate (nano-cores) as kubelet reports it.
#[derive(Debug, Default)]
pub struct Rates {
    prev: HashMap<String, Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ns: i64,
    usage_ns: u64,
    rate: Option<u64>,
}

impl Rates {
    /// The rate since `key`'s previous reading (the last rate when no time has passed;
    /// none at the first reading or after a counter reset).
    pub fn nano_cores(&mut self, key: &str, at_ns: i64, usage_ns: u64) -> Option<u64> {
        let prev = self.prev.get(key).copied();
        let rate = match prev {
            Some(p) if at_ns <= p.at_ns => return p.rate,
            Some(p) if usage_ns >= p.usage_ns => {
                let dt = (at_ns - p.at_ns) as u128;
                Some(((usage_ns - p.usage_ns) as u128 * 1_000_000_000 / dt) as u64)
            }
            _ => None,
        };
        self.prev.insert(
            key.to_string(),
            Sample {
                at_ns,
                usage_ns,
                rate,
            },
        );
        rate
    }

    /// Forgets what no longer exists.
    fn retain(&mut self, live: &HashSet<String>) {
        self.prev.retain(|k, _| live.contains(k));
    }
}

/// A CRI timestamp (nanoseconds since the epoch) as the API writes times.
pub fn time(ns: i64) -> String {
    Utc.timestamp_nanos(ns)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn stamp(ns: i64, now: DateTime<Utc>) -> i64 {
    if ns > 0 {
        ns
    } else {
        now.timestamp_nanos_opt().unwrap_or(0)
    }
}

fn value(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// The summary of the node `node`: the host's readings and every ready pod sandbox this
/// agent made (labelled with a pod UID) with its running containers.
pub fn build(
    node: &str,
    host: &Host,
    usage: &Usage,
    rates: &mut Rates,
    now: DateTime<Utc>,
) -> Summary {
    let mut live = HashSet::from(["node".to_string()]);
    let pods = usage
        .sandboxes
        .iter()
        .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
        .filter(|s| s.labels.contains_key(LABEL_POD_UID))
        .map(|s| pod(s, usage, rates, &mut live, now))
        .collect();
    rates.retain(&live);
    Summary {
        node: node_stats(node, host, rates, now),
        pods,
    }
}

fn node_stats(node: &str, host: &Host, rates: &mut Rates, now: DateTime<Utc>) -> NodeStats {
    let t = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let now_ns = stamp(0, now);
    let cpu = host.cpu_ns.map(|used| CpuStats {
        time: t.clone(),
        usage_nano_cores: rates.nano_cores("node", now_ns, used),
        usage_core_nano_seconds: Some(used),
    });
    let memory = host.memory.map(|m| {
        let usage = m.total.saturating_sub(m.free);
        let working_set = usage.saturating_sub(m.inactive_file);
        MemoryStats {
            time: t.clone(),
            available_bytes: Some(m.total.saturating_sub(working_set)),
            usage_bytes: Some(usage),
            working_set_bytes: Some(working_set),
            rss_bytes: Some(m.anon),
            page_faults: None,
            major_page_faults: None,
        }
    });
    let ifaces: Vec<InterfaceStats> = host
        .interfaces
        .iter()
        .map(|i| InterfaceStats {
            name: i.name.clone(),
            rx_bytes: Some(i.rx_bytes),
            rx_errors: Some(i.rx_errors),
            tx_bytes: Some(i.tx_bytes),
            tx_errors: Some(i.tx_errors),
        })
        .collect();
    let default = ifaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(ifaces.first())
        .cloned();
    NodeStats {
        node_name: node.to_string(),
        start_time: host.boot_time.map(|s| time(s * 1_000_000_000)),
        cpu,
        memory,
        network: default.map(|default| NetworkStats {
            time: t.clone(),
            default,
            interfaces: ifaces,
        }),
        fs: host.fs.map(|f| FsStats {
            time: t.clone(),
            available_bytes: Some(f.available),
            capacity_bytes: Some(f.capacity),
            used_bytes: Some(f.capacity.saturating_sub(f.free)),
            inodes_free: Some(f.inodes_free),
            inodes: Some(f.inodes),
            inodes_used: Some(f.inodes.saturating_sub(f.inodes_free)),
        }),
    }
}

fn pod(
    s: &cri::PodSandbox,
    usage: &Usage,
    rates: &mut Rates,
    live: &mut HashSet<String>,
    now: DateTime<Utc>,
) -> PodStats {
    let meta = s.metadata.clone().unwrap_or_default();
    let containers: Vec<ContainerStats> = usage
        .containers
        .iter()
        .filter(|c| c.pod_sandbox_id == s.id)
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .map(|c| {
            live.insert(c.id.clone());
            let stats = usage
                .container_stats
                .iter()
                .find(|st| st.attributes.as_ref().is_some_and(|a| a.id == c.id));
            container(c, stats, rates, now)
        })
        .collect();
    live.insert(s.id.clone());
    let sandbox = usage
        .sandbox_stats
        .iter()
        .find(|st| st.attributes.as_ref().is_some_and(|a| a.id == s.id))
        .and_then(|st| st.linux.as_ref());
    let cpu = match sandbox.and_then(|l| l.cpu.as_ref()) {
        Some(c) => Some(cpu(&s.id, c, rates, now)),
        None => sum_cpu(&containers),
    };
    let memory = match sandbox.and_then(|l| l.memory.as_ref()) {
        Some(m) => Some(memory(m, now)),
        None => sum_memory(&containers),
    };
    let network = sandbox
        .and_then(|l| l.network.as_ref())
        .and_then(|n| network(n, now));
    PodStats {
        pod_ref: PodReference {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
        },
        start_time: Some(time(s.created_at)),
        containers,
        cpu,
        memory,
        network,
    }
}

fn container(
    c: &cri::Container,
    stats: Option<&cri::ContainerStats>,
    rates: &mut Rates,
    now: DateTime<Utc>,
) -> ContainerStats {
    ContainerStats {
        name: c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        start_time: Some(time(c.created_at)),
        cpu: stats
            .and_then(|s| s.cpu.as_ref())
            .map(|u| cpu(&c.id, u, rates, now)),
        memory: stats
            .and_then(|s| s.memory.as_ref())
            .map(|m| memory(m, now)),
        rootfs: stats
            .and_then(|s| s.writable_layer.as_ref())
            .map(|w| FsStats {
                time: time(stamp(w.timestamp, now)),
                used_bytes: value(&w.used_bytes),
                inodes_used: value(&w.inodes_used),
                ..Default::default()
            }),
    }
}

fn cpu(key: &str, u: &cri::CpuUsage, rates: &mut Rates, now: DateTime<Utc>) -> CpuStats {
    let at = stamp(u.timestamp, now);
    let used = value(&u.usage_core_nano_seconds);
    // The runtime's own rate where it keeps one (containerd does), else ours.
    let rate = used.and_then(|used| rates.nano_cores(key, at, used));
    CpuStats {
        time: time(at),
        usage_nano_cores: value(&u.usage_nano_cores).or(rate),
        usage_core_nano_seconds: used,
    }
}

fn memory(m: &cri::MemoryUsage, now: DateTime<Utc>) -> MemoryStats {
    MemoryStats {
        time: time(stamp(m.timestamp, now)),
        available_bytes: value(&m.available_bytes),
        usage_bytes: value(&m.usage_bytes),
        working_set_bytes: value(&m.working_set_bytes),
        rss_bytes: value(&m.rss_bytes),
        page_faults: value(&m.page_faults),
        major_page_faults: value(&m.major_page_faults),
    }
}

fn network(n: &cri::NetworkUsage, now: DateTime<Utc>) -> Option<NetworkStats> {
    let iface = |i: &cri::NetworkInterfaceUsage| InterfaceStats {
        name: i.name.clone(),
        rx_bytes: value(&i.rx_bytes),
        rx_errors: value(&i.rx_errors),
        tx_bytes: value(&i.tx_bytes),
        tx_errors: value(&i.tx_errors),
    };
    let default = n.default_interface.as_ref().map(iface)?;
    Some(NetworkStats {
        time: time(stamp(n.timestamp, now)),
        default,
        interfaces: n.interfaces.iter().map(iface).collect(),
    })
}

/// A pod's CPU as its containers' sum, where the runtime reports no pod-level figure.
fn sum_cpu(containers: &[ContainerStats]) -> Option<CpuStats> {
    let cpus: Vec<&CpuStats> = containers.iter().filter_map(|c| c.cpu.as_ref()).collect();
    let first = cpus.first()?;
    Some(CpuStats {
        time: first.time.clone(),
        usage_nano_cores: cpus.iter().map(|c| c.usage_nano_cores).sum(),
        usage_core_nano_seconds: cpus.iter().map(|c| c.usage_core_nano_seconds).sum(),
    })
}

fn sum_memory(containers: &[ContainerStats]) -> Option<MemoryStats> {
    let mems: Vec<&MemoryStats> = containers
        .iter()
        .filter_map(|c| c.memory.as_ref())
        .collect();
    let first = mems.first()?;
    let sum = |f: fn(&MemoryStats) -> Option<u64>| mems.iter().map(|m| f(m)).sum();
    Some(MemoryStats {
        time: first.time.clone(),
        available_bytes: None,
        usage_bytes: sum(|m| m.usage_bytes),
        working_set_bytes: sum(|m| m.working_set_bytes),
        rss_bytes: sum(|m| m.rss_bytes),
        page_faults: sum(|m| m.page_faults),
        major_page_faults: sum(|m| m.major_page_faults),
    })
}

/// What `?only_cpu_and_memory=true` asks for (metrics-server's request).
pub fn only_cpu_and_memory(mut s: Summary) -> Summary {
    s.node.network = None;
    s.node.fs = None;
    for p in &mut s.pods {
        p.network = None;
        for c in &mut p.containers {
            c.rootfs = None;
        }
    }
    s
}
