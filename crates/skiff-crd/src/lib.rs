//! What kube-apiserver's apiextensions-apiserver does to CustomResourceDefinitions and
//! to custom objects, as pure functions on `serde_json::Value` (no IO, no async).
//!
//! # Surface
//!
//! - [`Schema`]: one compiled structural schema (a CRD version's
//!   `schema.openAPIV3Schema`), cheap to clone (an `Arc` inside):
//!   - [`Schema::compile`]`(schema, base) -> Result<Schema, Vec<FieldError>>`: the
//!     problems kube reports for that schema in a CRD (structural schema, the OpenAPI
//!     subset, list/map types, defaults, `x-kubernetes-validations` fields and rules
//!     that fail to compile), paths under `base`
//!     (`spec.validation.openAPIV3Schema` when all versions share it, else
//!     `spec.versions[i].schema.openAPIV3Schema`);
//!   - [`Schema::prune`]`(&mut obj) -> Vec<String>`: drops unknown fields, returns their
//!     paths sorted (`spec.foo`, `metadata.bogus`), for `unknown field "spec.foo"`;
//!   - [`Schema::apply_defaults`]`(&mut obj)`: defaults, then drops non-nullable nulls
//!     without a default;
//!   - [`Schema::validate`]`(obj, old) -> Vec<FieldError>`: OpenAPI validation, embedded
//!     resources, list-type set/map uniqueness, then (unless an earlier error blocks them,
//!     as kube's `hasBlockingErr`) the CEL rules, transition rules only when `old` has a
//!     value at that path;
//!   - [`Schema::list_type`]`(path) -> Option<ListType>` and [`Schema::map_type`] for
//!     server-side apply (path segments are field names, `*` for an item/map value);
//!   - [`Schema::value_at`]`(obj, ".spec.replicas")`: the scale subresource's paths.
//! - [`validate_crd`]`(crd, old) -> Vec<FieldError>`: apiextensions.k8s.io/v1 validation
//!   of a CRD (create when `old` is `None`).
//! - [`default_crd`]`(&mut crd)`: apiextensions' v1 defaulting of a CRD.
//! - [`Definition::from_crd`]`(crd) -> Result<Definition, String>`: what a CRD asks the
//!   server to serve, typed ([`Names`], [`Scope`], [`Version`], [`Subresources`],
//!   [`ScalePaths`], [`PrinterColumn`], [`Conversion`]).
//!
//! Errors are `skiff_types::FieldError`s worded as kube words them (for instance
//! `spec.replicas: Invalid value: "string": spec.replicas in body must be of type
//! integer: "string"`). See the module docs of `cel` for what the CEL environment
//! covers and what it leaves out.

mod cel;
mod compile;
mod crd;
mod defaults;
mod definition;
mod embedded;
mod formats;
mod listtype;
mod names;
mod node;
mod openapi;
mod patchshape;
mod path;
mod prune;
mod structural;

pub use crd::validate_crd;
pub use definition::{
    Conversion, ConversionStrategy, Definition, Names, PrinterColumn, ScalePaths, Scope,
    Subresources, Version, default_crd,
};
pub use listtype::ListType;
pub use patchshape::PatchShape;

use node::Node;
use serde_json::Value;
use skiff_types::{FieldError, FieldErrorType};
use std::sync::Arc;

/// One compiled structural schema. Clones share it.
#[derive(Clone, Debug)]
pub struct Schema {
    root: Arc<Node>,
}

impl Schema {
    /// Compiles `schema`; errors are what kube reports for it in a CRD, under `base`.
    pub fn compile(schema: &Value, base: &str) -> Result<Schema, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut root = node::parse(schema, base, &mut errs);
        root.summarize();
        if errs.is_empty() {
            errs = compile::problems(&root, base);
        }
        if errs.is_empty() {
            Ok(Schema {
                root: Arc::new(root),
            })
        } else {
            Err(errs)
        }
    }

    /// Drops the fields the schema does not know; returns their paths, sorted, without a
    /// leading dot (`spec.foo`, `spec.items[0].bar`, `metadata.bogus`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        prune::prune_root(&self.root, obj)
    }

    /// Applies the schema's defaults (absent fields, and nulls of non-nullable ones),
    /// recursing into defaulted values, array items and additionalProperties; then drops
    /// nulls the schema neither allows nor defaults.
    pub fn apply_defaults(&self, obj: &mut Value) {
        defaults::apply(obj, &self.root);
    }

    /// Validates a custom object (`old`: its stored version, on update).
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut v = openapi::Validator {
            base: "",
            errs: Vec::new(),
        };
        v.check(&self.root, "", obj);
        let mut errs = v.errs;
        embedded::validate(&self.root, "", obj, &mut errs);
        let mut list_errs = Vec::new();
        listtype::validate(&self.root, "", obj, &mut list_errs);
        let old_list_ok = old.is_none_or(|o| {
            let mut e = Vec::new();
            listtype::validate(&self.root, "", o, &mut e);
            e.is_empty()
        });
        if old_list_ok {
            errs.append(&mut list_errs);
        }
        if !self.root.below.rules {
            return errs;
        }
        if errs.iter().any(blocks_rules) {
            // kube 1.33 words this `field.Invalid(nil, nil, …)`.
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                "<nil>",
                Some(Value::String("null".into())),
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            cel::validate_tree(&self.root, "", obj, old, true, &mut errs);
        }
        errs
    }

    /// The list type at `path` (field names, `*` for an item or map value), if the
    /// schema has an array there.
    pub fn list_type(&self, path: &[&str]) -> Option<ListType> {
        listtype::of(self.node_at(path)?)
    }

    /// `x-kubernetes-map-type` at `path` (`"granular"` when unset), if the schema has an
    /// object there.
    pub fn map_type(&self, path: &[&str]) -> Option<String> {
        let n = self.node_at(path)?;
        (n.ty == "object").then(|| n.map_type.clone().unwrap_or_else(|| "granular".into()))
    }

    fn node_at(&self, path: &[&str]) -> Option<&Node> {
        let mut n: &Node = &self.root;
        for seg in path {
            n = if *seg == "*" {
                n.items.as_deref().or_else(|| n.additional_schema())?
            } else {
                n.properties.get(*seg)?
            };
        }
        Some(n)
    }

    /// The value at a simple JSON path (`.spec.replicas`), as the scale subresource
    /// reads specReplicasPath and friends.
    pub fn value_at<'a>(obj: &'a Value, json_path: &str) -> Option<&'a Value> {
        let rest = json_path.strip_prefix('.')?;
        if rest.is_empty() {
            return Some(obj);
        }
        rest.split('.').try_fold(obj, |v, seg| v.get(seg))
    }
}

/// kube's hasBlockingErr: errors after which CEL rules are not run.
fn blocks_rules(e: &FieldError) -> bool {
    matches!(
        e.kind,
        FieldErrorType::NotSupported
            | FieldErrorType::Required
            | FieldErrorType::TooLong
            | FieldErrorType::TooMany
            | FieldErrorType::TypeInvalid
    )
}

#[cfg(test)]
mod tests;
