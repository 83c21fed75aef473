//! One webhook call: the dry-run check, the AdmissionReview out, the answer verified.
//! Failures are sorted as kube sorts them: calling errors (subject to failurePolicy)
//! apart from rejections and other errors (never ignored).

use crate::attributes::Attributes;
use crate::client::{self, Target};
use crate::error::{self, AdmissionError};
use crate::matching::Matched;
use crate::review::{self, Response};
use crate::webhook::{SideEffects, Webhook};
use serde_json::Value;

/// How a call went wrong.
#[derive(Debug)]
pub(crate) enum CallError {
    /// kube's ErrCallingWebhook: the reason (`failed to call webhook: ...`).
    Calling(String),
    /// A denial or any other error, returned whatever the failurePolicy.
    Final(AdmissionError),
}

/// Calls `hook` about `a`, the object as it is now being `object`.
pub(crate) async fn call(
    transport: &client::Transport,
    hook: &Webhook,
    a: &Attributes,
    m: &Matched,
    object: Option<&Value>,
) -> Result<Response, CallError> {
    if a.dry_run {
        match &hook.side_effects {
            None => return Err(CallError::Calling("Webhook SideEffects is nil".into())),
            Some(SideEffects::None | SideEffects::NoneOnDryRun) => {}
            Some(SideEffects::Other(_)) => {
                return Err(CallError::Final(error::dry_run_unsupported(&hook.name)));
            }
        }
    }
    let version = review::pick_version(&hook.admission_review_versions)
        .map_err(|e| CallError::Calling(format!("could not create admission objects: {e}")))?;
    let target = Target::new(hook)
        .map_err(|e| CallError::Calling(format!("could not get REST client: {e}")))?;
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review::request(&uid, version, a, m, object);
    let bytes = serde_json::to_vec(&body).map_err(|e| CallError::Calling(e.to_string()))?;
    tracing::debug!(webhook = %hook.name, url = %target.url, "calling admission webhook");
    let (status, answer) = client::post(transport, hook, &target, bytes)
        .await
        .map_err(|e| {
            CallError::Calling(format!(
                "failed to call webhook: Post {:?}: {e}",
                target.url
            ))
        })?;
    if !(200..300).contains(&status) {
        let why = status_error(status, &answer);
        return Err(CallError::Calling(format!("failed to call webhook: {why}")));
    }
    review::verify(&uid, version, hook.mutating, &answer)
        .map_err(|e| CallError::Calling(format!("received invalid webhook response: {e}")))
}

/// client-go's error for a non-2xx answer: a Status' message, or a generic one.
fn status_error(code: u16, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let msg = parsed
        .as_ref()
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("Status"))
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str);
    match msg {
        Some(m) => m.to_string(),
        None if body.is_empty() => {
            format!(
                "the server responded with the status code {code} but did not return more information"
            )
        }
        None => format!(
            "an error on the server ({:?}) has prevented the request from succeeding",
            String::from_utf8_lossy(body).trim()
        ),
    }
}
