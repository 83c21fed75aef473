//! A schema-driven protobuf decoder: the wire format read against the message table
//! generated from `k8s-pb` (tags, kinds) and `k8s-openapi` (JSON names), producing the
//! JSON Kubernetes' own JSON encoding would give. Untrusted input: every read is bounds
//! checked and nesting is capped.

use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The body does not start with Kubernetes' `k8s\0` magic.
    #[error("not a Kubernetes protobuf message (missing the k8s\\0 prefix)")]
    NoMagic,
    /// The envelope names a kind this server has no protobuf schema for.
    #[error("no protobuf schema for {api_version}, Kind={kind}")]
    UnknownKind { api_version: String, kind: String },
    /// The bytes are not valid protobuf for the message.
    #[error("malformed protobuf in {message}: {detail}")]
    Malformed { message: String, detail: String },
}

enum Kind {
    Str,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint,
    Double,
    Float,
    Msg(String),
    MapStr,
    MapBytes,
    MapMsg(String),
}

struct Field {
    json: String,
    kind: Kind,
    repeated: bool,
}

type Table = HashMap<String, HashMap<u32, Field>>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let raw: HashMap<String, Vec<(u32, String, String, bool)>> =
            serde_json::from_str(include_str!("table.json"))
                .expect("generated table is valid JSON");
        raw.into_iter()
            .map(|(msg, fields)| {
                let fields = fields
                    .into_iter()
                    .map(|(tag, json, kind, repeated)| {
                        let kind = match kind.as_str() {
                            "string" => Kind::Str,
                            "bytes" => Kind::Bytes,
                            "bool" => Kind::Bool,
                            "int32" | "sint32" | "sfixed32" => Kind::Int32,
                            "int64" | "sint64" | "sfixed64" => Kind::Int64,
                            "uint32" | "uint64" | "fixed32" | "fixed64" => Kind::Uint,
                            "double" => Kind::Double,
                            "float" => Kind::Float,
                            "map:string" => Kind::MapStr,
                            "map:bytes" => Kind::MapBytes,
                            k => match (k.strip_prefix("map:message:"), k.strip_prefix("message:"))
                            {
                                (Some(m), _) => Kind::MapMsg(m.to_string()),
                                (_, Some(m)) => Kind::Msg(m.to_string()),
                                _ => Kind::Bytes,
                            },
                        };
                        (
                            tag,
                            Field {
                                json,
                                kind,
                                repeated,
                            },
                        )
                    })
                    .collect();
                (msg, fields)
            })
            .collect()
    })
}

const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    msg: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Malformed {
            message: self.msg.to_string(),
            detail: detail.into(),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err("length past end of message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err("truncated fixed-width value"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, wt: u64) -> Result<(), Error> {
        match wt {
            0 => self.varint().map(|_| ()),
            1 => self.fixed(8).map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => self.fixed(4).map(|_| ()),
            other => Err(self.err(format!("unsupported wire type {other}"))),
        }
    }
}

fn utf8(r: &Reader<'_>, b: &[u8]) -> Result<String, Error> {
    String::from_utf8(b.to_vec()).map_err(|_| r.err("string is not valid UTF-8"))
}

fn scalar(r: &mut Reader<'_>, kind: &Kind, wt: u64) -> Result<Value, Error> {
    Ok(match (kind, wt) {
        (Kind::Str, 2) => {
            let b = r.bytes()?;
            Value::String(utf8(r, b)?)
        }
        (Kind::Bytes, 2) => json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
        (Kind::Bool, 0) => json!(r.varint()? != 0),
        (Kind::Int32, 0) => json!(r.varint()? as i64 as i32),
        (Kind::Int64, 0) => json!(r.varint()? as i64),
        (Kind::Uint, 0) => json!(r.varint()?),
        (Kind::Double, 1) => {
            let b = r.fixed(8)?;
            json!(f64::from_le_bytes(b.try_into().expect("8 bytes")))
        }
        (Kind::Float, 5) => {
            let b = r.fixed(4)?;
            json!(f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
        }
        _ => return Err(r.err(format!("wire type {wt} does not fit the field"))),
    })
}

/// Go's zero `time.Time` as protobuf seconds: it means "unset".
const GO_ZERO_TIME: i64 = -62135596800;

type Raw = HashMap<u64, (Vec<u8>, u64)>;

fn read_fields(name: &str, b: &[u8]) -> Result<Raw, Error> {
    let mut r = Reader {
        buf: b,
        pos: 0,
        msg: name,
    };
    let mut fields = Raw::new();
    while !r.done() {
        let key = r.varint()?;
        let (tag, wt) = (key >> 3, key & 7);
        match wt {
            0 => {
                let v = r.varint()?;
                fields.insert(tag, (Vec::new(), v));
            }
            2 => {
                let v = r.bytes()?.to_vec();
                fields.insert(tag, (v, 0));
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(fields)
}

fn special(name: &str, b: &[u8]) -> Result<Option<Value>, Error> {
    let err = |d: &str| Error::Malformed {
        message: name.to_string(),
        detail: d.to_string(),
    };
    let text = |f: &Raw, t: u64| {
        f.get(&t)
            .map(|x| String::from_utf8_lossy(&x.0).into_owned())
    };
    let num = |f: &Raw, t: u64| f.get(&t).map(|x| x.1);
    Ok(Some(match name {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            json!(text(&read_fields(name, b)?, 1).unwrap_or_default())
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            // Go writes a zero time as an empty message (Time.Size is 0 when IsZero).
            if b.is_empty() {
                return Ok(Some(Value::Null));
            }
            let f = read_fields(name, b)?;
            let secs = num(&f, 1).unwrap_or(0) as i64;
            let nanos = num(&f, 2).unwrap_or(0) as i64 as i32;
            if secs == GO_ZERO_TIME && nanos == 0 {
                return Ok(Some(Value::Null));
            }
            let t = chrono::DateTime::from_timestamp(secs, nanos.max(0) as u32)
                .ok_or_else(|| err("time out of range"))?;
            if name.ends_with(".Time") {
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            } else {
                json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            }
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => json!(go_duration(
            num(&read_fields(name, b)?, 1).unwrap_or(0) as i64
        )),
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let f = read_fields(name, b)?;
            match num(&f, 1).unwrap_or(0) {
                1 => json!(text(&f, 3).unwrap_or_default()),
                _ => json!(num(&f, 2).unwrap_or(0) as i64 as i32),
            }
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => match read_fields(name, b)?.get(&1) {
            Some((raw, _)) if !raw.is_empty() => {
                serde_json::from_slice(raw).map_err(|e| err(&format!("embedded JSON: {e}")))?
            }
            _ => Value::Null,
        },
        _ => return Ok(None),
    }))
}

fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let (h, rem) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let secs = rem as f64 / 1e9;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if h > 0 {
        s.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        s.push_str(&format!("{m}m"));
    }
    s.push_str(&format!("{secs}s"));
    s
}

fn message(name: &str, b: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed {
            message: name.to_string(),
            detail: "nested too deeply".into(),
        });
    }
    if let Some(v) = special(name, b)? {
        return Ok(v);
    }
    let fields = table().get(name).ok_or_else(|| Error::Malformed {
        message: name.to_string(),
        detail: "no schema for this message".into(),
    })?;
    let mut r = Reader {
        buf: b,
        pos: 0,
        msg: name,
    };
    let mut out = Map::new();
    while !r.done() {
        let key = r.varint()?;
        let (tag, wt) = ((key >> 3) as u32, key & 7);
        let Some(f) = fields.get(&tag) else {
            r.skip(wt)?;
            continue;
        };
        let value = match &f.kind {
            Kind::Msg(m) => {
                if wt != 2 {
                    return Err(r.err(format!("field {} expects a message", f.json)));
                }
                let inner = r.bytes()?;
                message(m, inner, depth + 1)?
            }
            Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => {
                if wt != 2 {
                    return Err(r.err(format!("field {} expects a map entry", f.json)));
                }
                let entry = r.bytes()?;
                let mut er = Reader {
                    buf: entry,
                    pos: 0,
                    msg: name,
                };
                let (mut k, mut v) = (String::new(), Value::Null);
                while !er.done() {
                    let ek = er.varint()?;
                    match (ek >> 3, ek & 7) {
                        (1, 2) => {
                            let kb = er.bytes()?;
                            k = utf8(&er, kb)?;
                        }
                        (2, 2) => {
                            let vb = er.bytes()?;
                            v = match &f.kind {
                                Kind::MapStr => Value::String(utf8(&er, vb)?),
                                Kind::MapBytes => {
                                    json!(base64::engine::general_purpose::STANDARD.encode(vb))
                                }
                                Kind::MapMsg(m) => message(m, vb, depth + 1)?,
                                _ => unreachable!("map kinds only"),
                            };
                        }
                        (_, w) => er.skip(w)?,
                    }
                }
                if v.is_null() {
                    v = match &f.kind {
                        Kind::MapStr | Kind::MapBytes => json!(""),
                        _ => json!({}),
                    };
                }
                let m = out.entry(f.json.clone()).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            scalar_kind => {
                if f.repeated && wt == 2 && !matches!(scalar_kind, Kind::Str | Kind::Bytes) {
                    // Packed repeated scalars.
                    let packed = r.bytes()?;
                    let mut pr = Reader {
                        buf: packed,
                        pos: 0,
                        msg: name,
                    };
                    let wt_inner = match scalar_kind {
                        Kind::Double => 1,
                        Kind::Float => 5,
                        _ => 0,
                    };
                    let list = out.entry(f.json.clone()).or_insert_with(|| json!([]));
                    while !pr.done() {
                        let v = scalar(&mut pr, scalar_kind, wt_inner)?;
                        if let Some(a) = list.as_array_mut() {
                            a.push(v);
                        }
                    }
                    continue;
                }
                scalar(&mut r, scalar_kind, wt)?
            }
        };
        if f.repeated {
            let list = out.entry(f.json.clone()).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(value);
            }
        } else if !(value.is_null() || value == json!("")) {
            // Go marshals non-pointer fields even when empty; JSON would omit them.
            out.insert(f.json.clone(), value);
        }
    }
    Ok(Value::Object(out))
}

/// The proto message of a kind, from its apiVersion.
fn message_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("core", api_version));
    let g = group.split('.').next().unwrap_or(group);
    format!("io.k8s.api.{g}.{version}.{kind}")
}

pub fn is_known_kind(api_version: &str, kind: &str) -> bool {
    table().contains_key(&message_name(api_version, kind))
}

/// Decodes an enveloped body (`k8s\0` + runtime.Unknown) into the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(Error::NoMagic)?;
    let mut r = Reader {
        buf: rest,
        pos: 0,
        msg: "runtime.Unknown",
    };
    let (mut api_version, mut kind, mut raw): (String, String, &[u8]) =
        (String::new(), String::new(), &[]);
    while !r.done() {
        let key = r.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let tm = r.bytes()?;
                let mut tr = Reader {
                    buf: tm,
                    pos: 0,
                    msg: "runtime.TypeMeta",
                };
                while !tr.done() {
                    let k = tr.varint()?;
                    match (k >> 3, k & 7) {
                        (1, 2) => {
                            let b = tr.bytes()?;
                            api_version = utf8(&tr, b)?;
                        }
                        (2, 2) => {
                            let b = tr.bytes()?;
                            kind = utf8(&tr, b)?;
                        }
                        (_, w) => tr.skip(w)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            (3 | 4, 2) => {
                let enc = r.bytes()?;
                if !enc.is_empty() && (key >> 3) == 3 {
                    return Err(r.err("content encodings are not supported"));
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    let name = message_name(&api_version, &kind);
    if !table().contains_key(&name) {
        return Err(Error::UnknownKind { api_version, kind });
    }
    let mut v = message(&name, raw, 0)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
    }
    Ok(v)
}
