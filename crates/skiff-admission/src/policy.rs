//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding
//! (admissionregistration.k8s.io/v1), read and compiled; the policy validated as kube
//! validates it.

use crate::celenv::{self, Expr};
use crate::rules::Rule;
use crate::selector::Selector;
use crate::validate::{expression, match_conditions, validate_rule, validate_selector};
use crate::webhook::{FailurePolicy, MatchCondition, MatchPolicy, RawMatchCondition};
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_types::FieldError;
use std::collections::BTreeSet;

/// `spec.paramKind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParamKind {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
}

impl ParamKind {
    /// Go's generated `String()`, as kube's errors print it.
    pub(crate) fn go_string(&self) -> String {
        format!(
            "&ParamKind{{APIVersion:{},Kind:{},}}",
            self.api_version, self.kind
        )
    }
}

/// `matchConstraints` / a binding's `matchResources`.
#[derive(Debug, Clone)]
pub struct MatchResources {
    pub namespace_selector: Selector,
    pub object_selector: Selector,
    pub resource_rules: Vec<Rule>,
    pub exclude_resource_rules: Vec<Rule>,
    pub match_policy: MatchPolicy,
}

/// One of `spec.validations`, compiled.
#[derive(Debug, Clone)]
pub struct Validation {
    pub expression: String,
    pub message: String,
    pub reason: Option<String>,
    pub message_expression: String,
    pub(crate) expr: Expr,
    pub(crate) message_expr: Option<Expr>,
}

/// One of `spec.auditAnnotations`, compiled.
#[derive(Debug, Clone)]
pub struct AuditAnnotation {
    pub key: String,
    pub value_expression: String,
    pub(crate) expr: Expr,
}

/// One of `spec.variables`, compiled.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub expression: String,
    pub(crate) expr: Expr,
}

/// A ValidatingAdmissionPolicy, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub param_kind: Option<ParamKind>,
    pub match_constraints: MatchResources,
    pub validations: Vec<Validation>,
    pub failure_policy: FailurePolicy,
    pub audit_annotations: Vec<AuditAnnotation>,
    pub match_conditions: Vec<MatchCondition>,
    pub variables: Vec<Variable>,
}

/// `validationActions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationAction {
    Deny,
    Warn,
    Audit,
}

impl ValidationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationAction::Deny => "Deny",
            ValidationAction::Warn => "Warn",
            ValidationAction::Audit => "Audit",
        }
    }
}

/// `paramRef`.
#[derive(Debug, Clone)]
pub struct ParamRef {
    pub name: String,
    pub namespace: String,
    pub selector: Option<Selector>,
    /// `parameterNotFoundAction: Deny` (otherwise Allow).
    pub deny_if_not_found: bool,
}

/// A ValidatingAdmissionPolicyBinding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    pub policy_name: String,
    pub param_ref: Option<ParamRef>,
    /// `None`: the binding matches everything its policy does.
    pub match_resources: Option<MatchResources>,
    pub validation_actions: Vec<ValidationAction>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawObject<S> {
    #[serde(default)]
    metadata: crate::webhook::RawMeta,
    spec: Option<S>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPolicySpec {
    param_kind: Option<ParamKind>,
    match_constraints: Option<Value>,
    #[serde(default)]
    validations: Vec<RawValidation>,
    failure_policy: Option<String>,
    #[serde(default)]
    audit_annotations: Vec<RawAuditAnnotation>,
    #[serde(default)]
    match_conditions: Vec<RawMatchCondition>,
    #[serde(default)]
    variables: Vec<RawVariable>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawValidation {
    #[serde(default)]
    expression: String,
    #[serde(default)]
    message: String,
    reason: Option<String>,
    #[serde(default)]
    message_expression: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawAuditAnnotation {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value_expression: String,
}

#[derive(Deserialize, Default)]
struct RawVariable {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expression: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMatchResources {
    namespace_selector: Option<Value>,
    object_selector: Option<Value>,
    #[serde(default)]
    resource_rules: Vec<Rule>,
    #[serde(default)]
    exclude_resource_rules: Vec<Rule>,
    match_policy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawBindingSpec {
    #[serde(default)]
    policy_name: String,
    param_ref: Option<RawParamRef>,
    match_resources: Option<Value>,
    #[serde(default)]
    validation_actions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawParamRef {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    selector: Option<Value>,
    parameter_not_found_action: Option<String>,
}

fn parse_match_resources(v: &Value) -> Result<MatchResources, String> {
    let r: RawMatchResources = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    Ok(MatchResources {
        namespace_selector: Selector::parse(r.namespace_selector.as_ref())?,
        object_selector: Selector::parse(r.object_selector.as_ref())?,
        resource_rules: r.resource_rules,
        exclude_resource_rules: r.exclude_resource_rules,
        match_policy: match r.match_policy.as_deref() {
            Some("Exact") => MatchPolicy::Exact,
            _ => MatchPolicy::Equivalent,
        },
    })
}

/// Reads and compiles a policy; the errors are [`validate_policy`]'s.
pub fn parse_policy(obj: &Value) -> Result<Policy, Vec<FieldError>> {
    let errs = validate_policy(obj);
    if !errs.is_empty() {
        return Err(errs);
    }
    let bad = |e: String| vec![FieldError::invalid("spec", json!(null), e)];
    let raw: RawObject<RawPolicySpec> =
        serde_json::from_value(obj.clone()).map_err(|e| bad(e.to_string()))?;
    let spec = raw.spec.unwrap_or_default();
    let mc = spec.match_constraints.unwrap_or_else(|| json!({}));
    Ok(Policy {
        name: raw.metadata.name,
        param_kind: spec.param_kind,
        match_constraints: parse_match_resources(&mc).map_err(bad)?,
        validations: spec
            .validations
            .iter()
            .map(compile_validation)
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        failure_policy: match spec.failure_policy.as_deref() {
            Some("Ignore") => FailurePolicy::Ignore,
            _ => FailurePolicy::Fail,
        },
        audit_annotations: spec
            .audit_annotations
            .iter()
            .map(|a| {
                Ok(AuditAnnotation {
                    key: a.key.clone(),
                    value_expression: a.value_expression.clone(),
                    expr: celenv::compile(&a.value_expression)?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(bad)?,
        match_conditions: spec
            .match_conditions
            .iter()
            .map(|c| {
                Ok(MatchCondition {
                    name: c.name.clone(),
                    expression: c.expression.clone(),
                    expr: celenv::compile(&c.expression)?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(bad)?,
        variables: spec
            .variables
            .iter()
            .map(|v| {
                Ok(Variable {
                    name: v.name.clone(),
                    expression: v.expression.clone(),
                    expr: celenv::compile(&v.expression)?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(bad)?,
    })
}

fn compile_validation(v: &RawValidation) -> Result<Validation, String> {
    let message_expr = match v.message_expression.trim() {
        "" => None,
        m => Some(celenv::compile(m)?),
    };
    Ok(Validation {
        expression: v.expression.clone(),
        message: v.message.clone(),
        reason: v.reason.clone(),
        message_expression: v.message_expression.clone(),
        expr: celenv::compile(&v.expression)?,
        message_expr,
    })
}

/// Reads a binding.
pub fn parse_binding(obj: &Value) -> Result<Binding, String> {
    let raw: RawObject<RawBindingSpec> =
        serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    let spec = raw.spec.unwrap_or_default();
    let param_ref = match spec.param_ref {
        None => None,
        Some(p) => Some(ParamRef {
            selector: p
                .selector
                .as_ref()
                .map(|s| Selector::parse(Some(s)))
                .transpose()?,
            name: p.name,
            namespace: p.namespace,
            deny_if_not_found: p.parameter_not_found_action.as_deref() == Some("Deny"),
        }),
    };
    let validation_actions = spec
        .validation_actions
        .iter()
        .map(|a| match a.as_str() {
            "Deny" => Ok(ValidationAction::Deny),
            "Warn" => Ok(ValidationAction::Warn),
            "Audit" => Ok(ValidationAction::Audit),
            other => Err(format!("unsupported validation action {other:?}")),
        })
        .collect::<Result<_, _>>()?;
    Ok(Binding {
        name: raw.metadata.name,
        policy_name: spec.policy_name,
        param_ref,
        match_resources: spec
            .match_resources
            .as_ref()
            .map(parse_match_resources)
            .transpose()?,
        validation_actions,
    })
}

const REASONS: [&str; 4] = [
    "Forbidden",
    "Invalid",
    "RequestEntityTooLarge",
    "Unauthorized",
];

/// kube's ValidatingAdmissionPolicy validation (create): matchConstraints, the
/// validations (CEL compiling, messages, reasons), auditAnnotations, variables,
/// matchConditions, paramKind and failurePolicy.
pub fn validate_policy(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let raw: RawObject<RawPolicySpec> = match serde_json::from_value(obj.clone()) {
        Ok(r) => r,
        Err(e) => return vec![FieldError::invalid("spec", json!(null), e.to_string())],
    };
    let spec = raw.spec.unwrap_or_default();
    if let Some(pk) = &spec.param_kind {
        if pk.api_version.is_empty() {
            errs.push(FieldError::required("spec.paramKind.apiVersion", ""));
        }
        if pk.kind.is_empty() {
            errs.push(FieldError::required("spec.paramKind.kind", ""));
        }
    }
    match &spec.match_constraints {
        None => errs.push(FieldError::required("spec.matchConstraints", "")),
        Some(mc) => validate_match_resources(mc, "spec.matchConstraints", true, &mut errs),
    }
    if spec.validations.is_empty() && spec.audit_annotations.is_empty() {
        errs.push(FieldError::required(
            "spec.validations",
            "validations or auditAnnotations must contain at least one item",
        ));
    }
    for (i, v) in spec.validations.iter().enumerate() {
        validation(v, &format!("spec.validations[{i}]"), &mut errs);
    }
    audit_annotations(&spec.audit_annotations, &raw.metadata.name, &mut errs);
    variables(&spec.variables, &mut errs);
    match_conditions(&spec.match_conditions, "spec.matchConditions", &mut errs);
    if let Some(fp) = spec
        .failure_policy
        .as_deref()
        .filter(|f| !["Fail", "Ignore"].contains(f))
    {
        errs.push(FieldError::not_supported(
            "spec.failurePolicy",
            json!(fp),
            &["Fail", "Ignore"],
        ));
    }
    errs
}

fn validate_match_resources(mc: &Value, path: &str, policy: bool, errs: &mut Vec<FieldError>) {
    validate_selector(
        mc.get("namespaceSelector"),
        &format!("{path}.namespaceSelector"),
        errs,
    );
    validate_selector(
        mc.get("objectSelector"),
        &format!("{path}.objectSelector"),
        errs,
    );
    let rules = mc.get("resourceRules").and_then(Value::as_array);
    if policy && rules.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{path}.resourceRules"), ""));
    }
    for (i, r) in rules.into_iter().flatten().enumerate() {
        validate_rule(r, &format!("{path}.resourceRules[{i}]"), true, errs);
    }
    let excl = mc.get("excludeResourceRules").and_then(Value::as_array);
    for (i, r) in excl.into_iter().flatten().enumerate() {
        validate_rule(r, &format!("{path}.excludeResourceRules[{i}]"), true, errs);
    }
    if let Some(mp) = mc
        .get("matchPolicy")
        .and_then(Value::as_str)
        .filter(|m| !["Equivalent", "Exact"].contains(m))
    {
        errs.push(FieldError::not_supported(
            format!("{path}.matchPolicy"),
            json!(mp),
            &["Equivalent", "Exact"],
        ));
    }
}

fn validation(v: &RawValidation, path: &str, errs: &mut Vec<FieldError>) {
    expression(&v.expression, &format!("{path}.expression"), errs);
    let msg = v.message.trim();
    if msg.contains('\n') {
        errs.push(FieldError::invalid(
            format!("{path}.message"),
            json!(v.message),
            "message must not contain line breaks",
        ));
    } else if msg.is_empty() && v.expression.trim().contains('\n') {
        errs.push(FieldError::required(
            format!("{path}.message"),
            "message must be specified if expression contains line breaks",
        ));
    }
    if !v.message_expression.is_empty() {
        expression(
            &v.message_expression,
            &format!("{path}.messageExpression"),
            errs,
        );
    }
    if let Some(r) = v.reason.as_deref().filter(|r| !REASONS.contains(r)) {
        errs.push(FieldError::not_supported(
            format!("{path}.reason"),
            json!(r),
            &REASONS,
        ));
    }
}

fn audit_annotations(aa: &[RawAuditAnnotation], policy: &str, errs: &mut Vec<FieldError>) {
    let mut keys = BTreeSet::new();
    for (i, a) in aa.iter().enumerate() {
        let path = format!("spec.auditAnnotations[{i}]");
        if a.key.is_empty() {
            errs.push(FieldError::required(format!("{path}.key"), ""));
        } else {
            let full = format!("{policy}/{}", a.key);
            let e = skiff_validation::names::qualified_name(&full);
            if !e.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.key"),
                    json!(a.key),
                    e.join("; "),
                ));
            }
            if !keys.insert(a.key.clone()) {
                errs.push(FieldError::duplicate(format!("{path}.key"), json!(a.key)));
            }
        }
        expression(
            &a.value_expression,
            &format!("{path}.valueExpression"),
            errs,
        );
    }
}

fn variables(vs: &[RawVariable], errs: &mut Vec<FieldError>) {
    for (i, v) in vs.iter().enumerate() {
        let path = format!("spec.variables[{i}]");
        let ident = v
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if v.name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.name"),
                "name is not specified",
            ));
        } else if !ident {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                json!(v.name),
                "name is not a valid CEL identifier",
            ));
        }
        expression(&v.expression, &format!("{path}.expression"), errs);
    }
}
