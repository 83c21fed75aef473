//! `/openapi/v2`: one Swagger 2.0 document with the definitions of every group-version,
//! served as gnostic's `openapi_v2.Document` protobuf (what client-go's
//! `OpenAPISchema()` asks for and decodes, with no JSON fallback) or as JSON.
//!
//! kubectl reads it for client-side validation, which it does whenever the v3 query-param
//! verifier says the server cannot validate: always for a `v1/List`. kube-openapi's
//! parser (`pkg/util/proto`) then rejects the whole document over one dangling or
//! non-`#/definitions/` ref, and reads an `allOf` as "anything goes", so refs are
//! rewritten, `allOf` wrappers of one ref collapsed, and refs to unknown schemas dropped.
//! Only the definitions are published: no paths, as kubectl reads no more.

use crate::{crate_version, schemas_for};
use bytes::Bytes;
use prost::Message;
use serde_json::{Map, Value, json};
use skiff_types::registry::group_versions;
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

/// What kube-apiserver answers a protobuf request for `/openapi/v2` with.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";
const GVK: &str = "x-kubernetes-group-version-kind";

/// The subset of gnostic's OpenAPIv2.proto (package `openapi.v2`) kubectl reads. Field
/// numbers are the proto's; fields left out are simply absent on the wire.
pub mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, boxed, tag = "2")]
        pub value: Option<Box<Schema>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        /// `$ref` (`_ref` in the proto).
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, optional, boxed, tag = "21")]
        pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        pub all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "AdditionalProperties", tags = "1, 2")]
        pub oneof: Option<AdditionalProperties>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum AdditionalProperties {
        #[prost(message, boxed, tag = "1")]
        Schema(Box<Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// gnostic's `Any`: kube-openapi reads only `yaml` (field 1, a protobuf Any, is unused).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }
}

/// The document for an `Accept` header, as kube-openapi serves it: gnostic protobuf when
/// asked for (client-go asks for nothing else), else JSON. Content type and body.
pub fn v2_document(accept: &str) -> (&'static str, Bytes) {
    if accept.contains("com.github.proto-openapi.spec.v2") {
        (PROTOBUF_CONTENT_TYPE, v2_protobuf())
    } else {
        ("application/json", v2_json())
    }
}

/// The protobuf document, built on first use.
pub fn v2_protobuf() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| Bytes::from(to_proto(&definitions()).encode_to_vec()))
        .clone()
}

/// The JSON document, built on first use.
pub fn v2_json() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": crate_version()},
            "paths": {},
            "definitions": definitions(),
        });
        Bytes::from(serde_json::to_vec(&doc).expect("serializable"))
    })
    .clone()
}

/// Every v3 component schema of every group-version, as Swagger 2.0 definitions.
fn definitions() -> BTreeMap<String, Value> {
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    for (group, version) in group_versions() {
        let (defs, _) = schemas_for(group, version);
        for (name, schema) in defs {
            match all.get_mut(&name) {
                Some(seen) => merge_gvks(seen, &schema),
                None => {
                    all.insert(name, schema);
                }
            }
        }
    }
    let names: HashSet<String> = all.keys().cloned().collect();
    for schema in all.values_mut() {
        to_v2(schema, &|n| names.contains(n));
    }
    all
}

/// A schema shared by several group-versions is a kind only in its own (a PVC in
/// `apps/v1` is a StatefulSet's template): keep every group-version-kind it has anywhere.
fn merge_gvks(seen: &mut Value, other: &Value) {
    let Some(theirs) = other.get(GVK).and_then(Value::as_array) else {
        return;
    };
    let Some(seen) = seen.as_object_mut() else {
        return;
    };
    let mine = seen.entry(GVK).or_insert_with(|| json!([]));
    if let Some(mine) = mine.as_array_mut() {
        for g in theirs {
            if !mine.contains(g) {
                mine.push(g.clone());
            }
        }
    }
}

/// Rewrites a v3 schema in place into its Swagger 2.0 form; `known` says whether a
/// definition exists.
fn to_v2(v: &mut Value, known: &dyn Fn(&str) -> bool) {
    match v {
        Value::Object(m) => {
            collapse_all_of(m);
            if let Some(r) = m.remove("$ref") {
                // A ref to nothing would fail the whole document: the field becomes
                // unvalidated instead.
                if let Some(name) = r.as_str().and_then(|r| r.strip_prefix(V3_PREFIX))
                    && known(name)
                {
                    m.insert("$ref".into(), json!(format!("{V2_PREFIX}{name}")));
                }
            }
            crate::for_each_subschema(m, &mut |c| to_v2(c, known));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| to_v2(c, known)),
        _ => {}
    }
}

/// `{allOf: [{$ref}], description}` (v3 keeps nothing beside a ref) is `{$ref,
/// description}` in v2, where kube-openapi follows the ref instead of giving up.
fn collapse_all_of(m: &mut Map<String, Value>) {
    let only_ref = match m.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([one]) => one
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("$ref"))
            .cloned(),
        _ => None,
    };
    if let Some(r) = only_ref
        && !m.contains_key("$ref")
    {
        m.remove("allOf");
        m.insert("$ref".into(), r);
    }
}

fn to_proto(defs: &BTreeMap<String, Value>) -> pb::Document {
    pb::Document {
        swagger: "2.0".into(),
        info: Some(pb::Info {
            title: "Kubernetes".into(),
            version: crate_version().into(),
        }),
        definitions: Some(pb::Definitions {
            additional_properties: defs.iter().map(|(n, s)| named(n, s)).collect(),
        }),
    }
}

fn named(name: &str, v: &Value) -> pb::NamedSchema {
    pb::NamedSchema {
        name: name.into(),
        value: Some(Box::new(schema(v))),
    }
}

fn schema(v: &Value) -> pb::Schema {
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut s = pb::Schema {
        xref: str_of("$ref"),
        format: str_of("format"),
        description: str_of("description"),
        required: strings(v.get("required")),
        vendor_extension: extensions(v),
        ..Default::default()
    };
    if !s.xref.is_empty() {
        // kube-openapi refuses a type or properties beside a ref.
        return s;
    }
    if let Some(t) = v.get("type") {
        let value = t.as_str().map(|t| vec![t.to_string()]);
        s.r#type = Some(pb::TypeItem {
            value: value.unwrap_or_else(|| strings(Some(t))),
        });
    }
    s.items = v.get("items").map(|i| pb::ItemsItem {
        schema: match i {
            Value::Array(a) => a.iter().map(schema).collect(),
            one => vec![schema(one)],
        },
    });
    s.all_of = v
        .get("allOf")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(schema).collect())
        .unwrap_or_default();
    s.properties = v
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| pb::Properties {
            additional_properties: p.iter().map(|(n, s)| named(n, s)).collect(),
        });
    s.additional_properties = v.get("additionalProperties").and_then(additional);
    s
}

fn additional(v: &Value) -> Option<Box<pb::AdditionalPropertiesItem>> {
    let oneof = match v {
        Value::Bool(b) => pb::AdditionalProperties::Boolean(*b),
        Value::Object(_) => pb::AdditionalProperties::Schema(Box::new(schema(v))),
        _ => return None,
    };
    Some(Box::new(pb::AdditionalPropertiesItem {
        oneof: Some(oneof),
    }))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `x-` keys, their values as JSON text: kube-openapi parses the `yaml` field as YAML,
/// of which JSON is a subset.
fn extensions(v: &Value) -> Vec<pb::NamedAny> {
    let Some(m) = v.as_object() else {
        return Vec::new();
    };
    m.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, x)| pb::NamedAny {
            name: k.clone(),
            value: Some(pb::Any {
                yaml: x.to_string(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pb::*;
    use super::*;

    fn decoded() -> Document {
        Document::decode(v2_protobuf()).expect("decodes")
    }

    fn defs(doc: &Document) -> BTreeMap<&str, &Schema> {
        let d = doc.definitions.as_ref().expect("definitions");
        d.additional_properties
            .iter()
            .map(|n| (n.name.as_str(), n.value.as_deref().expect("schema")))
            .collect()
    }

    fn prop<'a>(s: &'a Schema, name: &str) -> &'a Schema {
        let p = s.properties.as_ref().expect("properties");
        let n = p.additional_properties.iter().find(|n| n.name == name);
        n.and_then(|n| n.value.as_deref()).expect(name)
    }

    fn gvk(s: &Schema) -> Value {
        let x = s
            .vendor_extension
            .iter()
            .find(|x| x.name == GVK)
            .expect("gvk");
        serde_json::from_str(&x.value.as_ref().unwrap().yaml).unwrap()
    }

    /// Every schema under `s`, `s` included.
    fn walk<'a>(s: &'a Schema, out: &mut Vec<&'a Schema>) {
        out.push(s);
        let named = s.properties.iter().flat_map(|p| &p.additional_properties);
        for n in named.filter_map(|n| n.value.as_deref()) {
            walk(n, out);
        }
        for i in s.items.iter().flat_map(|i| &i.schema).chain(&s.all_of) {
            walk(i, out);
        }
        if let Some(AdditionalProperties::Schema(a)) = s
            .additional_properties
            .as_ref()
            .and_then(|a| a.oneof.as_ref())
        {
            walk(a, out);
        }
    }

    #[test]
    fn kinds_carry_their_group_version_kind() {
        let doc = decoded();
        assert_eq!(doc.swagger, "2.0");
        assert_eq!(doc.info.as_ref().unwrap().version, crate_version());
        let d = defs(&doc);
        let pod = d["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            gvk(pod),
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        let dep = d["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(gvk(dep)[0]["group"], "apps");
        // Also a StatefulSet's template in apps/v1, where it is no kind: still one here.
        let pvc = d["io.k8s.api.core.v1.PersistentVolumeClaim"];
        assert_eq!(gvk(pvc)[0]["kind"], "PersistentVolumeClaim");
        let cm = d["io.k8s.api.core.v1.ConfigMap"];
        let data = prop(cm, "data");
        assert_eq!(data.r#type.as_ref().unwrap().value, ["object"]);
        let Some(AdditionalProperties::Schema(v)) =
            data.additional_properties.as_ref().unwrap().oneof.as_ref()
        else {
            panic!("data: {data:?}");
        };
        assert_eq!(v.r#type.as_ref().unwrap().value, ["string"]);
    }

    #[test]
    fn refs_are_plain_and_resolve() {
        let doc = decoded();
        let d = defs(&doc);
        // The allOf wrapper of v3 is collapsed; the description stays beside the ref.
        let spec = prop(d["io.k8s.api.core.v1.Pod"], "spec");
        assert_eq!(spec.xref, "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(spec.description.contains("desired behavior"));
        let containers = prop(d["io.k8s.api.core.v1.PodSpec"], "containers");
        assert_eq!(containers.r#type.as_ref().unwrap().value, ["array"]);
        let item = &containers.items.as_ref().unwrap().schema[0];
        assert_eq!(item.xref, "#/definitions/io.k8s.api.core.v1.Container");
        assert_eq!(d["io.k8s.api.core.v1.Container"].required, ["name"]);
        let mut all = Vec::new();
        d.values().for_each(|s| walk(s, &mut all));
        let refs: Vec<&Schema> = all.into_iter().filter(|s| !s.xref.is_empty()).collect();
        assert!(refs.len() > 500, "{}", refs.len());
        for r in refs {
            let name = r.xref.strip_prefix(V2_PREFIX).expect(&r.xref);
            assert!(d.contains_key(name), "dangling {}", r.xref);
            // kube-openapi refuses these beside a ref.
            assert!(r.r#type.is_none() && r.properties.is_none(), "{r:?}");
        }
    }

    #[test]
    fn nothing_is_left_in_v3_form() {
        let json: Value = serde_json::from_slice(&v2_json()).unwrap();
        let text = json.to_string();
        assert!(!text.contains("#/components"));
        assert!(!text.contains("\"allOf\":["));
        assert_eq!(json["swagger"], "2.0");
        let n = json["definitions"].as_object().unwrap().len();
        assert_eq!(
            decoded().definitions.unwrap().additional_properties.len(),
            n
        );
        assert!(n > 300, "{n}");
        assert_eq!(v2_document("application/json").0, "application/json");
        assert_eq!(v2_document("").0, "application/json");
        let pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
        assert_eq!(v2_document(pb).0, PROTOBUF_CONTENT_TYPE);
    }

    #[test]
    fn dangling_refs_are_dropped() {
        let mut v = json!({"properties": {
            "a": {"allOf": [{"$ref": "#/components/schemas/Known"}], "description": "d"},
            "b": {"$ref": "#/components/schemas/Gone"},
            "c": {"$ref": "#/elsewhere/Known"},
        }});
        to_v2(&mut v, &|n| n == "Known");
        assert_eq!(
            v,
            json!({"properties": {"a": {"$ref": "#/definitions/Known", "description": "d"}, "b": {}, "c": {}}})
        );
    }

    /// The wire keys, worked out by hand from gnostic's OpenAPIv2.proto (not from the
    /// structs above): a wrong field number fails here, not only in kubectl.
    #[test]
    fn field_numbers_match_gnostic() {
        let doc = Document {
            swagger: "2".into(),
            info: Some(Info {
                title: "t".into(),
                version: "v".into(),
            }),
            definitions: Some(Definitions {
                additional_properties: vec![NamedSchema {
                    name: "n".into(),
                    value: None,
                }],
            }),
        };
        let want = b"\x0a\x012\x12\x06\x0a\x01t\x12\x01v\x4a\x05\x0a\x03\x0a\x01n";
        assert_eq!(doc.encode_to_vec(), want);
        let s = Schema {
            xref: "r".into(),
            format: "f".into(),
            description: "d".into(),
            required: vec!["q".into()],
            additional_properties: Some(Box::new(AdditionalPropertiesItem {
                oneof: Some(AdditionalProperties::Boolean(true)),
            })),
            r#type: Some(TypeItem {
                value: vec!["t".into()],
            }),
            items: Some(ItemsItem {
                schema: vec![Schema::default()],
            }),
            all_of: vec![Schema::default()],
            properties: Some(Properties {
                additional_properties: vec![NamedSchema {
                    name: "p".into(),
                    value: None,
                }],
            }),
            vendor_extension: vec![NamedAny {
                name: "x".into(),
                value: Some(Any { yaml: "y".into() }),
            }],
        };
        let want: &[u8] = b"\x0a\x01r\x12\x01f\x22\x01d\
            \x9a\x01\x01q\
            \xaa\x01\x02\x10\x01\
            \xb2\x01\x03\x0a\x01t\
            \xba\x01\x02\x0a\x00\
            \xc2\x01\x00\
            \xca\x01\x05\x0a\x03\x0a\x01p\
            \xfa\x01\x08\x0a\x01x\x12\x03\x12\x01y";
        assert_eq!(s.encode_to_vec(), want);
    }
}
