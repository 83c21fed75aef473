//! Evaluating ValidatingAdmissionPolicies against a request (kube's policy
//! dispatcher and validator): matching, params, CEL validations, validation actions.

use crate::attributes::{Attributes, exempt};
use crate::celenv::{Vars, map_of};
use crate::error::{self, AdmissionError};
use crate::matching::{
    Equivalents, Matched, bind_request, conditions_hold, namespace_matches, object_matches,
    rules_match,
};
use crate::policy::{Binding, MatchResources, ParamKind, Policy, ValidationAction};
use crate::selector::{Selector, labels_of};
use crate::webhook::FailurePolicy;
use cel::Value as Cel;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where params come from (the API server's informers).
pub trait ParamSource {
    /// Whether `kind` is namespaced; `None` when it is not served.
    fn namespaced(&self, kind: &ParamKind) -> Option<bool>;
    /// The object `name` (in `namespace`, empty for cluster-scoped kinds).
    fn get(&self, kind: &ParamKind, namespace: &str, name: &str) -> Result<Option<Value>, String>;
    /// The objects matching `selector` (in `namespace`, empty for all or cluster-scoped).
    fn list(
        &self,
        kind: &ParamKind,
        namespace: &str,
        selector: &Selector,
    ) -> Result<Vec<Value>, String>;
}

/// What policies added to an admitted request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyOutcome {
    pub warnings: Vec<String>,
    /// `<policy>/<key>` from auditAnnotations, and
    /// `validation.policy.admission.k8s.io/validation_failure` from Audit actions.
    pub audit_annotations: BTreeMap<String, String>,
}

/// The request's surroundings.
#[derive(Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The Namespace object of the request's namespace (`None`: cluster-scoped
    /// request, or the namespace does not exist).
    pub namespace: Option<&'a Value>,
    pub equivalent: Equivalents<'a>,
    pub params: &'a dyn ParamSource,
}

struct Denial {
    policy: String,
    binding: Option<String>,
    message: String,
    reason: Option<String>,
}

const VALIDATION_FAILURE: &str = "validation.policy.admission.k8s.io/validation_failure";
const MAX_ANNOTATION_VALUE: usize = 10 * 1024;

/// Evaluates every binding of every policy that matches `a` (the validate phase);
/// the first denial (with a Deny action) is the error, after all were evaluated.
pub fn evaluate_policies(
    policies: &[Policy],
    bindings: &[Binding],
    a: &Attributes,
    ctx: PolicyContext<'_>,
) -> Result<PolicyOutcome, AdmissionError> {
    let mut out = PolicyOutcome::default();
    let mut denials = Vec::new();
    if exempt(&a.kind) {
        return Ok(out);
    }
    for p in policies {
        let bs: Vec<&Binding> = bindings
            .iter()
            .filter(|b| b.policy_name == p.name)
            .collect();
        evaluate_policy(p, &bs, a, ctx, &mut out, &mut denials);
    }
    match denials.into_iter().next() {
        Some(d) => Err(error::policy_denied(
            a,
            &d.policy,
            d.binding.as_deref(),
            &d.message,
            d.reason.as_deref(),
        )),
        None => Ok(out),
    }
}

fn config_error(p: &Policy, b: Option<&Binding>, err: &str, denials: &mut Vec<Denial>) {
    if p.failure_policy == FailurePolicy::Ignore {
        return;
    }
    let what = if b.is_some() { "binding" } else { "policy" };
    denials.push(Denial {
        policy: p.name.clone(),
        binding: b.map(|b| b.name.clone()),
        message: format!("failed to configure {what}: {err}"),
        reason: None,
    });
}

fn evaluate_policy(
    p: &Policy,
    bindings: &[&Binding],
    a: &Attributes,
    ctx: PolicyContext<'_>,
    out: &mut PolicyOutcome,
    denials: &mut Vec<Denial>,
) {
    let m = match resources_match(&p.match_constraints, a, ctx) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => return config_error(p, None, &e, denials),
    };
    let mut collected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in bindings {
        match b
            .match_resources
            .as_ref()
            .map(|mr| resources_match(mr, a, ctx))
        {
            Some(Ok(None)) => continue,
            Some(Err(e)) => {
                config_error(p, Some(b), &e, denials);
                continue;
            }
            _ => {}
        }
        let params = match collect_params(p.param_kind.as_ref(), b, &a.namespace, ctx.params) {
            Ok(ps) => ps,
            Err(e) => {
                config_error(p, Some(b), &e, denials);
                continue;
            }
        };
        for param in &params {
            let r = validate(p, a, &m, param.as_ref(), ctx.namespace);
            act(p, b, r, out, denials, &mut collected);
        }
    }
    for (k, vs) in collected {
        out.audit_annotations
            .entry(format!("{}/{k}", p.name))
            .or_insert_with(|| vs.join(", "));
    }
}

/// kube's policy Matcher: selectors, excludeResourceRules, resourceRules (all when
/// empty), resourceNames, matchPolicy. `Err`: a missing namespace.
fn resources_match(
    mr: &MatchResources,
    a: &Attributes,
    ctx: PolicyContext<'_>,
) -> Result<Option<Matched>, String> {
    let labels = ctx.namespace.map(labels_of);
    let ns = namespace_matches(&mr.namespace_selector, a, labels.as_ref());
    if matches!(ns, Ok(false)) || !object_matches(&mr.object_selector, a) {
        return Ok(None);
    }
    let named = |r: &crate::Rule| r.name_matches(a);
    if rules_match(
        &mr.exclude_resource_rules,
        mr.match_policy,
        a,
        ctx.equivalent,
        named,
    )
    .is_some()
    {
        return Ok(None);
    }
    let m = if mr.resource_rules.is_empty() {
        Some(Matched {
            resource: a.resource.clone(),
            kind: a.kind.clone(),
        })
    } else {
        rules_match(
            &mr.resource_rules,
            mr.match_policy,
            a,
            ctx.equivalent,
            named,
        )
    };
    if m.is_none() {
        return Ok(None);
    }
    ns.map_err(|e| e.message)?;
    Ok(m)
}

/// kube's CollectParams: `[None]` without paramKind or paramRef; the named or selected
/// objects otherwise (none with parameterNotFoundAction Allow).
fn collect_params(
    kind: Option<&ParamKind>,
    b: &Binding,
    request_ns: &str,
    src: &dyn ParamSource,
) -> Result<Vec<Option<Value>>, String> {
    let (Some(kind), Some(r)) = (kind, b.param_ref.as_ref()) else {
        return Ok(vec![None]);
    };
    let namespaced = src
        .namespaced(kind)
        .ok_or_else(|| format!("paramKind kind `{}` not known", kind.go_string()))?;
    let ns = match (namespaced, r.namespace.as_str()) {
        (false, _) => "",
        (true, "") if request_ns.is_empty() => {
            return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
        }
        (true, "") => request_ns,
        (true, n) => n,
    };
    let found = if !r.name.is_empty() {
        src.get(kind, ns, &r.name)?.into_iter().collect()
    } else if let Some(sel) = &r.selector {
        src.list(kind, ns, sel)?
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if found.is_empty() && r.deny_if_not_found {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found.into_iter().map(Some).collect())
}

/// One decision that is not an admit.
struct Decision {
    index: usize,
    message: String,
    reason: Option<String>,
}

#[derive(Default)]
struct ValidateResult {
    denials: Vec<Decision>,
    annotations: Vec<(String, String)>,
    annotation_errors: Vec<String>,
}

fn validate(
    p: &Policy,
    a: &Attributes,
    m: &Matched,
    param: Option<&Value>,
    ns: Option<&Value>,
) -> ValidateResult {
    let mut r = ValidateResult::default();
    let mut vars = Vars::new();
    bind_request(&mut vars, a, m);
    vars.set_json("params", param);
    vars.set_json("namespaceObject", ns);
    vars.set("variables", map_of([]));
    let fail = p.failure_policy == FailurePolicy::Fail;
    let conds: Vec<_> = p.match_conditions.iter().map(|c| &c.expr).collect();
    match conditions_hold(&conds, &vars) {
        Ok(true) => {}
        Ok(false) => return r,
        Err(e) => {
            if fail {
                r.denials.push(Decision {
                    index: 0,
                    message: e,
                    reason: None,
                });
            }
            return r;
        }
    }
    bind_variables(p, &mut vars);
    for (i, v) in p.validations.iter().enumerate() {
        match vars.eval_bool(&v.expr) {
            Ok(true) => {}
            Err(e) if fail => r.denials.push(Decision {
                index: i,
                message: format!("expression '{}' resulted in error: {e}", v.expression),
                reason: None,
            }),
            Err(_) => {}
            Ok(false) => r.denials.push(Decision {
                index: i,
                message: failure_message(v, &vars),
                reason: Some(v.reason.clone().unwrap_or_else(|| "Invalid".into())),
            }),
        }
    }
    audit(p, &vars, fail, &mut r);
    r
}

/// Variables in order, each seeing the ones before it; failing ones are left out.
fn bind_variables(p: &Policy, vars: &mut Vars) {
    let mut done: Vec<(String, Cel)> = Vec::new();
    for v in &p.variables {
        if let Ok(val) = vars.eval(&v.expr) {
            done.push((v.name.clone(), val));
            vars.set("variables", map_of(done.clone()));
        }
    }
}

/// messageExpression's string, else message, else `failed expression: <expression>`.
fn failure_message(v: &crate::policy::Validation, vars: &Vars) -> String {
    if let Some(Ok(Cel::String(s))) = v.message_expr.as_ref().map(|e| vars.eval(e)) {
        let t = s.trim();
        if !t.is_empty() && !t.contains('\n') {
            return t.to_string();
        }
    }
    if !v.message.trim().is_empty() {
        return v.message.trim().to_string();
    }
    format!("failed expression: {}", v.expression.trim())
}

fn audit(p: &Policy, vars: &Vars, fail: bool, r: &mut ValidateResult) {
    for aa in &p.audit_annotations {
        let err = match vars.eval(&aa.expr) {
            Ok(Cel::String(s)) => {
                let mut v = s.to_string();
                if v.len() > MAX_ANNOTATION_VALUE {
                    let mut cut = MAX_ANNOTATION_VALUE;
                    while !v.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    v.truncate(cut);
                }
                r.annotations.push((aa.key.clone(), v));
                continue;
            }
            Ok(Cel::Null) => continue,
            Ok(_) => format!(
                "valueExpression '{}' resulted in unsupported return type. Return type must be either string or null.",
                aa.value_expression
            ),
            Err(e) => format!(
                "valueExpression '{}' resulted in error: {e}",
                aa.value_expression
            ),
        };
        if fail {
            r.annotation_errors.push(err);
        }
    }
}

/// The binding's validation actions applied to one result.
fn act(
    p: &Policy,
    b: &Binding,
    r: ValidateResult,
    out: &mut PolicyOutcome,
    denials: &mut Vec<Denial>,
    collected: &mut BTreeMap<String, Vec<String>>,
) {
    for d in r.denials {
        for action in &b.validation_actions {
            match action {
                ValidationAction::Deny => denials.push(Denial {
                    policy: p.name.clone(),
                    binding: Some(b.name.clone()),
                    message: d.message.clone(),
                    reason: d.reason.clone(),
                }),
                ValidationAction::Warn => out.warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                    p.name, b.name, d.message
                )),
                ValidationAction::Audit => {
                    let actions: Vec<&str> =
                        b.validation_actions.iter().map(|a| a.as_str()).collect();
                    let value = json!([{"message": d.message, "policy": b.policy_name, "binding": b.name, "expressionIndex": d.index, "validationActions": actions}]);
                    out.audit_annotations
                        .entry(VALIDATION_FAILURE.into())
                        .or_insert_with(|| value.to_string());
                }
            }
        }
    }
    for (k, v) in r.annotations {
        let vs = collected.entry(k).or_default();
        if !vs.contains(&v) {
            vs.push(v);
        }
    }
    for e in r.annotation_errors {
        denials.push(Denial {
            policy: p.name.clone(),
            binding: Some(b.name.clone()),
            message: e,
            reason: None,
        });
    }
}
