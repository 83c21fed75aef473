//! The checks kube's webhook converter makes of each object a conversion webhook
//! returns, and the metadata it puts back: a webhook converts, it does not rename,
//! move or re-own objects, so only labels and annotations of its answer are kept.

use serde_json::{Map, Value};
use skiff_types::FieldError;
use skiff_validation::names;

/// Why one converted object was refused; worded per call shape by the caller.
#[derive(Debug, PartialEq)]
pub(crate) enum Refusal {
    /// Not an object with a kind (the decoder's error).
    Undecodable(String),
    GroupVersion {
        expected: String,
        got: String,
    },
    Kind {
        expected: String,
        got: String,
    },
    /// `validateConvertedObject`: name, namespace or uid changed.
    Identity(String),
    /// `restoreObjectMeta`: metadata, labels or annotations unusable.
    Metadata(String),
}

/// Checks `converted` against `original` (sent for conversion to `desired`) and
/// returns it with the original's metadata, the webhook's labels and annotations
/// kept.
pub(crate) fn accept(original: &Value, converted: Value, desired: &str) -> Result<Value, Refusal> {
    decodable(&converted).map_err(Refusal::Undecodable)?;
    let got = group_version(str_at(&converted, "apiVersion"));
    let expected = group_version(desired);
    if got != expected {
        return Err(Refusal::GroupVersion { expected, got });
    }
    let (kind, new_kind) = (str_at(original, "kind"), str_at(&converted, "kind"));
    if kind != new_kind {
        return Err(Refusal::Kind {
            expected: kind.to_string(),
            got: new_kind.to_string(),
        });
    }
    same_identity(original, &converted).map_err(Refusal::Identity)?;
    restore_meta(original, converted).map_err(Refusal::Metadata)
}

/// What Go's unstructured decoder refuses: a non-object, or an object without kind.
fn decodable(v: &Value) -> Result<(), String> {
    if !v.is_object() {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_type(v)
        ));
    }
    if str_at(v, "kind").is_empty() {
        return Err(format!("Object 'Kind' is missing in '{v}'"));
    }
    Ok(())
}

/// Go's encoding/json name for a JSON value's type in unmarshal errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `%T` of a decoded JSON value, as kube's messages print it.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn meta_str<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Go's `schema.GroupVersion` text of an apiVersion (`v1` for the core group).
pub(crate) fn group_version(api_version: &str) -> String {
    match api_version.split_once('/') {
        Some(("", v)) => v.to_string(),
        Some((g, v)) => format!("{g}/{v}"),
        None => api_version.to_string(),
    }
}

/// Go's `schema.GroupVersionKind` text: `group/version, Kind=kind` (`/v1, ...` for
/// the core group).
pub(crate) fn gvk_text(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// The [`gvk_text`] of an object.
pub(crate) fn object_gvk(v: &Value) -> String {
    gvk_text(str_at(v, "apiVersion"), str_at(v, "kind"))
}

/// kube's `validateConvertedObject` (its kind check already made by the caller).
fn same_identity(original: &Value, converted: &Value) -> Result<(), String> {
    for (key, what) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
        let (a, b) = (meta_str(original, key), meta_str(converted, key));
        if a != b {
            return Err(format!("must have the same {what}: {a} != {b}"));
        }
    }
    Ok(())
}

/// kube's `restoreObjectMeta`: the original's metadata with the converted object's
/// labels and annotations (validated when they changed).
fn restore_meta(original: &Value, mut converted: Value) -> Result<Value, String> {
    let answered = match converted.get("metadata") {
        None => return Err("missing metadata in converted object".into()),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in converted object",
                go_type(other)
            ));
        }
    };
    let mut meta = match original.get("metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in input object",
                go_type(other)
            ));
        }
    };
    for field in ["labels", "annotations"] {
        keep_answered(&mut meta, &answered, field)?;
    }
    converted["metadata"] = Value::Object(meta);
    Ok(converted)
}

/// Puts the webhook's `field` (labels or annotations) into `meta`, or removes it
/// when the webhook dropped it.
fn keep_answered(
    meta: &mut Map<String, Value>,
    answered: &Map<String, Value>,
    field: &str,
) -> Result<(), String> {
    let theirs = match answered.get(field) {
        None | Some(Value::Null) => {
            meta.remove(field);
            return Ok(());
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "invalid metadata.{field} of type {} in converted object",
                go_type(other)
            ));
        }
    };
    let empty = Map::new();
    let ours = match meta.get(field) {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "invalid metadata.{field} of type {} in original object",
                go_type(other)
            ));
        }
    };
    let mut changed = ours.len() != theirs.len();
    for (k, v) in theirs {
        if !v.is_string() {
            return Err(format!(
                "metadata.{field}[{k}] must be a string, but is {} in converted object",
                go_type(v)
            ));
        }
        changed |= ours.get(k) != Some(v);
    }
    // Unchanged maps were valid when stored; only what the webhook changed is checked.
    if changed {
        let errs = if field == "labels" {
            label_errors(theirs)
        } else {
            annotation_errors(theirs)
        };
        if !errs.is_empty() {
            return Err(aggregate(&errs));
        }
    }
    meta.insert(field.to_string(), Value::Object(theirs.clone()));
    Ok(())
}

/// metav1validation's `ValidateLabels` at `metadata.labels`: every error at the map's
/// path, as kube reports them.
fn label_errors(labels: &Map<String, Value>) -> Vec<FieldError> {
    let path = "metadata.labels";
    let mut errs = Vec::new();
    for (k, v) in labels {
        for msg in names::qualified_name(k) {
            errs.push(FieldError::invalid(path, Value::String(k.clone()), msg));
        }
        let v = v.as_str().unwrap_or_default();
        for msg in names::label_value(v) {
            errs.push(FieldError::invalid(path, Value::String(v.into()), msg));
        }
    }
    errs
}

/// The most bytes of annotation keys and values an object may carry.
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// apivalidation's `ValidateAnnotations`; kube passes the path `metadata.annotation`
/// here (singular), and so its messages say.
fn annotation_errors(annotations: &Map<String, Value>) -> Vec<FieldError> {
    let path = "metadata.annotation";
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations {
        for msg in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, Value::String(k.clone()), msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_LIMIT {
        errs.push(FieldError::too_long(path, ANNOTATIONS_LIMIT));
    }
    errs
}

/// apimachinery's aggregate error text: one message alone, several as `[a, b]`
/// without repeats.
fn aggregate(errs: &[FieldError]) -> String {
    let mut msgs: Vec<String> = Vec::new();
    for e in errs {
        let m = e.to_string();
        if !msgs.contains(&m) {
            msgs.push(m);
        }
    }
    match msgs.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn original() -> Value {
        json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                         "labels": {"a": "1"}, "annotations": {"x": "y"}},
            "spec": {"cronSpec": "* * * * *"}
        })
    }

    fn converted(meta: Value) -> Value {
        json!({"apiVersion": "stable.example.com/v2", "kind": "CronTab", "metadata": meta,
               "spec": {"schedule": "* * * * *"}})
    }

    const V2: &str = "stable.example.com/v2";

    #[test]
    fn labels_and_annotations_are_kept_and_the_rest_restored() {
        let c = converted(json!({"name": "c", "namespace": "ns", "uid": "u1",
            "resourceVersion": "99", "generation": 5, "labels": {"a": "2", "b": "3"}}));
        let out = accept(&original(), c, V2).unwrap();
        assert_eq!(
            out["metadata"],
            json!({"name": "c", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                   "labels": {"a": "2", "b": "3"}})
        );
        assert_eq!(out["spec"], json!({"schedule": "* * * * *"}));
    }

    #[test]
    fn identity_changes_and_bad_metadata_are_refused() {
        let renamed = converted(json!({"name": "d", "namespace": "ns", "uid": "u1"}));
        assert_eq!(
            accept(&original(), renamed, V2),
            Err(Refusal::Identity("must have the same name: c != d".into()))
        );
        let moved = converted(json!({"name": "c", "namespace": "other", "uid": "u1"}));
        assert_eq!(
            accept(&original(), moved, V2),
            Err(Refusal::Identity(
                "must have the same namespace: ns != other".into()
            ))
        );
        let no_meta = json!({"apiVersion": V2, "kind": "CronTab"});
        assert_eq!(
            accept(&original(), no_meta, V2),
            Err(Refusal::Identity("must have the same name: c != ".into()))
        );
        let mut bare = original();
        bare.as_object_mut().unwrap().remove("metadata");
        let no_meta = json!({"apiVersion": V2, "kind": "CronTab"});
        assert_eq!(
            accept(&bare, no_meta, V2),
            Err(Refusal::Metadata(
                "missing metadata in converted object".into()
            ))
        );
        let numeric = converted(json!({"name": "c", "namespace": "ns", "uid": "u1",
                                       "labels": {"a": 1}}));
        assert_eq!(
            accept(&original(), numeric, V2),
            Err(Refusal::Metadata(
                "metadata.labels[a] must be a string, but is int64 in converted object".into()
            ))
        );
        let listed = converted(json!({"name": "c", "namespace": "ns", "uid": "u1",
                                      "annotations": ["x"]}));
        assert_eq!(
            accept(&original(), listed, V2),
            Err(Refusal::Metadata(
                "invalid metadata.annotations of type []interface {} in converted object".into()
            ))
        );
    }

    #[test]
    fn changed_labels_are_validated_as_kube_does() {
        let c = converted(json!({"name": "c", "namespace": "ns", "uid": "u1",
                                 "labels": {"bad key": "1"}}));
        let Err(Refusal::Metadata(m)) = accept(&original(), c, V2) else {
            panic!("accepted")
        };
        assert!(
            m.starts_with(
                r#"metadata.labels: Invalid value: "bad key": name part must consist of"#
            ),
            "{m}"
        );
        let c = converted(json!({"name": "c", "namespace": "ns", "uid": "u1",
                                 "labels": {"a": "-x-"}, "annotations": {"x": "y"}}));
        let Err(Refusal::Metadata(m)) = accept(&original(), c, V2) else {
            panic!("accepted")
        };
        assert!(
            m.starts_with(r#"metadata.labels: Invalid value: "-x-": "#),
            "{m}"
        );
    }

    #[test]
    fn wrong_version_kind_or_shape_is_refused() {
        let c = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {}});
        assert_eq!(
            accept(&original(), c, V2),
            Err(Refusal::GroupVersion {
                expected: V2.into(),
                got: "stable.example.com/v1".into()
            })
        );
        let c = json!({"apiVersion": V2, "kind": "Other", "metadata": {}});
        assert!(matches!(
            accept(&original(), c, V2),
            Err(Refusal::Kind { .. })
        ));
        assert_eq!(
            accept(&original(), json!("x"), V2),
            Err(Refusal::Undecodable(
                "json: cannot unmarshal string into Go value of type map[string]interface {}"
                    .into()
            ))
        );
        assert_eq!(
            accept(&original(), json!({"apiVersion": V2}), V2),
            Err(Refusal::Undecodable(format!(
                "Object 'Kind' is missing in '{}'",
                json!({"apiVersion": V2})
            )))
        );
    }

    #[test]
    fn group_version_kind_texts_follow_go() {
        assert_eq!(
            object_gvk(&original()),
            "stable.example.com/v1, Kind=CronTab"
        );
        assert_eq!(gvk_text("v1", "Pod"), "/v1, Kind=Pod");
        assert_eq!(group_version("v1"), "v1");
        assert_eq!(group_version("g/v1"), "g/v1");
    }
}
