//! What serving one version of a CustomResourceDefinition takes beyond its
//! [`ResourceInfo`]: the compiled schema (pruning, defaults, validation with CEL),
//! printer columns, selectable fields, scale paths, deprecation and the storage version.
//! Built from a CRD's typed [`Definition`] and the names the CRD controller accepted.

use serde_json::Value;
use skiff_admission::ConversionWebhook;
use skiff_crd::{ConversionStrategy, Definition, Names, ScalePaths, Schema, Version};
use skiff_printers::custom::CustomColumn;
use skiff_types::registry::{CRUD, ResourceInfo, Scope, StrList};
use skiff_types::{FieldError, Subresource};
use std::borrow::Cow;
use std::sync::Arc;

/// One served version of a CRD.
#[derive(Debug, Clone)]
pub struct CustomVersion {
    /// `metadata.name` of the CRD (`<plural>.<group>`).
    pub crd: String,
    /// Objects are stored in this version.
    pub storage: bool,
    pub storage_version: String,
    /// The `Warning:` header a request to a deprecated version gets.
    pub deprecation: Option<String>,
    pub schema: Schema,
    /// `names.listKind` (not always `<kind>List`).
    pub list_kind: String,
    /// The schema as written, for OpenAPI documents.
    pub raw_schema: Value,
    /// `additionalPrinterColumns`, ready for the table printer.
    pub columns: Vec<CustomColumn>,
    pub scale: Option<ScalePaths>,
    /// `selectableFields` jsonPaths (`.spec.color`).
    pub selectable_fields: Vec<String>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// The CRD has more than this version: a stored object may be in another.
    pub several_versions: bool,
    /// `spec.conversion.webhook` when the strategy is `Webhook`; None: versions differ
    /// only in `apiVersion`.
    pub conversion: Option<Arc<ConversionWebhook>>,
}

/// The resource and its custom part for one served version of an accepted CRD.
pub fn served_version(
    def: &Definition,
    v: &Version,
    accepted: &Names,
    terminating: bool,
) -> Result<(ResourceInfo, CustomVersion), String> {
    let raw_schema = v.schema.clone().unwrap_or_else(
        || serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    let schema = Schema::compile(&raw_schema, "schema").map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut subresources = Vec::new();
    if v.subresources.status {
        subresources.push(Subresource::Status);
    }
    if v.subresources.scale.is_some() {
        subresources.push(Subresource::Scale);
    }
    let info = ResourceInfo {
        group: Cow::Owned(def.group.clone()),
        version: Cow::Owned(v.name.clone()),
        kind: Cow::Owned(accepted.kind.clone()),
        plural: Cow::Owned(accepted.plural.clone()),
        singular: Cow::Owned(accepted.singular.clone()),
        scope: match def.scope {
            skiff_crd::Scope::Namespaced => Scope::Namespaced,
            skiff_crd::Scope::Cluster => Scope::Cluster,
        },
        short_names: StrList::Owned(accepted.short_names.clone()),
        categories: StrList::Owned(accepted.categories.clone()),
        subresources: Cow::Owned(subresources),
        verbs: CRUD,
        storage_prefix: Cow::Owned(format!("/registry/{}/{}", def.group, accepted.plural)),
        virtual_create_only: false,
    };
    let deprecation = v.deprecated.then(|| {
        v.deprecation_warning
            .clone()
            .unwrap_or_else(|| format!("{}/{} {} is deprecated", def.group, v.name, accepted.kind))
    });
    let custom = CustomVersion {
        crd: def.name.clone(),
        storage: v.storage,
        storage_version: def
            .storage_version()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| v.name.clone()),
        deprecation,
        schema,
        raw_schema,
        list_kind: accepted.list_kind.clone(),
        columns: v.additional_printer_columns.iter().map(column).collect(),
        scale: v.subresources.scale.clone(),
        selectable_fields: v.selectable_fields.clone(),
        terminating,
        several_versions: def.versions.len() > 1,
        conversion: conversion_webhook(def)?,
    };
    Ok((info, custom))
}

fn conversion_webhook(def: &Definition) -> Result<Option<Arc<ConversionWebhook>>, String> {
    if def.conversion.strategy != ConversionStrategy::Webhook {
        return Ok(None);
    }
    let config = def.conversion.webhook_client_config.as_ref();
    let hook = ConversionWebhook::new(
        config.unwrap_or(&Value::Null),
        def.conversion.conversion_review_versions.clone(),
    )?;
    Ok(Some(Arc::new(hook)))
}

fn column(c: &skiff_crd::PrinterColumn) -> CustomColumn {
    CustomColumn {
        name: c.name.clone(),
        type_: c.type_.clone(),
        format: c.format.clone(),
        description: c.description.clone(),
        priority: c.priority,
        json_path: c.json_path.clone(),
    }
}

impl CustomVersion {
    /// Fields the schema does not know, as field validation reports them.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        self.schema.unknown_fields(obj)
    }

    /// What decoding does to a custom object in kube: unknown fields pruned, defaults
    /// applied.
    pub fn prepare(&self, obj: &mut Value) {
        self.schema.prune(obj);
        self.schema.apply_defaults(obj);
    }

    /// Metadata rules, then the schema with its CEL rules (`old` on update, for
    /// transition rules).
    pub fn validate(&self, ri: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs =
            skiff_validation::validate_object_meta(&ri.group, &ri.plural, obj, ri.namespaced());
        errs.extend(self.schema.validate(obj, old));
        errs
    }
}

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
