//! Whether a schema is structural (apiextensions' `ValidateStructural`): every field has a
//! type, value validations (`allOf`, `anyOf`, `oneOf`, `not`) only constrain values of
//! fields the structural part already specifies, metadata only names `name` and
//! `generateName`. Errors come sorted, as kube sorts them.

use crate::node::{Additional, Node};
use crate::path::{child, index, key};
use serde_json::Value;
use skiff_types::FieldError;

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// All structural-schema problems of the root `n` at `path`, sorted.
pub(crate) fn validate(n: &Node, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    invariants(n, Level::Root, path, &mut errs);
    completeness(n, n, path, path, &mut errs);
    errs.sort_by_key(|e| e.to_string());
    errs
}

fn invariants(n: &Node, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    if n.ty == "array" && n.items.is_none() {
        errs.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(items) = &n.items {
        invariants(items, Level::Item, &child(path, "items"), errs);
    }
    for (k, p) in &n.properties {
        invariants(p, Level::Field, &key(&child(path, "properties"), k), errs);
    }
    if let Some(a) = &n.additional {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Additional::Schema(s) = a {
            invariants(s, Level::Field, &child(path, "additionalProperties"), errs);
        }
    }
    extensions(n, path, errs);
    value_validation(n, true, path, errs);
    types(n, lvl, path, errs);
    meta_fields(n, lvl, path, errs);
}

fn extensions(n: &Node, path: &str, errs: &mut Vec<FieldError>) {
    if n.int_or_string && n.preserves_unknown() {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if n.int_or_string && n.embedded {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
}

fn types(n: &Node, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let tpath = child(path, "type");
    if n.embedded && n.ty != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        errs.push(if n.ty.is_empty() {
            FieldError::required(tpath.clone(), detail)
        } else {
            FieldError::invalid(tpath.clone(), Value::String(n.ty.clone()), detail)
        });
    } else if n.ty.is_empty() && !n.int_or_string && !n.preserves_unknown() {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(tpath.clone(), detail));
    }
    if n.embedded && n.additional.is_some() {
        errs.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !n.ty.is_empty() && n.ty != "object" {
        errs.push(FieldError::invalid(
            tpath,
            Value::String(n.ty.clone()),
            "must be object at the root",
        ));
    }
    if n.embedded && !n.preserves_unknown() && n.properties.is_empty() {
        errs.push(FieldError::required(
            child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

fn meta_fields(n: &Node, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let check = lvl == Level::Root || n.embedded;
    let props = child(path, "properties");
    for f in ["kind", "apiVersion"] {
        if let Some(p) = n.properties.get(f).filter(|p| check && p.ty != "string") {
            errs.push(FieldError::invalid(
                child(&key(&props, f), "type"),
                Value::String(p.ty.clone()),
                "must be string",
            ));
        }
    }
    let Some(meta) = n.properties.get("metadata") else {
        return;
    };
    let mpath = key(&props, "metadata");
    if check && meta.ty != "object" {
        errs.push(FieldError::invalid(
            child(&mpath, "type"),
            Value::String(meta.ty.clone()),
            "must be object",
        ));
    }
    if lvl == Level::Root && !metadata_is_implicit(meta) {
        errs.push(FieldError::forbidden(
            mpath,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// Root metadata may only have a type, a default (checked elsewhere) and the
/// properties name and generateName.
fn metadata_is_implicit(m: &Node) -> bool {
    let names_only = m
        .properties
        .keys()
        .all(|k| k == "name" || k == "generateName");
    names_only
        && m.format.is_empty()
        && m.title.is_empty()
        && m.description.is_empty()
        && !m.nullable
        && m.additional.is_none()
        && m.items.is_none()
        && m.required.is_empty()
        && m.enum_values.is_none()
        && m.pattern.is_none()
        && m.max_length.is_none()
        && m.min_length.is_none()
        && m.max_properties.is_none()
        && m.min_properties.is_none()
        && m.all_of.is_empty()
        && m.any_of.is_empty()
        && m.one_of.is_empty()
        && m.not.is_none()
        && m.preserve_unknown.is_none()
        && !m.embedded
        && !m.int_or_string
        && m.list_type.is_none()
        && m.map_type.is_none()
        && m.rules.is_empty()
}

/// Whether `anyOf` is exactly `[{type: integer}, {type: string}]` (int-or-string's shape).
fn int_or_string_any_of(any_of: &[Node]) -> bool {
    any_of.len() == 2
        && any_of[0].ty == "integer"
        && any_of[1].ty == "string"
        && any_of.iter().all(Node::is_empty_except_type)
}

impl Node {
    fn is_empty_except_type(&self) -> bool {
        self.format.is_empty()
            && self.title.is_empty()
            && self.description.is_empty()
            && self.properties.is_empty()
            && self.all_of.is_empty()
            && self.any_of.is_empty()
            && self.one_of.is_empty()
            && self.not.is_none()
            && self.enum_values.is_none()
            && self.pattern.is_none()
    }
}

/// The value validations of a structural node (`top`) or of a nested one.
fn value_validation(n: &Node, top: bool, path: &str, errs: &mut Vec<FieldError>) {
    let skip_any_of = top && int_or_string_any_of(&n.any_of);
    let skip_first_all_of_any_of = top
        && n.all_of
            .first()
            .is_some_and(|a| int_or_string_any_of(&a.any_of));
    if !skip_any_of {
        for (i, v) in n.any_of.iter().enumerate() {
            nested(v, false, &index(&child(path, "anyOf"), i), errs);
        }
    }
    for (i, v) in n.all_of.iter().enumerate() {
        nested(
            v,
            skip_first_all_of_any_of && i == 0,
            &index(&child(path, "allOf"), i),
            errs,
        );
    }
    for (i, v) in n.one_of.iter().enumerate() {
        nested(v, false, &index(&child(path, "oneOf"), i), errs);
    }
    if let Some(v) = &n.not {
        nested(v, false, &child(path, "not"), errs);
    }
    if let Some(p) = &n.pattern
        && let Err(e) = regex::Regex::new(p)
    {
        errs.push(FieldError::invalid(
            child(path, "pattern"),
            Value::String(p.clone()),
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
}

/// A node inside allOf/anyOf/oneOf/not: only value validations are allowed.
fn nested(v: &Node, skip_any_of: bool, path: &str, errs: &mut Vec<FieldError>) {
    let mut inner = Vec::new();
    if !skip_any_of {
        for (i, a) in v.any_of.iter().enumerate() {
            nested(a, false, &index(&child(path, "anyOf"), i), &mut inner);
        }
    }
    for (i, a) in v.all_of.iter().enumerate() {
        nested(a, false, &index(&child(path, "allOf"), i), &mut inner);
    }
    for (i, a) in v.one_of.iter().enumerate() {
        nested(a, false, &index(&child(path, "oneOf"), i), &mut inner);
    }
    if let Some(a) = &v.not {
        nested(a, false, &child(path, "not"), &mut inner);
    }
    errs.append(&mut inner);
    if let Some(items) = &v.items {
        nested(items, false, &child(path, "items"), errs);
    }
    for (k, p) in &v.properties {
        nested(p, false, &key(&child(path, "properties"), k), errs);
    }
    forbidden_in_nested(v, path, errs);
}

fn forbidden_in_nested(v: &Node, path: &str, errs: &mut Vec<FieldError>) {
    let mut forbid = |cond: bool, f: &str, detail: &str| {
        if cond {
            errs.push(FieldError::forbidden(child(path, f), detail));
        }
    };
    forbid(!v.ty.is_empty(), "type", "must be empty to be structural");
    forbid(
        v.additional.is_some(),
        "additionalProperties",
        "must be undefined to be structural",
    );
    forbid(
        v.default.is_some(),
        "default",
        "must be undefined to be structural",
    );
    forbid(
        !v.title.is_empty(),
        "title",
        "must be empty to be structural",
    );
    forbid(
        !v.description.is_empty(),
        "description",
        "must be empty to be structural",
    );
    forbid(v.nullable, "nullable", "must be false to be structural");
    forbid(
        v.preserves_unknown(),
        "x-kubernetes-preserve-unknown-fields",
        "must be false to be structural",
    );
    forbid(
        v.embedded,
        "x-kubernetes-embedded-resource",
        "must be false to be structural",
    );
    forbid(
        v.int_or_string,
        "x-kubernetes-int-or-string",
        "must be false to be structural",
    );
    forbid(
        !v.list_map_keys.is_empty(),
        "x-kubernetes-list-map-keys",
        "must be empty to be structural",
    );
    forbid(
        v.list_type.is_some(),
        "x-kubernetes-list-type",
        "must be undefined to be structural",
    );
    forbid(
        v.map_type.is_some(),
        "x-kubernetes-map-type",
        "must be undefined to be structural",
    );
    forbid(
        !v.rules.is_empty(),
        "x-kubernetes-validations",
        "must be empty to be structural",
    );
    if v.properties.contains_key("metadata") {
        errs.push(FieldError::forbidden(
            key(&child(path, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Properties named in value validations must exist in the structural schema.
fn completeness(v: &Node, s: &Node, spath: &str, vpath: &str, errs: &mut Vec<FieldError>) {
    let groups = [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ];
    if let Some(not) = &v.not {
        nested_completeness(not, Some(s), spath, &child(vpath, "not"), errs);
    }
    for (name, list) in groups {
        for (i, n) in list.iter().enumerate() {
            nested_completeness(n, Some(s), spath, &index(&child(vpath, name), i), errs);
        }
    }
}

fn nested_completeness(
    v: &Node,
    s: Option<&Node>,
    spath: &str,
    vpath: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            spath,
            format!("because it is defined in {vpath}"),
        ));
        return;
    };
    completeness(v, s, spath, vpath, errs);
    if let Some(items) = &v.items {
        nested_completeness(
            items,
            s.items.as_deref(),
            &child(spath, "items"),
            &child(vpath, "items"),
            errs,
        );
    }
    for (k, vf) in &v.properties {
        let sp = key(&child(spath, "properties"), k);
        let vp = key(&child(vpath, "properties"), k);
        match s.properties.get(k) {
            Some(sf) => nested_completeness(vf, Some(sf), &sp, &vp, errs),
            None => errs.push(FieldError::required(
                sp,
                format!("because it is defined in {vp}"),
            )),
        }
    }
}
