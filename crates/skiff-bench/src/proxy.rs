//! `skiff bench proxy`: the service proxy on a real node (its own network namespace,
//! the real server and agent binaries, busybox httpd backends on containerd), measured
//! as users meet it:
//!
//! - programming latency: a Service created → the first response through its ClusterIP,
//!   with 1, 1,000 and 10,000 Services already there, split at the moment its
//!   EndpointSlice (with a ready endpoint) is seen by a watch;
//! - per-packet cost: HTTP/1.0 requests on fresh connections to a ClusterIP against the
//!   same pod straight at its IP, from the node and from another pod;
//! - the agent's RSS (its DNS and proxy included) with no Services of ours and with all
//!   of them programmed.
//!
//! Figures are printed side by side with the goals; nothing is asserted.

use super::netlab::{self, BACKENDS, HTTPD_IMAGE, Lab, LabInfo, NAMESPACE, sock};
use super::{client_for, ms, percentile, rss_kib};
use anyhow::{Context, anyhow, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct ProxyBenchOptions {
    /// The skiff binary run as server and agent.
    pub skiff: PathBuf,
    /// Numbers of Services already there when the programming latency is sampled.
    pub services: Vec<usize>,
    /// Services created and timed at each size.
    pub samples: usize,
    /// Requests per path for the per-packet cost (at the largest size).
    pub requests: usize,
    /// Service creates in flight while the background Services are made.
    pub concurrency: usize,
}

/// How long one sample may take to answer before it counts as a timeout.
const PROBE_DEADLINE: Duration = Duration::from_secs(30);
/// A connection attempt is given up after this (an address with no rule behind it
/// goes to the bridge, where nothing answers ARP).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(150);
/// Attempts in flight at most while polling (one starts every millisecond).
const MAX_IN_FLIGHT: usize = 200;
const GOAL_P99: Duration = Duration::from_millis(100);

pub async fn proxy(opts: ProxyBenchOptions) -> anyhow::Result<()> {
    netlab::preflight(&[])?;
    let mut sizes = opts.services.clone();
    sizes.sort_unstable();
    sizes.dedup();
    ensure!(
        sizes.first().is_some_and(|n| *n > 0),
        "--services needs sizes of at least 1"
    );
    ensure!(opts.samples > 0, "--samples must be at least 1");
    println!(
        "skiff bench proxy: Service sizes {sizes:?}, {} samples each, {} requests per path, {BACKENDS} busybox httpd backends",
        opts.samples, opts.requests
    );
    println!("{}", netlab::load_note());
    // Registered before anything is made: from here a Ctrl-C only ends the run below,
    // and the lab is taken down in order.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut lab = Lab::create(&opts.skiff)?;
    let result = tokio::select! {
        r = run(&mut lab, &opts, &sizes) => r,
        _ = sigint.recv() => Err(anyhow!("interrupted")),
    };
    match result {
        Ok(report) => {
            report.print();
            eprintln!("taking the node down");
            drop(lab);
            Ok(())
        }
        Err(e) => {
            lab.print_log_tails();
            eprintln!("taking the node down");
            drop(lab);
            Err(e)
        }
    }
}

async fn run(lab: &mut Lab, opts: &ProxyBenchOptions, sizes: &[usize]) -> anyhow::Result<Report> {
    eprintln!(
        "node namespace {}: server and agent starting (data in {})",
        lab.node_ns(),
        lab.dir().display()
    );
    lab.start_agent().await?;
    let info = lab.info()?;
    let (opts, sizes) = (opts.clone(), sizes.to_vec());
    let mut report =
        netlab::in_netns(info.netns_path(), move || measure(info, opts, sizes)).await?;
    report.problems = lab.log_problems("agent.log");
    Ok(report)
}

struct Backend {
    ip: Ipv4Addr,
    uid: String,
}

struct Sample {
    /// Create request sent → first response through the ClusterIP.
    total: Duration,
    /// Create request sent → the API server's answer.
    created: Duration,
    /// Create request sent → the EndpointSlice with a ready endpoint seen by a watch.
    slice: Option<Duration>,
}

struct SizeResult {
    n: usize,
    samples: Vec<Sample>,
    timeouts: usize,
    /// Creating the background Services and seeing them all answer.
    setup: Duration,
    created: usize,
    rss_kib: u64,
    /// The agent's incremental nft transactions during the samples (ms, from its log).
    nft_tx_ms: Vec<f64>,
}

pub(crate) struct PathStats {
    pub(crate) lat: Vec<Duration>,
    pub(crate) failures: usize,
}

struct PerPacket {
    client: String,
    pod: SocketAddr,
    vip: SocketAddr,
    stats: [PathStats; 2],
}

struct Report {
    sizes: Vec<SizeResult>,
    rss_base_kib: u64,
    rss_full_kib: u64,
    per_packet: Vec<PerPacket>,
    notes: Vec<String>,
    /// The agent's warnings and errors over the run, by message.
    problems: Vec<String>,
}

async fn measure(
    info: LabInfo,
    opts: ProxyBenchOptions,
    sizes: Vec<usize>,
) -> anyhow::Result<Report> {
    let client = client_for(&info.kubeconfig).await?;
    let t0 = Instant::now();
    let gateway = netlab::wait_node_ready(&client).await?;
    eprintln!(
        "node Ready after {:.1} s (pod gateway {gateway}); starting {BACKENDS} backends",
        t0.elapsed().as_secs_f64()
    );
    check_agent_pid(info.agent_pid)?;
    let backends = start_backends(&client).await?;
    let direct = sock(backends[0].ip, 8080);
    ensure!(
        first_response(direct, Duration::from_secs(10))
            .await
            .is_some(),
        "backend {direct} does not answer"
    );
    // Settled: the backends run, no Service of ours exists yet.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_base_kib = rss_kib(info.agent_pid);
    let log = info.dir.join("agent.log");

    let mut ips: Vec<Ipv4Addr> = Vec::new();
    let mut results = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let created = n.saturating_sub(ips.len());
        if created > 0 {
            eprintln!("creating Services {}..{n}", ips.len());
            let more = netlab::create_services(&client, ips.len()..n, opts.concurrency).await?;
            ips.extend(more);
            eprintln!(
                "  {created} created in {:.1} s; waiting until they answer",
                t.elapsed().as_secs_f64()
            );
        }
        // All programmed: the last one answers (the proxy applies changes in order),
        // and a few others picked at random do too.
        let mut check: Vec<usize> = (0..ips.len()).collect();
        netlab::shuffle(&mut check, n as u64 + 7);
        check.truncate(9);
        check.push(ips.len() - 1);
        for i in check.into_iter().rev() {
            first_response(sock(ips[i], 80), Duration::from_secs(600))
                .await
                .with_context(|| format!("Service svc-{i} ({}) never answered", ips[i]))?;
        }
        let setup = t.elapsed();
        eprintln!(
            "  {n} Services answering after {:.1} s; sampling {} creates",
            setup.as_secs_f64(),
            opts.samples
        );
        let log_from = file_len(&log);
        let mut r = SizeResult {
            n,
            samples: Vec::new(),
            timeouts: 0,
            setup,
            created,
            rss_kib: 0,
            nft_tx_ms: Vec::new(),
        };
        for s in 0..opts.samples {
            let name = format!("probe-{n}-{s}");
            match probe(&client, &name, s % BACKENDS + 1).await? {
                Some(sample) => r.samples.push(sample),
                None => r.timeouts += 1,
            }
        }
        r.nft_tx_ms = nft_syncs(&log, log_from);
        r.rss_kib = rss_kib(info.agent_pid);
        results.push(r);
    }

    // Per-packet cost at the largest size: svc-0 selects backend 0 alone.
    let vip = sock(ips[0], 80);
    let n = opts.requests;
    eprintln!("per-packet cost: {n} requests to each of {direct} and {vip}, from the node");
    let node = blocking_in(info.netns_path(), move || compare([direct, vip], n)).await?;
    let mut per_packet = vec![PerPacket {
        client: "node netns".into(),
        pod: direct,
        vip,
        stats: node,
    }];
    let mut notes = Vec::new();
    match pod_pid(&backends[1].uid) {
        Some(pid) => {
            eprintln!("the same from backend 1's network namespace (pid {pid})");
            let from_pod = blocking_in(PathBuf::from(format!("/proc/{pid}/ns/net")), move || {
                compare([direct, vip], n)
            })
            .await?;
            per_packet.push(PerPacket {
                client: format!("pod {}", backends[1].ip),
                pod: direct,
                vip,
                stats: from_pod,
            });
        }
        None => notes.push("no process of backend 1 found: the from-a-pod rows are missing".into()),
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_full_kib = rss_kib(info.agent_pid);
    Ok(Report {
        sizes: results,
        rss_base_kib,
        rss_full_kib,
        per_packet,
        notes,
        problems: Vec::new(),
    })
}

async fn blocking_in<T: Send + 'static>(
    netns: PathBuf,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    netlab::blocking_in_netns(netns, f).await
}

/// The child nsenter became the agent itself (nsenter execs, it does not fork for a
/// network namespace), so its pid is the agent's.
fn check_agent_pid(pid: u32) -> anyhow::Result<()> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(
        comm.trim() == "skiff",
        "pid {pid} is {:?}, not the skiff agent",
        comm.trim()
    );
    Ok(())
}

/// Backend `j` carries `skb-lt{k}=1` for every k > j, so the selector `skb-lt{k}=1`
/// picks backends 0..k.
async fn start_backends(client: &Client) -> anyhow::Result<Vec<Backend>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for j in 0..BACKENDS {
        let mut labels = serde_json::Map::new();
        labels.insert("app".into(), "skb-backend".into());
        for k in j + 1..=BACKENDS {
            labels.insert(format!("skb-lt{k}"), "1".into());
        }
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("skb-backend-{j}"), "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "enableServiceLinks": false,
                "containers": [{
                    "name": "httpd", "image": HTTPD_IMAGE, "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": 8080}],
                }],
            },
        }))?;
        pods.create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating backend {j}"))?;
    }
    let t0 = Instant::now();
    loop {
        let list = pods
            .list(&ListParams::default().labels("app=skb-backend"))
            .await?;
        let mut ready: Vec<(usize, Backend)> = list
            .items
            .iter()
            .filter_map(|p| {
                let j: usize = p
                    .metadata
                    .name
                    .as_deref()?
                    .strip_prefix("skb-backend-")?
                    .parse()
                    .ok()?;
                let st = p.status.as_ref()?;
                let is_ready = st
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let ip = st.pod_ip.as_deref()?.parse().ok()?;
                is_ready.then(|| {
                    (
                        j,
                        Backend {
                            ip,
                            uid: p.metadata.uid.clone().unwrap_or_default(),
                        },
                    )
                })
            })
            .collect();
        if ready.len() == BACKENDS {
            ready.sort_by_key(|(j, _)| *j);
            eprintln!(
                "  {BACKENDS} backends Ready after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            return Ok(ready.into_iter().map(|(_, b)| b).collect());
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(180),
            "only {} of {BACKENDS} backends Ready after 180 s",
            ready.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One programming-latency sample: create Service `name` selecting `k` backends, poll its
/// ClusterIP until a response arrives, then delete it and wait until the proxy has
/// dropped it (so the next sample starts from the same number of Services).
async fn probe(client: &Client, name: &str, k: usize) -> anyhow::Result<Option<Sample>> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let rv = slices
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = slices
        .watch(
            &WatchParams::default()
                .labels(&format!("kubernetes.io/service-name={name}"))
                .timeout(120),
            &rv,
        )
        .await?
        .boxed();
    let slice_seen = tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                Ok(WatchEvent::Added(s) | WatchEvent::Modified(s)) if has_ready_endpoint(&s) => {
                    return Some(Instant::now());
                }
                Ok(WatchEvent::Error(_)) | Err(_) => return None,
                _ => {}
            }
        }
        None
    });
    let t0 = Instant::now();
    let ip = netlab::create_service(client, name, k).await?;
    let created = t0.elapsed();
    let answered = first_response(sock(ip, 80), PROBE_DEADLINE).await;
    let slice_at = match tokio::time::timeout(Duration::from_secs(10), slice_seen).await {
        Ok(Ok(t)) => t,
        _ => None,
    };
    let svcs: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    svcs.delete(name, &DeleteParams::default()).await?;
    wait_gone(sock(ip, 80)).await;
    Ok(answered.map(|t| Sample {
        total: t.saturating_duration_since(t0),
        created,
        slice: slice_at.map(|s| s.saturating_duration_since(t0)),
    }))
}

fn has_ready_endpoint(s: &EndpointSlice) -> bool {
    s.endpoints.iter().any(|e| {
        !e.addresses.is_empty() && e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
    })
}

/// The instant the first response arrives through `addr`, polling with a new
/// connection every millisecond (attempts overlap, each given up after
/// `ATTEMPT_TIMEOUT`); `None` if none within `deadline`.
pub(crate) async fn first_response(addr: SocketAddr, deadline: Duration) -> Option<Instant> {
    let end = Instant::now() + deadline;
    let mut attempts = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() > end {
                    return None;
                }
                if attempts.len() < MAX_IN_FLIGHT {
                    attempts.spawn(async move {
                        tokio::time::timeout(ATTEMPT_TIMEOUT, get_once(addr)).await.ok()?.ok()
                    });
                }
            }
            Some(r) = attempts.join_next(), if !attempts.is_empty() => {
                if let Ok(Some(t)) = r {
                    return Some(t);
                }
            }
        }
    }
}

/// `GET /` over a new connection; the instant the response's first bytes arrived.
pub(crate) async fn get_once(addr: SocketAddr) -> anyhow::Result<Instant> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await?;
    let mut buf = [0u8; 16];
    let mut have = 0;
    while have < 8 {
        let n = s.read(&mut buf[have..]).await?;
        ensure!(n > 0, "connection closed before a response");
        have += n;
    }
    ensure!(buf.starts_with(b"HTTP/1."), "not an HTTP response");
    Ok(Instant::now())
}

/// Until `addr` stops answering (its rules are gone), at most 10 s.
async fn wait_gone(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        match tokio::time::timeout(Duration::from_millis(100), get_once(addr)).await {
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
            _ => return,
        }
    }
}

/// HTTP/1.0 `GET /` over a fresh connection, blocking: connect → response read to the
/// server's close.
fn http_get(addr: SocketAddr) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf)?;
    let d = t.elapsed();
    ensure!(buf.starts_with(b"HTTP/1."), "not an HTTP response");
    Ok(d)
}

/// `n` sequential requests to each target, interleaved in rounds of 100 (the order
/// alternating), after 50 unrecorded ones each.
pub(crate) fn compare(targets: [SocketAddr; 2], n: usize) -> anyhow::Result<[PathStats; 2]> {
    const ROUND: usize = 100;
    for t in targets {
        for _ in 0..50 {
            let _ = http_get(t);
        }
    }
    let mut stats = [
        PathStats {
            lat: Vec::with_capacity(n),
            failures: 0,
        },
        PathStats {
            lat: Vec::with_capacity(n),
            failures: 0,
        },
    ];
    let mut round = 0;
    while stats[0].lat.len() + stats[0].failures < n {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let left = n - stats[i].lat.len() - stats[i].failures;
            for _ in 0..ROUND.min(left) {
                match http_get(targets[i]) {
                    Ok(d) => stats[i].lat.push(d),
                    Err(_) => stats[i].failures += 1,
                }
            }
        }
        round += 1;
    }
    for (s, t) in stats.iter_mut().zip(targets) {
        ensure!(
            s.failures * 100 <= n,
            "{} of {n} requests to {t} failed",
            s.failures
        );
        s.lat.sort();
    }
    Ok(stats)
}

/// A process of the pod with this uid (its cgroup path names `pod<uid>`).
fn pod_pid(uid: &str) -> Option<u32> {
    if uid.is_empty() {
        return None;
    }
    let needle = format!("pod{uid}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cg.contains(&needle).then_some(pid)
    })
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// `tx_ms` of the incremental "service rules synced" lines the agent logged after byte
/// `from` of its log.
fn nft_syncs(log: &Path, from: u64) -> Vec<f64> {
    let Ok(text) = std::fs::read(log) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    text.lines()
        .filter(|l| l.contains("service rules synced") && l.contains("full=false"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("tx_ms="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

fn mean(d: &[Duration]) -> Duration {
    if d.is_empty() {
        return Duration::ZERO;
    }
    d.iter().sum::<Duration>() / d.len() as u32
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

impl Report {
    fn print(&self) {
        println!();
        println!(
            "programming latency: Service created → first response through its ClusterIP (1–10 endpoints each)"
        );
        println!(
            "{:>8} {:>9} {:>11} {:>11} {:>14}",
            "Services", "samples", "p50", "p99", "p99 / 100 ms"
        );
        let sorted = |mut v: Vec<Duration>| {
            v.sort();
            v
        };
        for r in &self.sizes {
            let total = sorted(r.samples.iter().map(|s| s.total).collect());
            let p99 = percentile(&total, 0.99);
            println!(
                "{:>8} {:>9} {:>11} {:>11} {:>13.2}x",
                r.n,
                format!("{}/{}", r.samples.len(), r.samples.len() + r.timeouts),
                ms(percentile(&total, 0.5)),
                ms(p99),
                p99.as_secs_f64() / GOAL_P99.as_secs_f64()
            );
        }
        println!("where the time goes, p50 / p99 of each step:");
        println!(
            "{:>8} {:>21} {:>21} {:>21} {:>27}",
            "Services",
            "API create answered",
            "→ slice ready (watch)",
            "slice → response",
            "agent nft transactions (n)"
        );
        for r in &self.sizes {
            let created = sorted(r.samples.iter().map(|s| s.created).collect());
            let slice = sorted(r.samples.iter().filter_map(|s| s.slice).collect());
            let after = sorted(
                r.samples
                    .iter()
                    .filter_map(|s| s.slice.map(|sl| s.total.saturating_sub(sl)))
                    .collect(),
            );
            let pair = |v: &[Duration]| {
                format!(
                    "{:.1} / {:.1} ms",
                    percentile(v, 0.5).as_secs_f64() * 1e3,
                    percentile(v, 0.99).as_secs_f64() * 1e3
                )
            };
            let mut tx = r.nft_tx_ms.clone();
            tx.sort_by(f64::total_cmp);
            let pick = |p: f64| tx[(((tx.len() - 1) as f64) * p).round() as usize];
            let tx = if tx.is_empty() {
                "-".to_string()
            } else {
                format!("{:.1} / {:.1} ms ({})", pick(0.5), pick(0.99), tx.len())
            };
            println!(
                "{:>8} {:>21} {:>21} {:>21} {:>27}",
                r.n,
                pair(&created),
                pair(&slice),
                pair(&after),
                tx
            );
        }
        for r in &self.sizes {
            if r.created > 0 {
                println!(
                    "  (to {} Services: {} created and all answering in {:.1} s)",
                    r.n,
                    r.created,
                    r.setup.as_secs_f64()
                );
            }
        }
        println!(
            "  each sample: the create request's start → a response to GET / on ClusterIP:80 (a new connection every 1 ms);"
        );
        println!(
            "  steps from the create request's start: the API's answer, its EndpointSlice with a ready endpoint seen by a"
        );
        println!(
            "  watch, then the response; nft transactions: the agent's incremental syncs during the samples (its log);"
        );
        println!("  each probe Service is deleted (and gone from the rules) before the next");
        println!("goal: p99 <= 100 ms at 10,000 Services");

        let largest = self.sizes.last().map_or(0, |r| r.n);
        println!();
        println!(
            "per-packet cost at {largest} Services: sequential HTTP/1.0 GET / on fresh TCP connections (connect → close), interleaved"
        );
        println!(
            "{:<20} {:<24} {:>9} {:>10} {:>10} {:>10} {:>10}",
            "client", "target", "requests", "p50", "p99", "mean", "failures"
        );
        for pp in &self.per_packet {
            for (i, target) in [format!("pod {}", pp.pod), format!("ClusterIP {}", pp.vip)]
                .iter()
                .enumerate()
            {
                let s = &pp.stats[i];
                println!(
                    "{:<20} {:<24} {:>9} {:>10} {:>10} {:>10} {:>10}",
                    pp.client,
                    target,
                    s.lat.len(),
                    us(percentile(&s.lat, 0.5)),
                    us(percentile(&s.lat, 0.99)),
                    us(mean(&s.lat)),
                    s.failures
                );
            }
            let ratio = |f: fn(&[Duration]) -> Duration| {
                f(&pp.stats[1].lat).as_secs_f64() / f(&pp.stats[0].lat).as_secs_f64().max(1e-12)
            };
            println!(
                "{:<20} {:<24} {:>9} {:>9.3}x {:>9.3}x {:>9.3}x",
                pp.client,
                "ClusterIP / pod",
                "",
                ratio(|l| percentile(l, 0.5)),
                ratio(|l| percentile(l, 0.99)),
                ratio(mean),
            );
        }
        println!("goal: ClusterIP <= 1.1x pod IP");

        println!();
        let base = self.rss_base_kib as f64 / 1024.0;
        let full = self.rss_full_kib as f64 / 1024.0;
        println!(
            "{:<58} {:>9.1} MB",
            format!("agent RSS, node Ready, {BACKENDS} backends, no Services of ours"),
            base
        );
        for r in &self.sizes {
            println!(
                "{:<58} {:>9.1} MB",
                format!("agent RSS with {} Services (after its samples)", r.n),
                r.rss_kib as f64 / 1024.0
            );
        }
        println!(
            "{:<58} {:>9.1} MB",
            format!("agent RSS with {largest} Services, all programmed, at the end"),
            full
        );
        println!(
            "{:<58} {:>+9.1} MB   ({:.2}x the +20 MB budget)",
            "difference (DNS and proxy holding the Services)",
            full - base,
            (full - base) / 20.0
        );
        println!(
            "  (the agent process alone, VmRSS; containerd apart; kubernetes and kube-dns Services always there)"
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        print_problems(&self.problems);
    }
}

pub(crate) fn print_problems(problems: &[String]) {
    if problems.is_empty() {
        println!("agent log: no warnings or errors");
    } else {
        println!("agent log: warnings and errors (count x first occurrence):");
        for p in problems {
            println!("  {p}");
        }
    }
}
