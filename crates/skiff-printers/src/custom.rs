//! Tables for CustomResourceDefinition-defined kinds, as apiextensions-apiserver makes
//! them (`pkg/registry/customresource/tableconvertor`): a Name column, then the CRD
//! version's additionalPrinterColumns (or `Age` when it has none), each cell the first
//! result of the column's JSONPath in client-go's dialect.
//!
//! Cells, as `ConvertToTable` and `cellForJSONValue` make them:
//! - no result (missing field, index out of range, filter matching nothing): `null`,
//!   which kubectl prints as an empty cell;
//! - several results (`[*]`, a filter matching twice): the first one only;
//! - type `string`: the value as client-go's JSONPath prints it: strings as they are,
//!   numbers and booleans as Go's `fmt` writes them, a JSON null as `<no value>`, arrays
//!   and objects as compact JSON (`["a","b"]`, keys sorted);
//! - `integer` / `number` / `boolean`: the JSON value when it has that type (a float is
//!   truncated for `integer`), else `null`;
//! - `date`: the age of an RFC 3339 string (`5m`, `3d`), `<unknown>` for an empty one,
//!   `<invalid>` when it does not parse, `null` for a value that is no string.

mod jsonpath;

use crate::cells::{human_duration, name, parse_time};
use crate::{AGE_DESCRIPTION, NAME, assemble, column_json};
use chrono::{DateTime, Utc};
use jsonpath_rust::JsonPath;
use serde_json::{Number, Value, json};

/// One of a CRD version's additionalPrinterColumns.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

impl CustomColumn {
    /// The column kube-apiserver serves for a version without additionalPrinterColumns
    /// (`serveDefaultColumnsIfEmpty`).
    pub fn age() -> CustomColumn {
        CustomColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: AGE_DESCRIPTION.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }
    }
}

/// A column with its path compiled: the RFC 9535 query, `None` when only client-go
/// could evaluate it (its cells are then null).
struct Compiled<'a> {
    column: &'a CustomColumn,
    query: Option<String>,
}

impl<'a> Compiled<'a> {
    /// `None` when the path does not parse, where `tableconvertor.New` stops.
    fn new(column: &'a CustomColumn) -> Option<Self> {
        let tops = jsonpath::parse(&format!("{{{}}}", column.json_path)).ok()?;
        // kube's cell is the first result of the first action.
        let action = tops.into_iter().find_map(|t| match t {
            jsonpath::Top::Action(nodes) => Some(nodes),
            jsonpath::Top::Text(_) => None,
        });
        Some(Compiled {
            column,
            query: action.as_deref().and_then(jsonpath::to_rfc9535),
        })
    }

    fn header(&self) -> Value {
        let c = self.column;
        let description = if c.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                c.json_path
            )
        } else {
            c.description.clone()
        };
        column_json(&c.name, &c.type_, &c.format, &description, c.priority)
    }

    fn cell(&self, o: &Value, now: DateTime<Utc>) -> Value {
        let first = self
            .query
            .as_ref()
            .and_then(|q| o.query(q).ok())
            .and_then(|found| found.first().copied());
        match (first, self.column.type_.as_str()) {
            (None, _) => Value::Null,
            (Some(v), "string") => json!(go_text(v)),
            (Some(v), type_) => typed_cell(type_, v, now),
        }
    }
}

/// The Table of custom objects for a CRD version's columns (kube's default `Age` column
/// when there are none). Columns stop before the first whose path does not parse, as
/// kube-apiserver's do; [`check_json_path`] keeps such paths out of CRDs.
pub fn custom_table(
    columns: &[CustomColumn],
    objs: &[Value],
    include_object: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let age = [CustomColumn::age()];
    let columns = if columns.is_empty() {
        &age[..]
    } else {
        columns
    };
    let compiled: Vec<Compiled> = columns.iter().map_while(Compiled::new).collect();
    let n = &NAME;
    let mut headers = vec![column_json(
        n.name,
        n.type_,
        n.format,
        n.description,
        n.priority,
    )];
    headers.extend(compiled.iter().map(Compiled::header));
    let rows = objs
        .iter()
        .map(|o| {
            let mut cells = vec![name(o)];
            cells.extend(compiled.iter().map(|c| c.cell(o, now)));
            cells
        })
        .collect();
    assemble(
        headers,
        rows,
        objs,
        include_object,
        resource_version,
        continue_token,
    )
}

/// Checks a printer column's jsonPath when a CRD is validated. kube's validation
/// (`validateSimpleJSONPath`) wants it non-empty and starting with `.`; a path that then
/// fails client-go's parser (with the `{}` kube wraps it in) makes kube-apiserver drop
/// that column and those after it when serving, so skiff refuses it here with the
/// parser's error.
pub fn check_json_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if !path.starts_with('.') {
        return Err("must be a simple json path starting with .".into());
    }
    jsonpath::parse(&format!("{{{path}}}")).map(|_| ())
}

/// `cellForJSONValue`: the value when it has the column's type, else null.
fn typed_cell(type_: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (type_, v) {
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => json!(n.as_f64().unwrap_or(0.0).trunc() as i64),
        },
        ("number", Value::Number(n)) => number_cell(n),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => json!(date_cell(s, now)),
        _ => Value::Null,
    }
}

/// A `number` cell; integral floats are written without a fraction, as Go writes them.
fn number_cell(n: &Number) -> Value {
    match n.as_f64() {
        Some(f) if !n.is_f64() || f.fract() != 0.0 || f.abs() >= 9.0e18 => Value::Number(n.clone()),
        Some(f) => json!(f as i64),
        None => Value::Number(n.clone()),
    }
}

/// `ConvertToHumanReadableDateType` of `metav1.Time.UnmarshalQueryParameter`.
fn date_cell(s: &str, now: DateTime<Utc>) -> String {
    if s.is_empty() || s == "null" {
        return "<unknown>".into();
    }
    match parse_time(s) {
        Some(t) if t.timestamp() == ZERO_TIME && t.timestamp_subsec_nanos() == 0 => {
            "<unknown>".into()
        }
        Some(t) => human_duration(now - t),
        None => "<invalid>".into(),
    }
}

/// Go's zero `time.Time`, 0001-01-01T00:00:00Z, in Unix seconds.
const ZERO_TIME: i64 = -62_135_596_800;

/// A value as client-go's JSONPath prints it (`PrintResults`).
fn go_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => go_float(f),
            _ => n.to_string(),
        },
        Value::Array(_) | Value::Object(_) => go_json(v),
    }
}

/// Go's `fmt` `%v` of a float64: shortest digits, exponent form below 1e-4 and from 1e6.
fn go_float(f: f64) -> String {
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{f}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Go's `json.Marshal`: compact, object keys sorted, `<`, `>`, `&` escaped, floats in
/// ECMAScript form.
fn go_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", go_json_string(k), go_json(&m[*k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_json).collect();
            format!("[{}]", items.join(","))
        }
        Value::String(s) => go_json_string(s),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => go_json_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn go_json_string(s: &str) -> String {
    Value::from(s)
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// encoding/json's float64: plain decimal, exponent form below 1e-6 and from 1e21.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        format!("{f:e}").replace("e", "e+").replace("e+-", "e-")
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests;
