//! The IngressClass every cluster starts with, and DefaultIngressClass admission.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

mod common;

fn ingress(name: &str, spec: Value, annotations: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

fn class_name(i: &Ingress) -> Option<&str> {
    i.spec.as_ref()?.ingress_class_name.as_deref()
}

fn default_class(name: &str, controller: &str) -> IngressClass {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": controller},
    }))
    .unwrap()
}

#[tokio::test]
async fn ingresses_without_a_class_get_the_default() {
    let (_dir, server) = common::start().await;
    let client = kube::Client::new(server.loopback_in("admin", &["system:masters"]), "default");
    let classes: Api<IngressClass> = Api::all(client.clone());
    let ingresses: Api<Ingress> = Api::namespaced(client, "default");
    let pp = PostParams::default();

    let skiff = classes.get("skiff").await.unwrap();
    let controller = skiff.spec.as_ref().and_then(|s| s.controller.as_deref());
    assert_eq!(controller, Some("skiff.io/ingress"));
    let ann = skiff.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("ingressclass.kubernetes.io/is-default-class")
            .map(String::as_str),
        Some("true")
    );

    let made = ingresses
        .create(&pp, &ingress("a", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(class_name(&made), Some("skiff"));
    // No spec at all: one is made for the class.
    let mut bare = ingress("bare", json!({}), json!({}));
    bare.spec = None;
    let made = ingresses.create(&pp, &bare).await.unwrap();
    assert_eq!(class_name(&made), Some("skiff"));
    let given = ingress("b", json!({"ingressClassName": "nginx"}), json!({}));
    let made = ingresses.create(&pp, &given).await.unwrap();
    assert_eq!(class_name(&made), Some("nginx"));
    let legacy = ingress(
        "c",
        json!({}),
        json!({"kubernetes.io/ingress.class": "nginx"}),
    );
    let made = ingresses.create(&pp, &legacy).await.unwrap();
    assert_eq!(class_name(&made), None);
    // A dry run shows what a create would store.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let made = ingresses
        .create(&dry, &ingress("d", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(class_name(&made), Some("skiff"));

    // Two defaults: the newest wins.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    classes
        .create(&pp, &default_class("newer", "example.com/ingress"))
        .await
        .unwrap();
    let made = ingresses
        .create(&pp, &ingress("e", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(class_name(&made), Some("newer"));

    // No default: no class; and an update never gains one.
    let off =
        json!({"metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": null}}});
    for name in ["skiff", "newer"] {
        classes
            .patch(name, &PatchParams::default(), &Patch::Merge(&off))
            .await
            .unwrap();
    }
    let made = ingresses
        .create(&pp, &ingress("f", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(class_name(&made), None);
    classes
        .create(&pp, &default_class("later", "example.com/ingress"))
        .await
        .unwrap();
    let label = json!({"metadata": {"labels": {"x": "y"}}});
    let updated = ingresses
        .patch("f", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    assert_eq!(class_name(&updated), None);
    server.shutdown().await;
}
