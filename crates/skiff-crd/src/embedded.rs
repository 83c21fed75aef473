//! Embedded resources (`x-kubernetes-embedded-resource`) must say what they are:
//! apiVersion and kind required and well formed (apiextensions' objectmeta.Validate;
//! the embedded metadata's own checks are left to the caller's ObjectMeta validation).

use crate::names::dns1035_label;
use crate::node::Node;
use crate::path::{child, index, key};
use serde_json::{Value, json};
use skiff_types::FieldError;

/// Checks every embedded resource under `v` (the root itself is not one here).
pub(crate) fn validate(n: &Node, path: &str, v: &Value, errs: &mut Vec<FieldError>) {
    if !n.below.embedded {
        return;
    }
    match v {
        Value::Object(m) => {
            if n.embedded {
                resource(path, m, errs);
            }
            for (k, x) in m {
                if let Some(p) = n.properties.get(k) {
                    validate(p, &child(path, k), x, errs);
                } else if let Some(ap) = n.additional_schema() {
                    validate(ap, &key(path, k), x, errs);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &n.items {
                for (i, x) in a.iter().enumerate() {
                    validate(items, &index(path, i), x, errs);
                }
            }
        }
        _ => {}
    }
}

fn resource(path: &str, m: &serde_json::Map<String, Value>, errs: &mut Vec<FieldError>) {
    for k in ["apiVersion", "kind"] {
        if !m.contains_key(k) {
            errs.push(FieldError::required(child(path, k), ""));
        }
    }
    if let Some(v) = m.get("apiVersion") {
        let p = child(path, "apiVersion");
        match v.as_str() {
            None => errs.push(FieldError::invalid(p, v.clone(), "must be a string")),
            Some("") => errs.push(FieldError::invalid(p, json!(""), "must not be empty")),
            Some(s) if s.matches('/').count() > 1 => errs.push(FieldError::invalid(
                p,
                json!(s),
                format!("unexpected GroupVersion string: {s}"),
            )),
            Some(_) => {}
        }
    }
    if let Some(v) = m.get("kind") {
        let p = child(path, "kind");
        match v.as_str() {
            None => errs.push(FieldError::invalid(p, v.clone(), "must be a string")),
            Some("") => errs.push(FieldError::invalid(p, json!(""), "must not be empty")),
            Some(s) => {
                let problems = dns1035_label(&s.to_lowercase());
                if !problems.is_empty() {
                    errs.push(FieldError::invalid(
                        p,
                        json!(s),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            problems.join(",")
                        ),
                    ));
                }
            }
        }
    }
}
