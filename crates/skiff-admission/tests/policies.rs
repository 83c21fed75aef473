//! ValidatingAdmissionPolicy with bindings and params.

use serde_json::{Value, json};
use skiff_admission::{
    Attributes, Binding, Gvk, Gvr, Operation, ParamKind, ParamSource, Policy, PolicyContext,
    Selector, StatusReason, UserInfo, evaluate_policies, parse_binding, parse_policy,
    validate_policy,
};

struct Params(Vec<Value>);

impl ParamSource for Params {
    fn namespaced(&self, kind: &ParamKind) -> Option<bool> {
        (kind.kind == "ReplicaLimit").then_some(true)
    }
    fn get(&self, _: &ParamKind, ns: &str, name: &str) -> Result<Option<Value>, String> {
        Ok(self
            .0
            .iter()
            .find(|p| p["metadata"]["name"] == name && p["metadata"]["namespace"] == ns)
            .cloned())
    }
    fn list(&self, _: &ParamKind, ns: &str, sel: &Selector) -> Result<Vec<Value>, String> {
        Ok(self
            .0
            .iter()
            .filter(|p| p["metadata"]["namespace"] == ns)
            .filter(|p| sel.matches(&skiff_types::meta::string_map(p["metadata"].get("labels"))))
            .cloned()
            .collect())
    }
}

fn limit(n: i64) -> Value {
    json!({"apiVersion": "rules.example.com/v1", "kind": "ReplicaLimit",
           "metadata": {"name": "limit", "namespace": "default", "labels": {"tier": "web"}}, "maxReplicas": n})
}

fn policy(extra: Value) -> Policy {
    let mut spec = json!({
        "paramKind": {"apiVersion": "rules.example.com/v1", "kind": "ReplicaLimit"},
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
        "validations": [{"expression": "object.spec.replicas <= params.maxReplicas", "message": "too many replicas"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    parse_policy(&json!({"metadata": {"name": "max-replicas"}, "spec": spec})).unwrap()
}

fn binding(actions: &[&str], param_ref: Value) -> Binding {
    parse_binding(
        &json!({"metadata": {"name": "max-replicas-binding"}, "spec": {
        "policyName": "max-replicas", "validationActions": actions, "paramRef": param_ref}}),
    )
    .unwrap()
}

fn by_name(action: &str) -> Value {
    json!({"name": "limit", "parameterNotFoundAction": action})
}

fn deployment(replicas: i64) -> Attributes {
    Attributes {
        kind: Gvk::new("apps", "v1", "Deployment"),
        resource: Gvr::new("apps", "v1", "deployments"),
        sub_resource: String::new(),
        name: "web".into(),
        namespace: "default".into(),
        operation: Operation::Create,
        object: Some(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": replicas}})),
        old_object: None,
        options: None,
        dry_run: false,
        user: UserInfo::default(),
    }
}

fn none(_: &Gvr) -> Vec<(Gvr, Gvk)> {
    Vec::new()
}

fn eval(
    p: &[Policy],
    b: &[Binding],
    a: &Attributes,
    params: &Params,
) -> Result<skiff_admission::PolicyOutcome, skiff_admission::AdmissionError> {
    let ns = json!({"metadata": {"name": "default", "labels": {"env": "prod"}}});
    evaluate_policies(
        p,
        b,
        a,
        PolicyContext {
            namespace: Some(&ns),
            equivalent: &none,
            params,
        },
    )
}

#[test]
fn a_deny_binding_refuses_too_many_replicas_and_admits_few() {
    let ps = Params(vec![limit(3)]);
    let p = [policy(json!({}))];
    let b = [binding(&["Deny"], by_name("Deny"))];
    let err = eval(&p, &b, &deployment(5), &ps).unwrap_err();
    let st = err.status();
    assert_eq!((st.code, st.reason), (422, StatusReason::Invalid));
    assert_eq!(
        st.message,
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: too many replicas"
    );
    assert_eq!(
        st.causes,
        vec![
            json!({"message": "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: too many replicas"})
        ]
    );
    assert_eq!(
        (st.group.as_deref(), st.kind.as_deref(), st.name.as_deref()),
        (Some("apps"), Some("deployments"), Some("web"))
    );
    // Within the limit, without the binding, or without the policy: admitted.
    assert!(eval(&p, &b, &deployment(3), &ps).is_ok());
    assert!(eval(&p, &[], &deployment(5), &ps).is_ok());
    assert!(eval(&[], &b, &deployment(5), &ps).is_ok());
}

#[test]
fn a_warn_binding_admits_with_a_warning_and_audit_records() {
    let ps = Params(vec![limit(3)]);
    let p = [policy(json!({}))];
    let out = eval(
        &p,
        &[binding(&["Warn", "Audit"], by_name("Deny"))],
        &deployment(5),
        &ps,
    )
    .unwrap();
    assert_eq!(
        out.warnings,
        vec!["Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding': too many replicas".to_string()]
    );
    assert_eq!(
        out.audit_annotations["validation.policy.admission.k8s.io/validation_failure"],
        r#"[{"message":"too many replicas","policy":"max-replicas","binding":"max-replicas-binding","expressionIndex":0,"validationActions":["Warn","Audit"]}]"#
    );
    let ok = eval(
        &p,
        &[binding(&["Warn"], by_name("Deny"))],
        &deployment(1),
        &ps,
    )
    .unwrap();
    assert!(ok.warnings.is_empty());
}

#[test]
fn a_missing_param_denies_or_allows_by_parameter_not_found_action() {
    let p = [policy(json!({}))];
    let none_found = Params(vec![]);
    let err = eval(
        &p,
        &[binding(&["Deny"], by_name("Deny"))],
        &deployment(1),
        &none_found,
    )
    .unwrap_err();
    assert_eq!(
        err.status().message,
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
    );
    assert_eq!(err.status().code, 422);
    assert!(
        eval(
            &p,
            &[binding(&["Deny"], by_name("Allow"))],
            &deployment(100),
            &none_found
        )
        .is_ok()
    );
    // With failurePolicy Ignore the configuration error is ignored.
    let ignore = [policy(json!({"failurePolicy": "Ignore"}))];
    assert!(
        eval(
            &ignore,
            &[binding(&["Deny"], by_name("Deny"))],
            &deployment(1),
            &none_found
        )
        .is_ok()
    );
    // Params chosen by a selector: every one is checked.
    let two = Params(vec![limit(3), {
        let mut l = limit(10);
        l["metadata"]["name"] = json!("other");
        l
    }]);
    let sel =
        json!({"selector": {"matchLabels": {"tier": "web"}}, "parameterNotFoundAction": "Deny"});
    assert!(eval(&p, &[binding(&["Deny"], sel.clone())], &deployment(5), &two).is_err());
    assert!(eval(&p, &[binding(&["Deny"], sel)], &deployment(3), &two).is_ok());
}

#[test]
fn reasons_message_expressions_variables_and_namespace_object() {
    let ps = Params(vec![limit(3)]);
    let p = [policy(json!({
        "variables": [{"name": "max", "expression": "params.maxReplicas"}, {"name": "twice", "expression": "variables.max * 2"}],
        "validations": [{
            "expression": "object.spec.replicas <= variables.twice",
            "messageExpression": "'replicas ' + string(object.spec.replicas) + ' over ' + string(variables.twice) + ' in ' + namespaceObject.metadata.labels.env",
            "reason": "Forbidden"
        }],
        "auditAnnotations": [{"key": "replicas", "valueExpression": "string(object.spec.replicas)"}],
    }))];
    let b = [binding(&["Deny"], by_name("Deny"))];
    let err = eval(&p, &b, &deployment(7), &ps).unwrap_err().status();
    assert_eq!((err.code, err.reason), (403, StatusReason::Forbidden));
    assert!(
        err.message
            .ends_with("denied request: replicas 7 over 6 in prod"),
        "{}",
        err.message
    );
    let out = eval(&p, &b, &deployment(6), &ps).unwrap();
    assert_eq!(out.audit_annotations["max-replicas/replicas"], "6");
}

#[test]
fn evaluation_errors_follow_the_failure_policy_and_match_conditions_filter() {
    let ps = Params(vec![limit(3)]);
    let bad = json!({"validations": [{"expression": "object.spec.nope > 1"}]});
    let b = [binding(&["Deny"], by_name("Deny"))];
    let err = eval(&[policy(bad.clone())], &b, &deployment(1), &ps).unwrap_err();
    assert!(
        err.status().message.ends_with(
            "denied request: expression 'object.spec.nope > 1' resulted in error: no such key: nope"
        ),
        "{}",
        err.status().message
    );
    let mut ignore = bad;
    ignore["failurePolicy"] = json!("Ignore");
    assert!(eval(&[policy(ignore)], &b, &deployment(1), &ps).is_ok());
    // A false matchCondition skips the policy.
    let cond = json!({"matchConditions": [{"name": "not-web", "expression": "object.metadata.name != 'web'"}]});
    assert!(eval(&[policy(cond)], &b, &deployment(50), &ps).is_ok());
    // A message-less failure names the expression.
    let plain = json!({"validations": [{"expression": "object.spec.replicas < 2"}]});
    let err = eval(&[policy(plain)], &b, &deployment(5), &ps).unwrap_err();
    assert!(
        err.status()
            .message
            .ends_with("denied request: failed expression: object.spec.replicas < 2")
    );
}

#[test]
fn binding_match_resources_narrow_the_policy() {
    let ps = Params(vec![limit(3)]);
    let p = [policy(json!({}))];
    let mut b = binding(&["Deny"], by_name("Deny"));
    let narrow = parse_binding(&json!({"metadata": {"name": "x"}, "spec": {"policyName": "max-replicas", "validationActions": ["Deny"],
        "paramRef": by_name("Deny"),
        "matchResources": {"namespaceSelector": {"matchLabels": {"env": "dev"}}}}}))
    .unwrap();
    b.match_resources = narrow.match_resources;
    assert!(eval(&p, &[b], &deployment(5), &ps).is_ok());
}

#[test]
fn policies_are_validated_as_kube_validates_them() {
    let msgs = |spec: Value| -> Vec<String> {
        validate_policy(&json!({"metadata": {"name": "p"}, "spec": spec}))
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    let rules = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]});
    assert_eq!(
        msgs(json!({"matchConstraints": rules, "validations": [{"expression": "true"}]})),
        Vec::<String>::new()
    );
    assert_eq!(
        msgs(json!({"validations": [{"expression": "true"}]})),
        vec!["spec.matchConstraints: Required value".to_string()]
    );
    assert_eq!(
        msgs(json!({"matchConstraints": rules})),
        vec!["spec.validations: Required value: validations or auditAnnotations must contain at least one item".to_string()]
    );
    assert_eq!(
        msgs(json!({"matchConstraints": rules, "validations": [{"expression": "true", "reason": "Teapot"}]})),
        vec![r#"spec.validations[0].reason: Unsupported value: "Teapot": supported values: "Forbidden", "Invalid", "RequestEntityTooLarge", "Unauthorized""#.to_string()]
    );
    let bad = msgs(json!({"matchConstraints": rules, "validations": [{"expression": "object.("}]}));
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with(
            r#"spec.validations[0].expression: Invalid value: "object.(": compilation failed"#
        ),
        "{bad:?}"
    );
    assert!(parse_policy(&json!({"metadata": {"name": "p"}, "spec": {"matchConstraints": rules, "validations": [{"expression": "object.("}]}})).is_err());
}
