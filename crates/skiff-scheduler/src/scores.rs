//! Score plugins, each 0–100 per node, summed with equal weights.

use crate::filters::{term_matches, tolerated};
use crate::{NodeInfo, PodInfo};

/// Requests the scorer assumes for pods that ask for nothing (Kubernetes' non-zero
/// defaults), so best-effort pods still spread.
const DEFAULT_CPU_MILLIS: i128 = 100;
const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024;

fn nonzero(p: &PodInfo, res: &str) -> i128 {
    match (res, p.requests.get(res)) {
        ("cpu", 0) => DEFAULT_CPU_MILLIS,
        ("memory", 0) => DEFAULT_MEMORY,
        (_, v) => v,
    }
}

fn fractions(p: &PodInfo, n: &NodeInfo) -> Vec<f64> {
    ["cpu", "memory"]
        .iter()
        .map(|r| {
            let alloc = n.allocatable.get(r);
            if alloc <= 0 {
                return 1.0;
            }
            ((n.requested.get(r) + nonzero(p, r)) as f64 / alloc as f64).min(1.0)
        })
        .collect()
}

/// NodeResourcesFit, LeastAllocated strategy.
pub fn least_allocated(p: &PodInfo, n: &NodeInfo) -> i64 {
    let f = fractions(p, n);
    ((1.0 - f.iter().sum::<f64>() / f.len() as f64) * 100.0).round() as i64
}

/// NodeResourcesBalancedAllocation: 100 when CPU and memory are equally used.
pub fn balanced(p: &PodInfo, n: &NodeInfo) -> i64 {
    let f = fractions(p, n);
    let mean = f.iter().sum::<f64>() / f.len() as f64;
    let var = f.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f.len() as f64;
    ((1.0 - var.sqrt()) * 100.0).round() as i64
}

fn preferred_affinity_raw(p: &PodInfo, n: &NodeInfo) -> i64 {
    p.affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| term_matches(&t["preference"], n))
        .map(|t| t["weight"].as_i64().unwrap_or(0))
        .sum()
}

fn prefer_no_schedule_raw(p: &PodInfo, n: &NodeInfo) -> i64 {
    n.taints
        .iter()
        .filter(|t| t["effect"] == "PreferNoSchedule" && !tolerated(&p.tolerations, t))
        .count() as i64
}

/// The node's total score among the feasible nodes (some plugins normalise over them).
pub fn total(p: &PodInfo, n: &NodeInfo, feasible: &[&NodeInfo]) -> i64 {
    let max_aff = feasible
        .iter()
        .map(|m| preferred_affinity_raw(p, m))
        .max()
        .unwrap_or(0);
    let affinity = if max_aff > 0 {
        preferred_affinity_raw(p, n) * 100 / max_aff
    } else {
        0
    };
    let max_taints = feasible
        .iter()
        .map(|m| prefer_no_schedule_raw(p, m))
        .max()
        .unwrap_or(0);
    let taints = if max_taints > 0 {
        100 - prefer_no_schedule_raw(p, n) * 100 / max_taints
    } else {
        100
    };
    least_allocated(p, n) + balanced(p, n) + affinity + taints
}
