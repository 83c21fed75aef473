//! The `scale` subresource: an `autoscaling/v1 Scale` view of an object. Built-in
//! workloads keep replicas at `.spec.replicas`/`.status.replicas` with a label-selector
//! object at `.spec.selector`; a CRD names its own paths (`subresources.scale`), its
//! selector already a string.

use crate::registry::Served;
use serde_json::{Value, json};
use skiff_types::{ApiError, FieldError, meta};

/// Where a kind keeps what a Scale shows.
struct Paths<'a> {
    spec_replicas: &'a str,
    status_replicas: &'a str,
    /// A string selector (CRDs); None: built-in `.spec.selector` object.
    selector: Option<&'a str>,
}

fn paths(ri: &Served) -> Paths<'_> {
    match ri.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(s) => Paths {
            spec_replicas: &s.spec_replicas_path,
            status_replicas: &s.status_replicas_path,
            selector: Some(s.label_selector_path.as_deref().unwrap_or("")),
        },
        None => Paths {
            spec_replicas: ".spec.replicas",
            status_replicas: ".status.replicas",
            selector: None,
        },
    }
}

/// `.spec.replicas` → `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

/// The Scale view of an object.
pub fn to_scale(ri: &Served, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut metadata = json!({
        "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
        "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
    });
    if let Some(o) = metadata.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let p = paths(ri);
    let replicas = |path: &str| {
        obj.pointer(&pointer(path))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let selector = match p.selector {
        None => selector_string(&obj["spec"]["selector"]),
        Some("") => String::new(),
        Some(path) => obj
            .pointer(&pointer(path))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas(p.spec_replicas)},
        "status": {"replicas": replicas(p.status_replicas), "selector": selector},
    })
}

/// Writes a Scale's `spec.replicas` back into its object.
pub fn from_scale(ri: &Served, obj: &Value, scale: &Value, name: &str) -> Result<Value, ApiError> {
    let invalid = |e: FieldError| ApiError::invalid("autoscaling", "Scale", name, &[e]);
    let Some(r) = scale["spec"]["replicas"].as_i64() else {
        return Err(invalid(FieldError::required("spec.replicas", "")));
    };
    if r < 0 {
        return Err(invalid(FieldError::invalid(
            "spec.replicas",
            json!(r),
            "must be greater than or equal to 0",
        )));
    }
    let mut o = obj.clone();
    set_path(&mut o, paths(ri).spec_replicas, json!(r));
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
        meta::set(&mut o, "resourceVersion", json!(rv));
    }
    Ok(o)
}

/// Sets a dotted path, making the objects on the way.
fn set_path(obj: &mut Value, path: &str, v: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, s) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("made an object");
        if i + 1 == segs.len() {
            m.insert((*s).to_string(), v);
            return;
        }
        cur = m.entry(*s).or_insert_with(|| json!({}));
    }
}

/// A Scale's `status.selector`: the selector in Kubernetes' string form. A plain map is
/// a ReplicationController's selector.
pub fn selector_string(sel: &Value) -> String {
    let as_label_selector =
        if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
            sel.clone()
        } else {
            json!({"matchLabels": sel})
        };
    skiff_validation::labels::Selector::from_label_selector(&as_label_selector)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_round_trip() {
        let ri = crate::registry::builtin("apps", "deployments");
        let d = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "5"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = to_scale(&ri, &d);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        let mut s2 = s.clone();
        s2["spec"]["replicas"] = json!(5);
        assert_eq!(
            from_scale(&ri, &d, &s2, "web").unwrap()["spec"]["replicas"],
            5
        );
        s2["spec"]["replicas"] = json!(-1);
        assert_eq!(from_scale(&ri, &d, &s2, "web").unwrap_err().code, 422);
    }

    #[test]
    fn paths_are_set_through_missing_objects() {
        let mut o = json!({"spec": {}});
        set_path(&mut o, ".spec.scaling.size", json!(3));
        assert_eq!(o, json!({"spec": {"scaling": {"size": 3}}}));
        assert_eq!(pointer(".status.size"), "/status/size");
    }
}
