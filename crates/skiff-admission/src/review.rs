//! AdmissionReview (admission.k8s.io/v1 or v1beta1): the request kube sends a webhook
//! and the checks it makes of the answer (`VerifyAdmissionResponse`).

use crate::attributes::Attributes;
use crate::matching::Matched;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The AdmissionReview version to send: the first of the webhook's it knows.
pub(crate) fn pick_version(versions: &[String]) -> Result<&'static str, String> {
    versions
        .iter()
        .find_map(|v| match v.as_str() {
            "v1" => Some("v1"),
            "v1beta1" => Some("v1beta1"),
            _ => None,
        })
        .ok_or_else(|| {
            "webhook does not accept known AdmissionReview versions (v1, v1beta1)".into()
        })
}

/// The AdmissionReview sent, `object` being the object as the webhook sees it now.
pub(crate) fn request(
    uid: &str,
    version: &str,
    a: &Attributes,
    m: &Matched,
    object: Option<&Value>,
) -> Value {
    let mut r = serde_json::Map::new();
    r.insert("uid".into(), json!(uid));
    r.insert("kind".into(), m.kind.to_json());
    r.insert("resource".into(), m.resource.to_json());
    if !a.sub_resource.is_empty() {
        r.insert("subResource".into(), json!(a.sub_resource));
    }
    r.insert("requestKind".into(), a.kind.to_json());
    r.insert("requestResource".into(), a.resource.to_json());
    if !a.sub_resource.is_empty() {
        r.insert("requestSubResource".into(), json!(a.sub_resource));
    }
    if !a.name.is_empty() {
        r.insert("name".into(), json!(a.name));
    }
    if !a.namespace.is_empty() {
        r.insert("namespace".into(), json!(a.namespace));
    }
    r.insert("operation".into(), json!(a.operation.as_str()));
    r.insert("userInfo".into(), a.user.to_json());
    r.insert("object".into(), object.cloned().unwrap_or(Value::Null));
    r.insert(
        "oldObject".into(),
        a.old_object.clone().unwrap_or(Value::Null),
    );
    r.insert("dryRun".into(), json!(a.dry_run));
    r.insert("options".into(), a.options.clone().unwrap_or(Value::Null));
    json!({
        "kind": "AdmissionReview",
        "apiVersion": format!("admission.k8s.io/{version}"),
        "request": Value::Object(r),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawReview {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    response: Option<RawResponse>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    patch: Option<String>,
    patch_type: Option<String>,
    status: Option<Value>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    audit_annotations: BTreeMap<String, String>,
}

/// A verified answer.
#[derive(Debug, Default)]
pub(crate) struct Response {
    pub allowed: bool,
    /// The decoded patch, with its type (`JSONPatch`).
    pub patch: Option<(Vec<u8>, String)>,
    pub status: Option<Value>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

/// Decodes and checks an answer as `VerifyAdmissionResponse` does.
pub(crate) fn verify(
    uid: &str,
    version: &str,
    mutating: bool,
    body: &[u8],
) -> Result<Response, String> {
    let review: RawReview = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let r = review.response.ok_or("webhook response was absent")?;
    let patch = match r.patch.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let patch = if version == "v1" {
        if r.uid != uid {
            return Err(format!("expected response.uid={uid:?}, got {:?}", r.uid));
        }
        let (group, v) = review
            .api_version
            .split_once('/')
            .unwrap_or(("", &review.api_version));
        if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
            return Err(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}{v}, Kind={}",
                if group.is_empty() {
                    String::new()
                } else {
                    format!("{group}/")
                },
                review.kind
            ));
        }
        v1_patch(mutating, patch, r.patch_type.as_deref())?
    } else {
        patch
            .filter(|_| mutating)
            .map(|p| (p, "JSONPatch".to_string()))
    };
    Ok(Response {
        allowed: r.allowed,
        patch,
        status: r.status,
        warnings: r.warnings,
        audit_annotations: r.audit_annotations,
    })
}

fn v1_patch(
    mutating: bool,
    patch: Option<Vec<u8>>,
    ty: Option<&str>,
) -> Result<Option<(Vec<u8>, String)>, String> {
    if !mutating {
        if patch.is_some() {
            return Err("validating webhook may not return response.patch".into());
        }
        if ty.is_some() {
            return Err("validating webhook may not return response.patchType".into());
        }
        return Ok(None);
    }
    match (patch, ty) {
        (Some(_), None) => Err("webhook returned response.patch but not response.patchType".into()),
        (None, Some(_)) => Err("webhook returned response.patchType but not response.patch".into()),
        (Some(_), Some("")) => Err("webhook returned invalid response.patchType of \"\"".into()),
        (Some(p), Some(t)) => Ok(Some((p, t.to_string()))),
        (None, None) => Ok(None),
    }
}
