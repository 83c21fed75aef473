//! Whether a webhook applies to a request: kube's `ShouldCallHook` (namespace and
//! object selectors, rules with matchPolicy Equivalent, then matchConditions).

use crate::attributes::{Attributes, Gvk, Gvr, Operation};
use crate::celenv::{Expr, Vars, request_json};
use crate::error::AdmissionError;
use crate::rules::Rule;
use crate::selector::{Selector, labels_of};
use crate::webhook::{FailurePolicy, MatchPolicy, Webhook};
use skiff_types::ApiError;
use std::collections::BTreeMap;

/// The resource and kind a webhook is called with (the request's own, or an
/// equivalent one its rules name).
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub resource: Gvr,
    pub kind: Gvk,
}

/// Maps a request's resource to the other group/versions serving the same objects
/// (kube's EquivalentResourceMapper), each with its kind; may include the resource
/// itself.
pub type Equivalents<'a> = &'a (dyn Fn(&Gvr) -> Vec<(Gvr, Gvk)> + Sync);

/// Does `hook` apply to `a`? `namespace_labels`: the labels of the request's namespace
/// (`None` when it does not exist; unused for cluster-scoped objects, and for
/// creating/updating a Namespace, whose own labels are read from the object). Errors:
/// a missing namespace (404) once the rules match, a matchCondition failing to evaluate
/// with failurePolicy Fail (403).
pub fn matches(
    hook: &Webhook,
    a: &Attributes,
    namespace_labels: Option<&BTreeMap<String, String>>,
    equivalent: Equivalents,
) -> Result<Option<Matched>, AdmissionError> {
    let ns = namespace_matches(&hook.namespace_selector, a, namespace_labels);
    if matches!(ns, Ok(false)) || !object_matches(&hook.object_selector, a) {
        return Ok(None);
    }
    let Some(m) = rules_match(&hook.rules, hook.match_policy, a, equivalent, |_| true) else {
        return Ok(None);
    };
    ns.map_err(AdmissionError::Rejected)?;
    let conds: Vec<&Expr> = hook.match_conditions.iter().map(|c| &c.expr).collect();
    let mut vars = Vars::new();
    bind_request(&mut vars, a, &m);
    match conditions_hold(&conds, &vars) {
        Ok(b) => Ok(b.then_some(m)),
        Err(_) if hook.failure_policy == FailurePolicy::Ignore => Ok(None),
        Err(e) => Err(AdmissionError::Rejected(ApiError::forbidden(
            &a.resource.group,
            &a.resource.resource,
            &a.name,
            &e,
        ))),
    }
}

/// Binds `object`, `oldObject` and `request` for `m`.
pub(crate) fn bind_request(vars: &mut Vars, a: &Attributes, m: &Matched) {
    vars.set_json("object", a.object.as_ref());
    vars.set_json("oldObject", a.old_object.as_ref());
    vars.set_json("request", Some(&request_json(a, &m.kind, &m.resource)));
}

/// The namespaceSelector (kube's namespace matcher): cluster-scoped objects other
/// than namespaces always match.
pub(crate) fn namespace_matches(
    sel: &Selector,
    a: &Attributes,
    provided: Option<&BTreeMap<String, String>>,
) -> Result<bool, ApiError> {
    let is_ns = a.resource.resource == "namespaces";
    if (a.namespace.is_empty() && !is_ns) || sel.is_empty() {
        return Ok(true);
    }
    let creating_ns = is_ns
        && a.sub_resource.is_empty()
        && matches!(a.operation, Operation::Create | Operation::Update);
    let own;
    let labels = if creating_ns {
        own = a.object.as_ref().map(labels_of).unwrap_or_default();
        &own
    } else {
        provided.ok_or_else(|| ApiError::not_found("", "namespaces", &a.namespace))?
    };
    Ok(sel.matches(labels))
}

/// The objectSelector: the object's or the old object's labels.
pub(crate) fn object_matches(sel: &Selector, a: &Attributes) -> bool {
    if sel.is_empty() {
        return true;
    }
    let hit = |o: Option<&serde_json::Value>| o.is_some_and(|o| sel.matches(&labels_of(o)));
    hit(a.object.as_ref()) || hit(a.old_object.as_ref())
}

/// The rules, then (matchPolicy Equivalent) each rule against the equivalent
/// resources, earlier rules first. `extra` adds a per-rule check (resourceNames).
pub(crate) fn rules_match(
    rules: &[Rule],
    policy: MatchPolicy,
    a: &Attributes,
    equivalent: Equivalents,
    extra: impl Fn(&Rule) -> bool,
) -> Option<Matched> {
    if rules.iter().any(|r| r.matches(a, &a.resource) && extra(r)) {
        return Some(Matched {
            resource: a.resource.clone(),
            kind: a.kind.clone(),
        });
    }
    if policy != MatchPolicy::Equivalent {
        return None;
    }
    let eqs = equivalent(&a.resource);
    rules.iter().find_map(|r| {
        eqs.iter()
            .filter(|(gvr, _)| *gvr != a.resource)
            .find(|(gvr, _)| r.matches(a, gvr) && extra(r))
            .map(|(gvr, gvk)| Matched {
                resource: gvr.clone(),
                kind: gvk.clone(),
            })
    })
}

/// kube's matchConditions matcher: any false → no match; otherwise errors (joined as
/// an aggregate) are an error; otherwise a match.
pub(crate) fn conditions_hold(conds: &[&Expr], vars: &Vars) -> Result<bool, String> {
    let mut errs = Vec::new();
    for c in conds {
        match vars.eval_bool(c) {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => errs.push(format!("expression '{}' resulted in error: {e}", c.source)),
        }
    }
    match errs.len() {
        0 => Ok(true),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}
