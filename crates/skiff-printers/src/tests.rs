use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn ago(secs: i64) -> String {
    (now() - chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn cells(group: &str, resource: &str, o: &Value) -> Vec<String> {
    row(group, resource, o, now())
        .into_iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .collect()
}

#[test]
fn human_durations() {
    let cases = [
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (5400, "90m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 1800, "3h30m"),
        (10 * 3600, "10h"),
        (50 * 3600, "2d2h"),
        (72 * 3600, "3d"),
        (400 * 86400, "400d"),
        (800 * 86400, "2y70d"),
        (-5, "<invalid>"),
    ];
    for (s, want) in cases {
        assert_eq!(human_duration(chrono::Duration::seconds(s)), want, "{s}");
    }
}

#[test]
fn pod_status_column() {
    let base = |status: Value| json!({"metadata": {"name": "p", "creationTimestamp": ago(300)}, "spec": {"containers": [{"name": "c"}]}, "status": status});
    let cases = [
        (
            json!({"phase": "Pending"}),
            ["p", "0/1", "Pending", "0", "5m"],
        ),
        (
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            ["p", "0/1", "ContainerCreating", "0", "5m"],
        ),
        (
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
            ["p", "1/1", "Running", "0", "5m"],
        ),
        (
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}]}),
            ["p", "0/1", "CrashLoopBackOff", "3 (2m ago)", "5m"],
        ),
        (
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            ["p", "0/1", "Completed", "0", "5m"],
        ),
        (
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
            ["p", "0/1", "OOMKilled", "0", "5m"],
        ),
        (
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]}),
            ["p", "0/1", "ExitCode:2", "0", "5m"],
        ),
    ];
    for (status, want) in cases {
        assert_eq!(
            &cells("", "pods", &base(status.clone()))[..5],
            want,
            "{status}"
        );
    }
    let mut terminating = base(
        json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    terminating["metadata"]["deletionTimestamp"] = json!(ago(0));
    assert_eq!(cells("", "pods", &terminating)[2], "Terminating");
    let init = json!({"metadata": {"name": "p", "creationTimestamp": ago(10)}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 0, "state": {"running": {}}}]}});
    assert_eq!(cells("", "pods", &init)[2], "Init:0/1");
    let wide = cells(
        "",
        "pods",
        &base(json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]})),
    );
    assert_eq!(&wide[5..], ["10.42.0.5", "<none>", "<none>", "<none>"]);
}

#[test]
fn other_kinds() {
    let svc = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}});
    assert_eq!(
        cells("", "services", &svc),
        [
            "web",
            "NodePort",
            "10.43.0.10",
            "<none>",
            "80:30080/TCP",
            "60s",
            "app=web"
        ]
    );
    let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(60), "labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}, "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}});
    assert_eq!(
        &cells("", "nodes", &node)[..6],
        [
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane",
            "60s",
            "v1.33.0",
            "192.0.2.1"
        ]
    );
    let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        cells("apps", "deployments", &d),
        ["web", "2/3", "3", "2", "60s", "nginx", "nginx", "app=web"]
    );
    let cj = json!({"metadata": {"name": "c", "creationTimestamp": ago(60)}, "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "busybox"}]}}}}}});
    assert_eq!(
        &cells("batch", "cronjobs", &cj)[..7],
        ["c", "0 0 * * *", "<none>", "False", "0", "<none>", "60s"]
    );
    let ev = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "involvedObject": {"kind": "Pod", "name": "web"}, "message": "ok", "source": {"component": "default-scheduler"}, "firstTimestamp": ago(30), "lastTimestamp": ago(30), "count": 1});
    assert_eq!(
        &cells("", "events", &ev)[..4],
        ["30s", "Normal", "Scheduled", "pod/web"]
    );
    let np = json!({"metadata": {"name": "allow", "creationTimestamp": ago(5)}, "spec": {"podSelector": {"matchLabels": {"app": "backend"}}}});
    assert_eq!(
        cells("networking.k8s.io", "networkpolicies", &np),
        ["allow", "app=backend", "5s"]
    );
    let empty_np = json!({"metadata": {"name": "all", "creationTimestamp": ago(5)}, "spec": {"podSelector": {}}});
    assert_eq!(
        cells("networking.k8s.io", "networkpolicies", &empty_np)[1],
        "<none>"
    );
    let sec = json!({"metadata": {"name": "s", "creationTimestamp": ago(5)}, "type": "Opaque", "data": {"a": "eA=="}});
    assert_eq!(cells("", "secrets", &sec), ["s", "Opaque", "1", "5s"]);
    let job = json!({"metadata": {"name": "j", "creationTimestamp": ago(60)}, "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {"containers": [{"name": "b", "image": "pg"}]}}}, "status": {}});
    assert_eq!(
        &cells("batch", "jobs", &job)[..4],
        ["j", "Running", "0/1", ""]
    );
    for r in skiff_names() {
        assert_eq!(
            columns(r.0, r.1).len(),
            row(r.0, r.1, &json!({}), now()).len(),
            "{r:?}"
        );
    }
}

fn skiff_names() -> Vec<(&'static str, &'static str)> {
    vec![
        ("", "pods"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "services"),
        ("", "endpoints"),
        ("", "configmaps"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "limitranges"),
        ("", "podtemplates"),
        ("", "resourcequotas"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "replicationcontrollers"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "daemonsets"),
        ("apps", "statefulsets"),
        ("apps", "controllerrevisions"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("policy", "poddisruptionbudgets"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("scheduling.k8s.io", "priorityclasses"),
        ("storage.k8s.io", "storageclasses"),
        ("storage.k8s.io", "csidrivers"),
        ("storage.k8s.io", "csinodes"),
        ("storage.k8s.io", "volumeattachments"),
        ("coordination.k8s.io", "leases"),
        ("discovery.k8s.io", "endpointslices"),
        ("x", "unknown"),
    ]
}

#[test]
fn table_shape() {
    let o = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}, "creationTimestamp": ago(1)}, "data": {}});
    let t = table(
        "",
        "configmaps",
        std::slice::from_ref(&o),
        "Metadata",
        "7",
        Some("tok"),
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["metadata"]["continue"], "tok");
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["labels"]["x"], "y");
    assert_eq!(
        table(
            "",
            "configmaps",
            std::slice::from_ref(&o),
            "Object",
            "7",
            None,
            now()
        )["rows"][0]["object"],
        o
    );
    assert!(
        table("", "configmaps", &[o], "None", "7", None, now())["rows"][0]
            .get("object")
            .is_none()
    );
}

#[test]
fn hpa_targets_as_kubectl_prints_them() {
    let hpa = |metrics: serde_json::Value, current: serde_json::Value| serde_json::json!({"spec": {"metrics": metrics}, "status": {"currentMetrics": current}});
    let cpu = serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]);
    assert_eq!(
        super::hpa_targets(&hpa(cpu.clone(), serde_json::json!(null))),
        "cpu: <unknown>/50%"
    );
    let now = serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]);
    assert_eq!(super::hpa_targets(&hpa(cpu, now)), "cpu: 12%/50%");
    let mem = serde_json::json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]);
    assert_eq!(
        super::hpa_targets(&hpa(mem, serde_json::json!([]))),
        "memory: <unknown>/100Mi"
    );
    assert_eq!(
        super::hpa_targets(&hpa(serde_json::json!([]), serde_json::json!(null))),
        "<none>"
    );
}

#[test]
fn endpoints_columns_as_kubectl_prints_them() {
    let ep = |subsets: Value| json!({"metadata": {"name": "web", "creationTimestamp": ago(60)}, "subsets": subsets});
    let addrs = |ips: &[&str]| json!(ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>());
    let cases = [
        (json!(null), "<none>"),
        (
            json!([{"notReadyAddresses": addrs(&["10.42.0.5"]), "ports": [{"port": 80}]}]),
            "",
        ),
        (
            json!([{"addresses": addrs(&["10.42.0.5", "10.42.1.3"]), "ports": [{"port": 8080}]}]),
            "10.42.0.5:8080,10.42.1.3:8080",
        ),
        (
            json!([{"addresses": addrs(&["10.42.0.5", "10.42.1.3"]), "ports": [{"port": 80}, {"port": 443}]}]),
            "10.42.0.5:80,10.42.1.3:80,10.42.0.5:443 + 1 more...",
        ),
        (json!([{"addresses": addrs(&["10.42.0.5"])}]), "10.42.0.5"),
        (
            json!([{"addresses": addrs(&["fd00::5"]), "ports": [{"port": 80}]}]),
            "[fd00::5]:80",
        ),
    ];
    for (subsets, want) in cases {
        assert_eq!(cells("", "endpoints", &ep(subsets))[1], want);
    }
    let slice = |ports: Value, ips: &[&str]| {
        json!({"metadata": {"name": "web-abc", "creationTimestamp": ago(60)}, "addressType": "IPv4", "ports": ports,
            "endpoints": ips.iter().map(|ip| json!({"addresses": [ip]})).collect::<Vec<_>>()})
    };
    assert_eq!(
        cells(
            "discovery.k8s.io",
            "endpointslices",
            &slice(json!([{"port": 8080}]), &["10.42.0.5", "10.42.1.3"])
        ),
        ["web-abc", "IPv4", "8080", "10.42.0.5,10.42.1.3", "60s"]
    );
    assert_eq!(
        cells(
            "discovery.k8s.io",
            "endpointslices",
            &slice(json!(null), &["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"])
        ),
        [
            "web-abc",
            "IPv4",
            "<unset>",
            "1.1.1.1,1.1.1.2,1.1.1.3 + 1 more...",
            "60s"
        ]
    );
    assert_eq!(
        cells(
            "discovery.k8s.io",
            "endpointslices",
            &slice(json!([{"name": "http"}, {}]), &[])
        )[2..4],
        ["http,*", "<unset>"]
    );
}
