use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Attributes, Cluster, Operation, PodBinding, Rejection, admit, forbidden_message};

#[derive(Default)]
struct Store {
    pods: HashMap<(String, String), PodBinding>,
    nodes: HashMap<String, String>,
}

impl Cluster for Store {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodBinding> {
        self.pods.get(&(namespace.into(), name.into())).cloned()
    }
    fn node_uid(&self, name: &str) -> Option<String> {
        self.nodes.get(name).cloned()
    }
}

fn store() -> Store {
    let mut s = Store::default();
    let bind = |node: &str, uid: &str| PodBinding {
        node_name: node.into(),
        uid: uid.into(),
    };
    s.pods
        .insert(("ns".into(), "mine".into()), bind("n1", "uid-mine"));
    s.pods
        .insert(("ns".into(), "theirs".into()), bind("n2", "uid-theirs"));
    s.nodes.insert("n1".into(), "node-uid-1".into());
    s
}

fn node_groups() -> Vec<String> {
    vec!["system:nodes".into()]
}

fn attrs<'a>(groups: &'a [String], op: Operation, resource: &'a str) -> Attributes<'a> {
    Attributes {
        user: "system:node:n1",
        groups,
        operation: op,
        api_group: "",
        resource,
        subresource: "",
        namespace: "ns",
        name: "",
        object: None,
        old_object: None,
    }
}

fn forbidden(reason: &str) -> Result<(), Rejection> {
    Err(Rejection::Forbidden(reason.into()))
}

fn mirror_pod() -> Value {
    json!({
        "metadata": {
            "name": "static-web-n1", "namespace": "ns",
            "annotations": {"kubernetes.io/config.mirror": "abc"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid-1", "controller": true}]
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]}
    })
}

fn create_pod(pod: &Value) -> Result<(), Rejection> {
    let gs = node_groups();
    let a = Attributes {
        object: Some(pod),
        ..attrs(&gs, Operation::Create, "pods")
    };
    admit(&a, &store())
}

#[test]
fn non_nodes_pass_and_unnamed_nodes_are_refused() {
    let gs = node_groups();
    let pod = json!({"metadata": {"name": "p"}, "spec": {}});
    let mut a = Attributes {
        object: Some(&pod),
        ..attrs(&gs, Operation::Create, "pods")
    };
    a.user = "alice";
    assert_eq!(admit(&a, &store()), Ok(()));
    a.user = "system:node:n1";
    a.groups = &[];
    assert_eq!(admit(&a, &store()), Ok(()), "not in system:nodes");
    a.groups = &gs;
    a.user = "system:node:";
    assert_eq!(
        admit(&a, &store()),
        forbidden("could not determine node from user \"system:node:\"")
    );
}

#[test]
fn a_node_creates_mirror_pods_of_its_own() {
    assert_eq!(create_pod(&mirror_pod()), Ok(()));
    let mut p = mirror_pod();
    p["metadata"]["annotations"] = json!({});
    assert_eq!(
        create_pod(&p),
        forbidden(
            "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods"
        )
    );
    let mut p = mirror_pod();
    p["spec"]["nodeName"] = json!("n2");
    assert_eq!(
        create_pod(&p),
        forbidden("node \"n1\" can only create pods with spec.nodeName set to itself")
    );
}

#[test]
fn mirror_pods_are_owned_by_their_node_as_controller() {
    let with_owners = |owners: Value| {
        let mut p = mirror_pod();
        p["metadata"]["ownerReferences"] = owners;
        create_pod(&p)
    };
    let own = json!({"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid-1", "controller": true});
    assert_eq!(with_owners(json!([own])), Ok(()));
    assert_eq!(
        with_owners(json!([])),
        forbidden("node \"n1\" can only create pods with an owner reference set to itself")
    );
    assert_eq!(
        with_owners(json!([own, own])),
        forbidden("node \"n1\" can only create pods with a single owner reference set to itself")
    );
    let mut other = own.clone();
    other["name"] = json!("n2");
    assert_eq!(
        with_owners(json!([other])),
        forbidden("node \"n1\" can only create pods with an owner reference set to itself")
    );
    let mut not_controller = own.clone();
    not_controller["controller"] = json!(false);
    assert_eq!(
        with_owners(json!([not_controller])),
        forbidden(
            "node \"n1\" can only create pods with a controller owner reference set to itself"
        )
    );
    let mut blocking = own.clone();
    blocking["blockOwnerDeletion"] = json!(true);
    assert_eq!(
        with_owners(json!([blocking])),
        forbidden("node \"n1\" must not set blockOwnerDeletion on an owner reference")
    );
    let mut stale = own.clone();
    stale["uid"] = json!("old-uid");
    assert_eq!(
        with_owners(json!([stale])),
        forbidden("node n1 UID mismatch: expected old-uid got node-uid-1")
    );
}

#[test]
fn mirror_pods_of_an_unknown_node_are_not_found() {
    let gs = node_groups();
    let p = mirror_pod();
    let a = Attributes {
        object: Some(&p),
        ..attrs(&gs, Operation::Create, "pods")
    };
    let err = admit(&a, &Store::default()).unwrap_err();
    assert_eq!(err.to_string(), "node \"n1\" not found");
}

#[test]
fn mirror_pods_reference_no_other_object() {
    let with_spec = |key: &str, value: Value| {
        let mut p = mirror_pod();
        p["spec"][key] = value;
        create_pod(&p)
    };
    assert_eq!(
        with_spec("serviceAccountName", json!("default")),
        forbidden("node \"n1\" can not create pods that reference a service account")
    );
    assert_eq!(
        with_spec("imagePullSecrets", json!([{"name": "pull"}])),
        forbidden("node \"n1\" can not create pods that reference secrets")
    );
    assert_eq!(
        with_spec(
            "containers",
            json!([{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}])
        ),
        forbidden("node \"n1\" can not create pods that reference configmaps")
    );
    assert_eq!(
        with_spec(
            "volumes",
            json!([{"name": "b", "projected": {"sources": [{"clusterTrustBundle": {"path": "p", "signerName": "x/y"}}]}}])
        ),
        forbidden("node \"n1\" can not create pods that reference clustertrustbundles")
    );
    assert_eq!(
        with_spec(
            "volumes",
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}])
        ),
        forbidden("node \"n1\" can not create pods that reference persistentvolumeclaims")
    );
    assert_eq!(
        with_spec(
            "volumes",
            json!([{"name": "h", "hostPath": {"path": "/x"}}])
        ),
        Ok(())
    );
}

fn on_pod(
    op: Operation,
    sub: &str,
    name: &str,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<(), Rejection> {
    let gs = node_groups();
    let a = Attributes {
        subresource: sub,
        name,
        object,
        old_object: old,
        ..attrs(&gs, op, "pods")
    };
    admit(&a, &store())
}

#[test]
fn a_node_deletes_only_its_pods() {
    assert_eq!(on_pod(Operation::Delete, "", "mine", None, None), Ok(()));
    assert_eq!(
        on_pod(Operation::Delete, "", "theirs", None, None),
        forbidden("node \"n1\" can only delete pods with spec.nodeName set to itself")
    );
    let gone = on_pod(Operation::Delete, "", "gone", None, None).unwrap_err();
    assert_eq!(
        gone,
        Rejection::NotFound {
            kind: "pod",
            name: "gone".into()
        }
    );
    assert_eq!(gone.to_string(), "pod \"gone\" not found");
    let p = json!({});
    assert_eq!(
        on_pod(Operation::Update, "", "mine", Some(&p), Some(&p)),
        forbidden(
            "unexpected operation \"UPDATE\", node \"n1\" can only create and delete mirror pods"
        )
    );
}

#[test]
fn a_node_updates_status_of_its_pods_only_without_labels() {
    let old = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
    let mut new = old.clone();
    new["status"]["phase"] = json!("Running");
    assert_eq!(
        on_pod(Operation::Update, "status", "mine", Some(&new), Some(&old)),
        Ok(())
    );
    let mut relabeled = new.clone();
    relabeled["metadata"]["labels"]["app"] = json!("db");
    assert_eq!(
        on_pod(
            Operation::Update,
            "status",
            "mine",
            Some(&relabeled),
            Some(&old)
        ),
        forbidden("node \"n1\" cannot update labels through pod status")
    );
    let mut claims = new.clone();
    claims["status"]["resourceClaimStatuses"] = json!([{"name": "gpu", "resourceClaimName": "c"}]);
    assert_eq!(
        on_pod(
            Operation::Update,
            "status",
            "mine",
            Some(&claims),
            Some(&old)
        ),
        forbidden("node \"n1\" cannot update resource claim statues")
    );
    let mut elsewhere = old.clone();
    elsewhere["spec"]["nodeName"] = json!("n2");
    assert_eq!(
        on_pod(
            Operation::Update,
            "status",
            "theirs",
            Some(&new),
            Some(&elsewhere)
        ),
        forbidden(
            "node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
        )
    );
}

#[test]
fn no_labels_equals_empty_labels() {
    let old = json!({"metadata": {}, "spec": {"nodeName": "n1"}});
    let new = json!({"metadata": {"labels": {}}, "spec": {"nodeName": "n1"}});
    assert_eq!(
        on_pod(Operation::Update, "status", "mine", Some(&new), Some(&old)),
        Ok(())
    );
}

#[test]
fn a_node_evicts_only_its_pods() {
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "mine"}});
    assert_eq!(
        on_pod(Operation::Create, "eviction", "mine", Some(&eviction), None),
        Ok(())
    );
    assert_eq!(
        on_pod(Operation::Create, "eviction", "", Some(&eviction), None),
        Ok(()),
        "name from the body"
    );
    assert_eq!(
        on_pod(
            Operation::Create,
            "eviction",
            "theirs",
            Some(&eviction),
            None
        ),
        forbidden("node n1 can only evict pods with spec.nodeName set to itself")
    );
    let nameless = json!({"metadata": {}});
    assert_eq!(
        on_pod(Operation::Create, "eviction", "", Some(&nameless), None),
        forbidden("could not determine pod from request data")
    );
}

#[test]
fn other_pod_subresources_are_refused() {
    let p = json!({});
    assert_eq!(
        on_pod(
            Operation::Update,
            "status",
            "mine",
            Some(&p),
            Some(&json!({"spec": {"nodeName": "n1"}}))
        ),
        Ok(())
    );
    assert_eq!(
        on_pod(
            Operation::Update,
            "ephemeralcontainers",
            "mine",
            Some(&p),
            Some(&p)
        ),
        forbidden(
            "unexpected pod subresource \"ephemeralcontainers\", only 'status' and 'eviction' are allowed"
        )
    );
    assert_eq!(
        on_pod(Operation::Connect, "exec", "theirs", None, None),
        Ok(()),
        "connect is not admitted here"
    );
}

fn on_node(
    op: Operation,
    name: &str,
    new: Option<&Value>,
    old: Option<&Value>,
) -> Result<(), Rejection> {
    let gs = node_groups();
    let a = Attributes {
        namespace: "",
        name,
        object: new,
        old_object: old,
        ..attrs(&gs, op, "nodes")
    };
    admit(&a, &store())
}

fn node(labels: Value) -> Value {
    json!({"metadata": {"name": "n1", "labels": labels}, "spec": {}})
}

#[test]
fn a_node_writes_only_its_own_node() {
    let n = node(json!({}));
    assert_eq!(on_node(Operation::Create, "", Some(&n), None), Ok(()));
    assert_eq!(on_node(Operation::Update, "n1", Some(&n), Some(&n)), Ok(()));
    assert_eq!(
        on_node(Operation::Update, "n2", Some(&n), Some(&n)),
        forbidden("node \"n1\" is not allowed to modify node \"n2\"")
    );
    let other = json!({"metadata": {"name": "n2"}});
    assert_eq!(
        on_node(Operation::Create, "", Some(&other), None),
        forbidden("node \"n1\" is not allowed to modify node \"n2\"")
    );
    assert_eq!(on_node(Operation::Delete, "n1", None, None), Ok(()));
}

#[test]
fn a_node_registers_with_kubelet_labels_only() {
    let ok = node(
        json!({"kubernetes.io/hostname": "n1", "node.kubernetes.io/instance-type": "m",
        "kubelet.kubernetes.io/x": "y", "foo.node.kubernetes.io/z": "1", "example.com/team": "a", "plain": "1"}),
    );
    assert_eq!(on_node(Operation::Create, "", Some(&ok), None), Ok(()));
    let bad = node(
        json!({"node-restriction.kubernetes.io/pool": "gpu", "node-role.kubernetes.io/control-plane": "",
        "example.k8s.io/x": "1", "a.node-restriction.kubernetes.io/b": "1"}),
    );
    assert_eq!(
        on_node(Operation::Create, "", Some(&bad), None),
        forbidden(
            "node \"n1\" is not allowed to set the following labels: a.node-restriction.kubernetes.io/b, example.k8s.io/x, node-restriction.kubernetes.io/pool, node-role.kubernetes.io/control-plane"
        )
    );
    let mut with_source = node(json!({}));
    with_source["spec"]["configSource"] = json!({"configMap": {"name": "c"}});
    assert_eq!(
        on_node(Operation::Create, "", Some(&with_source), None),
        forbidden("node \"n1\" is not allowed to create pods with a non-nil configSource")
    );
}

#[test]
fn a_node_keeps_restricted_labels_as_the_admin_set_them() {
    let old =
        node(json!({"node-restriction.kubernetes.io/pool": "gpu", "kubernetes.io/os": "linux"}));
    let mut same_restricted = old.clone();
    same_restricted["metadata"]["labels"]["kubernetes.io/os"] = json!("windows");
    same_restricted["metadata"]["labels"]["team"] = json!("a");
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&same_restricted), Some(&old)),
        Ok(())
    );
    let removed = node(json!({"kubernetes.io/os": "linux"}));
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&removed), Some(&old)),
        forbidden("is not allowed to modify labels: node-restriction.kubernetes.io/pool")
    );
}

#[test]
fn a_node_does_not_change_its_taints_or_config_source() {
    let mut old = node(json!({}));
    old["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
    let mut new = old.clone();
    new["status"] = json!({"phase": "Running"});
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&new), Some(&old)),
        Ok(())
    );
    new["spec"]["taints"] = json!([]);
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&new), Some(&old)),
        forbidden("node \"n1\" is not allowed to modify taints")
    );
    let bare = node(json!({}));
    let mut empty_taints = bare.clone();
    empty_taints["spec"]["taints"] = json!([]);
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&empty_taints), Some(&bare)),
        Ok(()),
        "nil equals empty"
    );
    let mut sourced = bare.clone();
    sourced["spec"]["configSource"] = json!({"configMap": {"name": "c"}});
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&bare), Some(&sourced)),
        Ok(()),
        "dropping it is fine"
    );
    assert_eq!(
        on_node(Operation::Update, "n1", Some(&sourced), Some(&bare)),
        forbidden(
            "node \"n1\" is not allowed to update configSource to a new non-nil configSource"
        )
    );
}

fn claim() -> Value {
    json!({
        "metadata": {"name": "data", "namespace": "ns", "resourceVersion": "5", "labels": {"a": "b"}},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    })
}

fn on_claim(op: Operation, sub: &str, new: &Value, old: &Value) -> Result<(), Rejection> {
    let gs = node_groups();
    let a = Attributes {
        subresource: sub,
        name: "data",
        object: Some(new),
        old_object: Some(old),
        ..attrs(&gs, op, "persistentvolumeclaims")
    };
    admit(&a, &store())
}

#[test]
fn a_node_updates_claim_capacity_and_conditions_only() {
    let old = claim();
    let mut new = old.clone();
    new["metadata"]["resourceVersion"] = json!("");
    new["status"]["capacity"]["storage"] = json!("2Gi");
    new["status"]["conditions"] = json!([{"type": "FileSystemResizePending", "status": "True"}]);
    new["status"]["allocatedResources"] = json!({"storage": "2Gi"});
    assert_eq!(on_claim(Operation::Update, "status", &new, &old), Ok(()));
    new["status"]["phase"] = json!("Lost");
    new["metadata"]["labels"]["a"] = json!("c");
    assert_eq!(
        on_claim(Operation::Update, "status", &new, &old),
        forbidden(
            "node \"n1\" is not allowed to update fields other than status.quantity and status.conditions: metadata.labels.a, status.phase"
        )
    );
    assert_eq!(
        on_claim(Operation::Update, "", &old, &old),
        forbidden("may only update PVC status")
    );
    assert_eq!(
        on_claim(Operation::Create, "status", &old, &old),
        forbidden("unexpected operation \"CREATE\"")
    );
}

fn token_request(r: Value) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": [], "boundObjectRef": r}})
}

fn request_token(body: &Value) -> Result<(), Rejection> {
    let gs = node_groups();
    let a = Attributes {
        subresource: "token",
        name: "default",
        object: Some(body),
        ..attrs(&gs, Operation::Create, "serviceaccounts")
    };
    admit(&a, &store())
}

#[test]
fn tokens_are_bound_to_pods_on_the_node() {
    let bound = |name: &str, uid: &str| {
        token_request(json!({"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}))
    };
    assert_eq!(request_token(&bound("mine", "uid-mine")), Ok(()));
    assert_eq!(
        request_token(&bound("theirs", "uid-theirs")),
        forbidden("node requested token bound to a pod scheduled on a different node")
    );
    assert_eq!(
        request_token(&bound("mine", "uid-old")),
        forbidden(
            "the UID in the bound object reference (uid-old) does not match the UID in record. The object might have been deleted and then recreated"
        )
    );
    assert_eq!(
        request_token(&bound("mine", "")),
        forbidden("node requested token with a pod binding without a uid")
    );
    assert_eq!(
        request_token(&token_request(Value::Null)),
        forbidden("node requested token not bound to a pod")
    );
    let secret_bound =
        token_request(json!({"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "u"}));
    assert_eq!(
        request_token(&secret_bound),
        forbidden("node requested token not bound to a pod")
    );
    assert_eq!(
        request_token(&bound("gone", "u")).unwrap_err().to_string(),
        "pod \"gone\" not found"
    );
}

fn on(
    group: &'static str,
    resource: &'static str,
    op: Operation,
    ns: &'static str,
    name: &'static str,
    obj: Option<&Value>,
) -> Result<(), Rejection> {
    let gs = node_groups();
    let a = Attributes {
        api_group: group,
        namespace: ns,
        name,
        object: obj,
        old_object: obj,
        ..attrs(&gs, op, resource)
    };
    admit(&a, &store())
}

#[test]
fn leases_only_the_nodes_own_in_kube_node_lease() {
    let mine = json!({"metadata": {"name": "n1"}});
    let theirs = json!({"metadata": {"name": "n2"}});
    let lease = |op, ns, name, obj| on("coordination.k8s.io", "leases", op, ns, name, obj);
    assert_eq!(
        lease(Operation::Create, "kube-node-lease", "", Some(&mine)),
        Ok(())
    );
    assert_eq!(
        lease(Operation::Update, "kube-node-lease", "n1", Some(&mine)),
        Ok(())
    );
    let wrong = forbidden("can only access node lease with the same name as the requesting node");
    assert_eq!(
        lease(Operation::Create, "kube-node-lease", "", Some(&theirs)),
        wrong
    );
    assert_eq!(
        lease(Operation::Delete, "kube-node-lease", "n2", None),
        wrong
    );
    assert_eq!(
        lease(Operation::Create, "default", "", Some(&mine)),
        forbidden("can only access leases in the \"kube-node-lease\" system namespace")
    );
}

#[test]
fn csinodes_only_the_nodes_own() {
    let mine = json!({"metadata": {"name": "n1"}});
    let csi = |op, name, obj| on("storage.k8s.io", "csinodes", op, "", name, obj);
    assert_eq!(csi(Operation::Create, "", Some(&mine)), Ok(()));
    assert_eq!(csi(Operation::Update, "n1", Some(&mine)), Ok(()));
    assert_eq!(
        csi(Operation::Update, "n2", Some(&mine)),
        forbidden("can only access CSINode with the same name as the requesting node")
    );
}

#[test]
fn resource_slices_name_the_node() {
    let mine = json!({"spec": {"nodeName": "n1"}});
    let theirs = json!({"spec": {"nodeName": "n2"}});
    let slice = |op, obj| on("resource.k8s.io", "resourceslices", op, "", "s", obj);
    assert_eq!(slice(Operation::Create, Some(&mine)), Ok(()));
    assert_eq!(
        slice(Operation::Create, Some(&theirs)),
        forbidden("can only create ResourceSlice with the same NodeName as the requesting node")
    );
    assert_eq!(slice(Operation::Delete, Some(&mine)), Ok(()));
    assert_eq!(
        slice(Operation::Delete, Some(&theirs)),
        forbidden("can only delete ResourceSlice with the same NodeName as the requesting node")
    );
}

fn csr_body(cn: &str, signer: &str) -> Value {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    json!({"spec": {"signerName": signer, "request": request, "usages": ["digital signature"]}})
}

#[test]
fn node_csrs_are_for_the_nodes_own_name() {
    let csr = |body: &Value| {
        on(
            "certificates.k8s.io",
            "certificatesigningrequests",
            Operation::Create,
            "",
            "",
            Some(body),
        )
    };
    assert_eq!(
        csr(&csr_body("system:node:n1", "kubernetes.io/kubelet-serving")),
        Ok(())
    );
    assert_eq!(
        csr(&csr_body(
            "system:node:n2",
            "kubernetes.io/kube-apiserver-client-kubelet"
        )),
        forbidden("can only create a node CSR with CN=system:node:n1")
    );
    assert_eq!(
        csr(&csr_body("anything", "example.com/signer")),
        Ok(()),
        "other signers"
    );
    let garbage =
        json!({"spec": {"signerName": "kubernetes.io/kubelet-serving", "request": "bm90IGEgcGVt"}});
    assert_eq!(
        csr(&garbage),
        forbidden("unable to parse csr: PEM block type must be CERTIFICATE REQUEST")
    );
}

#[test]
fn other_resources_pass() {
    let obj = json!({});
    assert_eq!(
        on("", "events", Operation::Create, "ns", "", Some(&obj)),
        Ok(())
    );
    assert_eq!(
        on("", "configmaps", Operation::Update, "ns", "x", Some(&obj)),
        Ok(())
    );
}

#[test]
fn forbidden_messages_are_wrapped_as_kube_wraps_them() {
    let gs = node_groups();
    let node = json!({"metadata": {"name": "n2"}});
    let mut a = Attributes {
        namespace: "",
        object: Some(&node),
        ..attrs(&gs, Operation::Create, "nodes")
    };
    let reason = admit(&a, &store()).unwrap_err().to_string();
    assert_eq!(
        forbidden_message(&a, &reason),
        "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
    );
    a.api_group = "coordination.k8s.io";
    a.resource = "leases";
    a.object = None;
    assert_eq!(
        forbidden_message(&a, "r"),
        "leases.coordination.k8s.io is forbidden: r"
    );
}
