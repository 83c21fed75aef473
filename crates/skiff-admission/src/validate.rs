//! Validation of webhook configuration objects, worded as kube's
//! admissionregistration validation words it (422 field errors).

use crate::celenv;
use crate::webhook::{RawClientConfig, RawConfig, RawMatchCondition, RawService, RawWebhook};
use serde_json::{Value, json};
use skiff_types::{FieldError, FieldErrorType};
use skiff_validation::names::dns1123_subdomain;
use std::collections::{BTreeMap, BTreeSet};

/// Checks a Mutating (`mutating`) or ValidatingWebhookConfiguration as kube-apiserver
/// does on create (admissionregistration.k8s.io/v1).
pub fn validate_configuration(obj: &Value, mutating: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let raw: RawConfig = match serde_json::from_value(obj.clone()) {
        Ok(r) => r,
        Err(e) => return vec![FieldError::invalid("", json!(null), e.to_string())],
    };
    let mut names = BTreeSet::new();
    let raw_hooks = obj.get("webhooks").and_then(Value::as_array);
    for (i, w) in raw.webhooks.iter().enumerate() {
        let path = format!("webhooks[{i}]");
        if !w.name.is_empty() && !names.insert(w.name.clone()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), json!(w.name)));
        }
        let raw_hook = raw_hooks.and_then(|h| h.get(i));
        validate_webhook(w, raw_hook, &path, mutating, &mut errs);
    }
    errs
}

fn validate_webhook(
    w: &RawWebhook,
    raw: Option<&Value>,
    path: &str,
    mutating: bool,
    errs: &mut Vec<FieldError>,
) {
    fully_qualified_name(&format!("{path}.name"), &w.name, errs);
    for (j, r) in w.rules.iter().enumerate() {
        validate_rule(r, &format!("{path}.rules[{j}]"), false, errs);
    }
    enum_field(
        errs,
        &format!("{path}.failurePolicy"),
        w.failure_policy.as_deref(),
        &["Fail", "Ignore"],
    );
    enum_field(
        errs,
        &format!("{path}.matchPolicy"),
        w.match_policy.as_deref(),
        &["Equivalent", "Exact"],
    );
    match w.side_effects.as_deref() {
        None => errs.push(FieldError::required(format!("{path}.sideEffects"), "")),
        s => enum_field(
            errs,
            &format!("{path}.sideEffects"),
            s,
            &["None", "NoneOnDryRun"],
        ),
    }
    if mutating {
        let p = format!("{path}.reinvocationPolicy");
        enum_field(
            errs,
            &p,
            w.reinvocation_policy.as_deref(),
            &["Never", "IfNeeded"],
        );
    }
    review_versions(
        &format!("{path}.admissionReviewVersions"),
        w.admission_review_versions.as_deref(),
        errs,
    );
    if let Some(t) = w.timeout_seconds.filter(|t| !(1..=30).contains(t)) {
        errs.push(FieldError::invalid(
            format!("{path}.timeoutSeconds"),
            json!(t),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    for key in ["namespaceSelector", "objectSelector"] {
        let sel = raw.and_then(|r| r.get(key));
        validate_selector(sel, &format!("{path}.{key}"), errs);
    }
    client_config(&w.client_config, &format!("{path}.clientConfig"), errs);
    match_conditions(
        &w.match_conditions,
        &format!("{path}.matchConditions"),
        errs,
    );
}

fn enum_field(errs: &mut Vec<FieldError>, path: &str, v: Option<&str>, ok: &[&str]) {
    if let Some(v) = v.filter(|v| !ok.contains(v)) {
        errs.push(FieldError::not_supported(path, json!(v), ok));
    }
}

/// IsFullyQualifiedName: a DNS subdomain of at least three segments.
fn fully_qualified_name(path: &str, name: &str, errs: &mut Vec<FieldError>) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let n = name.strip_suffix('.').unwrap_or(name);
    let e = dns1123_subdomain(n);
    if !e.is_empty() {
        errs.push(FieldError::invalid(path, json!(n), e.join(",")));
    } else if n.split('.').count() < 3 {
        errs.push(FieldError::invalid(
            path,
            json!(n),
            "should be a domain with at least three segments separated by dots",
        ));
    }
}

fn review_versions(path: &str, v: Option<&[String]>, errs: &mut Vec<FieldError>) {
    let versions = v.unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required(
            path,
            "must specify one of v1, v1beta1",
        ));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, s) in versions.iter().enumerate() {
        if !seen.insert(s) {
            errs.push(FieldError::duplicate(format!("{path}[{i}]"), json!(s)));
        }
    }
    if !versions.iter().any(|s| s == "v1" || s == "v1beta1") {
        errs.push(FieldError::invalid(
            path,
            json!(versions),
            "must include at least one of v1, v1beta1",
        ));
    }
}

const OPERATIONS: [&str; 5] = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];

/// A RuleWithOperations (NamedRuleWithOperations when `named`).
pub(crate) fn validate_rule(r: &Value, path: &str, named: bool, errs: &mut Vec<FieldError>) {
    let list = |k: &str| -> Vec<String> {
        r.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let ops = list("operations");
    if ops.is_empty() {
        errs.push(FieldError::required(format!("{path}.operations"), ""));
    } else if ops.len() > 1 && ops.iter().any(|o| o == "*") {
        errs.push(FieldError::invalid(
            format!("{path}.operations"),
            json!(ops),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, o) in ops.iter().enumerate() {
        if !OPERATIONS.contains(&o.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{path}.operations[{i}]"),
                json!(o),
                &OPERATIONS,
            ));
        }
    }
    wildcard_list(
        &list("apiGroups"),
        &format!("{path}.apiGroups"),
        "API groups",
        errs,
    );
    let versions = list("apiVersions");
    wildcard_list(
        &versions,
        &format!("{path}.apiVersions"),
        "API versions",
        errs,
    );
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.apiVersions[{i}]"),
                "version must not be empty",
            ));
        }
    }
    resources(&list("resources"), &format!("{path}.resources"), errs);
    let scope = r.get("scope").and_then(Value::as_str);
    enum_field(
        errs,
        &format!("{path}.scope"),
        scope,
        &["*", "Cluster", "Namespaced"],
    );
    if !named && r.get("resourceNames").is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.resourceNames"),
            "field not supported here",
        ));
    }
}

fn wildcard_list(items: &[String], path: &str, what: &str, errs: &mut Vec<FieldError>) {
    if items.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if items.len() > 1 && items.iter().any(|g| g == "*") {
        errs.push(FieldError::invalid(
            path,
            json!(items),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

/// kube's validateResources: `*`, `*/*`, `res/*`, `*/sub` and their conflicts.
fn resources(items: &[String], path: &str, errs: &mut Vec<FieldError>) {
    if items.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let (mut double, mut single, mut bare) = (false, false, false);
    let mut res_wild: BTreeMap<String, ()> = BTreeMap::new();
    let mut sub_wild: BTreeMap<String, ()> = BTreeMap::new();
    for (i, rs) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if rs.is_empty() {
            errs.push(FieldError::required(p, ""));
            continue;
        }
        double |= rs == "*/*";
        single |= rs == "*";
        let (res, sub) = match rs.split_once('/') {
            Some((r, s)) => (r, s),
            None => {
                bare = true;
                (rs.as_str(), "")
            }
        };
        if res_wild.contains_key(res) {
            errs.push(FieldError::invalid(
                &p,
                json!(rs),
                format!("if '{res}/*' is present, must not specify {rs}"),
            ));
        }
        if sub_wild.contains_key(sub) {
            errs.push(FieldError::invalid(
                &p,
                json!(rs),
                format!("if '*/{sub}' is present, must not specify {rs}"),
            ));
        }
        if sub == "*" {
            res_wild.insert(res.to_string(), ());
        }
        if res == "*" {
            sub_wild.insert(sub.to_string(), ());
        }
    }
    if items.len() > 1 && double {
        errs.push(FieldError::invalid(
            path,
            json!(items),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if single && bare && items.len() > 1 {
        errs.push(FieldError::invalid(
            path,
            json!(items),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

/// A label selector's operators and values.
pub(crate) fn validate_selector(sel: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(exprs) = sel
        .and_then(|s| s.get("matchExpressions"))
        .and_then(Value::as_array)
    else {
        return;
    };
    for (i, e) in exprs.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let op = e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let n = e
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        match op {
            "In" | "NotIn" if n == 0 => errs.push(FieldError::required(
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if n > 0 => errs.push(FieldError::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                json!(other),
                "not a valid selector operator",
            )),
        }
    }
}

fn client_config(c: &RawClientConfig, path: &str, errs: &mut Vec<FieldError>) {
    match (&c.url, &c.service) {
        (Some(u), None) => webhook_url(u, &format!("{path}.url"), errs),
        (None, Some(s)) => service(s, &format!("{path}.service"), errs),
        _ => errs.push(FieldError::required(
            path,
            "exactly one of url or service is required",
        )),
    }
}

/// ValidateWebhookURL with https forced.
fn webhook_url(u: &str, path: &str, errs: &mut Vec<FieldError>) {
    const FORM: &str = "; desired format: https://host[/path]";
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    if scheme != "https" {
        errs.push(FieldError::invalid(
            path,
            json!(scheme),
            format!("'https' is the only allowed URL scheme{FORM}"),
        ));
    }
    let (before_frag, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (before_query, query) = before_frag.split_once('?').unwrap_or((before_frag, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host.is_empty() {
        errs.push(FieldError::invalid(
            path,
            json!(host),
            format!("host must be specified{FORM}"),
        ));
    }
    if let Some(user) = user {
        errs.push(FieldError::invalid(
            path,
            json!(user),
            "user information is not permitted in the URL",
        ));
    }
    if !fragment.is_empty() {
        errs.push(FieldError::invalid(
            path,
            json!(fragment),
            "fragments are not permitted in the URL",
        ));
    }
    if !query.is_empty() {
        errs.push(FieldError::invalid(
            path,
            json!(query),
            "query parameters are not permitted in the URL",
        ));
    }
}

fn service(s: &RawService, path: &str, errs: &mut Vec<FieldError>) {
    if s.name.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "service name is required",
        ));
    }
    if s.namespace.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.namespace"),
            "service namespace is required",
        ));
    }
    if let Some(p) = s.port.filter(|p| !(1..=65535).contains(p)) {
        errs.push(FieldError::invalid(
            format!("{path}.port"),
            json!(p),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    if let Some(p) = &s.path {
        service_path(p, &format!("{path}.path"), errs);
    }
}

fn service_path(p: &str, path: &str, errs: &mut Vec<FieldError>) {
    if p.is_empty() || p == "/" {
        return;
    }
    if p == "//" {
        errs.push(FieldError::invalid(
            path,
            json!(p),
            "segment[0] may not be empty",
        ));
        return;
    }
    if !p.starts_with('/') {
        errs.push(FieldError::invalid(path, json!(p), "must start with a '/'"));
    }
    let body = p.strip_prefix('/').unwrap_or(p);
    let body = body.strip_suffix('/').unwrap_or(body);
    for (i, step) in body.split('/').enumerate() {
        if step.is_empty() {
            errs.push(FieldError::invalid(
                path,
                json!(p),
                format!("segment[{i}] may not be empty"),
            ));
            continue;
        }
        for f in dns1123_subdomain(step) {
            errs.push(FieldError::invalid(
                path,
                json!(p),
                format!("segment[{i}]: {f}"),
            ));
        }
    }
}

/// matchConditions: at most 64, names required, qualified and unique, expressions
/// required and compiling.
pub(crate) fn match_conditions(mc: &[RawMatchCondition], path: &str, errs: &mut Vec<FieldError>) {
    if mc.len() > 64 {
        errs.push(FieldError::new(
            FieldErrorType::TooMany,
            path,
            Some(json!(mc.len())),
            "must have at most 64 items",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, c) in mc.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            let e = skiff_validation::names::qualified_name(&c.name);
            if !e.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.name"),
                    json!(c.name),
                    e.join("; "),
                ));
            }
            if !names.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(format!("{p}.name"), json!(c.name)));
            }
        }
        expression(&c.expression, &format!("{p}.expression"), errs);
    }
}

/// A CEL expression: required, and compiling.
pub(crate) fn expression(expr: &str, path: &str, errs: &mut Vec<FieldError>) {
    if expr.trim().is_empty() {
        errs.push(FieldError::required(path, ""));
    } else if let Err(e) = celenv::compile(expr) {
        errs.push(FieldError::invalid(path, json!(expr), e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(extra: Value) -> Value {
        let mut w = json!({
            "name": "a.b.c",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        for (k, v) in extra.as_object().unwrap() {
            w[k] = v.clone();
        }
        json!({"metadata": {"name": "c"}, "webhooks": [w]})
    }

    fn msgs(v: Value) -> Vec<String> {
        validate_configuration(&v, true)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_good_configuration_passes() {
        assert_eq!(msgs(hook(json!({}))), Vec::<String>::new());
    }

    #[test]
    fn errors_are_worded_as_kube() {
        let cases = [
            (
                json!({"name": "short"}),
                r#"webhooks[0].name: Invalid value: "short": should be a domain with at least three segments separated by dots"#,
            ),
            (
                json!({"sideEffects": null}),
                "webhooks[0].sideEffects: Required value",
            ),
            (
                json!({"sideEffects": "Some"}),
                r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#,
            ),
            (
                json!({"admissionReviewVersions": ["v2"]}),
                r#"webhooks[0].admissionReviewVersions: Invalid value: ["v2"]: must include at least one of v1, v1beta1"#,
            ),
            (
                json!({"admissionReviewVersions": null}),
                "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            ),
            (
                json!({"timeoutSeconds": 31}),
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            ),
            (
                json!({"clientConfig": {"url": "http://x.y/z"}}),
                r#"webhooks[0].clientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#,
            ),
            (
                json!({"clientConfig": {"url": "https://u@x.y/z"}}),
                r#"webhooks[0].clientConfig.url: Invalid value: "u": user information is not permitted in the URL"#,
            ),
            (
                json!({"clientConfig": {"url": "https://x.y/z?a=b"}}),
                r#"webhooks[0].clientConfig.url: Invalid value: "a=b": query parameters are not permitted in the URL"#,
            ),
            (
                json!({"clientConfig": {}}),
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
            ),
            (
                json!({"rules": [{"operations": ["CREATE", "*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}),
                r#"webhooks[0].rules[0].operations: Invalid value: ["CREATE","*"]: if '*' is present, must not specify other operations"#,
            ),
            (
                json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/*", "pods"]}]}),
                r#"webhooks[0].rules[0].resources: Invalid value: ["*/*","pods"]: if '*/*' is present, must not specify other resources"#,
            ),
            (
                json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*", "pods/status"]}]}),
                r#"webhooks[0].rules[0].resources[1]: Invalid value: "pods/status": if 'pods/*' is present, must not specify pods/status"#,
            ),
            (
                json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Foo"}]}),
                r#"webhooks[0].rules[0].scope: Unsupported value: "Foo": supported values: "*", "Cluster", "Namespaced""#,
            ),
            (
                json!({"matchConditions": [{"name": "a", "expression": "true"}, {"name": "a", "expression": "true"}]}),
                r#"webhooks[0].matchConditions[1].name: Duplicate value: "a""#,
            ),
        ];
        for (extra, want) in cases {
            let got = msgs(hook(extra.clone()));
            assert_eq!(got, vec![want.to_string()], "{extra}");
        }
        let bad_cel = msgs(hook(
            json!({"matchConditions": [{"name": "a", "expression": "object.("}]}),
        ));
        assert!(bad_cel[0].starts_with(r#"webhooks[0].matchConditions[0].expression: Invalid value: "object.(": compilation failed"#), "{bad_cel:?}");
    }
}
