//! Filter plugins: each says why a pod cannot go to a node, in Kubernetes' words.

use crate::{NodeInfo, PodInfo, PodMeta, Snapshot};
use serde_json::Value;
use skiff_validation::labels::Selector;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    NodeName,
    NodeUnschedulable,
    NodeResourcesFit,
    NodeAffinity,
    TaintToleration,
    NodePorts,
    InterPodAffinity,
    PodTopologySpread,
    VolumeBinding,
}

/// Kubernetes' default filter order; a node reports the reasons of the first filter it
/// fails only.
pub const ALL: &[Filter] = &[
    Filter::NodeUnschedulable,
    Filter::NodeName,
    Filter::TaintToleration,
    Filter::NodeAffinity,
    Filter::NodePorts,
    Filter::NodeResourcesFit,
    Filter::VolumeBinding,
    Filter::PodTopologySpread,
    Filter::InterPodAffinity,
];

/// Does an existing pod match a pod-affinity term written in a pod of namespace `ns`?
pub fn term_selects(term: &Value, ns: &str, q: &PodMeta) -> bool {
    let namespaces: Vec<&str> = term["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // An empty namespaceSelector ({}) selects every namespace.
    let all_ns = term["namespaceSelector"]
        .as_object()
        .is_some_and(|m| m.is_empty());
    let ns_ok = all_ns
        || if namespaces.is_empty() {
            q.namespace == ns
        } else {
            namespaces.contains(&q.namespace.as_str())
        };
    ns_ok
        && !term["labelSelector"].is_null()
        && Selector::from_label_selector(&term["labelSelector"])
            .map(|s| s.matches(&q.labels))
            .unwrap_or(false)
}

/// Is there a pod matching `term` in the topology domain of `node`?
fn in_domain(term: &Value, ns: &str, node: &NodeInfo, snap: &Snapshot) -> bool {
    let key = term["topologyKey"].as_str().unwrap_or("");
    let Some(domain) = node.labels.get(key) else {
        return false;
    };
    snap.nodes
        .iter()
        .filter(|m| m.labels.get(key) == Some(domain))
        .any(|m| m.pods.iter().any(|q| term_selects(term, ns, q)))
}

fn as_meta(p: &PodInfo) -> PodMeta {
    PodMeta {
        name: p.name.clone(),
        priority: p.priority,
        requests: p.requests.clone(),
        host_ports: Vec::new(),
        namespace: p.namespace.clone(),
        labels: p.labels.clone(),
        anti_affinity: Vec::new(),
        owner: None,
    }
}

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
    /// Whether the filter can reject any node for this pod (Kubernetes' PreFilter
    /// `Skip`): the rest are left out of the per-node loop.
    pub fn relevant(&self, p: &PodInfo, snap: &Snapshot) -> bool {
        match self {
            Filter::NodeName => p.node_name.is_some(),
            Filter::NodeAffinity => {
                !p.node_selector.is_empty()
                    || p.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                        .is_object()
            }
            Filter::NodePorts => !p.host_ports.is_empty(),
            Filter::InterPodAffinity => snap.any_anti_affinity
                || !p.affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    .is_null()
                || !p.affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    .is_null(),
            Filter::PodTopologySpread => !p.spread.is_empty(),
            Filter::VolumeBinding => !p.claims.is_empty(),
            Filter::NodeUnschedulable | Filter::NodeResourcesFit | Filter::TaintToleration => true,
        }
    }

    /// Reasons the node fails this filter for the pod (empty: it passes).
    pub fn check(&self, p: &PodInfo, n: &NodeInfo, snap: &Snapshot) -> Vec<String> {
        match self {
            Filter::VolumeBinding => snap.volumes.check(&p.namespace, &p.claims, n),
            Filter::NodeName => match &p.node_name {
                Some(want) if *want != n.name => {
                    vec!["node(s) didn't match the requested node name".into()]
                }
                _ => vec![],
            },
            Filter::NodeUnschedulable => {
                if n.unschedulable
                    && !tolerated(
                        &p.tolerations,
                        &serde_json::json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
                    )
                {
                    vec!["node(s) were unschedulable".into()]
                } else {
                    vec![]
                }
            }
            Filter::NodeResourcesFit => {
                let mut out = Vec::new();
                if n.pod_count + 1 > n.allocatable.pods {
                    out.push("Too many pods".to_string());
                }
                let (want, alloc, used) = (&p.requests, &n.allocatable, &n.requested);
                for (res, w, a, u) in [
                    ("cpu", want.cpu, alloc.cpu, used.cpu),
                    ("memory", want.memory, alloc.memory, used.memory),
                    (
                        "ephemeral-storage",
                        want.ephemeral_storage,
                        alloc.ephemeral_storage,
                        used.ephemeral_storage,
                    ),
                ] {
                    if w > 0 && w > a - u {
                        out.push(format!("Insufficient {res}"));
                    }
                }
                for (res, w) in &want.other {
                    if *w > 0 && *w > alloc.get(res) - used.get(res) {
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
            Filter::InterPodAffinity => {
                let pa =
                    &p.affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
                for term in pa.as_array().into_iter().flatten() {
                    if in_domain(term, &p.namespace, n, snap) {
                        continue;
                    }
                    // The first pod of a group may match its own affinity term.
                    let anywhere = snap
                        .nodes
                        .iter()
                        .any(|m| m.pods.iter().any(|q| term_selects(term, &p.namespace, q)));
                    let own = term_selects(term, &p.namespace, &as_meta(p))
                        && n.labels
                            .contains_key(term["topologyKey"].as_str().unwrap_or(""));
                    if anywhere || !own {
                        return vec!["node(s) didn't match pod affinity rules".into()];
                    }
                }
                let anti = &p.affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
                if anti
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| in_domain(t, &p.namespace, n, snap))
                {
                    return vec!["node(s) didn't match pod anti-affinity rules".into()];
                }
                // Existing pods' anti-affinity against the incoming pod.
                if !snap.any_anti_affinity {
                    return vec![];
                }
                let me = as_meta(p);
                for m in &snap.nodes {
                    for q in &m.pods {
                        for t in &q.anti_affinity {
                            let key = t["topologyKey"].as_str().unwrap_or("");
                            if m.labels
                                .get(key)
                                .is_some_and(|d| n.labels.get(key) == Some(d))
                                && term_selects(t, &q.namespace, &me)
                            {
                                return vec![
                                    "node(s) didn't satisfy existing pods anti-affinity rules"
                                        .into(),
                                ];
                            }
                        }
                    }
                }
                vec![]
            }
            Filter::PodTopologySpread => {
                for c in p.spread.iter().filter(|c| {
                    c["whenUnsatisfiable"].as_str().unwrap_or("DoNotSchedule") == "DoNotSchedule"
                }) {
                    let key = c["topologyKey"].as_str().unwrap_or("");
                    let Some(domain) = n.labels.get(key) else {
                        return vec!["node(s) didn't match pod topology spread constraints (missing required label)".into()];
                    };
                    let counts = spread_counts(c, p, snap);
                    let min = counts.values().copied().min().unwrap_or(0);
                    let here = counts.get(domain).copied().unwrap_or(0);
                    if here + 1 - min > c["maxSkew"].as_i64().unwrap_or(1) {
                        return vec!["node(s) didn't match pod topology spread constraints".into()];
                    }
                }
                vec![]
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

/// Pods the constraint selects, per topology domain (domains of every node with the key).
pub fn spread_counts(c: &Value, p: &PodInfo, snap: &Snapshot) -> BTreeMap<String, i64> {
    let key = c["topologyKey"].as_str().unwrap_or("");
    let sel = Selector::from_label_selector(&c["labelSelector"]).unwrap_or_default();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for m in &snap.nodes {
        let Some(d) = m.labels.get(key) else { continue };
        let n = m
            .pods
            .iter()
            .filter(|q| {
                q.namespace == p.namespace
                    && !c["labelSelector"].is_null()
                    && sel.matches(&q.labels)
            })
            .count() as i64;
        *counts.entry(d.clone()).or_default() += n;
    }
    counts
}
