//! API discovery: aggregated (apidiscovery.k8s.io/v2, and v2beta1) and legacy
//! (`APIVersions`, `APIGroupList`, `APIResourceList`), all derived from the registry.

use serde_json::{Value, json};
use skiff_types::registry::groups;
use skiff_types::{RESOURCES, ResourceInfo, Scope};

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
            let (g, v, k) = s.response_kind().unwrap_or((ri.group, ri.version, ri.kind));
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

fn group_discovery(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(resource_discovery)
        .collect();
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// `/api` (core = true) or `/apis` as an APIGroupDiscoveryList.
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, v)| group_discovery(g, v))
        .chain((!core).then(crate::metricsapi::aggregated_group))
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

fn api_group(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({"name": group, "versions": [{"groupVersion": gv, "version": version}], "preferredVersion": {"groupVersion": gv, "version": version}})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| api_group(g, v))
        .chain([crate::metricsapi::api_group()])
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: one APIGroup, or None if unknown.
pub fn api_group_doc(group: &str) -> Option<Value> {
    if group == crate::metricsapi::GROUP {
        let mut doc = crate::metricsapi::api_group();
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        return Some(doc);
    }
    groups()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())
        .map(|(g, v)| {
            let mut doc = api_group(g, v);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

/// `/api/v1` or `/apis/<group>/<version>` as an APIResourceList, or None if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for ri in rs {
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
        resources.push(r);
        for s in ri.subresources {
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
            resources.push(sr);
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

    #[test]
    fn kubectl_accept_header_selects_v2() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(a), Some("v2"));
        assert_eq!(aggregated_version("application/json, */*"), None);
    }

    #[test]
    fn aggregated_core_lists_pods_with_subresources() {
        let d = aggregated(true, "v2");
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
        let apps = aggregated(false, "v2");
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
        let l = resource_list("", "v1").unwrap();
        assert!(
            l["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/binding")
        );
        assert!(resource_list("nope", "v1").is_none());
    }
}
