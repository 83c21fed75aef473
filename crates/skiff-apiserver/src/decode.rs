//! Request bodies (JSON, YAML, protobuf) into JSON values, and what the client accepts
//! back. Every failure is a 4xx `Status` naming what is wrong.

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_types::ApiError;

/// How a body is encoded, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    Protobuf,
}

pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn media_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// Body format for create/update; `None` for an unsupported media type.
pub fn body_format(ct: &str) -> Option<BodyFormat> {
    match media_type(ct) {
        "" | "application/json" | "*/*" => Some(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Some(BodyFormat::Yaml),
        "application/vnd.kubernetes.protobuf" => Some(BodyFormat::Protobuf),
        _ => None,
    }
}

/// Parses a body into a JSON object.
pub fn decode_object(body: &[u8], format: BodyFormat) -> Result<Value, ApiError> {
    decode_object_noting_duplicates(body, format).map(|(v, _)| v)
}

/// Parses a body into a JSON object, also saying whether a JSON body repeated a key in
/// some object (the strict field check then names them).
pub fn decode_object_noting_duplicates(
    body: &[u8],
    format: BodyFormat,
) -> Result<(Value, bool), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let mut dups = false;
    let v: Value = match format {
        BodyFormat::Json => {
            let (v, d) = skiff_openapi::from_slice_noting_duplicates(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?;
            dups = d;
            v
        }
        BodyFormat::Yaml => decode_yaml(body)?,
        BodyFormat::Protobuf => skiff_protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")))?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, got {}",
            match v {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )));
    }
    Ok((v, dups))
}

pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML body: not valid UTF-8"))?;
    serde_yaml_ng::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
}

/// What representation of objects the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Object,
    Table,
    PartialObjectMetadata,
}

/// Kubernetes picks the first acceptable media type; kubectl lists Table first and JSON
/// last as the fallback.
pub fn wanted(headers: &HeaderMap) -> Wanted {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let mt = params.first().copied().unwrap_or("");
        if mt != "application/json"
            && mt != "application/vnd.kubernetes.protobuf"
            && mt != "application/yaml"
        {
            if mt == "*/*" {
                return Wanted::Object;
            }
            continue;
        }
        let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
        let g = params.iter().find_map(|p| p.strip_prefix("g="));
        match (as_, g) {
            (Some("Table"), Some("meta.k8s.io")) => return Wanted::Table,
            (
                Some("PartialObjectMetadata") | Some("PartialObjectMetadataList"),
                Some("meta.k8s.io"),
            ) => return Wanted::PartialObjectMetadata,
            (Some(_), _) => continue,
            (None, _) => return Wanted::Object,
        }
    }
    Wanted::Object
}

/// True when the client wants YAML back (and not JSON first).
pub fn wants_yaml(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept
        .split(',')
        .next()
        .map(|p| media_type(p) == "application/yaml")
        .unwrap_or(false)
}

pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut too_large = false;
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("error reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > crate::MAX_BODY_BYTES {
                too_large = true;
                // Keep reading (and dropping) a bounded amount so the client, still
                // sending, gets the 413 instead of a reset connection.
                if seen > 8 * crate::MAX_BODY_BYTES {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&data);
        }
    }
    if too_large {
        return Err(ApiError::too_large(crate::MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(accept: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(http::header::ACCEPT, accept.parse().unwrap());
        m
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(wanted(&h(a)), Wanted::Table);
        assert_eq!(wanted(&h("application/json, */*")), Wanted::Object);
        assert_eq!(
            wanted(&h("application/vnd.kubernetes.protobuf,application/json")),
            Wanted::Object
        );
        assert_eq!(
            wanted(&h(
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
            )),
            Wanted::PartialObjectMetadata
        );
        assert_eq!(wanted(&h("application/json;as=Foo;g=bar")), Wanted::Object);
    }

    #[test]
    fn bad_bodies_are_400() {
        assert_eq!(decode_object(b"{", BodyFormat::Json).unwrap_err().code, 400);
        assert_eq!(
            decode_object(b"[1]", BodyFormat::Json).unwrap_err().code,
            400
        );
        assert_eq!(decode_object(b"", BodyFormat::Json).unwrap_err().code, 400);
        assert_eq!(
            decode_object(b"a: [", BodyFormat::Yaml).unwrap_err().code,
            400
        );
        assert!(decode_object(b"kind: Pod\nmetadata:\n  name: a\n", BodyFormat::Yaml).is_ok());
        assert_eq!(body_format("text/plain"), None);
        assert_eq!(
            body_format("application/json; charset=utf-8"),
            Some(BodyFormat::Json)
        );
    }
}
