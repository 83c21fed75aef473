//! ServiceAccount tokens are verified once and then remembered briefly, but never past
//! their service account: a deleted (or recreated) account's token stops working at
//! once, remembered or not.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

mod common;

#[tokio::test]
async fn a_remembered_token_dies_with_its_service_account() {
    let (_dir, server) = common::start().await;
    let admin = kube::Client::new(
        server.loopback_in("test-admin", &["system:masters"]),
        "default",
    );
    let sas: Api<ServiceAccount> = Api::namespaced(admin, "default");
    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap();
    sas.create(&pp, &sa).await.unwrap();
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    let tr: TokenRequest = sas
        .create_subresource("token", "robot", &pp, &tr)
        .await
        .unwrap();
    let token = tr.status.unwrap().token;

    let authn = &server.api.token_authenticators;
    let who = |t: &str| {
        authn
            .iter()
            .find_map(|a| a.authenticate(t))
            .map(|u| u.username)
    };
    let me = Some("system:serviceaccount:default:robot".to_string());
    assert_eq!(who(&token), me);
    assert_eq!(who(&token), me, "the remembered token");
    // Gone: refused at once, although remembered.
    sas.delete("robot", &DeleteParams::default()).await.unwrap();
    server.api.sync_cache().await.unwrap();
    assert_eq!(who(&token), None);
    // The same name again is another account: the old token stays refused.
    sas.create(&pp, &sa).await.unwrap();
    server.api.sync_cache().await.unwrap();
    assert_eq!(who(&token), None);
    // A tampered token is refused too (its signature no longer holds).
    let mut bad = token.clone();
    bad.pop();
    assert_eq!(who(&bad), None);
    server.shutdown().await;
}
