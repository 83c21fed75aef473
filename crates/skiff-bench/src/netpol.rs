//! `skiff bench netpol`: NetworkPolicy enforcement on a real node (the network lab's:
//! its own namespace, the real server and agent binaries, containerd), with `--pods`
//! pods and `--policies` policies in the cluster, measured as users meet it:
//!
//! - programming latency: an allowing policy created → the first response through it,
//!   and deleted → the first connection dropped, from a client outside the cluster (the
//!   lab's peer namespace, routed through the node, so its packets meet the node's
//!   forward hook as any pod's peer's do);
//! - per-packet cost: HTTP/1.0 requests on fresh connections (the first packet of each
//!   is the one a policy decides on) to a pod that all those policies isolate, against
//!   the same request to a pod no policy selects, interleaved;
//! - the decision alone ("simulated"): the node's rule set evaluated and rendered from
//!   the same objects in this process, without the API or the kernel.
//!
//! The pods are simulated: API objects on nodes that do not exist, with addresses and
//! labels that the policies' peers resolve to, and no containers (the pod garbage
//! collector is off, so nothing removes them); the two pods probed are real.
//! Figures are printed beside the goals; nothing is asserted.

use super::netlab::{self, HTTPD_IMAGE, Lab, LabInfo, NAMESPACE, sock};
use super::proxy::{compare, first_response, get_once};
use super::{ms, percentile};
use anyhow::{Context, anyhow, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct NetpolBenchOptions {
    pub skiff: PathBuf,
    pub policies: usize,
    pub pods: usize,
    /// Policies created (then deleted) and timed.
    pub samples: usize,
    /// Requests per pod for the per-packet cost.
    pub requests: usize,
}

const GOAL_P99: Duration = Duration::from_millis(200);
const GOAL_PACKET: f64 = 1.1;
/// The namespace of the pod no policy selects.
const OPEN_NAMESPACE: &str = "skb-open";
const CONCURRENCY: usize = 32;

pub async fn netpol(opts: NetpolBenchOptions) -> anyhow::Result<()> {
    netlab::preflight(&[])?;
    ensure!(opts.samples > 0, "--samples must be at least 1");
    println!(
        "skiff bench netpol: {} policies, {} pods, {} samples, {} requests per pod",
        opts.policies, opts.pods, opts.samples, opts.requests
    );
    println!("{}", netlab::load_note());
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Pods on nodes that do not exist stay: the pod garbage collector would take them.
    let mut lab = Lab::create_with(&opts.skiff, &["--disable", "pod-garbage-collector"])?;
    let result = tokio::select! {
        r = run(&mut lab, &opts) => r,
        _ = sigint.recv() => Err(anyhow!("interrupted")),
    };
    if let Err(e) = &result {
        lab.print_log_tails();
        eprintln!("failed: {e:#}");
    }
    eprintln!("taking the node down");
    drop(lab);
    result.map(|r| r.print(&opts))
}

async fn run(lab: &mut Lab, opts: &NetpolBenchOptions) -> anyhow::Result<Report> {
    lab.start_agent().await?;
    let info = lab.info()?;
    // The peer reaches pod addresses through the node, as another node's pods would.
    let peer = lab.peer_ns();
    let out = std::process::Command::new("ip")
        .args(["-n", &peer, "route", "add", "10.42.0.0/16", "via"])
        .arg(netlab::NODE_IP.to_string())
        .output()?;
    ensure!(
        out.status.success(),
        "route in {peer}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opts = opts.clone();
    let peer_path = PathBuf::from(format!("/run/netns/{peer}"));
    let mut report = netlab::in_netns(peer_path, move || measure(info, opts)).await?;
    report.problems = lab.log_problems("agent.log");
    report.syncs = netpol_syncs(&lab.dir().join("agent.log"));
    Ok(report)
}

/// The agent's own time per table update ("network policies applied ... ms=").
fn netpol_syncs(log: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("network policies applied"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("ms=")?.parse().ok())
        })
        .collect()
}

#[derive(Default)]
struct Report {
    decide: Vec<Duration>,
    allow: Vec<Duration>,
    deny: Vec<Duration>,
    missed: usize,
    packet: Option<[(Duration, Duration, usize); 2]>,
    problems: Vec<String>,
    syncs: Vec<f64>,
}

async fn measure(info: LabInfo, opts: NetpolBenchOptions) -> anyhow::Result<Report> {
    // From the peer, the API is at the node's address (its certificate names it).
    let kc = kube::config::Kubeconfig::read_from(&info.kubeconfig)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.cluster_url = format!("https://{}:6443", netlab::NODE_IP).parse()?;
    let client = Client::try_from(cfg)?;
    netlab::wait_node_ready(&client).await?;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": OPEN_NAMESPACE}}))?,
    )
    .await?;
    let target = real_pod(&client, NAMESPACE, "skb-target").await?;
    let open = real_pod(&client, OPEN_NAMESPACE, "skb-open").await?;
    // Before any policy: the target answers the peer (so "dropped" below can be told).
    ensure!(
        first_response(target, Duration::from_secs(10))
            .await
            .is_some(),
        "the target pod does not answer without policies"
    );
    eprintln!("  creating {} simulated pods", opts.pods);
    let pods = simulated_pods(&client, opts.pods).await?;
    eprintln!("  creating {} policies", opts.policies);
    let policies = background_policies(&client, opts.policies).await?;
    let mut report = Report::default();
    // Isolated by the background policies, the target stops answering the peer.
    ensure!(
        until_dropped(target, Duration::from_secs(30))
            .await
            .is_some(),
        "the target pod still answers with {} policies selecting it",
        opts.policies
    );
    report.decide = decide(&policies, &pods);
    for k in 0..opts.samples {
        match sample(&client, target, k).await? {
            Some((allow, deny)) => {
                report.allow.push(allow);
                report.deny.push(deny);
            }
            None => report.missed += 1,
        }
    }
    let allow = allowing_policy("skb-allow-packets");
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    api.create(&PostParams::default(), &allow).await?;
    first_response(target, Duration::from_secs(30))
        .await
        .context("the allowing policy never let the peer in")?;
    let n = opts.requests;
    let stats = tokio::task::spawn_blocking(move || compare([open, target], n)).await??;
    report.packet = Some(stats.map(|s| {
        let mut lat = s.lat;
        lat.sort();
        (percentile(&lat, 0.5), percentile(&lat, 0.99), s.failures)
    }));
    Ok(report)
}

/// One allowing policy created, then deleted: how long until each shows on the wire.
async fn sample(
    client: &Client,
    target: SocketAddr,
    k: usize,
) -> anyhow::Result<Option<(Duration, Duration)>> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    let name = format!("skb-allow-{k}");
    let t0 = Instant::now();
    api.create(&PostParams::default(), &allowing_policy(&name))
        .await?;
    let Some(allowed) = first_response(target, Duration::from_secs(10)).await else {
        api.delete(&name, &DeleteParams::default()).await?;
        until_dropped(target, Duration::from_secs(10)).await;
        return Ok(None);
    };
    let t1 = Instant::now();
    api.delete(&name, &DeleteParams::default()).await?;
    let Some(dropped) = until_dropped(target, Duration::from_secs(10)).await else {
        return Ok(None);
    };
    Ok(Some((allowed - t0, dropped - t1)))
}

/// The start of the first new connection to `addr` that is not answered (its SYN
/// dropped), trying one every 2 ms; `None` if all are answered until `deadline`.
async fn until_dropped(addr: SocketAddr, deadline: Duration) -> Option<Instant> {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_millis(50), get_once(addr)).await {
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(2)).await,
            _ => return Some(t),
        }
    }
    None
}

fn allowing_policy(name: &str) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"podSelector": {"matchLabels": {"app": "skb-target"}},
                 "ingress": [{"from": [{"ipBlock": {"cidr": "198.19.0.0/24"}}]}]},
    }))
    .expect("a valid policy")
}

/// A real httpd pod; its address and port.
async fn real_pod(client: &Client, namespace: &str, name: &str) -> anyhow::Result<SocketAddr> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 0, "enableServiceLinks": false,
                 "containers": [{"name": "httpd", "image": HTTPD_IMAGE, "imagePullPolicy": "IfNotPresent",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let t0 = Instant::now();
    loop {
        let p = pods.get(name).await?;
        let st = p.status.unwrap_or_default();
        let ready = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if let (true, Some(ip)) = (
            ready,
            st.pod_ip
                .as_deref()
                .and_then(|i| i.parse::<Ipv4Addr>().ok()),
        ) {
            return Ok(sock(ip, 8080));
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "{name} not Ready in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pod `i` of the simulated ones: on a node that does not exist, with an address.
fn simulated_pod(i: usize) -> (Value, Ipv4Addr) {
    let ip = Ipv4Addr::new(10, 42, 100 + (i / 250) as u8, (i % 250 + 1) as u8);
    let pod = json!({
        "metadata": {"name": format!("skb-sim-{i}"),
                     "labels": {"app": format!("skb-bg-{}", i % 50), "role": format!("client-{}", i % 100)}},
        "spec": {"nodeName": format!("skb-absent-{}", i % 10),
                 "containers": [{"name": "c", "image": HTTPD_IMAGE,
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    });
    (pod, ip)
}

async fn simulated_pods(client: &Client, n: usize) -> anyhow::Result<Vec<skiff_netpol::Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let (pod, ip) = simulated_pod(i);
                let created = api.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
                let status = json!({"status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}});
                let name = created.metadata.name.clone().unwrap_or_default();
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                anyhow::Ok(view(&created, ip))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

fn view(p: &Pod, ip: Ipv4Addr) -> skiff_netpol::Pod {
    skiff_netpol::Pod {
        namespace: NAMESPACE.into(),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        ips: vec![IpAddr::V4(ip)],
        ports: vec![skiff_netpol::NamedPort {
            name: "http".into(),
            protocol: skiff_netpol::Protocol::Tcp,
            port: 8080,
        }],
        host_network: false,
    }
}

/// Policy `i`: every other one selects every pod of the namespace (the target among
/// them) and lets in one client role on 8080; the rest select a group of the simulated
/// pods and allow in from the namespace's pods of a role and out to the pod network
/// less a /24.
fn background_policy(i: usize) -> Value {
    let spec = if i.is_multiple_of(2) {
        json!({"podSelector": {},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": format!("client-{}", i % 100)}}}],
                            "ports": [{"protocol": "TCP", "port": 8080}]}]})
    } else {
        json!({"podSelector": {"matchLabels": {"app": format!("skb-bg-{}", i % 50)}},
               "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                                      "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": [format!("client-{}", i % 100)]}]}}],
                            "ports": [{"protocol": "TCP", "port": "http"}]}],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.42.0.0/16", "except": [format!("10.42.{}.0/24", 100 + i % 4)]}}]}]})
    };
    json!({"metadata": {"name": format!("skb-bg-{i}")}, "spec": spec})
}

async fn background_policies(client: &Client, n: usize) -> anyhow::Result<Vec<NetworkPolicy>> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let p: NetworkPolicy = serde_json::from_value(background_policy(i))?;
                Ok::<_, anyhow::Error>(api.create(&PostParams::default(), &p).await?)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// The node's decision alone, from the same objects: the isolation of a pod every
/// background policy of the first kind selects, and its rules rendered, per change.
fn decide(policies: &[NetworkPolicy], pods: &[skiff_netpol::Pod]) -> Vec<Duration> {
    let namespaces = vec![skiff_netpol::Namespace {
        name: NAMESPACE.into(),
        labels: [(
            "kubernetes.io/metadata.name".to_string(),
            NAMESPACE.to_string(),
        )]
        .into(),
    }];
    let local: Vec<&skiff_netpol::Pod> = pods.iter().take(10).collect();
    (0..20)
        .map(|_| {
            let t = Instant::now();
            let compiled = skiff_netpol::Policies::new(policies);
            let iso: Vec<_> = local
                .iter()
                .map(|p| {
                    (
                        p.ips[0],
                        skiff_netpol::evaluate(&compiled, p, pods, &namespaces),
                    )
                })
                .collect();
            let refs: Vec<_> = iso.iter().map(|(ip, i)| (*ip, i)).collect();
            std::hint::black_box(skiff_netpol::nft::ruleset(&refs));
            t.elapsed()
        })
        .collect()
}

impl Report {
    fn print(&self, opts: &NetpolBenchOptions) {
        let sorted = |v: &[Duration]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let (decide, allow, deny) = (
            sorted(&self.decide),
            sorted(&self.allow),
            sorted(&self.deny),
        );
        println!();
        println!("with {} policies and {} pods:", opts.policies, opts.pods);
        println!("{:<44} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
        let row = |name: &str, v: &[Duration]| {
            println!(
                "{name:<44} {:>10} {:>10} {:>10}",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.99)),
                ms(v.last().copied().unwrap_or_default())
            );
        };
        row("decision (10 pods' rules, in process)", &decide);
        row("policy created -> enforced (allowed)", &allow);
        row("policy deleted -> enforced (dropped)", &deny);
        let worst = percentile(&allow, 0.99).max(percentile(&deny, 0.99));
        println!(
            "programming p99 {} (goal <= {}); {} of {} samples never showed",
            ms(worst),
            ms(GOAL_P99),
            self.missed,
            opts.samples
        );
        if !self.syncs.is_empty() {
            let mut s = self.syncs.clone();
            s.sort_by(f64::total_cmp);
            println!(
                "agent table updates: {} (ms each: p50 {:.1}, max {:.1})",
                s.len(),
                s[s.len() / 2],
                s[s.len() - 1]
            );
        }
        if let Some([(o50, o99, of), (t50, t99, tf)]) = self.packet {
            println!();
            println!("per request (fresh connection), {} each:", opts.requests);
            println!(
                "  no policy selects it       p50 {} p99 {} ({of} failed)",
                ms(o50),
                ms(o99)
            );
            println!(
                "  {} policies select it   p50 {} p99 {} ({tf} failed)",
                opts.policies,
                ms(t50),
                ms(t99)
            );
            println!(
                "  ratio p50 {:.2}x, p99 {:.2}x (goal <= {GOAL_PACKET:.1}x)",
                t50.as_secs_f64() / o50.as_secs_f64().max(1e-9),
                t99.as_secs_f64() / o99.as_secs_f64().max(1e-9)
            );
        }
        super::proxy::print_problems(&self.problems);
    }
}
