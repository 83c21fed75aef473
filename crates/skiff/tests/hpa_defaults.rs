//! HorizontalPodAutoscaler defaulting (autoscaling/v2's SetDefaults_HorizontalPodAutoscaler)
//! and autoscaling/v1 served as a view of the stored v2 object, through real kubectl.

mod common;

use common::Cluster;
use serde_json::{Value, json};

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&c.ok(&all)).unwrap()
}

fn annotation(o: &Value, key: &str) -> Value {
    let raw = o["metadata"]["annotations"][key].as_str().unwrap_or("null");
    serde_json::from_str(raw).unwrap()
}

#[test]
fn autoscalers_are_defaulted_and_served_as_v1() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    c.ok(&["create", "deployment", "d", "--image=nginx", "--replicas=1"]);

    // No --cpu-percent: the stored object has no metrics, defaulting gives cpu at 80 %.
    c.ok(&["autoscale", "deployment", "d", "--min=2", "--max=3"]);
    let hpa = get_json(&c, &["hpa", "d"]);
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        "{hpa:#}"
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    // Behavior is only filled in when the object has one.
    assert!(hpa["spec"].get("behavior").is_none(), "{hpa:#}");

    let targets = c.ok(&["get", "hpa", "d", "--no-headers"]);
    assert!(targets.contains("cpu: <unknown>/80%"), "{targets}");
    let described = c.ok(&["describe", "hpa", "d"]);
    assert!(
        described.contains("resource cpu on pods  (as a percentage of request):  <unknown> / 80%"),
        "{described}"
    );

    // The same object in autoscaling/v1.
    // Spelled out: kubectl 1.32 drops the version from a short name (`hpa.v1.autoscaling`
    // reads the preferred version).
    let pct = c.ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "d",
        "-o",
        "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.spec.minReplicas}",
    ]);
    assert_eq!(pct, "autoscaling/v1 80 2");
    let v1_list = get_json(&c, &["horizontalpodautoscalers.v1.autoscaling"]);
    assert_eq!(
        v1_list["items"][0]["spec"]["targetCPUUtilizationPercentage"], 80,
        "{v1_list:#}"
    );

    // Created in v1, read in v2: the percentage is a cpu Utilization metric; minReplicas
    // defaults to 1.
    c.ok(&["create", "deployment", "e", "--image=nginx", "--replicas=1"]);
    c.apply("apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: e\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: e\n  maxReplicas: 4\n  targetCPUUtilizationPercentage: 60\n");
    let e = get_json(&c, &["hpa", "e"]);
    assert_eq!(
        e["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]),
        "{e:#}"
    );
    assert_eq!(e["spec"]["minReplicas"], 1);
    assert!(
        e["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| !a.keys().any(|k| k.starts_with("autoscaling.alpha")))
    );

    // A partial behavior is completed: both directions get the default rules, with the
    // given fields kept.
    c.apply("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: f\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: e\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource:\n      name: memory\n      target:\n        type: AverageValue\n        averageValue: 100Mi\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 120\n");
    let f = get_json(&c, &["hpa", "f"]);
    assert_eq!(
        f["spec"]["behavior"],
        json!({
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15}]}
        }),
        "{f:#}"
    );
    // v1 cannot say either: they ride in annotations, and come back from them.
    let f1 = get_json(&c, &["horizontalpodautoscalers.v1.autoscaling", "f"]);
    assert!(
        f1["spec"].get("targetCPUUtilizationPercentage").is_none(),
        "{f1:#}"
    );
    assert_eq!(
        annotation(&f1, "autoscaling.alpha.kubernetes.io/metrics"),
        json!([{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}]),
        "{f1:#}"
    );
    let behavior = annotation(&f1, "autoscaling.alpha.kubernetes.io/behavior");
    assert_eq!(
        behavior["ScaleDown"]["StabilizationWindowSeconds"], 120,
        "{f1:#}"
    );
    let mut f1 = f1;
    f1["spec"]["maxReplicas"] = json!(5);
    let replaced = c.kubectl_stdin(&["replace", "-f", "-"], &f1.to_string());
    assert!(
        replaced.status.success(),
        "{}",
        String::from_utf8_lossy(&replaced.stderr)
    );
    let f = get_json(&c, &["hpa", "f"]);
    assert_eq!(f["spec"]["maxReplicas"], 5);
    assert_eq!(
        f["spec"]["metrics"][0]["resource"]["name"], "memory",
        "{f:#}"
    );
    assert_eq!(
        f["spec"]["metrics"].as_array().map(Vec::len),
        Some(1),
        "{f:#}"
    );
    assert_eq!(
        f["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        120
    );
    assert!(
        f["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| !a.keys().any(|k| k.starts_with("autoscaling.alpha")))
    );
}
