//! Whether an object decodes as its kind: every field's JSON type against the published
//! schema (a map where a map is, an integer where an int32 is), as kube-apiserver's typed
//! decoding finds out. Without it a patch could store `"labels": "x"`, which every typed
//! client then fails to read.
//!
//! The first mismatch is reported in the two wordings kube-apiserver uses: Go's JSON
//! decoder's (bodies of creates and updates, merge and JSON patches) and the unstructured
//! converter's (strategic merge patches).

use crate::strict::{Compiled, OPEN, Ty, compiled, push_key};
use serde_json::Value;

const MAX_DEPTH: usize = 100;

/// The first field of an object whose value is not of the field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The field's JSON path from the root, without list indices or map keys, as Go's
    /// decoder names it (`metadata.labels`, `spec.containers.ports.containerPort`).
    pub path: String,
    /// The struct the field belongs to (`ObjectMeta`).
    pub owner: String,
    /// The field's Go type (`map[string]string`).
    pub go_type: String,
    found: Found,
    expected: Ty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    String,
    /// The literal, and whether it is an integer.
    Number(String, bool),
    Bool,
    Array,
    Object,
}

impl Found {
    fn of(v: &Value) -> Found {
        match v {
            Value::String(_) => Found::String,
            Value::Number(n) => Found::Number(n.to_string(), n.is_i64() || n.is_u64()),
            Value::Bool(_) => Found::Bool,
            Value::Array(_) => Found::Array,
            Value::Object(_) | Value::Null => Found::Object,
        }
    }

    /// The kind the unstructured converter sees (`map`, `slice`, `int64`).
    fn go_kind(&self) -> &'static str {
        match self {
            Found::String => "string",
            Found::Number(_, true) => "int64",
            Found::Number(_, false) => "float64",
            Found::Bool => "bool",
            Found::Array => "slice",
            Found::Object => "map",
        }
    }
}

impl Mismatch {
    /// Go's decoder: `json: cannot unmarshal string into Go struct field
    /// ObjectMeta.metadata.labels of type map[string]string`.
    pub fn decoder_message(&self) -> String {
        let found = match &self.found {
            Found::String => "string".to_string(),
            // A number that is no integer (or too large) is quoted, as Go does.
            Found::Number(lit, _) => match self.expected {
                Ty::Integer(_) | Ty::IntOrString => format!("number {lit}"),
                _ => "number".to_string(),
            },
            Found::Bool => "bool".to_string(),
            Found::Array => "array".to_string(),
            Found::Object => "object".to_string(),
        };
        if self.path.is_empty() {
            return format!(
                "json: cannot unmarshal {found} into Go value of type {}",
                self.go_type
            );
        }
        format!(
            "json: cannot unmarshal {found} into Go struct field {}.{} of type {}",
            self.owner, self.path, self.go_type
        )
    }

    /// The unstructured converter's: `cannot restore map from string`.
    pub fn converter_message(&self) -> String {
        let src = self.found.go_kind();
        let dst = self.go_type.as_str();
        match self.expected {
            Ty::Object if dst.starts_with("map[") => format!("cannot restore map from {src}"),
            Ty::Object => format!("cannot restore struct from: {src}"),
            Ty::Array => format!("cannot restore slice from {src}"),
            // Go converts integers to numbers and strings, and floats to numbers, but
            // stores only what fits the field; the rest is no primitive it can handle.
            Ty::String | Ty::Integer(_) | Ty::Number
                if matches!(
                    (&self.found, self.expected),
                    (Found::Number(_, true), _) | (Found::Number(..), Ty::Integer(_) | Ty::Number)
                ) =>
            {
                format!("cannot convert {src} to {dst}")
            }
            _ => format!("unrecognized type: {dst}"),
        }
    }
}

/// The first field of `obj` (a `kind` of `group/version`) whose JSON type is not its
/// schema's; none when all are, or when the kind has no schema here.
pub fn type_mismatch(group: &str, version: &str, kind: &str, obj: &Value) -> Option<Mismatch> {
    let c = compiled(group, version)?;
    let &root = c.kinds.get(kind)?;
    let mut path = String::new();
    check(&c, root, obj, &mut path, kind, 0)
}

fn accepts(ty: Ty, v: &Value) -> bool {
    match (ty, v) {
        (Ty::Any, _) | (_, Value::Null) => true,
        (Ty::Object, Value::Object(_)) | (Ty::Array, Value::Array(_)) => true,
        (Ty::String, Value::String(_)) | (Ty::Boolean, Value::Bool(_)) => true,
        (Ty::Number | Ty::Quantity, Value::Number(_)) | (Ty::Quantity, Value::String(_)) => true,
        (Ty::Integer(narrow), Value::Number(n)) => fits(n, narrow),
        (Ty::IntOrString, Value::String(_)) => true,
        (Ty::IntOrString, Value::Number(n)) => fits(n, true),
        _ => false,
    }
}

fn fits(n: &serde_json::Number, narrow: bool) -> bool {
    match n.as_i64() {
        Some(i) => !narrow || i32::try_from(i).is_ok(),
        None => false,
    }
}

fn check(
    c: &Compiled,
    n: usize,
    v: &Value,
    path: &mut String,
    owner: &str,
    depth: usize,
) -> Option<Mismatch> {
    if n == OPEN || depth > MAX_DEPTH {
        return None;
    }
    let node = &c.nodes[n];
    if !accepts(node.ty, v) {
        return Some(Mismatch {
            path: path.clone(),
            owner: owner.to_string(),
            go_type: node.go.to_string(),
            found: Found::of(v),
            expected: node.ty,
        });
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = &node.props {
                // Fields below are named after this struct.
                let me = node.go.rsplit('.').next().unwrap_or(owner);
                for (k, child) in m {
                    let Some(&p) = props.get(k.as_str()) else {
                        continue;
                    };
                    let len = push_key(path, k);
                    let found = check(c, p, child, path, me, depth + 1);
                    path.truncate(len);
                    if found.is_some() {
                        return found;
                    }
                }
            } else if let Some(p) = node.additional {
                for child in m.values() {
                    let found = check(c, p, child, path, owner, depth + 1);
                    if found.is_some() {
                        return found;
                    }
                }
            }
            None
        }
        Value::Array(a) => {
            let p = node.items?;
            a.iter()
                .find_map(|child| check(c, p, child, path, owner, depth + 1))
        }
        _ => None,
    }
}

/// How Go's `%+v` prints a decoded JSON value (`map[metadata:map[labels:x]]`): the
/// value kube-apiserver shows for a strategic merge patch it could not apply.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_format(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn well_typed_objects_pass() {
        let p = pod(json!({"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": 1, "memory": "1Gi"}},
            "livenessProbe": {"httpGet": {"port": "http"}}}],
            "terminationGracePeriodSeconds": 30, "nodeName": null}));
        assert_eq!(type_mismatch("", "v1", "Pod", &p), None);
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "b"}},
                        "data": {"k": "v"}, "binaryData": {"b": "AAEC"}});
        assert_eq!(type_mismatch("", "v1", "ConfigMap", &cm), None);
        assert_eq!(
            type_mismatch("", "v1", "NoSuchKind", &json!({"a": 1})),
            None
        );
    }

    /// (kind, object, decoder's words, converter's words)
    #[test]
    fn mismatches_are_named_as_kube_apiserver_names_them() {
        let cases = [
            (
                "ConfigMap",
                json!({"metadata": {"name": "x", "labels": "invalid"}}),
                "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string",
                "cannot restore map from string",
            ),
            (
                "ConfigMap",
                json!({"metadata": {"name": "x"}, "data": {"a": 5}}),
                "json: cannot unmarshal number into Go struct field ConfigMap.data of type string",
                "cannot convert int64 to string",
            ),
            (
                "Pod",
                pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]})),
                "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
                "unrecognized type: int32",
            ),
            (
                "Pod",
                pod(json!({"containers": {"name": "c"}})),
                "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
                "cannot restore slice from map",
            ),
            (
                "Pod",
                pod(json!({"terminationGracePeriodSeconds": 1.5, "containers": []})),
                "json: cannot unmarshal number 1.5 into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64",
                "cannot convert float64 to int64",
            ),
            (
                "Pod",
                json!({"metadata": "x"}),
                "json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta",
                "cannot restore struct from: string",
            ),
            (
                "Pod",
                pod(
                    json!({"containers": [{"name": "c", "ports": [{"containerPort": 4294967296u64}]}]}),
                ),
                "json: cannot unmarshal number 4294967296 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
                "cannot convert int64 to int32",
            ),
        ];
        for (kind, obj, decoder, converter) in cases {
            let m = type_mismatch("", "v1", kind, &obj).unwrap_or_else(|| panic!("{obj}"));
            assert_eq!(m.decoder_message(), decoder, "{obj}");
            assert_eq!(m.converter_message(), converter, "{obj}");
        }
    }

    #[test]
    fn patches_print_as_go_prints_maps() {
        let p = json!({"metadata": {"labels": "invalid", "a": [1, true, null]}});
        assert_eq!(
            go_format(&p),
            "map[metadata:map[a:[1 true <nil>] labels:invalid]]"
        );
    }
}
