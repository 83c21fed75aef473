//! `skiff bench ingress`: the built-in Ingress controller's proxy against nginx (Debian's,
//! set up as ingress-nginx sets up a reverse proxy: HTTP/1.1 upstreams with a keep-alive
//! pool, round robin, `Host` and `X-Forwarded-*` set) in front of the same two backends,
//! driven by the same load generator, in one run: keep-alive HTTP/1.1 connections each
//! sending one request after another for a fixed time, the two proxies taking turns.
//!
//! Everything is on loopback and on this machine's cores, the proxy and the load
//! generator sharing them alike for both. Both proxies run one worker per core (the
//! skiff one on its own threads, as on a node). Access logs are off in both. Figures are
//! printed side by side; nothing is asserted.

use super::{ms, percentile, stat_cpu_seconds, stat_fields};
use anyhow::{Context, anyhow, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use skiff_catalog::{Catalog, Service, Slice};
use skiff_ingress::proxy::Proxy;
use skiff_ingress::server::{self, Ports};
use skiff_ingress::table::Table;
use skiff_ingress::tls::{self, CertResolver, Certs};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct IngressBenchOptions {
    /// Client connections, each with one request in flight.
    pub connections: usize,
    /// Length of one timed turn.
    pub seconds: u64,
    /// Turns per proxy (alternating).
    pub rounds: usize,
}

const HOST: &str = "bench.example";
const BODY: &[u8] = b"hello from the backend\n";

pub async fn ingress(opts: IngressBenchOptions) -> anyhow::Result<()> {
    ensure!(
        Path::new("/usr/sbin/nginx").exists(),
        "nginx is needed to compare with: apt-get install nginx-light"
    );
    println!(
        "skiff bench ingress: {} keep-alive connections, {} rounds of {} s per proxy",
        opts.connections, opts.rounds, opts.seconds
    );
    let backends = start_backends()?;
    let skiff_addr = start_skiff(&backends)?;
    let dir = tempfile::tempdir()?;
    let mut nginx = Nginx::start(dir.path(), &backends)?;
    let targets = [("nginx", nginx.addr), ("skiff", skiff_addr)];
    for (name, addr) in targets {
        check_routes(addr)
            .await
            .with_context(|| format!("{name} does not proxy to the backends"))?;
        load(addr, opts.connections, Duration::from_secs(1)).await?;
    }
    let mut results = [Run::default(), Run::default()];
    for round in 0..opts.rounds {
        // Turns alternate which goes first, so drift in the machine hits both.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let cpu = || proxy_cpu_seconds(i == 0, nginx.child.id());
            let before = cpu();
            let mut r = load(
                targets[i].1,
                opts.connections,
                Duration::from_secs(opts.seconds),
            )
            .await?;
            r.cpu = cpu() - before;
            results[i].absorb(r);
        }
    }
    nginx.stop();
    print(&results, &opts);
    Ok(())
}

/// Two backends answering every request with a short body (HTTP/1.1, keep-alive), on a
/// runtime of their own.
fn start_backends() -> anyhow::Result<Vec<SocketAddr>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        addrs.push(l.local_addr()?);
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("a tokio listener");
            while let Ok((s, _)) = l.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(BODY),
                        )))
                    });
                    let io = hyper_util::rt::TokioIo::new(s);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
    }
    // The runtime lives as long as the bench.
    std::mem::forget(rt);
    Ok(addrs)
}

/// The built-in controller's proxy with an Ingress for `HOST` → a Service whose two
/// endpoints are the backends.
fn start_skiff(backends: &[SocketAddr]) -> anyhow::Result<SocketAddr> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let proxy = Proxy::with_access_log(false);
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {"rules": [{"host": HOST, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "bench", "port": {"number": 80}}}}]}}]},
    }))?;
    proxy.set_table(Table::build(&[&ingress], &catalog(backends)?));
    let certs = CertResolver::new(Certs::only(tls::default_certificate()));
    let port = free_port()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    let ports = Ports {
        http: port,
        https: 0,
    };
    // `serve` runs its own worker threads; this thread only waits on them.
    std::thread::spawn(move || rt.block_on(server::serve(proxy, certs, ports, rx)));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr)?;
    Ok(addr)
}

fn catalog(backends: &[SocketAddr]) -> anyhow::Result<Catalog> {
    let mut c = Catalog::default();
    let svc: core::Service = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 80}]},
    }))?;
    c.reset_services(Service::from_api(svc).into_iter().collect());
    let mut slices = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let s: discovery::EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": format!("bench-{i}"), "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": "bench"}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": b.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.ip().to_string()], "conditions": {"ready": true}}],
        }))?;
        slices.extend(Slice::from_api(s));
    }
    c.reset_slices(slices);
    Ok(c)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..250 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(anyhow!("nothing listens on {addr}"))
}

/// nginx as a reverse proxy, as ingress-nginx configures one.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(dir: &Path, backends: &[SocketAddr]) -> anyhow::Result<Nginx> {
        let port = free_port()?;
        let servers: String = backends
            .iter()
            .map(|b| format!("    server {b};\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            "worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 1000000;\n\
               upstream backends {{\n{servers}    keepalive 320;\n  }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    server_name {HOST};\n\
                 location / {{\n      proxy_pass http://backends;\n      proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                   proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Host $host;\n\
                   proxy_set_header X-Forwarded-Port $server_port;\n      proxy_set_header X-Real-IP $remote_addr;\n\
                   proxy_next_upstream error timeout;\n    }}\n  }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut n = Nginx { child, addr };
        if let Err(e) = wait_listening(addr) {
            n.stop();
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(e.context(log));
        }
        Ok(n)
    }

    /// SIGQUIT (graceful) to the master we started; it takes its workers with it.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// CPU seconds the proxy has used so far: nginx's master and its workers, or this
/// process' `ingress-*` worker threads. The same work per request at a lower cost is
/// what leaves the cores to everything else on a node.
fn proxy_cpu_seconds(nginx: bool, master: u32) -> f64 {
    if nginx {
        let master = master.to_string();
        // The master, and the processes whose parent (the field after the state) it is.
        cpu_of("/proc", |f, pid| pid == master || f.get(1) == Some(&master))
    } else {
        cpu_of("/proc/self/task", |_, tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| c.starts_with("ingress-"))
        })
    }
}

/// The summed CPU seconds of the processes or threads under `dir` that `wanted` picks
/// by their stat fields and id.
fn cpu_of(dir: &str, wanted: impl Fn(&[String], &str) -> bool) -> f64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|id| {
            let f = stat_fields(&format!("{dir}/{id}/stat"))?;
            wanted(&f, &id).then(|| stat_cpu_seconds(&f))
        })
        .sum()
}

/// Both backends answer through `addr`.
async fn check_routes(addr: SocketAddr) -> anyhow::Result<()> {
    let mut sender = connect(addr).await?;
    for _ in 0..4 {
        let (status, body) = get(&mut sender).await?;
        ensure!(status == 200 && body == BODY, "got {status} {body:?}");
    }
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get(sender: &mut Sender) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::get("/")
        .header(http::header::HOST, HOST)
        .body(Empty::new())?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
    /// The proxy's CPU seconds.
    cpu: f64,
}

impl Run {
    fn absorb(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
    }

    /// The proxy's CPU time per request, in microseconds.
    fn cpu_per_request(&self) -> f64 {
        self.cpu * 1e6 / (self.latencies.len() as f64).max(1.0)
    }

    fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `connections` clients sending requests back to back through `addr` for `length`.
async fn load(addr: SocketAddr, connections: usize, length: Duration) -> anyhow::Result<Run> {
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let mut run = Run::default();
            let mut sender = connect(addr).await?;
            while Instant::now() < deadline {
                let t = Instant::now();
                match get(&mut sender).await {
                    Ok((200, _)) => run.latencies.push(t.elapsed()),
                    _ => {
                        run.errors += 1;
                        sender = connect(addr).await?;
                    }
                }
            }
            anyhow::Ok(run)
        });
    }
    let mut total = Run::default();
    while let Some(r) = tasks.join_next().await {
        total.absorb(r??);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

fn print(results: &[Run; 2], opts: &IngressBenchOptions) {
    let mut sorted: Vec<Vec<Duration>> = results
        .iter()
        .map(|r| {
            let mut l = r.latencies.clone();
            l.sort();
            l
        })
        .collect();
    println!();
    println!(
        "{:<8} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "proxy", "requests/s", "p50", "p99", "p99.9", "max", "errors", "cpu/req"
    );
    for (name, (r, l)) in ["nginx", "skiff"]
        .iter()
        .zip(results.iter().zip(&mut sorted))
    {
        println!(
            "{:<8} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7.1} µs",
            name,
            r.per_sec(),
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            ms(percentile(l, 0.999)),
            ms(l.last().copied().unwrap_or_default()),
            r.errors,
            r.cpu_per_request()
        );
    }
    let rps = results[1].per_sec() / results[0].per_sec().max(1e-9);
    let p99 = percentile(&sorted[1], 0.99).as_secs_f64()
        / percentile(&sorted[0], 0.99).as_secs_f64().max(1e-9);
    let cpu = results[1].cpu_per_request() / results[0].cpu_per_request().max(1e-9);
    println!();
    println!(
        "skiff/nginx: requests/s {rps:.2}x (goal >= 1.00), p99 {p99:.2}x (goal <= 1.00), proxy CPU per request {cpu:.2}x; {} connections, {} s x {} rounds each",
        opts.connections, opts.seconds, opts.rounds
    );
}
