//! `skiff bench workloads`: a Deployment of many replicas on simulated nodes, through
//! the real controllers, scheduler and agents — time until all are available, then a
//! rolling update (maxSurge 25 %) until it completes — as pods/s beside the same number
//! of bare pods created directly and run through the same scheduler and nodes, in one
//! run.

use crate::{
    ServerProc, client_for, cpu_seconds, rss_kib, start_agent, start_server_with, wait_nodes,
};
use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct WorkloadsBenchOptions {
    pub skiff: PathBuf,
    pub nodes: usize,
    pub replicas: usize,
    pub concurrency: usize,
}

const POLL: Duration = Duration::from_millis(100);

async fn running_count(api: &Api<Pod>, label: &str) -> anyhow::Result<usize> {
    let lp = ListParams::default()
        .labels(label)
        .fields("status.phase=Running");
    Ok(api.list_metadata(&lp).await?.items.len())
}

/// Bare pods created by a client at `concurrency`, until all run.
async fn bare_pods(client: &Client, n: usize, concurrency: usize) -> anyhow::Result<Duration> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let t0 = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = (0..concurrency).map(|_| async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                return Ok::<_, anyhow::Error>(());
            }
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("bare-{i}"), "labels": {"bench": "bare"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            }))?;
            api.create(&PostParams::default(), &pod).await?;
        }
    });
    for r in futures::future::join_all(work).await {
        r?;
    }
    loop {
        if running_count(&api, "bench=bare").await? >= n {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "bare pods did not all run in 10 minutes"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Until the Deployment reports every replica updated and available at its generation.
async fn rolled_out(
    api: &Api<Deployment>,
    name: &str,
    n: i32,
    t0: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let d = api.get(name).await?;
        let generation = d.metadata.generation.unwrap_or(0);
        if let Some(s) = &d.status
            && s.observed_generation.unwrap_or(0) >= generation
            && s.updated_replicas.unwrap_or(0) == n
            && s.available_replicas.unwrap_or(0) == n
            && s.replicas.unwrap_or(0) == n
        {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(900),
            "deployment {name} did not roll out in 15 minutes"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub async fn workloads(opts: WorkloadsBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench workloads: a {}-replica Deployment on {} simulated nodes, against {} bare pods",
        opts.replicas, opts.nodes, opts.replicas
    );
    let (server, _): (ServerProc, _) =
        start_server_with(&opts.skiff, &["--node-monitor-grace-period", "3600"]).await?;
    let _agent = start_agent(&opts.skiff, &server, opts.nodes)?;
    let client = client_for(&server.kubeconfig).await?;
    wait_nodes(&client, opts.nodes).await?;

    let pid = server.child.id();
    let cpu0 = cpu_seconds(pid);
    let bare = bare_pods(&client, opts.replicas, opts.concurrency).await?;
    let bare_cpu = cpu_seconds(pid) - cpu0;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete_collection(
        &Default::default(),
        &ListParams::default().labels("bench=bare"),
    )
    .await
    .context("removing the bare pods")?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let n = opts.replicas as i32;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
        },
    }))?;
    let t0 = Instant::now();
    let cpu0 = cpu_seconds(pid);
    deployments.create(&PostParams::default(), &d).await?;
    let create = rolled_out(&deployments, "web", n, t0).await?;
    let create_cpu = cpu_seconds(pid) - cpu0;
    // The server (API, store, every controller's view) holding the Deployment's pods.
    let rss_up = rss_kib(pid) as f64 / 1024.0;
    let t1 = Instant::now();
    let cpu0 = cpu_seconds(pid);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let update = rolled_out(&deployments, "web", n, t1).await?;
    let update_cpu = cpu_seconds(pid) - cpu0;

    let rate = |d: Duration| opts.replicas as f64 / d.as_secs_f64();
    println!();
    println!(
        "{:<40} {:>10} {:>10} {:>12} {:>14}",
        "case", "seconds", "pods/s", "vs bare pods", "server CPU s"
    );
    println!(
        "{:<40} {:>10.2} {:>10.0} {:>12} {:>14.2}",
        format!("{} bare pods created → Running", opts.replicas),
        bare.as_secs_f64(),
        rate(bare),
        "1.00x",
        bare_cpu
    );
    for (label, d, cpu) in [
        (
            format!("Deployment {} replicas → all available", opts.replicas),
            create,
            create_cpu,
        ),
        (
            "rolling update (maxSurge 25%) → complete".to_string(),
            update,
            update_cpu,
        ),
    ] {
        println!(
            "{:<40} {:>10.2} {:>10.0} {:>11.2}x {:>14.2}",
            label,
            d.as_secs_f64(),
            rate(d),
            rate(d) / rate(bare),
            cpu
        );
    }
    println!();
    println!(
        "server RSS with the {} replicas available: {:.1} MB",
        opts.replicas, rss_up
    );
    println!(
        "bare pods: created by the benchmark client at concurrency {}; the same scheduler and simulated nodes run both.",
        opts.concurrency
    );
    Ok(())
}
