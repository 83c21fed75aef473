//! One node of a CRD's openAPIV3Schema, read from JSON into a typed tree (what
//! apiextensions' `JSONSchemaProps` and `Structural` hold). Reading never fails: a key of
//! the wrong JSON type is reported and treated as absent.

use crate::cel::{Rule, RuleReads};
use crate::path::{child, index, key};
use regex::Regex;
use serde_json::{Map, Number, Value};
use skiff_types::FieldError;
use std::collections::BTreeMap;

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug)]
pub(crate) enum Additional {
    Allows(bool),
    Schema(Box<Node>),
}

/// A schema node. Value validations (`allOf` …) are nodes too.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub ty: String,
    pub format: String,
    pub title: String,
    pub description: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub properties: BTreeMap<String, Node>,
    pub additional: Option<Additional>,
    pub items: Option<Box<Node>>,
    /// `items` given as an array of schemas (forbidden).
    pub items_array: bool,
    pub required: Vec<String>,
    pub enum_values: Option<Vec<Value>>,
    pub maximum: Option<Number>,
    pub exclusive_maximum: bool,
    pub minimum: Option<Number>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<Number>,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub pattern: Option<String>,
    pub pattern_re: Option<Regex>,
    pub unique_items: bool,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub preserve_unknown: Option<bool>,
    pub embedded: bool,
    pub int_or_string: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    pub rules: Vec<Rule>,
    /// What `rules` read of `self` and `oldSelf`: all that evaluation converts.
    pub rule_reads: RuleReads,
    /// What this node or any below it carries, worked out once after parsing so that
    /// validation walks skip subtrees with nothing to check.
    pub below: Below,
    /// Keys present that kube does not support (`id`, `$ref`, `patternProperties` …),
    /// with the detail kube reports.
    pub unsupported: Vec<(&'static str, &'static str)>,
}

/// See [`Node::below`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Below {
    pub rules: bool,
    pub list_types: bool,
    pub embedded: bool,
    /// A `default` on this node or below it.
    pub defaults: bool,
}

impl Node {
    /// Fills [`Node::below`] for this node and every node under it.
    pub(crate) fn summarize(&mut self) -> Below {
        let mut b = Below {
            rules: !self.rules.is_empty(),
            list_types: self
                .list_type
                .as_deref()
                .is_some_and(|t| t == "set" || t == "map"),
            embedded: self.embedded,
            defaults: self.default.is_some(),
        };
        let mut add = |c: Below| {
            b.rules |= c.rules;
            b.list_types |= c.list_types;
            b.embedded |= c.embedded;
            b.defaults |= c.defaults;
        };
        for p in self.properties.values_mut() {
            add(p.summarize());
        }
        if let Some(i) = self.items.as_deref_mut() {
            add(i.summarize());
        }
        if let Some(Additional::Schema(a)) = &mut self.additional {
            add(a.summarize());
        }
        self.below = b;
        b
    }

    pub(crate) fn preserves_unknown(&self) -> bool {
        self.preserve_unknown == Some(true)
    }

    /// The schema of `additionalProperties`, if it is one.
    pub(crate) fn additional_schema(&self) -> Option<&Node> {
        match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }

    /// The schema applying to the object field `k`: its property, or additionalProperties.
    pub(crate) fn field(&self, k: &str) -> Option<&Node> {
        self.properties.get(k).or_else(|| self.additional_schema())
    }
}

/// Reads a schema node at `path`; problems with the JSON shape go to `errs`.
pub(crate) fn parse(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Node {
    let mut n = Node::default();
    let Some(m) = v.as_object() else {
        errs.push(FieldError::invalid(path, v.clone(), "must be an object"));
        return n;
    };
    let mut r = Reader { m, path, errs };
    read_generic(&mut r, &mut n);
    read_numbers(&mut r, &mut n);
    read_children(&mut r, &mut n);
    read_extensions(&mut r, &mut n);
    n
}

struct Reader<'a> {
    m: &'a Map<String, Value>,
    path: &'a str,
    errs: &'a mut Vec<FieldError>,
}

impl Reader<'_> {
    fn wrong(&mut self, k: &str, what: &str) {
        let v = self.m.get(k).cloned().unwrap_or(Value::Null);
        self.errs.push(FieldError::invalid(
            child(self.path, k),
            v,
            format!("must be {what}"),
        ));
    }
    fn string(&mut self, k: &str) -> Option<String> {
        match self.m.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            _ => {
                self.wrong(k, "a string");
                None
            }
        }
    }
    fn boolean(&mut self, k: &str) -> Option<bool> {
        match self.m.get(k)? {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            _ => {
                self.wrong(k, "a boolean");
                None
            }
        }
    }
    fn number(&mut self, k: &str) -> Option<Number> {
        match self.m.get(k)? {
            Value::Number(n) => Some(n.clone()),
            Value::Null => None,
            _ => {
                self.wrong(k, "a number");
                None
            }
        }
    }
    fn int(&mut self, k: &str) -> Option<i64> {
        match self.m.get(k)? {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            Value::Null => None,
            _ => {
                self.wrong(k, "an integer");
                None
            }
        }
    }
    fn strings(&mut self, k: &str) -> Vec<String> {
        match self.m.get(k) {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                self.wrong(k, "a list of strings");
                vec![]
            }
        }
    }
    fn node(&mut self, k: &str) -> Option<Node> {
        let v = self.m.get(k)?;
        if v.is_null() {
            return None;
        }
        Some(parse(v, &child(self.path, k), self.errs))
    }
    fn nodes(&mut self, k: &str) -> Vec<Node> {
        match self.m.get(k) {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => {
                let p = child(self.path, k);
                a.iter()
                    .enumerate()
                    .map(|(i, v)| parse(v, &index(&p, i), self.errs))
                    .collect()
            }
            Some(_) => {
                self.wrong(k, "a list of schemas");
                vec![]
            }
        }
    }
}

fn read_generic(r: &mut Reader, n: &mut Node) {
    n.ty = r.string("type").unwrap_or_default();
    n.format = r.string("format").unwrap_or_default();
    n.title = r.string("title").unwrap_or_default();
    n.description = r.string("description").unwrap_or_default();
    n.nullable = r.boolean("nullable").unwrap_or(false);
    n.default = r.m.get("default").filter(|d| !d.is_null()).cloned();
    n.required = r.strings("required");
    n.enum_values = match r.m.get("enum") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => {
            r.wrong("enum", "a list");
            None
        }
    };
    n.pattern = r.string("pattern");
    n.pattern_re = n.pattern.as_deref().and_then(|p| Regex::new(p).ok());
    n.unique_items = r.boolean("uniqueItems").unwrap_or(false);
}

fn read_numbers(r: &mut Reader, n: &mut Node) {
    n.maximum = r.number("maximum");
    n.exclusive_maximum = r.boolean("exclusiveMaximum").unwrap_or(false);
    n.minimum = r.number("minimum");
    n.exclusive_minimum = r.boolean("exclusiveMinimum").unwrap_or(false);
    n.multiple_of = r.number("multipleOf");
    n.max_length = r.int("maxLength");
    n.min_length = r.int("minLength");
    n.max_items = r.int("maxItems");
    n.min_items = r.int("minItems");
    n.max_properties = r.int("maxProperties");
    n.min_properties = r.int("minProperties");
}

fn read_children(r: &mut Reader, n: &mut Node) {
    match r.m.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            let p = child(r.path, "properties");
            for (k, v) in props {
                let node = parse(v, &key(&p, k), r.errs);
                n.properties.insert(k.clone(), node);
            }
        }
        Some(_) => r.wrong("properties", "an object"),
    }
    n.additional = match r.m.get("additionalProperties") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(Additional::Allows(*b)),
        Some(_) => r
            .node("additionalProperties")
            .map(|s| Additional::Schema(Box::new(s))),
    };
    match r.m.get("items") {
        Some(Value::Array(_)) => {
            n.items_array = true;
        }
        _ => n.items = r.node("items").map(Box::new),
    }
    n.all_of = r.nodes("allOf");
    n.any_of = r.nodes("anyOf");
    n.one_of = r.nodes("oneOf");
    n.not = r.node("not").map(Box::new);
    for (k, detail) in [
        ("id", "id is not supported"),
        ("$ref", "$ref is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
    ] {
        if r.m.get(k).is_some_and(|v| !is_zero(v)) {
            n.unsupported.push((k, detail));
        }
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn read_extensions(r: &mut Reader, n: &mut Node) {
    n.preserve_unknown = r.boolean("x-kubernetes-preserve-unknown-fields");
    n.embedded = r.boolean("x-kubernetes-embedded-resource").unwrap_or(false);
    n.int_or_string = r.boolean("x-kubernetes-int-or-string").unwrap_or(false);
    n.list_type = r.string("x-kubernetes-list-type");
    n.list_map_keys = r.strings("x-kubernetes-list-map-keys");
    n.map_type = r.string("x-kubernetes-map-type");
    match r.m.get("x-kubernetes-validations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            let p = child(r.path, "x-kubernetes-validations");
            for (i, v) in rules.iter().enumerate() {
                n.rules.push(Rule::read(v, &index(&p, i), r.errs));
            }
            n.rule_reads = RuleReads::union(&n.rules);
        }
        Some(_) => r.wrong("x-kubernetes-validations", "a list of rules"),
    }
}
