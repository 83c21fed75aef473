//! What the schema walks cost per write, for a pod as `kubectl run` sends it: the
//! type check (every write) beside the unknown-field walk (Strict/Warn writes). Prints,
//! asserts nothing: `cargo test --release -p skiff-openapi --test cost -- --ignored --nocapture`.

use serde_json::json;
use std::time::Instant;

#[test]
#[ignore]
fn schema_walks_per_pod() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"run": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {},
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "securityContext": {},
            "schedulerName": "default-scheduler", "enableServiceLinks": true},
        "status": {}});
    assert!(skiff_openapi::type_mismatch("", "v1", "Pod", &pod).is_none());
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(skiff_openapi::type_mismatch("", "v1", "Pod", &pod));
    }
    let types = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(skiff_openapi::unknown_fields("", "v1", "Pod", &pod));
    }
    let unknown = t.elapsed() / n;
    println!("per pod: type check {types:?}, unknown-field walk {unknown:?}");
}
