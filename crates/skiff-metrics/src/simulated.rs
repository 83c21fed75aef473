//! Usage of pods on simulated nodes, which run no containers to measure, so that
//! `kubectl top` and autoscaling work at scale: each pod's from its annotations
//! `skiff.io/simulate-cpu` and `skiff.io/simulate-memory` (quantities for the whole pod,
//! shared among its containers by their requests), else half of each container's
//! requests; written as the samples a `/metrics/resource` scrape would give, with CPU
//! counted from the pod's start so that two scrapes give the simulated rate.

use crate::prom::Sample;

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

/// The samples of a simulated node's scrape at `now_ms`.
pub fn samples(pods: &[SimPod], now_ms: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    let (mut node_cpu, mut node_mem) = (0.0, 0.0);
    let sample = |name: &str, labels: Vec<(String, String)>, value: f64| Sample {
        name: name.to_string(),
        labels,
        value,
        at_ms: Some(now_ms),
    };
    for p in pods {
        let seconds = (now_ms - p.started_ms).max(0) as f64 / 1e3;
        for ((name, _, _), (millicores, bytes)) in p.containers.iter().zip(usage(p)) {
            let labels = vec![
                ("container".to_string(), name.clone()),
                ("namespace".to_string(), p.namespace.clone()),
                ("pod".to_string(), p.name.clone()),
            ];
            let cpu_seconds = millicores as f64 / 1e3 * seconds;
            node_cpu += cpu_seconds;
            node_mem += bytes as f64;
            out.push(sample(
                "container_cpu_usage_seconds_total",
                labels.clone(),
                cpu_seconds,
            ));
            out.push(sample(
                "container_memory_working_set_bytes",
                labels,
                bytes as f64,
            ));
        }
    }
    out.push(sample("node_cpu_usage_seconds_total", Vec::new(), node_cpu));
    out.push(sample(
        "node_memory_working_set_bytes",
        Vec::new(),
        node_mem,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

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
        store.absorb("sim-0", &samples(&pods, 60_000), 0);
        store.absorb("sim-0", &samples(&pods, 75_000), 0);
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
