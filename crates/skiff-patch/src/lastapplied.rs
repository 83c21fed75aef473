//! Moving an object from client-side to server-side apply, as kube-apiserver's field
//! manager does for the `kubectl` manager: the fields kubectl's last-applied annotation
//! lists, where the live object still has the values it gives, may be taken from their
//! old owner (`kubectl-client-side-apply`) without a conflict; and a `kubectl` apply
//! keeps that annotation in step, so client-side apply works again afterwards.

use crate::shape::Shape;
use crate::ssa::{FieldSet, Part, collect_root, get_at};
use serde_json::{Map, Value};

pub const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The only manager the upgrade is for; another opts out by its name.
pub const KUBECTL: &str = "kubectl";

fn annotation(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")?
        .get(ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields the live object's last-applied configuration lists with the values the
/// live object still has (kube's `allowedConflictsFromLastApplied`).
pub(crate) fn allowed_conflicts(live: &Value, ty: &dyn Shape) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion") != live.get("apiVersion") {
        return None;
    }
    let listed = collect_root(&last, ty, Part::Main);
    let mut allowed = FieldSet::default();
    for p in listed.leaves() {
        if get_at(&last, &p) == get_at(live, &p) {
            allowed.insert(&p);
        }
    }
    Some(allowed)
}

/// After a `kubectl` apply: an object that carries the annotation gets the applied
/// configuration in it (kube's `lastAppliedUpdater`).
pub(crate) fn keep_in_step(merged: &mut Value, applied: &Value) {
    if annotation(merged).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(a) = config
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(ANNOTATION);
    }
    let text = sorted(&config).to_string();
    merged["metadata"]["annotations"][ANNOTATION] = Value::String(text);
}

/// Keys in Go's order (sorted), as kube encodes the annotation.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let out: Map<String, Value> = keys
                .into_iter()
                .map(|k| (k.clone(), sorted(&m[k])))
                .collect();
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::{ApplyError, server_side_apply};
    use serde_json::{Value, json};

    /// A pod as `kubectl apply` (client-side) leaves it: the annotation, and the
    /// `kubectl-client-side-apply` manager owning what it wrote.
    fn client_side_applied() -> Value {
        let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app": "web"}, "name": "web"},
            "spec": {"containers": [{"image": "nginx:1.25", "name": "nginx"}]}});
        let mut pod = config.clone();
        pod["metadata"]["annotations"] = json!({super::ANNOTATION: config.to_string()});
        pod["metadata"]["managedFields"] = json!([{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}, "f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}]);
        pod
    }

    fn changed() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app": "web2"}, "name": "web"},
            "spec": {"containers": [{"image": "nginx:1.26", "name": "nginx"}]}})
    }

    #[test]
    fn kubectl_takes_over_what_client_side_apply_left() {
        let live = client_side_applied();
        let out =
            server_side_apply(Some(&live), &changed(), "", "Pod", "kubectl", false, "t").unwrap();
        assert_eq!(out.object["metadata"]["labels"]["app"], "web2");
        let last: Value = serde_json::from_str(
            out.object["metadata"]["annotations"][super::ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last, changed());
        let other = server_side_apply(
            Some(&live),
            &changed(),
            "",
            "Pod",
            "not-kubectl",
            false,
            "t",
        );
        assert!(matches!(other, Err(ApplyError::Conflicts(c)) if c.len() == 2));
    }

    #[test]
    fn a_field_changed_since_the_last_apply_still_conflicts() {
        let mut live = client_side_applied();
        // Someone else set the image after kubectl's last apply.
        live["spec"]["containers"][0]["image"] = json!("nginx:edited");
        let Err(ApplyError::Conflicts(c)) =
            server_side_apply(Some(&live), &changed(), "", "Pod", "kubectl", false, "t")
        else {
            panic!("expected a conflict");
        };
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, [".spec.containers[name=\"nginx\"].image"]);
    }
}
