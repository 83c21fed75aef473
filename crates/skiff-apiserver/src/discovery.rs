//! API discovery: aggregated (apidiscovery.k8s.io/v2, and v2beta1) and legacy
//! (`APIVersions`, `APIGroupList`, `APIResourceList`), all derived from the registry's
//! current snapshot, so kinds CustomResourceDefinitions add appear and go with them.

use crate::registry::{Group, Snapshot};
use serde_json::{Value, json};
use skiff_types::{ResourceInfo, Scope};

pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client accepts, if any (first match wins).
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        if p.first() != Some(&"application/json") {
            continue;
        }
        let g = p.iter().find_map(|x| x.strip_prefix("g="));
        let v = p.iter().find_map(|x| x.strip_prefix("v="));
        let as_ = p.iter().find_map(|x| x.strip_prefix("as="));
        if g == Some("apidiscovery.k8s.io") && as_ == Some("APIGroupDiscoveryList") {
            match v {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        } else if g.is_none() {
            return None;
        }
    }
    None
}

fn scope(ri: &ResourceInfo) -> &'static str {
    match ri.scope {
        Scope::Namespaced => "Namespaced",
        Scope::Cluster => "Cluster",
    }
}

fn resource_discovery(ri: &ResourceInfo) -> Value {
    let subs: Vec<Value> = ri
        .subresources
        .iter()
        .map(|s| {
            let (g, v, k) = s.response_kind().unwrap_or((&ri.group, &ri.version, &ri.kind));
            json!({"subresource": s.name(), "responseKind": {"group": g, "version": v, "kind": k}, "verbs": s.verbs()})
        })
        .collect();
    let mut r = json!({
        "resource": ri.plural,
        "responseKind": {"group": ri.group, "version": ri.version, "kind": ri.kind},
        "scope": scope(ri),
        "singularResource": ri.singular,
        "verbs": ri.verbs,
    });
    if !ri.short_names.is_empty() {
        r["shortNames"] = json!(ri.short_names);
    }
    if !ri.categories.is_empty() {
        r["categories"] = json!(ri.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = Value::Array(subs);
    }
    r
}

fn group_discovery(g: &Group) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = v.resources.iter().map(|r| resource_discovery(r)).collect();
            json!({"version": v.version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({
        "metadata": {"name": g.name, "creationTimestamp": null},
        "versions": versions,
    })
}

/// `/api` (core = true) or `/apis` as an APIGroupDiscoveryList.
pub fn aggregated(served: &Snapshot, core: bool, version: &str) -> Value {
    let items: Vec<Value> = served
        .groups()
        .iter()
        .filter(|g| g.name.is_empty() == core)
        .map(group_discovery)
        .chain((!core).then(crate::metricsgroup::aggregated_group))
        .chain(
            remote_groups(served)
                .into_iter()
                .filter(|_| !core)
                .map(|(g, vs)| remote_group_discovery(&g, &vs)),
        )
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(g: &Group) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{}/{}", g.name, v.version), "version": v.version}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": g.name, "versions": versions, "preferredVersion": preferred})
}

pub fn api_group_list(served: &Snapshot) -> Value {
    let groups: Vec<Value> = served
        .groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(api_group)
        .chain([crate::metricsgroup::api_group()])
        .chain(
            remote_groups(served)
                .iter()
                .map(|(g, vs)| remote_api_group(g, vs)),
        )
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: one APIGroup, or None if unknown.
pub fn api_group_doc(served: &Snapshot, group: &str) -> Option<Value> {
    let remote = remote_groups(served).into_iter().find(|(g, _)| g == group);
    let mut doc = if group == crate::metricsgroup::GROUP {
        crate::metricsgroup::api_group()
    } else if let Some((g, vs)) = remote {
        remote_api_group(&g, &vs)
    } else {
        let g = served
            .groups()
            .iter()
            .find(|g| g.name == group && !g.name.is_empty())?;
        api_group(g)
    };
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// Groups extension API servers serve, each with its versions' APIResourceLists.
fn remote_groups(served: &Snapshot) -> Vec<(String, Vec<(String, Value)>)> {
    let mut out: Vec<(String, Vec<(String, Value)>)> = Vec::new();
    for r in served.remotes() {
        // An unavailable one keeps what it said last, marked stale.
        let resources = if r.available {
            r.resources.clone()
        } else {
            Value::Null
        };
        let entry = (r.version.clone(), resources);
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => vs.push(entry),
            None => out.push((r.group.clone(), vec![entry])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| crate::registry::compare_versions(&a.0, &b.0));
    }
    out
}

fn remote_api_group(group: &str, versions: &[(String, Value)]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|(v, _)| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

/// An extension server's APIResourceLists in the aggregated form.
fn remote_group_discovery(group: &str, versions: &[(String, Value)]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(v, list)| {
            let all = list["resources"].as_array().cloned().unwrap_or_default();
            let resources: Vec<Value> = all
                .iter()
                .filter(|r| !r["name"].as_str().unwrap_or("").contains('/'))
                .map(|r| aggregated_from_legacy(group, v, r, &all))
                .collect();
            let fresh = if list.is_null() { "Stale" } else { "Current" };
            json!({"version": v, "resources": resources, "freshness": fresh})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn aggregated_from_legacy(group: &str, version: &str, r: &Value, all: &[Value]) -> Value {
    let name = r["name"].as_str().unwrap_or("");
    let subs: Vec<Value> = all
        .iter()
        .filter_map(|s| {
            let sub = s["name"].as_str()?.strip_prefix(name)?.strip_prefix('/')?;
            Some(json!({"subresource": sub, "responseKind": {"group": s["group"].as_str().unwrap_or(group), "version": s["version"].as_str().unwrap_or(version), "kind": s["kind"]}, "verbs": s["verbs"]}))
        })
        .collect();
    let mut out = json!({
        "resource": name,
        "responseKind": {"group": group, "version": version, "kind": r["kind"]},
        "scope": if r["namespaced"].as_bool().unwrap_or(false) { "Namespaced" } else { "Cluster" },
        "singularResource": r["singularName"],
        "verbs": r["verbs"],
    });
    for k in ["shortNames", "categories"] {
        if r[k].as_array().is_some_and(|a| !a.is_empty()) {
            out[k] = r[k].clone();
        }
    }
    if !subs.is_empty() {
        out["subresources"] = Value::Array(subs);
    }
    out
}

fn legacy_resource(ri: &ResourceInfo) -> Value {
    let mut r = json!({
        "name": ri.plural,
        "singularName": ri.singular,
        "namespaced": ri.namespaced(),
        "kind": ri.kind,
        "verbs": ri.verbs,
    });
    if !ri.short_names.is_empty() {
        r["shortNames"] = json!(ri.short_names);
    }
    if !ri.categories.is_empty() {
        r["categories"] = json!(ri.categories);
    }
    r
}

fn legacy_subresource(ri: &ResourceInfo, s: skiff_types::Subresource) -> Value {
    let mut sr = json!({"name": format!("{}/{}", ri.plural, s.name()), "singularName": "", "namespaced": ri.namespaced(), "verbs": s.verbs()});
    match s.response_kind() {
        Some((g, v, k)) => {
            sr["kind"] = json!(k);
            if g != ri.group || v != ri.version {
                sr["group"] = json!(g);
                sr["version"] = json!(v);
            }
        }
        None => sr["kind"] = json!(ri.kind),
    }
    sr
}

/// `/api/v1` or `/apis/<group>/<version>` as an APIResourceList, or None if not served.
pub fn resource_list(served: &Snapshot, group: &str, version: &str) -> Option<Value> {
    let v = served
        .groups()
        .iter()
        .find(|g| g.name == group)?
        .versions
        .iter()
        .find(|v| v.version == version)?;
    let mut resources = Vec::new();
    for ri in &v.resources {
        resources.push(legacy_resource(ri));
        for s in ri.subresources.iter() {
            resources.push(legacy_subresource(ri, *s));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> std::sync::Arc<Snapshot> {
        crate::registry::Registry::default().snapshot()
    }

    #[test]
    fn kubectl_accept_header_selects_v2() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(a), Some("v2"));
        assert_eq!(aggregated_version("application/json, */*"), None);
    }

    #[test]
    fn aggregated_core_lists_pods_with_subresources() {
        let d = aggregated(&served(), true, "v2");
        let res = d["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap();
        let pods = res.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(
            pods["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "log")
        );
        let apps = aggregated(&served(), false, "v2");
        let deploy = apps["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let scale = deploy["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap()["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap()
            .clone();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
    }

    #[test]
    fn legacy_resource_list() {
        let l = resource_list(&served(), "", "v1").unwrap();
        assert!(
            l["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/binding")
        );
        assert!(resource_list(&served(), "nope", "v1").is_none());
    }
}
