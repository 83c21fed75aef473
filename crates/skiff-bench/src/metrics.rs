//! `skiff bench metrics`: what the built-in metrics API costs the server at scale. The
//! same cluster (a server and a simulated-node agent, N nodes, M running pods) is built
//! twice in one run: once with the scraper kept off (its only round runs at start,
//! before any node joins) and once scraping every `--resolution`; the server's RSS and
//! CPU are read the same way in both, side by side. With metrics on, `kubectl top pods
//! -A` (the real kubectl) and the bare `metrics.k8s.io` list are timed.

use super::{
    ServerProc, client_for, cpu_seconds, create_named, ms, percentile, rss_kib, start_agent,
    start_server_with, wait_nodes,
};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct MetricsBenchOptions {
    pub skiff: PathBuf,
    pub nodes: usize,
    pub pods: usize,
    pub concurrency: usize,
    /// The scraper's `--metric-resolution` with metrics on.
    pub resolution: Duration,
    /// Timed runs of `kubectl top pods -A`.
    pub top_runs: usize,
}

/// A scraper resolution so long that its first round, at the server's start with no
/// node yet, is its only one: metrics off.
const NEVER: &str = "8760h";
/// Scrape rounds in the measured window: the server's CPU varies by a few percent of a
/// core from window to window with 5,000 nodes' heartbeats, a round's cost is less.
const STEADY_ROUNDS: u32 = 4;
/// What metrics-server keeps per node (its documented sizing), for comparison.
const METRICS_SERVER_MIB_PER_NODE: f64 = 2.0;

/// What one build of the cluster measured.
#[derive(Default)]
struct Run {
    /// Server RSS samples (MiB), one a second over the steady window.
    rss: Vec<f64>,
    /// Server CPU over the steady window, share of one core.
    cpu: f64,
    /// Wall time of each `kubectl top pods -A` (after one bare list), and the lines of
    /// the last.
    top: Vec<Duration>,
    top_lines: usize,
    /// The bare list: time, bytes, items.
    list: Option<(Duration, usize, usize)>,
    rss_after_top: f64,
}

impl Run {
    fn rss_mean(&self) -> f64 {
        self.rss.iter().sum::<f64>() / self.rss.len().max(1) as f64
    }

    fn rss_max(&self) -> f64 {
        self.rss.iter().copied().fold(0.0, f64::max)
    }
}

async fn running(client: &Client) -> anyhow::Result<usize> {
    let lp = ListParams::default().fields("status.phase=Running");
    Ok(Api::<Pod>::all(client.clone())
        .list_metadata(&lp)
        .await?
        .items
        .len())
}

async fn wait_running(client: &Client, n: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let have = running(client).await?;
        if have >= n {
            return Ok(());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(900),
            "only {have} of {n} pods Running after 900 s"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The whole PodMetrics list, as the bytes the server answers: (time, bytes, items).
async fn metrics_list(client: &Client) -> anyhow::Result<(Duration, usize, usize)> {
    let t = Instant::now();
    let req = http::Request::get("/apis/metrics.k8s.io/v1beta1/pods").body(Vec::new())?;
    let body = client.request_text(req).await?;
    let elapsed = t.elapsed();
    let items = serde_json::from_str::<serde_json::Value>(&body)?["items"]
        .as_array()
        .map_or(0, Vec::len);
    Ok((elapsed, body.len(), items))
}

/// `kubectl top pods -A` as a user runs it: (wall time, lines printed).
fn kubectl_top(kubeconfig: &Path, cache: &Path) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(["top", "pods", "-A", "--no-headers"])
        .stderr(Stdio::inherit())
        .output()?;
    let elapsed = t.elapsed();
    anyhow::ensure!(out.status.success(), "kubectl top pods -A failed");
    Ok((elapsed, out.stdout.split(|b| *b == b'\n').count() - 1))
}

/// RSS each second and CPU over `length`.
async fn steady(pid: u32, length: Duration) -> (Vec<f64>, f64) {
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    let mut rss = Vec::new();
    while t0.elapsed() < length {
        rss.push(rss_kib(pid) as f64 / 1024.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (rss, (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64())
}

async fn build(opts: &MetricsBenchOptions, on: bool) -> anyhow::Result<Run> {
    let resolution = format!("{}ms", opts.resolution.as_millis());
    let scrape = if on { resolution.as_str() } else { NEVER };
    let (server, _): (ServerProc, _) = start_server_with(
        &opts.skiff,
        &[
            "--node-monitor-grace-period",
            "3600",
            "--metric-resolution",
            scrape,
        ],
    )
    .await?;
    let _agent = start_agent(&opts.skiff, &server, opts.nodes)?;
    let client = client_for(&server.kubeconfig).await?;
    wait_nodes(&client, opts.nodes).await?;
    let names = (0..opts.pods).map(|i| format!("m-{i}")).collect();
    create_named(&client, names, opts.concurrency).await?;
    wait_running(&client, opts.pods).await?;
    let mut run = Run::default();
    // Two rounds give every pod its metrics; three more (or as long, metrics off) and
    // what the scraper holds and churns through is at its steady level. Nothing lists
    // metrics before the steady window: a list's answer is transient memory of its own,
    // measured apart after it.
    tokio::time::sleep(opts.resolution * 5).await;
    let pid = server.child.id();
    (run.rss, run.cpu) = steady(pid, opts.resolution * STEADY_ROUNDS).await;
    if on {
        let list = metrics_list(&client).await?;
        anyhow::ensure!(
            list.2 >= opts.pods,
            "only {} of {} pods have metrics after five rounds",
            list.2,
            opts.pods
        );
        run.list = Some(list);
        let cache = tempfile::tempdir()?;
        for _ in 0..opts.top_runs {
            let (t, lines) = kubectl_top(&server.kubeconfig, cache.path())?;
            run.top.push(t);
            run.top_lines = lines;
        }
        run.rss_after_top = rss_kib(pid) as f64 / 1024.0;
    }
    Ok(run)
}

pub async fn metrics(opts: MetricsBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench metrics: {} simulated nodes, {} running pods, metrics off and then scraped every {:?}",
        opts.nodes, opts.pods, opts.resolution
    );
    let off = build(&opts, false).await?;
    let on = build(&opts, true).await?;
    report(&opts, &off, &on);
    Ok(())
}

fn report(opts: &MetricsBenchOptions, off: &Run, on: &Run) {
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>12}",
        "server", "metrics off", "metrics on", "difference"
    );
    let row = |label: &str, a: f64, b: f64, note: &str| {
        println!(
            "{label:<44} {a:>9.1} MB {b:>9.1} MB {:>+9.1} MB{note}",
            b - a
        )
    };
    row(
        "RSS, mean over four rounds",
        off.rss_mean(),
        on.rss_mean(),
        "   (target <= +60 MB)",
    );
    row("RSS, highest sample", off.rss_max(), on.rss_max(), "");
    println!(
        "{:<44} {:>10.2} % {:>10.2} % {:>+10.2} %",
        "CPU (of one core) over four rounds",
        off.cpu * 100.0,
        on.cpu * 100.0,
        (on.cpu - off.cpu) * 100.0
    );
    let round = (on.cpu - off.cpu) * opts.resolution.as_secs_f64();
    println!(
        "{:<44} {:>12} {:>9.0} ms   (the difference, per round)",
        "server CPU per scrape round",
        "",
        round * 1e3
    );
    println!(
        "{:<44} {:>12} {:>9.1} MB   (metrics-server: {} MB a node, {:.1} GB here)",
        "RSS after the lists below",
        "",
        on.rss_after_top,
        METRICS_SERVER_MIB_PER_NODE,
        METRICS_SERVER_MIB_PER_NODE * opts.nodes as f64 / 1024.0
    );
    let mut top = on.top.clone();
    top.sort();
    println!(
        "{:<44} {:>12} {:>12}   (median; fastest {}, slowest {} of {}; {} lines; target < 1 s)",
        "`kubectl top pods -A`",
        "",
        ms(percentile(&top, 0.5)),
        ms(top.first().copied().unwrap_or_default()),
        ms(top.last().copied().unwrap_or_default()),
        top.len(),
        on.top_lines
    );
    if let Some((t, bytes, items)) = on.list {
        println!(
            "{:<44} {:>12} {:>9.1} MB   ({items} PodMetrics)",
            "GET metrics.k8s.io pods (all), through kube-rs",
            ms(t),
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
}
