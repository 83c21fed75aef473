//! PATCH: JSON patch, merge patch, strategic merge patch and server-side apply, on the
//! main resource and on the status and scale subresources.

use super::call::Call;
use crate::codec::field_validation;
use crate::decode;
use crate::request::Query;
use crate::request::storage_target;
use crate::request::{Target, WriteOptions, WriteResult, parse_rv};
use crate::respond::write_response;
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use http::HeaderMap;
use serde_json::Value;
use skiff_patch::PatchType;
use skiff_types::ResourceInfo;
use skiff_types::{ApiError, Subresource, meta};

/// The patch media types a built-in kind takes, in kube's order.
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
/// A custom kind's: no strategic merge (it has no patch strategies to merge by).
const CUSTOM_PATCH_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

pub async fn serve(call: &Call<'_>, body: Body) -> Result<Response, ApiError> {
    let raw = crate::decode::read_body(body).await?;
    let opts = call.write_options()?;
    let t = storage_target(&call.t);
    // An alias kind (events.k8s.io, autoscaling/v1) is patched in its own shape.
    let view = call.t.ri.is_storage_alias().then_some(&call.t.ri.info);
    let res = patch(call.api, &t, view, &call.headers, &raw, &call.q, opts).await?;
    Ok(write_response(&call.headers, &call.t, res, &[]))
}

async fn patch(
    api: &ApiServer,
    t: &Target,
    view: Option<&ResourceInfo>,
    headers: &HeaderMap,
    raw: &[u8],
    q: &Query,
    opts: WriteOptions,
) -> Result<WriteResult, ApiError> {
    let ct = decode::content_type(headers);
    let accepted: &[&str] = match t.ri.custom {
        Some(_) => &CUSTOM_PATCH_TYPES,
        None => &PATCH_TYPES,
    };
    let pt = PatchType::from_content_type(&ct)
        .filter(|pt| *pt != PatchType::StrategicMerge || t.ri.custom.is_none())
        .ok_or_else(|| ApiError::unsupported_media_type(accepted))?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body of the patch is empty"));
    }
    let ri = &t.ri;
    match pt {
        PatchType::Apply => {
            let manager = opts.field_manager.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager parameter",
                )
            })?;
            let force = matches!(q.map.get("force").map(String::as_str), Some("true" | "1"));
            let mut applied = decode::decode_yaml(raw)?;
            if !applied.is_object() {
                return Err(ApiError::bad_request(
                    "the applied configuration must be an object",
                ));
            }
            if applied.get("apiVersion").is_none() || applied.get("kind").is_none() {
                return Err(ApiError::bad_request(
                    "apiVersion and kind must be set in an applied configuration",
                ));
            }
            if let Some(v) = view {
                applied = crate::views::to_storage(v, &applied);
            }
            crate::codec::check_type_meta(ri, &mut applied)?;
            crate::codec::check_decodes(ri, &applied)?;
            let warnings = field_validation(ri, &applied, None, opts.field_validation)?;
            if let Some(n) = meta::name(&applied)
                && n != t.name()
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    t.name()
                )));
            }
            let now = crate::request::now_rfc3339();
            let ssa = |live: Option<&Value>| -> Result<Value, ApiError> {
                let out =
                    crate::strategy::server_side_apply(ri, live, &applied, &manager, force, &now)
                        .map_err(|e| apply_error(t, e))?;
                Ok(out.object)
            };
            // Apply creates when absent.
            match api
                .get_object(&Target {
                    sub: None,
                    ..t.clone()
                })
                .await
            {
                Err(e) if e.code == 404 && t.sub.is_none() => {
                    let obj = ssa(None)?;
                    let mut res = api
                        .create(
                            t,
                            obj,
                            &WriteOptions {
                                field_manager: None,
                                ..opts
                            },
                        )
                        .await?;
                    res.warnings.extend(warnings);
                    return Ok(res);
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            let mut res = api
                .write_existing(
                    t,
                    None,
                    &WriteOptions {
                        field_manager: None,
                        ..opts
                    },
                    |cur| ssa(Some(cur)),
                )
                .await?;
            res.warnings.extend(warnings);
            Ok(res)
        }
        _ => {
            let patch: Value = serde_json::from_slice(raw)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let precondition = match pt {
                PatchType::Merge | PatchType::StrategicMerge => patch
                    .get("metadata")
                    .and_then(|m| m.get("resourceVersion"))
                    .and_then(Value::as_str)
                    .map(parse_rv)
                    .transpose()?,
                _ => None,
            };
            let is_scale = t.sub == Some(Subresource::Scale);
            let name = t.name().to_string();
            let mut warnings = Vec::new();
            let mode = opts.field_validation;
            let apply = |doc: &Value, kind_group: &str, kind: &str| -> Result<Value, ApiError> {
                let out = match pt {
                    PatchType::Json => skiff_patch::json_patch(doc, &patch),
                    PatchType::Merge => skiff_patch::merge_patch(doc, &patch),
                    PatchType::StrategicMerge => {
                        skiff_patch::strategic_merge_patch(doc, &patch, kind_group, kind)
                    }
                    PatchType::Apply => unreachable!("handled above"),
                };
                out.map_err(|e| patch_error(t, e))
            };
            let mut res = api
                .write_existing(t, precondition, &opts, |cur| {
                    if is_scale {
                        let scale = crate::scale::to_scale(&t.ri, cur);
                        let patched = apply(&scale, "autoscaling", "Scale")?;
                        return crate::scale::from_scale(&t.ri, cur, &patched, &name);
                    }
                    let patched = match view {
                        Some(v) => {
                            let shown = crate::views::from_storage(v, cur);
                            crate::views::to_storage(v, &apply(&shown, &v.group, &v.kind)?)
                        }
                        None => apply(cur, &ri.group, &ri.kind)?,
                    };
                    check_patched(t, pt, &patch, &patched)?;
                    if t.sub.is_none() {
                        warnings = field_validation(ri, &patched, None, mode)?;
                    }
                    Ok(patched)
                })
                .await?;
            // The field warnings first, then what admission said of the result.
            warnings.append(&mut res.warnings);
            Ok(WriteResult { warnings, ..res })
        }
    }
}

/// A patch whose result would not decode as its kind is refused as kube-apiserver
/// refuses it: 422 on the field `patch`, showing the patch (strategic) or the patched
/// object (merge and JSON patches) with the decoding error.
fn check_patched(
    t: &Target,
    pt: PatchType,
    patch: &Value,
    patched: &Value,
) -> Result<(), ApiError> {
    let ri = &t.ri;
    let Some(m) = crate::strategy::type_mismatch(ri, patched) else {
        return Ok(());
    };
    let (shown, why) = match pt {
        PatchType::StrategicMerge => (skiff_openapi::go_format(patch), m.converter_message()),
        _ => (patched.to_string(), m.decoder_message()),
    };
    let err = skiff_types::FieldError::invalid("patch", Value::String(shown), why);
    Err(ApiError::invalid("", "", "", &[err]))
}

fn patch_error(t: &Target, e: skiff_patch::PatchError) -> ApiError {
    // A patch that does not decode is a 400; one that decodes but cannot be applied
    // (a failed `test`, a missing path) is a 422, as Kubernetes answers.
    match e {
        skiff_patch::PatchError::Failed(msg) => ApiError::invalid(
            &t.ri.group,
            &t.ri.kind,
            t.name(),
            &[skiff_types::FieldError::invalid("", Value::Null, msg)],
        ),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn apply_error(t: &Target, e: skiff_patch::ApplyError) -> ApiError {
    match e {
        skiff_patch::ApplyError::Conflicts(conflicts) => {
            let n = conflicts.len();
            let lines: Vec<String> = conflicts
                .iter()
                .map(|c| format!("conflict with {:?}: {}", c.manager, c.field))
                .collect();
            let mut err = ApiError::conflict(&t.ri.group, &t.ri.plural, t.name(), "");
            err.message = format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                lines.join("\n")
            );
            err.causes = conflicts
                .iter()
                .map(|c| serde_json::json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?}", c.manager), "field": c.field}))
                .collect();
            err
        }
        other => ApiError::bad_request(other.to_string()),
    }
}
