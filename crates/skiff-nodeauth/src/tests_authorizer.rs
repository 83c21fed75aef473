use serde_json::{Value, json};

use crate::{Decision, Graph, Request};

fn groups() -> Vec<String> {
    vec!["system:nodes".into(), "system:authenticated".into()]
}

/// A request from node `n1`.
fn req<'a>(
    groups: &'a [String],
    verb: &'a str,
    resource: &'a str,
    ns: &'a str,
    name: &'a str,
) -> Request<'a> {
    Request {
        user: "system:node:n1",
        groups,
        verb,
        resource,
        namespace: ns,
        name,
        ..Request::default()
    }
}

fn deny(reason: &str) -> Decision {
    Decision::Deny(reason.into())
}

const NO_REL: &str = "no relationship found between node 'n1' and this object";

fn cluster() -> Graph {
    let mut g = Graph::new();
    let pod = |name: &str, node: &str, spec: Value| {
        let mut p = json!({"metadata": {"namespace": "ns", "name": name}, "spec": spec});
        p["spec"]["nodeName"] = json!(node);
        p
    };
    g.set_pod(&pod(
        "web",
        "n1",
        json!({
        "serviceAccountName": "web-sa",
        "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "web-cm"}}]}],
        "volumes": [
            {"name": "s", "secret": {"secretName": "web-secret"}},
            {"name": "d", "persistentVolumeClaim": {"claimName": "web-data"}}]}),
    ));
    g.set_pod(&pod(
        "other",
        "n2",
        json!({
        "volumes": [{"name": "s", "secret": {"secretName": "other-secret"}}]}),
    ));
    g.set_pv(&json!({"metadata": {"name": "pv-web"}, "spec": {
        "claimRef": {"namespace": "ns", "name": "web-data"},
        "csi": {"driver": "d", "volumeHandle": "h", "nodePublishSecretRef": {"namespace": "ns", "name": "pv-secret"}}}}));
    g.set_pv(&json!({"metadata": {"name": "pv-other"}, "spec": {"claimRef": {"namespace": "ns", "name": "x"}}}));
    g.set_volume_attachment(&json!({"metadata": {"name": "va1"}, "spec": {"nodeName": "n1"}}));
    g
}

#[test]
fn only_node_users_in_the_nodes_group_are_judged() {
    let g = cluster();
    let gs = groups();
    let mut r = req(&gs, "get", "secrets", "ns", "other-secret");
    assert_eq!(g.authorize(&r), deny(NO_REL));
    r.groups = &[];
    assert_eq!(g.authorize(&r), Decision::NoOpinion, "not in system:nodes");
    r.groups = &gs;
    r.user = "alice";
    assert_eq!(g.authorize(&r), Decision::NoOpinion, "not a node name");
    r.user = "system:node:";
    assert_eq!(
        g.authorize(&r),
        deny("unknown node for user \"system:node:\"")
    );
}

#[test]
fn secrets_of_pods_on_the_node_are_readable_others_not() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "ns", "web-secret")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "ns", "other-secret")),
        deny(NO_REL)
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "ns", "unknown")),
        deny(NO_REL)
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "other-ns", "web-secret")),
        deny(NO_REL)
    );
}

#[test]
fn secret_reads_are_get_list_watch_of_one_named_namespaced_object() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "update", "secrets", "ns", "web-secret")),
        deny("can only read resources of this type")
    );
    let mut sub = req(&gs, "get", "secrets", "ns", "web-secret");
    sub.subresource = "x";
    assert_eq!(g.authorize(&sub), deny("cannot read subresource"));
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "", "web-secret")),
        deny("can only read namespaced object of this type")
    );
    assert_eq!(
        g.authorize(&req(&gs, "list", "secrets", "ns", "")),
        deny("No Object name found")
    );
}

#[test]
fn list_and_watch_of_one_secret_by_metadata_name_selector() {
    let g = cluster();
    let gs = groups();
    for verb in ["list", "watch"] {
        let mut r = req(&gs, verb, "secrets", "ns", "");
        r.field_selector = Some("metadata.name=web-secret");
        assert_eq!(g.authorize(&r), Decision::Allow);
        r.field_selector = Some("metadata.name=other-secret");
        assert_eq!(g.authorize(&r), deny(NO_REL));
        r.field_selector = Some("metadata.name!=web-secret");
        assert_eq!(g.authorize(&r), deny("No Object name found"));
    }
}

#[test]
fn configmaps_follow_the_graph_too() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "get", "configmaps", "ns", "web-cm")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "configmaps", "ns", "kube-root-ca.crt")),
        deny(NO_REL)
    );
}

#[test]
fn claims_and_their_volumes_and_volume_secrets() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "get", "persistentvolumeclaims", "ns", "web-data")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "persistentvolumes", "", "pv-web")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "ns", "pv-secret")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "persistentvolumes", "", "pv-other")),
        deny(NO_REL)
    );
    assert_eq!(
        g.authorize(&req(&gs, "list", "persistentvolumes", "", "")),
        deny("can only get individual resources of this type")
    );
    let mut sub = req(&gs, "get", "persistentvolumes", "", "pv-web");
    sub.subresource = "status";
    assert_eq!(g.authorize(&sub), deny("cannot get subresource"));
}

#[test]
fn claim_status_updates_for_claims_on_the_node() {
    let g = cluster();
    let gs = groups();
    let mut r = req(&gs, "patch", "persistentvolumeclaims", "ns", "web-data");
    r.subresource = "status";
    assert_eq!(g.authorize(&r), Decision::Allow);
    r.name = "elsewhere";
    assert_eq!(g.authorize(&r), deny(NO_REL));
    r.name = "web-data";
    r.verb = "get";
    assert_eq!(g.authorize(&r), deny("can only get/update/patch this type"));
}

#[test]
fn volume_attachments_of_the_node() {
    let g = cluster();
    let gs = groups();
    let mut r = req(&gs, "get", "volumeattachments", "", "va1");
    r.api_group = "storage.k8s.io";
    assert_eq!(g.authorize(&r), Decision::Allow);
    r.name = "va2";
    assert_eq!(g.authorize(&r), deny(NO_REL));
}

#[test]
fn tokens_for_service_accounts_of_pods_on_the_node() {
    let g = cluster();
    let gs = groups();
    let mut r = req(&gs, "create", "serviceaccounts", "ns", "web-sa");
    r.subresource = "token";
    assert_eq!(g.authorize(&r), Decision::Allow);
    r.name = "default"; // the other pod's, on n2
    assert_eq!(g.authorize(&r), deny(NO_REL));
    r.name = "web-sa";
    r.subresource = "";
    assert_eq!(
        g.authorize(&r),
        deny("can only create token subresource of serviceaccount")
    );
    let get = req(&gs, "get", "serviceaccounts", "ns", "web-sa");
    assert_eq!(
        g.authorize(&get),
        deny("can only create tokens for individual service accounts")
    );
}

#[test]
fn pods_get_bound_ones_list_by_node_selector() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "get", "pods", "ns", "web")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "pods", "ns", "other")),
        deny(NO_REL)
    );
    // Any list/watch of pods, as before AuthorizeNodeWithSelectors (see `pod`).
    let mut list = req(&gs, "list", "pods", "", "");
    for sel in [Some("spec.nodeName=n1"), Some("spec.nodeName=n2"), None] {
        list.field_selector = sel;
        assert_eq!(g.authorize(&list), Decision::Allow, "{sel:?}");
    }
}

#[test]
fn pod_writes_are_left_to_node_restriction() {
    let g = cluster();
    let gs = groups();
    for (verb, sub) in [
        ("create", ""),
        ("delete", ""),
        ("update", "status"),
        ("patch", "status"),
        ("create", "eviction"),
    ] {
        let mut r = req(&gs, verb, "pods", "ns", "any");
        r.subresource = sub;
        assert_eq!(g.authorize(&r), Decision::Allow, "{verb} {sub}");
    }
    assert_eq!(
        g.authorize(&req(&gs, "update", "pods", "ns", "web")),
        Decision::NoOpinion
    );
    let mut exec = req(&gs, "create", "pods", "ns", "web");
    exec.subresource = "exec";
    assert_eq!(g.authorize(&exec), Decision::NoOpinion);
}

#[test]
fn nodes_read_only_their_own_node() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "get", "nodes", "", "n1")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "nodes", "", "n2")),
        deny("node 'n1' cannot read 'n2', only its own Node object")
    );
    assert_eq!(
        g.authorize(&req(&gs, "list", "nodes", "", "")),
        deny("node 'n1' cannot read all nodes, only its own Node object")
    );
    let mut own = req(&gs, "watch", "nodes", "", "");
    own.field_selector = Some("metadata.name=n1");
    assert_eq!(g.authorize(&own), Decision::Allow);
}

#[test]
fn nodes_write_any_node_and_node_restriction_narrows() {
    let g = cluster();
    let gs = groups();
    for verb in ["create", "update", "patch"] {
        assert_eq!(
            g.authorize(&req(&gs, verb, "nodes", "", "n2")),
            Decision::Allow
        );
    }
    let mut status = req(&gs, "patch", "nodes", "", "n1");
    status.subresource = "status";
    assert_eq!(g.authorize(&status), Decision::Allow);
    assert_eq!(
        g.authorize(&req(&gs, "delete", "nodes", "", "n1")),
        Decision::NoOpinion
    );
}

#[test]
fn leases_only_the_nodes_own_in_kube_node_lease() {
    let g = cluster();
    let gs = groups();
    let lease = |verb, ns, name| {
        let mut r = req(&gs, verb, "leases", ns, name);
        r.api_group = "coordination.k8s.io";
        g.authorize(&r)
    };
    assert_eq!(lease("update", "kube-node-lease", "n1"), Decision::Allow);
    assert_eq!(lease("create", "kube-node-lease", ""), Decision::Allow);
    assert_eq!(
        lease("update", "kube-node-lease", "n2"),
        deny("can only access node lease with the same name as the requesting node")
    );
    assert_eq!(
        lease("get", "default", "n1"),
        deny("can only access leases in the \"kube-node-lease\" system namespace")
    );
    assert_eq!(
        lease("list", "kube-node-lease", ""),
        deny("can only get, create, update, patch, or delete a node lease")
    );
}

#[test]
fn csinodes_only_the_nodes_own() {
    let g = cluster();
    let gs = groups();
    let mut r = req(&gs, "get", "csinodes", "", "n1");
    r.api_group = "storage.k8s.io";
    assert_eq!(g.authorize(&r), Decision::Allow);
    r.name = "n2";
    assert_eq!(
        g.authorize(&r),
        deny("can only access CSINode with the same name as the requesting node")
    );
    r.verb = "list";
    assert_eq!(
        g.authorize(&r),
        deny("can only get, create, update, patch, or delete a CSINode")
    );
}

#[test]
fn everything_else_by_the_system_node_rules() {
    let g = cluster();
    let gs = groups();
    assert_eq!(
        g.authorize(&req(&gs, "list", "services", "", "")),
        Decision::Allow
    );
    assert_eq!(
        g.authorize(&req(&gs, "create", "events", "ns", "")),
        Decision::Allow
    );
    let mut csr = req(&gs, "create", "certificatesigningrequests", "", "");
    csr.api_group = "certificates.k8s.io";
    assert_eq!(g.authorize(&csr), Decision::Allow);
    assert_eq!(
        g.authorize(&req(&gs, "delete", "services", "ns", "x")),
        Decision::NoOpinion
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "namespaces", "", "ns")),
        Decision::NoOpinion
    );
    let path = Request {
        resource: "",
        ..req(&gs, "get", "", "", "")
    };
    assert_eq!(g.authorize(&path), Decision::NoOpinion, "non-resource");
}

#[test]
fn access_goes_when_the_pod_goes() {
    let mut g = cluster();
    let gs = groups();
    let r = req(&gs, "get", "secrets", "ns", "web-secret");
    assert_eq!(g.authorize(&r), Decision::Allow);
    g.remove_pod("ns", "web");
    assert_eq!(g.authorize(&r), deny(NO_REL));
    assert_eq!(
        g.authorize(&req(&gs, "get", "persistentvolumes", "", "pv-web")),
        deny(NO_REL)
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "ns", "pv-secret")),
        deny(NO_REL)
    );
}

fn tls_ingress(name: &str, secrets: &[&str]) -> Value {
    let tls: Vec<Value> = secrets.iter().map(|s| json!({"secretName": s})).collect();
    json!({"metadata": {"namespace": "ns", "name": name}, "spec": {"tls": tls}})
}

#[test]
fn a_secret_an_ingress_names_is_readable_by_name_by_every_node_while_named() {
    let mut g = cluster();
    let gs = groups();
    let get = req(&gs, "get", "secrets", "ns", "tls-a");
    let mut list = req(&gs, "list", "secrets", "ns", "");
    list.field_selector = Some("metadata.name=tls-a");
    let mut watch = list;
    watch.verb = "watch";
    assert_eq!(
        g.authorize(&get),
        deny(NO_REL),
        "before any Ingress names it"
    );
    assert_eq!(g.authorize(&list), deny(NO_REL));

    g.set_ingress(&tls_ingress("web", &["tls-a"]));
    for r in [get, list, watch] {
        assert_eq!(g.authorize(&r), Decision::Allow, "{}", r.verb);
    }
    let mut n2 = get;
    n2.user = "system:node:n2";
    assert_eq!(g.authorize(&n2), Decision::Allow, "every node");
    // That Secret only, read only, in the Ingress' namespace only.
    assert_eq!(
        g.authorize(&req(&gs, "list", "secrets", "ns", "")),
        deny("No Object name found")
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "ns", "other-secret")),
        deny(NO_REL)
    );
    assert_eq!(
        g.authorize(&req(&gs, "get", "secrets", "other-ns", "tls-a")),
        deny(NO_REL)
    );
    assert_eq!(
        g.authorize(&req(&gs, "update", "secrets", "ns", "tls-a")),
        deny("can only read resources of this type")
    );

    g.set_ingress(&tls_ingress("web", &["tls-b"]));
    assert_eq!(g.authorize(&get), deny(NO_REL), "no longer named");
    g.set_ingress(&tls_ingress("web", &["tls-a"]));
    g.remove_ingress("ns", "web");
    assert_eq!(g.authorize(&get), deny(NO_REL), "Ingress deleted");
    assert_eq!(g.authorize(&list), deny(NO_REL));
}

#[test]
fn a_secret_two_ingresses_name_stays_readable_until_both_are_gone() {
    let mut g = cluster();
    let gs = groups();
    let get = req(&gs, "get", "secrets", "ns", "shared-tls");
    g.set_ingress(&tls_ingress("a", &["shared-tls"]));
    g.set_ingress(&tls_ingress("b", &["shared-tls"]));
    g.remove_ingress("ns", "a");
    assert_eq!(g.authorize(&get), Decision::Allow, "b still names it");
    g.remove_ingress("ns", "b");
    assert_eq!(g.authorize(&get), deny(NO_REL));
}
