//! `skiff bench stats`: what serving statistics costs a real node's agent. A server and
//! a real agent run as separate processes, so the agent's `/proc` figures are its own;
//! the server's own scraper is kept away from the node (its only round runs at start,
//! before the node joins), so the agent is first measured with its pods running and no
//! statistics ever asked for, then while `/metrics/resource` (what the metrics API
//! scrapes) and `/stats/summary` are fetched every interval through the API server's
//! `nodes/<name>/proxy`, the path and identity the scraper uses. Needs root and
//! containerd.

use super::pods::{IMAGE, containerd_pid, start_agent, wait_node_ready};
use super::{client_for, cpu_seconds, ms, percentile, rss_kib, start_server_with};
use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct StatsBenchOptions {
    pub skiff: PathBuf,
    /// Pods running on the node while it is measured.
    pub pods: usize,
    /// Length of each measured window (statistics off, then on).
    pub seconds: u64,
    /// How often the statistics are fetched in the "on" window.
    pub interval: Duration,
    /// The scrape interval the per-scrape cost is also projected to (metrics-server's
    /// and skiff's default `--metric-resolution`).
    pub resolution: Duration,
}

/// A scraper resolution so long that the server's first round, at its start with no
/// node yet, is its only one.
const NEVER: &str = "8760h";

/// What one window measured of a process.
struct Window {
    /// RSS samples, KiB, one a second.
    rss: Vec<u64>,
    cpu_seconds: f64,
    containerd_cpu_seconds: f64,
    elapsed: Duration,
    scrapes: Vec<Duration>,
}

impl Window {
    fn rss_mib(&self) -> (f64, f64) {
        let mean = self.rss.iter().sum::<u64>() as f64 / self.rss.len().max(1) as f64;
        let max = self.rss.iter().copied().max().unwrap_or(0) as f64;
        (mean / 1024.0, max / 1024.0)
    }

    fn cpu_share(&self, seconds: f64) -> f64 {
        seconds / self.elapsed.as_secs_f64()
    }
}

async fn create_pods(client: &kube::Client, n: usize) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let creates = (0..n).map(|i| {
        let api = api.clone();
        async move {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("stats-{i}"), "labels": {"bench": "stats"}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]},
            }))?;
            api.create(&PostParams::default(), &pod).await?;
            Ok::<_, anyhow::Error>(())
        }
    });
    for r in futures::future::join_all(creates).await {
        r?;
    }
    let lp = ListParams::default()
        .labels("bench=stats")
        .fields("status.phase=Running");
    let t0 = Instant::now();
    while api.list_metadata(&lp).await?.items.len() < n {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "{n} pods not Running in 300 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// One scrape as the metrics API makes it, plus the Summary API beside it.
async fn scrape(client: &kube::Client, node: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    for path in ["metrics/resource", "stats/summary"] {
        let req =
            http::Request::get(format!("/api/v1/nodes/{node}/proxy/{path}")).body(Vec::new())?;
        let body = client.request_text(req).await?;
        anyhow::ensure!(!body.is_empty(), "empty answer from {path}");
    }
    Ok(t.elapsed())
}

/// Samples the agent's RSS each second for `length`; with `scrape_every`, fetches the
/// statistics that often meanwhile.
async fn window(
    client: &kube::Client,
    node: &str,
    (agent, containerd): (u32, Option<u32>),
    length: Duration,
    scrape_every: Option<Duration>,
) -> anyhow::Result<Window> {
    let ctd_cpu = || containerd.map_or(0.0, cpu_seconds);
    let (cpu0, ctd0, t0) = (cpu_seconds(agent), ctd_cpu(), Instant::now());
    let mut w = Window {
        rss: Vec::new(),
        cpu_seconds: 0.0,
        containerd_cpu_seconds: 0.0,
        elapsed: Duration::ZERO,
        scrapes: Vec::new(),
    };
    let mut next_sample = t0;
    let mut next_scrape = t0;
    while t0.elapsed() < length {
        if let Some(every) = scrape_every
            && Instant::now() >= next_scrape
        {
            w.scrapes.push(scrape(client, node).await?);
            next_scrape += every;
        }
        if Instant::now() >= next_sample {
            w.rss.push(rss_kib(agent));
            next_sample += Duration::from_secs(1);
        }
        let wake = scrape_every.map_or(next_sample, |_| next_sample.min(next_scrape));
        tokio::time::sleep_until(wake.into()).await;
    }
    w.elapsed = t0.elapsed();
    w.cpu_seconds = cpu_seconds(agent) - cpu0;
    w.containerd_cpu_seconds = ctd_cpu() - ctd0;
    Ok(w)
}

pub async fn stats(opts: StatsBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench stats: a real node with {} pods, agent measured {} s with no statistics asked for, then {} s with them fetched every {:?}",
        opts.pods, opts.seconds, opts.seconds, opts.interval
    );
    let (server, _) = start_server_with(&opts.skiff, &["--metric-resolution", NEVER]).await?;
    let agent = start_agent(&opts.skiff, &server)?;
    let client = client_for(&server.kubeconfig).await?;
    wait_node_ready(&client).await?;
    let node = Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .first()
        .and_then(|n| n.metadata.name.clone())
        .context("no node")?;
    let pids = (agent.child.id(), containerd_pid(agent.dir.path()));
    create_pods(&client, opts.pods).await?;
    // Let the pod workers and the relist settle after the burst of starts.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let length = Duration::from_secs(opts.seconds);
    let off = window(&client, &node, pids, length, None).await?;
    let on = window(&client, &node, pids, length, Some(opts.interval)).await?;
    // After the scraping: what stays held once collection has run.
    let after = rss_kib(pids.0) as f64 / 1024.0;
    report(&opts, &off, &on, after);
    drop(agent);
    drop(server);
    Ok(())
}

fn report(opts: &StatsBenchOptions, off: &Window, on: &Window, after_mib: f64) {
    let ((off_mean, off_max), (on_mean, on_max)) = (off.rss_mib(), on.rss_mib());
    println!();
    println!(
        "{:<46} {:>12} {:>12} {:>10}",
        "agent", "stats off", "stats on", "difference"
    );
    println!(
        "{:<46} {:>9.1} MB {:>9.1} MB {:>+7.1} MB   (target <= +5 MB)",
        "RSS, mean of the window",
        off_mean,
        on_mean,
        on_mean - off_mean
    );
    println!(
        "{:<46} {:>9.1} MB {:>9.1} MB {:>+7.1} MB",
        "RSS, highest sample",
        off_max,
        on_max,
        on_max - off_max
    );
    println!(
        "{:<46} {:>12} {:>9.1} MB {:>+7.1} MB",
        "RSS after the scraping window",
        "",
        after_mib,
        after_mib - off_mean
    );
    let (cpu_off, cpu_on) = (off.cpu_share(off.cpu_seconds), on.cpu_share(on.cpu_seconds));
    println!(
        "{:<46} {:>10.2} % {:>10.2} % {:>+8.2} %",
        format!("CPU (of one core), fetched every {:?}", opts.interval),
        cpu_off * 100.0,
        cpu_on * 100.0,
        (cpu_on - cpu_off) * 100.0
    );
    let (ctd_off, ctd_on) = (
        off.cpu_share(off.containerd_cpu_seconds),
        on.cpu_share(on.containerd_cpu_seconds),
    );
    println!(
        "{:<46} {:>10.2} % {:>10.2} % {:>+8.2} %",
        "containerd CPU (its CRI stats; reported apart)",
        ctd_off * 100.0,
        ctd_on * 100.0,
        (ctd_on - ctd_off) * 100.0
    );
    // Each window's CPU less what the process spends anyway, per scrape, and that cost
    // once per resolution as a share of a core.
    let n = on.scrapes.len().max(1) as f64;
    let seconds = on.elapsed.as_secs_f64();
    let agent = (on.cpu_seconds - cpu_off * seconds) / n;
    let containerd = (on.containerd_cpu_seconds - ctd_off * seconds) / n;
    let share = |per_scrape: f64| per_scrape / opts.resolution.as_secs_f64() * 100.0;
    println!(
        "{:<46} {:>9.2} ms {:>9.2} ms",
        "CPU per scrape: agent, containerd",
        agent * 1e3,
        containerd * 1e3
    );
    println!(
        "{:<46} {:>10.3} % {:>10.3} %   (target <= 1 % of a core)",
        format!(
            "collection at a {:?} resolution: agent, both",
            opts.resolution
        ),
        share(agent),
        share(agent + containerd)
    );
    let mut lat = on.scrapes.clone();
    lat.sort();
    println!(
        "{:<46} {:>12} {:>12}   ({} scrapes, through the API server)",
        "scrape latency p50 / p99",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        on.scrapes.len()
    );
}
