//! OpenAPI v3 documents for group-versions that CustomResourceDefinitions define, as
//! kube-apiserver builds them from the CRD schemas: each kind's structural schema with
//! `apiVersion`, `kind` and an ObjectMeta `metadata`, its List, the shared meta
//! schemas, and the usual paths. `kubectl explain` and client-side tooling read them.

use crate::{PathKind, crate_version, paths_of, wrap_refs};
use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One kind a CRD version serves.
pub struct CustomKind<'a> {
    pub kind: &'a str,
    pub list_kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
    /// `schema.openAPIV3Schema` of the version.
    pub schema: &'a Value,
}

/// `com.example.stable.v1.CronTab`: kube names CRD schemas by the reversed group.
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The document for `apis/<group>/<version>`.
pub fn custom_document(group: &str, version: &str, kinds: &[CustomKind]) -> Bytes {
    let mut schemas = meta_schemas().clone();
    let names: Vec<(String, String)> = kinds
        .iter()
        .map(|k| {
            (
                schema_name(group, version, k.kind),
                schema_name(group, version, k.list_kind),
            )
        })
        .collect();
    for (k, (name, list)) in kinds.iter().zip(&names) {
        schemas.insert(name.clone(), kind_schema(group, version, k));
        schemas.insert(list.clone(), list_schema(group, version, k, name));
    }
    let entries: Vec<PathKind> = kinds
        .iter()
        .zip(&names)
        .map(|(k, (name, _))| PathKind {
            kind: k.kind,
            plural: k.plural,
            namespaced: k.namespaced,
            create_only: false,
            schema: name,
        })
        .collect();
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": crate_version()},
        "paths": paths_of(group, version, &entries),
        "components": {"schemas": schemas},
    });
    Bytes::from(serde_json::to_vec(&doc).expect("serializable"))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "version": version, "kind": kind}])
}

fn kind_schema(group: &str, version: &str, k: &CustomKind) -> Value {
    let mut s = k.schema.clone();
    let Some(obj) = s.as_object_mut() else {
        return s;
    };
    let props = obj
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string", "description": API_VERSION_DOC}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string", "description": KIND_DOC}));
        props.insert(
            "metadata".into(),
            json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": METADATA_DOC}),
        );
    }
    obj.insert(
        "x-kubernetes-group-version-kind".into(),
        gvk(group, version, k.kind),
    );
    s
}

fn list_schema(group: &str, version: &str, k: &CustomKind, item: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}", k.list_kind, k.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": API_VERSION_DOC},
            "items": {"type": "array", "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", k.plural), "items": {"$ref": format!("#/components/schemas/{item}")}},
            "kind": {"type": "string", "description": KIND_DOC},
            "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}], "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
        },
        "x-kubernetes-group-version-kind": gvk(group, version, k.list_kind),
    })
}

/// ObjectMeta, ListMeta and what requests carry (DeleteOptions, Status, Patch), shared
/// by every custom document.
fn meta_schemas() -> &'static Map<String, Value> {
    static M: OnceLock<Map<String, Value>> = OnceLock::new();
    M.get_or_init(|| {
        let mut g = SchemaSettings::openapi3().into_generator();
        g.subschema_for::<meta::ObjectMeta>();
        g.subschema_for::<meta::ListMeta>();
        g.subschema_for::<meta::DeleteOptions>();
        g.subschema_for::<meta::Status>();
        g.subschema_for::<meta::Patch>();
        let mut defs = g.take_definitions(true);
        for v in defs.values_mut() {
            wrap_refs(v);
        }
        defs
    })
}

/// A content hash (FNV-1a, hex) for `?hash=` URLs: changes whenever the document does.
pub fn content_hash(doc: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in doc {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_document_has_kind_list_meta_and_paths() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}});
        let doc = custom_document(
            "stable.example.com",
            "v1",
            &[CustomKind {
                kind: "CronTab",
                list_kind: "CronTabList",
                plural: "crontabs",
                namespaced: true,
                schema: &schema,
            }],
        );
        let doc: Value = serde_json::from_slice(&doc).unwrap();
        let s = &doc["components"]["schemas"];
        let k = &s["com.example.stable.v1.CronTab"];
        assert_eq!(k["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert_eq!(
            k["properties"]["spec"]["properties"]["replicas"]["type"],
            "integer"
        );
        assert_eq!(
            k["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert!(s[OBJECT_META].is_object());
        assert_eq!(
            s["com.example.stable.v1.CronTabList"]["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/com.example.stable.v1.CronTab"
        );
        assert!(doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["get"].is_object());
        assert_ne!(content_hash(b"a"), content_hash(b"b"));
    }
}
