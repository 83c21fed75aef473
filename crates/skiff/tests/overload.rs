//! Overload protection end to end: many clients flood the API with lists and watches
//! while 100 simulated nodes heartbeat, with clients that open connections and never
//! finish a TLS handshake, and oversized headers, on top; and, in a test of its own,
//! watchers that stop reading.

mod common;

use common::{Cluster, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NODES: usize = 100;
const FLOOD: Duration = Duration::from_secs(60);

async fn client_with_token(c: &Cluster, token: &str) -> Client {
    let kc = Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    cfg.auth_info = AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Client::try_from(cfg).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The value of a metric line `name{labels} value` in the server's /metrics.
fn metric(c: &Cluster, series: &str) -> u64 {
    let text = c.ok(&["get", "--raw", "/metrics"]);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Lists served and failed. kube-rs retries a 429 after its `Retry-After` by itself, so
/// refusals are counted by the server's metrics instead.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    other: AtomicU64,
}

/// One client doing what `kubectl get pods -A` does (every pod, as a Table the server
/// prints) in a loop until `until`. The body is read, not
/// parsed: the server, not this test, is to be the busy one.
async fn lister(client: Client, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let req = http::Request::get("/api/v1/pods")
            .header(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )
            .body(Vec::new())
            .unwrap();
        match client.request_text(req).await {
            Ok(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                eprintln!("list failed: {e}");
                tally.other.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// A watch of every object at `collection` (`/api/v1/pods`), its body left unparsed (the
/// test process must not be the one short of CPU).
async fn watch_all(client: &Client, collection: &str) -> Option<kube::client::Body> {
    let req = http::Request::get(format!("{collection}?watch=true&resourceVersion=0"))
        .body(Vec::new())
        .unwrap();
    let resp = client.send(req.map(kube::client::Body::from)).await.ok()?;
    (resp.status() == 200).then(|| resp.into_body())
}

/// The next piece of a body; None at its end.
async fn next_frame(body: &mut kube::client::Body) -> Option<()> {
    use http_body::Body;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx))
        .await?
        .ok()
        .map(drop)
}

/// A watcher that reads everything until `until`, watching again when the server ends it.
async fn reader(client: Client, until: Instant) {
    while Instant::now() < until {
        let Some(mut body) = watch_all(&client, "/api/v1/pods").await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_secs(1), next_frame(&mut body)).await {
                Ok(Some(())) | Err(_) => {}
                Ok(None) => break,
            }
        }
    }
}

/// A watcher of ConfigMaps whose client reads 1 KB/s (curl: kube-rs's client reads on
/// into its buffers; a socket that is not read keeps a small receive window).
struct Stalled(std::process::Child);

impl Stalled {
    fn start(c: &Cluster, token: &str) -> Stalled {
        let url = format!(
            "https://127.0.0.1:{}/api/v1/configmaps?watch=true&resourceVersion=0",
            c.port
        );
        let child = std::process::Command::new("curl")
            .args([
                "-sk",
                "-N",
                "--http1.1",
                "--limit-rate",
                "1k",
                "-o",
                "/dev/null",
            ])
            .args(["-H", &format!("Authorization: Bearer {token}"), &url])
            .spawn()
            .unwrap();
        Stalled(child)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connections that never send a TLS ClientHello.
fn silent_connections(port: u16, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect()
}

fn all_ready_since(c: &Cluster, since: &str) -> Result<(), String> {
    let nodes: Value = serde_json::from_str(&c.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let items = nodes["items"].as_array().unwrap();
    if items.len() != NODES {
        return Err(format!("{} nodes", items.len()));
    }
    for n in items {
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        let changed = ready["lastTransitionTime"].as_str().unwrap();
        if ready["status"] != "True" || changed >= since {
            return Err(format!("{}: {ready}", n["metadata"]["name"]));
        }
    }
    Ok(())
}

/// The two tests each load the machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_are_refused_while_nodes_stay_ready() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        &NODES.to_string(),
        "--max-requests-inflight",
        "8",
        "--max-mutating-requests-inflight",
        "4",
    ]);
    let pid = c.child.as_ref().unwrap().id();
    eventually(Duration::from_secs(120), || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        let ready = out.lines().filter(|l| l.contains(" Ready ")).count();
        (ready == NODES).then_some(())
    });
    c.ok(&[
        "create",
        "deployment",
        "load",
        "--image=busybox",
        "--replicas=500",
    ]);
    eventually(Duration::from_secs(120), || {
        let out = c.ok(&[
            "get",
            "deployment",
            "load",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        (out == "500").then_some(())
    });
    c.ok(&["create", "serviceaccount", "flood"]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "flood",
        "--clusterrole=view",
        "--serviceaccount=default:flood",
    ]);
    let token = c.ok(&["create", "token", "flood", "--duration=1h"]);
    let token = token.trim();

    // Before the flood the same user lists freely.
    let alone = Arc::new(Tally::default());
    let quick = Instant::now() + Duration::from_secs(2);
    lister(client_with_token(&c, token).await, quick, alone.clone()).await;
    assert!(alone.ok.load(Ordering::Relaxed) > 0);
    let dropped = r#"apiserver_dropped_requests_total{priority_level="workload"}"#;
    assert_eq!(metric(&c, dropped), 0);

    // Stalled TLS handshakes: the server holds them open at first (and serves on
    // meanwhile), and not for long.
    let fds_before = open_fds(pid);
    let silent = silent_connections(c.port, 300);
    std::thread::sleep(Duration::from_secs(1));
    let fds_held = open_fds(pid);
    assert_eq!(
        closed_by_server(&silent),
        0,
        "silent connections closed at once"
    );
    c.ok(&["get", "--raw", "/readyz"]);

    // Request headers: a quarter of a MiB is served, two MiB are refused.
    let admin = c.kube_client().await;
    assert_eq!(with_header(&admin, 256 << 10).await, 200);
    assert_eq!(with_header(&admin, 2 << 20).await, 431);
    c.ok(&["get", "--raw", "/readyz"]);

    let baseline = rss_kib(pid);
    let since = utc_now();
    let until = Instant::now() + FLOOD;
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for i in 0..72 {
        let client = client_with_token(&c, token).await;
        let t = match i % 3 {
            0 | 1 => tokio::spawn(lister(client, until, tally.clone())),
            _ => tokio::spawn(reader(client, until)),
        };
        tasks.push(t);
    }

    // The server's RSS each second of the flood.
    let mut rss = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_kib(pid));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let (ok, too_many, other) = (
        tally.ok.load(Ordering::Relaxed),
        metric(&c, dropped),
        tally.other.load(Ordering::Relaxed),
    );
    // Flat: the second half of the flood holds no more than the first (past 10 s of
    // warm-up) did, give or take a fifth.
    let half = rss.len() / 2;
    let first = rss[10.min(half)..half]
        .iter()
        .max()
        .copied()
        .unwrap_or(baseline);
    let second = rss[half..].iter().max().copied().unwrap_or(baseline);
    eprintln!(
        "flood: {ok} lists served, {too_many} refused with 429, {other} other errors; \
         server RSS {} MiB before, at most {} MiB in the first half, {} MiB in the second; \
         descriptors {fds_before} → {fds_held} with 300 silent connections",
        baseline / 1024,
        first / 1024,
        second / 1024
    );
    assert!(ok > 0 && too_many > 0, "served {ok}, refused {too_many}");
    assert_eq!(other, 0);
    assert_eq!(
        metric(
            &c,
            r#"apiserver_dropped_requests_total{priority_level="system"}"#
        ),
        0,
        "nodes or controllers were refused"
    );
    if let Err(e) = all_ready_since(&c, &since) {
        panic!("a node left Ready during the flood: {e}");
    }
    assert!(
        second <= first + first / 5,
        "server RSS kept growing: {first} KiB, then {second} KiB"
    );
    // The silent connections were dropped by the handshake timeout long ago.
    assert_eq!(closed_by_server(&silent), 300);
}

/// How many of these connections the server has closed (a read sees the end).
fn closed_by_server(conns: &[std::net::TcpStream]) -> usize {
    use std::io::Read;
    conns
        .iter()
        .filter(|s| {
            let mut s: &std::net::TcpStream = s;
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            matches!(s.read(&mut [0u8; 1]), Ok(0))
        })
        .count()
}

/// Now, as the RFC 3339 seconds conditions are stamped with (same machine, same clock).
fn utc_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The status of a GET carrying one header of `bytes` bytes.
async fn with_header(client: &Client, bytes: usize) -> u16 {
    let req = http::Request::get("/api/v1/namespaces/default")
        .header("x-padding", "a".repeat(bytes))
        .body(Vec::new())
        .unwrap();
    match client.send(req.map(kube::client::Body::from)).await {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => panic!("header of {bytes} bytes: {e}"),
    }
}

/// A watcher whose client stops taking events is cut off (and its memory freed), while
/// one that reads keeps its watch through the same changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_are_cut_off() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start();
    let admin = c.kube_client().await;
    c.ok(&["create", "serviceaccount", "watcher"]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "watcher",
        "--clusterrole=view",
        "--serviceaccount=default:watcher",
    ]);
    let token = c.ok(&["create", "token", "watcher"]);
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let big = |round: u32| format!("{round}{}", "x".repeat(200_000));
    let cm = serde_json::json!({"metadata": {"name": "big"}, "data": {"v": big(0)}});
    configmaps
        .create(&Default::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    let reading = tokio::spawn(read_configmap_events(admin.clone()));
    let stalled = Stalled::start(&c, token.trim());
    let series = r#"apiserver_terminated_watchers_total{resource="configmaps"}"#;
    // 200 changes of 200 KB: 40 MB each watcher is sent, far beyond the socket buffers
    // of a client reading 1 KB/s.
    for round in 1..=200 {
        let patch = serde_json::json!({"data": {"v": big(round)}});
        configmaps
            .patch("big", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        if round == 20 {
            assert_eq!(metric(&c, series), 0, "cut off before it fell behind");
        }
    }
    eventually(Duration::from_secs(30), || {
        (metric(&c, series) == 1).then_some(())
    });
    drop(stalled);
    // The reading watcher saw the last change on the watch it started with.
    assert_eq!(reading.await.unwrap(), 1);
}

/// Reads a watch of ConfigMap `big` until it shows round 200; the watches it took.
async fn read_configmap_events(client: Client) -> usize {
    use futures::StreamExt;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let params = kube::api::WatchParams::default().fields("metadata.name=big");
    let mut watches = 0;
    loop {
        let mut stream = api.watch(&params, "0").await.unwrap().boxed();
        watches += 1;
        while let Some(ev) = stream.next().await {
            if let Ok(kube::api::WatchEvent::Added(cm) | kube::api::WatchEvent::Modified(cm)) = ev
                && cm.data.unwrap_or_default()["v"].starts_with("200x")
            {
                return watches;
            }
        }
    }
}
