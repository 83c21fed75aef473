//! OpenAPI schema validation of a value, as kube-openapi's SchemaValidator does it and
//! apiextensions turns its results into field errors (`kubeOpenAPIResultToFieldErrors`):
//! kube-openapi names fields `spec.items[2].name` (map keys as `.key`) and says `in body`.

use crate::formats;
use crate::node::{Additional, Node};
use crate::path::{child, go_float, go_number, go_quote, json_type};
use serde_json::{Number, Value, json};
use skiff_types::{FieldError, FieldErrorType};

/// Collects errors; `base` is the field path kube's errors are relative to
/// (empty for an object, `….default` when validating a default).
pub(crate) struct Validator<'a> {
    pub base: &'a str,
    pub errs: Vec<FieldError>,
}

impl Validator<'_> {
    fn path(&self, name: &str) -> String {
        let name = name.trim_start_matches('.');
        if name.is_empty() {
            self.base.to_string()
        } else {
            child(self.base, name)
        }
    }

    fn push(&mut self, kind: FieldErrorType, name: &str, value: Option<Value>, detail: String) {
        let path = self.path(name);
        self.errs.push(FieldError::new(kind, path, value, detail));
    }

    /// A plain (non-field) kube-openapi error: reported at the base path with value "".
    fn composite(&mut self, detail: String) {
        let path = self.base.to_string();
        self.errs.push(FieldError::invalid(path, json!(""), detail));
    }

    /// Validates `v` against `n`; `name` is kube-openapi's path of `v`.
    pub(crate) fn check(&mut self, n: &Node, name: &str, v: &Value) {
        if !self.check_type(n, name, v) {
            return;
        }
        if v.is_null() {
            return;
        }
        self.check_composition(n, name, v);
        match v {
            Value::String(s) => self.check_string(n, name, s),
            Value::Number(x) => self.check_number(n, name, x),
            Value::Array(a) => self.check_array(n, name, a),
            _ => {}
        }
        self.check_enum(n, name, v);
        if let Value::Object(m) = v {
            self.check_object(n, name, m);
        }
    }

    fn check_type(&mut self, n: &Node, name: &str, v: &Value) -> bool {
        let one = [n.ty.as_str()];
        let types: &[&str] = if n.int_or_string {
            &["integer", "string"]
        } else if !n.ty.is_empty() {
            &one
        } else {
            return true;
        };
        let actual = json_type(v);
        let ok = match v {
            Value::Null => n.nullable,
            Value::Number(x) if x.is_f64() => {
                types.contains(&"number")
                    || (types.contains(&"integer") && x.as_f64().is_some_and(|f| f.fract() == 0.0))
            }
            Value::Number(_) => types.contains(&"integer") || types.contains(&"number"),
            _ => types.contains(&actual),
        };
        if !ok {
            let detail = format!(
                "{name} in body must be of type {}: {}",
                types.join(","),
                go_quote(actual)
            );
            self.push(
                FieldErrorType::TypeInvalid,
                name,
                Some(json!(actual)),
                detail,
            );
        }
        ok
    }

    fn sub_validator(&self) -> Validator<'static> {
        Validator {
            base: "",
            errs: Vec::new(),
        }
    }

    /// Errors `v` would get under `n` alone (for allOf/anyOf/oneOf/not).
    fn errors_under(&self, n: &Node, name: &str, v: &Value) -> Vec<FieldError> {
        let mut sub = self.sub_validator();
        sub.base = "";
        let mut errs = {
            sub.check(n, name, v);
            sub.errs
        };
        for e in &mut errs {
            e.field = if e.field.is_empty() {
                self.base.to_string()
            } else {
                child(self.base, &e.field)
            };
        }
        errs
    }

    fn check_composition(&mut self, n: &Node, name: &str, v: &Value) {
        // Most nodes have no composition: no quoting of the name for them.
        if n.any_of.is_empty() && n.one_of.is_empty() && n.all_of.is_empty() && n.not.is_none() {
            return;
        }
        let quoted = go_quote(name);
        if !n.any_of.is_empty() {
            let results: Vec<_> = n
                .any_of
                .iter()
                .map(|a| self.errors_under(a, name, v))
                .collect();
            if results.iter().all(|r| !r.is_empty()) {
                self.composite(format!(
                    "{quoted} must validate at least one schema (anyOf)"
                ));
                self.errs
                    .extend(results.into_iter().next().unwrap_or_default());
            }
        }
        if !n.one_of.is_empty() {
            let results: Vec<_> = n
                .one_of
                .iter()
                .map(|a| self.errors_under(a, name, v))
                .collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let more = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                self.composite(format!(
                    "{quoted} must validate one and only one schema (oneOf). {more}"
                ));
                if valid == 0 {
                    self.errs
                        .extend(results.into_iter().next().unwrap_or_default());
                }
            }
        }
        let mut failed_all_of = false;
        for a in &n.all_of {
            let errs = self.errors_under(a, name, v);
            failed_all_of |= !errs.is_empty();
            self.errs.extend(errs);
        }
        if failed_all_of {
            self.composite(format!("{quoted} must validate all the schemas (allOf)"));
        }
        if let Some(not) = &n.not
            && self.errors_under(not, name, v).is_empty()
        {
            self.composite(format!("{quoted} must not validate the schema (not)"));
        }
    }

    fn check_string(&mut self, n: &Node, name: &str, s: &str) {
        let len = s.chars().count() as i64;
        // Built only for an error: strings are the most common values.
        let value = || Some(json!(s));
        if let Some(max) = n.max_length.filter(|m| len > *m) {
            let unit = if max == 1 { "byte" } else { "bytes" };
            self.push(
                FieldErrorType::TooLong,
                name,
                None,
                format!("may not be more than {max} {unit}"),
            );
        } else if let Some(min) = n.min_length.filter(|m| len < *m) {
            let d = format!("{name} in body should be at least {min} chars long");
            self.push(FieldErrorType::Invalid, name, value(), d);
        } else if let (Some(p), Some(re)) = (&n.pattern, &n.pattern_re)
            && !re.is_match(s)
        {
            let d = format!("{name} in body should match '{p}'");
            self.push(FieldErrorType::Invalid, name, value(), d);
        }
        let string_typed = n.ty.is_empty() || n.ty == "string";
        if string_typed && formats::is_known(&n.format) && !formats::validates(&n.format, s) {
            let d = format!(
                "{name} in body must be of type {}: {}",
                n.format,
                go_quote(s)
            );
            self.push(FieldErrorType::TypeInvalid, name, value(), d);
        }
    }

    fn check_number(&mut self, n: &Node, name: &str, x: &Number) {
        let int = x.as_i64();
        let f = x.as_f64().unwrap_or(0.0);
        let bound = |b: &Number| match int {
            Some(_) => (b.as_f64().unwrap_or(0.0) as i64).to_string(),
            None => go_float(b.as_f64().unwrap_or(0.0)),
        };
        let value = Some(Value::Number(x.clone()));
        if let Some(m) = &n.multiple_of {
            let factor = m.as_f64().unwrap_or(0.0);
            let d = if factor <= 0.0 {
                Some(format!(
                    "factor MultipleOf declared for {name} must be positive: {}",
                    go_number(m)
                ))
            } else {
                let q = f / factor;
                (q.fract() != 0.0)
                    .then(|| format!("{name} in body should be a multiple of {}", bound(m)))
            };
            if let Some(d) = d {
                self.push(FieldErrorType::Invalid, name, value.clone(), d);
            }
        }
        if let Some(max) = &n.maximum {
            let m = max.as_f64().unwrap_or(0.0);
            let bad = if n.exclusive_maximum { f >= m } else { f > m };
            if bad {
                let rel = if n.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                let d = format!("{name} in body should be {rel} {}", bound(max));
                self.push(FieldErrorType::Invalid, name, value.clone(), d);
            }
        }
        if let Some(min) = &n.minimum {
            let m = min.as_f64().unwrap_or(0.0);
            let bad = if n.exclusive_minimum { f <= m } else { f < m };
            if bad {
                let rel = if n.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                let d = format!("{name} in body should be {rel} {}", bound(min));
                self.push(FieldErrorType::Invalid, name, value, d);
            }
        }
    }

    fn check_array(&mut self, n: &Node, name: &str, a: &[Value]) {
        if let Some(items) = &n.items {
            for (i, item) in a.iter().enumerate() {
                self.check(items, &format!("{name}[{i}]"), item);
            }
        }
        let size = a.len() as i64;
        if let Some(min) = n.min_items.filter(|m| size < *m) {
            let d = format!("{name} in body should have at least {min} items");
            self.push(FieldErrorType::Invalid, name, Some(json!(size)), d);
        }
        if let Some(max) = n.max_items.filter(|m| size > *m) {
            let unit = if max == 1 { "item" } else { "items" };
            self.push(
                FieldErrorType::TooMany,
                name,
                Some(json!(size)),
                format!("must have at most {max} {unit}"),
            );
        }
        if n.unique_items && has_duplicates(a) {
            let d = format!("{name} in body shouldn't contain duplicates");
            self.push(FieldErrorType::Invalid, name, Some(json!("")), d);
        }
    }

    fn check_enum(&mut self, n: &Node, name: &str, v: &Value) {
        let Some(values) = &n.enum_values else { return };
        if values.is_empty() || values.iter().any(|e| json_eq(e, v)) {
            return;
        }
        let supported: Vec<String> = values
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
        let path = self.path(name);
        self.errs
            .push(FieldError::not_supported(path, v.clone(), &refs));
    }

    fn check_object(&mut self, n: &Node, name: &str, m: &serde_json::Map<String, Value>) {
        let keys = m.len() as i64;
        if let Some(min) = n.min_properties.filter(|x| keys < *x) {
            let d = format!("{name} in body should have at least {min} properties");
            self.push(FieldErrorType::Invalid, name, Some(json!(keys)), d);
        }
        if let Some(max) = n.max_properties.filter(|x| keys > *x) {
            let unit = if max == 1 { "item" } else { "items" };
            self.push(
                FieldErrorType::TooMany,
                name,
                Some(json!(keys)),
                format!("must have at most {max} {unit}"),
            );
        }
        // One buffer for the fields' names, not a string each.
        let mut buf = String::with_capacity(name.len() + 32);
        if let Some(Additional::Schema(ap)) = &n.additional {
            for (k, v) in m.iter().filter(|(k, _)| !n.properties.contains_key(*k)) {
                self.check(ap, field_name(&mut buf, name, k), v);
            }
        }
        // The object's fields, not the schema's (often far more): in name order, as
        // errors are reported.
        let mut present: Vec<(&String, &Node, &Value)> = m
            .iter()
            .filter_map(|(k, v)| n.properties.get(k).map(|p| (k, p, v)))
            .collect();
        present.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, p, v) in present {
            self.check(p, field_name(&mut buf, name, k), v);
        }
        for k in n.required.iter().filter(|k| !m.contains_key(*k)) {
            let path = self.path(&format!("{name}.{k}"));
            self.errs.push(FieldError::required(path, ""));
        }
    }
}

/// kube-openapi's name of the field `k` of `name` (`name.k`, or `k` at the root), in
/// `buf`.
fn field_name<'b>(buf: &'b mut String, name: &str, k: &str) -> &'b str {
    buf.clear();
    if !name.is_empty() {
        buf.push_str(name);
        buf.push('.');
    }
    buf.push_str(k);
    buf
}

/// JSON equality with 1 == 1.0, as Go's decoded values compare after conversion.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn has_duplicates(a: &[Value]) -> bool {
    a.iter()
        .enumerate()
        .any(|(i, x)| a[i + 1..].iter().any(|y| json_eq(x, y)))
}
