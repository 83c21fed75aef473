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

const NGINX_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: nginx\n    image: nginx:1.25\n";

/// `kubectl apply`, then `kubectl apply --server-side` with a changed label and image:
/// the `kubectl` manager takes over what the last-applied annotation lists, new values
/// included, without a conflict; the annotation follows; another manager still
/// conflicts; and client-side apply works again afterwards.
#[test]
fn client_side_apply_moves_to_server_side_and_back() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    let v1 = write(&c, "v1.yaml", NGINX_POD);
    c.ok(&["apply", "-f", &v1]);
    let changed = NGINX_POD
        .replace("app: web", "app: web2")
        .replace("nginx:1.25", "nginx:1.26");
    let v2 = write(&c, "v2.yaml", &changed);
    // Another manager is no heir of client-side apply.
    let err = c.fails(&[
        "apply",
        "--server-side",
        "--field-manager=not-kubectl",
        "-f",
        &v2,
    ]);
    assert!(
        err.contains("conflict with \"kubectl-client-side-apply\""),
        "{err}"
    );
    // kubectl diff --server-side shows the change (exit 1), with no conflict.
    let diff = c.kubectl(&["diff", "--server-side", "-f", &v2]);
    let text = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        text.contains("+    app: web2") && text.contains("nginx:1.26"),
        "{text}"
    );
    c.ok(&["apply", "--server-side", "-f", &v2]);
    let got = c.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.metadata.labels.app} {.spec.containers[0].image}",
    ]);
    assert_eq!(got, "web2 nginx:1.26");
    let last = c.ok(&["apply", "view-last-applied", "pod/web", "-o", "json"]);
    assert!(
        last.contains("\"app\": \"web2\"") && last.contains("nginx:1.26"),
        "{last}"
    );
    // And back: client-side apply of the first file, three-way from the annotation.
    c.ok(&["apply", "-f", &v1]);
    let got = c.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.metadata.labels.app} {.spec.containers[0].image}",
    ]);
    assert_eq!(got, "web nginx:1.25");
}

/// `kubectl describe` lists the events of one second in the order they happened, as
/// their names (`<object>.<hex nanoseconds>`) sort.
#[test]
fn describe_lists_events_in_the_order_they_happened() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=1",
    ]);
    for n in ["2", "3", "4", "5"] {
        c.ok(&["scale", "deployment", "web", "--replicas", n]);
        common::eventually(std::time::Duration::from_secs(20), || {
            let r = c.ok(&[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.status.replicas}",
            ]);
            (r == n).then_some(())
        });
    }
    let out = c.ok(&["describe", "deployment", "web"]);
    let scaled: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("Scaled up replica set ").nth(1))
        .collect();
    let froms: Vec<&str> = scaled
        .iter()
        .filter_map(|s| s.split(" from ").nth(1))
        .collect();
    assert_eq!(
        froms,
        ["0 to 1", "1 to 2", "2 to 3", "3 to 4", "4 to 5"],
        "{out}"
    );
}

/// A kind served as a view of another's storage (autoscaling/v1 of v2 HPAs,
/// events.k8s.io of core Events) is patched in its own shape.
#[test]
fn alias_kinds_are_patched_in_their_own_shape() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    c.ok(&["create", "deployment", "d", "--image=nginx"]);
    c.ok(&["autoscale", "deployment", "d", "--min=1", "--max=3"]);
    let v1 = "horizontalpodautoscalers.v1.autoscaling";
    c.ok(&[
        "patch",
        v1,
        "d",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":50}}"#,
    ]);
    let v2 = c.ok(&[
        "get",
        "hpa",
        "d",
        "-o",
        "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
    ]);
    assert_eq!(v2, "50");
    c.ok(&[
        "patch",
        v1,
        "d",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/maxReplicas","value":4}]"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            v1,
            "d",
            "-o",
            "jsonpath={.spec.maxReplicas} {.spec.targetCPUUtilizationPercentage}"
        ]),
        "4 50"
    );

    // Its table is the v2 one, as kube prints both from the same object.
    let row = c.ok(&["get", v1, "d", "--no-headers"]);
    assert!(row.contains("/50%"), "{row}");
    let name = c.ok(&["get", "events", "-o", "jsonpath={.items[0].metadata.name}"]);
    c.ok(&[
        "patch",
        "events.v1.events.k8s.io",
        &name,
        "--type=merge",
        "-p",
        r#"{"note":"patched through the view"}"#,
    ]);
    let msg = c.ok(&["get", "event", &name, "-o", "jsonpath={.message}"]);
    assert_eq!(msg, "patched through the view");
}

/// autoscaling/v1 has its OpenAPI document: `kubectl explain` reads it, and strict
/// field validation checks v1 bodies against it.
#[test]
fn autoscaling_v1_has_its_schema() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    let doc = c.ok(&["get", "--raw", "/openapi/v3/apis/autoscaling/v1"]);
    assert!(
        doc.contains("targetCPUUtilizationPercentage"),
        "openapi document"
    );
    let explain = c.ok(&[
        "explain",
        "hpa.spec.targetCPUUtilizationPercentage",
        "--api-version=autoscaling/v1",
    ]);
    assert!(
        explain.contains("targetCPUUtilizationPercentage"),
        "{explain}"
    );
    let hpa = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: h\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: d\n  maxReplicas: 3\n  targetCPUPercent: 50\n";
    let out = c.kubectl_stdin(&["create", "--validate=strict", "-f", "-"], hpa);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("unknown field \"spec.targetCPUPercent\""),
        "{err}"
    );
}

/// A pod template is defaulted as kube's SetDefaults_PodSpec does it; what only Pods
/// get (enableServiceLinks, priority, preemptionPolicy) shows on the pods alone.
#[test]
fn pod_templates_get_only_podspec_defaults() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    c.ok(&["create", "deployment", "web", "--image=nginx"]);
    let tpl = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec}",
    ]);
    let tpl: serde_json::Value = serde_json::from_str(&tpl).unwrap();
    for absent in ["enableServiceLinks", "priority", "preemptionPolicy"] {
        assert!(tpl.get(absent).is_none(), "{absent} in {tpl}");
    }
    assert_eq!(tpl["schedulerName"], "default-scheduler");
    common::eventually(std::time::Duration::from_secs(20), || {
        let p = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.enableServiceLinks} {.items[0].spec.priority} {.items[0].spec.preemptionPolicy}"]);
        (p == "true 0 PreemptLowerPriority").then_some(())
    });
}
