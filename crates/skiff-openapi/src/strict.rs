//! Strict decoding: unknown fields (against the published schemas) and duplicate fields
//! (in the raw JSON, which `serde_json::Value` would silently collapse). The compiled
//! schemas also carry each field's JSON type, which [`crate::shape`] checks.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

const MAX_DEPTH: usize = 100;

/// A schema compiled for the unknown-field walk: `$ref`s resolved to node indices and
/// only what the walk reads kept. The walk runs on every write, and looking fields up in
/// the OpenAPI documents themselves cost several string hashes per field.
#[derive(Default)]
pub(crate) struct Node {
    /// Known properties; `None` when the schema names none (nothing to reject).
    pub(crate) props: Option<HashMap<Box<str>, usize>>,
    /// The schema of a map's values (`additionalProperties`), used when `props` is `None`.
    pub(crate) additional: Option<usize>,
    pub(crate) items: Option<usize>,
    /// The JSON a value here must be (null aside).
    pub(crate) ty: Ty,
    /// The Go type kube-apiserver decodes it into (`v1.ObjectMeta`, `map[string]string`),
    /// as its decoding errors name it.
    pub(crate) go: Box<str>,
}

/// What JSON a schema takes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ty {
    /// Anything (no type, or preserved unknown fields).
    #[default]
    Any,
    /// A struct (named properties) or a map (`additionalProperties`).
    Object,
    Array,
    String,
    /// An integer, 32 bits wide when `true`.
    Integer(bool),
    Number,
    Boolean,
    /// `x-kubernetes-int-or-string`.
    IntOrString,
    /// `resource.Quantity`, which decodes from a string or a number.
    Quantity,
}

impl Ty {
    fn of(schema: &Value, name: Option<&str>) -> Ty {
        match name.and_then(|n| n.rsplit('.').next()) {
            Some("Quantity") => return Ty::Quantity,
            // Kept as the raw JSON they are sent as, whatever it is.
            Some("RawExtension" | "JSON") => return Ty::Any,
            _ => {}
        }
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Ty::IntOrString;
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => Ty::Object,
            Some("array") => Ty::Array,
            Some("string") => Ty::String,
            Some("integer") => Ty::Integer(schema.get("format") != Some(&json_str("int64"))),
            Some("number") => Ty::Number,
            Some("boolean") => Ty::Boolean,
            _ if schema.get("properties").is_some() => Ty::Object,
            _ => Ty::Any,
        }
    }

    /// Go's name of an unnamed schema of this type.
    fn go(self, schema: &Value) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::Object => "struct",
            Ty::Array => "[]interface {}",
            Ty::String if schema.get("format") == Some(&json_str("byte")) => "[]uint8",
            Ty::String => "string",
            Ty::Integer(true) => "int32",
            Ty::Integer(false) => "int64",
            Ty::Number => "float64",
            Ty::Boolean => "bool",
            Ty::IntOrString => "intstr.IntOrString",
            Ty::Quantity => "resource.Quantity",
        }
    }
}

fn json_str(s: &str) -> Value {
    Value::String(s.into())
}

/// `v1.ObjectMeta` for `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`.
fn go_name(schema_name: &str) -> Box<str> {
    let mut parts = schema_name.rsplit('.');
    match (parts.next(), parts.next()) {
        (Some(t), Some(pkg)) => format!("{pkg}.{t}").into(),
        _ => schema_name.into(),
    }
}

pub(crate) struct Compiled {
    pub(crate) nodes: Vec<Node>,
    pub(crate) kinds: HashMap<String, usize>,
    /// One node for each scalar type, shared by every field of it.
    leaves: HashMap<(Ty, Box<str>), usize>,
}

/// Index of the node that checks nothing (`x-kubernetes-preserve-unknown-fields`,
/// scalars, schemas without properties).
pub(crate) const OPEN: usize = 0;

fn resolve<'a>(schemas: &'a Map<String, Value>, s: &'a Value) -> (&'a Value, Option<&'a str>) {
    let mut cur = s;
    let mut name = None;
    for _ in 0..8 {
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix("#/components/schemas/")
                .and_then(|n| schemas.get_key_value(n))
            {
                Some((n, t)) => {
                    cur = t;
                    name = Some(n.as_str());
                }
                None => break,
            }
        } else if let Some(all) = cur
            .get("allOf")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
        {
            cur = &all[0];
        } else {
            break;
        }
    }
    (cur, name)
}

impl Compiled {
    fn build(doc: &Value) -> Compiled {
        let mut c = Compiled {
            nodes: vec![Node {
                go: "interface {}".into(),
                ..Node::default()
            }],
            kinds: HashMap::new(),
            leaves: HashMap::new(),
        };
        let empty = Map::new();
        let schemas = doc
            .get("schemas")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut named = HashMap::new();
        for k in doc
            .get("kinds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(kind), Some(name)) = (k["kind"].as_str(), k["schema"].as_str())
                && let Some(root) = schemas.get(name)
            {
                let n = c.compile(schemas, root, &mut named, 0);
                if n != OPEN {
                    // Reached by name, not by reference: named here.
                    c.nodes[n].go = go_name(name);
                }
                c.kinds.insert(kind.to_string(), n);
            }
        }
        c
    }

    fn compile<'a>(
        &mut self,
        schemas: &'a Map<String, Value>,
        schema: &'a Value,
        named: &mut HashMap<&'a str, usize>,
        depth: usize,
    ) -> usize {
        let (schema, name) = resolve(schemas, schema);
        if let Some(&i) = name.and_then(|n| named.get(n)) {
            return i;
        }
        if depth > MAX_DEPTH
            || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        {
            return OPEN;
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let items = schema.get("items");
        let ty = Ty::of(schema, name);
        let go = name.map_or_else(|| ty.go(schema).into(), go_name);
        if props.is_none() && additional.is_none() && items.is_none() {
            return self.leaf(ty, go);
        }
        // Reserved before the children so recursive schemas point back at it.
        let me = self.nodes.len();
        self.nodes.push(Node {
            ty,
            go: go.clone(),
            ..Node::default()
        });
        if let Some(n) = name {
            named.insert(n, me);
        }
        let mut node = Node {
            ty,
            go,
            ..Node::default()
        };
        if let Some(props) = props {
            node.props = Some(
                props
                    .iter()
                    .map(|(k, ps)| {
                        (
                            k.as_str().into(),
                            self.compile(schemas, ps, named, depth + 1),
                        )
                    })
                    .collect(),
            );
        } else if let Some(ap) = additional {
            node.additional = Some(self.compile(schemas, ap, named, depth + 1));
        }
        if let Some(it) = items {
            node.items = Some(self.compile(schemas, it, named, depth + 1));
        }
        // An unnamed container is named after what it holds, as Go spells it.
        if name.is_none() {
            if let Some(v) = node.additional.filter(|_| node.props.is_none()) {
                node.go = format!("map[string]{}", self.nodes[v].go).into();
            } else if let Some(i) = node.items {
                node.go = format!("[]{}", self.nodes[i].go).into();
            }
        }
        self.nodes[me] = node;
        me
    }

    /// The shared node of a scalar (or an object schema with nothing inside).
    fn leaf(&mut self, ty: Ty, go: Box<str>) -> usize {
        if ty == Ty::Any {
            return OPEN;
        }
        let next = self.nodes.len();
        let i = *self.leaves.entry((ty, go.clone())).or_insert(next);
        if i == next {
            self.nodes.push(Node {
                ty,
                go,
                ..Node::default()
            });
        }
        i
    }

    /// Collects the paths of fields of `v` that node `n` does not know. The path is one
    /// buffer grown and cut back as the walk goes, so a clean object allocates nothing.
    fn walk(&self, n: usize, v: &Value, path: &mut String, out: &mut Vec<String>, depth: usize) {
        use std::fmt::Write;
        if n == OPEN || depth > MAX_DEPTH {
            return;
        }
        let node = &self.nodes[n];
        match v {
            Value::Object(m) => {
                if let Some(props) = &node.props {
                    for (k, c) in m {
                        let len = push_key(path, k);
                        match props.get(k.as_str()) {
                            Some(&child) => self.walk(child, c, path, out, depth + 1),
                            None => out.push(path.clone()),
                        }
                        path.truncate(len);
                    }
                } else if let Some(child) = node.additional.filter(|&c| c != OPEN) {
                    for (k, c) in m {
                        let len = path.len();
                        let _ = write!(path, "[{k}]");
                        self.walk(child, c, path, out, depth + 1);
                        path.truncate(len);
                    }
                }
            }
            Value::Array(a) => {
                if let Some(child) = node.items.filter(|&c| c != OPEN) {
                    for (i, c) in a.iter().enumerate() {
                        let len = path.len();
                        let _ = write!(path, "[{i}]");
                        self.walk(child, c, path, out, depth + 1);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Appends `.key` (or `key` at the top) to the path; returns the length to truncate to.
pub(crate) fn push_key(path: &mut String, k: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
    len
}

pub(crate) fn compiled(group: &str, version: &str) -> Option<Arc<Compiled>> {
    type Cache = RwLock<HashMap<(String, String), Arc<Compiled>>>;
    static C: OnceLock<Cache> = OnceLock::new();
    let c = C.get_or_init(Default::default);
    if let Some(hit) = c
        .read()
        .ok()?
        .iter()
        .find(|((g, v), _)| g == group && v == version)
    {
        return Some(hit.1.clone());
    }
    let doc = crate::schemas_of(group, version)?;
    let built = Arc::new(Compiled::build(&doc));
    c.write()
        .ok()?
        .insert((group.to_string(), version.to_string()), built.clone());
    Some(built)
}

pub fn unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(c) = compiled(group, version) else {
        return Vec::new();
    };
    let Some(&root) = c.kinds.get(kind) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    c.walk(root, obj, &mut String::new(), &mut out, 0);
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

/// Parses JSON into a `Value` as `serde_json::from_slice` does, and says whether any
/// object repeated a key (which `Value` collapses to the last). Writes are parsed once
/// this way; only a body with duplicates pays for `duplicate_fields`' second pass that
/// names them.
pub fn from_slice_noting_duplicates(raw: &[u8]) -> serde_json::Result<(Value, bool)> {
    let dup = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(raw);
    let v = Noting { dup: &dup }.deserialize(&mut de)?;
    de.end()?;
    Ok((v, dup.get()))
}

#[derive(Clone, Copy)]
struct Noting<'a> {
    dup: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Noting<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Noting<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(n.into())
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(n.into())
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(self)?;
            match m.entry(k) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(v);
                }
                serde_json::map::Entry::Occupied(mut e) => {
                    self.dup.set(true);
                    e.insert(v);
                }
            }
        }
        Ok(Value::Object(m))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
}
