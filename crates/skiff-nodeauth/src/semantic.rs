//! Equality of JSON objects as apimachinery's `equality.Semantic.DeepEqual` sees the
//! Go objects they decode to: a missing field, `null`, `[]` and `{}` are all the same
//! empty value.

use serde_json::{Map, Value};

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Whether `a` and `b` decode to semantically equal objects.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        _ if is_empty(a) && is_empty(b) => true,
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    let null = Value::Null;
    let covers = |p: &Map<String, Value>, q: &Map<String, Value>| {
        p.iter().all(|(k, v)| equal(v, q.get(k).unwrap_or(&null)))
    };
    covers(x, y) && covers(y, x)
}

/// Dotted paths where `a` and `b` differ, in key order (`metadata.labels.app`,
/// `spec.resources`), to tell a caller what it changed.
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(a, b, "", &mut out);
    out
}

fn collect(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    if equal(a, b) {
        return;
    }
    let (Value::Object(x), Value::Object(y)) = (a, b) else {
        out.push(path.to_string());
        return;
    };
    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
    keys.sort();
    keys.dedup();
    let null = Value::Null;
    for k in keys {
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        collect(
            x.get(k).unwrap_or(&null),
            y.get(k).unwrap_or(&null),
            &sub,
            out,
        );
    }
}

/// `v` without the fields at `paths` (each a list of object keys).
pub fn without(v: &Value, paths: &[&[&str]]) -> Value {
    let mut v = v.clone();
    for path in paths {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let parent = parents
            .iter()
            .try_fold(&mut v, |cur, key| cur.get_mut(*key));
        if let Some(obj) = parent.and_then(Value::as_object_mut) {
            obj.remove(*last);
        }
    }
    v
}
