//! Which webhooks apply to which requests (kube's ShouldCallHook), as tables.

mod common;

use common::{config, hook, pod_create};
use serde_json::{Value, json};
use skiff_admission::{
    Attributes, Gvk, Gvr, Operation, StatusReason, Webhook, matches, parse_configuration,
};
use std::collections::BTreeMap;

fn one(extra: Value) -> Webhook {
    parse_configuration(
        &config("c", vec![hook("h.example.com", "/", "", extra)]),
        false,
    )
    .unwrap()
    .remove(0)
}

fn none(_: &Gvr) -> Vec<(Gvr, Gvk)> {
    Vec::new()
}

fn labels(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hit(h: &Webhook, a: &Attributes, ns: Option<&BTreeMap<String, String>>) -> bool {
    matches(h, a, ns, &none).unwrap().is_some()
}

fn rule(ops: &[&str], res: &[&str], scope: Option<&str>) -> Value {
    let mut r =
        json!({"operations": ops, "apiGroups": ["*"], "apiVersions": ["*"], "resources": res});
    if let Some(s) = scope {
        r["scope"] = json!(s);
    }
    json!({"rules": [r]})
}

fn node_update() -> Attributes {
    let mut a = pod_create();
    a.kind = Gvk::new("", "v1", "Node");
    a.resource = Gvr::new("", "v1", "nodes");
    a.namespace = String::new();
    a.name = "n1".into();
    a.operation = Operation::Update;
    a
}

fn namespace_create(lbl: Value) -> Attributes {
    let mut a = pod_create();
    a.kind = Gvk::new("", "v1", "Namespace");
    a.resource = Gvr::new("", "v1", "namespaces");
    a.namespace = "team".into();
    a.name = "team".into();
    a.object = Some(json!({"metadata": {"name": "team", "labels": lbl}}));
    a
}

#[test]
fn rules_operations_scope_and_subresources() {
    let ns = labels(&[]);
    let pod = pod_create();
    let mut status = pod_create();
    status.sub_resource = "status".into();
    status.operation = Operation::Update;
    let node = node_update();
    let nsobj = namespace_create(json!({}));
    let cases: Vec<(Value, &Attributes, bool)> = vec![
        (rule(&["CREATE"], &["pods"], None), &pod, true),
        (rule(&["UPDATE"], &["pods"], None), &pod, false),
        (rule(&["*"], &["*"], None), &pod, true),
        (rule(&["*"], &["deployments"], None), &pod, false),
        // Subresources: "pods" is not "pods/status"; "pods/*", "*/status" and "*/*" are.
        (rule(&["*"], &["pods"], None), &status, false),
        (rule(&["*"], &["pods/status"], None), &status, true),
        (rule(&["*"], &["pods/*"], None), &status, true),
        (rule(&["*"], &["*/status"], None), &status, true),
        (rule(&["*"], &["*/*"], None), &status, true),
        (rule(&["*"], &["*"], None), &status, false),
        (rule(&["*"], &["*/*"], None), &pod, true),
        // Scope: a Namespace object is cluster-scoped though its namespace is set.
        (rule(&["*"], &["*"], Some("Namespaced")), &pod, true),
        (rule(&["*"], &["*"], Some("Namespaced")), &node, false),
        (rule(&["*"], &["*"], Some("Cluster")), &node, true),
        (rule(&["*"], &["*"], Some("Cluster")), &pod, false),
        (rule(&["*"], &["*"], Some("Namespaced")), &nsobj, false),
        (rule(&["*"], &["*"], Some("Cluster")), &nsobj, true),
    ];
    for (i, (extra, a, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            hit(&one(extra.clone()), a, Some(&ns)),
            want,
            "case {i}: {extra}"
        );
    }
}

#[test]
fn equivalent_resources_match_unless_the_policy_is_exact() {
    let mut a = pod_create();
    a.kind = Gvk::new("apps", "v1", "Deployment");
    a.resource = Gvr::new("apps", "v1", "deployments");
    let old = |_: &Gvr| {
        vec![
            (
                Gvr::new("apps", "v1", "deployments"),
                Gvk::new("apps", "v1", "Deployment"),
            ),
            (
                Gvr::new("extensions", "v1beta1", "deployments"),
                Gvk::new("extensions", "v1beta1", "Deployment"),
            ),
        ]
    };
    let r = |policy: &str| {
        one(
            json!({"matchPolicy": policy, "rules": [{"operations": ["*"], "apiGroups": ["extensions"], "apiVersions": ["v1beta1"], "resources": ["deployments"]}]}),
        )
    };
    let m = matches(&r("Equivalent"), &a, Some(&labels(&[])), &old)
        .unwrap()
        .unwrap();
    assert_eq!(m.resource, Gvr::new("extensions", "v1beta1", "deployments"));
    assert_eq!(m.kind, Gvk::new("extensions", "v1beta1", "Deployment"));
    assert!(
        matches(&r("Exact"), &a, Some(&labels(&[])), &old)
            .unwrap()
            .is_none()
    );
}

#[test]
fn namespace_selector() {
    let sel = json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}});
    let h = one(sel.clone());
    let prod = labels(&[("env", "prod")]);
    let dev = labels(&[("env", "dev")]);
    assert!(hit(&h, &pod_create(), Some(&prod)));
    assert!(!hit(&h, &pod_create(), Some(&dev)));
    // Cluster-scoped objects other than namespaces always match.
    let any = one(
        json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}, "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}),
    );
    assert!(hit(&any, &node_update(), None));
    // A Namespace being created is matched by its own labels.
    assert!(hit(&any, &namespace_create(json!({"env": "prod"})), None));
    assert!(!hit(&any, &namespace_create(json!({"env": "dev"})), None));
    // A namespace that does not exist: 404 once the rules match.
    let err = matches(&h, &pod_create(), None, &none)
        .unwrap_err()
        .status();
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, r#"namespaces "default" not found"#)
    );
}

#[test]
fn object_selector_sees_the_object_or_the_old_object() {
    let h = one(
        json!({"objectSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}),
    );
    let ns = labels(&[]);
    assert!(hit(&h, &pod_create(), Some(&ns)));
    let mut other = pod_create();
    other.object.as_mut().unwrap()["metadata"]["labels"] = json!({"app": "db"});
    assert!(!hit(&h, &other, Some(&ns)));
    other.old_object = pod_create().object;
    assert!(hit(&h, &other, Some(&ns)));
}

#[test]
fn match_conditions() {
    let ns = labels(&[]);
    let cond = |exprs: &[&str], fp: &str| {
        let mc: Vec<Value> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"name": format!("c{i}"), "expression": e}))
            .collect();
        one(json!({"matchConditions": mc, "failurePolicy": fp}))
    };
    let a = pod_create();
    assert!(hit(
        &cond(&["object.metadata.labels.app == 'web'"], "Fail"),
        &a,
        Some(&ns)
    ));
    assert!(!hit(
        &cond(&["object.metadata.labels.app == 'db'"], "Fail"),
        &a,
        Some(&ns)
    ));
    assert!(hit(
        &cond(
            &[
                "request.userInfo.username == 'alice'",
                "request.operation == 'CREATE'"
            ],
            "Fail"
        ),
        &a,
        Some(&ns)
    ));
    assert!(!hit(
        &cond(&["oldObject == null", "request.dryRun"], "Fail"),
        &a,
        Some(&ns)
    ));
    // A false condition wins over an error.
    assert!(!hit(
        &cond(&["object.nope", "false"], "Fail"),
        &a,
        Some(&ns)
    ));
    // An error with Ignore skips the webhook; with Fail it is a 403.
    assert!(!hit(
        &cond(&["object.spec.nope == 1"], "Ignore"),
        &a,
        Some(&ns)
    ));
    let err = matches(
        &cond(&["object.spec.nope == 1"], "Fail"),
        &a,
        Some(&ns),
        &none,
    )
    .unwrap_err()
    .status();
    assert_eq!((err.code, err.reason), (403, StatusReason::Forbidden));
    assert_eq!(
        err.message,
        r#"pods "web" is forbidden: expression 'object.spec.nope == 1' resulted in error: no such key: nope"#
    );
}
