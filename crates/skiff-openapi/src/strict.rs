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

fn walk(
    schemas: &Map<String, Value>,
    schema: &Value,
    v: &Value,
    path: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
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
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match props.get(k) {
                        Some(ps) => walk(schemas, ps, c, &p, out, depth + 1),
                        None => out.push(p),
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, c) in m {
                    walk(schemas, ap, c, &format!("{path}[{k}]"), out, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, c) in a.iter().enumerate() {
                    walk(schemas, items, c, &format!("{path}[{i}]"), out, depth + 1);
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
    walk(schemas, root, obj, "", &mut out, 0);
    out
}

struct Dup<'a> {
    path: String,
    out: &'a RefCell<Vec<String>>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Dup<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
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
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            let p = if self.path.is_empty() {
                k.clone()
            } else {
                format!("{}.{k}", self.path)
            };
            if !seen.insert(k) {
                self.out.borrow_mut().push(p.clone());
            }
            map.next_value_seed(Dup {
                path: p,
                out: self.out,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(serde::de::Error::custom("nested too deeply"));
        }
        let mut i = 0;
        while seq
            .next_element_seed(Dup {
                path: format!("{}[{i}]", self.path),
                out: self.out,
                depth: self.depth + 1,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
}

/// Paths of keys that appear twice in the same JSON object. Malformed input gives none
/// (decoding reports it separately).
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let out = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(raw);
    if (Dup {
        path: String::new(),
        out: &out,
        depth: 0,
    })
    .deserialize(&mut de)
    .is_err()
    {
        return Vec::new();
    }
    out.into_inner()
}
