//! Score plugins, each 0–100 per node, summed with equal weights.

use crate::Snapshot;
use crate::filters::{spread_counts, term_matches, term_selects, tolerated};
use crate::{NodeInfo, PodInfo};
use std::collections::BTreeMap;

/// Requests the scorer assumes for pods that ask for nothing (Kubernetes' non-zero
/// defaults), so best-effort pods still spread.
const DEFAULT_CPU_MILLIS: i128 = 100;
const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024;

fn nonzero(v: i128, default: i128) -> i128 {
    if v == 0 { default } else { v }
}

/// Requested fractions of CPU and memory with the pod on the node.
fn fractions(p: &PodInfo, n: &NodeInfo) -> [f64; 2] {
    // Through i64: converting i128 to f64 is a slow library call, and this runs for
    // hundreds of nodes per pod.
    let frac = |alloc: i128, used: i128, want: i128| {
        if alloc <= 0 {
            1.0
        } else {
            let clamp = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64 as f64;
            (clamp(used + want) / clamp(alloc)).min(1.0)
        }
    };
    [
        frac(
            n.allocatable.cpu,
            n.requested.cpu,
            nonzero(p.requests.cpu, DEFAULT_CPU_MILLIS),
        ),
        frac(
            n.allocatable.memory,
            n.requested.memory,
            nonzero(p.requests.memory, DEFAULT_MEMORY),
        ),
    ]
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

fn normalise(v: i64, min: i64, max: i64) -> i64 {
    if max == min {
        100
    } else {
        (v - min) * 100 / (max - min)
    }
}

/// Total scores of the feasible nodes, in order. Plugins that normalise across nodes
/// compute their raw values once, so a round is linear in the number of nodes.
pub fn totals(p: &PodInfo, feasible: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let has_pref_node =
        p.affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array();
    let has_pref_pod = p.affinity["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .is_array()
        || p.affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .is_array();
    let aff: Vec<i64> = feasible
        .iter()
        .map(|m| {
            if has_pref_node {
                preferred_affinity_raw(p, m)
            } else {
                0
            }
        })
        .collect();
    let taints: Vec<i64> = feasible
        .iter()
        .map(|m| prefer_no_schedule_raw(p, m))
        .collect();
    let pa: Vec<i64> = feasible
        .iter()
        .map(|m| {
            if has_pref_pod {
                preferred_pod_affinity_raw(p, m, snap)
            } else {
                0
            }
        })
        .collect();
    let soft: Vec<(String, BTreeMap<String, i64>)> = p
        .spread
        .iter()
        .filter(|c| c["whenUnsatisfiable"] == "ScheduleAnyway")
        .map(|c| {
            (
                c["topologyKey"].as_str().unwrap_or("").to_string(),
                spread_counts(c, p, snap),
            )
        })
        .collect();
    let crowd: Vec<i64> = feasible
        .iter()
        .map(|m| {
            let owner = p
                .owner
                .as_ref()
                .map(|o| {
                    m.pods
                        .iter()
                        .filter(|q| q.owner.as_ref() == Some(o))
                        .count() as i64
                })
                .unwrap_or(0);
            owner
                + soft
                    .iter()
                    .map(|(k, counts)| {
                        m.labels
                            .get(k)
                            .and_then(|d| counts.get(d).copied())
                            .unwrap_or(0)
                    })
                    .sum::<i64>()
        })
        .collect();
    let range = |v: &[i64]| {
        (
            v.iter().copied().min().unwrap_or(0),
            v.iter().copied().max().unwrap_or(0),
        )
    };
    let (_, max_aff) = range(&aff);
    let (_, max_t) = range(&taints);
    let (pa_min, pa_max) = range(&pa);
    let (cr_min, cr_max) = range(&crowd);
    feasible
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let affinity = if max_aff > 0 {
                aff[i] * 100 / max_aff
            } else {
                0
            };
            let taint = if max_t > 0 {
                100 - taints[i] * 100 / max_t
            } else {
                100
            };
            let pod_affinity = if pa_min == pa_max {
                0
            } else {
                normalise(pa[i], pa_min, pa_max)
            };
            let spread = if cr_min == cr_max {
                100
            } else {
                100 - normalise(crowd[i], cr_min, cr_max)
            };
            least_allocated(p, n) + balanced(p, n) + affinity + taint + pod_affinity + spread
        })
        .collect()
}
