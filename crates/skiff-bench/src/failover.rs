//! `skiff bench failover`: three servers on an embedded etcd cluster and a
//! simulated-node agent with its client-side balancer, then, round after round, `kill
//! -9` of the server that leads the controllers (with its etcd member, as a host going
//! down takes both) and how long until a write through the balancer succeeds, until a
//! survivor takes the `kube-controller-manager` Lease, and until its controllers act on
//! a change made after the kill. Before that, what embedded etcd costs in memory: an
//! idle one-member server against the same server on SQLite. Goals are printed beside
//! the numbers, never asserted.

use crate::cluster::Cluster;
use crate::{client_for, rss_kib, start_server_with};
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WRITE_GOAL: Duration = Duration::from_secs(2);
const ACTION_GOAL: Duration = Duration::from_secs(15);
/// Each write attempt through the balancer gives up after this.
const ATTEMPT: Duration = Duration::from_secs(1);
const STAGGER: Duration = Duration::from_millis(100);
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(10);
/// Bounds on the waits: far past the goals, so a miss shows as a number, not an error.
const WRITE_WITHIN: Duration = Duration::from_secs(30);
const ACTION_WITHIN: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const LEASE: &str = "kube-controller-manager";
const APP: &str = "failover";

#[derive(Debug, Clone)]
pub struct FailoverBenchOptions {
    /// The skiff binary to start as the servers and the agent.
    pub skiff: PathBuf,
    pub rounds: usize,
    /// How long servers sit idle before their memory is read.
    pub idle: Duration,
    /// `--etcd-arg`s for the servers of the failover rounds (e.g. a shorter
    /// `election-timeout`).
    pub etcd_args: Vec<String>,
}

/// One round's figures, from the kill.
struct Round {
    killed: String,
    /// Whether the killed server's member was etcd's leader (then writes wait for an
    /// election as well).
    etcd_leader: Option<bool>,
    write: Duration,
    tries: usize,
    takeover: Duration,
    action: Duration,
    new_leader: String,
}

pub async fn failover(opts: FailoverBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench failover: {} round(s) of kill -9 of the leading server and its etcd member, 3 servers on embedded etcd, 1 simulated node behind the agent's balancer",
        opts.rounds
    );
    idle_footprint(&opts).await?;
    let extra: Vec<&str> = opts
        .etcd_args
        .iter()
        .flat_map(|a| ["--etcd-arg", a.as_str()])
        .collect();
    if !extra.is_empty() {
        println!("servers run with {}", extra.join(" "));
    }
    let mut cluster = Cluster::start(&opts.skiff, 3, &extra).await?;
    let work = tempfile::tempdir()?;
    let s1 = client_for(&cluster.servers[0].kubeconfig()).await?;
    create_replicaset(&s1).await?;
    let first = start_agent(&opts.skiff, &cluster, 0, work.path())?;
    wait_node_ready(&s1).await?;
    wait_pods(&s1, 1).await?;
    cluster_footprint(&cluster, &opts).await;
    drop(first);
    println!();
    let mut rounds = Vec::new();
    // The ReplicaSet starts at one replica; each round scales it up by one.
    for (r, replicas) in (1..=opts.rounds).zip(2..) {
        let round = one_round(&mut cluster, &opts, work.path(), replicas).await?;
        print_round(r, &round);
        rounds.push(round);
    }
    print_summary(&rounds);
    Ok(())
}

/// Kills the leader, measures, and starts the killed server again.
async fn one_round(
    cluster: &mut Cluster,
    opts: &FailoverBenchOptions,
    work: &Path,
    replicas: i32,
) -> anyhow::Result<Round> {
    let (leader, holder) = wait_leader(cluster).await?;
    // The agent starts against the leader: its balancer then carries connections there
    // until it dies, so the measured write meets the dead server first.
    let agent = start_agent(&opts.skiff, cluster, leader, work)?;
    let lb_port = wait_balancer(&agent, cluster).await?;
    let via_lb = client_via(&cluster.servers[leader].kubeconfig(), lb_port).await?;
    let rs: Api<ReplicaSet> = Api::default_namespaced(via_lb);
    rs.get(APP).await.context("a read through the balancer")?;
    let observer = (0..cluster.servers.len())
        .find(|&i| i != leader)
        .context("no other server")?;
    let watch = client_for(&cluster.servers[observer].kubeconfig()).await?;
    let killed = cluster.servers[leader].name.clone();
    let etcd_leader = cluster.member_leads(leader);
    let t0 = cluster.servers[leader].kill9();
    let ((write, tries), seen) = tokio::join!(
        write_until_ok(&rs, replicas, t0),
        watch_takeover(&watch, &holder, replicas, t0)
    );
    let (takeover, action, new_holder) = seen?;
    drop(agent);
    cluster.restart(leader).await?;
    Ok(Round {
        killed,
        etcd_leader,
        write: write?,
        tries,
        takeover,
        action,
        new_leader: leader_name(cluster, &new_holder),
    })
}

/// The `kube-controller-manager` Lease's holder, once a running server holds it.
async fn wait_leader(cluster: &Cluster) -> anyhow::Result<(usize, String)> {
    let t0 = Instant::now();
    loop {
        for s in cluster.servers.iter().filter(|s| s.running()) {
            let Ok(c) = client_for(&s.kubeconfig()).await else {
                continue;
            };
            if let Ok(Some(holder)) = lease_holder(&c).await
                && let Some(i) = cluster.holder_index(&holder)
                && cluster.servers[i].running()
            {
                return Ok((i, holder));
            }
        }
        if t0.elapsed() > ACTION_WITHIN {
            anyhow::bail!("no running server holds the {LEASE} Lease");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn lease_holder(client: &Client) -> anyhow::Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = tokio::time::timeout(Duration::from_secs(1), leases.get_opt(LEASE)).await??;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

fn leader_name(cluster: &Cluster, holder: &str) -> String {
    match cluster.holder_index(holder) {
        Some(i) => format!("{} ({holder})", cluster.servers[i].name),
        None => holder.to_string(),
    }
}

/// Scales the ReplicaSet through the balancer until an attempt succeeds: (time from
/// the kill, attempts). Attempts overlap, one sent every `STAGGER` and again right after
/// one fails, so one held up behind etcd's election neither hides the moment the
/// cluster takes writes again nor rounds it up to a timeout.
async fn write_until_ok(
    rs: &Api<ReplicaSet>,
    replicas: i32,
    t0: Instant,
) -> (anyhow::Result<Duration>, usize) {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    let attempt = || tokio::time::timeout(ATTEMPT, rs.patch(APP, &params, &patch));
    let mut inflight = futures::stream::FuturesUnordered::new();
    let mut next = tokio::time::Instant::now();
    let mut tries = 0;
    while t0.elapsed() < WRITE_WITHIN {
        tokio::select! {
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                if let Ok(Ok(_)) = r {
                    return (Ok(t0.elapsed()), tries);
                }
                next = next.min(tokio::time::Instant::now() + RETRY_AFTER_FAILURE);
            }
            _ = tokio::time::sleep_until(next) => {
                tries += 1;
                inflight.push(attempt());
                next = tokio::time::Instant::now() + STAGGER;
            }
        }
    }
    let err = anyhow::anyhow!("no write through the balancer within {WRITE_WITHIN:?}");
    (Err(err), tries)
}

/// Polls a surviving server until another server holds the Lease and its replicaset
/// controller has made the pod the scale asked for: (takeover, action, new holder).
async fn watch_takeover(
    client: &Client,
    old: &str,
    replicas: i32,
    t0: Instant,
) -> anyhow::Result<(Duration, Duration, String)> {
    let mut takeover = None;
    while t0.elapsed() < ACTION_WITHIN {
        if takeover.is_none()
            && let Ok(Some(h)) = lease_holder(client).await
            && h != old
        {
            takeover = Some((t0.elapsed(), h));
        }
        if let Some((at, holder)) = &takeover
            && let Ok(n) = live_pods(client).await
            && n >= replicas as usize
        {
            return Ok((*at, t0.elapsed(), holder.clone()));
        }
        tokio::time::sleep(POLL).await;
    }
    anyhow::bail!("no controller action within {ACTION_WITHIN:?} of the kill")
}

/// The ReplicaSet's pods not being deleted.
async fn live_pods(client: &Client) -> anyhow::Result<usize> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = ListParams::default().labels(&format!("app={APP}"));
    let list = tokio::time::timeout(Duration::from_secs(1), pods.list_metadata(&lp)).await??;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count())
}

async fn wait_pods(client: &Client, n: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while live_pods(client).await.unwrap_or(0) < n {
        if t0.elapsed() > ACTION_WITHIN {
            anyhow::bail!("the ReplicaSet did not reach {n} pod(s)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn create_replicaset(client: &Client) -> anyhow::Result<()> {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/bench:1"}]}
            }
        }
    }))?;
    Api::<ReplicaSet>::default_namespaced(client.clone())
        .create(&PostParams::default(), &rs)
        .await?;
    Ok(())
}

async fn wait_node_ready(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    loop {
        let ready = nodes.get_opt("ha-0").await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return Ok(());
        }
        if t0.elapsed() > ACTION_WITHIN {
            anyhow::bail!("node ha-0 not Ready within {ACTION_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A simulated-node agent process; SIGTERM when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        crate::terminate(&mut self.child);
    }
}

/// `skiff agent --simulate 1` joined through server `via`, its balancer on a port of
/// its choosing (read back from its log).
fn start_agent(skiff: &Path, cluster: &Cluster, via: usize, work: &Path) -> anyhow::Result<Agent> {
    let data = cluster.servers[0].data_dir();
    let token = std::fs::read_to_string(data.join("token")).context("the agents' token")?;
    let log = work.join("agent.log");
    let child = Command::new(skiff)
        .args([
            "agent",
            "--simulate",
            "1",
            "--simulate-prefix",
            "ha",
            "--lb-server-port",
            "0",
        ])
        .arg(format!(
            "--server=https://127.0.0.1:{}",
            cluster.servers[via].port
        ))
        .arg(format!("--token={}", token.trim()))
        .arg("--ca-file")
        .arg(data.join("tls/ca.crt"))
        // Info: the balancer logs where it listens and the servers it learned.
        .env("SKIFF_LOG", "warn,skiff_agent::apilb=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", skiff.display()))?;
    Ok(Agent { child, log })
}

/// The balancer's port, once it has learned every running server from the Endpoints.
async fn wait_balancer(agent: &Agent, cluster: &Cluster) -> anyhow::Result<u16> {
    let want: Vec<String> = cluster
        .servers
        .iter()
        .filter(|s| s.running())
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
        if let Some(port) = balancer_port(&log, &want) {
            return Ok(port);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the agent's balancer did not learn every server:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From the agent's log: the balancer's port, once it lists every address in `want`.
fn balancer_port(log: &str, want: &[String]) -> Option<u16> {
    let port = log
        .lines()
        .find(|l| l.contains("API load balancer started"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("listen=")))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())?
        .port();
    // `servers=[a, b, c]`: each address whole, not a prefix of a longer port.
    let learned = log.lines().any(|l| {
        l.contains("API servers")
            && want
                .iter()
                .all(|w| l.contains(&format!("{w},")) || l.contains(&format!("{w}]")))
    });
    learned.then_some(port)
}

/// The admin of `kubeconfig`, through the balancer on `port`, giving up on a connect
/// or a read after one attempt's time.
async fn client_via(kubeconfig: &Path, port: u16) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.cluster_url = format!("https://127.0.0.1:{port}").parse()?;
    cfg.connect_timeout = Some(ATTEMPT);
    cfg.read_timeout = Some(ATTEMPT);
    Ok(Client::try_from(cfg)?)
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Idle memory of one server on a one-member embedded etcd against the same server on
/// SQLite, side by side.
async fn idle_footprint(opts: &FailoverBenchOptions) -> anyhow::Result<()> {
    let (sqlite, _) = start_server_with(&opts.skiff, &[]).await?;
    let etcd = Cluster::start(&opts.skiff, 1, &[]).await?;
    tokio::time::sleep(opts.idle).await;
    let lite = rss_kib(sqlite.child.id());
    let (server, member) = etcd.servers[0].rss_kib();
    println!();
    println!(
        "{:<44} {:>10} {:>12} {:>10}",
        format!("idle RSS after {} s", opts.idle.as_secs()),
        "server",
        "etcd member",
        "total"
    );
    println!(
        "{:<44} {:>7.1} MB {:>12} {:>7.1} MB",
        "SQLite",
        mb(lite),
        "-",
        mb(lite)
    );
    println!(
        "{:<44} {:>7.1} MB {:>9.1} MB {:>7.1} MB   ({:.2}x SQLite's)",
        "embedded etcd, one member (--cluster-init)",
        mb(server),
        mb(member),
        mb(server + member),
        (server + member) as f64 / lite.max(1) as f64
    );
    Ok(())
}

/// The same after the three-member cluster has sat idle with its agent's node.
async fn cluster_footprint(cluster: &Cluster, opts: &FailoverBenchOptions) {
    tokio::time::sleep(opts.idle).await;
    for s in &cluster.servers {
        let (server, member) = s.rss_kib();
        println!(
            "{:<44} {:>7.1} MB {:>9.1} MB {:>7.1} MB",
            format!("embedded etcd, three members: {}", s.name),
            mb(server),
            mb(member),
            mb(server + member)
        );
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn print_round(n: usize, r: &Round) {
    println!(
        "round {n}: killed {}{}; a write through the balancer after {} ({} attempt(s)); Lease taken over after {}; first pod by the new leader after {}; new leader {}",
        r.killed,
        match r.etcd_leader {
            Some(true) => " (its member led etcd)",
            Some(false) => " (its member did not lead etcd)",
            None => "",
        },
        secs(r.write),
        r.tries,
        secs(r.takeover),
        secs(r.action),
        r.new_leader
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2
    }
}

fn print_summary(rounds: &[Round]) {
    println!();
    let cells = |f: &dyn Fn(&Round) -> String| -> String {
        rounds.iter().map(|r| format!("{:>9}", f(r))).collect()
    };
    let timed = |label: &str, f: &dyn Fn(&Round) -> Duration, goal: Option<Duration>| {
        let m = median(rounds.iter().map(f).collect());
        let (goal, within) = match goal {
            Some(g) => (
                format!("<= {} s", g.as_secs()),
                format!(
                    "   ({} of {} within)",
                    rounds.iter().filter(|r| f(r) <= g).count(),
                    rounds.len()
                ),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "{label:<44}{} {:>9} {goal:>8}{within}",
            cells(&|r| secs(f(r))),
            secs(m)
        );
    };
    let heads: String = (1..=rounds.len())
        .map(|n| format!("{:>9}", format!("round {n}")))
        .collect();
    println!(
        "{:<44}{heads} {:>9} {:>8}",
        "from kill -9 of the leading server", "median", "goal"
    );
    println!("{:<44}{}", "killed", cells(&|r| r.killed.clone()));
    println!(
        "{:<44}{}",
        "  whose etcd member led etcd",
        cells(&|r| match r.etcd_leader {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => "?".into(),
        })
    );
    timed(
        "to a write through the balancer",
        &|r| r.write,
        Some(WRITE_GOAL),
    );
    timed(
        &format!("to the {LEASE} Lease taken"),
        &|r| r.takeover,
        None,
    );
    timed(
        "to the first controller action",
        &|r| r.action,
        Some(ACTION_GOAL),
    );
    println!(
        "{:<44}{}",
        "new leader",
        cells(&|r| r.new_leader.split(' ').next().unwrap_or("").to_string())
    );
    println!(
        "(a survivor takes the Lease once it has gone 15 s unrenewed, trying every 2 s, as client-go's leader election does; write attempts overlap, one every {} ms and each given {} ms)",
        STAGGER.as_millis(),
        ATTEMPT.as_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balancer_port_once_every_server_is_listed() {
        let want = vec!["127.0.0.1:4431".to_string(), "127.0.0.1:4432".to_string()];
        let started = "INFO skiff_agent::apilb: API load balancer started listen=127.0.0.1:39001 server=127.0.0.1:4431\n";
        assert_eq!(balancer_port(started, &want), None);
        let partial = format!(
            "{started}INFO skiff_agent::apilb: API servers servers=[127.0.0.1:44310, 127.0.0.1:4432]\n"
        );
        assert_eq!(
            balancer_port(&partial, &want),
            None,
            "a longer port is not the one wanted"
        );
        let all = format!(
            "{started}INFO skiff_agent::apilb: API servers servers=[127.0.0.1:4431, 127.0.0.1:4432]\n"
        );
        assert_eq!(balancer_port(&all, &want), Some(39001));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Duration::from_secs;
        assert_eq!(median(vec![s(3), s(1), s(2)]), s(2));
        assert_eq!(
            median(vec![s(4), s(1), s(2), s(3)]),
            Duration::from_millis(2500)
        );
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }
}
