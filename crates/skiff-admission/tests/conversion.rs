//! CRD conversion webhooks called over real HTTPS on 127.0.0.1.

mod common;

use base64::Engine;
use common::{Server, To, dead_addr};
use serde_json::{Value, json};
use skiff_admission::{ConversionError, ConversionWebhook, Converter, Dispatcher, StatusReason};
use std::sync::Arc;

const V1: &str = "stable.example.com/v1";
const V2: &str = "stable.example.com/v2";
const GVK: &str = "stable.example.com/v1, Kind=CronTab";

/// ConversionReview answers by path. `/convert` converts CronTab v1 → v2 (cronSpec
/// renamed schedule), adding a label and meddling with other metadata; the others
/// answer wrongly in one way each.
fn answer(path: &str, review: &Value) -> (u16, Value) {
    let req = &review["request"];
    let desired = req["desiredAPIVersion"].clone();
    let converted: Vec<Value> = req["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| convert(o, &desired))
        .collect();
    let mut resp = json!({
        "uid": req["uid"],
        "result": {"status": "Success"},
        "convertedObjects": converted,
    });
    match path {
        "/wrong-uid" => resp["uid"] = json!("not-the-request"),
        "/fail" => {
            resp["result"] = json!({"status": "Failure", "message": "cronSpec is unparseable"})
        }
        "/fail-bare" => resp["result"] = json!({"status": "Failure"}),
        "/drop" => resp["convertedObjects"] = json!([]),
        "/stale" => resp["convertedObjects"] = req["objects"].clone(),
        "/rename" => resp["convertedObjects"][0]["metadata"]["name"] = json!("other"),
        "/bad-label" => resp["convertedObjects"][0]["metadata"]["labels"] = json!({"bad key": "x"}),
        "/error" => return (500, json!({"kind": "Status", "message": "webhook broke"})),
        _ => {}
    }
    let version = review["apiVersion"].clone();
    (
        200,
        json!({"apiVersion": version, "kind": "ConversionReview", "response": resp}),
    )
}

fn convert(o: &Value, desired: &Value) -> Value {
    let mut c = o.clone();
    c["apiVersion"] = desired.clone();
    if let Some(spec) = c["spec"].as_object_mut()
        && let Some(s) = spec.remove("cronSpec")
    {
        spec.insert("schedule".into(), s);
    }
    let meta = &mut c["metadata"];
    meta["labels"]["converted"] = json!("yes");
    meta["resourceVersion"] = json!("999");
    meta["generation"] = json!(42);
    meta["finalizers"] = json!(["webhook.example.com/added"]);
    c
}

fn crontab(name: &str, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": "CronTab",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "7", "generation": 1, "labels": {"app": "cron"}},
        "spec": {"cronSpec": "*/5 * * * *"}
    })
}

/// The CRD's `spec.conversion.webhook`, on the test server's Service at `path`.
fn webhook(s: &Server, path: &str, versions: &[&str]) -> ConversionWebhook {
    let client = json!({
        "service": {"namespace": "ns", "name": "webhook", "path": path},
        "caBundle": base64::engine::general_purpose::STANDARD.encode(&s.ca.pem),
    });
    ConversionWebhook::new(&client, versions.iter().map(|v| v.to_string()).collect()).unwrap()
}

async fn setup(path: &str) -> (Server, Converter, ConversionWebhook) {
    let s = Server::start_with(answer).await;
    let c = Converter::new(Arc::new(To(s.addr)));
    let hook = webhook(&s, path, &["v1"]);
    (s, c, hook)
}

#[tokio::test]
async fn an_object_is_converted_and_only_its_labels_change_in_metadata() {
    let (s, c, hook) = setup("/convert").await;
    let out = c.convert_object(&hook, crontab("a", V1), V2).await.unwrap();
    assert_eq!(out["apiVersion"], V2);
    assert_eq!(out["spec"], json!({"schedule": "*/5 * * * *"}));
    // The webhook's labels are kept; resourceVersion, generation and finalizers
    // are the original's again.
    assert_eq!(
        out["metadata"],
        json!({"name": "a", "namespace": "default", "uid": "uid-a", "resourceVersion": "7",
               "generation": 1, "labels": {"app": "cron", "converted": "yes"}})
    );
    // What kube sends: a v1 ConversionReview with a fresh uid, the 30 s timeout.
    let calls = s.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (path, review) = &calls[0];
    assert_eq!(path, "/convert?timeout=30s");
    assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(review["kind"], "ConversionReview");
    assert_eq!(review["request"]["desiredAPIVersion"], V2);
    assert_eq!(review["request"]["objects"], json!([crontab("a", V1)]));
    let uid = review["request"]["uid"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(uid).is_ok(), "{uid}");
}

#[tokio::test]
async fn a_list_sends_only_items_not_yet_in_the_desired_version() {
    let (s, c, hook) = setup("/convert").await;
    let items = vec![crontab("a", V1), crontab("b", V2), crontab("c", V1)];
    let out = c.convert(&hook, items.clone(), V2).await.unwrap();
    let names: Vec<&str> = out
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(out.iter().all(|o| o["apiVersion"] == V2));
    assert_eq!(out[1], items[1], "an item already in v2 is left alone");
    assert_eq!(out[2]["spec"], json!({"schedule": "*/5 * * * *"}));
    let calls = s.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let sent: Vec<&Value> = calls[0].1["request"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["metadata"]["name"])
        .collect();
    assert_eq!(sent, [&json!("a"), &json!("c")]);
}

#[tokio::test]
async fn nothing_to_convert_makes_no_call() {
    let (s, c, hook) = setup("/convert").await;
    let items = vec![crontab("a", V2), crontab("b", V2)];
    assert_eq!(c.convert(&hook, items.clone(), V2).await.unwrap(), items);
    assert_eq!(
        c.convert_object(&hook, crontab("a", V2), V2).await.unwrap(),
        crontab("a", V2)
    );
    assert_eq!(
        c.convert(&hook, vec![], V2).await.unwrap(),
        Vec::<Value>::new()
    );
    // An object of nothing but apiVersion and kind is relabelled, not sent.
    let empty = json!({"apiVersion": V1, "kind": "CronTab"});
    assert_eq!(
        c.convert_object(&hook, empty, V2).await.unwrap(),
        json!({"apiVersion": V2, "kind": "CronTab"})
    );
    assert!(s.calls.lock().unwrap().is_empty());
}

async fn error_from(path: &str) -> ConversionError {
    let (_s, c, hook) = setup(path).await;
    c.convert_object(&hook, crontab("a", V1), V2)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn an_answer_for_another_request_is_refused() {
    let e = error_from("/wrong-uid").await;
    let ConversionError::Failed { gvk, reason } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(gvk, GVK);
    assert!(
        reason.starts_with("expected response.uid=\"")
            && reason.ends_with(r#"", got "not-the-request""#),
        "{reason}"
    );
    assert!(e.to_string().starts_with(&format!(
        "conversion webhook for {GVK} failed: expected response.uid="
    )));
}

#[tokio::test]
async fn a_failure_result_carries_the_webhook_message() {
    let e = error_from("/fail").await;
    let text = format!("conversion webhook for {GVK} failed: cronSpec is unparseable");
    assert_eq!(e.to_string(), text);
    assert!(matches!(e, ConversionError::Refused { .. }));
    // What the API server answers with.
    let st = e.status();
    assert_eq!((st.code, st.reason), (500, StatusReason::InternalError));
    assert_eq!(st.message, format!("Internal error occurred: {text}"));
    let body = e.to_status();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 500);
    assert_eq!(body["details"]["causes"], json!([{"message": text}]));

    let e = error_from("/fail-bare").await;
    assert_eq!(
        e.to_string(),
        format!(
            "conversion webhook for {GVK} failed: response.result.status was 'Failure', not 'Success'"
        )
    );
}

#[tokio::test]
async fn a_wrong_number_of_converted_objects_is_refused() {
    let e = error_from("/drop").await;
    assert_eq!(
        e.to_string(),
        format!("conversion webhook for {GVK} returned 0 objects, expected 1")
    );
    let (_s, c, hook) = setup("/drop").await;
    let e = c
        .convert(&hook, vec![crontab("a", V1), crontab("b", V1)], V2)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ConversionError::WrongCount {
            gvk: "stable.example.com/v1, Kind=CronTabList".into(),
            got: 0,
            expected: 2
        }
    );
}

#[tokio::test]
async fn an_object_not_in_the_desired_version_is_refused() {
    let e = error_from("/stale").await;
    assert_eq!(
        e.to_string(),
        format!(
            "conversion webhook for {GVK} returned invalid object at index 0: invalid groupVersion (expected {V2}, received {V1})"
        )
    );
    // kube's list wording, its index counted from 1 there.
    let (_s, c, hook) = setup("/stale").await;
    let e = c
        .convert(&hook, vec![crontab("a", V1)], V2)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "conversion webhook for stable.example.com/v1, Kind=CronTabList returned invalid converted object at index 1: invalid groupVersion (expected {V2}, received {V1})"
        )
    );
}

#[tokio::test]
async fn a_renamed_object_or_bad_labels_are_refused() {
    let e = error_from("/rename").await;
    assert_eq!(
        e.to_string(),
        format!(
            "conversion webhook for {GVK} returned invalid object: must have the same name: a != other"
        )
    );
    let e = error_from("/bad-label").await;
    assert!(
        e.to_string().starts_with(&format!(
            r#"conversion webhook for {GVK} returned invalid metadata: metadata.labels: Invalid value: "bad key": "#
        )),
        "{e}"
    );
}

#[tokio::test]
async fn a_webhook_error_status_is_reported_as_client_go_does() {
    let e = error_from("/error").await;
    assert_eq!(
        e.to_string(),
        format!("conversion webhook for {GVK} failed: webhook broke")
    );
}

#[tokio::test]
async fn a_webhook_that_is_down_fails_with_connection_refused() {
    let s = Server::start_with(answer).await;
    let dead = dead_addr().await;
    let c = Converter::new(Arc::new(To(dead)));
    let hook = webhook(&s, "/convert", &["v1"]);
    let e = c
        .convert_object(&hook, crontab("a", V1), V2)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            r#"conversion webhook for {GVK} failed: Post "https://webhook.ns.svc:443/convert?timeout=30s": dial tcp {dead}: connect: connection refused"#
        )
    );
    assert!(s.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn review_versions_pick_v1beta1_when_listed_first_and_need_one_known() {
    let s = Server::start_with(answer).await;
    let c = Converter::new(Arc::new(To(s.addr)));
    let beta = webhook(&s, "/convert", &["v1beta1", "v1"]);
    let out = c.convert_object(&beta, crontab("a", V1), V2).await.unwrap();
    assert_eq!(out["apiVersion"], V2);
    assert_eq!(
        s.calls.lock().unwrap()[0].1["apiVersion"],
        "apiextensions.k8s.io/v1beta1"
    );
    let unknown = webhook(&s, "/convert", &["v2"]);
    let e = c
        .convert_object(&unknown, crontab("a", V1), V2)
        .await
        .unwrap_err();
    assert_eq!(e, ConversionError::NoSupportedVersion);
    assert_eq!(e.to_string(), "no supported conversion review versions");
}

#[tokio::test]
async fn a_crd_url_webhook_is_read_and_reached_through_a_dispatchers_converter() {
    let s = Server::start_with(answer).await;
    let crd = json!({
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "clientConfig": {
                "url": format!("https://localhost:{}/convert", s.addr.port()),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&s.ca.pem),
            },
            "conversionReviewVersions": ["v1"],
        }}}
    });
    let hook = ConversionWebhook::from_crd(&crd).unwrap().unwrap();
    assert_eq!(hook.conversion_review_versions, ["v1"]);
    let d = Dispatcher::new(Arc::new(To(dead_addr().await)));
    let out = d
        .converter()
        .convert_object(&hook, crontab("a", V1), V2)
        .await
        .unwrap();
    assert_eq!(out["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(s.paths(), ["/convert?timeout=30s"]);

    let none = json!({"spec": {"conversion": {"strategy": "None"}}});
    assert_eq!(ConversionWebhook::from_crd(&none), Ok(None));
    let service = json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {
        "clientConfig": {"service": {"namespace": "ns", "name": "conv"}},
        "conversionReviewVersions": ["v1", "v1beta1"],
    }}}});
    let hook = ConversionWebhook::from_crd(&service).unwrap().unwrap();
    assert_eq!(
        hook.client,
        skiff_admission::ClientConfig::Service {
            namespace: "ns".into(),
            name: "conv".into(),
            path: String::new(),
            port: 443
        }
    );
}
