//! Kubernetes `Status` errors (`metav1.Status`) and field errors, worded as
//! k8s.io/apimachinery words them, because kubectl prints these messages verbatim.

use serde_json::{Value, json};
use std::fmt;

/// `status.reason` values kubectl keys its behaviour off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Expired,
    Invalid,
    MethodNotAllowed,
    NotAcceptable,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Timeout,
    InternalError,
    ServiceUnavailable,
}

impl StatusReason {
    pub const ALL: [StatusReason; 17] = [
        StatusReason::BadRequest,
        StatusReason::Unauthorized,
        StatusReason::Forbidden,
        StatusReason::NotFound,
        StatusReason::AlreadyExists,
        StatusReason::Conflict,
        StatusReason::Gone,
        StatusReason::Expired,
        StatusReason::Invalid,
        StatusReason::MethodNotAllowed,
        StatusReason::NotAcceptable,
        StatusReason::RequestEntityTooLarge,
        StatusReason::UnsupportedMediaType,
        StatusReason::TooManyRequests,
        StatusReason::Timeout,
        StatusReason::InternalError,
        StatusReason::ServiceUnavailable,
    ];

    /// The reason a `status.reason` string names, if it is one of these.
    pub fn parse(s: &str) -> Option<StatusReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::BadRequest => "BadRequest",
            StatusReason::Unauthorized => "Unauthorized",
            StatusReason::Forbidden => "Forbidden",
            StatusReason::NotFound => "NotFound",
            StatusReason::AlreadyExists => "AlreadyExists",
            StatusReason::Conflict => "Conflict",
            StatusReason::Gone => "Gone",
            StatusReason::Expired => "Expired",
            StatusReason::Invalid => "Invalid",
            StatusReason::MethodNotAllowed => "MethodNotAllowed",
            StatusReason::NotAcceptable => "NotAcceptable",
            StatusReason::RequestEntityTooLarge => "RequestEntityTooLarge",
            StatusReason::UnsupportedMediaType => "UnsupportedMediaType",
            StatusReason::TooManyRequests => "TooManyRequests",
            StatusReason::Timeout => "Timeout",
            StatusReason::InternalError => "InternalError",
            StatusReason::ServiceUnavailable => "ServiceUnavailable",
        }
    }
}

/// The kinds of field error apimachinery's `field.ErrorType` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
    TypeInvalid,
}

impl FieldErrorType {
    /// `causes[].reason`.
    pub fn cause_reason(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::TypeInvalid => "Invalid value",
        }
    }
}

/// One problem with one field, e.g. `spec.containers[0].image: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// Path in Kubernetes' notation: `spec.containers[0].ports[1].containerPort`,
    /// `metadata.labels[app]`.
    pub field: String,
    /// The offending value, if the message should show it.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value), detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(FieldErrorType::Duplicate, field, Some(value), "")
    }
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = if list.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", list.join(", "))
        };
        Self::new(FieldErrorType::NotSupported, field, Some(value), detail)
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorType::TooLong,
            field,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    /// The message without the field, as `causes[].message` carries it.
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        match self.kind {
            FieldErrorType::Required
            | FieldErrorType::Forbidden
            | FieldErrorType::TooLong
            | FieldErrorType::TooMany => {}
            _ => {
                if let Some(v) = &self.value {
                    s.push_str(": ");
                    s.push_str(&render_value(v));
                }
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// Go's `%#v`-like rendering apimachinery uses for invalid values: strings quoted,
/// numbers and booleans bare.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// An error the API answers with: an HTTP code and a `Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    pub name: Option<String>,
    pub group: Option<String>,
    /// `details.kind`: the resource (plural) for most errors, the Kind for Invalid.
    pub kind: Option<String>,
    pub causes: Vec<Value>,
    pub retry_after_seconds: Option<u32>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.reason.as_str(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(code: u16, reason: StatusReason, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after_seconds: None,
        }
    }

    fn with_target(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.group = (!group.is_empty()).then(|| group.to_string());
        // Empty parts are left out, as Go's omitempty leaves them (a patch's Invalid).
        self.kind = (!kind.is_empty()).then(|| kind.to_string());
        self.name = (!name.is_empty()).then(|| name.to_string());
        self
    }

    /// `pods "x" not found`. `resource` is the plural, `qualified` is `pods` or
    /// `deployments.apps`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let q = qualify(group, resource);
        ApiError::new(
            404,
            StatusReason::NotFound,
            format!("{q} {name:?} not found"),
        )
        .with_target(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let q = qualify(group, resource);
        ApiError::new(
            409,
            StatusReason::AlreadyExists,
            format!("{q} {name:?} already exists"),
        )
        .with_target(group, resource, name)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let q = qualify(group, resource);
        ApiError::new(
            409,
            StatusReason::Conflict,
            format!("Operation cannot be fulfilled on {q} {name:?}: {why}"),
        )
        .with_target(group, resource, name)
    }

    /// The optimistic-concurrency conflict.
    pub fn modified(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error. `kind` is the Kind (`Pod`).
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Self {
        let agg = if errs.len() == 1 {
            errs[0].to_string()
        } else {
            format!(
                "[{}]",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let qk = qualify(group, kind);
        let mut e = ApiError::new(
            422,
            StatusReason::Invalid,
            format!("{qk} {name:?} is invalid: {agg}"),
        )
        .with_target(group, kind, name);
        e.causes = errs
            .iter()
            .map(|fe| json!({"reason": fe.kind.cause_reason(), "message": fe.body(), "field": fe.field}))
            .collect();
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, StatusReason::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, StatusReason::Unauthorized, "Unauthorized")
    }

    /// `pods "x" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "ns"`.
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let q = qualify(group, resource);
        let msg = if resource.is_empty() {
            // Non-resource paths, as apimachinery's NewForbidden words an empty resource.
            format!("forbidden: {why}")
        } else if name.is_empty() {
            format!("{q} is forbidden: {why}")
        } else {
            format!("{q} {name:?} is forbidden: {why}")
        };
        ApiError::new(403, StatusReason::Forbidden, msg).with_target(group, resource, name)
    }

    /// 410 for a watch or list from a compacted resourceVersion.
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, StatusReason::Expired, message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, StatusReason::Gone, message)
    }

    pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> Self {
        let q = qualify(group, resource);
        ApiError::new(
            405,
            StatusReason::MethodNotAllowed,
            format!("{verb} is not supported on resources of kind {q:?}"),
        )
        .with_target(group, resource, "")
    }

    /// A body (or patch) in a media type the endpoint does not take, listing those it
    /// does, as kube's negotiation words it.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        ApiError::new(
            415,
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            StatusReason::RequestEntityTooLarge,
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, StatusReason::NotAcceptable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            500,
            StatusReason::InternalError,
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, StatusReason::ServiceUnavailable, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, StatusReason::Timeout, message)
    }

    /// 404 for a path the server does not serve.
    pub fn path_not_found() -> Self {
        ApiError::new(
            404,
            StatusReason::NotFound,
            "the server could not find the requested resource",
        )
    }

    /// The `metav1.Status` JSON body, its fields in `metav1.Status`'s order (clients
    /// that compare bodies as text expect kube-apiserver's layout).
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            details.insert("causes".into(), Value::Array(self.causes.clone()));
        }
        if let Some(r) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status["code"] = json!(self.code);
        status
    }
}

fn qualify(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// `{"kind":"Status","status":"Success",...}` as returned by some deletes.
pub fn success_status(group: &str, kind: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    details["kind"] = json!(kind);
    details["uid"] = json!(uid);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_apimachinery() {
        let e = ApiError::invalid(
            "",
            "Pod",
            "x",
            &[FieldError::required("spec.containers[0].image", "")],
        );
        assert_eq!(
            e.message,
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(e.causes[0]["reason"], "FieldValueRequired");
        assert_eq!(e.causes[0]["field"], "spec.containers[0].image");
        let e2 = ApiError::invalid(
            "apps",
            "Deployment",
            "d",
            &[
                FieldError::invalid("metadata.name", json!("A"), "bad"),
                FieldError::not_supported("spec.x", json!("y"), &["a", "b"]),
            ],
        );
        assert_eq!(
            e2.message,
            "Deployment.apps \"d\" is invalid: [metadata.name: Invalid value: \"A\": bad, spec.x: Unsupported value: \"y\": supported values: \"a\", \"b\"]"
        );
    }

    #[test]
    fn not_found_names_the_group_resource() {
        assert_eq!(
            ApiError::not_found("apps", "deployments", "web").message,
            "deployments.apps \"web\" not found"
        );
        assert_eq!(
            ApiError::not_found("", "pods", "p").to_status()["code"],
            404
        );
    }

    #[test]
    fn an_invalid_patch_names_no_kind() {
        let e = ApiError::invalid(
            "",
            "",
            "",
            &[FieldError::invalid("patch", json!("x"), "bad")],
        );
        assert_eq!(
            e.message,
            " \"\" is invalid: patch: Invalid value: \"x\": bad"
        );
        let st = e.to_status();
        assert!(st["details"].get("kind").is_none(), "{st}");
        assert_eq!(st["details"]["causes"][0]["field"], "patch");
    }

    /// The bytes kube-apiserver writes (a client compared them as text).
    #[test]
    fn status_bodies_are_laid_out_as_kube_apiserver_lays_them_out() {
        let e = ApiError::already_exists("", "configmaps", "x");
        assert_eq!(
            serde_json::to_string(&e.to_status()).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"x\" already exists","reason":"AlreadyExists","details":{"name":"x","kind":"configmaps"},"code":409}"#
        );
        assert_eq!(
            serde_json::to_string(&success_status("apps", "deployments", "d", "u")).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"d","group":"apps","kind":"deployments","uid":"u"}}"#
        );
    }
}
