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

/// Decodes an object body for an endpoint of `kind`, failing in kube's words: what
/// cannot be read as an object at all is "unrecognized (must be of type <kind>)", with
/// Go's own parse error and the start of the body.
pub fn decode_for_kind(
    body: &[u8],
    format: BodyFormat,
    kind: &str,
) -> Result<(Value, bool), ApiError> {
    let parsed = match format {
        BodyFormat::Protobuf => return decode_object_noting_duplicates(body, format),
        BodyFormat::Json => skiff_openapi::from_slice_noting_duplicates(body).map_err(|e| {
            format!(
                "couldn't get version/kind; json parse error: {}",
                go_json_error(&e, body)
            )
        }),
        BodyFormat::Yaml => std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_yaml_ng::from_str::<Value>(t).map_err(|e| e.to_string()))
            .map(|v| (v, false))
            .map_err(|e| format!("error converting YAML to JSON: yaml: {e}")),
    };
    let unrecognized = |why: String| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): {why} ({})",
            summarize(body)
        ))
    };
    let (v, dups) = parsed.map_err(unrecognized)?;
    let not_object = match &v {
        Value::Object(_) => return Ok((v, dups)),
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => return Err(unrecognized("Object 'Kind' is missing in 'null'".into())),
    };
    Err(unrecognized(format!(
        "couldn't get version/kind; json parse error: json: cannot unmarshal {not_object} into Go value of type {TYPE_META}"
    )))
}

/// How Go prints the struct kube's decoder first reads apiVersion and kind into.
const TYPE_META: &str = r#"struct { APIVersion string "json:\"apiVersion,omitempty\""; Kind string "json:\"kind,omitempty\"" }"#;

/// The start of a body, as kube-apiserver quotes it in decoding errors: JSON-looking
/// bodies as text, anything else in hex.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let (head, more) = match body.len() > MAX {
        true => (&body[..MAX], " ..."),
        false => (body, ""),
    };
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(head)),
        Some(_) => {
            let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
            format!("{hex}{more}")
        }
    }
}

/// A JSON syntax error as Go's encoding/json words it (kube shows Go's text).
pub fn go_json_error(e: &serde_json::Error, body: &[u8]) -> String {
    if e.classify() == serde_json::error::Category::Eof {
        return "unexpected end of JSON input".into();
    }
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text).to_string();
    let Some(c) = byte_at(body, e.line(), e.column()) else {
        return what;
    };
    let context = match (what.as_str(), c) {
        ("expected value", _) | ("trailing comma", b']') => "looking for beginning of value",
        ("key must be a string", _) | ("trailing comma", _) => {
            "looking for beginning of object key string"
        }
        ("expected `:`", _) => "after object key",
        ("expected `,` or `}`", _) => "after object key:value pair",
        ("expected `,` or `]`", _) => "after array element",
        ("trailing characters", _) => "after top-level value",
        _ => return what,
    };
    format!("invalid character {} {context}", go_quote_char(c))
}

/// The byte at serde_json's 1-based line and column.
fn byte_at(body: &[u8], line: usize, column: usize) -> Option<u8> {
    let start: usize = body
        .split(|b| *b == b'\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.len() + 1)
        .sum();
    body.get(start + column.checked_sub(1)?).copied()
}

/// Go's `quoteChar`: `'a'`, `'\''`, `'"'`, and escapes for the unprintable.
fn go_quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => r"'\n'".into(),
        b'\t' => r"'\t'".into(),
        b'\r' => r"'\r'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ => format!("'\\x{c:02x}'"),
    }
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
    fn parse_errors_are_worded_as_go_words_them() {
        let go = |s: &str| {
            let e = serde_json::from_slice::<Value>(s.as_bytes()).unwrap_err();
            go_json_error(&e, s.as_bytes())
        };
        assert_eq!(
            go("apiVersion: v1"),
            "invalid character 'a' looking for beginning of value"
        );
        assert_eq!(go("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            go("{\"a\": 1 \"b\"}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(go("[1 2]"), "invalid character '2' after array element");
        assert_eq!(
            go("{1: 2}"),
            "invalid character '1' looking for beginning of object key string"
        );
        assert_eq!(go("{} x"), "invalid character 'x' after top-level value");
        assert_eq!(go("{\"a\": "), "unexpected end of JSON input");
        assert_eq!(
            go("\n\n  'x'"),
            "invalid character '\\'' looking for beginning of value"
        );
    }

    #[test]
    fn unreadable_bodies_are_unrecognized_objects() {
        let err = |b: &[u8], f| decode_for_kind(b, f, "Namespace").unwrap_err().message;
        assert_eq!(
            err(
                b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n",
                BodyFormat::Json
            ),
            "the object provided is unrecognized (must be of type Namespace): couldn't get \
             version/kind; json parse error: invalid character 'a' looking for beginning of \
             value (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"
        );
        assert_eq!(
            err(b"", BodyFormat::Json),
            "the object provided is unrecognized (must be of type Namespace): couldn't get \
             version/kind; json parse error: unexpected end of JSON input (<empty>)"
        );
        assert!(err(b"[1]", BodyFormat::Json).contains(
            "json: cannot unmarshal array into Go value of type struct { APIVersion string"
        ));
        assert!(decode_for_kind(b"{\"a\": 1}", BodyFormat::Json, "Pod").is_ok());
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
