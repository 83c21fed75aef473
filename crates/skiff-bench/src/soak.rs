//! `skiff bench soak`: a mixed workload against a real server and a simulated-node
//! agent for N minutes — Deployments created, scaled, rolled, deleted and recreated;
//! Jobs run to completion on simulated nodes and deleted; ConfigMaps created, updated
//! and deleted; watches opened, read for a while and dropped — with both processes'
//! RSS, open descriptors, threads and CPU printed every minute, and a verdict: memory
//! and descriptors must be flat after warm-up, or the run fails (CI runs one minute).
//!
//! Two things the server keeps by design would read as growth, so the soak bounds them:
//! - the watch cache's ring of the last 20,000 events fills in minutes at this pace; it
//!   is turned over once before the clock starts, with ConfigMap writes about the size
//!   of the workload's objects as stored (the cache's bytes on `/metrics` stay level);
//! - Events live for `--event-ttl` (1 h by default, as kube-apiserver's): the soak's
//!   server is started with `EVENT_TTL`, so they level off within the warm-up.
//!
//! Verdict: the value at the end of warm-up (the first 20 % of the run) against the
//! lowest value of the last minute after it. The floor is taken because single samples
//! are lifted by what is in flight at that instant (a watch connection just opened, a
//! burst of pods), while a leak lifts the floor. "Growing" (and a failed run) is RSS up
//! more than `RSS_GROWTH_LIMIT_PCT` or descriptors up more than `fd_margin`; more than
//! `ERROR_SHARE_LIMIT` of the workload's requests failing fails the run too.

use crate::{client_for, cpu_seconds, rss_kib, start_agent, start_server_with, wait_nodes};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Event, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct SoakBenchOptions {
    /// The skiff binary to start as the server and the simulated-node agent.
    pub skiff: PathBuf,
    pub minutes: u64,
    pub nodes: usize,
}

const NS: &str = "default";
const DEPLOYMENTS: usize = 3;
const JOB_LOOPS: usize = 2;
const JOB_COMPLETIONS: i32 = 3;
const WATCH_LOOPS: usize = 4;
const CONFIGMAPS: usize = 10;
/// How long a Deployment or Job may take to converge before it counts as a stall.
const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);
/// The server's `--event-ttl` in the soak.
const EVENT_TTL: Duration = Duration::from_secs(60);
/// The server's watch-cache ring (skiff-apiserver's default `watch_cache_events`).
const RING_EVENTS: u64 = 20_000;
/// ConfigMaps written over and over to turn the ring over before the clock starts, each
/// about the size of the workload's objects as stored.
const FILL_OBJECTS: usize = 100;
const FILL_PAYLOAD: usize = 1200;
const FILL_CONCURRENCY: usize = 16;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const SAMPLES_PER_MINUTE: usize = 6;
/// RSS may grow this much from the end of warm-up to the last minute's floor.
const RSS_GROWTH_LIMIT_PCT: f64 = 25.0;
/// Failed requests tolerated, as a share of the workload's operations.
const ERROR_SHARE_LIMIT: f64 = 0.05;

/// Descriptors may grow by 10 or 10 %, whichever is more.
fn fd_margin(base: usize) -> usize {
    (base / 10).max(10)
}

/// What the workload did, shared by its loops and read by the sampler.
#[derive(Default)]
struct Counters {
    /// Writes and watches opened.
    ops: AtomicU64,
    /// Watch events received.
    events: AtomicU64,
    errors: AtomicU64,
    /// Deployments or Jobs that did not converge within `SETTLE`.
    stalls: AtomicU64,
}

impl Counters {
    fn op(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, what: &str, e: &anyhow::Error) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("soak: {what}: {e:#}");
        }
    }
}

/// A workload loop's view: the client, the counters and when to stop.
#[derive(Clone)]
struct Ctx {
    client: Client,
    c: Arc<Counters>,
    end: Instant,
}

impl Ctx {
    fn running(&self) -> bool {
        Instant::now() < self.end
    }

    /// Sleeps `d`, or until the end of the run if that comes first.
    async fn pause(&self, d: Duration) {
        let until = (Instant::now() + d).min(self.end);
        tokio::time::sleep_until(until.into()).await;
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), NS)
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

fn template(app: &str, image: &str, run_seconds: Option<u32>) -> PodTemplateSpec {
    let annotations = run_seconds
        .map(|s| BTreeMap::from([("skiff.io/simulate-run-seconds".to_string(), s.to_string())]));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            annotations,
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".to_string(),
                image: Some(image.to_string()),
                ..Default::default()
            }],
            restart_policy: run_seconds.map(|_| "Never".to_string()),
            ..Default::default()
        }),
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..Default::default()
            },
            template: template(name, "registry.local/soak:0", None),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn job(name: &str) -> Job {
    Job {
        metadata: meta(name),
        spec: Some(JobSpec {
            completions: Some(JOB_COMPLETIONS),
            parallelism: Some(2),
            template: template(name, "registry.local/soak-job:1", Some(2)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn configmap(k: usize, round: u64) -> ConfigMap {
    ConfigMap {
        metadata: meta(&format!("soak-cm-{k}")),
        data: Some(BTreeMap::from([
            ("round".to_string(), round.to_string()),
            ("payload".to_string(), "x".repeat(1024)),
        ])),
        ..Default::default()
    }
}

/// Polls `name` until `done` holds, `SETTLE` passes (a stall) or the run ends.
async fn settle<K>(cx: &Ctx, api: &Api<K>, name: &str, done: fn(&K) -> bool) -> anyhow::Result<()>
where
    K: Clone + DeserializeOwned + Debug,
{
    let limit = Instant::now() + SETTLE;
    while cx.running() {
        if done(&api.get(name).await?) {
            return Ok(());
        }
        if Instant::now() > limit {
            cx.c.stalls.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        cx.pause(POLL).await;
    }
    Ok(())
}

fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation.unwrap_or(0) >= generation
            && s.updated_replicas.unwrap_or(0) == want
            && s.available_replicas.unwrap_or(0) == want
            && s.replicas.unwrap_or(0) == want
    })
}

fn job_done(j: &Job) -> bool {
    j.status
        .as_ref()
        .is_some_and(|s| s.succeeded.unwrap_or(0) >= JOB_COMPLETIONS)
}

/// Through the Scale subresource, as `kubectl scale` does.
async fn scale(cx: &Ctx, api: &Api<Deployment>, name: &str, replicas: i32) -> anyhow::Result<()> {
    let s = Scale {
        metadata: meta(name),
        spec: Some(ScaleSpec {
            replicas: Some(replicas),
        }),
        status: None,
    };
    api.replace_scale(name, &PostParams::default(), &s).await?;
    cx.c.op();
    Ok(())
}

/// A new image in the pod template (a rolling update), retried on write conflicts.
async fn roll(cx: &Ctx, api: &Api<Deployment>, name: &str, rev: u64) -> anyhow::Result<()> {
    for _ in 0..5 {
        let mut d = api.get(name).await?;
        let containers = d
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .map(|p| &mut p.containers);
        if let Some(c) = containers.and_then(|c| c.first_mut()) {
            c.image = Some(format!("registry.local/soak:{rev}"));
        }
        match api.replace(name, &PostParams::default(), &d).await {
            Ok(_) => {
                cx.c.op();
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("5 write conflicts in a row rolling {name}")
}

/// Create (2 replicas) → scale to 5 → roll → scale to 1 → delete.
async fn deployment_cycle(
    cx: &Ctx,
    api: &Api<Deployment>,
    name: &str,
    rev: u64,
) -> anyhow::Result<()> {
    api.create(&PostParams::default(), &deployment(name, 2))
        .await?;
    cx.c.op();
    settle(cx, api, name, rolled_out).await?;
    scale(cx, api, name, 5).await?;
    settle(cx, api, name, rolled_out).await?;
    roll(cx, api, name, rev).await?;
    settle(cx, api, name, rolled_out).await?;
    scale(cx, api, name, 1).await?;
    settle(cx, api, name, rolled_out).await?;
    api.delete(name, &DeleteParams::background()).await?;
    cx.c.op();
    Ok(())
}

async fn deployment_loop(cx: Ctx, name: String) {
    let api: Api<Deployment> = cx.api();
    let mut rev = 0;
    while cx.running() {
        rev += 1;
        if let Err(e) = deployment_cycle(&cx, &api, &name, rev).await {
            cx.c.failed(&name, &e);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
        cx.pause(Duration::from_secs(1)).await;
    }
}

async fn job_cycle(cx: &Ctx, api: &Api<Job>, name: &str) -> anyhow::Result<()> {
    api.create(&PostParams::default(), &job(name)).await?;
    cx.c.op();
    settle(cx, api, name, job_done).await?;
    api.delete(name, &DeleteParams::background()).await?;
    cx.c.op();
    Ok(())
}

async fn job_loop(cx: Ctx, lane: usize) {
    let api: Api<Job> = cx.api();
    let mut n = 0;
    while cx.running() {
        let name = format!("soak-job-{lane}-{n}");
        n += 1;
        if let Err(e) = job_cycle(&cx, &api, &name).await {
            cx.c.failed(&name, &e);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
        cx.pause(Duration::from_secs(1)).await;
    }
}

/// `CONFIGMAPS` created, each updated, each deleted.
async fn configmap_cycle(cx: &Ctx, api: &Api<ConfigMap>, round: u64) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let mut made = Vec::with_capacity(CONFIGMAPS);
    for k in 0..CONFIGMAPS {
        made.push(api.create(&pp, &configmap(k, round)).await?);
        cx.c.op();
    }
    for mut cm in made {
        cm.data = configmap(0, round + 1).data;
        api.replace(&cm.name_any(), &pp, &cm).await?;
        cx.c.op();
    }
    for k in 0..CONFIGMAPS {
        api.delete(&format!("soak-cm-{k}"), &DeleteParams::default())
            .await?;
        cx.c.op();
    }
    Ok(())
}

async fn configmap_loop(cx: Ctx) {
    let api: Api<ConfigMap> = cx.api();
    let mut round = 0;
    while cx.running() {
        if let Err(e) = configmap_cycle(&cx, &api, round).await {
            cx.c.failed("configmaps", &e);
            for k in 0..CONFIGMAPS {
                let _ = api
                    .delete(&format!("soak-cm-{k}"), &DeleteParams::default())
                    .await;
            }
        }
        round += 2;
        cx.pause(Duration::from_secs(1)).await;
    }
}

/// Opens a watch of every `K` in the namespace, reads it for `hold`, then drops it.
async fn watch_for<K>(cx: &Ctx, hold: Duration) -> anyhow::Result<()>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let until = (Instant::now() + hold).min(cx.end);
    let wp = WatchParams::default().timeout(60);
    let mut events = cx.api::<K>().watch(&wp, "0").await?.boxed();
    cx.c.op();
    while let Ok(Some(ev)) = tokio::time::timeout_at(until.into(), events.next()).await {
        if let WatchEvent::Error(e) = ev? {
            anyhow::bail!("watch ended with an error: {}", e.message);
        }
        cx.c.events.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn watch_loop(cx: Ctx, lane: usize) {
    let mut i = lane;
    while cx.running() {
        let hold = Duration::from_secs(2 + (i % 7) as u64);
        let r = match i % 4 {
            0 => watch_for::<Pod>(&cx, hold).await,
            1 => watch_for::<ConfigMap>(&cx, hold).await,
            2 => watch_for::<Deployment>(&cx, hold).await,
            _ => watch_for::<Job>(&cx, hold).await,
        };
        if let Err(e) = r {
            cx.c.failed("watch", &e);
            cx.pause(Duration::from_secs(1)).await;
        }
        i += 1;
    }
}

fn spawn_workload(cx: &Ctx) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for i in 0..DEPLOYMENTS {
        set.spawn(deployment_loop(cx.clone(), format!("soak-web-{i}")));
    }
    for lane in 0..JOB_LOOPS {
        set.spawn(job_loop(cx.clone(), lane));
    }
    for lane in 0..WATCH_LOOPS {
        set.spawn(watch_loop(cx.clone(), lane));
    }
    set.spawn(configmap_loop(cx.clone()));
    set
}

fn filler(i: usize, round: usize) -> ConfigMap {
    ConfigMap {
        metadata: meta(&format!("soak-fill-{i}")),
        data: Some(BTreeMap::from([
            ("round".to_string(), round.to_string()),
            ("payload".to_string(), "x".repeat(FILL_PAYLOAD)),
        ])),
        ..Default::default()
    }
}

/// One write of every filler: created in round 0, replaced (unconditionally) after.
async fn fill_round(api: &Api<ConfigMap>, round: usize) -> anyhow::Result<()> {
    let pp = &PostParams::default();
    futures::stream::iter(0..FILL_OBJECTS)
        .map(|i| async move {
            let cm = filler(i, round);
            if round == 0 {
                api.create(pp, &cm).await
            } else {
                api.replace(&cm.name_any(), pp, &cm).await
            }
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Turns the server's watch-cache ring over once (see the module docs); returns the
/// writes made.
async fn fill_ring(client: &Client) -> anyhow::Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let target = revision(client).await? + RING_EVENTS;
    let mut round = 0;
    while revision(client).await? < target {
        fill_round(&api, round).await?;
        round += 1;
    }
    for i in 0..FILL_OBJECTS {
        api.delete(&format!("soak-fill-{i}"), &DeleteParams::default())
            .await?;
    }
    Ok(round * FILL_OBJECTS)
}

/// One process's resource use at an instant.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    fds: usize,
    threads: u64,
    cpu: f64,
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn usage(pid: u32, what: &str) -> anyhow::Result<Usage> {
    let rss_kib = rss_kib(pid);
    // An exited (zombie) process has no VmRSS.
    anyhow::ensure!(rss_kib > 0, "the {what} (pid {pid}) has exited");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok(Usage {
        rss_kib,
        fds,
        threads: status_field(pid, "Threads:"),
        cpu: cpu_seconds(pid),
    })
}

/// Both processes and the workload at one sample.
#[derive(Debug, Clone, Copy)]
struct Tick {
    server: Usage,
    agent: Usage,
    ops: u64,
    errors: u64,
    /// The store's revision: every write in the cluster (controllers and nodes too).
    revision: u64,
}

/// The store's current revision, from a one-item list.
async fn revision(client: &Client) -> anyhow::Result<u64> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let list = api.list_metadata(&ListParams::default().limit(1)).await?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    Ok(rv.parse()?)
}

async fn tick(cx: &Ctx, server: u32, agent: u32) -> anyhow::Result<Tick> {
    Ok(Tick {
        server: usage(server, "server")?,
        agent: usage(agent, "agent")?,
        ops: cx.c.ops.load(Ordering::Relaxed),
        errors: cx.c.errors.load(Ordering::Relaxed),
        revision: revision(&cx.client).await?,
    })
}

/// What the server says of itself on `/metrics`, each when it exposes it.
#[derive(Debug, Default)]
struct Gauges {
    watches: Option<f64>,
    connections: Option<f64>,
    /// MiB the watch cache holds: objects and the versions only its ring keeps.
    cache_mib: Option<f64>,
}

/// The sum of the samples of `name` (every label set), if any.
fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn gauges(client: &Client) -> Gauges {
    let Ok(req) = http::Request::get("/metrics").body(Vec::new()) else {
        return Gauges::default();
    };
    let text = client.request_text(req).await.unwrap_or_default();
    let objects = metric(&text, "skiff_watch_cache_object_bytes");
    let ring = metric(&text, "skiff_watch_cache_history_bytes");
    Gauges {
        watches: metric(&text, "apiserver_longrunning_requests"),
        connections: metric(&text, "skiff_open_connections"),
        cache_mib: objects.zip(ring).map(|(o, r)| (o + r) / (1024.0 * 1024.0)),
    }
}

/// Events in the namespace now (one-item list and its remaining count).
async fn events_held(client: &Client) -> Option<u64> {
    let api: Api<Event> = Api::namespaced(client.clone(), NS);
    let list = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .ok()?;
    Some(list.items.len() as u64 + list.metadata.remaining_item_count.unwrap_or(0) as u64)
}

fn print_header() {
    println!();
    println!(
        "{:>4} {:<7} {:>8} {:>5} {:>7} {:>7} | {:>7} {:>5} {:>9} {:>6} | {:>6} {:>7} {:>6}",
        "min",
        "process",
        "RSS MiB",
        "fds",
        "threads",
        "CPU s",
        "watches",
        "conns",
        "cache MiB",
        "Events",
        "ops",
        "writes",
        "errors"
    );
}

fn usage_cols(what: &str, now: &Usage, before: &Usage) -> String {
    format!(
        "{what:<7} {:>8.1} {:>5} {:>7} {:>7.2}",
        now.rss_kib as f64 / 1024.0,
        now.fds,
        now.threads,
        now.cpu - before.cpu
    )
}

fn or_dash(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

/// Two rows for the minute from `before` to `now`: the server with the cluster-wide
/// figures, then the agent.
fn print_rows(minute: usize, before: &Tick, now: &Tick, g: &Gauges, events: Option<u64>) {
    println!(
        "{minute:>4} {} | {:>7} {:>5} {:>9} {:>6} | {:>6} {:>7} {:>6}",
        usage_cols("server", &now.server, &before.server),
        or_dash(g.watches, 0),
        or_dash(g.connections, 0),
        or_dash(g.cache_mib, 1),
        or_dash(events.map(|n| n as f64), 0),
        now.ops - before.ops,
        now.revision - before.revision,
        now.errors - before.errors
    );
    println!(
        "{:>4} {}",
        "",
        usage_cols("agent", &now.agent, &before.agent)
    );
}

/// Samples both processes every `SAMPLE_EVERY` from `start` until the run ends,
/// printing rows each minute.
async fn sample_run(
    cx: &Ctx,
    start: Instant,
    server: u32,
    agent: u32,
) -> anyhow::Result<Vec<Tick>> {
    let n = (cx.end - start).as_secs() / SAMPLE_EVERY.as_secs();
    let mut ticks = vec![tick(cx, server, agent).await?];
    print_header();
    for k in 1..=n as usize {
        tokio::time::sleep_until((start + SAMPLE_EVERY * k as u32).into()).await;
        ticks.push(tick(cx, server, agent).await?);
        if k % SAMPLES_PER_MINUTE == 0 {
            let g = gauges(&cx.client).await;
            let events = events_held(&cx.client).await;
            let before = &ticks[k - SAMPLES_PER_MINUTE];
            print_rows(k / SAMPLES_PER_MINUTE, before, &ticks[k], &g, events);
        }
    }
    Ok(ticks)
}

/// Prints one process's verdict line; true when flat.
fn judge(what: &str, base: &Usage, window: &[Usage]) -> bool {
    let rss = window.iter().map(|u| u.rss_kib).min().unwrap_or(0);
    let fds = window.iter().map(|u| u.fds).min().unwrap_or(0);
    let rss_pct = 100.0 * (rss as f64 - base.rss_kib as f64) / base.rss_kib.max(1) as f64;
    let rss_flat = rss_pct <= RSS_GROWTH_LIMIT_PCT;
    let fds_flat = fds <= base.fds + fd_margin(base.fds);
    let word = |flat: bool| if flat { "flat" } else { "growing" };
    println!(
        "{what:<7} RSS {:.1} -> {:.1} MiB ({rss_pct:+.1}%, {}), fds {} -> {} ({:+}, {})",
        base.rss_kib as f64 / 1024.0,
        rss as f64 / 1024.0,
        word(rss_flat),
        base.fds,
        fds,
        fds as i64 - base.fds as i64,
        word(fds_flat),
    );
    rss_flat && fds_flat
}

/// The end of warm-up against the last minute's floor, for both processes.
fn verdict(ticks: &[Tick], c: &Counters) -> anyhow::Result<()> {
    let n = ticks.len() - 1;
    let warm = ((n as f64 * 0.2).ceil() as usize).clamp(1, n - 1);
    let from = (n.saturating_sub(SAMPLES_PER_MINUTE) + 1).max(warm + 1);
    let secs = |i: usize| i as u64 * SAMPLE_EVERY.as_secs();
    println!();
    println!(
        "verdict: end of warm-up ({} s) against the lowest sample from {} s to {} s",
        secs(warm),
        secs(from),
        secs(n)
    );
    let window = &ticks[from..=n];
    let server: Vec<Usage> = window.iter().map(|t| t.server).collect();
    let agent: Vec<Usage> = window.iter().map(|t| t.agent).collect();
    let server_flat = judge("server", &ticks[warm].server, &server);
    let agent_flat = judge("agent", &ticks[warm].agent, &agent);
    println!(
        "(growing: RSS up more than {RSS_GROWTH_LIMIT_PCT}%, or fds up more than 10 or 10%, whichever is more)"
    );
    let (ops, errors) = (
        c.ops.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
    );
    println!(
        "workload: {ops} ops, {errors} failed, {} watch events read, {} Deployments/Jobs not converged within {} s",
        c.events.load(Ordering::Relaxed),
        c.stalls.load(Ordering::Relaxed),
        SETTLE.as_secs()
    );
    anyhow::ensure!(
        server_flat && agent_flat,
        "soak: memory or descriptors growing after warm-up"
    );
    anyhow::ensure!(
        (errors as f64) <= ERROR_SHARE_LIMIT * ops.max(1) as f64,
        "soak: {errors} of {ops} workload operations failed"
    );
    Ok(())
}

/// Waits for the workload loops to stop by themselves (each ends with the run), then
/// aborts any still inside a request.
async fn stop(mut workers: JoinSet<()>) {
    let all = async { while workers.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
    workers.abort_all();
}

fn print_plan(opts: &SoakBenchOptions) {
    println!(
        "skiff bench soak: {} minute(s) on {} simulated nodes: {DEPLOYMENTS} Deployments created, scaled 2 -> 5, rolled, scaled to 1 and deleted, over and over; {JOB_LOOPS} lanes of Jobs ({JOB_COMPLETIONS} completions of 2 s runs); {CONFIGMAPS} ConfigMaps created, updated and deleted each second; {WATCH_LOOPS} watches opened, read 2-8 s and dropped; Events expire {} s after they were last written (--event-ttl)",
        opts.minutes,
        opts.nodes,
        EVENT_TTL.as_secs()
    );
    println!(
        "Per minute: CPU s used, ops (writes and watches opened by the workload), writes (store revisions: the whole cluster's). tokio tasks are not exposed (no tokio_unstable build): threads are shown, and the server's open watches, connections, watch-cache MiB from /metrics (\"-\" where not exposed); Events held now."
    );
}

pub async fn soak(opts: SoakBenchOptions) -> anyhow::Result<()> {
    anyhow::ensure!(opts.minutes > 0, "--minutes must be at least 1");
    print_plan(&opts);
    let ttl = format!("{}s", EVENT_TTL.as_secs());
    let (server, _) = start_server_with(
        &opts.skiff,
        &["--node-monitor-grace-period", "3600", "--event-ttl", &ttl],
    )
    .await?;
    let agent = start_agent(&opts.skiff, &server, opts.nodes)?;
    let client = client_for(&server.kubeconfig).await?;
    wait_nodes(&client, opts.nodes).await?;
    let t0 = Instant::now();
    let filled = fill_ring(&client).await?;
    println!(
        "warm-up: the watch cache's {RING_EVENTS}-event ring turned over with {filled} ConfigMap writes in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let cx = Ctx {
        client,
        c: Arc::default(),
        end: start + Duration::from_secs(opts.minutes * 60),
    };
    let workers = spawn_workload(&cx);
    let ticks = sample_run(&cx, start, server.child.id(), agent.0.id()).await?;
    stop(workers).await;
    verdict(&ticks, &cx.c)
}
