use serde_json::{Value, json};

use crate::graph::Graph;
use crate::refs::{pod_claim_names, pod_configmap_names, pod_secret_names, pv_kubelet_secrets};
use crate::selector::{self, Requirement};

fn pod(ns: &str, name: &str, node: &str, spec: Value) -> Value {
    let mut p = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
    if !node.is_empty() {
        p["spec"]["nodeName"] = json!(node);
    }
    p
}

fn rich_pod() -> Value {
    pod(
        "ns",
        "web",
        "n1",
        json!({
            "imagePullSecrets": [{"name": "pull"}, {"name": ""}],
            "initContainers": [{"name": "i", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-env", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "init-cm", "key": "k"}}}
            ]}],
            "containers": [{"name": "c",
                "envFrom": [{"secretRef": {"name": "from-secret"}}, {"configMapRef": {"name": "from-cm"}}],
                "env": [{"name": "PLAIN", "value": "x"}]}],
            "ephemeralContainers": [{"name": "dbg", "env": [
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "debug-env", "key": "k"}}}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "vol-secret"}},
                {"name": "p", "projected": {"sources": [
                    {"secret": {"name": "proj-secret"}},
                    {"configMap": {"name": "proj-cm"}},
                    {"serviceAccountToken": {"path": "t"}}]}},
                {"name": "c", "configMap": {"name": "vol-cm"}},
                {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                {"name": "ceph", "cephfs": {"monitors": ["m"], "secretRef": {"name": "ceph-secret"}}},
                {"name": "az", "azureFile": {"secretName": "az-secret", "shareName": "s"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "empty", "emptyDir": {}}
            ]
        }),
    )
}

#[test]
fn pod_secret_names_cover_every_place_kube_visits() {
    let p = rich_pod();
    let mut names = pod_secret_names(&p);
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "az-secret",
            "ceph-secret",
            "csi-secret",
            "debug-env",
            "from-secret",
            "init-env",
            "proj-secret",
            "pull",
            "vol-secret"
        ]
    );
}

#[test]
fn pod_configmap_names_cover_env_and_volumes() {
    let p = rich_pod();
    let mut names = pod_configmap_names(&p);
    names.sort_unstable();
    assert_eq!(names, ["from-cm", "init-cm", "proj-cm", "vol-cm"]);
}

#[test]
fn ephemeral_volumes_claim_pod_dash_volume() {
    assert_eq!(pod_claim_names(&rich_pod()), ["data", "web-scratch"]);
}

#[test]
fn a_volume_is_read_by_its_first_source_as_kube_switches() {
    // Invalid, but kube's switch takes `projected` before `secret`.
    let p = pod(
        "ns",
        "p",
        "n1",
        json!({"volumes": [{"name": "v",
        "projected": {"sources": [{"secret": {"name": "first"}}]},
        "secret": {"secretName": "second"}}]}),
    );
    assert_eq!(pod_secret_names(&p), ["first"]);
}

#[test]
fn null_fields_are_empty() {
    let p = pod(
        "ns",
        "p",
        "n1",
        json!({"volumes": null, "containers": [{"env": null, "envFrom": null}]}),
    );
    assert!(pod_secret_names(&p).is_empty());
    assert!(pod_claim_names(&p).is_empty());
}

fn pv(name: &str, claim: Option<(&str, &str)>, source: Value) -> Value {
    let mut spec = source;
    if let Some((ns, c)) = claim {
        spec["claimRef"] = json!({"namespace": ns, "name": c});
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

#[test]
fn pv_secrets_are_the_kubelet_visible_csi_ones() {
    let v = pv(
        "pv1",
        Some(("ns", "data")),
        json!({"csi": {
        "driver": "d", "volumeHandle": "h",
        "controllerPublishSecretRef": {"namespace": "sys", "name": "ctrl-pub"},
        "controllerExpandSecretRef": {"namespace": "sys", "name": "ctrl-exp"},
        "nodePublishSecretRef": {"namespace": "sys", "name": "pub"},
        "nodeStageSecretRef": {"namespace": "sys", "name": "stage"},
        "nodeExpandSecretRef": {"namespace": "sys", "name": "expand"}}}),
    );
    assert_eq!(
        pv_kubelet_secrets(&v),
        [("sys", "pub"), ("sys", "stage"), ("sys", "expand")]
    );
}

#[test]
fn pv_secret_namespace_defaults_to_the_claims_for_legacy_sources() {
    let ceph = pv(
        "a",
        Some(("ns", "c")),
        json!({"cephfs": {"secretRef": {"name": "s"}}}),
    );
    assert_eq!(pv_kubelet_secrets(&ceph), [("ns", "s")]);
    let own = pv(
        "b",
        Some(("ns", "c")),
        json!({"rbd": {"secretRef": {"namespace": "o", "name": "s"}}}),
    );
    assert_eq!(pv_kubelet_secrets(&own), [("o", "s")]);
    let cinder = pv(
        "c",
        Some(("ns", "c")),
        json!({"cinder": {"secretRef": {"name": "s"}}}),
    );
    assert_eq!(pv_kubelet_secrets(&cinder), [("", "s")]);
    let az = pv(
        "d",
        Some(("ns", "c")),
        json!({"azureFile": {"secretName": "s"}}),
    );
    assert_eq!(pv_kubelet_secrets(&az), [("ns", "s")]);
}

fn one_secret_pod(name: &str, node: &str, secret: &str) -> Value {
    pod(
        "ns",
        name,
        node,
        json!({"volumes": [{"name": "v", "secret": {"secretName": secret}}]}),
    )
}

#[test]
fn shared_secret_stays_reachable_until_the_last_pod_goes() {
    let mut g = Graph::new();
    g.set_pod(&one_secret_pod("a", "n1", "shared"));
    g.set_pod(&one_secret_pod("b", "n1", "shared"));
    assert!(g.secret_on("n1", "ns", "shared"));
    g.remove_pod("ns", "a");
    assert!(g.secret_on("n1", "ns", "shared"));
    g.remove_pod("ns", "b");
    assert!(!g.secret_on("n1", "ns", "shared"));
    assert_eq!(g.sizes(), [0; 10], "nothing left behind");
}

#[test]
fn a_pod_naming_a_secret_twice_counts_once() {
    let mut g = Graph::new();
    let p = pod(
        "ns",
        "a",
        "n1",
        json!({
        "imagePullSecrets": [{"name": "s"}],
        "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}),
    );
    g.set_pod(&p);
    assert_eq!(g.sizes()[1], 1);
    g.remove_pod("ns", "a");
    assert_eq!(g.sizes(), [0; 10]);
}

#[test]
fn setting_a_pod_again_replaces_its_references() {
    let mut g = Graph::new();
    g.set_pod(&one_secret_pod("a", "n1", "old"));
    g.set_pod(&one_secret_pod("a", "n1", "old")); // unchanged: no double count
    g.set_pod(&one_secret_pod("a", "n1", "new"));
    assert!(!g.secret_on("n1", "ns", "old"));
    assert!(g.secret_on("n1", "ns", "new"));
    g.remove_pod("ns", "a");
    assert_eq!(g.sizes(), [0; 10]);
}

#[test]
fn unbound_pods_do_not_count_and_unbinding_removes() {
    let mut g = Graph::new();
    g.set_pod(&one_secret_pod("a", "", "s"));
    assert_eq!(g.sizes(), [0; 10]);
    g.set_pod(&one_secret_pod("a", "n1", "s"));
    assert!(g.pod_on("n1", "ns", "a"));
    g.set_pod(&one_secret_pod("a", "", "s"));
    assert!(!g.pod_on("n1", "ns", "a"));
    assert_eq!(g.sizes(), [0; 10]);
}

#[test]
fn a_pod_on_another_node_grants_that_node_only() {
    let mut g = Graph::new();
    g.set_pod(&one_secret_pod("a", "n2", "s"));
    assert!(g.secret_on("n2", "ns", "s"));
    assert!(!g.secret_on("n1", "ns", "s"));
    assert!(!g.secret_on("n2", "other", "s"), "namespaced");
}

#[test]
fn mirror_pods_reach_their_node_only() {
    let mut g = Graph::new();
    let mut p = one_secret_pod("m", "n1", "s");
    p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "hash"});
    g.set_pod(&p);
    assert!(g.pod_on("n1", "ns", "m"));
    assert!(!g.secret_on("n1", "ns", "s"));
    assert_eq!(g.sizes(), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn pv_reaches_nodes_through_its_claim_ref_and_so_do_its_secrets() {
    let mut g = Graph::new();
    let claim_pod = pod(
        "ns",
        "db",
        "n1",
        json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}),
    );
    let volume = pv(
        "pv1",
        Some(("ns", "data")),
        json!({"csi": {"driver": "d", "volumeHandle": "h",
        "nodeStageSecretRef": {"namespace": "sys", "name": "stage"},
        "controllerPublishSecretRef": {"namespace": "sys", "name": "ctrl"}}}),
    );
    g.set_pv(&volume);
    assert!(!g.pv_on("n1", "pv1"), "no pod uses the claim yet");
    g.set_pod(&claim_pod);
    assert!(g.pv_on("n1", "pv1"));
    assert!(g.secret_on("n1", "sys", "stage"));
    assert!(
        !g.secret_on("n1", "sys", "ctrl"),
        "controller secrets are not the kubelet's"
    );
    assert!(!g.pv_on("n2", "pv1"));
    g.remove_pv("pv1");
    assert!(!g.secret_on("n1", "sys", "stage"));
    g.remove_pod("ns", "db");
    assert_eq!(g.sizes(), [0; 10]);
}

#[test]
fn a_pv_without_claim_ref_reaches_nothing() {
    let mut g = Graph::new();
    g.set_pod(&pod(
        "ns",
        "db",
        "n1",
        json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}),
    ));
    g.set_pv(&pv(
        "pv1",
        None,
        json!({"csi": {"nodePublishSecretRef": {"namespace": "ns", "name": "s"}}}),
    ));
    assert!(!g.pv_on("n1", "pv1"));
    assert!(!g.secret_on("n1", "ns", "s"));
    // Rebinding the PV to the claim later grants it.
    g.set_pv(&pv("pv1", Some(("ns", "data")), json!({})));
    assert!(g.pv_on("n1", "pv1"));
}

#[test]
fn volume_attachments_follow_their_node() {
    let mut g = Graph::new();
    g.set_volume_attachment(&json!({"metadata": {"name": "va"}, "spec": {"nodeName": "n1"}}));
    assert!(g.attachment_on("n1", "va"));
    g.set_volume_attachment(&json!({"metadata": {"name": "va"}, "spec": {"nodeName": "n2"}}));
    assert!(!g.attachment_on("n1", "va"));
    g.remove_volume_attachment("va");
    assert_eq!(g.sizes(), [0; 10]);
}

#[test]
fn field_selectors_parse_as_apimachinery() {
    let reqs = selector::parse("spec.nodeName=n1,metadata.name!=x").unwrap();
    assert_eq!(
        reqs,
        [
            Requirement {
                field: "spec.nodeName",
                equals: true,
                value: "n1".into()
            },
            Requirement {
                field: "metadata.name",
                equals: false,
                value: "x".into()
            },
        ]
    );
    assert_eq!(selector::parse("a==b").unwrap()[0].value, "b");
    assert_eq!(selector::parse(r"a=x\,y").unwrap()[0].value, "x,y");
    assert!(selector::parse("novalue").is_none());
    assert!(selector::parse(r"a=bad\q").is_none());
    assert_eq!(selector::parse("").unwrap(), []);
    assert_eq!(
        selector::exact_match("metadata.name=s1", "metadata.name").unwrap(),
        "s1"
    );
}

fn ingress(ns: &str, name: &str, tls_secrets: &[&str]) -> Value {
    let tls: Vec<Value> = tls_secrets
        .iter()
        .map(|s| json!({"hosts": ["a.example"], "secretName": s}))
        .collect();
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"tls": tls, "rules": [{"host": "a.example"}]}})
}

#[test]
fn a_secret_an_ingress_names_reaches_every_node_until_it_stops_naming_it() {
    let mut g = Graph::new();
    assert!(!g.secret_on("n1", "ns", "tls"));
    g.set_ingress(&ingress("ns", "web", &["tls", "tls", ""]));
    assert!(g.secret_on("n1", "ns", "tls"));
    assert!(g.secret_on("n2", "ns", "tls"), "every node");
    assert!(!g.secret_on("n1", "other", "tls"), "the Ingress' namespace");
    assert!(!g.secret_on("n1", "ns", "web"));
    assert_eq!(g.sizes(), [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    g.set_ingress(&ingress("ns", "web", &["tls"])); // unchanged: no double count
    g.set_ingress(&ingress("ns", "web", &["tls2"]));
    assert!(!g.secret_on("n1", "ns", "tls"), "no longer named");
    assert!(g.secret_on("n1", "ns", "tls2"));
    g.set_ingress(&ingress("ns", "web", &[]));
    assert!(!g.secret_on("n1", "ns", "tls2"));
    assert_eq!(g.sizes(), [0; 10]);
    g.set_ingress(&ingress("ns", "web", &["tls"]));
    g.remove_ingress("ns", "web");
    assert!(!g.secret_on("n1", "ns", "tls"), "deleted");
    g.remove_ingress("ns", "web"); // twice: nothing to release
    assert_eq!(g.sizes(), [0; 10]);
}

#[test]
fn a_secret_two_ingresses_name_stays_reachable_until_both_are_gone() {
    let mut g = Graph::new();
    g.set_ingress(&ingress("ns", "a", &["shared", "a-only"]));
    g.set_ingress(&ingress("ns", "b", &["shared"]));
    g.remove_ingress("ns", "a");
    assert!(g.secret_on("n1", "ns", "shared"));
    assert!(!g.secret_on("n1", "ns", "a-only"));
    g.set_ingress(&ingress("ns", "b", &[]));
    assert!(!g.secret_on("n1", "ns", "shared"));
    assert_eq!(g.sizes(), [0; 10], "nothing left behind");
    // An Ingress without `spec.tls`, or without a spec, names nothing.
    g.set_ingress(&json!({"metadata": {"namespace": "ns", "name": "c"}, "spec": {}}));
    g.set_ingress(&json!({"metadata": {"namespace": "ns", "name": "d"}}));
    assert_eq!(g.sizes(), [0; 10]);
}
