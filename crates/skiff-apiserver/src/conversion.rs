//! Custom objects moved between their CRD's versions: stored in the storage version,
//! shown in the version a request names. With conversion `None` only `apiVersion`
//! changes; with `Webhook` the CRD's conversion webhook is called (one ConversionReview
//! per object, or per list), as kube-apiserver's webhook converter does.

use crate::codec::{to_stored, to_stored_for};
use crate::registry::Served;
use crate::state::ApiServer;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_types::ApiError;

/// Whether changing the version of `ri`'s objects needs its conversion webhook.
pub fn by_webhook(ri: &Served) -> bool {
    ri.custom.as_ref().is_some_and(|c| c.conversion.is_some())
}

/// `obj` in `api_version`. Objects already there are returned as they are.
pub async fn one(
    api: &ApiServer,
    ri: &Served,
    obj: Value,
    api_version: &str,
) -> Result<Value, ApiError> {
    let Some(hook) = ri.custom.as_ref().and_then(|c| c.conversion.as_deref()) else {
        return Ok(relabel(obj, api_version));
    };
    api.converter
        .convert_object(hook, obj, api_version)
        .await
        .map_err(|e| e.status())
}

/// `objs` in `api_version`, in one call of the webhook (a list's items).
pub async fn all(
    api: &ApiServer,
    ri: &Served,
    objs: Vec<Value>,
    api_version: &str,
) -> Result<Vec<Value>, ApiError> {
    let Some(hook) = ri.custom.as_ref().and_then(|c| c.conversion.as_deref()) else {
        return Ok(objs.into_iter().map(|o| relabel(o, api_version)).collect());
    };
    api.converter
        .convert(hook, objs, api_version)
        .await
        .map_err(|e| e.status())
}

/// The object as the request's version shows it (a no-op for built-in kinds and for
/// a `Status` a delete may answer with).
pub async fn for_request(api: &ApiServer, ri: &Served, obj: Value) -> Result<Value, ApiError> {
    if !by_webhook(ri) || obj.get("kind").and_then(Value::as_str) == Some("Status") {
        return Ok(obj);
    }
    one(api, ri, obj, &ri.api_version()).await
}

/// The bytes to store for `obj`: in the kind's storage version.
pub async fn encode(api: &ApiServer, ri: &Served, obj: &Value) -> Result<Bytes, ApiError> {
    match ri.storage_api_version() {
        Some(av) if by_webhook(ri) => Ok(to_stored(&one(api, ri, obj.clone(), &av).await?)),
        _ => Ok(to_stored_for(ri, obj)),
    }
}

fn relabel(mut obj: Value, api_version: &str) -> Value {
    if obj.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        obj["apiVersion"] = json!(api_version);
    }
    obj
}
