//! Strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch semantics): maps
//! merge and `null` deletes; lists with a merge key merge item by item; scalar sets union;
//! other lists are replaced; directives `$patch` (replace/delete/merge), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

use crate::PatchError;
use crate::shape::{Keys, ListMerge, Shape};
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 64;

/// What merging a map produced.
enum Merged {
    Value(Map<String, Value>),
    /// `$patch: delete`: the map goes away.
    Delete,
}

pub fn apply(doc: &Value, patch: &Value, root: &dyn Shape) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let orig = doc.as_object().cloned().unwrap_or_default();
    match merge_map(orig, p, Some(root), 0)? {
        Merged::Value(m) => Ok(Value::Object(m)),
        Merged::Delete => Ok(Value::Object(Map::new())),
    }
}

/// Removes directives from a value that is inserted as is.
pub fn strip(v: &Value, depth: usize) -> Result<Value, PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::Invalid("patch is nested too deeply".into()));
    }
    Ok(match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                if k.starts_with('$') {
                    continue;
                }
                out.insert(k.clone(), strip(x, depth + 1)?);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| !is_delete_directive(x))
                .map(|x| strip(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

fn is_delete_directive(v: &Value) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Option<&dyn Shape>,
    depth: usize,
) -> Result<Merged, PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::Invalid("patch is nested too deeply".into()));
    }
    match patch.get("$patch").map(|v| v.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            return match strip(&Value::Object(patch.clone()), depth)? {
                Value::Object(m) => Ok(Merged::Value(m)),
                _ => unreachable!("strip keeps objects"),
            };
        }
        Some(Some("delete")) => return Ok(Merged::Delete),
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "Unknown patch type: {}",
                other.unwrap_or("<non-string>")
            )));
        }
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, pv) in patch {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = pv.as_array().cloned().ok_or_else(|| {
                PatchError::Invalid(format!("$setElementOrder/{field} must be a list"))
            })?;
            orders.push((field.to_string(), order));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let del = pv.as_array().ok_or_else(|| {
                PatchError::Invalid(format!("$deleteFromPrimitiveList/{field} must be a list"))
            })?;
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(PatchError::Invalid(format!(
                "unknown patch directive {k:?}"
            )));
        }
        let meta = ty.and_then(|t| t.child(k));
        match pv {
            Value::Null => {
                orig.remove(k);
            }
            // An atomic map is replaced whole, like a scalar.
            Value::Object(_) if meta.is_some_and(|m| m.atomic_map()) => {
                orig.insert(k.clone(), strip(pv, depth)?);
            }
            Value::Object(pm) => {
                let base = match orig.remove(k) {
                    Some(Value::Object(o)) => o,
                    _ => Map::new(),
                };
                if let Merged::Value(m) = merge_map(base, pm, meta, depth + 1)? {
                    orig.insert(k.clone(), Value::Object(m));
                }
            }
            Value::Array(pl) => {
                let merged = match meta.map_or(ListMerge::Atomic, |m| m.list_merge()) {
                    ListMerge::Map(keys) => {
                        let base = match orig.remove(k) {
                            Some(Value::Array(a)) => a,
                            _ => Vec::new(),
                        };
                        merge_list_of_maps(
                            base,
                            pl,
                            keys,
                            meta.and_then(|m| m.item()),
                            meta.is_some_and(|m| m.retain_keys()),
                            depth + 1,
                        )?
                    }
                    ListMerge::Set => {
                        let mut base = match orig.remove(k) {
                            Some(Value::Array(a)) => a,
                            _ => Vec::new(),
                        };
                        for x in pl {
                            if !base.contains(x) {
                                base.push(x.clone());
                            }
                        }
                        base
                    }
                    ListMerge::Atomic => match strip(pv, depth)? {
                        Value::Array(a) => a,
                        _ => unreachable!("strip keeps arrays"),
                    },
                };
                orig.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
    }
    for (field, order) in orders {
        let key = ty
            .and_then(|t| t.child(&field))
            .and_then(|m| match m.list_merge() {
                ListMerge::Map(k) => Some(k),
                _ => None,
            });
        if let Some(Value::Array(list)) = orig.get_mut(&field) {
            reorder(list, &order, key);
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError::Invalid("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Merged::Value(orig))
}

/// Whether two items have the same values for every merge key.
fn same_item(a: &Value, b: &Value, keys: Keys) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

fn merge_list_of_maps(
    mut base: Vec<Value>,
    patch: &[Value],
    keys: Keys,
    ty: Option<&dyn Shape>,
    _retain: bool,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    // `{"$patch": "replace"}` among the items replaces the whole list with the others.
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .map(|p| strip(p, depth))
            .collect();
    }
    for item in patch {
        let Value::Object(pm) = item else {
            return Err(PatchError::Invalid(format!(
                "list items merged by {:?} must be objects",
                keys.iter().collect::<Vec<_>>().join(",")
            )));
        };
        if let Some(key) = keys.iter().find(|k| item.get(*k).is_none()) {
            return Err(PatchError::Invalid(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        }
        let pos = base.iter().position(|b| same_item(b, item, keys));
        if is_delete_directive(item) {
            base.retain(|b| !same_item(b, item, keys));
            continue;
        }
        match pos {
            Some(i) => {
                let orig = base[i].as_object().cloned().unwrap_or_default();
                match merge_map(orig, pm, ty, depth + 1)? {
                    Merged::Value(m) => base[i] = Value::Object(m),
                    Merged::Delete => {
                        base.remove(i);
                    }
                }
            }
            None => base.push(strip(item, depth)?),
        }
    }
    Ok(base)
}

/// Orders `list` like `order`; items the order does not name keep their place relative to
/// the named ones, as Kubernetes' `normalizeElementOrder` does for server-only items.
fn reorder(list: &mut Vec<Value>, order: &[Value], keys: Option<Keys>) {
    let id = |v: &Value| -> Vec<Value> {
        match keys {
            Some(ks) => ks
                .iter()
                .map(|k| v.get(k).cloned().unwrap_or(Value::Null))
                .collect(),
            None => vec![v.clone()],
        }
    };
    let rank = |v: &Value| order.iter().position(|o| id(o) == id(v));
    let original = std::mem::take(list);
    let mut named: Vec<(usize, Value)> = original
        .iter()
        .filter_map(|v| rank(v).map(|r| (r, v.clone())))
        .collect();
    named.sort_by_key(|(r, _)| *r);
    let mut named = named.into_iter().map(|(_, v)| v).peekable();
    for v in original {
        if rank(&v).is_some() {
            if let Some(n) = named.next() {
                list.push(n);
            }
        } else {
            list.push(v);
        }
    }
    list.extend(named);
}
