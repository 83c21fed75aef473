//! `metrics.k8s.io/v1beta1` as the router and discovery see it: which paths are its,
//! and its discovery documents (the objects are served by `metricsapi`).

use serde_json::{Value, json};

pub const GROUP: &str = "metrics.k8s.io";

pub const VERSION: &str = "v1beta1";

/// What a request under `/apis/metrics.k8s.io/v1beta1` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `nodes` or `pods`.
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Target {
    pub fn verb(&self) -> &'static str {
        if self.name.is_some() { "get" } else { "list" }
    }
}

pub fn target(segs: &[&str]) -> Option<Target> {
    let t = |resource, namespace: Option<&&str>, name: Option<&&str>| Target {
        resource,
        namespace: namespace.map(|s| s.to_string()),
        name: name.map(|s| s.to_string()),
    };
    match segs {
        ["apis", GROUP, VERSION, rest @ ..] => match rest {
            ["nodes"] => Some(t("nodes", None, None)),
            ["nodes", n] => Some(t("nodes", None, Some(n))),
            ["pods"] => Some(t("pods", None, None)),
            ["namespaces", ns, "pods"] => Some(t("pods", Some(ns), None)),
            ["namespaces", ns, "pods", n] => Some(t("pods", Some(ns), Some(n))),
            _ => None,
        },
        _ => None,
    }
}

/// The group in discovery: legacy (`APIGroup` entry, `APIResourceList`) and aggregated.
pub fn api_group() -> Value {
    let gv = format!("{GROUP}/{VERSION}");
    json!({"name": GROUP, "versions": [{"groupVersion": gv, "version": VERSION}],
           "preferredVersion": {"groupVersion": gv, "version": VERSION}})
}

pub fn resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
    "resources": [
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]})
}

pub fn aggregated_group() -> Value {
    let res = |name: &str, kind: &str, scope: &str| {
        json!({"resource": name, "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
               "scope": scope, "singularResource": "", "verbs": ["get", "list"]})
    };
    json!({"metadata": {"name": GROUP, "creationTimestamp": null},
           "versions": [{"version": VERSION, "freshness": "Current", "resources": [
               res("nodes", "NodeMetrics", "Cluster"), res("pods", "PodMetrics", "Namespaced")]}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_targets() {
        let t = |p: &str| target(&p.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>());
        assert_eq!(
            t("/apis/metrics.k8s.io/v1beta1/nodes").unwrap().verb(),
            "list"
        );
        let one = t("/apis/metrics.k8s.io/v1beta1/namespaces/d/pods/p").unwrap();
        assert_eq!(
            (
                one.resource,
                one.namespace.as_deref(),
                one.name.as_deref(),
                one.verb()
            ),
            ("pods", Some("d"), Some("p"), "get")
        );
        assert_eq!(
            t("/apis/metrics.k8s.io/v1beta1/namespaces/d/services"),
            None
        );
        assert_eq!(t("/apis/metrics.k8s.io/v1/nodes"), None);
    }
}
