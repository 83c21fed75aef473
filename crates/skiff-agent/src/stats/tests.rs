use super::host::{Host, Memory};
use super::prom;
use super::summary::{self, Rates};
use crate::criconv::{LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::runtime::Usage;
use chrono::{TimeZone, Utc};
use skiff_cri::cri;

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

fn sandbox(id: &str, uid: Option<&str>, ready: bool) -> cri::PodSandbox {
    cri::PodSandbox {
        id: id.into(),
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            namespace: "d".into(),
            uid: uid.unwrap_or("").into(),
            attempt: 0,
        }),
        state: if ready {
            cri::PodSandboxState::SandboxReady
        } else {
            cri::PodSandboxState::SandboxNotready
        } as i32,
        created_at: T0,
        labels: uid
            .map(|u| [(LABEL_POD_UID.to_string(), u.to_string())].into())
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn container(id: &str, sandbox: &str, name: &str, running: bool) -> cri::Container {
    cri::Container {
        id: id.into(),
        pod_sandbox_id: sandbox.into(),
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        state: if running {
            cri::ContainerState::ContainerRunning
        } else {
            cri::ContainerState::ContainerExited
        } as i32,
        created_at: T0 + SEC,
        labels: [(LABEL_CONTAINER_NAME.to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

fn stats(id: &str, at: i64, cpu_ns: u64, working_set: u64) -> cri::ContainerStats {
    let v = |value| Some(cri::UInt64Value { value });
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: id.into(),
            ..Default::default()
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: at,
            usage_core_nano_seconds: v(cpu_ns),
            usage_nano_cores: None,
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: at,
            working_set_bytes: v(working_set),
            usage_bytes: v(working_set + 100),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn usage(at: i64, cpu_a: u64, cpu_b: u64) -> Usage {
    Usage {
        sandboxes: vec![
            sandbox("sb1", Some("u1"), true),
            sandbox("old", Some("u1"), false),
            sandbox("foreign", None, true),
        ],
        containers: vec![
            container("a", "sb1", "app", true),
            container("b", "sb1", "sidecar", true),
            container("x", "sb1", "init", false),
        ],
        container_stats: vec![stats("a", at, cpu_a, 1000), stats("b", at, cpu_b, 500)],
        sandbox_stats: Vec::new(),
    }
}

fn host() -> Host {
    Host {
        boot_time: Some(1_600_000_000),
        cpu_ns: Some(10 * SEC as u64),
        memory: Some(Memory {
            total: 4000,
            free: 1000,
            inactive_file: 500,
            anon: 1200,
        }),
        ..Default::default()
    }
}

#[test]
fn ready_pods_and_running_containers_with_rates_on_the_second_reading() {
    let mut rates = Rates::default();
    let now = Utc.timestamp_nanos(T0 + 10 * SEC);
    let first = summary::build(
        "n1",
        &host(),
        &usage(T0 + 10 * SEC, SEC as u64, 0),
        &mut rates,
        now,
    );
    assert_eq!(first.pods.len(), 1, "one ready pod sandbox of ours");
    let p = &first.pods[0];
    assert_eq!(
        (
            p.pod_ref.namespace.as_str(),
            p.pod_ref.name.as_str(),
            p.pod_ref.uid.as_str()
        ),
        ("d", "web", "u1")
    );
    let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "sidecar"]);
    assert_eq!(
        p.containers[0].cpu.as_ref().unwrap().usage_nano_cores,
        None,
        "no rate at the first reading"
    );
    assert_eq!(
        p.memory.as_ref().unwrap().working_set_bytes,
        Some(1500),
        "the containers' sum"
    );
    assert_eq!(p.start_time.as_deref(), Some("2023-11-14T22:13:20Z"));
    let m = first.node.memory.as_ref().unwrap();
    assert_eq!(
        (m.usage_bytes, m.working_set_bytes, m.available_bytes),
        (Some(3000), Some(2500), Some(1500))
    );

    // Two seconds later: app used one more core-second (half a core), sidecar a quarter.
    let later = usage(T0 + 12 * SEC, 2 * SEC as u64, SEC as u64 / 2);
    let second = summary::build("n1", &host(), &later, &mut rates, now);
    let c = &second.pods[0].containers;
    assert_eq!(
        c[0].cpu.as_ref().unwrap().usage_nano_cores,
        Some(500_000_000)
    );
    assert_eq!(
        c[1].cpu.as_ref().unwrap().usage_nano_cores,
        Some(250_000_000)
    );
    let pod_cpu = second.pods[0].cpu.as_ref().unwrap();
    assert_eq!(pod_cpu.usage_nano_cores, Some(750_000_000));
    assert_eq!(pod_cpu.usage_core_nano_seconds, Some(5 * SEC as u64 / 2));
}

#[test]
fn resource_metrics_as_kubelet_names_them() {
    let mut rates = Rates::default();
    let now = Utc.timestamp_nanos(T0 + 10 * SEC);
    let s = summary::build(
        "n1",
        &host(),
        &usage(T0 + 10 * SEC, 3 * SEC as u64 / 2, 0),
        &mut rates,
        now,
    );
    let text = prom::resource_metrics(&s);
    for line in [
        "# TYPE container_cpu_usage_seconds_total counter",
        "container_cpu_usage_seconds_total{container=\"app\",namespace=\"d\",pod=\"web\"} 1.5 1700000010000",
        "container_memory_working_set_bytes{container=\"sidecar\",namespace=\"d\",pod=\"web\"} 500 1700000010000",
        "container_start_time_seconds{container=\"app\",namespace=\"d\",pod=\"web\"} 1700000001",
        "node_cpu_usage_seconds_total 10 1700000010000",
        "node_memory_working_set_bytes 2500 1700000010000",
        "pod_cpu_usage_seconds_total{namespace=\"d\",pod=\"web\"} 1.5 1700000010000",
        "pod_memory_working_set_bytes{namespace=\"d\",pod=\"web\"} 1500 1700000010000",
        "resource_scrape_error 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn the_summary_serializes_as_kubelets() {
    let mut rates = Rates::default();
    let now = Utc.timestamp_nanos(T0 + 10 * SEC);
    let s = summary::build(
        "n1",
        &host(),
        &usage(T0 + 10 * SEC, SEC as u64, 0),
        &mut rates,
        now,
    );
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["node"]["nodeName"], "n1");
    assert_eq!(v["node"]["memory"]["workingSetBytes"], 2500);
    assert_eq!(v["pods"][0]["podRef"]["uid"], "u1");
    assert_eq!(
        v["pods"][0]["containers"][0]["cpu"]["usageCoreNanoSeconds"],
        1_000_000_000u64
    );
    assert_eq!(
        v["pods"][0]["containers"][0]["cpu"]["time"],
        "2023-11-14T22:13:30Z"
    );
    let only = summary::only_cpu_and_memory(s);
    assert!(only.node.fs.is_none() && only.node.network.is_none());
}
