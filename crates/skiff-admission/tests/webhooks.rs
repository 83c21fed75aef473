//! Webhooks called over real HTTPS on 127.0.0.1.

mod common;

use common::{Server, To, config, dead_addr, hook, pod_create};
use serde_json::{Value, json};
use skiff_admission::{
    AdmissionError, Dispatcher, Gvk, Gvr, MatchContext, StatusReason, Webhook, parse_configuration,
};
use std::collections::BTreeMap;
use std::sync::Arc;

fn no_equivalents(_: &Gvr) -> Vec<(Gvr, Gvk)> {
    Vec::new()
}

fn ctx(labels: &BTreeMap<String, String>) -> MatchContext<'_> {
    MatchContext {
        namespace_labels: Some(labels),
        equivalent: &no_equivalents,
    }
}

fn hooks(name: &str, mutating: bool, hs: Vec<Value>) -> Vec<Webhook> {
    parse_configuration(&config(name, hs), mutating).unwrap()
}

#[tokio::test]
async fn a_mutating_webhook_adds_a_label_through_a_json_patch() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let hs = hooks(
        "m",
        true,
        vec![hook("label.example.com", "/label", &s.ca.pem, json!({}))],
    );
    let mut a = pod_create();
    let out = d.mutate(&hs, &mut a, ctx(&ns)).await.unwrap();
    let obj = out.object.unwrap();
    assert_eq!(
        obj["metadata"]["labels"],
        json!({"app": "web", "added": "yes"})
    );
    assert_eq!(a.object.unwrap()["metadata"]["labels"]["added"], "yes");
    assert_eq!(
        out.audit_annotations["mutation.webhook.admission.k8s.io/round_0_index_0"],
        r#"{"configuration":"m","webhook":"label.example.com","mutated":true}"#
    );
    assert_eq!(
        out.audit_annotations["patch.webhook.admission.k8s.io/round_0_index_0"],
        r#"{"configuration":"m","webhook":"label.example.com","patch":[{"op":"add","path":"/metadata/labels/added","value":"yes"}],"patchType":"JSONPatch"}"#
    );
    // What kube sends: an AdmissionReview v1, the timeout in the query.
    let calls = s.calls.lock().unwrap().clone();
    assert_eq!(calls[0].0, "/label?timeout=10s");
    let req = &calls[0].1["request"];
    assert_eq!(calls[0].1["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(req["userInfo"]["username"], "alice");
    assert_eq!(req["namespace"], "default");
    assert_eq!(req["object"]["metadata"]["name"], "web");
    assert_eq!(req["oldObject"], Value::Null);
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["options"]["kind"], "CreateOptions");
}

#[tokio::test]
async fn a_validating_webhook_denies_with_its_message_and_without_it_allows() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let a = pod_create();
    let deny = hooks(
        "v",
        false,
        vec![hook("deny.example.com", "/deny", &s.ca.pem, json!({}))],
    );
    let err = d.validate(&deny, &a, ctx(&ns)).await.unwrap_err();
    let st = err.status();
    assert_eq!(st.code, 403);
    assert_eq!(st.reason, StatusReason::Forbidden);
    assert_eq!(
        st.message,
        r#"pods "web" is forbidden: admission webhook "deny.example.com" denied the request: no pods today"#
    );
    assert_eq!(st.name.as_deref(), Some("web"));
    assert_eq!(st.kind.as_deref(), Some("pods"));
    // The same request without that webhook goes through.
    let allow = hooks(
        "v",
        false,
        vec![hook("allow.example.com", "/allow", &s.ca.pem, json!({}))],
    );
    assert!(d.validate(&allow, &a, ctx(&ns)).await.is_ok());
    assert!(d.validate(&[], &a, ctx(&ns)).await.is_ok());
}

#[tokio::test]
async fn a_denial_without_a_message_says_without_explanation() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let hs = hooks(
        "v",
        false,
        vec![hook("bare.example.com", "/deny-bare", &s.ca.pem, json!({}))],
    );
    let err = d.validate(&hs, &pod_create(), ctx(&ns)).await.unwrap_err();
    assert_eq!(
        err.status().message,
        r#"pods "web" is forbidden: admission webhook "bare.example.com" denied the request without explanation"#
    );
}

#[tokio::test]
async fn validating_webhooks_run_together_and_their_warnings_are_kept() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let hs = hooks(
        "v",
        false,
        vec![
            hook("warn.example.com", "/warn", &s.ca.pem, json!({})),
            hook("allow.example.com", "/allow", &s.ca.pem, json!({})),
        ],
    );
    let out = d.validate(&hs, &pod_create(), ctx(&ns)).await.unwrap();
    assert_eq!(out.warnings, vec!["careful now".to_string()]);
    assert_eq!(out.audit_annotations["warn.example.com/checked"], "yes");
    assert_eq!(s.paths().len(), 2);
}

#[tokio::test]
async fn an_unreachable_webhook_fails_closed_or_open_by_failure_policy() {
    let s = Server::start().await;
    let dead = dead_addr().await;
    let d = Dispatcher::new(Arc::new(To(dead)));
    let ns = BTreeMap::new();
    let a = pod_create();
    let fail = hooks(
        "v",
        false,
        vec![hook("gone.example.com", "/allow", &s.ca.pem, json!({}))],
    );
    let err = d.validate(&fail, &a, ctx(&ns)).await.unwrap_err();
    assert!(matches!(err, AdmissionError::CallFailed { .. }));
    let st = err.status();
    assert_eq!((st.code, st.reason), (500, StatusReason::InternalError));
    assert_eq!(
        st.message,
        format!(
            "Internal error occurred: failed calling webhook \"gone.example.com\": failed to call webhook: Post \"https://webhook.ns.svc:443/allow?timeout=10s\": dial tcp {dead}: connect: connection refused"
        )
    );
    let ignore = hooks(
        "v",
        false,
        vec![hook(
            "gone.example.com",
            "/allow",
            &s.ca.pem,
            json!({"failurePolicy": "Ignore"}),
        )],
    );
    let out = d.validate(&ignore, &a, ctx(&ns)).await.unwrap();
    assert_eq!(
        out.audit_annotations["failed-open.validating.webhook.admission.k8s.io/round_0_index_0"],
        "gone.example.com"
    );
    // Mutating, failing open.
    let mut a2 = a.clone();
    let m = hooks(
        "m",
        true,
        vec![hook(
            "gone.example.com",
            "/label",
            &s.ca.pem,
            json!({"failurePolicy": "Ignore"}),
        )],
    );
    let out = d.mutate(&m, &mut a2, ctx(&ns)).await.unwrap();
    assert!(
        out.audit_annotations
            .contains_key("failed-open.mutation.webhook.admission.k8s.io/round_0_index_0")
    );
    assert_eq!(out.object, a.object);
}

#[tokio::test]
async fn a_slow_webhook_times_out_by_timeout_seconds() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let a = pod_create();
    let slow = |fp: &str| {
        hooks(
            "v",
            false,
            vec![hook(
                "slow.example.com",
                "/sleep",
                &s.ca.pem,
                json!({"timeoutSeconds": 1, "failurePolicy": fp}),
            )],
        )
    };
    let started = std::time::Instant::now();
    let err = d.validate(&slow("Fail"), &a, ctx(&ns)).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    assert_eq!(
        err.status().message,
        "Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: Post \"https://webhook.ns.svc:443/sleep?timeout=1s\": context deadline exceeded"
    );
    assert!(d.validate(&slow("Ignore"), &a, ctx(&ns)).await.is_ok());
}

#[tokio::test]
async fn a_webhook_whose_certificate_is_not_from_its_ca_bundle_is_refused() {
    let s = Server::start().await;
    let other = common::ca("another-ca");
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let a = pod_create();
    let hs = hooks(
        "v",
        false,
        vec![hook("tls.example.com", "/allow", &other.pem, json!({}))],
    );
    let err = d.validate(&hs, &a, ctx(&ns)).await.unwrap_err();
    assert_eq!(
        err.status().message,
        "Internal error occurred: failed calling webhook \"tls.example.com\": failed to call webhook: Post \"https://webhook.ns.svc:443/allow?timeout=10s\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
    );
    assert!(s.paths().is_empty());
    // With the right bundle the same call goes through.
    let good = hooks(
        "v",
        false,
        vec![hook("tls.example.com", "/allow", &s.ca.pem, json!({}))],
    );
    assert!(d.validate(&good, &a, ctx(&ns)).await.is_ok());
}

#[tokio::test]
async fn a_url_webhook_is_reached_by_its_host_name() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(common::dead_addr().await)));
    let ns = BTreeMap::new();
    let url = format!("https://localhost:{}/warn", s.addr.port());
    let mut h = hook("url.example.com", "/", &s.ca.pem, json!({}));
    h["clientConfig"] = json!({"url": url, "caBundle": h["clientConfig"]["caBundle"]});
    let hs = hooks("v", false, vec![h]);
    let out = d.validate(&hs, &pod_create(), ctx(&ns)).await.unwrap();
    assert_eq!(out.warnings, vec!["careful now".to_string()]);
}

#[tokio::test]
async fn dry_run_is_refused_by_webhooks_with_side_effects() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let mut a = pod_create();
    a.dry_run = true;
    let some = hooks(
        "v",
        false,
        vec![hook(
            "fx.example.com",
            "/allow",
            &s.ca.pem,
            json!({"sideEffects": "Some"}),
        )],
    );
    let err = d.validate(&some, &a, ctx(&ns)).await.unwrap_err();
    let st = err.status();
    assert_eq!((st.code, st.reason), (400, StatusReason::BadRequest));
    assert_eq!(
        st.message,
        r#"admission webhook "fx.example.com" does not support dry run"#
    );
    // NoneOnDryRun is called, and told it is a dry run; without dry run Some is called too.
    let ok = hooks(
        "v",
        false,
        vec![hook(
            "fx.example.com",
            "/allow",
            &s.ca.pem,
            json!({"sideEffects": "NoneOnDryRun"}),
        )],
    );
    assert!(d.validate(&ok, &a, ctx(&ns)).await.is_ok());
    assert_eq!(s.calls.lock().unwrap()[0].1["request"]["dryRun"], true);
    a.dry_run = false;
    assert!(d.validate(&some, &a, ctx(&ns)).await.is_ok());
}

#[tokio::test]
async fn reinvocation_if_needed_calls_an_earlier_webhook_again_after_a_later_change() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let mut hs = hooks(
        "b-second",
        true,
        vec![hook("label.example.com", "/label", &s.ca.pem, json!({}))],
    );
    hs.extend(hooks(
        "a-first",
        true,
        vec![hook(
            "watch.example.com",
            "/allow",
            &s.ca.pem,
            json!({"reinvocationPolicy": "IfNeeded"}),
        )],
    ));
    let mut a = pod_create();
    let out = d.mutate(&hs, &mut a, ctx(&ns)).await.unwrap();
    // Ordered by configuration name: a-first, b-second, then a-first again.
    assert_eq!(
        s.paths(),
        vec![
            "/allow?timeout=10s",
            "/label?timeout=10s",
            "/allow?timeout=10s"
        ]
    );
    let calls = s.calls.lock().unwrap().clone();
    assert_eq!(
        calls[2].1["request"]["object"]["metadata"]["labels"]["added"],
        "yes"
    );
    assert!(
        out.audit_annotations
            .contains_key("mutation.webhook.admission.k8s.io/round_1_index_0")
    );
    // Never (the default): called once.
    let s2 = Server::start().await;
    let d2 = Dispatcher::new(Arc::new(To(s2.addr)));
    let mut hs2 = hooks(
        "b-second",
        true,
        vec![hook("label.example.com", "/label", &s2.ca.pem, json!({}))],
    );
    hs2.extend(hooks(
        "a-first",
        true,
        vec![hook("watch.example.com", "/allow", &s2.ca.pem, json!({}))],
    ));
    let mut a2 = pod_create();
    d2.mutate(&hs2, &mut a2, ctx(&ns)).await.unwrap();
    assert_eq!(s2.paths().len(), 2);
}

#[tokio::test]
async fn a_mutating_denial_stops_the_chain() {
    let s = Server::start().await;
    let d = Dispatcher::new(Arc::new(To(s.addr)));
    let ns = BTreeMap::new();
    let hs = hooks(
        "m",
        true,
        vec![
            hook("deny.example.com", "/deny", &s.ca.pem, json!({})),
            hook("label.example.com", "/label", &s.ca.pem, json!({})),
        ],
    );
    let mut a = pod_create();
    let err = d.mutate(&hs, &mut a, ctx(&ns)).await.unwrap_err();
    assert!(matches!(err, AdmissionError::Denied { .. }));
    assert_eq!(s.paths(), vec!["/deny?timeout=10s"]);
}
