//! `skiff bench api`: measures the API server as users meet it (HTTPS, real client) and
//! the storage engine underneath with the same write pattern, in one run, and prints the
//! figures side by side. Targets are printed beside the numbers, never asserted.

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod apicluster;
mod authz;
mod cluster;
mod crdcost;
mod dns;
mod extensions;
mod failover;
mod footprint;
mod ingress;
mod metrics;
mod netlab;
mod netpol;
mod optioncost;
mod pods;
mod proxy;
mod soak;
mod stats;
mod webhookserver;
mod workloads;
pub use crdcost::crd_cost;
pub use dns::{DnsBenchOptions, dns};
pub use failover::{FailoverBenchOptions, failover};
pub use ingress::{IngressBenchOptions, ingress};
pub use metrics::{MetricsBenchOptions, metrics};
pub use netpol::{NetpolBenchOptions, netpol};
pub use pods::{PodsBenchOptions, pods};
pub use proxy::{ProxyBenchOptions, proxy};
pub use soak::{SoakBenchOptions, soak};
pub use stats::{StatsBenchOptions, stats};
pub use workloads::{WorkloadsBenchOptions, workloads};

#[derive(Debug, Clone)]
pub struct ApiBenchOptions {
    /// The skiff binary to start as the server under test.
    pub skiff: PathBuf,
    pub creates: usize,
    pub concurrency: usize,
    /// HTTP/2 connections the timed creates are spread over.
    pub connections: usize,
    pub watchers: usize,
    /// Pods held when measuring memory under load.
    pub hold_pods: usize,
    /// Store the server on a real etcd member started for the run (else SQLite); the
    /// raw column is then etcd puts from this process through `etcd-client`.
    pub etcd: bool,
    /// Above 1 (with `etcd`): creates only, through the first server of an embedded
    /// etcd cluster of one and then of this many members.
    pub etcd_members: usize,
}

/// The engine under the server, and the same engine for the raw column.
async fn bench_datastore(
    etcd: bool,
) -> anyhow::Result<(
    Vec<String>,
    Arc<dyn skiff_store::Store>,
    Box<dyn std::any::Any>,
)> {
    if !etcd {
        let dir = tempfile::tempdir()?;
        let store = skiff_store::SqliteStore::open(&dir.path().join("raw.db"))?;
        return Ok((Vec::new(), Arc::new(store), Box::new(dir)));
    }
    let member = skiff_store::testing::Etcd::start(tempfile::tempdir()?.keep());
    let cfg = skiff_store::EtcdConfig {
        endpoints: vec![member.endpoint()],
        ..Default::default()
    };
    let store = skiff_store::EtcdStore::connect(&cfg).await?;
    let args = vec!["--datastore-endpoint".to_string(), member.endpoint()];
    Ok((args, Arc::new(store), Box::new(member)))
}

struct ServerProc {
    child: Child,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    port: u16,
}

/// SIGTERM to a process we started, then wait for it (it stops what it started).
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    stat_fields(&format!("/proc/{pid}/stat")).map_or(0.0, |f| stat_cpu_seconds(&f))
}

/// The fields of a `/proc/…/stat` file after the parenthesised command name (the
/// state first).
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime (the 12th and 13th fields after the name), in USER_HZ ticks: 100 a
/// second in Linux's ABI.
fn stat_cpu_seconds(f: &[String]) -> f64 {
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
        .unwrap_or(0)
}

async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn start_server_with(skiff: &Path, extra: &[&str]) -> anyhow::Result<(ServerProc, Duration)> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    let t0 = Instant::now();
    let child = Command::new(skiff)
        .arg("server")
        .args(extra)
        .args([
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", skiff.display()))?;
    let kubeconfig = data.join("kubeconfig.yaml");
    let proc_ = ServerProc {
        child,
        _dir: dir,
        kubeconfig: kubeconfig.clone(),
        port,
    };
    loop {
        if kubeconfig.exists()
            && let Ok(c) = client_for(&kubeconfig).await
            && let Ok(body) = c
                .request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await
            && body.trim() == "ok"
        {
            return Ok((proc_, t0.elapsed()));
        }
        if t0.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("server did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(pod_json(name)).expect("static pod")
}

fn pod_json(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.local/bench:1", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Throughput {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl Throughput {
    /// From every request's latency and the run's wall time.
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        Throughput {
            per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
        }
    }
}

/// Creates through the real HTTPS client stack, sending prepared JSON and reading the
/// reply as bytes: typed (de)serialization in the client would otherwise cost more CPU
/// than the server's work on this 2-core machine and hide what the server can do.
async fn create_pods(
    api: &Api<Pod>,
    prefix: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = api.clone().into_client();
        let next = next.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, kube::Error>(lat);
                }
                let body =
                    serde_json::to_vec(&pod_json(&format!("{prefix}-{i}"))).expect("serializable");
                let req = http::Request::post("/api/v1/namespaces/default/pods")
                    .header("Content-Type", "application/json")
                    .body(kube::client::Body::from(body))
                    .expect("valid request");
                let t = Instant::now();
                let resp = client.send(req).await?;
                let status = resp.status();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                if status != http::StatusCode::CREATED {
                    return Err(kube::Error::Service(
                        format!("create answered {status}").into(),
                    ));
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Throughput::of(all, t0.elapsed()))
}

/// HTTP/2 connections to the server authenticated as the kubeconfig's user, the way
/// client-go talks to an API server (one TLS connection multiplexing many requests).
async fn h2_connections(
    kubeconfig: &Path,
    port: u16,
    n: usize,
) -> anyhow::Result<Vec<hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>>>
{
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    h2_connections_with(&cfg, port, n).await
}

/// As `h2_connections`, with `cfg`'s TLS settings (its client certificate, if any).
async fn h2_connections_with(
    cfg: &kube::Config,
    port: u16,
    n: usize,
) -> anyhow::Result<Vec<hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>>>
{
    use kube::client::ConfigExt;
    let mut tls = cfg.rustls_client_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let stream = connector.connect(name.clone(), tcp).await?;
        anyhow::ensure!(
            stream.get_ref().1.alpn_protocol() == Some(b"h2"),
            "server did not negotiate HTTP/2"
        );
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await?;
        tokio::spawn(conn);
        out.push(send);
    }
    Ok(out)
}

/// Creates over HTTP/2, `concurrency` requests in flight spread over `conns`. The body
/// is formatted from a template: the load generator shares the machine's two cores with
/// the server, so its own CPU per request is kept small.
async fn create_pods_h2(
    conns: &[hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>],
    prefix: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let prefix = prefix.to_string();
    requests_h2(conns, total, concurrency, http::StatusCode::CREATED, move |i| {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{prefix}-{i}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"c","image":"registry.local/bench:1","resources":{{"requests":{{"cpu":"10m","memory":"16Mi"}}}}}}]}}}}"#
        );
        http::Request::post("https://127.0.0.1/api/v1/namespaces/default/pods")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
    })
    .await
}

/// `total` requests made by `make`, `concurrency` in flight, each answered `want`.
async fn requests_h2<F>(
    conns: &[hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>],
    total: usize,
    concurrency: usize,
    want: http::StatusCode,
    make: F,
) -> anyhow::Result<Throughput>
where
    F: Fn(usize) -> http::Result<http::Request<http_body_util::Full<bytes::Bytes>>>
        + Send
        + Sync
        + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let mut send = conns[c % conns.len()].clone();
        let next = next.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let req = make(i)?;
                let t = Instant::now();
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let status = resp.status();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await?;
                anyhow::ensure!(status == want, "request answered {status}, not {want}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Throughput::of(all, t0.elapsed()))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub use extensions::{ExtensionsBenchOptions, extensions};

pub async fn api(opts: ApiBenchOptions) -> anyhow::Result<()> {
    if opts.etcd_members > 1 {
        anyhow::ensure!(opts.etcd, "--etcd-members needs --datastore etcd");
        return apicluster::run(&opts).await;
    }
    println!(
        "skiff bench api: {} creates, {} concurrent requests over {} HTTP/2 connection(s), {} watchers, memory at {} pods, datastore {}",
        opts.creates,
        opts.concurrency,
        opts.connections,
        opts.watchers,
        opts.hold_pods,
        if opts.etcd { "etcd" } else { "sqlite" }
    );
    let (datastore_args, raw_store, _keep) = bench_datastore(opts.etcd).await?;
    // Controllers off: these figures are the API server's own work per request, as
    // Kubernetes measures its apiserver (a scheduler would add writes of its own).
    let mut args = vec!["--disable", "all"];
    args.extend(datastore_args.iter().map(String::as_str));
    let (server, ready) = start_server_with(&opts.skiff, &args).await?;
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);
    let client = client_for(&server.kubeconfig).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Warm up connections and caches.
    let conns = h2_connections(&server.kubeconfig, server.port, opts.connections.max(1)).await?;
    create_pods_h2(&conns, "warm", opts.concurrency * 2, opts.concurrency).await?;
    create_pods(&pods, "warm1", opts.concurrency * 2, opts.concurrency).await?;
    let me = std::process::id();
    let (cpu0, client0) = (cpu_seconds(pid), cpu_seconds(me));
    let api_tp = create_pods_h2(&conns, "bench", opts.creates, opts.concurrency).await?;
    let server_cpu_per_create = (cpu_seconds(pid) - cpu0) / opts.creates as f64;
    let client_cpu_per_create = (cpu_seconds(me) - client0) / opts.creates as f64;
    // The transport's own floor: a request the server answers from memory (/version)
    // over the same connections, TLS and HTTP/2 framing with no API work behind it.
    let (cpu0, client0) = (cpu_seconds(pid), cpu_seconds(me));
    let floor_tp = requests_h2(
        &conns,
        opts.creates,
        opts.concurrency,
        http::StatusCode::OK,
        |_| {
            http::Request::get("https://127.0.0.1/version")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
        },
    )
    .await?;
    let floor_server_cpu = (cpu_seconds(pid) - cpu0) / opts.creates as f64;
    let floor_client_cpu = (cpu_seconds(me) - client0) / opts.creates as f64;
    // The same creates through kube-rs, which speaks HTTP/1.1 over a connection pool.
    let (cpu0, client0) = (cpu_seconds(pid), cpu_seconds(me));
    let h1_tp = create_pods(&pods, "bench1", opts.creates, opts.concurrency).await?;
    let h1_server_cpu = (cpu_seconds(pid) - cpu0) / opts.creates as f64;
    let h1_client_cpu = (cpu_seconds(me) - client0) / opts.creates as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;

    // The same write pattern straight against the engine.
    let sample = serde_json::to_vec(&pod("raw-sample"))?.len() + 400;
    let raw = skiff_store::bench_raw(raw_store, opts.concurrency, opts.creates, sample).await;

    // List fan-out: concurrent full lists, from the cache (rv=0) and consistent.
    let lists = 20usize;
    let t0 = Instant::now();
    let mut ts = Vec::new();
    for i in 0..lists {
        let pods = pods.clone();
        ts.push(tokio::spawn(async move {
            let lp = if i % 2 == 0 {
                ListParams::default().match_any()
            } else {
                ListParams::default()
            };
            pods.list(&lp).await.map(|l| l.items.len())
        }));
    }
    let mut listed = 0;
    for t in ts {
        listed += t.await??;
    }
    let list_secs = t0.elapsed().as_secs_f64();

    // Watch fan-out: W watchers each see M new pods.
    let m = 200usize;
    let rv = pods
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watchers = Vec::new();
    for _ in 0..opts.watchers {
        let pods = pods.clone();
        let rv = rv.clone();
        watchers.push(tokio::spawn(async move {
            let mut s = pods
                .watch(&WatchParams::default().timeout(120), &rv)
                .await?
                .boxed();
            let mut n = 0;
            while n < m {
                match s.next().await {
                    Some(Ok(WatchEvent::Added(_))) => n += 1,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            Ok::<_, kube::Error>(n)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    create_pods(&pods, "watched", m, opts.concurrency).await?;
    let mut delivered = 0;
    for w in watchers {
        delivered += w.await??;
    }
    let watch_secs = t0.elapsed().as_secs_f64();

    // Memory holding many pods.
    let have = 2 * opts.creates + opts.concurrency * 4 + m;
    if opts.hold_pods > have {
        create_pods(&pods, "hold", opts.hold_pods - have, opts.concurrency).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_rss = rss_kib(pid);
    let held = opts.hold_pods.max(have);

    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>10}",
        "measure", "skiff API", "raw engine", "ratio"
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>9.0}%",
        "creates/s (HTTP/2, as client-go)",
        api_tp.per_sec,
        raw.ops_per_sec,
        100.0 * api_tp.per_sec / raw.ops_per_sec.max(1e-9)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "create latency p50",
        ms(api_tp.p50),
        ms(raw.p50)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "create latency p99",
        ms(api_tp.p99),
        ms(raw.p99)
    );
    let cpu_rows = |label: &str, server: f64, client: f64| {
        println!(
            "{:<44} {:>11.0} us   (= {:.0} creates/s per server core)",
            format!("server CPU per create{label}"),
            server * 1e6,
            1.0 / server.max(1e-9)
        );
        println!(
            "{:<44} {:>11.0} us   (the load generator, in this process)",
            format!("client CPU per create{label}"),
            client * 1e6
        );
        println!(
            "{:<44} {:>14.0}   ({cores} cores / (server + client CPU per create))",
            format!("CPU-bound ceiling{label}"),
            cores / (server + client).max(1e-9)
        );
    };
    cpu_rows("", server_cpu_per_create, client_cpu_per_create);
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>9.0}%",
        "transport floor: GET /version per s",
        floor_tp.per_sec,
        raw.ops_per_sec,
        100.0 * floor_tp.per_sec / raw.ops_per_sec.max(1e-9)
    );
    cpu_rows(" (GET /version)", floor_server_cpu, floor_client_cpu);
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>9.0}%",
        "creates/s (kube-rs, HTTP/1.1 pool)",
        h1_tp.per_sec,
        raw.ops_per_sec,
        100.0 * h1_tp.per_sec / raw.ops_per_sec.max(1e-9)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "create latency p50 / p99 (HTTP/1.1)",
        ms(h1_tp.p50),
        ms(h1_tp.p99)
    );
    cpu_rows(" (HTTP/1.1)", h1_server_cpu, h1_client_cpu);
    println!();
    println!("{:<44} {:>14}", "ready to serve after start", ms(ready));
    println!(
        "{:<44} {:>11.1} MB   (target < 40 MB)",
        "server RSS idle",
        idle_rss as f64 / 1024.0
    );
    println!(
        "{:<44} {:>11.1} MB   (target < 150 MB at 30,000)",
        format!("server RSS holding {held} pods"),
        loaded_rss as f64 / 1024.0
    );
    println!(
        "{:<44} {:>14.0}   ({lists} lists, {listed} items)",
        "list fan-out: items/s",
        listed as f64 / list_secs
    );
    println!(
        "{:<44} {:>14.0}   ({} watchers x {m} events)",
        "watch fan-out: events delivered/s",
        delivered as f64 / watch_secs,
        opts.watchers
    );
    println!(
        "(server ran with its controllers disabled; ready time is to the first /readyz answer)"
    );
    println!("target: API create throughput >= 50% of the raw engine's");
    drop(server);
    authz::run(&opts).await?;
    optioncost::run(&opts).await
}

#[derive(Debug, Clone)]
pub struct SchedulerBenchOptions {
    pub skiff: PathBuf,
    pub node_counts: Vec<usize>,
    pub pods: usize,
    pub concurrency: usize,
    /// Pods held (all bound) when the server's RSS is read after the timed run.
    pub hold_pods: usize,
}

/// A simulated-node agent process joined to `server`.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

fn start_agent(skiff: &Path, server: &ServerProc, nodes: usize) -> anyhow::Result<AgentProc> {
    let data = server.kubeconfig.parent().context("data dir")?;
    let token = std::fs::read_to_string(data.join("token"))?;
    let child = Command::new(skiff)
        .args([
            "agent",
            "--simulate",
            &nodes.to_string(),
            "--server",
            &format!("https://127.0.0.1:{}", server.port),
            "--token",
            token.trim(),
            "--ca-file",
        ])
        .arg(data.join("tls/ca.crt"))
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(AgentProc(child))
}

async fn wait_nodes(client: &Client, n: usize) -> anyhow::Result<()> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let t0 = Instant::now();
    loop {
        let have = nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if have >= n {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("only {have} of {n} nodes registered");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(serde::Deserialize, Clone)]
struct BoundProbe {
    metadata: ProbeMeta,
    #[serde(default)]
    spec: ProbeSpec,
}

#[derive(serde::Deserialize, Clone, Default)]
struct ProbeMeta {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(serde::Deserialize, Clone, Default)]
struct ProbeSpec {
    #[serde(default, rename = "nodeName")]
    node_name: Option<String>,
}

/// Watches pods until `n` are bound; returns (bound instant per pod name, all-bound
/// instant). It decodes only the two fields it needs: the measuring client shares the
/// machine's two cores with the server and must not steal them.
async fn watch_bound(
    client: Client,
    prefix: &'static str,
    n: usize,
) -> anyhow::Result<(std::collections::HashMap<String, Instant>, Instant)> {
    let mut rv = Api::<Pod>::namespaced(client.clone(), "default")
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut bound = std::collections::HashMap::new();
    let t0 = Instant::now();
    while bound.len() < n {
        if t0.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("only {} of {n} pods bound after 600 s", bound.len());
        }
        let req = http::Request::get(format!(
            "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=600&resourceVersion={rv}"
        ))
        .body(Vec::new())?;
        let mut events = client.request_events::<BoundProbe>(req).await?.boxed();
        while bound.len() < n {
            let Some(ev) = events.next().await else { break };
            match ev? {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    rv = p.metadata.resource_version.clone();
                    if p.spec.node_name.is_some_and(|s| !s.is_empty())
                        && p.metadata.name.starts_with(prefix)
                    {
                        bound.entry(p.metadata.name).or_insert_with(Instant::now);
                    }
                }
                WatchEvent::Error(e) => anyhow::bail!("watch failed: {}", e.message),
                _ => {}
            }
        }
    }
    Ok((bound, Instant::now()))
}

async fn create_named(
    client: &Client,
    names: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<std::collections::HashMap<String, Instant>> {
    let queue = Arc::new(parking_queue(names));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(name) = queue.lock().ok().and_then(|mut q| q.pop()) {
                let body = serde_json::to_vec(&pod_json(&name)).expect("serializable");
                let req = http::Request::post("/api/v1/namespaces/default/pods")
                    .header("Content-Type", "application/json")
                    .body(kube::client::Body::from(body))
                    .expect("valid");
                let t = Instant::now();
                let resp = client.send(req).await?;
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                out.push((name, t));
            }
            Ok::<_, kube::Error>(out)
        }));
    }
    let mut created = std::collections::HashMap::new();
    for t in tasks {
        created.extend(t.await??);
    }
    Ok(created)
}

fn parking_queue(mut names: Vec<String>) -> std::sync::Mutex<Vec<String>> {
    names.reverse();
    std::sync::Mutex::new(names)
}

pub async fn scheduler(opts: SchedulerBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench scheduler: {} pods, node counts {:?}, {} concurrent clients",
        opts.pods, opts.node_counts, opts.concurrency
    );
    println!(
        "{:<8} {:>16} {:>16} {:>8} {:>14} {:>12}",
        "nodes", "scheduled pods/s", "direct binds/s", "ratio", "p99 to bound", "server RSS"
    );
    let held = opts.hold_pods.max(opts.pods);
    for &n in &opts.node_counts {
        // Scheduler at work.
        let (server, _) =
            start_server_with(&opts.skiff, &["--node-monitor-grace-period", "3600"]).await?;
        let _agent = start_agent(&opts.skiff, &server, n)?;
        let client = client_for(&server.kubeconfig).await?;
        wait_nodes(&client, n).await?;
        let names: Vec<String> = (0..opts.pods).map(|i| format!("s-{i}")).collect();
        let watch = tokio::spawn(watch_bound(client.clone(), "s-", opts.pods));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        let created = create_named(&client, names, opts.concurrency).await?;
        let (bound, done) = watch.await??;
        let rate = opts.pods as f64 / (done - t0).as_secs_f64();
        let mut lat: Vec<Duration> = bound
            .iter()
            .filter_map(|(name, b)| created.get(name).map(|c| b.saturating_duration_since(*c)))
            .collect();
        lat.sort();
        // Every bind is owed a Scheduled event; they are written in the background, so
        // give them a moment, then count them.
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(client.clone(), "default");
        let mut scheduled_events = 0;
        let mut events_lag = None;
        for _ in 0..100 {
            scheduled_events = events
                .list_metadata(&ListParams::default().fields("reason=Scheduled"))
                .await?
                .items
                .len();
            if scheduled_events >= opts.pods {
                events_lag = Some(done.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Memory with a realistic load: top up to `hold_pods`, all bound, then read RSS.
        let held = opts.hold_pods.max(opts.pods);
        if held > opts.pods {
            let more: Vec<String> = (opts.pods..held).map(|i| format!("h-{i}")).collect();
            let watch = tokio::spawn(watch_bound(client.clone(), "h-", more.len()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            create_named(&client, more, opts.concurrency).await?;
            watch.await??;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_kib(server.child.id()) as f64 / 1024.0;
        let footprint = footprint::report(&client, rss).await?;
        drop(_agent);
        drop(server);

        // Ceiling: the same bindings with no decisions, issued in the server by a binder
        // that uses the scheduler's own transport and identity, timed the same way.
        let (server, _) = start_server_with(
            &opts.skiff,
            &[
                "--disable",
                "scheduler",
                "--bench-direct-binder",
                "--node-monitor-grace-period",
                "3600",
            ],
        )
        .await?;
        let _agent = start_agent(&opts.skiff, &server, n)?;
        let client = client_for(&server.kubeconfig).await?;
        wait_nodes(&client, n).await?;
        let names: Vec<String> = (0..opts.pods).map(|i| format!("d-{i}")).collect();
        let watch = tokio::spawn(watch_bound(client.clone(), "d-", opts.pods));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        create_named(&client, names, opts.concurrency).await?;
        let (_, done) = watch.await??;
        let direct = opts.pods as f64 / (done - t0).as_secs_f64();
        println!(
            "{:<8} {:>16.0} {:>16.0} {:>7.0}% {:>14} {:>9.1} MB",
            n,
            rate,
            direct,
            100.0 * rate / direct,
            ms(percentile(&lat, 0.99)),
            rss
        );
        println!(
            "         ({scheduled_events} Scheduled events for {} pods, all written {} after the last bind)",
            opts.pods,
            events_lag.map_or("not yet".to_string(), ms)
        );
        for line in footprint {
            println!("         {line}");
        }
    }
    println!("(server RSS read holding {held} bound pods, after the timed run)");
    println!("targets: >= 1,000 pods/s at 5,000 nodes; >= 70% of the direct-binding ceiling");
    Ok(())
}
