//! The patch engine: JSON patch (RFC 6902), JSON merge patch (RFC 7386), Kubernetes'
//! strategic merge patch and server-side apply with `managedFields`. Pure functions on
//! `serde_json::Value`; no input can make them panic.

mod lastapplied;
pub mod schema;
mod shape;
mod smp;
mod ssa;

use serde_json::Value;
pub use shape::{Keys, ListMerge, Shape};
pub use ssa::{
    ApplyError, ApplyOutcome, Conflict, FieldSet, path_string, record_update, record_update_with,
    server_side_apply, server_side_apply_with,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum PatchError {
    /// The patch document is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// A JSON patch operation failed (a `test` that does not hold, a missing path).
    #[error("the server rejected our request due to an error in our request: {0}")]
    Failed(String),
}

pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("error decoding JSON patch: {e}")))?;
    let mut out = doc.clone();
    // On a copy, so a failed patch needs no undo: json-patch's own undo log panics when
    // it cannot reverse a `move` over the moved value's parent (`/a/b` to `/a`).
    for (i, op) in p.0.iter().enumerate() {
        if absent_tested_null(&out, op) {
            continue;
        }
        json_patch::patch_unsafe(&mut out, std::slice::from_ref(op)).map_err(|e| {
            PatchError::Failed(e.to_string().replacen("'/0'", &format!("'/{i}'"), 1))
        })?;
    }
    Ok(out)
}

/// Kubernetes' JSON patch (evanphx/json-patch) passes a `test` for `null` at a path
/// that does not exist; kube-rs' finalizer helper relies on it.
fn absent_tested_null(doc: &Value, op: &json_patch::PatchOperation) -> bool {
    match op {
        json_patch::PatchOperation::Test(t) => {
            t.value.is_null() && doc.pointer(t.path.as_str()).is_none()
        }
        _ => false,
    }
}

pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Invalid(
            "a merge patch for an object must be a JSON object".into(),
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    group: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    smp::apply(doc, patch, schema::root(group, kind))
}

#[cfg(test)]
mod shape_tests;
#[cfg(test)]
mod tests;
