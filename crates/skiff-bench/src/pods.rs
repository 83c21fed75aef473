//! `skiff bench pods`: pod startup latency on a real node (create → Running seen by a
//! watch) for 1 and for N concurrent pods, side by side with the bare CRI sequence
//! (RunPodSandbox + CreateContainer + StartContainer) against the same containerd; the
//! agent's idle RSS and CPU, containerd's reported apart. Needs root and containerd.

use super::{
    ServerProc, client_for, cpu_seconds, free_port, ms, percentile, rss_kib, start_server_with,
};
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use skiff_cri::{Cri, cri, rpc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PodsBenchOptions {
    pub skiff: PathBuf,
    /// Sequential single-pod rounds.
    pub rounds: usize,
    /// Pods started at once in the concurrent case.
    pub concurrent: usize,
}

pub(crate) const IMAGE: &str = "registry.skiff.local/pause:1";

pub(crate) struct Agent {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        super::terminate(&mut self.child);
    }
}

pub(crate) fn start_agent(skiff: &Path, server: &ServerProc) -> anyhow::Result<Agent> {
    let data = server.kubeconfig.parent().context("data dir")?;
    let token = std::fs::read_to_string(data.join("token"))?;
    let dir = tempfile::tempdir()?;
    let child = Command::new(skiff)
        .args([
            "agent",
            "--offline",
            "--kubelet-port",
            &free_port().to_string(),
            "--server",
            &format!("https://127.0.0.1:{}", server.port),
            "--token",
            token.trim(),
            "--ca-file",
        ])
        .arg(data.join("tls/ca.crt"))
        .arg("--data-dir")
        .arg(dir.path())
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(Agent { child, dir })
}

/// The pid of the containerd the agent supervises (its config lives in the agent dir).
pub(crate) fn containerd_pid(agent_dir: &Path) -> Option<u32> {
    let needle = agent_dir.join("agent/containerd/config.toml");
    let needle = needle.to_string_lossy();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.starts_with("containerd ") && cmd.contains(needle.as_ref())).then_some(pid)
    })
}

pub(crate) async fn wait_node_ready(pods_client: &kube::Client) -> anyhow::Result<()> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(pods_client.clone());
    let t0 = Instant::now();
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
            });
        if ready {
            return Ok(());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "node not ready in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `names` at once; returns each pod's create → Running time as a watch sees it.
async fn skiff_round(api: &Api<Pod>, names: &[String]) -> anyhow::Result<Vec<Duration>> {
    let rv = api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("bench=startup").timeout(120),
            &rv,
        )
        .await?
        .boxed();
    let mut started: HashMap<String, Instant> = HashMap::new();
    let creates = names.iter().map(|n| {
        let api = api.clone();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": n, "labels": {"bench": "startup"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]},
        }))
        .expect("static pod");
        async move {
            let t = Instant::now();
            api.create(&PostParams::default(), &pod).await.map(|_| (n.clone(), t))
        }
    });
    for r in futures::future::join_all(creates).await {
        let (n, t) = r?;
        started.insert(n, t);
    }
    let mut out = Vec::new();
    let mut done = std::collections::HashSet::new();
    while done.len() < names.len() {
        let ev = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .context("pods not Running within 120 s")?;
        let Some(ev) = ev else {
            anyhow::bail!("watch ended early")
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev? {
            let name = p.metadata.name.clone().unwrap_or_default();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && done.insert(name.clone()) {
                // Time runs from just before this pod's create, as the client saw it.
                if let Some(t) = started.get(&name) {
                    out.push(t.elapsed());
                }
            }
        }
    }
    // Watch events for pods already Running when we looked would be missed by the loop
    // above only if created before the watch: the watch starts first, so none are.
    for n in names {
        let _ = api
            .delete(
                n,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }
    let t0 = Instant::now();
    while !api
        .list_metadata(&ListParams::default().labels("bench=startup"))
        .await?
        .items
        .is_empty()
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "pods not deleted in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(out)
}

/// The same pods straight through CRI: sandbox, container, start, with exactly the
/// configs the agent would send for them (its own translation), minus everything else.
async fn cri_round(
    cri: &Cri,
    log_dir: &Path,
    n: usize,
    round: usize,
) -> anyhow::Result<Vec<Duration>> {
    let runs = (0..n).map(|i| {
        let mut c = cri.clone();
        let uid = format!("bench-cri-{round}-{i}");
        let pod = serde_json::json!({
            "metadata": {"name": uid, "namespace": "bench", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": IMAGE}]},
        });
        let config = skiff_agent::criconv::sandbox_config(&pod, 0, log_dir);
        let container = skiff_agent::criconv::container_config(
            &pod,
            &pod["spec"]["containers"][0],
            IMAGE,
            0,
            &[],
        );
        async move {
            let t = Instant::now();
            let sb = rpc(
                "RunPodSandbox",
                c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                }),
            )
            .await?
            .pod_sandbox_id;
            let id = rpc(
                "CreateContainer",
                c.runtime.create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sb.clone(),
                    config: Some(container),
                    sandbox_config: Some(config),
                }),
            )
            .await?
            .container_id;
            rpc(
                "StartContainer",
                c.runtime
                    .start_container(cri::StartContainerRequest { container_id: id }),
            )
            .await?;
            Ok::<_, skiff_cri::Error>((t.elapsed(), sb))
        }
    });
    let mut out = Vec::new();
    let mut sandboxes = Vec::new();
    for r in futures::future::join_all(runs).await {
        let (d, sb) = r?;
        out.push(d);
        sandboxes.push(sb);
    }
    for sb in sandboxes {
        let mut c = cri.clone();
        rpc(
            "StopPodSandbox",
            c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.clone(),
            }),
        )
        .await?;
        rpc(
            "RemovePodSandbox",
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb }),
        )
        .await?;
    }
    Ok(out)
}

fn row(label: &str, mut skiff: Vec<Duration>, mut bare: Vec<Duration>) {
    skiff.sort();
    bare.sort();
    let (s50, s99, b50, b99) = (
        percentile(&skiff, 0.5),
        percentile(&skiff, 0.99),
        percentile(&bare, 0.5),
        percentile(&bare, 0.99),
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>12} {:>8.2}x {:>8.2}x",
        label,
        ms(s50),
        ms(s99),
        ms(b50),
        ms(b99),
        s50.as_secs_f64() / b50.as_secs_f64().max(1e-9),
        s99.as_secs_f64() / b99.as_secs_f64().max(1e-9),
    );
}

pub async fn pods(opts: PodsBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench pods: create → Running, {} single-pod rounds and {} pods at once, against bare CRI on the same containerd",
        opts.rounds, opts.concurrent
    );
    let (server, _) = start_server_with(&opts.skiff, &[]).await?;
    let agent = start_agent(&opts.skiff, &server)?;
    let client = client_for(&server.kubeconfig).await?;
    wait_node_ready(&client).await?;
    let agent_pid = agent.child.id();
    let ctd_pid = containerd_pid(agent.dir.path());

    // An idle node: what the agent holds and spends with nothing to run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(agent_pid);
    let ctd_rss = ctd_pid.map_or(0, rss_kib);
    let cpu0 = cpu_seconds(agent_pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_seconds(agent_pid) - cpu0) / t0.elapsed().as_secs_f64();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let socket = agent.dir.path().join("agent/containerd/containerd.sock");
    let cri = Cri::wait_ready(socket.to_str().unwrap_or_default(), Duration::from_secs(10)).await?;
    let log_dir = agent.dir.path().join("bench-cri-logs");

    // Warm both paths once (first sandbox pays for CNI bridge creation).
    skiff_round(&pods, &["warm".to_string()]).await?;
    cri_round(&cri, &log_dir, 1, 999).await?;

    let (mut s1, mut b1) = (Vec::new(), Vec::new());
    // Alternating which goes first, so neither always follows the other's cleanup.
    for r in 0..opts.rounds {
        if r % 2 == 0 {
            s1.extend(skiff_round(&pods, &[format!("one-{r}")]).await?);
            b1.extend(cri_round(&cri, &log_dir, 1, r).await?);
        } else {
            b1.extend(cri_round(&cri, &log_dir, 1, r).await?);
            s1.extend(skiff_round(&pods, &[format!("one-{r}")]).await?);
        }
    }
    let names: Vec<String> = (0..opts.concurrent).map(|i| format!("many-{i}")).collect();
    let bn = cri_round(&cri, &log_dir, opts.concurrent, 1000).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sn = skiff_round(&pods, &names).await?;

    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "case", "skiff p50", "skiff p99", "bare CRI p50", "bare CRI p99", "p50 ratio", "p99 ratio"
    );
    row("1 pod (sequential rounds)", s1, b1);
    row(&format!("{} pods at once", opts.concurrent), sn, bn);
    println!();
    println!(
        "{:<44} {:>9.1} MB   (target < 30 MB)",
        "agent RSS, idle node",
        idle_rss as f64 / 1024.0
    );
    println!(
        "{:<44} {:>9.1} MB",
        "containerd RSS (its own, reported apart)",
        ctd_rss as f64 / 1024.0
    );
    println!(
        "{:<44} {:>9.2} %    (of one core, over 10 s)",
        "agent CPU, idle node",
        idle_cpu * 100.0
    );
    println!("target: skiff create → Running <= 1.3x the bare CRI sequence");
    drop(agent);
    drop(server);
    Ok(())
}
