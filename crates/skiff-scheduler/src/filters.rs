//! Filter plugins: each says why a pod cannot go to a node, in Kubernetes' words.

use crate::{NodeInfo, PodInfo};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    NodeName,
    NodeUnschedulable,
    NodeResourcesFit,
    NodeAffinity,
    TaintToleration,
    NodePorts,
}

pub const ALL: &[Filter] = &[
    Filter::NodeName,
    Filter::NodeUnschedulable,
    Filter::NodeResourcesFit,
    Filter::NodeAffinity,
    Filter::TaintToleration,
    Filter::NodePorts,
];

/// Does `toleration` tolerate `taint` (k8s.io/api core/v1 `Toleration.ToleratesTaint`)?
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let t_effect = toleration["effect"].as_str().unwrap_or("");
    if !t_effect.is_empty() && t_effect != taint["effect"].as_str().unwrap_or("") {
        return false;
    }
    let t_key = toleration["key"].as_str().unwrap_or("");
    let op = toleration["operator"].as_str().unwrap_or("Equal");
    if t_key.is_empty() {
        return op == "Exists";
    }
    if t_key != taint["key"].as_str().unwrap_or("") {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => {
            toleration["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("")
        }
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// One node-selector requirement against node labels (or fields, for matchFields).
fn requirement_matches(req: &Value, values_of: &dyn Fn(&str) -> Option<String>) -> bool {
    let key = req["key"].as_str().unwrap_or("");
    let vals: Vec<&str> = req["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let have = values_of(key);
    match req["operator"].as_str().unwrap_or("") {
        "In" => have.is_some_and(|h| vals.contains(&h.as_str())),
        "NotIn" => have.is_none_or(|h| !vals.contains(&h.as_str())),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                vals.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req["operator"] == "Gt" {
                h > v
            } else {
                h < v
            }
        }
        _ => false,
    }
}

/// A NodeSelectorTerm: all its expressions and fields hold; an empty term matches nothing.
pub fn term_matches(term: &Value, node: &NodeInfo) -> bool {
    let exprs = term["matchExpressions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fields = term["matchFields"].as_array().cloned().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = |k: &str| node.labels.get(k).cloned();
    let node_fields = |k: &str| (k == "metadata.name").then(|| node.name.clone());
    exprs.iter().all(|e| requirement_matches(e, &labels))
        && fields.iter().all(|e| requirement_matches(e, &node_fields))
}

fn selector_matches(selector: &BTreeMap<String, String>, node: &NodeInfo) -> bool {
    selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
}

fn taint_string(t: &Value) -> String {
    format!(
        "{{{}: {}}}",
        t["key"].as_str().unwrap_or(""),
        t["value"].as_str().unwrap_or("")
    )
}

impl Filter {
    /// Reasons the node fails this filter for the pod (empty: it passes).
    pub fn check(&self, p: &PodInfo, n: &NodeInfo) -> Vec<String> {
        match self {
            Filter::NodeName => match &p.node_name {
                Some(want) if *want != n.name => {
                    vec!["node(s) didn't match the requested node name".into()]
                }
                _ => vec![],
            },
            Filter::NodeUnschedulable => {
                let taint = serde_json::json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
                if n.unschedulable && !tolerated(&p.tolerations, &taint) {
                    vec!["node(s) were unschedulable".into()]
                } else {
                    vec![]
                }
            }
            Filter::NodeResourcesFit => {
                let mut out = Vec::new();
                let pods_allowed = n.allocatable.get("pods");
                if n.pod_count + 1 > pods_allowed {
                    out.push("Too many pods".to_string());
                }
                for (res, want) in &p.requests.0 {
                    if *want <= 0 {
                        continue;
                    }
                    let free = n.allocatable.get(res) - n.requested.get(res);
                    if *want > free {
                        out.push(format!("Insufficient {res}"));
                    }
                }
                out
            }
            Filter::NodeAffinity => {
                let required =
                    &p.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
                let terms_ok = if required.is_object() {
                    required["nodeSelectorTerms"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|t| term_matches(t, n))
                } else {
                    true
                };
                if selector_matches(&p.node_selector, n) && terms_ok {
                    vec![]
                } else {
                    vec!["node(s) didn't match Pod's node affinity/selector".into()]
                }
            }
            Filter::TaintToleration => {
                // The first untolerated NoSchedule/NoExecute taint is the reason, as in Kubernetes.
                n.taints
                    .iter()
                    .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
                    .find(|t| !tolerated(&p.tolerations, t))
                    .map(|t| vec![format!("node(s) had untolerated taint {}", taint_string(t))])
                    .unwrap_or_default()
            }
            Filter::NodePorts => {
                let conflict = p.host_ports.iter().any(|(ip, proto, port)| {
                    n.host_ports.iter().any(|(nip, nproto, nport)| {
                        nport == port
                            && nproto == proto
                            && (nip == ip || nip == "0.0.0.0" || ip == "0.0.0.0")
                    })
                });
                if conflict {
                    vec!["node(s) didn't have free ports for the requested pod ports".into()]
                } else {
                    vec![]
                }
            }
        }
    }
}
