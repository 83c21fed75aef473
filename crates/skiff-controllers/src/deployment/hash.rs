//! `pod-template-hash` and template matching, over a template's JSON form: Kubernetes
//! hashes (and compares) the whole template, so this is one of the few places that
//! rightly walks JSON instead of reading fields.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;
use std::collections::BTreeMap;

use super::HASH_LABEL;

/// The `pod-template-hash` of a template: FNV-32a over its canonical JSON and the
/// collision count, spelled in Kubernetes' safe alphabet (no vowels, no look-alikes).
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut s = String::new();
    canonical(&without_hash(template), &mut s);
    if collision_count > 0 {
        s.push_str(&collision_count.to_string());
    }
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A template as it is hashed and compared: its hash label aside, zero values dropped.
#[derive(Debug, PartialEq)]
pub struct TemplateKey(Value);

impl TemplateKey {
    pub fn of(template: Option<&PodTemplateSpec>) -> TemplateKey {
        let v = template.map_or(Value::Null, |t| {
            serde_json::to_value(t).expect("a template serializes")
        });
        TemplateKey(without_hash(&v))
    }

    pub fn hash(&self, collision_count: i64) -> String {
        template_hash(&self.0, collision_count)
    }
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            out.push('{');
            for (n, (k, v)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        v => out.push_str(&v.to_string()),
    }
}

/// A template as Go's semantic equality sees it: zero values (false, 0, "", null, empty
/// lists and maps) are the same as absent, as they are for Kubernetes' omitempty
/// fields; kubectl's protobuf bodies carry them where JSON ones do not.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        v => v.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "1970-01-01T00:00:00Z",
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn without_hash(template: &Value) -> Value {
    let mut t = normalized(template);
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if t["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        t.as_object_mut().map(|m| m.remove("metadata"));
    }
    t
}
