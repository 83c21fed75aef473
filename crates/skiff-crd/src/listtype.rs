//! `x-kubernetes-list-type` set and map uniqueness (apiextensions' listtype validation)
//! and the list/map types server-side apply merges by.

use crate::node::Node;
use crate::path::{child, index, key};
use serde_json::{Map, Value};
use skiff_types::FieldError;

/// How server-side apply merges a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (the default).
    Atomic,
    /// Merged as a set of scalars.
    Set,
    /// Merged by the values of these keys of its object items.
    Map(Vec<String>),
}

/// The list type declared at `n`, if `n` is an array.
pub(crate) fn of(n: &Node) -> Option<ListType> {
    if n.ty != "array" && n.items.is_none() {
        return None;
    }
    Some(match n.list_type.as_deref() {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(n.list_map_keys.clone()),
        _ => ListType::Atomic,
    })
}

/// Duplicate set items and map keys anywhere under the object `v`.
pub(crate) fn validate(n: &Node, path: &str, v: &Value, errs: &mut Vec<FieldError>) {
    if !n.below.list_types {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(p) = n.properties.get(k) {
                    validate(p, &child(path, k), x, errs);
                } else if let Some(ap) = n.additional_schema() {
                    validate(ap, &key(path, k), x, errs);
                }
            }
        }
        Value::Array(a) => {
            match n.list_type.as_deref() {
                Some("set") => {
                    for i in duplicates(a) {
                        errs.push(FieldError::duplicate(index(path, i), a[i].clone()));
                    }
                }
                Some("map") => map_duplicates(n, path, a, errs),
                _ => {}
            }
            if let Some(items) = &n.items {
                for (i, x) in a.iter().enumerate() {
                    validate(items, &index(path, i), x, errs);
                }
            }
        }
        _ => {}
    }
}

/// Indices of the second occurrence of each repeated value.
fn duplicates(a: &[Value]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, x) in a.iter().enumerate() {
        let earlier = a[..i]
            .iter()
            .filter(|y| crate::openapi::json_eq(x, y))
            .count();
        if earlier == 1 {
            out.push(i);
        }
    }
    out
}

fn map_duplicates(n: &Node, path: &str, a: &[Value], errs: &mut Vec<FieldError>) {
    if let Some(i) = a.iter().position(|x| !x.is_null() && !x.is_object()) {
        errs.push(FieldError::invalid(
            index(path, i),
            a[i].clone(),
            "must be an object for an array of list-type map",
        ));
        return;
    }
    // Keys as Go marshals a map: sorted by name; absent keys left out.
    let mut names = n.list_map_keys.clone();
    names.sort();
    let keys: Vec<Value> = a
        .iter()
        .map(|x| {
            let m: Map<String, Value> = names
                .iter()
                .filter_map(|k| x.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            Value::Object(m)
        })
        .collect();
    for i in duplicates(&keys) {
        errs.push(FieldError::duplicate(index(path, i), keys[i].clone()));
    }
}
