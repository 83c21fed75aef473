//! Denials and failures, carrying the `Status` kube-apiserver answers with.

use crate::attributes::Attributes;
use serde_json::{Value, json};
use skiff_types::{ApiError, StatusReason};

/// Why admission refused a request. [`AdmissionError::status`] is the error the API
/// server returns; [`AdmissionError::to_status`] its exact `Status` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    /// A webhook answered `allowed: false`.
    #[error("{}", error.message)]
    Denied {
        webhook: String,
        error: ApiError,
        /// `status.reason` as the webhook wrote it, when it is not one
        /// [`StatusReason`] knows (kube passes it through).
        raw_reason: Option<String>,
    },
    /// A webhook could not be called (or answered nonsense) and its failurePolicy is
    /// Fail: 500 InternalError.
    #[error("{}", error.message)]
    CallFailed { webhook: String, error: ApiError },
    /// A ValidatingAdmissionPolicy binding with the Deny action refused.
    #[error("{}", error.message)]
    PolicyDenied {
        policy: String,
        binding: Option<String>,
        error: ApiError,
    },
    /// Anything else worded as kube words it: dry run unsupported (400), a failing
    /// matchCondition (403), a missing namespace (404), a patch that does not apply
    /// (500).
    #[error("{}", .0.message)]
    Rejected(ApiError),
}

impl AdmissionError {
    /// The error the API server returns.
    pub fn status(&self) -> ApiError {
        match self {
            AdmissionError::Denied { error, .. }
            | AdmissionError::CallFailed { error, .. }
            | AdmissionError::PolicyDenied { error, .. }
            | AdmissionError::Rejected(error) => error.clone(),
        }
    }

    /// The `metav1.Status` body, with a webhook's own `reason` kept verbatim.
    pub fn to_status(&self) -> Value {
        let mut st = self.status().to_status();
        if let AdmissionError::Denied {
            raw_reason: Some(r),
            ..
        } = self
        {
            st["reason"] = json!(r);
        }
        st
    }
}

/// Why a CRD conversion webhook call did not convert, worded as kube's webhook
/// converter words it (`<gvk>` being Go's `GroupVersionKind` text of what was
/// converted, e.g. `stable.example.com/v1, Kind=CronTab`). The API server answers
/// with [`ConversionError::status`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConversionError {
    /// `conversionReviewVersions` names neither v1 nor v1beta1.
    #[error("no supported conversion review versions")]
    NoSupportedVersion,
    /// The call failed (transport, non-2xx answer, undecodable or mismatched review).
    #[error("conversion webhook for {gvk} failed: {reason}")]
    Failed { gvk: String, reason: String },
    /// The webhook answered with `result.status` other than Success: its
    /// `result.message`, or kube's text when it gave none.
    #[error("conversion webhook for {gvk} failed: {message}")]
    Refused { gvk: String, message: String },
    /// `convertedObjects` does not hold one object per object sent.
    #[error("conversion webhook for {gvk} returned {got} objects, expected {expected}")]
    WrongCount {
        gvk: String,
        got: usize,
        expected: usize,
    },
    /// A converted object kube refuses (wrong apiVersion or kind, changed name,
    /// namespace or uid, bad labels or annotations): `detail` starts with
    /// `returned invalid ...`.
    #[error("conversion webhook for {gvk} {detail}")]
    InvalidObject { gvk: String, detail: String },
    /// A converted object that does not decode (not a JSON object, no kind) when one
    /// object was converted: kube returns the decoder's error alone.
    #[error("{0}")]
    Undecodable(String),
}

impl ConversionError {
    /// The error the API server answers with: 500 InternalError,
    /// `Internal error occurred: <this error>`.
    pub fn status(&self) -> ApiError {
        internal(&self.to_string())
    }

    /// The `metav1.Status` body of [`ConversionError::status`].
    pub fn to_status(&self) -> Value {
        self.status().to_status()
    }
}

/// apimachinery's `NewInternalError(err)`: the message, and the error as the one cause.
pub(crate) fn internal(err: &str) -> ApiError {
    let mut e = ApiError::internal(err);
    e.causes = vec![json!({"message": err})];
    e
}

/// A reason for a code, for reasons [`StatusReason`] cannot carry.
fn reason_for_code(code: u16) -> StatusReason {
    match code {
        400 => StatusReason::BadRequest,
        401 => StatusReason::Unauthorized,
        404 => StatusReason::NotFound,
        409 => StatusReason::Conflict,
        413 => StatusReason::RequestEntityTooLarge,
        422 => StatusReason::Invalid,
        429 => StatusReason::TooManyRequests,
        500 => StatusReason::InternalError,
        503 => StatusReason::ServiceUnavailable,
        504 => StatusReason::Timeout,
        _ => StatusReason::Forbidden,
    }
}

/// The name errors show: the request's, or `Unknown`.
fn name_or_unknown(a: &Attributes) -> &str {
    if a.name.is_empty() {
        "Unknown"
    } else {
        &a.name
    }
}

/// kube's webhook `ToStatusErr`: a webhook's `response.status` turned into the
/// request's error (code 0 → 403; `<resource> "<name>" is forbidden: admission webhook
/// "<w>" denied the request: <message|reason>` or `... without explanation`; 500s as
/// `Internal error occurred: ...`).
pub(crate) fn webhook_denied(
    a: &Attributes,
    webhook: &str,
    result: Option<&Value>,
) -> AdmissionError {
    let empty = json!({});
    let r = result.unwrap_or(&empty);
    let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let code = r
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| *c != 0)
        .map_or(403, |c| c.min(999) as u16);
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let msg = match (text("message"), text("reason")) {
        (m, _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, r) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let prefix = if code == 500 {
        "Internal error occurred".to_string()
    } else {
        format!(
            "{} {:?} is forbidden",
            a.resource.group_resource(),
            name_or_unknown(a)
        )
    };
    let raw = text("reason");
    let reason = match raw {
        "" if code == 500 => StatusReason::InternalError,
        "" => StatusReason::Forbidden,
        s => StatusReason::parse(s).unwrap_or_else(|| reason_for_code(code)),
    };
    let mut error = ApiError::new(code, reason, format!("{prefix}: {msg}"));
    apply_details(&mut error, r.get("details"), a, code, &msg);
    AdmissionError::Denied {
        webhook: webhook.to_string(),
        error,
        raw_reason: (!raw.is_empty() && StatusReason::parse(raw).is_none())
            .then(|| raw.to_string()),
    }
}

fn apply_details(e: &mut ApiError, details: Option<&Value>, a: &Attributes, code: u16, msg: &str) {
    let Some(d) = details.filter(|d| d.is_object()) else {
        if code == 500 {
            e.causes = vec![json!({"message": msg})];
        } else {
            let group = &a.resource.group;
            e.group = (!group.is_empty()).then(|| group.clone());
            e.kind = Some(a.resource.resource.clone());
            e.name = Some(name_or_unknown(a).to_string());
        }
        return;
    };
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
    e.name = s("name");
    e.group = s("group");
    e.kind = s("kind");
    e.causes = d
        .get("causes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    e.retry_after_seconds = d
        .get("retryAfterSeconds")
        .and_then(Value::as_u64)
        .map(|v| v as u32);
}

/// A webhook call that failed with failurePolicy Fail:
/// `Internal error occurred: failed calling webhook "<w>": <reason>`.
pub(crate) fn call_failed(webhook: &str, reason: &str) -> AdmissionError {
    AdmissionError::CallFailed {
        webhook: webhook.to_string(),
        error: internal(&format!("failed calling webhook {webhook:?}: {reason}")),
    }
}

/// `admission webhook "<w>" does not support dry run` (400).
pub(crate) fn dry_run_unsupported(webhook: &str) -> AdmissionError {
    AdmissionError::Rejected(ApiError::bad_request(format!(
        "admission webhook {webhook:?} does not support dry run"
    )))
}

/// admission's `NewForbidden(a, err)`: the resource and the request's name (or the
/// object's name or generateName, or `Unknown`).
pub(crate) fn forbidden(a: &Attributes, why: &str) -> ApiError {
    let name = if !a.name.is_empty() {
        a.name.clone()
    } else {
        let meta = a.object.as_ref().and_then(|o| o.get("metadata"));
        let get = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        get("name")
            .or_else(|| get("generateName"))
            .unwrap_or_else(|| "Unknown".into())
    };
    ApiError::forbidden(&a.resource.group, &a.resource.resource, &name, why)
}

/// The ValidatingAdmissionPolicy denial: `NewForbidden` with the decision's reason
/// (Invalid when unset) and its code, and the message as a cause.
pub(crate) fn policy_denied(
    a: &Attributes,
    policy: &str,
    binding: Option<&str>,
    message: &str,
    reason: Option<&str>,
) -> AdmissionError {
    let full = match binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{policy}' with binding '{b}' denied request: {message}"
        ),
        None => format!("ValidatingAdmissionPolicy '{policy}' denied request: {message}"),
    };
    let mut error = forbidden(a, &full);
    let reason = reason
        .and_then(StatusReason::parse)
        .unwrap_or(StatusReason::Invalid);
    error.reason = reason;
    error.code = match reason {
        StatusReason::Forbidden => 403,
        StatusReason::Unauthorized => 401,
        StatusReason::RequestEntityTooLarge => 413,
        _ => 422,
    };
    error.causes.push(json!({"message": full}));
    AdmissionError::PolicyDenied {
        policy: policy.to_string(),
        binding: binding.map(str::to_string),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{Gvk, Gvr, Operation, UserInfo};

    fn attrs(name: &str) -> Attributes {
        Attributes {
            kind: Gvk::new("apps", "v1", "Deployment"),
            resource: Gvr::new("apps", "v1", "deployments"),
            sub_resource: String::new(),
            name: name.into(),
            namespace: "default".into(),
            operation: Operation::Create,
            object: None,
            old_object: None,
            options: None,
            dry_run: false,
            user: UserInfo::default(),
        }
    }

    #[test]
    fn webhook_statuses_are_sanitized_as_kube_does() {
        let e = webhook_denied(&attrs(""), "w", Some(&json!({"reason": "NoWay"})));
        assert_eq!(
            e.status().message,
            r#"deployments.apps "Unknown" is forbidden: admission webhook "w" denied the request: NoWay"#
        );
        assert_eq!(e.to_status()["reason"], "NoWay");
        assert_eq!(e.to_status()["code"], 403);
        let e = webhook_denied(
            &attrs("d"),
            "w",
            Some(&json!({"code": 500, "message": "boom"})),
        );
        let st = e.status();
        assert_eq!((st.code, st.reason), (500, StatusReason::InternalError));
        assert_eq!(
            st.message,
            r#"Internal error occurred: admission webhook "w" denied the request: boom"#
        );
        assert_eq!(
            st.causes,
            vec![json!({"message": r#"admission webhook "w" denied the request: boom"#})]
        );
        let e = webhook_denied(
            &attrs("d"),
            "w",
            Some(&json!({"code": 422, "reason": "Invalid", "message": "bad"})),
        );
        assert_eq!(
            (e.status().code, e.status().reason),
            (422, StatusReason::Invalid)
        );
    }
}
