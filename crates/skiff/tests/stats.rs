//! A real node's statistics as kubelet serves them, reached through the API server's
//! node proxy with kubectl (root; containerd, CNI plugins, busybox-static):
//! `/stats/summary` lists a running pod and its containers with CPU and memory, and the
//! CPU of a container that burns it moves while an idle one's does not;
//! `/metrics/resource` and `/metrics` answer in Prometheus text; `nodes/proxy` is what
//! RBAC must grant. The built-in `metrics.k8s.io` scrapes that for `kubectl top nodes`
//! and `kubectl top pods [-A] [--containers]`, readable by whoever may view; and a
//! HorizontalPodAutoscaler made by `kubectl autoscale` scales a CPU burner up on it,
//! then back down once it idles (a short scale-down window in its `behavior`).

mod common;

use common::Cluster;
use common::eventually;
use common::lab::Lab;
use serde_json::Value;
use std::time::Duration;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: burner\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: idle\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n  - name: burn\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'while :; do :; done']\n";

fn raw(c: &Cluster, node: &str, path: &str) -> String {
    c.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy{path}")])
}

/// The summary's entry for the pod `burner`, once both its containers report CPU.
fn burner(c: &Cluster, node: &str) -> (Value, Value) {
    eventually(Duration::from_secs(60), || {
        let s: Value = serde_json::from_str(&raw(c, node, "/stats/summary")).ok()?;
        let pod = s["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["name"] == "burner" && p["podRef"]["namespace"] == "default")?
            .clone();
        let both = pod["containers"].as_array()?.len() == 2
            && pod["containers"]
                .as_array()?
                .iter()
                .all(|c| c["cpu"]["usageCoreNanoSeconds"].as_u64().is_some());
        both.then_some((s, pod))
    })
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

fn cpu_ns(pod: &Value, name: &str) -> u64 {
    container(pod, name)["cpu"]["usageCoreNanoSeconds"]
        .as_u64()
        .unwrap()
}

#[test]
fn node_statistics_through_the_node_proxy() {
    let lab = Lab::new(1);
    let c = lab.start_server(&["--metric-resolution=2s"]);
    lab.wait_ready(&c);
    let node = lab.node_name(0);
    c.apply(POD);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/burner",
        "--timeout=120s",
    ]);

    let (summary, before) = burner(&c, &node);
    let n = &summary["node"];
    assert_eq!(n["nodeName"], node.as_str(), "{n}");
    for (what, v) in [
        ("node cpu", &n["cpu"]["usageCoreNanoSeconds"]),
        ("node working set", &n["memory"]["workingSetBytes"]),
        ("node fs capacity", &n["fs"]["capacityBytes"]),
        ("pod working set", &before["memory"]["workingSetBytes"]),
        (
            "idle working set",
            &container(&before, "idle")["memory"]["workingSetBytes"],
        ),
    ] {
        assert!(
            v.as_u64().is_some_and(|v| v > 0),
            "{what}: {v} in {summary}"
        );
    }
    let uid = c.ok(&["get", "pod", "burner", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(before["podRef"]["uid"], uid.as_str());

    // Three seconds on: the burner has used CPU time and has a rate; the idle one hardly.
    std::thread::sleep(Duration::from_secs(3));
    let (_, after) = burner(&c, &node);
    let burned = cpu_ns(&after, "burn") - cpu_ns(&before, "burn");
    let idled = cpu_ns(&after, "idle") - cpu_ns(&before, "idle");
    assert!(burned > 300_000_000, "burn used {burned} ns in 3 s");
    assert!(
        idled < burned / 10,
        "idle used {idled} ns, burn {burned} ns"
    );
    let rate = container(&after, "burn")["cpu"]["usageNanoCores"]
        .as_u64()
        .unwrap_or(0);
    assert!(rate > 100_000_000, "burn's rate {rate} nano-cores");
    let pod_cpu = after["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap();
    assert!(pod_cpu >= cpu_ns(&after, "burn"), "{after}");

    let resource = raw(&c, &node, "/metrics/resource");
    for want in [
        "container_cpu_usage_seconds_total{container=\"burn\",namespace=\"default\",pod=\"burner\"} ",
        "container_memory_working_set_bytes{container=\"idle\",namespace=\"default\",pod=\"burner\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"burner\"} ",
        "node_cpu_usage_seconds_total ",
        "resource_scrape_error 0",
    ] {
        assert!(
            resource.lines().any(|l| l.starts_with(want)),
            "no {want:?} in\n{resource}"
        );
    }
    let own = raw(&c, &node, "/metrics");
    assert!(own.contains("kubelet_running_pods "), "{own}");
    let only = raw(&c, &node, "/stats/summary?only_cpu_and_memory=true");
    let only: Value = serde_json::from_str(&only).unwrap();
    assert!(
        only["node"]["fs"].is_null() && only["node"]["cpu"].is_object(),
        "{only}"
    );

    // The admin reads it; a user without `nodes/proxy` may not, until a role grants it.
    let path = format!("/api/v1/nodes/{node}/proxy/stats/summary");
    let denied = c.fails(&["get", "--raw", &path, "--as=carol"]);
    assert!(
        denied.contains("cannot get resource \"nodes/proxy\""),
        "{denied}"
    );
    c.ok(&[
        "create",
        "clusterrole",
        "node-stats",
        "--verb=get",
        "--resource=nodes/proxy",
    ]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "carol-stats",
        "--clusterrole=node-stats",
        "--user=carol",
    ]);
    eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "--raw", &path, "--as=carol"]);
        out.status.success().then_some(())
    });
    kubectl_top(&c, &node);
    autoscaling(&c);

    // A node that does not exist is a 404 from the API, not a proxy error.
    let missing = c.fails(&["get", "--raw", "/api/v1/nodes/nowhere/proxy/stats/summary"]);
    assert!(missing.contains("nodes \"nowhere\" not found"), "{missing}");
}

/// A row of kubectl's table whose first columns are `key`.
fn row(table: &str, key: &[&str]) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.len() > key.len() && cols.iter().zip(key).all(|(a, b)| a == b))
        .unwrap_or_else(|| panic!("no row {key:?} in\n{table}"))
}

/// Millicores from kubectl's CPU column (`250m`, `1`).
fn millis(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => q.parse::<u64>().unwrap() * 1000,
    }
}

fn kubectl_top(c: &Cluster, node: &str) {
    // Two scrapes make a rate: until then kubectl says metrics are not available.
    let nodes = eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&["top", "nodes"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let header = nodes.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("CPU(cores)") && header.contains("MEMORY(%)"),
        "{nodes}"
    );
    let r = row(&nodes, &[node]);
    assert!(
        millis(&r[1]) > 0 && r[2].ends_with('%') && r[3].ends_with("Mi"),
        "{nodes}"
    );

    let pods = eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&["top", "pods", "-A", "--containers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("burner")).then_some(text)
    });
    // NAMESPACE POD NAME CPU(cores) MEMORY(bytes)
    let burn = row(&pods, &["default", "burner", "burn"]);
    let idle = row(&pods, &["default", "burner", "idle"]);
    assert!(millis(&burn[3]) >= 100, "{pods}");
    assert!(millis(&idle[3]) < millis(&burn[3]) / 5, "{pods}");
    let one = c.ok(&["top", "pod", "burner"]);
    assert!(millis(&row(&one, &["burner"])[1]) >= 100, "{one}");

    // A viewer may read the metrics API; a stranger may not.
    let denied = c.fails(&["top", "pods", "--as=dave"]);
    assert!(denied.contains("forbidden"), "{denied}");
    c.ok(&[
        "create",
        "rolebinding",
        "dave-view",
        "--clusterrole=view",
        "--user=dave",
    ]);
    eventually(Duration::from_secs(10), || {
        c.kubectl(&["top", "pods", "--as=dave"])
            .status
            .success()
            .then_some(())
    });
}

const BURN: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: burn\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: burn\n  template:\n    metadata:\n      labels:\n        app: burn\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, 'while :; do :; done']\n        resources:\n          requests:\n            cpu: 100m\n";

fn replicas(c: &Cluster) -> i64 {
    c.ok(&[
        "get",
        "deployment",
        "burn",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .parse()
    .unwrap_or(0)
}

fn autoscaling(c: &Cluster) {
    c.apply(BURN);
    c.ok(&["rollout", "status", "deployment/burn", "--timeout=120s"]);
    c.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    // Scale down after 5 s of lower recommendations rather than five minutes.
    c.ok(&[
        "patch",
        "hpa",
        "burn",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}"#,
    ]);
    assert_eq!(replicas(c), 1);
    // A core against a tenth requested: far above 50 %, up to the maximum.
    eventually(Duration::from_secs(120), || {
        (replicas(c) == 3).then_some(())
    });
    let hpa: Value = serde_json::from_str(&c.ok(&["get", "hpa", "burn", "-o", "json"])).unwrap();
    let cur = &hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"];
    assert!(cur.as_i64().is_some_and(|u| u > 100), "{hpa}");
    let table = c.ok(&["get", "hpa", "burn", "--no-headers"]);
    let cols: Vec<&str> = table.split_whitespace().collect();
    assert!(
        cols[2] == "cpu:" && cols[3].ends_with("%/50%") && !cols[3].starts_with("<unknown>"),
        "{table}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=burn,involvedObject.kind=HorizontalPodAutoscaler",
    ]);
    assert!(
        events.contains("cpu resource utilization (percentage of request) above target"),
        "{events}"
    );

    // Idle now: all metrics below target, and down it goes after the short window.
    c.ok(&[
        "patch",
        "deployment",
        "burn",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sleep","3600"]}]"#,
    ]);
    eventually(Duration::from_secs(150), || {
        (replicas(c) == 1).then_some(())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=burn,involvedObject.kind=HorizontalPodAutoscaler",
    ]);
    assert!(events.contains("All metrics below target"), "{events}");
}
