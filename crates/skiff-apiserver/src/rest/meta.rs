//! Object metadata the store owns: generation, emptied maps, namespace, and what
//! counts as a change.

use crate::registry::Served;
use crate::request::Target;
use serde_json::Map;
use serde_json::{Value, json};
use skiff_types::{ApiError, meta};

/// Whether two versions of an object are equal apart from `metadata.resourceVersion`
/// (maps compare regardless of key order).
pub(super) fn same_but_version(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter().all(|(k, va)| match (k.as_str(), b.get(k)) {
            ("metadata", Some(vb)) => match (va.as_object(), vb.as_object()) {
                (Some(ma), Some(mb)) => {
                    let rest = |m: &Map<String, Value>| {
                        m.len() - usize::from(m.contains_key("resourceVersion"))
                    };
                    rest(ma) == rest(mb)
                        && ma
                            .iter()
                            .filter(|(k, _)| k.as_str() != "resourceVersion")
                            .all(|(k, v)| mb.get(k) == Some(v))
                }
                _ => va == vb,
            },
            (_, Some(vb)) => va == vb,
            (_, None) => false,
        })
}

/// ObjectMeta's maps and lists are `omitempty` in Kubernetes: an emptied one (the last
/// annotation removed) is not kept as `{}`.
pub(super) fn drop_empty_metadata(obj: &mut Value) {
    let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for k in [
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match m.get(k) {
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(k);
        }
    }
}

/// Kinds whose `metadata.generation` tracks spec changes.
pub(super) fn tracks_generation(ri: &Served) -> bool {
    ri.custom.is_some()
        || matches!(
            (&*ri.group, &*ri.plural),
            ("apps", _)
                | ("batch", _)
                | ("autoscaling", _)
                | ("policy", _)
                | ("networking.k8s.io", "networkpolicies" | "ingresses")
                | ("", "replicationcontrollers" | "pods")
        )
}

pub(super) fn check_namespace(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    if t.ri.namespaced() {
        let ns = t.namespace.as_deref().ok_or_else(|| {
            ApiError::bad_request("a namespace is required for namespaced resources")
        })?;
        match meta::namespace(obj) {
            Some(body_ns) if body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => meta::set(obj, "namespace", json!(ns)),
        }
    } else if meta::namespace(obj).is_some() {
        // Cluster-scoped objects carry no namespace.
        meta::remove(obj, "namespace");
    }
    Ok(())
}

pub(super) fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(new) != strip(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_change_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let c = json!({"metadata": {}, "spec": {"replicas": 2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
    }
}
