//! kube-apiserver's storage admission plugins:
//! - DefaultStorageClass: a claim created without `storageClassName` gets the default
//!   StorageClass's name (the newest of those annotated default);
//! - StorageObjectInUseProtection: claims and volumes are created with the
//!   `kubernetes.io/pvc-protection` / `kubernetes.io/pv-protection` finalizers, which the
//!   protection controllers remove once nothing uses them;
//! - PersistentVolumeClaimResize: a claim's storage request may grow only when its class
//!   allows volume expansion.

use crate::request::Target;
use crate::state::ApiServer;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};
use skiff_types::volumes::{PV_PROTECTION, PVC_PROTECTION};
use skiff_types::{ApiError, ResourceInfo, Subresource};

/// Admission of a new claim or volume.
pub fn admit_create(api: &ApiServer, ri: &ResourceInfo, obj: &mut Value) {
    match (&*ri.group, &*ri.plural) {
        ("", "persistentvolumeclaims") => {
            if obj["spec"]["storageClassName"].is_null()
                && let Some(class) = default_class(api)
                && obj["spec"].is_object()
            {
                obj["spec"]["storageClassName"] = json!(class);
            }
            add_finalizer(obj, PVC_PROTECTION);
        }
        ("", "persistentvolumes") => add_finalizer(obj, PV_PROTECTION),
        _ => {}
    }
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let m = skiff_types::meta::meta_mut(obj);
    let list = m.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut()
        && !a.iter().any(|x| x == f)
    {
        a.push(json!(f));
    }
}

/// The default StorageClass: the newest of those annotated default (the name breaks a
/// tie), as DefaultStorageClass picks it when several are marked.
fn default_class(api: &ApiServer) -> Option<String> {
    let ri = crate::registry::builtin("storage.k8s.io", "storageclasses");
    let (all, _, _) = api.cache.list(&ri.prefix(None), None, None, &|_| true);
    all.iter()
        .filter_map(|s| serde_json::from_slice::<Value>(&s.value).ok())
        .filter(skiff_printers::is_default_class)
        .filter_map(|v| serde_json::from_value::<StorageClass>(v).ok())
        .max_by(|a, b| {
            let key = |c: &StorageClass| {
                (
                    c.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    c.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        })
        .and_then(|c| c.metadata.name)
}

/// PersistentVolumeClaimResize on an update of a claim's spec.
pub fn admit_update(
    api: &ApiServer,
    t: &Target,
    new: &Value,
    current: &Value,
) -> Result<(), ApiError> {
    if (&*t.ri.group, &*t.ri.plural) != ("", "persistentvolumeclaims")
        || t.sub == Some(Subresource::Status)
    {
        return Ok(());
    }
    let storage = |c: &Value| {
        c["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .and_then(|q| skiff_validation::quantity::parse(q).ok())
            .map(|q| q.value())
    };
    let grows = matches!((storage(new), storage(current)), (Some(n), Some(o)) if n > o);
    if !grows || expandable(api, &current["spec"]["storageClassName"]) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "",
        "persistentvolumeclaims",
        t.name(),
        "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
    ))
}

fn expandable(api: &ApiServer, class: &Value) -> bool {
    let Some(class) = class.as_str().filter(|c| !c.is_empty()) else {
        return false;
    };
    let ri = crate::registry::builtin("storage.k8s.io", "storageclasses");
    api.cache
        .get(&ri.key(None, class))
        .and_then(|s| serde_json::from_slice::<StorageClass>(&s.value).ok())
        .and_then(|c| c.allow_volume_expansion)
        .unwrap_or(false)
}
