//! The in-process loopback transport: kube-rs over it gets the same API as over TLS
//! (identity, watch streaming, validation), with the loopback user's name.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

mod common;

#[tokio::test]
async fn loopback_client_is_a_full_api_client() {
    let (_dir, server) = common::start().await;
    let client = kube::Client::new(
        server.loopback_in("test-admin", &["system:masters"]),
        "default",
    );

    // Authenticated as the loopback user, in the groups given.
    let review = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
            )
            .unwrap(),
        )
        .unwrap();
    let review: Value = client.request(review).await.unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "test-admin");
    let groups = review["status"]["userInfo"]["groups"].as_array().unwrap();
    assert!(groups.iter().any(|g| g == "system:masters"), "{review}");

    // A watch streams over it; a create shows up once, with the revision it was given.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list_metadata(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "lb"}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let seen = loop {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Added(o)) => break o,
            Some(WatchEvent::Bookmark(_)) => continue,
            other => panic!("unexpected watch event {other:?}"),
        }
    };
    assert_eq!(seen.metadata.name.as_deref(), Some("lb"));
    assert_eq!(
        seen.metadata.resource_version,
        created.metadata.resource_version
    );

    // Validation applies as to any client: an invalid name is a 422 naming the field.
    let bad: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "Not_Valid"}})).unwrap();
    match cms.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("metadata.name"), "{}", s.message);
        }
        other => panic!("invalid name accepted over loopback: {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn loopback_users_hold_only_what_rbac_grants() {
    let (_dir, server) = common::start().await;
    // The scheduler reads pods; ConfigMaps are not its business.
    let sched = kube::Client::new(server.loopback("system:kube-scheduler"), "default");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(sched.clone(), "default");
    pods.list(&Default::default()).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(sched, "default");
    match cms.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("the scheduler listed ConfigMaps: {other:?}"),
    }
    // A controller is its ServiceAccount, in the ServiceAccount groups.
    let sa = "system:serviceaccount:kube-system:job-controller";
    let c = kube::Client::new(server.loopback(sa), "default");
    let review = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec())
        .unwrap();
    let review: Value = c.request(review).await.unwrap();
    let groups = &review["status"]["userInfo"]["groups"];
    assert_eq!(
        groups,
        &json!([
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated"
        ])
    );
    server.shutdown().await;
}
