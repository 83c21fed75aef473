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
    let target = Target::new(&hook.client, &hook.ca_bundle, hook.timeout_seconds)
        .map_err(|e| CallError::Calling(format!("could not get REST client: {e}")))?;
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review::request(&uid, version, a, m, object);
    let bytes = serde_json::to_vec(&body).map_err(|e| CallError::Calling(e.to_string()))?;
    tracing::debug!(webhook = %hook.name, url = %target.url, "calling admission webhook");
    let answer = client::post_json(transport, &target, bytes)
        .await
        .map_err(|e| CallError::Calling(format!("failed to call webhook: {e}")))?;
    review::verify(&uid, version, hook.mutating, &answer)
        .map_err(|e| CallError::Calling(format!("received invalid webhook response: {e}")))
}
