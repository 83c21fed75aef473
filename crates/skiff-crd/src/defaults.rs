//! Structural defaulting (apiextensions' `structuraldefaulting.Default` followed by
//! `PruneNonNullableNullsWithoutDefaults`, as the custom resource decoder runs them).

use crate::node::Node;
use serde_json::Value;

/// Applies defaults under `s`, then drops nulls the schema neither allows nor defaults.
pub(crate) fn apply(x: &mut Value, s: &Node) {
    default(x, s);
    prune_nulls(x, Some(s));
}

fn non_nullable_null(x: &Value, s: Option<&Node>) -> bool {
    x.is_null() && s.is_some_and(|s| !s.nullable)
}

fn default(x: &mut Value, s: &Node) {
    // Most of a big schema has no defaults: no need to walk the value there.
    if !s.below.defaults {
        return;
    }
    match x {
        Value::Object(m) => {
            for (k, p) in &s.properties {
                let Some(d) = &p.default else { continue };
                let absent = m.get(k).is_none_or(|v| non_nullable_null(v, Some(p)));
                if absent {
                    m.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in m.iter_mut() {
                if let Some(p) = s.properties.get(k) {
                    default(v, p);
                } else if let Some(ap) = s.additional_schema() {
                    if non_nullable_null(v, Some(ap)) {
                        *v = ap.default.clone().unwrap_or(Value::Null);
                    }
                    default(v, ap);
                }
            }
        }
        Value::Array(a) => {
            let Some(items) = s.items.as_deref() else {
                return;
            };
            for v in a.iter_mut() {
                if non_nullable_null(v, Some(items)) {
                    *v = items.default.clone().unwrap_or(Value::Null);
                }
                default(v, items);
            }
        }
        _ => {}
    }
}

fn prune_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(m) => {
            // Scalars need no schema lookup: only nulls go, and only containers hold more.
            m.retain(|k, v| match v {
                Value::Null => s
                    .and_then(|s| s.field(k))
                    .is_none_or(|n| n.nullable || n.default.is_some()),
                Value::Object(_) | Value::Array(_) => {
                    prune_nulls(v, s.and_then(|s| s.field(k)));
                    true
                }
                _ => true,
            });
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for v in a.iter_mut() {
                prune_nulls(v, items);
            }
        }
        _ => {}
    }
}
