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
    prune(obj, Some(root), true, &mut String::new(), &mut removed);
    coerce_meta(obj, Some(root), true, "", &mut removed);
    removed.sort();
    removed
}

impl crate::Schema {
    /// The fields [`crate::Schema::prune`] would report for `obj`, leaving it as it is:
    /// for field validation, which only reports them. A copy is pruned only when there
    /// may be something to report.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        if !has_unknown(&self.root, obj) {
            return Vec::new();
        }
        self.prune(&mut obj.clone())
    }
}

/// Whether pruning `obj` (a resource) under `root` could report a removed field: a
/// read-only walk, `true` when unsure.
fn has_unknown(root: &Node, obj: &Value) -> bool {
    // Embedded resources have metadata of their own: not worth a walk of their own.
    root.below.embedded || unknown_in(obj, Some(root), true) || unknown_meta(obj)
}

fn unknown_in(x: &Value, s: Option<&Node>, resource: bool) -> bool {
    let preserves = s.is_some_and(Node::preserves_unknown);
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                return !m.is_empty();
            };
            let resource = resource || s.embedded;
            m.iter().any(|(k, v)| {
                if resource && META_FIELDS.contains(&k.as_str()) {
                    return false;
                }
                match s.field(k) {
                    Some(sub) => (v.is_object() || v.is_array()) && unknown_in(v, Some(sub), false),
                    None => !preserves,
                }
            })
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            // Under preserve-unknown-fields, items without a schema keep everything.
            if preserves && items.is_none() {
                return false;
            }
            a.iter().any(|v| unknown_in(v, items, false))
        }
        _ => false,
    }
}

/// Whether the root's metadata has a field ObjectMeta lacks (at any depth reported).
fn unknown_meta(obj: &Value) -> bool {
    let Some(Value::Object(meta)) = obj.get("metadata") else {
        return false;
    };
    meta.iter()
        .any(|(k, v)| match OBJECT_META.iter().find(|(n, _)| n == k) {
            None => true,
            Some((_, Kind::Objects(known))) => v.as_array().is_some_and(|items| {
                items.iter().any(|i| {
                    i.as_object()
                        .is_some_and(|f| f.keys().any(|k| !known.iter().any(|(n, _)| n == k)))
                })
            }),
            Some(_) => false,
        })
}

/// Prunes a value that is not a resource (a default) under `n`.
pub(crate) fn prune_value(n: &Node, v: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune(v, Some(n), n.embedded, &mut String::new(), &mut removed);
    removed
}

/// Appends `.k` (or `k` at the root) to `path`, runs `f` on it, and takes it off again:
/// one buffer for the whole walk, a string allocated only for a removed field.
fn with_field<T>(path: &mut String, k: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    if len > 0 {
        path.push('.');
    }
    path.push_str(k);
    let out = f(path);
    path.truncate(len);
    out
}

/// Like [`with_field`], for the item `[i]`.
fn with_index<T>(path: &mut String, i: usize, f: impl FnOnce(&mut String) -> T) -> T {
    use std::fmt::Write;
    let len = path.len();
    let _ = write!(path, "[{i}]");
    let out = f(path);
    path.truncate(len);
    out
}

fn prune(
    x: &mut Value,
    s: Option<&Node>,
    resource: bool,
    path: &mut String,
    removed: &mut Vec<String>,
) {
    if let Some(s) = s.filter(|s| s.preserves_unknown()) {
        return skip_prune(x, s, resource, path, removed);
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                for k in m.keys() {
                    with_field(path, k, |p| removed.push(p.clone()));
                }
                m.clear();
                return;
            };
            prune_object(m, s, resource || s.embedded, path, removed);
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for (i, v) in a.iter_mut().enumerate() {
                with_index(path, i, |p| prune(v, items, false, p, removed));
            }
        }
        _ => {}
    }
}

fn prune_object(
    m: &mut Map<String, Value>,
    s: &Node,
    resource: bool,
    path: &mut String,
    removed: &mut Vec<String>,
) {
    let mut drop = Vec::new();
    for (k, v) in m.iter_mut() {
        if resource && META_FIELDS.contains(&k.as_str()) {
            continue;
        }
        match s.field(k) {
            // Scalars have nothing to prune.
            Some(_) if !(v.is_object() || v.is_array()) => {}
            Some(sub) => with_field(path, k, |p| prune(v, Some(sub), false, p, removed)),
            None => {
                if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                    with_field(path, k, |p| removed.push(p.clone()));
                }
                drop.push(k.clone());
            }
        }
    }
    for k in drop {
        m.remove(&k);
    }
}

fn skip_prune(
    x: &mut Value,
    s: &Node,
    resource: bool,
    path: &mut String,
    removed: &mut Vec<String>,
) {
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
                    with_field(path, k, |p| prune(v, Some(sub), false, p, removed));
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter_mut().enumerate() {
                    with_index(path, i, |p| skip_prune(v, items, false, p, removed));
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
        Value::Object(fields) => coerce_fields(fields, OBJECT_META, &|| path.to_string(), removed),
        Value::Null => {}
        _ => {
            m.remove("metadata");
        }
    }
}

/// `path` makes the fields' parent path, only when one is removed: metadata is on every
/// object and nearly always well formed.
fn coerce_fields(
    fields: &mut Map<String, Value>,
    known: &[(&str, Kind)],
    path: &dyn Fn() -> String,
    removed: &mut Vec<String>,
) {
    fields.retain(|k, v| {
        let Some((_, kind)) = known.iter().find(|(n, _)| n == k) else {
            removed.push(format!("{}.{k}", path()));
            return false;
        };
        well_formed(v, *kind, &|| format!("{}.{k}", path()), removed)
    });
}

fn well_formed(
    v: &mut Value,
    kind: Kind,
    path: &dyn Fn() -> String,
    removed: &mut Vec<String>,
) -> bool {
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
                    Value::Object(f) => {
                        coerce_fields(f, known, &|| format!("{}[{i}]", path()), removed)
                    }
                    _ => return false,
                }
            }
            true
        }
        _ => false,
    }
}
