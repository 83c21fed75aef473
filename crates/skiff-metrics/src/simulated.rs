//! Usage of pods on simulated nodes, which run no containers to measure, so that
//! `kubectl top` and autoscaling work at scale: each pod's from its annotations
//! `skiff.io/simulate-cpu` and `skiff.io/simulate-memory` (quantities for the whole pod,
//! shared among its containers by their requests), else half of each container's
//! requests; written into the store as a `/metrics/resource` scrape would be, with CPU
//! counted from the pod's start so that two scrapes give the simulated rate.

use crate::Store;

pub const CPU_ANNOTATION: &str = "skiff.io/simulate-cpu";
pub const MEMORY_ANNOTATION: &str = "skiff.io/simulate-memory";

/// A running pod on a simulated node, as far as its usage goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimPod {
    pub namespace: String,
    pub name: String,
    pub started_ms: i64,
    /// Millicores for the whole pod, from the annotation.
    pub cpu: Option<i64>,
    /// Bytes for the whole pod, from the annotation.
    pub memory: Option<i64>,
    /// (name, cpu request in millicores, memory request in bytes).
    pub containers: Vec<(String, i64, i64)>,
}

/// `total` shared by `weights`, evenly when they are all zero.
fn share(total: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i64 = weights.iter().sum();
    if sum == 0 {
        let n = weights.len().max(1) as i64;
        return weights.iter().map(|_| total / n).collect();
    }
    weights.iter().map(|w| total * w / sum).collect()
}

/// Per container: (millicores, bytes).
fn usage(p: &SimPod) -> Vec<(i64, i64)> {
    let cpu_requests: Vec<i64> = p.containers.iter().map(|c| c.1).collect();
    let mem_requests: Vec<i64> = p.containers.iter().map(|c| c.2).collect();
    let cpu = match p.cpu {
        Some(total) => share(total, &cpu_requests),
        None => cpu_requests.iter().map(|r| r / 2).collect(),
    };
    let mem = match p.memory {
        Some(total) => share(total, &mem_requests),
        None => mem_requests.iter().map(|r| r / 2).collect(),
    };
    cpu.into_iter().zip(mem).collect()
}

/// A simulated node's scrape at `now_ms`, written straight into `store`: the figures
/// a `/metrics/resource` would give, without text or labels in between (at 30,000 pods
/// those were half a million small allocations a round).
pub fn absorb(store: &mut Store, node: &str, pods: &[SimPod], now_ms: i64) {
    let mut round = store.round(node);
    let (mut node_cpu, mut node_mem) = (0.0, 0);
    for p in pods {
        let seconds = (now_ms - p.started_ms).max(0) as f64 / 1e3;
        for ((name, _, _), (millicores, bytes)) in p.containers.iter().zip(usage(p)) {
            let id = (p.namespace.as_str(), p.name.as_str(), name.as_str());
            let cpu_seconds = millicores as f64 / 1e3 * seconds;
            let bytes = bytes.max(0) as u64;
            node_cpu += cpu_seconds;
            node_mem += bytes;
            round.container_cpu(id, cpu_seconds, now_ms);
            round.container_memory(id, bytes);
        }
    }
    round.node_cpu(node_cpu, now_ms);
    round.node_memory(node_mem);
    round.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_or_half_the_requests_at_the_simulated_rate() {
        let pods = vec![
            SimPod {
                namespace: "d".into(),
                name: "hot".into(),
                started_ms: 0,
                cpu: Some(900),
                memory: Some(300 << 20),
                containers: vec![("a".into(), 200, 0), ("b".into(), 100, 0)],
            },
            SimPod {
                namespace: "d".into(),
                name: "plain".into(),
                started_ms: 0,
                containers: vec![("c".into(), 500, 64 << 20)],
                ..Default::default()
            },
        ];
        let mut store = Store::default();
        absorb(&mut store, "sim-0", &pods, 60_000);
        absorb(&mut store, "sim-0", &pods, 75_000);
        let got = store.pods();
        let hot = &got[0].containers;
        // 900m shared 2:1 by requests; memory evenly when nothing is requested.
        assert_eq!(
            (hot[0].1.cpu_nano_cores, hot[1].1.cpu_nano_cores),
            (600_000_000, 300_000_000)
        );
        assert_eq!(hot[0].1.memory_bytes, 150 << 20);
        let plain = &got[1].containers[0].1;
        assert_eq!(
            (plain.cpu_nano_cores, plain.memory_bytes),
            (250_000_000, 32 << 20)
        );
        let node = store.node("sim-0").unwrap();
        assert_eq!(node.cpu_nano_cores, 1_150_000_000);
    }
}
