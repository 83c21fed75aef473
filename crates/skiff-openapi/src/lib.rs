//! The OpenAPI v3 documents the API server publishes (`/openapi/v3`, one document per
//! group-version), generated from `k8s-openapi`'s types (their schemars schemas carry
//! Kubernetes' names and descriptions), plus strict-decoding checks built on the same
//! schemas: unknown fields, duplicate fields, and fields of the wrong JSON type.
//!
//! kubectl reads these documents for `explain`, to decide whether the server validates
//! fields (`fieldValidation` on the patch operation), and for strategic-merge-patch
//! metadata (`x-kubernetes-patch-merge-key`/`-strategy`) when it computes apply patches.
//! Documents are built on first request and cached serialized, so idle memory stays low.
//! `v2` republishes the same schemas as the one `/openapi/v2` document (protobuf), which
//! kubectl's client-side validation reads (always, for a `v1/List`).

use bytes::Bytes;
use k8s_openapi::api;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use skiff_types::RESOURCES;
use skiff_types::registry::group_versions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub mod custom;
mod shape;
mod strict;
pub mod v2;
pub use shape::{Mismatch, go_format, type_mismatch};
pub use strict::{duplicate_fields, from_slice_noting_duplicates};
pub use v2::v2_document;

/// Schema name of each served kind, by (group, version, kind).
fn add_kind_schemas(g: &mut SchemaGenerator, group: &str, version: &str) -> KindList {
    macro_rules! kinds {
        ($($grp:literal, $ver:literal, $kind:literal => $ty:ty;)*) => {{
            let mut out = Vec::new();
            $(
                if $grp == group && $ver == version {
                    g.subschema_for::<$ty>();
                    out.push((<$ty as schemars::JsonSchema>::schema_name().to_string(), $kind, $grp.to_string()));
                }
            )*
            out
        }};
    }
    kinds! {
        "", "v1", "Pod" => api::core::v1::Pod;
        "", "v1", "Node" => api::core::v1::Node;
        "", "v1", "Namespace" => api::core::v1::Namespace;
        "", "v1", "Service" => api::core::v1::Service;
        "", "v1", "Endpoints" => api::core::v1::Endpoints;
        "", "v1", "ConfigMap" => api::core::v1::ConfigMap;
        "", "v1", "Secret" => api::core::v1::Secret;
        "", "v1", "Event" => api::core::v1::Event;
        "", "v1", "ServiceAccount" => api::core::v1::ServiceAccount;
        "", "v1", "LimitRange" => api::core::v1::LimitRange;
        "", "v1", "PodTemplate" => api::core::v1::PodTemplate;
        "", "v1", "ResourceQuota" => api::core::v1::ResourceQuota;
        "", "v1", "PersistentVolume" => api::core::v1::PersistentVolume;
        "", "v1", "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim;
        "", "v1", "ReplicationController" => api::core::v1::ReplicationController;
        "", "v1", "Binding" => api::core::v1::Binding;
        "apps", "v1", "Deployment" => api::apps::v1::Deployment;
        "apps", "v1", "ReplicaSet" => api::apps::v1::ReplicaSet;
        "apps", "v1", "DaemonSet" => api::apps::v1::DaemonSet;
        "apps", "v1", "StatefulSet" => api::apps::v1::StatefulSet;
        "apps", "v1", "ControllerRevision" => api::apps::v1::ControllerRevision;
        "batch", "v1", "Job" => api::batch::v1::Job;
        "batch", "v1", "CronJob" => api::batch::v1::CronJob;
        "autoscaling", "v2", "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler;
        "autoscaling", "v1", "HorizontalPodAutoscaler" => api::autoscaling::v1::HorizontalPodAutoscaler;
        "networking.k8s.io", "v1", "NetworkPolicy" => api::networking::v1::NetworkPolicy;
        "networking.k8s.io", "v1", "Ingress" => api::networking::v1::Ingress;
        "networking.k8s.io", "v1", "IngressClass" => api::networking::v1::IngressClass;
        "policy", "v1", "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget;
        "policy", "v1", "Eviction" => api::policy::v1::Eviction;
        "rbac.authorization.k8s.io", "v1", "Role" => api::rbac::v1::Role;
        "rbac.authorization.k8s.io", "v1", "ClusterRole" => api::rbac::v1::ClusterRole;
        "rbac.authorization.k8s.io", "v1", "RoleBinding" => api::rbac::v1::RoleBinding;
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding;
        "scheduling.k8s.io", "v1", "PriorityClass" => api::scheduling::v1::PriorityClass;
        "storage.k8s.io", "v1", "StorageClass" => api::storage::v1::StorageClass;
        "storage.k8s.io", "v1", "CSIDriver" => api::storage::v1::CSIDriver;
        "storage.k8s.io", "v1", "CSINode" => api::storage::v1::CSINode;
        "storage.k8s.io", "v1", "VolumeAttachment" => api::storage::v1::VolumeAttachment;
        "certificates.k8s.io", "v1", "CertificateSigningRequest" => api::certificates::v1::CertificateSigningRequest;
        "coordination.k8s.io", "v1", "Lease" => api::coordination::v1::Lease;
        "discovery.k8s.io", "v1", "EndpointSlice" => api::discovery::v1::EndpointSlice;
        "events.k8s.io", "v1", "Event" => api::events::v1::Event;
        "apiextensions.k8s.io", "v1", "CustomResourceDefinition" => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        "apiregistration.k8s.io", "v1", "APIService" => k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
        "admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration" => api::admissionregistration::v1::MutatingWebhookConfiguration;
        "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration" => api::admissionregistration::v1::ValidatingWebhookConfiguration;
        "admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy" => api::admissionregistration::v1::ValidatingAdmissionPolicy;
        "admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding" => api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
        "authorization.k8s.io", "v1", "SelfSubjectAccessReview" => api::authorization::v1::SelfSubjectAccessReview;
        "authorization.k8s.io", "v1", "SelfSubjectRulesReview" => api::authorization::v1::SelfSubjectRulesReview;
        "authorization.k8s.io", "v1", "SubjectAccessReview" => api::authorization::v1::SubjectAccessReview;
        "authorization.k8s.io", "v1", "LocalSubjectAccessReview" => api::authorization::v1::LocalSubjectAccessReview;
        "authentication.k8s.io", "v1", "SelfSubjectReview" => api::authentication::v1::SelfSubjectReview;
        "authentication.k8s.io", "v1", "TokenReview" => api::authentication::v1::TokenReview;
    }
}

/// Patch metadata kubectl reads when it computes strategic merge patches
/// (facts from k8s.io/api types.go).
const PATCH_META: &[(&str, &str, &str, &str)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        "",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
    ),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        "containerPort",
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        "containerPort",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        "type",
    ),
];

/// OpenAPI 3.0 puts nothing beside a `$ref`; Kubernetes wraps refs that carry a
/// description or default in `allOf`, and kubectl explain expects that shape.
fn wrap_refs(v: &mut Value) {
    let Value::Object(m) = v else {
        return;
    };
    if m.contains_key("$ref") && m.len() > 1 {
        let r = m.remove("$ref").expect("checked");
        m.insert("allOf".into(), json!([{"$ref": r}]));
    }
    for_each_subschema(m, &mut wrap_refs);
}

/// Visits the schemas inside a schema object, and nothing else: property *names* are
/// data (JSONSchemaProps has properties named `$ref`, `allOf` and `x-kubernetes-…`), as
/// are `enum`, `default`, `example` and extensions.
pub(crate) fn for_each_subschema(m: &mut Map<String, Value>, f: &mut dyn FnMut(&mut Value)) {
    for (k, c) in m.iter_mut() {
        match (k.as_str(), c) {
            ("properties" | "patternProperties" | "definitions", Value::Object(named)) => {
                named.values_mut().for_each(&mut *f)
            }
            ("allOf" | "anyOf" | "oneOf" | "items", Value::Array(a)) => {
                a.iter_mut().for_each(&mut *f)
            }
            ("items" | "additionalProperties" | "not", c) => f(c),
            _ => {}
        }
    }
}

/// (schema name, kind, group) of each kind in a group-version.
type KindList = Vec<(String, &'static str, String)>;

fn schemas_for(group: &str, version: &str) -> (Map<String, Value>, KindList) {
    let mut g = SchemaSettings::openapi3().into_generator();
    let kinds = add_kind_schemas(&mut g, group, version);
    g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>();
    if kinds.iter().any(|(_, k, _)| {
        matches!(
            *k,
            "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController"
        )
    }) {
        g.subschema_for::<api::autoscaling::v1::Scale>();
    }
    let mut defs = g.take_definitions(true);
    for v in defs.values_mut() {
        wrap_refs(v);
    }
    for (name, kind, grp) in &kinds {
        if let Some(s) = defs.get_mut(name).and_then(Value::as_object_mut) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": grp, "version": version, "kind": kind}]),
            );
        }
    }
    for (ty, prop, strategy, key) in PATCH_META {
        if let Some(p) = defs
            .get_mut(*ty)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*prop))
            .and_then(Value::as_object_mut)
        {
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if !key.is_empty() {
                p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                p.insert("x-kubernetes-list-type".into(), json!("map"));
                p.insert("x-kubernetes-list-map-keys".into(), json!([key]));
            } else {
                p.insert("x-kubernetes-list-type".into(), json!("set"));
            }
        }
    }
    (defs, kinds)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn json_body(name: &str) -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}})
}

/// One kind's entry in a group-version's `paths`.
pub(crate) struct PathKind<'a> {
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
    pub create_only: bool,
    /// Its component schema's name.
    pub schema: &'a str,
}

fn paths_for(
    group: &str,
    version: &str,
    kinds: &[(String, &'static str, String)],
) -> Map<String, Value> {
    let entries: Vec<PathKind> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .filter_map(|ri| {
            let (schema, _, _) = kinds.iter().find(|(_, k, _)| *k == ri.kind)?;
            Some(PathKind {
                kind: &ri.kind,
                plural: &ri.plural,
                namespaced: ri.namespaced(),
                create_only: ri.virtual_create_only,
                schema,
            })
        })
        .collect();
    paths_of(group, version, &entries)
}

pub(crate) fn paths_of(group: &str, version: &str, entries: &[PathKind]) -> Map<String, Value> {
    let mut paths = Map::new();
    let q = |n: &str, d: &str| json!({"name": n, "in": "query", "description": d, "schema": {"type": "string", "uniqueItems": true}});
    for ri in entries {
        let schema = ri.schema;
        let gvk = json!({"group": group, "version": version, "kind": ri.kind});
        let base = format!("/{}", gv_path(group, version));
        let (coll, item) = if ri.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", ri.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", ri.plural),
            )
        } else {
            (
                format!("{base}/{}", ri.plural),
                format!("{base}/{}/{{name}}", ri.plural),
            )
        };
        let op = |action: &str, id: &str, body: bool, params: Vec<Value>| {
            let mut o = json!({
                "operationId": format!("{id}{}", ri.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}, "401": {"description": "Unauthorized"}},
            });
            if body {
                o["requestBody"] = json_body(schema);
            }
            o
        };
        let write_params = || {
            vec![
                q(
                    "dryRun",
                    "When present, indicates that modifications should not be persisted.",
                ),
                q(
                    "fieldManager",
                    "fieldManager is a name associated with the actor or entity that is making these changes.",
                ),
                q(
                    "fieldValidation",
                    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
                ),
            ]
        };
        if ri.create_only {
            paths.insert(
                coll,
                json!({"post": op("post", "create", true, write_params())}),
            );
            continue;
        }
        let mut patch_params = write_params();
        patch_params.push(q("force", "Force is going to \"force\" Apply requests."));
        let mut patch = op("patch", "patch", false, patch_params);
        patch["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            "application/strategic-merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        }});
        paths.insert(coll, json!({"get": op("list", "list", false, vec![]), "post": op("post", "create", true, write_params()), "delete": op("deletecollection", "deleteCollection", false, vec![])}));
        paths.insert(item, json!({"get": op("get", "read", false, vec![]), "put": op("put", "replace", true, write_params()), "patch": patch, "delete": op("delete", "delete", false, vec![])}));
    }
    paths
}

fn build(path: &str) -> Option<Bytes> {
    let (group, version) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)?;
    let (defs, kinds) = schemas_for(group, version);
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate_version()},
        "paths": paths_for(group, version, &kinds),
        "components": {"schemas": defs},
    });
    Some(Bytes::from(serde_json::to_vec(&doc).expect("serializable")))
}

fn crate_version() -> &'static str {
    "v1.33.0+skiff"
}

type Cache = Mutex<HashMap<String, Option<Arc<Bytes>>>>;

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The document for `api/v1`, `apis/apps/v1`, ...; None if not served.
pub fn v3_document(path: &str) -> Option<Arc<Bytes>> {
    let path = path.trim_matches('/');
    if let Some(hit) = cache().lock().ok()?.get(path) {
        return hit.clone();
    }
    let doc = build(path).map(Arc::new);
    cache().lock().ok()?.insert(path.to_string(), doc.clone());
    doc
}

/// A stable content hash of a document (FNV-1a, hex), for `?hash=` URLs.
pub fn v3_hash(path: &str) -> Option<String> {
    // The documents are a pure function of this build: hash the identity, not the bytes,
    // so the index does not have to build every document.
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path.trim_matches('/'))?;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}:{g}/{v}", crate_version())
        .bytes()
        .chain(env!("CARGO_PKG_VERSION").bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Some(format!("{h:016X}"))
}

pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let p = gv_path(g, v);
        let hash = v3_hash(&p).unwrap_or_default();
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// Unknown fields of an object, as strict decoding reports them (`spec.containers[0].imagee`).
pub fn unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    strict::unknown_fields(group, version, kind, obj)
}

pub(crate) fn schemas_of(group: &str, version: &str) -> Option<Arc<Value>> {
    type SchemaCache = Mutex<HashMap<String, Arc<Value>>>;
    static C: OnceLock<SchemaCache> = OnceLock::new();
    let c = C.get_or_init(|| Mutex::new(HashMap::new()));
    let key = gv_path(group, version);
    if let Some(v) = c.lock().ok()?.get(&key) {
        return Some(v.clone());
    }
    let (defs, kinds) = schemas_for(group, version);
    let mut m = Map::new();
    m.insert("schemas".into(), Value::Object(defs));
    m.insert(
        "kinds".into(),
        Value::Array(
            kinds
                .into_iter()
                .map(|(s, k, _)| json!({"schema": s, "kind": k}))
                .collect(),
        ),
    );
    let v = Arc::new(Value::Object(m));
    c.lock().ok()?.insert(key, v.clone());
    Some(v)
}

#[cfg(test)]
mod tests;
