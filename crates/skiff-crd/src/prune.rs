//! Structural pruning (apiextensions' `pruning.PruneWithOptions` plus objectmeta
//! coercion): fields the schema does not specify are dropped, except under
//! `x-kubernetes-preserve-unknown-fields`; resources (the root and embedded ones) keep
//! apiVersion, kind and metadata, and metadata keeps only ObjectMeta's fields.

use crate::node::Node;
use crate::path::{child, index, key};
use serde_json::{Map, Value};

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Prunes `obj` (a resource) under the root schema; returns the removed paths, sorted.
pub(crate) fn prune_root(root: &Node, obj: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune(obj, Some(root), true, "", &mut removed);
    coerce_meta(obj, Some(root), true, "", &mut removed);
    removed.sort();
    removed
}

/// Prunes a value that is not a resource (a default) under `n`.
pub(crate) fn prune_value(n: &Node, v: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune(v, Some(n), n.embedded, "", &mut removed);
    removed
}

fn unknown_path(parent: &str, k: &str) -> String {
    if parent.is_empty() {
        k.to_string()
    } else {
        format!("{parent}.{k}")
    }
}

fn prune(x: &mut Value, s: Option<&Node>, resource: bool, path: &str, removed: &mut Vec<String>) {
    if let Some(s) = s.filter(|s| s.preserves_unknown()) {
        return skip_prune(x, s, resource, path, removed);
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                removed.extend(m.keys().map(|k| unknown_path(path, k)));
                m.clear();
                return;
            };
            prune_object(m, s, resource || s.embedded, path, removed);
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for (i, v) in a.iter_mut().enumerate() {
                prune(v, items, false, &format!("{path}[{i}]"), removed);
            }
        }
        _ => {}
    }
}

fn prune_object(
    m: &mut Map<String, Value>,
    s: &Node,
    resource: bool,
    path: &str,
    removed: &mut Vec<String>,
) {
    let mut drop = Vec::new();
    for (k, v) in m.iter_mut() {
        if resource && META_FIELDS.contains(&k.as_str()) {
            continue;
        }
        match s.field(k) {
            // Scalars have nothing to prune: no path to build for them.
            Some(_) if !(v.is_object() || v.is_array()) => {}
            Some(sub) => prune(v, Some(sub), false, &unknown_path(path, k), removed),
            None => {
                if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                    removed.push(unknown_path(path, k));
                }
                drop.push(k.clone());
            }
        }
    }
    for k in drop {
        m.remove(&k);
    }
}

fn skip_prune(x: &mut Value, s: &Node, resource: bool, path: &str, removed: &mut Vec<String>) {
    match x {
        Value::Object(m) => {
            let resource = resource || s.embedded;
            for (k, v) in m.iter_mut() {
                if resource && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(sub) = s.field(k)
                    && (v.is_object() || v.is_array())
                {
                    prune(v, Some(sub), false, &unknown_path(path, k), removed);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter_mut().enumerate() {
                    skip_prune(v, items, false, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}

/// Walks to every resource (root and embedded) and coerces its metadata. Paths here are
/// field paths (`spec.items[0].template`), as objectmeta reports them.
fn coerce_meta(
    x: &mut Value,
    s: Option<&Node>,
    resource: bool,
    path: &str,
    removed: &mut Vec<String>,
) {
    let Some(s) = s else { return };
    match x {
        Value::Object(m) => {
            if resource || s.embedded {
                coerce_object_meta(m, &child(path, "metadata"), removed);
            }
            if !s.below.embedded {
                return;
            }
            for (k, v) in m.iter_mut() {
                if let Some(p) = s.properties.get(k) {
                    coerce_meta(v, Some(p), false, &child(path, k), removed);
                } else if let Some(ap) = s.additional_schema() {
                    coerce_meta(v, Some(ap), false, &key(path, k), removed);
                }
            }
        }
        Value::Array(a) if s.below.embedded => {
            for (i, v) in a.iter_mut().enumerate() {
                coerce_meta(v, s.items.as_deref(), false, &index(path, i), removed);
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    StrMap,
    StrList,
    Any,
    Objects(&'static [(&'static str, Kind)]),
}

const OWNER_REF: &[(&str, Kind)] = &[
    ("apiVersion", Kind::Str),
    ("kind", Kind::Str),
    ("name", Kind::Str),
    ("uid", Kind::Str),
    ("controller", Kind::Bool),
    ("blockOwnerDeletion", Kind::Bool),
];

const MANAGED_FIELDS: &[(&str, Kind)] = &[
    ("manager", Kind::Str),
    ("operation", Kind::Str),
    ("apiVersion", Kind::Str),
    ("time", Kind::Str),
    ("fieldsType", Kind::Str),
    ("fieldsV1", Kind::Any),
    ("subresource", Kind::Str),
];

const OBJECT_META: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("generateName", Kind::Str),
    ("namespace", Kind::Str),
    ("selfLink", Kind::Str),
    ("uid", Kind::Str),
    ("resourceVersion", Kind::Str),
    ("generation", Kind::Int),
    ("creationTimestamp", Kind::Str),
    ("deletionTimestamp", Kind::Str),
    ("deletionGracePeriodSeconds", Kind::Int),
    ("labels", Kind::StrMap),
    ("annotations", Kind::StrMap),
    ("ownerReferences", Kind::Objects(OWNER_REF)),
    ("finalizers", Kind::StrList),
    ("managedFields", Kind::Objects(MANAGED_FIELDS)),
];

/// metadata as a round trip through ObjectMeta leaves it: unknown fields removed (and
/// reported), malformed ones dropped.
fn coerce_object_meta(m: &mut Map<String, Value>, path: &str, removed: &mut Vec<String>) {
    let Some(meta) = m.get_mut("metadata") else {
        return;
    };
    match meta {
        Value::Object(fields) => coerce_fields(fields, OBJECT_META, path, removed),
        Value::Null => {}
        _ => {
            m.remove("metadata");
        }
    }
}

fn coerce_fields(
    fields: &mut Map<String, Value>,
    known: &[(&str, Kind)],
    path: &str,
    removed: &mut Vec<String>,
) {
    fields.retain(|k, v| {
        let Some((_, kind)) = known.iter().find(|(n, _)| n == k) else {
            removed.push(format!("{path}.{k}"));
            return false;
        };
        well_formed(v, *kind, &format!("{path}.{k}"), removed)
    });
}

fn well_formed(v: &mut Value, kind: Kind, path: &str, removed: &mut Vec<String>) -> bool {
    if v.is_null() {
        return true;
    }
    match (kind, v) {
        (Kind::Any, _) => true,
        (Kind::Str, v) => v.is_string(),
        (Kind::Int, v) => v.as_i64().is_some(),
        (Kind::Bool, v) => v.is_boolean(),
        (Kind::StrMap, Value::Object(m)) => m.values().all(Value::is_string),
        (Kind::StrList, Value::Array(a)) => a.iter().all(Value::is_string),
        (Kind::Objects(known), Value::Array(a)) => {
            for (i, item) in a.iter_mut().enumerate() {
                match item {
                    Value::Object(f) => coerce_fields(f, known, &format!("{path}[{i}]"), removed),
                    _ => return false,
                }
            }
            true
        }
        _ => false,
    }
}
