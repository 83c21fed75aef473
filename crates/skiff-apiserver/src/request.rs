//! What a request asks for, as plain values every layer reads: the target object or
//! collection, query parameters, write and delete options, resourceVersions and
//! continue tokens.

use crate::auth::UserInfo;
use base64::Engine;
use serde_json::{Value, json};
use skiff_store::Revision;
use skiff_types::FieldError;
use skiff_types::{ApiError, Subresource};
use std::collections::BTreeMap;

/// Which object (or collection) a request is about.
#[derive(Debug, Clone)]
pub struct Target {
    pub ri: crate::registry::Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
}

impl Target {
    pub fn key(&self) -> String {
        self.ri.key(
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or(""),
        )
    }
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options shared by writes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub user: UserInfo,
}

/// The result of a write: the object, HTTP status, and warnings for `Warning:` headers.
#[derive(Debug)]
pub struct WriteResult {
    pub object: Value,
    pub code: u16,
    pub warnings: Vec<String>,
    /// The object as JSON, when the write already produced it (saves serializing the
    /// reply again).
    pub raw: Option<Vec<u8>>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `metav1.DeleteOptions`, from the body and the query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    /// Who deletes (admission checks it); None for the server's own deletions.
    pub user: Option<UserInfo>,
}

impl DeleteOptions {
    pub fn from_body(body: &Value) -> Result<Self, ApiError> {
        let mut o = DeleteOptions::default();
        if let Some(g) = body.get("gracePeriodSeconds") {
            o.grace_period_seconds =
                Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?);
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            o.set_propagation(p)?;
        }
        if let Some(orphan) = body.get("orphanDependents").and_then(Value::as_bool) {
            o.propagation_policy.get_or_insert_with(|| {
                if orphan {
                    "Orphan".into()
                } else {
                    "Background".into()
                }
            });
        }
        if let Some(pre) = body.get("preconditions") {
            o.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            o.precondition_rv = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(d) = body.get("dryRun").and_then(Value::as_array) {
            o.dry_run = dry_run_values(d.iter().filter_map(Value::as_str))?;
        }
        Ok(o)
    }

    pub fn set_propagation(&mut self, p: &str) -> Result<(), ApiError> {
        match p {
            "Orphan" | "Background" | "Foreground" => {
                self.propagation_policy = Some(p.to_string());
                Ok(())
            }
            other => Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                &[FieldError::not_supported(
                    "propagationPolicy",
                    json!(other),
                    &["Foreground", "Background", "Orphan"],
                )],
            )),
        }
    }
}

pub fn dry_run_values<'a>(vals: impl Iterator<Item = &'a str>) -> Result<bool, ApiError> {
    let mut dry = false;
    for v in vals {
        match v {
            "All" => dry = true,
            "" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )));
            }
        }
    }
    Ok(dry)
}

pub fn parse_rv(s: &str) -> Result<Revision, ApiError> {
    s.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

pub(crate) fn random_suffix() -> String {
    // Kubernetes' generateName alphabet: no vowels, no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Opaque continue token: the revision the first page was served at and the last key.
pub fn encode_continue(rev: Revision, last_key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: ensure the continue token came from a list response",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rev, start))
}

/// Query parameters; repeated keys keep the last value except where noted.
pub struct Query {
    pub map: BTreeMap<String, String>,
    pub dry_run: Vec<String>,
}

impl Query {
    /// `?watch=true`: a list that is a watch.
    pub fn watching(&self) -> bool {
        matches!(
            self.map.get("watch").map(String::as_str),
            Some("true" | "1")
        )
    }
}

pub fn parse_query(q: Option<&str>) -> Query {
    let mut map = BTreeMap::new();
    let mut dry_run = Vec::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        if k == "dryRun" {
            dry_run.push(v.to_string());
        }
        map.insert(k.into_owned(), v.into_owned());
    }
    Query { map, dry_run }
}

pub fn validation_mode(q: &Query) -> Result<FieldValidation, ApiError> {
    match q.map.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(o) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {o:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

pub fn write_options(q: &Query, user: &UserInfo) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: dry_run_values(q.dry_run.iter().map(String::as_str))?,
        field_manager: q.map.get("fieldManager").cloned().filter(|s| !s.is_empty()),
        field_validation: validation_mode(q)?,
        user: user.clone(),
    })
}

/// events.k8s.io objects live in core events' storage; autoscaling/v1's in the group's
/// first (stored) version's.
pub fn storage_target(t: &Target) -> Target {
    if t.ri.is_storage_alias() {
        let ri = match &*t.ri.group {
            "events.k8s.io" => crate::registry::builtin("", "events"),
            g => crate::registry::builtin(g, &t.ri.plural),
        };
        Target { ri, ..t.clone() }
    } else {
        t.clone()
    }
}

pub fn apply_delete_query(d: &mut DeleteOptions, q: &Query) -> Result<(), ApiError> {
    if let Some(g) = q.map.get("gracePeriodSeconds") {
        d.grace_period_seconds = Some(g.parse().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds: invalid value {g:?}"))
        })?);
    }
    if let Some(p) = q.map.get("propagationPolicy") {
        d.set_propagation(p)?;
    }
    if !q.dry_run.is_empty() {
        d.dry_run = dry_run_values(q.dry_run.iter().map(String::as_str))?;
    }
    Ok(())
}

pub fn system_write_options() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        field_manager: None,
        field_validation: FieldValidation::Ignore,
        user: skiff_pki::UserInfo {
            username: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        },
    }
}

/// Whether `needle` occurs in `hay` (a cheap test before parsing stored bytes).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/registry/pods/default/a");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/pods/default/a".to_string())
        );
        assert_eq!(decode_continue("!!!").unwrap_err().code, 400);
        assert_eq!(decode_continue("e30").unwrap_err().code, 400);
    }
}
