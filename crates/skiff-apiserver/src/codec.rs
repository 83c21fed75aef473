//! Objects to and from storage bytes, and the checks a body must pass before it is
//! decoded as its kind (type meta, decodability, unknown and duplicate fields).

use crate::cache::Stored;
use crate::registry::Served;
use crate::request::{FieldValidation, Target};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use skiff_store::{Error as StoreError, KeyValue, Revision};
use skiff_types::registry::split_api_version;
use skiff_types::{ApiError, meta};

/// Serialized form kept in the store: the object without its resourceVersion (the
/// store's mod revision is the resourceVersion).
/// [`to_stored`] in the version the kind is stored in.
pub fn to_stored_for(ri: &Served, obj: &Value) -> Bytes {
    match ri.storage_api_version() {
        Some(av) => {
            let mut o = obj.clone();
            o["apiVersion"] = json!(av);
            to_stored(&o)
        }
        None => to_stored(obj),
    }
}

pub fn to_stored(obj: &Value) -> Bytes {
    // Canonical layout: apiVersion, kind, metadata first, so `stamp_stored` finds the
    // object's own metadata as the first `"metadata":{` in the bytes.
    let ordered = obj.as_object().is_some_and(|m| {
        let mut keys = m.keys();
        keys.next().map(String::as_str) == Some("apiVersion")
            && keys.next().map(String::as_str) == Some("kind")
            && keys.next().map(String::as_str) == Some("metadata")
    });
    if ordered && meta::resource_version(obj).is_none() {
        return Bytes::from(serde_json::to_vec(obj).expect("JSON values serialize"));
    }
    let src = obj.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = src.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in src {
        if !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&Value::Object(out)).expect("JSON values serialize"))
}

/// The stored bytes with `metadata.resourceVersion` spliced in, without parsing them.
/// None if the bytes are not in `to_stored`'s canonical layout.
pub fn stamp_stored(value: &[u8], rev: Revision) -> Option<Vec<u8>> {
    const NEEDLE: &[u8] = b"\"metadata\":{";
    let at = value.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    // Only apiVersion and kind (plain strings) may precede the object's metadata.
    if value[..at].iter().filter(|b| **b == b'{').count() != 2 {
        return None;
    }
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(value.len() + rv.len() + 1);
    out.extend_from_slice(&value[..at]);
    out.extend_from_slice(rv.as_bytes());
    if value.get(at) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&value[at..]);
    Some(out)
}

/// Parses a stored object and stamps its resourceVersion.
pub fn from_bytes(value: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("corrupt stored object: {e}")))?;
    meta::set_resource_version(&mut v, rev);
    Ok(v)
}

pub fn from_stored(s: &Stored) -> Result<Value, ApiError> {
    from_bytes(&s.value, s.rev)
}

pub fn from_kv(kv: &KeyValue) -> Result<Value, ApiError> {
    from_bytes(&kv.value, kv.mod_revision)
}

pub fn store_error(e: StoreError, t: &Target) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(&t.ri.group, &t.ri.plural, t.name()),
        StoreError::AlreadyExists => ApiError::already_exists(&t.ri.group, &t.ri.plural, t.name()),
        StoreError::Conflict { .. } => ApiError::modified(&t.ri.group, &t.ri.plural, t.name()),
        StoreError::Compacted { compact_revision } => ApiError::expired(format!(
            "required revision has been compacted (compacted at {compact_revision})"
        )),
        // No Retry-After: a full or read-only disk is for an operator to fix, and
        // client-go would spend ten retries on it before saying so.
        StoreError::Unavailable(why) => ApiError::service_unavailable(format!(
            "storage is not taking writes, reads still work: {why}"
        )),
        other => ApiError::internal(format!("storage error: {other}")),
    }
}

/// Checks `apiVersion`/`kind` of a body against the endpoint and fills them when absent.
pub fn check_type_meta(ri: &Served, obj: &mut Value) -> Result<(), ApiError> {
    let (api_version, kind) = meta::type_meta(obj);
    // Missing parts default to the endpoint's, as kube's decoder defaults them.
    let data_av = api_version.unwrap_or(&ri.version).to_string();
    let data_av = match split_api_version(&data_av) {
        ("", v) if api_version.is_none() && !ri.group.is_empty() => format!("{}/{v}", ri.group),
        _ => data_av,
    };
    let data_kind = kind.unwrap_or(&ri.kind).to_string();
    let (g, _) = split_api_version(&data_av);
    if data_kind != ri.kind || g != ri.group {
        return Err(ApiError::bad_request(kind_mismatch(
            ri, &data_av, &data_kind,
        )));
    }
    let o = obj.as_object_mut().expect("decoded bodies are objects");
    o.insert("apiVersion".into(), json!(ri.api_version()));
    o.insert("kind".into(), json!(ri.kind));
    Ok(())
}

/// kube's words for a body of another kind or group than its endpoint's: the decoder
/// cannot convert it (or does not know it), or it converts but names another group.
fn kind_mismatch(ri: &Served, data_av: &str, data_kind: &str) -> String {
    let (g, v) = split_api_version(data_av);
    if ri.custom.is_some() {
        return format!(
            "the API version in the data ({data_av}, Kind={data_kind}) does not match the expected API version ({}, Kind={})",
            ri.api_version(),
            ri.kind
        );
    }
    let head = format!(
        "{data_kind} in version {v:?} cannot be handled as a {}",
        ri.kind
    );
    if skiff_types::registry::lookup_kind(g, v, data_kind).is_none() {
        return format!(
            "{head}: no kind {data_kind:?} is registered for version {data_av:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
    }
    if data_kind == ri.kind {
        return format!(
            "the API version in the data ({data_av}) does not match the expected API version ({})",
            ri.api_version()
        );
    }
    format!(
        "{head}: converting ({v}.{data_kind}) to ({}.{}): unknown conversion",
        internal_package(&ri.group),
        ri.kind
    )
}

/// The Go package of a group's internal types (`core`, `apps`, `rbac`, …).
fn internal_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        g => g.split('.').next().unwrap_or(g),
    }
}

/// Refuses a body that would not decode as its kind (a string where a map goes), in
/// the words kube-apiserver's decoder uses; nothing stored may fail a typed client.
pub fn check_decodes(ri: &Served, obj: &Value) -> Result<(), ApiError> {
    match crate::strategy::type_mismatch(ri, obj) {
        None => Ok(()),
        Some(m) => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {why}",
            kind = ri.kind,
            version = ri.version,
            why = m.decoder_message()
        ))),
    }
}

/// Strict/Warn field validation of a decoded body.
pub fn field_validation(
    ri: &Served,
    obj: &Value,
    raw: Option<&[u8]>,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = crate::strategy::unknown_fields(ri, obj)
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if let Some(raw) = raw {
        problems.extend(
            skiff_openapi::duplicate_fields(raw)
                .into_iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
    }
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = ri.kind,
            version = ri.version,
        ))),
        _ => Ok(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_matches_parsing() {
        for obj in [
            json!({"metadata": {"name": "a"}, "apiVersion": "v1", "kind": "ConfigMap", "data": {"metadata": "{x"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"template": {"metadata": {"name": "t"}}}}),
        ] {
            let stored = to_stored(&obj);
            let stamped: Value =
                serde_json::from_slice(&stamp_stored(&stored, 42).unwrap()).unwrap();
            assert_eq!(stamped, from_bytes(&stored, 42).unwrap());
            assert_eq!(stamped["metadata"]["resourceVersion"], "42");
        }
        assert!(stamp_stored(br#"{"spec":{"metadata":{}}}"#, 1).is_none());
    }

    #[test]
    fn type_meta_mismatch_is_rejected() {
        let ri = crate::registry::builtin("", "pods");
        let mut ok = json!({"metadata": {}});
        check_type_meta(&ri, &mut ok).unwrap();
        assert_eq!(ok["kind"], "Pod");
        let msg = |ri: &Served, v: Value| check_type_meta(ri, &mut v.clone()).unwrap_err().message;
        assert_eq!(
            msg(&ri, json!({"apiVersion": "apps/v1", "kind": "Pod"})),
            "Pod in version \"v1\" cannot be handled as a Pod: no kind \"Pod\" is registered for version \"apps/v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
        let ns = crate::registry::builtin("", "namespaces");
        assert_eq!(
            msg(&ns, json!({"apiVersion": "v1", "kind": "Pod"})),
            "Pod in version \"v1\" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"
        );
        assert_eq!(
            msg(&ri, json!({"apiVersion": "v1", "kind": "pod"})),
            "pod in version \"v1\" cannot be handled as a Pod: no kind \"pod\" is registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
        let deploys = crate::registry::builtin("apps", "deployments");
        assert_eq!(
            msg(&deploys, json!({"kind": "StatefulSet"})),
            "StatefulSet in version \"v1\" cannot be handled as a Deployment: converting (v1.StatefulSet) to (apps.Deployment): unknown conversion"
        );
    }
}
