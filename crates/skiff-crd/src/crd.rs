//! apiextensions.k8s.io/v1 validation of a CustomResourceDefinition (apiextensions'
//! `ValidateCustomResourceDefinition` / `…Update`), worded as upstream words it.

use crate::names::{dns1035_label, dns1123_subdomain};
use crate::path::{child, index, key};
use crate::{Schema, definition};
use serde_json::{Value, json};
use skiff_types::FieldError;

const PRINTER_TYPES: &str = "boolean,date,integer,number,string";
const PRINTER_FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";
const MAX_SELECTABLE_FIELDS: usize = 8;

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Validates a CRD (create when `old` is `None`, update otherwise). Expects a defaulted
/// CRD ([`definition::default_crd`]); status.storedVersions is checked when present.
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let _ = definition::default_crd;
    let mut errs = Vec::new();
    metadata_name(crd, old.is_none(), &mut errs);
    spec(crd, &mut errs);
    if let Some(old) = old {
        for (p, ptr) in [
            ("spec.group", "/spec/group"),
            ("spec.names.plural", "/spec/names/plural"),
        ] {
            if s(crd, ptr) != s(old, ptr) {
                errs.push(FieldError::invalid(
                    p,
                    json!(s(crd, ptr)),
                    "field is immutable",
                ));
            }
        }
        if established(old) {
            for (p, ptr) in [
                ("spec.scope", "/spec/scope"),
                ("spec.names.kind", "/spec/names/kind"),
            ] {
                if s(crd, ptr) != s(old, ptr) {
                    errs.push(FieldError::invalid(
                        p,
                        json!(s(crd, ptr)),
                        "field is immutable",
                    ));
                }
            }
        }
    }
    if let Some(an) = crd.pointer("/status/acceptedNames") {
        names(an, "status.acceptedNames", &mut errs);
    }
    stored_versions(crd, &mut errs);
    api_approval(crd, &mut errs);
    if crd.pointer("/spec/preserveUnknownFields") == Some(&json!(true))
        && old.is_none_or(|o| o.pointer("/spec/preserveUnknownFields") != Some(&json!(true)))
    {
        errs.push(FieldError::invalid(
            "spec.preserveUnknownFields",
            json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs
}

fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type") == Some(&json!("Established"))
                    && c.get("status") == Some(&json!("True"))
            })
        })
}

fn metadata_name(crd: &Value, create: bool, errs: &mut Vec<FieldError>) {
    let name = s(crd, "/metadata/name");
    if name.is_empty() {
        if create {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
        return;
    }
    let mut problems = dns1123_subdomain(name);
    let want = format!("{}.{}", s(crd, "/spec/names/plural"), s(crd, "/spec/group"));
    if name != want {
        problems.push(r#"must be spec.names.plural+"."+spec.group"#.to_string());
    }
    for p in problems {
        errs.push(FieldError::invalid("metadata.name", json!(name), p));
    }
}

fn spec(crd: &Value, errs: &mut Vec<FieldError>) {
    let group = s(crd, "/spec/group");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if let problems @ [_, ..] = dns1123_subdomain(group).as_slice() {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            problems.join(","),
        ));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    match s(crd, "/spec/scope") {
        "" => errs.push(FieldError::required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    versions(crd, errs);
    for (f, p) in [
        ("plural", "/spec/names/plural"),
        ("singular", "/spec/names/singular"),
        ("kind", "/spec/names/kind"),
        ("listKind", "/spec/names/listKind"),
    ] {
        if s(crd, p).is_empty() {
            errs.push(FieldError::required(format!("spec.names.{f}"), ""));
        }
    }
    if let Some(n) = crd.pointer("/spec/names") {
        names(n, "spec.names", errs);
    }
    conversion(crd, errs);
}

fn versions(crd: &Value, errs: &mut Vec<FieldError>) {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen = Vec::new();
    let mut unique = true;
    let mut storage = 0;
    let shared = Shared::of(&versions);
    for (i, v) in versions.iter().enumerate() {
        let p = index("spec.versions", i);
        let name = s(v, "/name");
        unique &= !seen.contains(&name);
        seen.push(name);
        if v.get("storage") == Some(&json!(true)) {
            storage += 1;
        }
        let problems = dns1035_label(name);
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                child(&p, "name"),
                json!(name),
                problems.join(","),
            ));
        }
        // What all versions share is reported once, under its hoisted path.
        let mut repeated = Vec::new();
        version(
            v,
            &p,
            &shared,
            if i == 0 { &mut *errs } else { &mut repeated },
        );
        errs.extend(repeated.into_iter().filter(|e| !shared.covers(&e.field)));
    }
    let all = Value::Array(versions);
    if !unique {
        errs.push(FieldError::invalid(
            "spec.versions",
            all.clone(),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            all,
            "must have exactly one version marked as storage version",
        ));
    }
}

/// The parts every version has alike, which kube's conversion to its internal version
/// hoists (`spec.validation`, `spec.subresources`, `spec.additionalPrinterColumns`):
/// their errors name the hoisted paths, as kube's do.
struct Shared {
    schema: bool,
    subresources: bool,
    columns: bool,
}

impl Shared {
    fn of(versions: &[Value]) -> Shared {
        // Missing, null and empty are alike, as to apimachinery's semantic equality.
        let part = |v: &Value, k: &str| {
            v.get(k)
                .filter(|x| !x.is_null() && x.as_array().is_none_or(|a| !a.is_empty()))
                .cloned()
        };
        let same = |k: &str| {
            let first = versions.first().and_then(|v| part(v, k));
            first.is_some() && versions.iter().all(|v| part(v, k) == first)
        };
        Shared {
            schema: same("schema"),
            subresources: same("subresources"),
            columns: same("additionalPrinterColumns"),
        }
    }

    /// Whether an error at `field` is at a hoisted path (already reported).
    fn covers(&self, field: &str) -> bool {
        (self.schema && field.starts_with("spec.validation"))
            || (self.subresources && field.starts_with("spec.subresources"))
            || (self.columns && field.starts_with("spec.additionalPrinterColumns"))
    }

    fn path(&self, hoisted: bool, version: &str, key: &str) -> String {
        match hoisted {
            true => child("spec", key),
            false => child(version, key),
        }
    }
}

fn version(v: &Value, p: &str, shared: &Shared, errs: &mut Vec<FieldError>) {
    deprecation_warning(v, p, errs);
    let schema_path = match shared.schema {
        true => "spec.validation.openAPIV3Schema".to_string(),
        false => child(&child(p, "schema"), "openAPIV3Schema"),
    };
    let schema = v
        .pointer("/schema/openAPIV3Schema")
        .filter(|s| !s.is_null());
    let compiled = match schema {
        None => {
            errs.push(FieldError::required(schema_path.clone(), ""));
            None
        }
        Some(s) => {
            let status = v
                .pointer("/subresources/status")
                .is_some_and(|s| !s.is_null());
            if status {
                status_root(s, &schema_path, errs);
            }
            Schema::compile(s, &schema_path)
                .map_err(|mut e| errs.append(&mut e))
                .ok()
        }
    };
    if let Some(scale) = v.pointer("/subresources/scale").filter(|s| !s.is_null()) {
        let sub = shared.path(shared.subresources, p, "subresources");
        scale_paths(scale, &child(&sub, "scale"), errs);
    }
    let cols = v.get("additionalPrinterColumns").and_then(Value::as_array);
    let cols_path = shared.path(shared.columns, p, "additionalPrinterColumns");
    for (i, c) in cols.into_iter().flatten().enumerate() {
        printer_column(c, &index(&cols_path, i), errs);
    }
    if let Some(fields) = v
        .get("selectableFields")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    {
        selectable_fields(
            fields,
            compiled.as_ref(),
            &child(p, "selectableFields"),
            errs,
        );
    }
}

fn deprecation_warning(v: &Value, p: &str, errs: &mut Vec<FieldError>) {
    let Some(w) = v.get("deprecationWarning").filter(|w| !w.is_null()) else {
        return;
    };
    let path = child(p, "deprecationWarning");
    let text = w.as_str().unwrap_or_default();
    let mut problems = Vec::new();
    if v.get("deprecated") != Some(&json!(true)) {
        problems.push("can only be set for deprecated versions".to_string());
    } else {
        if text.len() > 256 {
            problems.push("must be <= 256 characters long".to_string());
        }
        if text.is_empty() {
            problems.push("must not be an empty string".to_string());
        }
        if let Some((i, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
            problems.push(format!(
                "must only contain printable UTF-8 characters; control character found at index {i}"
            ));
        }
    }
    for d in problems {
        errs.push(FieldError::invalid(path.clone(), w.clone(), d));
    }
}

/// With the status subresource only some keywords are allowed at the schema root.
fn status_root(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    const ALLOWED: [&str; 22] = [
        "description",
        "type",
        "format",
        "title",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "required",
        "items",
        "properties",
        "externalDocs",
        "example",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
    ];
    let Some(m) = schema.as_object() else { return };
    if let Some(t) = m
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| *t != "object")
    {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            json!(t),
            r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
        ));
    }
    let zero = |v: &Value| {
        matches!(v, Value::Null | Value::Bool(false))
            || v.as_str() == Some("")
            || v.as_array().is_some_and(Vec::is_empty)
            || v.as_object().is_some_and(serde_json::Map::is_empty)
    };
    if m.iter()
        .any(|(k, v)| !ALLOWED.contains(&k.as_str()) && !zero(v))
    {
        let names = "[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations]";
        errs.push(FieldError::invalid(
            path,
            schema.clone(),
            format!("only {names} fields are allowed at the root of the schema if the status subresource is enabled"),
        ));
    }
}

fn simple_json_path(v: &str, path: &str, errs: &mut Vec<FieldError>) -> bool {
    let bad = if v.is_empty() {
        Some("must not be empty")
    } else if !v.starts_with('.') {
        Some("must be a simple json path starting with .")
    } else {
        None
    };
    if let Some(d) = bad {
        errs.push(FieldError::invalid(path, json!(v), d));
    }
    bad.is_none()
}

fn scale_paths(scale: &Value, p: &str, errs: &mut Vec<FieldError>) {
    for (f, prefix, under) in [
        ("specReplicasPath", ".spec.", ".spec"),
        ("statusReplicasPath", ".status.", ".status"),
    ] {
        let path = child(p, f);
        let v = s(scale, &format!("/{f}"));
        if v.is_empty() {
            errs.push(FieldError::required(path, ""));
        } else if simple_json_path(v, &path, errs) && !v.starts_with(prefix) {
            errs.push(FieldError::invalid(
                path,
                json!(v),
                format!("should be a json path under {under}"),
            ));
        }
    }
    let sel = s(scale, "/labelSelectorPath");
    let path = child(p, "labelSelectorPath");
    if !sel.is_empty()
        && simple_json_path(sel, &path, errs)
        && !sel.starts_with(".spec.")
        && !sel.starts_with(".status.")
    {
        errs.push(FieldError::invalid(
            path,
            json!(sel),
            "should be a json path under either .spec or .status",
        ));
    }
}

fn printer_column(c: &Value, p: &str, errs: &mut Vec<FieldError>) {
    if s(c, "/name").is_empty() {
        errs.push(FieldError::required(child(p, "name"), ""));
    }
    let ty = s(c, "/type");
    let detail = format!("must be one of {PRINTER_TYPES}");
    if ty.is_empty() {
        errs.push(FieldError::required(child(p, "type"), detail));
    } else if !PRINTER_TYPES.split(',').any(|t| t == ty) {
        errs.push(FieldError::invalid(child(p, "type"), json!(ty), detail));
    }
    let format = s(c, "/format");
    if !format.is_empty() && !PRINTER_FORMATS.split(',').any(|f| f == format) {
        errs.push(FieldError::invalid(
            child(p, "format"),
            json!(format),
            format!("must be one of {PRINTER_FORMATS}"),
        ));
    }
    let jp = s(c, "/jsonPath");
    if jp.is_empty() {
        errs.push(FieldError::required(child(p, "JSONPath"), ""));
    } else {
        simple_json_path(jp, &child(p, "JSONPath"), errs);
    }
}

fn selectable_fields(
    fields: &[Value],
    schema: Option<&Schema>,
    p: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut unique: Vec<String> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let path = child(&index(p, i), "jsonPath");
        let jp = s(f, "/jsonPath");
        if jp.is_empty() {
            errs.push(FieldError::required(path, ""));
            continue;
        }
        let segs: Vec<&str> = jp.strip_prefix('.').unwrap_or("").split('.').collect();
        let node = schema.and_then(|s| s.node_at(&segs));
        let Some(node) = node.filter(|_| jp.starts_with('.') && segs.iter().all(|s| !s.is_empty()))
        else {
            errs.push(FieldError::invalid(
                path,
                json!(jp),
                "is an invalid path: does not refer to a valid field",
            ));
            continue;
        };
        if segs[0] == "metadata" {
            errs.push(FieldError::invalid(
                path.clone(),
                json!(jp),
                "must not point to fields in metadata",
            ));
        }
        if !["string", "boolean", "integer"].contains(&node.ty.as_str()) {
            errs.push(FieldError::invalid(
                path.clone(),
                json!(jp),
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        if unique.iter().any(|u| u == jp) {
            errs.push(FieldError::duplicate(path, json!(jp)));
        } else {
            unique.push(jp.to_string());
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS {
        errs.push(FieldError::new(
            skiff_types::FieldErrorType::TooMany,
            p,
            Some(json!(unique.len())),
            format!("must have at most {MAX_SELECTABLE_FIELDS} items"),
        ));
    }
}

fn names(n: &Value, p: &str, errs: &mut Vec<FieldError>) {
    for f in ["plural", "singular"] {
        let v = s(n, &format!("/{f}"));
        let problems = dns1035_label(v);
        if !v.is_empty() && !problems.is_empty() {
            errs.push(FieldError::invalid(
                child(p, f),
                json!(v),
                problems.join(","),
            ));
        }
    }
    for f in ["kind", "listKind"] {
        let v = s(n, &format!("/{f}"));
        let problems = dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !problems.is_empty() {
            let d = format!(
                "may have mixed case, but should otherwise match: {}",
                problems.join(",")
            );
            errs.push(FieldError::invalid(child(p, f), json!(v), d));
        }
    }
    for f in ["shortNames", "categories"] {
        let list = n.get(f).and_then(Value::as_array);
        for (i, x) in list.into_iter().flatten().enumerate() {
            let v = x.as_str().unwrap_or_default();
            let problems = dns1035_label(v);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(
                    index(&child(p, f), i),
                    json!(v),
                    problems.join(","),
                ));
            }
        }
    }
    let kind = s(n, "/kind");
    if !kind.is_empty() && kind == s(n, "/listKind") {
        errs.push(FieldError::invalid(
            child(p, "listKind"),
            json!(kind),
            "kind and listKind may not be the same",
        ));
    }
}

fn conversion(crd: &Value, errs: &mut Vec<FieldError>) {
    let Some(c) = crd.pointer("/spec/conversion").filter(|c| !c.is_null()) else {
        return;
    };
    let p = "spec.conversion";
    let strategy = s(c, "/strategy");
    match strategy {
        "" => errs.push(FieldError::required(child(p, "strategy"), "")),
        "None" | "Webhook" => {}
        other => errs.push(FieldError::not_supported(
            child(p, "strategy"),
            json!(other),
            &["None", "Webhook"],
        )),
    }
    let cc = c.pointer("/webhook/clientConfig").filter(|v| !v.is_null());
    let versions = c
        .pointer("/webhook/conversionReviewVersions")
        .and_then(Value::as_array);
    if strategy != "Webhook" {
        if cc.is_some() {
            errs.push(FieldError::forbidden(
                "spec.conversion.webhookClientConfig",
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if versions.is_some_and(|v| !v.is_empty()) {
            errs.push(FieldError::forbidden(
                "spec.conversion.conversionReviewVersions",
                "should not be set when strategy is not set to Webhook",
            ));
        }
        return;
    }
    match cc {
        None => errs.push(FieldError::required(
            "spec.conversion.webhookClientConfig",
            "required when strategy is set to Webhook",
        )),
        Some(cc) if cc.get("url").is_some() == cc.get("service").is_some() => {
            errs.push(FieldError::required(
                "spec.conversion.webhookClientConfig",
                "exactly one of url or service is required",
            ))
        }
        Some(_) => {}
    }
    review_versions(versions.map(Vec::as_slice).unwrap_or_default(), errs);
}

fn review_versions(versions: &[Value], errs: &mut Vec<FieldError>) {
    let p = "spec.conversion.conversionReviewVersions";
    if versions.is_empty() {
        errs.push(FieldError::required(p, ""));
        return;
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let name = v.as_str().unwrap_or_default();
        if seen.contains(&name) {
            errs.push(FieldError::invalid(
                index(p, i),
                json!(name),
                "duplicate version",
            ));
            continue;
        }
        seen.push(name);
        for d in dns1035_label(name) {
            errs.push(FieldError::invalid(index(p, i), json!(name), d));
        }
    }
    if !seen.iter().any(|v| *v == "v1" || *v == "v1beta1") {
        errs.push(FieldError::invalid(
            p,
            Value::Array(versions.to_vec()),
            "must include at least one of v1, v1beta1",
        ));
    }
}

fn stored_versions(crd: &Value, errs: &mut Vec<FieldError>) {
    let Some(stored) = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
    else {
        return;
    };
    let p = "status.storedVersions";
    if stored.is_empty() {
        errs.push(FieldError::invalid(
            p,
            json!([]),
            "must have at least one stored version",
        ));
        return;
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut remaining: Vec<(usize, &str)> = stored
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.as_str().unwrap_or_default()))
        .collect();
    for v in &versions {
        let name = s(v, "/name");
        let present = remaining.iter().any(|(_, n)| *n == name);
        if v.get("storage") == Some(&json!(true)) && !present {
            errs.push(FieldError::invalid(
                p,
                Value::Array(stored.clone()),
                format!("must have the storage version {name}"),
            ));
        }
        remaining.retain(|(_, n)| *n != name);
    }
    for (i, v) in remaining {
        errs.push(FieldError::invalid(
            index(p, i),
            json!(v),
            format!("missing from spec.versions; {v} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {v} and removes {v} from status.storedVersions"),
        ));
    }
}

fn api_approval(crd: &Value, errs: &mut Vec<FieldError>) {
    let group = s(crd, "/spec/group");
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")));
    if !protected {
        return;
    }
    let ann = "api-approved.kubernetes.io";
    let path = key("metadata.annotations", ann);
    match crd.pointer("/metadata/annotations").and_then(|a| a.get(ann)).and_then(Value::as_str) {
        None => errs.push(FieldError::required(
            path,
            format!("protected groups must have approval annotation {ann:?}, see https://github.com/kubernetes/enhancements/pull/1111"),
        )),
        Some(v) if !(v.starts_with("https://") || v.starts_with("http://") || v.starts_with("unapproved")) => {
            errs.push(FieldError::invalid(path, json!(v), "protected groups must have approval annotation \"api-approved.kubernetes.io\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"));
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        let mut c = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                        "properties": {"replicas": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                     "selectableFields": [{"jsonPath": ".spec.replicas"}]},
                    {"name": "v2", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        });
        definition::default_crd(&mut c);
        c
    }

    fn messages(c: &Value, old: Option<&Value>) -> Vec<String> {
        validate_crd(c, old)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// What every version has alike is reported once, at the path kube's internal
    /// version hoists it to; what differs stays per version.
    #[test]
    fn shared_parts_are_reported_at_their_hoisted_paths() {
        let bad_schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"x": {}}}});
        let bad_column = json!([{"name": "X", "type": "float", "jsonPath": ".x"}]);
        let mut c = crd();
        c["spec"]["versions"][0]["schema"] = bad_schema.clone();
        c["spec"]["versions"][1]["schema"] = bad_schema.clone();
        c["spec"]["versions"][0]["additionalPrinterColumns"] = bad_column.clone();
        c["spec"]["versions"][1]["additionalPrinterColumns"] = bad_column;
        let subresources = c["spec"]["versions"][0]["subresources"].clone();
        c["spec"]["versions"][1]["subresources"] = subresources;
        c["spec"]["versions"][0]["selectableFields"] = json!([]);
        assert_eq!(
            messages(&c, None),
            [
                "spec.validation.openAPIV3Schema.properties[x].type: Required value: must not be empty for specified object fields",
                r#"spec.additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string"#,
            ]
        );
        // One version differs: each is reported where it is.
        c["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["description"] = json!("v2");
        let got = messages(&c, None);
        assert!(
            got.iter().any(|m| m.starts_with("spec.versions[0].schema.openAPIV3Schema.properties[x]"))
                && got.iter().any(|m| m.starts_with("spec.versions[1].schema.openAPIV3Schema.properties[x]")),
            "{got:?}"
        );
    }

    #[test]
    fn valid_crd_passes() {
        assert_eq!(messages(&crd(), None), Vec::<String>::new());
        assert_eq!(messages(&crd(), Some(&crd())), Vec::<String>::new());
    }

    #[test]
    fn denials() {
        type Edit = fn(&mut Value);
        let cases: [(Edit, &str); 12] = [
            (
                |c| c["metadata"]["name"] = json!("gadgets.example.com"),
                r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
            ),
            (
                |c| c["spec"]["versions"][1]["storage"] = json!(true),
                "spec.versions: Invalid value: ",
            ),
            (
                |c| c["spec"]["versions"][1]["name"] = json!("v1"),
                "must contain unique version names",
            ),
            (
                |c| c["spec"]["scope"] = json!("Galaxy"),
                r#"spec.scope: Unsupported value: "Galaxy": supported values: "Cluster", "Namespaced""#,
            ),
            (
                |c| {
                    c["spec"]["group"] = json!("example");
                    c["metadata"]["name"] = json!("widgets.example");
                },
                r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
            ),
            (
                |c| c["spec"]["versions"][1]["schema"] = Value::Null,
                "spec.versions[1].schema.openAPIV3Schema: Required value",
            ),
            (
                |c| {
                    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
                        ["x"] = json!({})
                },
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type: Required value: must not be empty for specified object fields",
            ),
            (
                |c| {
                    c["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("float")
                },
                r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string"#,
            ),
            (
                |c| {
                    c["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
                        json!(".status.replicas")
                },
                r#"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#,
            ),
            (
                |c| c["spec"]["versions"][0]["selectableFields"][0]["jsonPath"] = json!(".spec"),
                "must point to a field of type string, boolean or integer",
            ),
            (
                |c| c["spec"]["conversion"] = json!({"strategy": "Webhook"}),
                "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
            ),
            (
                |c| c["status"]["storedVersions"] = json!(["v0", "v1"]),
                "status.storedVersions[0]: Invalid value: \"v0\": missing from spec.versions",
            ),
        ];
        for (edit, want) in cases {
            let mut c = crd();
            edit(&mut c);
            let got = messages(&c, None);
            assert!(got.iter().any(|m| m.contains(want)), "{want}: {got:?}");
        }
    }

    #[test]
    fn two_storage_versions() {
        let mut c = crd();
        c["spec"]["versions"][1]["storage"] = json!(true);
        let got = messages(&c, None);
        assert!(got[0].ends_with("must have exactly one version marked as storage version"));
        // kube also reports the second storage version missing from storedVersions.
        assert_eq!(
            got[1],
            r#"status.storedVersions: Invalid value: ["v1"]: must have the storage version v2"#
        );
    }

    #[test]
    fn group_is_immutable() {
        let old = crd();
        let mut new = crd();
        new["spec"]["group"] = json!("example.org");
        new["metadata"]["name"] = json!("widgets.example.org");
        let got = messages(&new, Some(&old));
        assert_eq!(
            got,
            vec![r#"spec.group: Invalid value: "example.org": field is immutable"#]
        );
    }
}
