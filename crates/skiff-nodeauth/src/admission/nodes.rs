//! A node may write only its own Node, without a config source, without changing its
//! taints, and without setting labels that steer workloads (`node-restriction.
//! kubernetes.io/` ones, and `kubernetes.io` / `k8s.io` ones kubelets do not own).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Attributes, Operation, Rejection, forbid, require};
use crate::semantic;

/// Label namespace reserved for labels only administrators set on nodes.
const LABEL_NAMESPACE_NODE_RESTRICTION: &str = "node-restriction.kubernetes.io";

/// Labels a kubelet may set on its own Node (kube's `kubeletapis.KubeletLabels()`).
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// Label namespaces (and their subdomains) a kubelet may set.
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

pub(super) fn admit(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    let requested = a.effective_name();
    if requested != node {
        return forbid(format!(
            "node {node:?} is not allowed to modify node {requested:?}"
        ));
    }
    match a.operation {
        Operation::Create => create(node, require(a.object)?),
        Operation::Update => update(node, require(a.object)?, require(a.old_object)?),
        _ => Ok(()),
    }
}

fn config_source(node: &Value) -> &Value {
    &node["spec"]["configSource"]
}

fn create(node: &str, obj: &Value) -> Result<(), Rejection> {
    if !config_source(obj).is_null() {
        return forbid(format!(
            "node {node:?} is not allowed to create pods with a non-nil configSource"
        ));
    }
    let none = Map::new();
    let forbidden = forbidden_labels(modified_labels(labels(obj), &none));
    if !forbidden.is_empty() {
        return forbid(format!(
            "node {node:?} is not allowed to set the following labels: {}",
            join(&forbidden)
        ));
    }
    Ok(())
}

fn update(node: &str, new: &Value, old: &Value) -> Result<(), Rejection> {
    let source = config_source(new);
    if !source.is_null() && !semantic::equal(source, config_source(old)) {
        return forbid(format!(
            "node {node:?} is not allowed to update configSource to a new non-nil configSource"
        ));
    }
    if !semantic::equal(&new["spec"]["taints"], &old["spec"]["taints"]) {
        return forbid(format!("node {node:?} is not allowed to modify taints"));
    }
    let forbidden = forbidden_labels(modified_labels(labels(new), labels(old)));
    if !forbidden.is_empty() {
        // Kube's message has no node name here.
        return forbid(format!(
            "is not allowed to modify labels: {}",
            join(&forbidden)
        ));
    }
    Ok(())
}

fn join(labels: &BTreeSet<&str>) -> String {
    labels.iter().copied().collect::<Vec<_>>().join(", ")
}

fn labels(node: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    node["metadata"]["labels"].as_object().unwrap_or(&EMPTY)
}

/// Keys added, removed or changed between `a` and `b`.
fn modified_labels<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> BTreeSet<&'a str> {
    let one_way = |p: &'a Map<String, Value>, q: &'a Map<String, Value>| {
        p.iter()
            .filter(move |(k, v)| q.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
    };
    one_way(a, b).chain(one_way(b, a)).collect()
}

/// The prefix of a label key (`example.com` of `example.com/x`), empty without one.
fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or_default()
}

fn in_namespace(key: &str, namespace: &str) -> bool {
    let ns = label_namespace(key);
    ns == namespace
        || ns
            .strip_suffix(namespace)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn is_kubernetes_label(key: &str) -> bool {
    in_namespace(key, "kubernetes.io") || in_namespace(key, "k8s.io")
}

/// Kube's `kubeletapis.IsKubeletLabel`.
fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|ns| in_namespace(key, ns))
}

/// Of the modified labels, those a node may not add, remove or change.
fn forbidden_labels(modified: BTreeSet<&str>) -> BTreeSet<&str> {
    modified
        .into_iter()
        .filter(|key| {
            in_namespace(key, LABEL_NAMESPACE_NODE_RESTRICTION)
                || (is_kubernetes_label(key) && !is_kubelet_label(key))
        })
        .collect()
}
