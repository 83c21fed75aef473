//! Strict decoding: unknown fields (against the published schemas) and duplicate fields
//! (in the raw JSON, which `serde_json::Value` would silently collapse).

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

const MAX_DEPTH: usize = 100;

fn resolve<'a>(schemas: &'a Map<String, Value>, s: &'a Value) -> &'a Value {
    let mut cur = s;
    for _ in 0..8 {
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix("#/components/schemas/")
                .and_then(|n| schemas.get(n))
            {
                Some(t) => cur = t,
                None => return cur,
            }
        } else if let Some(all) = cur
            .get("allOf")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
        {
            cur = &all[0];
        } else {
            return cur;
        }
    }
    cur
}

/// Appends `.key` (or `key` at the top) to the path; returns the length to truncate to.
fn push_key(path: &mut String, k: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
    len
}

/// Checks `v` against `schema`, collecting the paths of unknown fields. The path is one
/// buffer grown and cut back as the walk goes, so a clean object allocates nothing per
/// field (this runs on every write).
fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    v: &Value,
    path: &mut String,
    out: &mut Vec<String>,
    depth: usize,
) {
    use std::fmt::Write;
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(schemas, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, c) in m {
                    let len = push_key(path, k);
                    match props.get(k) {
                        Some(ps) => walk(schemas, ps, c, path, out, depth + 1),
                        None => out.push(path.clone()),
                    }
                    path.truncate(len);
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, c) in m {
                    let len = path.len();
                    let _ = write!(path, "[{k}]");
                    walk(schemas, ap, c, path, out, depth + 1);
                    path.truncate(len);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, c) in a.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    walk(schemas, items, c, path, out, depth + 1);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

pub fn unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(doc) = crate::schemas_of(group, version) else {
        return Vec::new();
    };
    let Some(schemas) = doc.get("schemas").and_then(Value::as_object) else {
        return Vec::new();
    };
    let Some(name) = doc
        .get("kinds")
        .and_then(Value::as_array)
        .and_then(|ks| ks.iter().find(|k| k["kind"] == kind))
        .and_then(|k| k["schema"].as_str())
    else {
        return Vec::new();
    };
    let Some(root) = schemas.get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(schemas, root, obj, &mut String::new(), &mut out, 0);
    out
}

/// Paths of keys that appear twice in the same JSON object. Malformed input gives none
/// (decoding reports it separately).
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let state = RefCell::new(DupState::default());
    let mut de = serde_json::Deserializer::from_slice(raw);
    if (Dup {
        state: &state,
        depth: 0,
    })
    .deserialize(&mut de)
    .is_err()
    {
        return Vec::new();
    }
    state.into_inner().out
}

#[derive(Default)]
struct DupState {
    /// The current path, grown and cut back as the parse goes (no allocation per key).
    path: String,
    out: Vec<String>,
}

struct Dup<'a> {
    state: &'a RefCell<DupState>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Dup<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Keys seen in one object: a short list compared in place, a set once it grows.
enum Seen<'de> {
    Few(Vec<std::borrow::Cow<'de, str>>),
    Many(HashSet<std::borrow::Cow<'de, str>>),
}

impl<'de> Seen<'de> {
    /// False if `k` was already there.
    fn insert(&mut self, k: std::borrow::Cow<'de, str>) -> bool {
        match self {
            Seen::Few(v) => {
                if v.contains(&k) {
                    return false;
                }
                if v.len() < 32 {
                    v.push(k);
                } else {
                    let mut set: HashSet<_> = std::mem::take(v).into_iter().collect();
                    set.insert(k);
                    *self = Seen::Many(set);
                }
                true
            }
            Seen::Many(s) => s.insert(k),
        }
    }
}

impl<'de> Visitor<'de> for Dup<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(serde::de::Error::custom("nested too deeply"));
        }
        let mut seen = Seen::Few(Vec::new());
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let len = {
                let mut st = self.state.borrow_mut();
                let len = push_key(&mut st.path, &k);
                if !seen.insert(k) {
                    let p = st.path.clone();
                    st.out.push(p);
                }
                len
            };
            map.next_value_seed(Dup {
                state: self.state,
                depth: self.depth + 1,
            })?;
            self.state.borrow_mut().path.truncate(len);
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use std::fmt::Write;
        if self.depth > MAX_DEPTH {
            return Err(serde::de::Error::custom("nested too deeply"));
        }
        let mut i = 0;
        loop {
            let len = {
                let mut st = self.state.borrow_mut();
                let len = st.path.len();
                let _ = write!(st.path, "[{i}]");
                len
            };
            let more = seq
                .next_element_seed(Dup {
                    state: self.state,
                    depth: self.depth + 1,
                })?
                .is_some();
            self.state.borrow_mut().path.truncate(len);
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
}
