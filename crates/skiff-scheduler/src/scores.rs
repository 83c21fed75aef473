//! Score plugins, each 0–100 per node, summed with equal weights.

use crate::Snapshot;
use crate::filters::{spread_counts, term_matches, term_selects, tolerated};
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

/// Preferred pod (anti-)affinity: weights of terms with a match in the node's domain.
fn preferred_pod_affinity_raw(p: &PodInfo, n: &NodeInfo, snap: &Snapshot) -> i64 {
    let in_domain = |t: &serde_json::Value| {
        let key = t["topologyKey"].as_str().unwrap_or("");
        n.labels.get(key).is_some_and(|d| {
            snap.nodes
                .iter()
                .filter(|m| m.labels.get(key) == Some(d))
                .any(|m| m.pods.iter().any(|q| term_selects(t, &p.namespace, q)))
        })
    };
    let mut score = 0;
    for w in p.affinity["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if in_domain(&w["podAffinityTerm"]) {
            score += w["weight"].as_i64().unwrap_or(0);
        }
    }
    for w in p.affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if in_domain(&w["podAffinityTerm"]) {
            score -= w["weight"].as_i64().unwrap_or(0);
        }
    }
    score
}

/// Pods of the same owner already on the node, plus ScheduleAnyway spread counts: fewer
/// is better.
fn crowding_raw(p: &PodInfo, n: &NodeInfo, snap: &Snapshot) -> i64 {
    let same_owner = p
        .owner
        .as_ref()
        .map(|o| {
            n.pods
                .iter()
                .filter(|q| q.owner.as_ref() == Some(o))
                .count() as i64
        })
        .unwrap_or(0);
    let soft: i64 = p
        .spread
        .iter()
        .filter(|c| c["whenUnsatisfiable"] == "ScheduleAnyway")
        .map(|c| {
            n.labels
                .get(c["topologyKey"].as_str().unwrap_or(""))
                .and_then(|d| spread_counts(c, p, snap).get(d).copied())
                .unwrap_or(0)
        })
        .sum();
    same_owner + soft
}

fn normalise(v: i64, min: i64, max: i64) -> i64 {
    if max == min {
        100
    } else {
        (v - min) * 100 / (max - min)
    }
}

/// The node's total score among the feasible nodes (some plugins normalise over them).
pub fn total(p: &PodInfo, n: &NodeInfo, feasible: &[&NodeInfo], snap: &Snapshot) -> i64 {
    let pa: Vec<i64> = feasible
        .iter()
        .map(|m| preferred_pod_affinity_raw(p, m, snap))
        .collect();
    let pod_affinity = normalise(
        preferred_pod_affinity_raw(p, n, snap),
        pa.iter().copied().min().unwrap_or(0),
        pa.iter().copied().max().unwrap_or(0),
    );
    let cr: Vec<i64> = feasible.iter().map(|m| crowding_raw(p, m, snap)).collect();
    let spread = 100
        - normalise(
            crowding_raw(p, n, snap),
            cr.iter().copied().min().unwrap_or(0),
            cr.iter().copied().max().unwrap_or(0),
        );
    let spread = if cr.iter().all(|c| *c == cr[0]) {
        100
    } else {
        spread
    };
    let pod_affinity = if pa.iter().all(|x| *x == pa[0]) {
        0
    } else {
        pod_affinity
    };
    base_total(p, n, feasible) + pod_affinity + spread
}

fn base_total(p: &PodInfo, n: &NodeInfo, feasible: &[&NodeInfo]) -> i64 {
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
