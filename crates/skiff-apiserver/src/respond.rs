//! Writing responses: objects as JSON or YAML with `Warning:` headers, a write's
//! result in the version asked for, and errors as Kubernetes `Status` bodies.

use crate::decode::{self, Wanted};
use crate::request::{Target, WriteResult};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use skiff_types::{ApiError, Subresource};

pub fn write_response(
    headers: &HeaderMap,
    t: &Target,
    res: WriteResult,
    extra_warnings: &[String],
) -> Response {
    if let Some(raw) = res
        .raw
        .filter(|_| t.sub.is_none() && !t.ri.converts() && !decode::wants_yaml(headers))
    {
        let mut warnings = res.warnings;
        warnings.extend_from_slice(extra_warnings);
        return respond_bytes(res.code, raw, "application/json", &warnings);
    }
    let obj = if t.sub == Some(Subresource::Scale)
        && res.object.get("kind").and_then(Value::as_str) != Some("Scale")
    {
        crate::scale::to_scale(&t.ri, &res.object)
    } else if t.ri.converts() && res.object.get("kind").and_then(Value::as_str) != Some("Status") {
        crate::views::present(t, res.object, Wanted::Object)
    } else {
        res.object
    };
    let mut warnings = res.warnings;
    warnings.extend_from_slice(extra_warnings);
    respond(headers, res.code, &obj, &warnings)
}

pub fn respond(headers: &HeaderMap, code: u16, v: &Value, warnings: &[String]) -> Response {
    respond_as(decode::wants_yaml(headers), code, v, warnings)
}

pub fn respond_as(yaml: bool, code: u16, v: &Value, warnings: &[String]) -> Response {
    let (body, ct) = if yaml {
        (
            serde_yaml_ng::to_string(v).unwrap_or_default().into_bytes(),
            "application/yaml",
        )
    } else {
        (
            serde_json::to_vec(v).expect("serializable"),
            "application/json",
        )
    };
    respond_bytes(code, body, ct, warnings)
}

pub fn respond_bytes(code: u16, body: Vec<u8>, ct: &'static str, warnings: &[String]) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    add_warnings(&mut r, warnings);
    r
}

/// `Warning: 299 - "<text>"` headers, as kube-apiserver writes them.
pub fn add_warnings(r: &mut Response, warnings: &[String]) {
    for w in warnings {
        let msg = format!("299 - {:?}", w);
        if let Ok(h) = HeaderValue::from_str(&msg) {
            r.headers_mut().append("Warning", h);
        }
    }
}

pub fn json_ok(v: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).expect("serializable")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn text(code: StatusCode, body: String, ct: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

pub fn error_response(e: &ApiError) -> Response {
    if e.code >= 500 {
        tracing::warn!(code = e.code, message = %e.message, "request failed");
    }
    // Newline-terminated, as Go's JSON encoder writes it.
    let mut body = serde_json::to_vec(&e.to_status()).expect("serializable");
    body.push(b'\n');
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = e.retry_after_seconds
        && let Ok(h) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, h);
    }
    r
}
