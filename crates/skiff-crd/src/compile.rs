//! `Schema::compile`: everything apiextensions reports about one version's
//! openAPIV3Schema — structural-schema problems, the OpenAPI subset kube allows,
//! list/map type extensions, rule fields, defaults that do not validate or are not
//! pruned, and rules that fail to compile.

use crate::cel;
use crate::node::{Additional, Node};
use crate::openapi::Validator;
use crate::path::{child, index, key};
use serde_json::json;
use skiff_types::FieldError;

const OPENAPI_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
const META: [&str; 3] = ["metadata", "kind", "apiVersion"];

/// Where in the schema a node sits, for the checks that depend on it.
#[derive(Clone, Default)]
struct Ctx {
    root: bool,
    inside_meta: bool,
    forbid_defaults: Option<String>,
    uncorrelatable: Option<String>,
}

impl Ctx {
    fn forbid_old_self(mut self, path: &str) -> Ctx {
        self.uncorrelatable.get_or_insert_with(|| path.to_string());
        self
    }
}

/// All problems of the parsed root schema at `base`, in kube's grouping.
pub(crate) fn problems(root: &Node, base: &str) -> Vec<FieldError> {
    let mut all = crate::structural::validate(root, base);
    if all.is_empty() {
        defaults(root, base, true, false, &mut all);
    }
    let (mut schema, mut cel_errs) = (Vec::new(), Vec::new());
    if root.nullable {
        schema.push(FieldError::forbidden(
            child(base, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let ctx = Ctx {
        root: true,
        ..Ctx::default()
    };
    check(root, base, &ctx, &mut schema, &mut cel_errs);
    all.append(&mut schema);
    if all.is_empty() {
        all.append(&mut cel_errs);
    }
    all
}

fn check(
    n: &Node,
    path: &str,
    ctx: &Ctx,
    errs: &mut Vec<FieldError>,
    cel_errs: &mut Vec<FieldError>,
) {
    standard(n, path, ctx, errs);
    if n.unique_items {
        errs.push(FieldError::forbidden(
            child(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    children(n, path, ctx, errs, cel_errs);
    if n.preserve_unknown == Some(false) {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            json!(false),
            "must be true or undefined",
        ));
    }
    map_and_list_types(n, path, errs);
    map_list_keys(n, path, errs);
    let rules_path = child(path, "x-kubernetes-validations");
    for (i, r) in n.rules.iter().enumerate() {
        r.check(&index(&rules_path, i), errs);
        if !r.field_path.trim().is_empty() && !field_path_valid(n, &r.field_path) {
            errs.push(FieldError::invalid(
                child(&index(&rules_path, i), "fieldPath"),
                json!(r.field_path),
                "must be a valid path",
            ));
        }
        r.check_compiled(
            &index(&rules_path, i),
            (n, ctx.root || n.embedded),
            ctx.uncorrelatable.as_deref(),
            cel_errs,
        );
    }
}

/// specStandardValidatorV3.validate.
fn standard(n: &Node, path: &str, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    if !n.ty.is_empty() && !OPENAPI_TYPES.contains(&n.ty.as_str()) {
        if n.ty == "null" {
            errs.push(FieldError::forbidden(
                child(path, "type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
        } else {
            errs.push(FieldError::not_supported(
                child(path, "type"),
                json!(n.ty),
                &OPENAPI_TYPES,
            ));
        }
    }
    if let (Some(_), Some(reason)) = (&n.default, &ctx.forbid_defaults) {
        let detail = if reason.is_empty() {
            "must not be set".to_string()
        } else {
            format!("must not be set {reason}")
        };
        errs.push(FieldError::forbidden(child(path, "default"), detail));
    }
    for (k, detail) in &n.unsupported {
        errs.push(FieldError::forbidden(child(path, k), *detail));
    }
    if n.items_array {
        errs.push(FieldError::forbidden(
            child(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if ctx.inside_meta && n.embedded {
        errs.push(FieldError::forbidden(
            child(path, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
}

fn children(
    n: &Node,
    path: &str,
    ctx: &Ctx,
    errs: &mut Vec<FieldError>,
    cel_errs: &mut Vec<FieldError>,
) {
    if let Some(a) = &n.additional {
        let forbidden = matches!(a, Additional::Schema(_) | Additional::Allows(false));
        if !n.properties.is_empty() && forbidden {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Additional::Schema(s) = a {
            let mut sub = ctx.clone();
            sub.root = false;
            if ctx.inside_meta {
                sub.forbid_defaults =
                    Some("inside additionalProperties applying to object metadata".into());
            }
            check(
                s,
                &child(path, "additionalProperties"),
                &sub,
                errs,
                cel_errs,
            );
        }
    }
    let correlatable = matches!(
        n.map_type.as_deref(),
        None | Some("granular") | Some("atomic")
    );
    for (k, p) in &n.properties {
        let mut sub = Ctx {
            root: false,
            ..ctx.clone()
        };
        if !correlatable {
            sub = sub.forbid_old_self(path);
        }
        if (ctx.root || n.embedded) && META.contains(&k.as_str()) {
            sub.inside_meta = true;
            if ctx.root {
                sub.forbid_defaults = Some(format!("in top-level {k}"));
            }
        }
        check(p, &key(&child(path, "properties"), k), &sub, errs, cel_errs);
    }
    let plain = Ctx {
        root: false,
        ..ctx.clone()
    };
    let mut no_cel = Vec::new();
    if let Some(not) = &n.not {
        check(not, &child(path, "not"), &plain, errs, &mut no_cel);
    }
    for (name, list) in [
        ("allOf", &n.all_of),
        ("oneOf", &n.one_of),
        ("anyOf", &n.any_of),
    ] {
        for (i, s) in list.iter().enumerate() {
            check(s, &index(&child(path, name), i), &plain, errs, &mut no_cel);
        }
    }
    if let Some(items) = &n.items {
        let mut sub = plain.clone();
        if n.list_type.as_deref() != Some("map") {
            sub = sub.forbid_old_self(path);
        }
        check(items, &child(path, "items"), &sub, errs, cel_errs);
    }
}

fn map_and_list_types(n: &Node, path: &str, errs: &mut Vec<FieldError>) {
    let tpath = child(path, "type");
    if let Some(mt) = &n.map_type {
        if n.ty != "object" {
            let d = "must be object if x-kubernetes-map-type is specified";
            errs.push(if n.ty.is_empty() {
                FieldError::required(tpath.clone(), d)
            } else {
                FieldError::invalid(tpath.clone(), json!(n.ty), d)
            });
        }
        if mt != "atomic" && mt != "granular" {
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-map-type"),
                json!(mt),
                &["atomic", "granular"],
            ));
        }
    }
    if let Some(lt) = &n.list_type {
        if n.ty != "array" {
            let d = "must be array if x-kubernetes-list-type is specified";
            errs.push(if n.ty.is_empty() {
                FieldError::required(tpath, d)
            } else {
                FieldError::invalid(tpath, json!(n.ty), d)
            });
        } else if lt == "set" {
            set_items_atomic(n, path, errs);
        }
        if lt != "atomic" && lt != "set" && lt != "map" {
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-list-type"),
                json!(lt),
                &["atomic", "set", "map"],
            ));
        }
    }
}

fn set_items_atomic(n: &Node, path: &str, errs: &mut Vec<FieldError>) {
    let Some(is) = &n.items else { return };
    let d = "must be atomic as item of a list with x-kubernetes-list-type=set";
    let items = child(path, "items");
    match is.ty.as_str() {
        "array" if is.list_type.as_deref().is_some_and(|t| t != "atomic") => {
            errs.push(FieldError::invalid(
                child(&items, "x-kubernetes-list-type"),
                json!(is.list_type),
                d,
            ))
        }
        "object" if is.map_type.as_deref() != Some("atomic") => errs.push(FieldError::invalid(
            child(&items, "x-kubernetes-map-type"),
            json!(is.list_type),
            d,
        )),
        _ => {}
    }
}

fn map_list_keys(n: &Node, path: &str, errs: &mut Vec<FieldError>) {
    let keys_path = child(path, "x-kubernetes-list-map-keys");
    if !n.list_map_keys.is_empty() {
        let d = "must be map if x-kubernetes-list-map-keys is non-empty";
        let lt_path = child(path, "x-kubernetes-list-type");
        match n.list_type.as_deref() {
            None => errs.push(FieldError::required(lt_path, d)),
            Some("map") => {}
            Some(other) => errs.push(FieldError::invalid(lt_path, json!(other), d)),
        }
    }
    let lt = n.list_type.as_deref();
    if lt == Some("map") {
        if n.list_map_keys.is_empty() {
            errs.push(FieldError::required(
                keys_path.clone(),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match &n.items {
            None if !n.items_array => errs.push(FieldError::required(
                child(path, "items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(is) if is.ty != "object" => errs.push(FieldError::invalid(
                child(&child(path, "items"), "type"),
                json!(is.ty),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => map_keys_of_items(n, is, path, errs),
            None => {}
        }
    }
    if let (Some("set" | "map"), Some(is)) = (lt, &n.items) {
        map_set_keys(n, is, path, errs);
    }
}

fn map_keys_of_items(n: &Node, is: &Node, path: &str, errs: &mut Vec<FieldError>) {
    let keys_path = child(path, "x-kubernetes-list-map-keys");
    let props = child(&child(path, "items"), "properties");
    for (i, k) in n.list_map_keys.iter().enumerate() {
        match is.properties.get(k) {
            Some(s) if s.ty == "array" || s.ty == "object" => errs.push(FieldError::invalid(
                child(&key(&props, k), "type"),
                json!(is.ty),
                "must be a scalar type if parent array's x-kubernetes-list-type is map",
            )),
            Some(_) => {}
            None => errs.push(FieldError::invalid(
                keys_path.clone(),
                json!(n.list_map_keys),
                "entries must all be names of item properties",
            )),
        }
        if n.list_map_keys[..i].contains(k) {
            errs.push(FieldError::invalid(
                keys_path.clone(),
                json!(n.list_map_keys),
                "must not contain duplicate entries",
            ));
        }
    }
}

/// validateMapListKeysMapSet: no nullable items; map keys required or defaulted.
fn map_set_keys(n: &Node, is: &Node, path: &str, errs: &mut Vec<FieldError>) {
    let items = child(path, "items");
    let lt = n.list_type.as_deref().unwrap_or_default();
    if is.nullable {
        errs.push(FieldError::forbidden(
            child(&items, "nullable"),
            format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
        ));
    }
    if lt != "map" {
        return;
    }
    let props = child(&items, "properties");
    for k in &n.list_map_keys {
        let Some(p) = is.properties.get(k) else {
            continue;
        };
        if !is.required.contains(k) && p.default.is_none() {
            errs.push(FieldError::required(
                child(&key(&props, k), "default"),
                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
            ));
        }
        if p.nullable {
            errs.push(FieldError::forbidden(
                child(&key(&props, k), "nullable"),
                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
            ));
        }
    }
}

/// Whether a rule's fieldPath (`.a.b`, `['a.b']`, `.list[0]` not allowed) names a
/// property under `n`.
fn field_path_valid(n: &Node, fp: &str) -> bool {
    let mut cur = n;
    let mut rest = fp.trim();
    while !rest.is_empty() {
        let (name, tail) = if let Some(r) = rest.strip_prefix("['") {
            match r.split_once("']") {
                Some((name, tail)) => (name, tail),
                None => return false,
            }
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        } else {
            return false;
        };
        match cur.field(name) {
            Some(next) if !name.is_empty() => cur = next,
            _ => return false,
        }
        rest = tail;
    }
    true
}

/// ValidateDefaults: every default must be pruned, validate against its schema and pass
/// its rules (with itself as the old value, so transition rules run too).
fn defaults(n: &Node, path: &str, root: bool, inside_meta: bool, errs: &mut Vec<FieldError>) {
    if let (Some(d), false) = (&n.default, inside_meta) {
        let dpath = child(path, "default");
        let mut pruned = d.clone();
        if !crate::prune::prune_value(n, &mut pruned).is_empty() {
            errs.push(FieldError::invalid(
                dpath.clone(),
                d.clone(),
                "must not have unknown fields",
            ));
        }
        let mut v = Validator {
            base: &dpath,
            errs: Vec::new(),
        };
        v.check(n, "", d);
        if !v.errs.is_empty() {
            errs.append(&mut v.errs);
        } else {
            cel::validate_tree(n, &dpath, d, Some(d), false, errs);
        }
    }
    if let Some(items) = &n.items {
        defaults(items, &child(path, "items"), false, inside_meta, errs);
    }
    for (k, p) in &n.properties {
        let meta = inside_meta || ((root || n.embedded) && k == "metadata");
        defaults(p, &key(&child(path, "properties"), k), false, meta, errs);
    }
    if let Some(ap) = n.additional_schema() {
        defaults(
            ap,
            &child(path, "additionalProperties"),
            false,
            inside_meta,
            errs,
        );
    }
}
