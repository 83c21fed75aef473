//! Reading and writing `metadata` of objects held as JSON. Objects flow through the API
//! server as `serde_json::Value` so that one code path serves every kind and unknown
//! fields survive round trips.

use serde_json::{Map, Value};

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|s| !s.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

pub fn generate_name(obj: &Value) -> Option<&str> {
    meta_str(obj, "generateName").filter(|s| !s.is_empty())
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta_str(obj, "deletionTimestamp")
}

pub fn creation_timestamp(obj: &Value) -> Option<&str> {
    meta_str(obj, "creationTimestamp")
}

pub fn generation(obj: &Value) -> i64 {
    meta(obj)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj)?.get("labels")?.as_object()
}

pub fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj)?.get("annotations")?.as_object()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata`, created if absent (or replaced if not an object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let o = obj.as_object_mut().expect("object");
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("object")
}

pub fn set(obj: &mut Value, field: &str, v: Value) {
    meta_mut(obj).insert(field.to_string(), v);
}

pub fn remove(obj: &mut Value, field: &str) {
    meta_mut(obj).remove(field);
}

pub fn set_resource_version(obj: &mut Value, rv: i64) {
    set(obj, "resourceVersion", Value::String(rv.to_string()));
}

/// `apiVersion` and `kind` of an object, if both are present.
pub fn type_meta(obj: &Value) -> (Option<&str>, Option<&str>) {
    (
        obj.get("apiVersion").and_then(Value::as_str),
        obj.get("kind").and_then(Value::as_str),
    )
}

/// Strings in a `map[string]string` JSON object (labels, annotations, selectors).
pub fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes_metadata() {
        let mut o = json!({"metadata": {"name": "a", "namespace": ""}});
        assert_eq!(name(&o), Some("a"));
        assert_eq!(namespace(&o), None);
        set_resource_version(&mut o, 7);
        assert_eq!(resource_version(&o), Some("7"));
        let mut bare = json!(null);
        set(&mut bare, "name", json!("b"));
        assert_eq!(name(&bare), Some("b"));
    }
}
