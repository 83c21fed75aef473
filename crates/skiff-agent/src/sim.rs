//! Simulated nodes (in the manner of kwok): real Node objects, Leases and pod statuses,
//! no containers. Pods bound to a simulated node become Running with an IP from the
//! node's podCIDR; pods that do not restart forever (Jobs) finish after a simulated run
//! time, settable per pod with annotations; graceful deletions complete at once.

use crate::node::{self, NodeSpec};
use crate::runtime::Runtime;
use crate::{Result, now};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Run time of a simulated container, in seconds (default 1).
pub const RUN_SECONDS_ANNOTATION: &str = "skiff.io/simulate-run-seconds";
/// Exit code of a simulated container (default 0).
pub const EXIT_CODE_ANNOTATION: &str = "skiff.io/simulate-exit-code";

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub count: usize,
    pub prefix: String,
    pub capacity: BTreeMap<String, String>,
}

impl SimOptions {
    pub fn default_capacity() -> BTreeMap<String, String> {
        [
            ("cpu", "8"),
            ("memory", "32Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "100Gi"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Parses `cpu=4,memory=8Gi,pods=110` over the defaults.
    pub fn parse_capacity(s: &str) -> Result<BTreeMap<String, String>, String> {
        let mut c = Self::default_capacity();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("capacity entry {part:?} is not name=quantity"))?;
            c.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(c)
    }
}

/// Node names and specs of a simulated fleet.
pub fn fleet(opts: &SimOptions) -> Vec<NodeSpec> {
    (0..opts.count)
        .map(|i| {
            let name = format!("{}-{i}", opts.prefix);
            let labels: BTreeMap<String, String> = [
                ("kubernetes.io/hostname", name.as_str()),
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
                ("node.kubernetes.io/instance-type", "skiff-simulated"),
                ("type", "simulated"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            NodeSpec {
                name,
                labels,
                capacity: opts.capacity.clone(),
                allocatable: opts.capacity.clone(),
                // From the benchmarking range: never routed, never a traffic target.
                internal_ip: format!("198.18.{}.{}", i / 250, i % 250 + 1),
                runtime_version: "skiff-sim://0.1.0".into(),
                os_image: "skiff simulated node".into(),
                kernel_version: "simulated".into(),
                // No endpoint: simulated nodes have no logs, and their addresses must
                // never be dialled.
                kubelet_port: 0,
                // Made up, one per simulated node, in the shape of the real ones.
                ids: crate::node::HostIds {
                    machine_id: format!("{i:032x}"),
                    system_uuid: format!("00000000-0000-0000-0000-{i:012x}"),
                    boot_id: format!("00000000-0000-0000-0000-{i:012x}"),
                },
            }
        })
        .collect()
}

struct State {
    nodes: HashMap<String, NodeSpec>,
    cidrs: HashMap<String, String>,
    /// Pod IPs in use per node.
    ips: HashMap<String, HashSet<String>>,
    /// Pods with a completion timer running.
    finishing: HashSet<String>,
    /// Nodes of the cluster holding a range from IPAM (10.42.0.0/16 has 256 of them).
    ipam_assigned: HashSet<String>,
    /// When each node last reposted its status because the API showed it not Ready.
    reposted: HashMap<String, std::time::Instant>,
}

/// The simulated containers, shared by all simulated nodes (pods are keyed by uid).
fn runtime() -> &'static crate::fake::FakeRuntime {
    static RT: std::sync::OnceLock<crate::fake::FakeRuntime> = std::sync::OnceLock::new();
    RT.get_or_init(crate::fake::FakeRuntime::new)
}

/// Each simulated node's client, by node name.
type Clients = Arc<HashMap<String, kube::Client>>;

/// Runs the fleet until `shutdown`. `connect` gives each node its client: as a real
/// node, each acts as `system:node:<name>` with its own certificate (bootstrapped when
/// its first request waits for it), so the Node authorizer and NodeRestriction see each.
pub async fn run(
    connect: impl Fn(&str) -> kube::Client,
    opts: SimOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let specs = fleet(&opts);
    let Some(first) = specs.first().map(|s| s.name.clone()) else {
        return Ok(());
    };
    // Sixteen nodes join at a time (bootstrap, registration, first Lease), so a large
    // fleet does not open thousands of bootstrap connections at once.
    let clients: Clients = Arc::new(
        futures::stream::iter(specs.clone())
            .map(|s| {
                let client = connect(&s.name);
                async move {
                    if let Err(e) = node::register(&client, &s, true).await {
                        tracing::warn!(node = %s.name, error = %e, "registration failed");
                    }
                    let _ = node::renew_lease(&client, &s.name).await;
                    (s.name, client)
                }
            })
            .buffer_unordered(16)
            .collect::<HashMap<_, _>>()
            .await,
    );
    // The fleet's shared view of pods and nodes goes through one of its nodes.
    let client = clients[&first].clone();
    tracing::info!(nodes = specs.len(), "simulated nodes registered");
    let state = Arc::new(Mutex::new(State {
        nodes: specs.iter().map(|s| (s.name.clone(), s.clone())).collect(),
        cidrs: HashMap::new(),
        ips: HashMap::new(),
        finishing: HashSet::new(),
        ipam_assigned: HashSet::new(),
        reposted: HashMap::new(),
    }));

    // Heartbeats: each node renews its Lease every 10 s and reports status every minute,
    // spread evenly over the period as independent kubelets would be, not in bursts.
    // Registration has just done both, so the first round is one period away.
    spawn_staggered(
        clients.clone(),
        specs.clone(),
        node::LEASE_RENEW,
        shutdown.clone(),
        |c, s| {
            Box::pin(async move {
                let _ = node::renew_lease(&c, &s.name).await;
            })
        },
    );
    spawn_staggered(
        clients.clone(),
        specs.clone(),
        node::STATUS_REFRESH,
        shutdown.clone(),
        |c, s| {
            Box::pin(async move {
                let _ = node::report_status(&c, &s, true, false).await;
            })
        },
    );

    // One local-path provisioner for the whole fleet: volumes without directories.
    tokio::spawn(crate::localpath::run(
        client.clone(),
        crate::localpath::Options {
            nodes: specs.iter().map(|s| s.name.clone()).collect(),
            base: None,
        },
        shutdown.clone(),
    ));
    let mut pods_rx =
        reflect::watch_values(client.clone(), "/api/v1/pods", Some("spec.nodeName!="));
    let mut nodes_rx = reflect::watch_values(client.clone(), "/api/v1/nodes", None);
    loop {
        let change = tokio::select! {
            c = pods_rx.recv() => match c { Some(c) => c, None => return Ok(()) },
            c = nodes_rx.recv() => {
                let Some(c) = c else { return Ok(()) };
                // A node the API shows not Ready (the lifecycle controller marked it
                // Unknown) says it is ready again at once, as kubelet does on its next
                // 10 s status check, rather than on the minute's refresh.
                for spec in learn_nodes(&state, c) {
                    let client = clients[&spec.name].clone();
                    tokio::spawn(async move {
                        let _ = node::report_status(&client, &spec, true, true).await;
                    });
                }
                continue;
            }
            _ = shutdown.changed() => return Ok(()),
        };
        let pods = match change {
            Change::Reset(items) => items,
            Change::Apply(p) => vec![p],
            Change::Delete(_) => continue,
        };
        for pod in pods {
            let Some(client) = pod["spec"]["nodeName"]
                .as_str()
                .and_then(|n| clients.get(n))
                .cloned()
            else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(&client, &state, &pod).await {
                    tracing::debug!(pod = pod["metadata"]["name"].as_str().unwrap_or(""), error = %e, "simulated pod update failed");
                }
            });
        }
    }
}

/// Pod CIDRs of our nodes as IPAM assigns them, and whether IPAM's range is used up.
/// Returns our nodes whose status must be reposted (shown not Ready; at most once per
/// lease period each, so a controller disagreeing is not answered in a loop).
fn learn_nodes(state: &Arc<Mutex<State>>, c: Change) -> Vec<NodeSpec> {
    let mut st = state.lock();
    let nodes = match c {
        Change::Reset(items) => items,
        Change::Apply(n) => vec![n],
        Change::Delete(_) => return Vec::new(),
    };
    let mut repost = Vec::new();
    for n in nodes {
        let name = n["metadata"]["name"].as_str().unwrap_or("");
        if let Some(cidr) = n["spec"]["podCIDR"].as_str().filter(|c| !c.is_empty()) {
            st.ipam_assigned.insert(name.to_string());
            if st.nodes.contains_key(name) {
                st.cidrs.insert(name.to_string(), cidr.to_string());
            }
        }
        let Some(spec) = st.nodes.get(name).cloned() else {
            continue;
        };
        if !node::shows_ready(&n) {
            let now = std::time::Instant::now();
            let due = st
                .reposted
                .get(name)
                .is_none_or(|t| now.duration_since(*t) >= node::LEASE_RENEW);
            if due {
                st.reposted.insert(name.to_string(), now);
                repost.push(spec);
            }
        }
    }
    repost
}

type Beat = fn(kube::Client, NodeSpec) -> futures::future::BoxFuture<'static, ()>;

/// Runs `beat` for every node once per `period`, one node at a time at even intervals.
fn spawn_staggered(
    clients: Clients,
    specs: Vec<NodeSpec>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    beat: Beat,
) {
    if specs.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let step = (period / specs.len() as u32).max(Duration::from_micros(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, step);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At most this many heartbeats in flight, so a slow server is not piled on.
        let permits = Arc::new(tokio::sync::Semaphore::new(64));
        for s in specs.iter().cycle() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let fut = beat(clients[&s.name].clone(), s.clone());
            tokio::spawn(async move {
                fut.await;
                drop(permit);
            });
        }
    });
}

fn key(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or(""),
        p["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// A /24 in 100.64.0.0/10 for simulated node `<prefix>-<i>` when IPAM has none left.
pub fn fallback_cidr(node: &str) -> Option<String> {
    let i: u32 = node.rsplit('-').next()?.parse().ok()?;
    (i < 64 * 256).then(|| format!("100.{}.{}.0/24", 64 + i / 256, i % 256))
}

/// Next free address of a /24 (hosts .2–.254).
pub fn allocate_ip(cidr: &str, used: &HashSet<String>) -> Option<String> {
    let base = cidr.split('/').next()?;
    let prefix = base.rsplit_once('.')?.0;
    (2..=254)
        .map(|h| format!("{prefix}.{h}"))
        .find(|ip| !used.contains(ip))
}

async fn handle(client: &kube::Client, state: &Arc<Mutex<State>>, pod: &Value) -> Result<()> {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let Some(spec) = state.lock().nodes.get(&node).cloned() else {
        return Ok(());
    };
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        // Nothing to stop: finish the graceful deletion now.
        let _ = runtime()
            .remove_pod(pod["metadata"]["uid"].as_str().unwrap_or(""), 0)
            .await;
        if let Some(ip) = pod["status"]["podIP"].as_str() {
            state.lock().ips.entry(node.clone()).or_default().remove(ip);
        }
        match api
            .delete(
                &name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if let Some(ip) = pod["status"]["podIP"].as_str() {
        state
            .lock()
            .ips
            .entry(node.clone())
            .or_default()
            .insert(ip.to_string());
    }
    if phase == "Pending" {
        // "Mounting": the pod's claims must be bound, as kubelet waits for them.
        if let Err(e) = crate::claims::all_bound(client, pod).await {
            tracing::debug!(pod = %name, error = %e, "simulated pod waits for its volumes");
            return Ok(());
        }
        let known = state.lock().cidrs.get(&node).cloned();
        let cidr = match known {
            Some(c) => c,
            None => {
                // IPAM may not have reached this node yet: wait for it briefly, unless its
                // 256 ranges are all taken. Simulated fleets can be larger, and their pod
                // IPs are never routed, so the rest take a /24 from 100.64.0.0/10.
                let mut found = None;
                for _ in 0..10 {
                    let exhausted = {
                        let st = state.lock();
                        found = st.cidrs.get(&node).cloned();
                        st.ipam_assigned.len() >= 256
                    };
                    if found.is_some() || exhausted {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let Some(c) = found.or_else(|| fallback_cidr(&node)) else {
                    return Ok(());
                };
                state.lock().cidrs.insert(node.clone(), c.clone());
                c
            }
        };
        let ip = {
            let mut st = state.lock();
            let used = st.ips.entry(node.clone()).or_default();
            let ip = allocate_ip(&cidr, used).unwrap_or_else(|| cidr.replace(".0/24", ".254"));
            used.insert(ip.clone());
            ip
        };
        // The real agent's sandbox and container configs and status code, over the
        // fake runtime.
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let rt = runtime();
        // A second event for the same pending pod finds its sandbox already there.
        if rt.observe(&uid).await?.sandboxes.is_empty() {
            rt.assign_ip(&uid, &ip);
            let sandbox = crate::criconv::sandbox_config(pod, 0, std::path::Path::new("/sim"));
            let sb = rt.run_sandbox(sandbox).await?;
            start_containers(pod, &sb, 0).await?;
        }
        publish(&api, &name, pod, &uid, &spec).await?;
    }
    let restart = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    if restart != "Always"
        && matches!(phase, "Pending" | "Running")
        && state.lock().finishing.insert(key(pod))
    {
        let ann = &pod["metadata"]["annotations"];
        let secs: f64 = ann[RUN_SECONDS_ANNOTATION]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let code: i64 = ann[EXIT_CODE_ANNOTATION]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let res = run_to_completion(&api, pod, &uid, &name, secs, code as i32, &spec).await;
        state.lock().finishing.remove(&key(pod));
        res?;
    }
    Ok(())
}

/// A container that runs `secs` and exits with `code`, restarted as the pod's restart
/// policy says (OnFailure after a failure, with kubelet's 10 s doubling back-off) until
/// it ends for good or the pod goes away; each step published with the agent's status
/// code.
async fn run_to_completion(
    api: &Api<Pod>,
    pod: &Value,
    uid: &str,
    name: &str,
    secs: f64,
    code: i32,
    spec: &NodeSpec,
) -> Result<()> {
    let policy = crate::pod::restart_policy(pod).to_string();
    let mut backoff = Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
        runtime().exit_all(uid, code);
        // Statuses build on the pod as it is now (conditions keep their times).
        let Ok(current) = api.get(name).await else {
            return Ok(());
        };
        if current.metadata.uid.as_deref() != Some(uid)
            || current.metadata.deletion_timestamp.is_some()
        {
            return Ok(());
        }
        let mut seen = pod.clone();
        seen["status"] = serde_json::to_value(current.status)?;
        let obs = publish(api, name, &seen, uid, spec).await?;
        if !crate::pod::should_restart(&policy, code) {
            return Ok(());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(300));
        attempt += 1;
        let Some(sb) = obs.ready_sandbox().map(|s| s.id.clone()) else {
            return Ok(());
        };
        start_containers(pod, &sb, attempt).await?;
        for id in crate::pod::garbage(&runtime().observe(uid).await?) {
            runtime().remove_container(&id).await?;
        }
        publish(api, name, &seen, uid, spec).await?;
    }
}

/// Creates and starts the pod's containers (attempt `attempt`) in sandbox `sb`.
async fn start_containers(pod: &Value, sb: &str, attempt: u32) -> Result<()> {
    let sandbox = crate::criconv::sandbox_config(pod, 0, std::path::Path::new("/sim"));
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let image = c["image"].as_str().unwrap_or("");
        let cfg = crate::criconv::container_config(pod, c, image, attempt, &[]);
        runtime().create_and_start(sb, sandbox.clone(), cfg).await?;
    }
    Ok(())
}

/// Publishes the status the agent's code derives from the fake runtime's view of the
/// pod (`seen` carries the status it builds on); returns that view.
async fn publish(
    api: &Api<Pod>,
    name: &str,
    seen: &Value,
    uid: &str,
    spec: &NodeSpec,
) -> Result<crate::pod::Observed> {
    let obs = runtime().observe(uid).await?;
    let status = crate::pod::status(seen, &obs, &BTreeMap::new(), &spec.internal_ip, &now());
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_come_from_the_node_cidr() {
        let mut used = HashSet::new();
        assert_eq!(allocate_ip("10.42.3.0/24", &used).unwrap(), "10.42.3.2");
        used.insert("10.42.3.2".to_string());
        assert_eq!(allocate_ip("10.42.3.0/24", &used).unwrap(), "10.42.3.3");
        assert_eq!(fallback_cidr("sim-300").unwrap(), "100.65.44.0/24");
        assert!(fallback_cidr("nonumber").is_none());
    }

    #[test]
    fn capacity_flags_and_fleet() {
        let c = SimOptions::parse_capacity("cpu=4,memory=8Gi").unwrap();
        assert_eq!(c["cpu"], "4");
        assert_eq!(c["pods"], "110");
        assert!(SimOptions::parse_capacity("cpu").is_err());
        let f = fleet(&SimOptions {
            count: 300,
            prefix: "sim".into(),
            capacity: c,
        });
        assert_eq!(f[0].name, "sim-0");
        assert_eq!(f[299].internal_ip, "198.18.1.50");
        let ips: HashSet<&String> = f.iter().map(|n| &n.internal_ip).collect();
        assert_eq!(ips.len(), 300);
    }
}
