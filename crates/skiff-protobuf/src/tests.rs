use super::*;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;
use std::collections::BTreeMap;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    // runtime.Unknown { typeMeta: {apiVersion, kind}, raw }
    let tm = k8s_pb::apimachinery::pkg::runtime::TypeMeta {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
    };
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(tm),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn kubectl_create_deployment_body() {
    // What `kubectl create deployment web --image=nginx` sends (Go marshals empty
    // non-pointer fields and a zero creationTimestamp).
    let zero = meta::Time {
        seconds: Some(-62135596800),
        nanos: Some(0),
    };
    let d = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("web".into()),
            namespace: Some(String::new()),
            labels: labels(&[("app", "web")]),
            creation_timestamp: Some(zero),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(1),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    // Go's own encoding of a zero time: an empty message.
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("nginx".into()),
                        image: Some("nginx".into()),
                        resources: Some(core::ResourceRequirements {
                            limits: BTreeMap::from([(
                                "cpu".to_string(),
                                Quantity {
                                    string: Some("500m".into()),
                                },
                            )]),
                            ..Default::default()
                        }),
                        ports: vec![core::ContainerPort {
                            container_port: Some(80),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}], "resources": {"limits": {"cpu": "500m"}}}]}},
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn acronym_names_int_or_string_and_bytes() {
    let pod = core::Pod {
        status: Some(core::PodStatus {
            pod_ip: Some("10.42.0.5".into()),
            host_ips: vec![core::HostIp {
                ip: Some("192.0.2.1".into()),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Pod", pod.encode_to_vec())).unwrap();
    assert_eq!(v["status"]["podIP"], "10.42.0.5");
    assert_eq!(v["status"]["hostIPs"][0]["ip"], "192.0.2.1");
    let svc = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: Some(String::new()),
                    }),
                    ..Default::default()
                },
                core::ServicePort {
                    port: Some(81),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("http".into()),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(v["spec"]["ports"][1]["targetPort"], "http");
    let secret = core::Secret {
        data: BTreeMap::from([("password".to_string(), b"s3cret".to_vec())]),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(v["data"]["password"], "czNjcmV0");
    assert_eq!(v["type"], "Opaque");
}

#[test]
fn access_review() {
    let r = authz::SelfSubjectAccessReview {
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                verb: Some("create".into()),
                resource: Some("pods".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        r.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        v["spec"]["resourceAttributes"],
        json!({"verb": "create", "resource": "pods", "namespace": "default"})
    );
    assert!(is_known_kind(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview"
    ));
}

#[test]
fn garbage_never_panics() {
    assert!(matches!(decode(b"{}"), Err(Error::NoMagic)));
    assert!(decode(b"k8s\0\x0a\x05").is_err());
    let good = envelope(
        "v1",
        "ConfigMap",
        core::ConfigMap {
            data: labels(&[("a", "b")]),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    for cut in 0..good.len() {
        let _ = decode(&good[..cut]);
    }
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..2000 {
        let mut body = good.clone();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % body.len();
            body[i] = (seed >> 32) as u8;
        }
        let _ = decode(&body);
    }
    assert!(matches!(
        decode(&envelope("v9", "Nope", vec![])),
        Err(Error::UnknownKind { .. })
    ));
}

#[test]
fn table_is_current() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/gen/gen_table.py");
    let status = std::process::Command::new("python3")
        .arg(root)
        .arg("--check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("python3 runs the generator");
    assert!(
        status.success(),
        "src/table.json is stale: run python3 crates/skiff-protobuf/gen/gen_table.py"
    );
}
