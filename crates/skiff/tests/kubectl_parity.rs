//! Where kubectl's everyday workflows could tell skiff from Kubernetes (issue 20), each
//! checked with the real kubectl against upstream's documented behaviour.

mod common;

use common::Cluster;

const POD_YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: valid-pod\n  labels:\n    name: valid-pod\nspec:\n  containers:\n  - name: kubernetes-serve-hostname\n    image: registry.k8s.io/serve_hostname\n";

fn write(c: &Cluster, name: &str, text: &str) -> String {
    let p = c.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Posting a pod to namespaces, as upstream's `test/cmd/create.sh` does: YAML sent as
/// it is cannot be read as an object at all; JSON can, but is not a Namespace.
#[test]
fn bodies_of_the_wrong_kind_are_refused_in_kubes_words() {
    let c = Cluster::start();
    let yaml = write(&c, "pod.yaml", POD_YAML);
    let err = c.fails(&["create", "--raw", "/api/v1/namespaces", "-f", &yaml]);
    assert!(
        err.contains("the object provided is unrecognized (must be of type Namespace): couldn't get version/kind; json parse error: invalid character 'a' looking for beginning of value (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"),
        "{err}"
    );
    let json = write(&c, "pod.json", &pod_json("Pod"));
    let err = c.fails(&["create", "--raw", "/api/v1/namespaces", "-f", &json]);
    assert!(
        err.contains(r#"Pod in version \"v1\" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"#)
            || err.contains(r#"Pod in version "v1" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"#),
        "{err}"
    );
    // A kind written in lower case is no kind the scheme knows.
    let lower = write(&c, "lower.json", &pod_json("pod"));
    let err = c.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods",
        "-f",
        &lower,
    ]);
    assert!(
        err.contains("no kind") && err.contains("pod") && err.contains("is registered for version"),
        "{err}"
    );
}

fn pod_json(kind: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "valid-pod"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/serve_hostname"}]}})
    .to_string()
}
