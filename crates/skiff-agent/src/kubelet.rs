//! The real node agent: runs containerd (or uses a given CRI endpoint), registers the
//! Node and heartbeats, writes the CNI config once IPAM gives the node a pod CIDR, and runs
//! one level-triggered worker per pod bound here, relisting from the runtime every second
//! as kubelet's PLEG does.

use crate::criconv;
use crate::hooks;
use crate::host;
use crate::node::{self, NodeSpec};
use crate::pod::{self, Action, Observed, Waiting};
use crate::podlogs::LogDirs;
use crate::runtime::{CriRuntime, Runtime};
use crate::staticpods;
use crate::{Result, now};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use skiff_cri::{Cri, containerd, image};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const PAUSE_IMAGE: &str = "registry.skiff.local/pause:1";

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    /// `<data-dir>/agent` holds containerd's state, images to import, CNI config.
    pub dir: PathBuf,
    /// Container logs go in `<pod_log_dir>/pods`, linked from `<pod_log_dir>/containers`
    /// (`podlogs`: kubelet's /var/log layout).
    pub pod_log_dir: PathBuf,
    /// Use this CRI socket instead of starting containerd.
    pub cri_endpoint: Option<String>,
    /// `Always` pulls fall back to a present image (no registry reachable).
    pub offline: bool,
    /// Leave pods running on exit (containerd stops; containers live on in their shims).
    pub leave_running: bool,
    pub busybox: PathBuf,
    /// The cluster CA (PEM): agents' serving certificates chain to it and the API
    /// server's client certificate is checked against it.
    pub ca_pem: String,
    /// Port of the agent's HTTPS endpoint (10250).
    pub kubelet_port: u16,
    /// Folder of static pod manifests, read every 2 s.
    pub pod_manifest_path: PathBuf,
    /// The cluster DNS service's address(es) for ClusterFirst pods; with none, pods use
    /// the node's resolver, with kubelet's MissingClusterDNS event.
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// Container logs rotate past this many bytes, keeping this many files.
    pub container_log_max_size: u64,
    pub container_log_max_files: usize,
    /// The node's address (default: its first non-loopback IPv4 address).
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// Pod cgroups go under `<cgroup_root>/kubepods` (kubelet's `--cgroup-root`), so two
    /// agents on one machine keep apart.
    pub cgroup_root: String,
    /// How pods reach the other nodes' pods.
    pub backend: crate::podnet::Backend,
    /// The node's resolver config (pods with `dnsPolicy: Default`).
    pub resolv_conf: PathBuf,
    /// Enforce NetworkPolicies (off: `--disable network-policy`, and no table is left).
    pub network_policy: bool,
    /// The built-in Ingress controller's listeners (both 0: not run).
    pub ingress: skiff_ingress::server::Ports,
}

struct Ctx {
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    opts: AgentOptions,
    node_ip: String,
    recorder: Recorder,
    host_dns: criconv::Resolv,
    tokens: crate::tokens::TokenManager,
    /// The CNI config is written (pods off the host network can get a sandbox).
    network_ready: watch::Receiver<bool>,
    /// NetworkPolicy enforcement, when on.
    netpol: Option<crate::netpol::Enforcer>,
    logs: LogDirs,
}

fn key_of(p: &Value) -> String {
    p["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

/// Runs the agent until `shutdown`.
pub async fn run(
    client: kube::Client,
    opts: AgentOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let dir = opts.dir.clone();
    std::fs::create_dir_all(dir.join("images"))?;
    std::fs::create_dir_all(&opts.pod_manifest_path)?;
    host::install_blackhole_routes().await?;
    crate::iproute::enable_forwarding()?;

    let cni_conf_dir = dir.join("cni").join("net.d");
    let ccfg = containerd::Config {
        dir: dir.join("containerd"),
        sandbox_image: PAUSE_IMAGE.into(),
        cni_bin_dir: ["/usr/lib/cni", "/opt/cni/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("bridge").exists())
            .unwrap_or_else(|| PathBuf::from("/usr/lib/cni")),
        cni_conf_dir: cni_conf_dir.clone(),
    };
    let (ctd_stop_tx, ctd_stop_rx) = watch::channel(false);
    let (endpoint, supervisor) = match &opts.cri_endpoint {
        Some(e) => (e.clone(), None),
        None => {
            containerd::stop_leftovers(&ccfg).await;
            (
                ccfg.socket().display().to_string(),
                Some(tokio::spawn(containerd::supervise(
                    ccfg.clone(),
                    ctd_stop_rx,
                ))),
            )
        }
    };
    let cri = Cri::wait_ready(&endpoint, Duration::from_secs(60)).await?;
    let runtime: Arc<dyn Runtime> = Arc::new(CriRuntime::new(cri));
    let version = runtime.version().await?;
    tracing::info!(%endpoint, %version, "container runtime ready");

    // Images need no network: the pause image is built here, archives in images/ imported.
    let address = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(&endpoint));
    if runtime.image_id(PAUSE_IMAGE).await?.is_none() {
        let archive = dir.join("pause.tar");
        image::write_oci_archive(&image::pause_image(PAUSE_IMAGE, &opts.busybox)?, &archive)?;
        image::import(&address, &archive).await?;
    }
    for entry in std::fs::read_dir(dir.join("images"))?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "tar") {
            match image::import(&address, &p).await {
                Ok(()) => tracing::info!(archive = %p.display(), "image archive imported"),
                Err(e) => tracing::warn!(archive = %p.display(), error = %e, "image import failed"),
            }
        }
    }

    let node_ip = opts
        .node_ip
        .map(|ip| ip.to_string())
        .unwrap_or_else(host::node_ip);
    let capacity = host::capacity(&dir);
    let spec = NodeSpec {
        name: opts.node_name.clone(),
        labels: [
            ("kubernetes.io/hostname", opts.node_name.as_str()),
            ("kubernetes.io/os", "linux"),
            (
                "kubernetes.io/arch",
                std::env::consts::ARCH.replace("x86_64", "amd64").leak(),
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        allocatable: host::allocatable(&capacity),
        capacity,
        internal_ip: node_ip.clone(),
        runtime_version: version,
        os_image: os_image(),
        kernel_version: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kubelet_port: opts.kubelet_port,
        ids: node::HostIds::of_this_host(),
    };
    // Everything that needs the API server happens beside the pods, not before them:
    // static pods run while it is away (kubelet's standalone start). Pods on the pod
    // network wait for the CNI config (a restarted node still has its last one).
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", opts.kubelet_port)).await?;
    let (network_tx, network_ready) =
        watch::channel(cni_conf_dir.join("10-skiff.conflist").exists());
    // The node's view of Services, for its service proxy and DNS.
    let catalog = skiff_catalog::spawn(client.clone(), shutdown.clone());
    let proxy = crate::network::spawn_proxy(
        catalog.clone(),
        &spec.name,
        &node_ip,
        !opts.leave_running,
        shutdown.clone(),
    );
    let join = spawn_join(
        Join {
            client: client.clone(),
            spec: spec.clone(),
            ca_pem: opts.ca_pem.clone(),
            cert_dir: dir.join("pki"),
            data_dir: dir.clone(),
            runtime: runtime.clone(),
            listener,
            cni_conf_dir: cni_conf_dir.clone(),
            ipam_dir: dir.join("cni").join("ipam"),
            network_ready: network_tx,
            backend: opts.backend,
            catalog: catalog.clone(),
            cluster_domain: opts.cluster_domain.clone(),
            resolv_conf: opts.resolv_conf.clone(),
        },
        shutdown.clone(),
    );

    let ingress = crate::ingress::start(&client, &catalog, &spec.name, opts.ingress, &shutdown);
    tokio::spawn(crate::localpath::run(
        client.clone(),
        crate::localpath::Options {
            nodes: [spec.name.clone()].into(),
            base: Some(dir.join("storage")),
        },
        shutdown.clone(),
    ));
    let netpol = if opts.network_policy {
        let cleanup = !opts.leave_running;
        Some(crate::netpol::spawn(
            client.clone(),
            spec.name.clone(),
            cleanup,
            shutdown.clone(),
        ))
    } else {
        crate::netpol::remove().await;
        None
    };
    let logs = LogDirs::new(&opts.pod_log_dir);
    logs.prune_dangling();
    let ctx = Arc::new(Ctx {
        netpol,
        logs,
        recorder: Recorder::new(client.clone(), "kubelet"),
        client: client.clone(),
        runtime,
        opts: opts.clone(),
        node_ip,
        host_dns: host_resolv(&opts.resolv_conf),
        tokens: Default::default(),
        network_ready,
    });
    spawn_log_rotation(
        ctx.runtime.clone(),
        opts.container_log_max_size,
        opts.container_log_max_files,
        shutdown.clone(),
    );
    let selector = format!("spec.nodeName={}", spec.name);
    let mut pods_rx = reflect::watch_values(client.clone(), "/api/v1/pods", Some(&selector));
    let mut workers: HashMap<String, watch::Sender<Option<Value>>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut first_list = true;
    let mut statics = Statics::default();
    statics.reload(&ctx, &mut workers, &mut tasks);
    let mut manifests_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let change = tokio::select! {
            c = pods_rx.recv() => match c { Some(c) => c, None => break },
            _ = manifests_tick.tick() => {
                statics.reload(&ctx, &mut workers, &mut tasks);
                statics.reconcile_mirrors(&ctx, &mut tasks);
                while tasks.try_join_next().is_some() {}
                continue;
            }
            _ = shutdown.changed() => break,
        };
        match change {
            Change::Reset(items) => {
                // The agent's one copy of each pod is its own to change.
                let items = items.into_iter().map(std::sync::Arc::unwrap_or_clone);
                let (mirrors, items): (Vec<Value>, Vec<Value>) =
                    items.partition(staticpods::is_mirror);
                statics.mirrors = mirrors
                    .into_iter()
                    .map(|m| (staticpods::full_name(&m), m))
                    .collect();
                let mut live: std::collections::HashSet<String> =
                    items.iter().map(key_of).collect();
                live.extend(statics.pods.values().map(key_of));
                workers.retain(|uid, tx| {
                    let keep = live.contains(uid);
                    if !keep {
                        let _ = tx.send(None);
                    }
                    keep
                });
                for p in items {
                    dispatch(&ctx, &mut workers, &mut tasks, p);
                }
                statics.reconcile_mirrors(&ctx, &mut tasks);
                // Pods the runtime holds that the API no longer has: remove them.
                if first_list {
                    first_list = false;
                    if let Ok(uids) = ctx.runtime.pod_uids().await {
                        for uid in uids.into_iter().filter(|u| !live.contains(u)) {
                            let rt = ctx.runtime.clone();
                            let vol_root = ctx.opts.dir.join("volumes");
                            let cgroup_root = ctx.opts.cgroup_root.clone();
                            let logs = ctx.logs.clone();
                            tasks.spawn(async move {
                                if rt.remove_pod(&uid, 0).await.is_ok() {
                                    host::remove_pod_cgroups(&cgroup_root, &uid);
                                    logs.remove_pod(&uid);
                                    crate::volumes::remove(&vol_root, &uid).await;
                                }
                            });
                        }
                    }
                }
            }
            Change::Apply(p) if staticpods::is_mirror(&p) => {
                let key = staticpods::full_name(&p);
                // The mirror carries the static pod's status: its worker compares with it.
                if let Some(sp) = statics.pods.get(&key)
                    && staticpods::mirror_matches(sp, &p)
                {
                    let mut sp = sp.clone();
                    sp["status"] = p["status"].clone();
                    dispatch(&ctx, &mut workers, &mut tasks, sp);
                }
                statics
                    .mirrors
                    .insert(key, std::sync::Arc::unwrap_or_clone(p));
                statics.reconcile_mirrors(&ctx, &mut tasks);
            }
            Change::Delete(p) if staticpods::is_mirror(&p) => {
                statics.mirrors.remove(&staticpods::full_name(&p));
                statics.reconcile_mirrors(&ctx, &mut tasks);
            }
            Change::Apply(p) => {
                let p = std::sync::Arc::unwrap_or_clone(p);
                dispatch(&ctx, &mut workers, &mut tasks, p)
            }
            Change::Delete(p) => {
                if let Some(tx) = workers.remove(&key_of(&p)) {
                    let _ = tx.send(None);
                }
            }
        }
        while tasks.try_join_next().is_some() {}
    }

    // Shutting down: workers stop, then pods (unless told to leave them running), then
    // containerd. Containers outlive containerd in their shims, so a left pod keeps
    // running and the next containerd, and agent, adopt it.
    drop(workers);
    tasks.shutdown().await;
    if !opts.leave_running
        && let Ok(uids) = ctx.runtime.pod_uids().await
    {
        for uid in uids {
            match ctx.runtime.remove_pod(&uid, 2).await {
                Ok(()) => ctx.logs.remove_pod(&uid),
                Err(e) => tracing::warn!(%uid, error = %e, "removing pod at shutdown"),
            }
            crate::volumes::remove(&ctx.opts.dir.join("volumes"), &uid).await;
        }
    }
    let _ = ctd_stop_tx.send(true);
    if let Some(s) = supervisor {
        let _ = s.await;
    }
    let _ = proxy.await;
    ingress.stopped().await;
    // The host network is set up by the join task: it must be done before it is
    // removed, or a table it adds afterwards outlives the agent.
    if tokio::time::timeout(Duration::from_secs(10), join)
        .await
        .is_err()
    {
        tracing::warn!("the node's network setup did not stop in time");
    }
    if !opts.leave_running {
        crate::iproute::remove_all().await;
        host::remove_network().await;
        ctx.logs.remove_if_empty();
        host::remove_kubepods_cgroups(&opts.cgroup_root);
    }
    Ok(())
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

async fn register_until_ok(
    client: &kube::Client,
    spec: &NodeSpec,
    ready: bool,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match node::register(client, spec, ready).await {
            Ok(()) => {
                let _ = node::renew_lease(client, &spec.name).await;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "node registration failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Every 10 s, as kubelet's log manager: running containers' logs past `max_size` are
/// rotated (renamed with a timestamp, reopened by the runtime), oldest dropped.
fn spawn_log_rotation(
    runtime: Arc<dyn Runtime>,
    max_size: u64,
    max_files: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::logs::rotation;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Ok(logs) = runtime.running_logs().await else {
                continue;
            };
            for (id, path) in logs {
                if std::fs::metadata(&path).map_or(true, |m| m.len() <= max_size) {
                    continue;
                }
                for old in rotation::to_delete(&rotation::rotated(&path), max_files) {
                    let _ = std::fs::remove_file(old);
                }
                let mut to = path.clone().into_os_string();
                to.push(format!(".{}", rotation::suffix(chrono::Utc::now())));
                if std::fs::rename(&path, &to).is_err() {
                    continue;
                }
                if let Err(e) = runtime.reopen_log(&id).await {
                    // The runtime still writes to the renamed file: put it back.
                    let _ = std::fs::rename(&to, &path);
                    tracing::warn!(container = %id, error = %e, "reopening a rotated log");
                }
            }
        }
    });
}

/// Joins the node to the API: the agent's serving certificate (then its endpoint on
/// the kubelet port), the Node and its Lease, heartbeats, and the pod network once IPAM
/// gives the node its range. Each step retries until the API server answers.
struct Join {
    client: kube::Client,
    spec: NodeSpec,
    ca_pem: String,
    /// Where the node's certificates are kept.
    cert_dir: PathBuf,
    /// The agent's data directory, whose filesystem the node's statistics report.
    data_dir: PathBuf,
    runtime: Arc<dyn Runtime>,
    listener: tokio::net::TcpListener,
    cni_conf_dir: PathBuf,
    ipam_dir: PathBuf,
    network_ready: watch::Sender<bool>,
    backend: crate::podnet::Backend,
    catalog: Arc<skiff_catalog::Shared>,
    cluster_domain: String,
    resolv_conf: PathBuf,
}

/// The task that joins the cluster; it ends (its network task with it) at `shutdown`.
fn spawn_join(j: Join, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let Join {
        client,
        spec,
        ca_pem,
        cert_dir,
        data_dir,
        runtime,
        listener,
        cni_conf_dir,
        ipam_dir,
        network_ready,
        backend,
        catalog,
        cluster_domain,
        resolv_conf,
    } = j;
    tokio::spawn(async move {
        let network = network_ready.subscribe();
        let ready = *network.borrow();
        register_until_ok(&client, &spec, ready, &mut shutdown).await;
        spawn_heartbeats(client.clone(), spec.clone(), network, shutdown.clone());
        // The serving certificate names what the Node reports, so the approver can
        // check it against the registered Node.
        let ips = spec.internal_ip.parse().into_iter().collect();
        let ask = crate::certificates::Ask::serving(&spec.name, ips);
        let store = Some(cert_dir.join("kubelet-server-current.pem"));
        let serving = crate::certificates::serving(
            client.clone(),
            ca_pem.clone(),
            ask,
            store,
            shutdown.clone(),
        );
        let Some(cert) = serving.await else { return };
        match skiff_pki::agent_server_config_rotating(&ca_pem, cert) {
            Ok(tls) => {
                let stats = crate::stats::Stats::new(&spec.name, data_dir, runtime.clone());
                tokio::spawn(crate::server::serve(
                    listener,
                    tls,
                    runtime,
                    stats,
                    shutdown.clone(),
                ));
            }
            Err(e) => tracing::error!(error = %e, "the agent endpoint cannot serve TLS"),
        }
        let cidr = loop {
            if let Ok(Some(c)) = node::pod_cidr(&client, &spec.name).await {
                break c;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        };
        let Some(pod_cidr) = crate::podnet::Cidr::parse(&cidr) else {
            tracing::error!(%cidr, "the node's pod CIDR is not an IPv4 CIDR");
            return;
        };
        let net = crate::network::PodNetwork {
            backend,
            node_name: spec.name.clone(),
            node_ip: spec
                .internal_ip
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
            pod_cidr,
            catalog,
            cluster_domain,
            resolv_conf,
        };
        let conflist = host::cni_conflist(&cidr, &ipam_dir, net.mtu());
        let network = {
            let (client, net, stop) = (client.clone(), net.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::network::run(client, net, stop).await {
                    tracing::error!(error = %e, "the pod network across nodes failed");
                }
            })
        };
        let path = cni_conf_dir.join("10-skiff.conflist");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(conflist.as_str()) {
            let written = std::fs::create_dir_all(&cni_conf_dir)
                .and_then(|()| std::fs::write(&path, conflist));
            if let Err(e) = written {
                tracing::error!(path = %path.display(), error = %e, "cannot write the CNI config");
                let _ = network.await;
                return;
            }
        }
        network_ready.send_replace(true);
        tracing::info!(node = %spec.name, %cidr, "pod network configured");
        let _ = network.await;
    })
}

/// Lease renewals, and node status: Ready once the pod network is configured (as
/// kubelet waits for the CNI plugin), posted when readiness changes, when the API shows
/// the node not Ready while it is, and every minute. Registration has just posted the
/// network's readiness as `network` shows it.
fn spawn_heartbeats(
    client: kube::Client,
    spec: NodeSpec,
    mut network: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut posted = *network.borrow_and_update();
    tokio::spawn(async move {
        let mut lease = tokio::time::interval(node::LEASE_RENEW);
        let mut status = tokio::time::interval(node::STATUS_REFRESH);
        status.tick().await;
        loop {
            let refresh = tokio::select! {
                _ = lease.tick() => {
                    let _ = node::renew_lease(&client, &spec.name).await;
                    if posted
                        && let Ok(true) = node::repost_if_not_ready(&client, &spec).await
                    {
                        status.reset();
                    }
                    false
                }
                _ = status.tick() => true,
                Ok(()) = network.changed() => false,
                _ = shutdown.changed() => return,
            };
            let ready = *network.borrow_and_update();
            if refresh || ready != posted {
                if node::report_status(&client, &spec, ready, ready != posted)
                    .await
                    .is_ok()
                {
                    posted = ready;
                }
                if !refresh {
                    status.reset();
                }
            }
        }
    });
}

/// Static pods from the manifest folder and their mirrors in the API, by full name.
#[derive(Default)]
struct Statics {
    pods: BTreeMap<String, Value>,
    mirrors: HashMap<String, Value>,
    node_uid: Option<String>,
    /// When each mirror was last deleted here. A replacement waits a moment, as
    /// kubelet's next sync does: `kubectl delete` lists right after its DELETE and would
    /// take an instant replacement for the pod it waits to see gone.
    deleted: HashMap<String, Instant>,
}

impl Statics {
    /// Rereads the folder: a new or edited manifest (new uid) gets a worker, and the
    /// worker of a removed or replaced one is told its pod is gone.
    fn reload(
        &mut self,
        ctx: &Arc<Ctx>,
        workers: &mut HashMap<String, watch::Sender<Option<Value>>>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let mut now = staticpods::load(&ctx.opts.pod_manifest_path, &ctx.opts.node_name);
        for (key, old) in &self.pods {
            match now.get_mut(key) {
                // Unchanged: keep the pod as its worker has it (config.seen, status).
                Some(new) if key_of(new) == key_of(old) => *new = old.clone(),
                _ => {
                    tracing::info!(pod = %key, "static pod removed or changed; stopping it");
                    if let Some(tx) = workers.remove(&key_of(old)) {
                        let _ = tx.send(None);
                    }
                }
            }
        }
        for (key, new) in &now {
            if self
                .pods
                .get(key)
                .is_none_or(|old| key_of(old) != key_of(new))
            {
                tracing::info!(pod = %key, uid = %key_of(new), "static pod from manifest");
                dispatch(ctx, workers, tasks, new.clone());
            }
        }
        self.pods = now;
    }

    /// Makes the API's mirrors match the static pods: missing ones created, stale or
    /// deleted ones replaced (delete with grace 0, then create), orphans removed.
    fn reconcile_mirrors(&mut self, ctx: &Arc<Ctx>, tasks: &mut tokio::task::JoinSet<()>) {
        let stale = |key: &String, m: &Value| {
            self.pods
                .get(key)
                .is_none_or(|p| !staticpods::mirror_matches(p, m))
        };
        let mut to_delete: Vec<Value> = self
            .mirrors
            .iter()
            .filter(|(k, m)| stale(k, m))
            .map(|(_, m)| m.clone())
            .collect();
        // One removal in flight per mirror: a mirror already being deleted with grace 0
        // has no deletionTimestamp left to see.
        to_delete.retain(|m| m["metadata"]["deletionGracePeriodSeconds"] != 0);
        let now = Instant::now();
        for m in &to_delete {
            self.deleted.insert(staticpods::full_name(m), now);
        }
        self.deleted
            .retain(|_, t| now.duration_since(*t) < Duration::from_secs(2));
        let to_create: Vec<Value> = self
            .pods
            .iter()
            .filter(|(k, p)| {
                !self.deleted.contains_key(*k)
                    && self
                        .mirrors
                        .get(*k)
                        .is_none_or(|m| !staticpods::mirror_matches(p, m))
            })
            .map(|(_, p)| p.clone())
            .collect();
        if to_delete.is_empty() && to_create.is_empty() {
            return;
        }
        let client = ctx.client.clone();
        let node = ctx.opts.node_name.clone();
        let known_uid = self.node_uid.clone();
        tasks.spawn(async move {
            for m in to_delete {
                let api: Api<Pod> = Api::namespaced(
                    client.clone(),
                    m["metadata"]["namespace"].as_str().unwrap_or("default"),
                );
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: m["metadata"]["uid"].as_str().map(str::to_string),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let name = m["metadata"]["name"].as_str().unwrap_or("");
                match api.delete(name, &dp).await {
                    Ok(_) => tracing::info!(pod = name, "mirror pod deleted"),
                    Err(e) => tracing::info!(pod = name, error = %e, "deleting mirror pod"),
                }
            }
            if to_create.is_empty() {
                return;
            }
            let node_uid = match known_uid {
                Some(u) => u,
                None => {
                    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
                    match nodes.get(&node).await {
                        Ok(n) => n.metadata.uid.unwrap_or_default(),
                        Err(e) => {
                            tracing::debug!(error = %e, "no node to own mirror pods yet");
                            return;
                        }
                    }
                }
            };
            for p in to_create {
                let mirror = staticpods::mirror_of(&p, &node_uid);
                let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let Ok(obj) = serde_json::from_value::<Pod>(mirror) else {
                    continue;
                };
                match api.create(&Default::default(), &obj).await {
                    Ok(_) => tracing::info!(pod = %staticpods::full_name(&p), "mirror pod created"),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => tracing::warn!(pod = %staticpods::full_name(&p), error = %e, "creating mirror pod"),
                }
            }
        });
    }
}

fn dispatch(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, watch::Sender<Option<Value>>>,
    tasks: &mut tokio::task::JoinSet<()>,
    pod: Value,
) {
    let uid = key_of(&pod);
    if let Some(tx) = workers.get(&uid)
        && !tx.is_closed()
    {
        let _ = tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    workers.insert(uid.clone(), tx);
    let ctx = ctx.clone();
    tasks.spawn(async move { pod_worker(ctx, uid, rx).await });
}

/// Restart back-off per container: 10 s doubling to 5 min, forgotten after 10 min of
/// running, with the first restart immediate, as kubelet does.
#[derive(Default)]
struct Backoff {
    entries: HashMap<String, (Instant, Duration)>,
}

impl Backoff {
    const INITIAL: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(300);

    fn in_backoff(&self, name: &str) -> bool {
        self.entries
            .get(name)
            .is_some_and(|(until, _)| Instant::now() < *until)
    }

    fn delay(&self, name: &str) -> Duration {
        self.entries.get(name).map_or(Self::INITIAL, |e| e.1)
    }

    fn restarted(&mut self, name: &str) {
        let next = match self.entries.get(name) {
            Some((_, d)) => (*d * 2).min(Self::MAX),
            None => Self::INITIAL,
        };
        self.entries
            .insert(name.to_string(), (Instant::now() + next, next));
    }

    fn ran_long(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Image pulls back off the same way, per pod and image; a key no container name
    /// can take (names are DNS labels).
    fn pull_key(image: &str) -> String {
        format!("image {image}")
    }
}

async fn pod_worker(ctx: Arc<Ctx>, uid: String, mut rx: watch::Receiver<Option<Value>>) {
    let mut backoff = Backoff::default();
    let mut errors: BTreeMap<String, Waiting> = BTreeMap::new();
    let mut running_since: HashMap<String, Instant> = HashMap::new();
    let mut probes: Probes = HashMap::new();
    let mut volumes_synced: Option<Instant> = None;
    loop {
        let pod = rx.borrow_and_update().clone();
        let Some(pod) = pod else {
            // Gone from the API (force deletion): nothing left to report to.
            match ctx.runtime.remove_pod(&uid, 0).await {
                Ok(()) => {
                    host::remove_pod_cgroups(&ctx.opts.cgroup_root, &uid);
                    ctx.logs.remove_pod(&uid);
                    crate::volumes::remove(&ctx.opts.dir.join("volumes"), &uid).await;
                    ctx.tokens.forget(&uid);
                }
                Err(e) => tracing::warn!(%uid, error = %e, "removing deleted pod"),
            }
            return;
        };
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            if terminate(&ctx, &pod).await {
                return;
            }
        } else if let Err(e) = sync(
            &ctx,
            &pod,
            &mut backoff,
            &mut errors,
            &mut running_since,
            &mut probes,
            &mut volumes_synced,
        )
        .await
        {
            tracing::debug!(pod = %pod_ref(&pod), error = %e, "pod sync failed; retrying");
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn pod_ref(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn pods_api(ctx: &Ctx, pod: &Value) -> Api<Pod> {
    Api::namespaced(
        ctx.client.clone(),
        pod["metadata"]["namespace"].as_str().unwrap_or("default"),
    )
}

/// Graceful deletion: SIGTERM, `deletionGracePeriodSeconds`, SIGKILL, then the final
/// delete (grace 0, this uid only). True once the object is gone.
async fn terminate(ctx: &Ctx, pod: &Value) -> bool {
    let grace = pod["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .or(pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    let mut left = grace;
    if let Ok(obs) = ctx.runtime.observe(&key_of(pod)).await {
        let running: Vec<_> = obs
            .containers
            .iter()
            .filter(|c| c.state == pod::CState::Running)
            .collect();
        for c in &running {
            ctx.recorder.record(
                pod,
                "Normal",
                "Killing",
                format!("Stopping container {}", c.name),
            );
        }
        // preStop hooks run together, out of the grace period; the stop gets the rest.
        let ip = obs
            .ready_sandbox()
            .map(|s| s.ip.clone())
            .unwrap_or_default();
        let specs = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let hooks = running.iter().filter_map(|c| {
            let spec = specs.iter().find(|s| s["name"] == c.name.as_str())?;
            Some(hooks::pre_stop(
                ctx.runtime.as_ref(),
                &ctx.recorder,
                pod,
                spec,
                &c.id,
                &ip,
                grace,
            ))
        });
        left = futures::future::join_all(hooks)
            .await
            .into_iter()
            .min()
            .unwrap_or(grace);
    }
    if let Err(e) = ctx.runtime.remove_pod(&key_of(pod), left).await {
        tracing::warn!(pod = %pod_ref(pod), error = %e, "stopping pod");
        return false;
    }
    host::remove_pod_cgroups(&ctx.opts.cgroup_root, &key_of(pod));
    ctx.logs.remove_pod(&key_of(pod));
    crate::volumes::remove(&ctx.opts.dir.join("volumes"), &key_of(pod)).await;
    ctx.tokens.forget(&key_of(pod));
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(key_of(pod)),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods_api(ctx, pod).delete(name, &dp).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
        Err(e) => {
            tracing::warn!(pod = %pod_ref(pod), error = %e, "final delete failed");
            false
        }
    }
}

async fn sync(
    ctx: &Ctx,
    pod: &Value,
    backoff: &mut Backoff,
    errors: &mut BTreeMap<String, Waiting>,
    running_since: &mut HashMap<String, Instant>,
    probes: &mut Probes,
    volumes_synced: &mut Option<Instant>,
) -> Result<(), skiff_cri::Error> {
    let uid = key_of(pod);
    let mut obs = ctx.runtime.observe(&uid).await?;
    let mut actions = pod::compute_actions(pod, &obs, &|n| backoff.in_backoff(n));
    // Volumes before any container starts, then refreshed (ConfigMap and Secret
    // contents follow the objects) every 10 s.
    let starting = actions
        .iter()
        .any(|a| matches!(a, Action::StartContainer { .. }));
    if starting || volumes_synced.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        let root = ctx.opts.dir.join("volumes");
        match crate::volumes::ensure(&ctx.client, &ctx.tokens, &root, pod).await {
            Ok(()) => *volumes_synced = Some(Instant::now()),
            Err(msg) => {
                ctx.recorder.record(pod, "Warning", "FailedMount", msg);
                *volumes_synced = None;
                actions.retain(|a| !matches!(a, Action::StartContainer { .. }));
            }
        }
    }
    let mut sandbox_cfg = None;
    // A new sandbox is followed by its containers in the same sync, as kubelet's
    // SyncPod does: one pass more, on what the runtime now holds.
    let mut passes = 0;
    while !actions.is_empty() && passes < 2 {
        passes += 1;
        let created_sandbox = actions
            .iter()
            .any(|a| matches!(a, Action::CreateSandbox { .. }));
        for action in &actions {
            match action {
                Action::KillPod => ctx.runtime.stop_pod(&uid, 0).await?,
                Action::CreateSandbox { attempt } => {
                    if !criconv::host_network(pod) && !*ctx.network_ready.borrow() {
                        ctx.recorder.record(
                            pod,
                            "Warning",
                            "NetworkNotReady",
                            "network is not ready: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".to_string(),
                        );
                        return Ok(());
                    }
                    let cfg = sandbox_config(ctx, pod, *attempt, true);
                    if let Err(e) = ctx.runtime.run_sandbox(cfg).await {
                        ctx.recorder.record(
                            pod,
                            "Warning",
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {e}"),
                        );
                        return Err(e);
                    }
                }
                Action::StartContainer {
                    name,
                    init,
                    attempt,
                } => {
                    let Some(sb) = obs.ready_sandbox().cloned() else {
                        continue;
                    };
                    let cfg = sandbox_cfg
                        .get_or_insert_with(|| sandbox_config(ctx, pod, sb.attempt, false));
                    let field = if *init {
                        "initContainers"
                    } else {
                        "containers"
                    };
                    let Some(spec) = pod["spec"][field]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["name"] == name.as_str())
                    else {
                        continue;
                    };
                    let pull_key = Backoff::pull_key(spec["image"].as_str().unwrap_or(""));
                    if backoff.in_backoff(&pull_key) {
                        let message = format!(
                            "Back-off pulling image \"{}\"",
                            spec["image"].as_str().unwrap_or("")
                        );
                        if errors
                            .get(name)
                            .is_none_or(|w| w.reason != "ImagePullBackOff")
                        {
                            ctx.recorder
                                .record(pod, "Normal", "BackOff", message.clone());
                            ctx.recorder.record(
                                pod,
                                "Warning",
                                "Failed",
                                "Error: ImagePullBackOff".into(),
                            );
                        }
                        errors.insert(
                            name.clone(),
                            Waiting {
                                reason: "ImagePullBackOff".into(),
                                message,
                            },
                        );
                        continue;
                    }
                    if !isolated(ctx, pod, &sb.ip).await {
                        continue;
                    }
                    if *attempt > 0 {
                        backoff.restarted(name);
                    }
                    match start_container(ctx, pod, spec, &sb, cfg.clone(), *attempt).await {
                        Ok(()) => {
                            errors.remove(name);
                            backoff.ran_long(&pull_key);
                        }
                        // The exited container tells the rest (restarts back off as
                        // after a crash; with `Never` the pod has failed).
                        Err(w) if w.reason == RUN_CONTAINER_ERROR => {
                            errors.remove(name);
                        }
                        Err(w) => {
                            if w.reason == "ErrImagePull" {
                                backoff.restarted(&pull_key);
                            }
                            errors.insert(name.clone(), w);
                        }
                    }
                }
            }
        }
        obs = ctx.runtime.observe(&uid).await?;
        actions = if created_sandbox && volumes_synced.is_some() {
            pod::compute_actions(pod, &obs, &|n| backoff.in_backoff(n))
                .into_iter()
                .filter(|a| matches!(a, Action::StartContainer { .. }))
                .collect()
        } else {
            Vec::new()
        };
    }
    for id in pod::garbage(&obs) {
        if ctx.runtime.remove_container(&id).await.is_ok() {
            if let Some(c) = obs.containers.iter().find(|c| c.id == id) {
                unlink_log(ctx, pod, &c.name, &id);
            }
            obs.containers.retain(|c| c.id != id);
        }
    }
    run_probes(ctx, pod, &mut obs, probes).await;
    let waiting = waiting_reasons(pod, &obs, backoff, errors, running_since);
    let status = pod::status(pod, &obs, &waiting, &ctx.node_ip, &now());
    let prev = &pod["status"];
    let changed = status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| &prev[k] != v);
    if changed {
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        let patch = json!({"status": status});
        if let Err(e) = pods_api(ctx, pod)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(pod = %pod_ref(pod), error = %e, "status update failed");
        }
    }
    Ok(())
}

/// Probe state per (container instance, kind), and when the instance was first seen
/// running (initialDelaySeconds counts from there).
type Probes = HashMap<(String, crate::probe::Kind), (Instant, crate::probe::State)>;

/// Runs the probes that are due for running app containers, kills containers whose
/// startup or liveness probe failed (they restart by policy), and records each
/// container's (started, ready) in `obs.probed`.
async fn run_probes(ctx: &Ctx, pod: &Value, obs: &mut Observed, probes: &mut Probes) {
    use crate::probe::{self, Kind};
    let pod_ip = obs
        .ready_sandbox()
        .map(|s| s.ip.clone())
        .unwrap_or_default();
    let live: std::collections::HashSet<String> = obs
        .containers
        .iter()
        .filter(|c| c.state == pod::CState::Running)
        .map(|c| c.id.clone())
        .collect();
    probes.retain(|(id, _), _| live.contains(id));
    let now = Instant::now();
    let mut due = Vec::new();
    for spec in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = spec["name"].as_str().unwrap_or("");
        let Some(c) = obs.latest(name).filter(|c| c.state == pod::CState::Running) else {
            continue;
        };
        let specs: Vec<(Kind, probe::Spec)> = [Kind::Startup, Kind::Liveness, Kind::Readiness]
            .into_iter()
            .filter_map(|k| probe::spec(spec, k).map(|s| (k, s)))
            .collect();
        if specs.is_empty() {
            continue;
        }
        let started_ok = specs.iter().all(|(k, _)| *k != Kind::Startup)
            || probes
                .get(&(c.id.clone(), Kind::Startup))
                .is_some_and(|(_, s)| s.result == Some(true));
        for (kind, ps) in specs {
            // Startup runs until it succeeds; the others only after it has.
            if (kind == Kind::Startup) == started_ok {
                continue;
            }
            let (since, st) = probes
                .entry((c.id.clone(), kind))
                .or_insert_with(|| (now, probe::State::new()));
            if st.due(&ps, *since, now) {
                due.push((name.to_string(), c.id.clone(), kind, ps));
            }
        }
    }
    let results = futures::future::join_all(due.into_iter().map(|(name, id, kind, ps)| {
        let pod_ip = pod_ip.clone();
        async move {
            let outcome = match &ps.action {
                probe::Action::Exec(cmd) => {
                    match ctx.runtime.exec_sync(&id, cmd.clone(), ps.timeout).await {
                        Ok((0, _)) => Ok(()),
                        Ok((code, out)) => Err(format!(
                            "command {cmd:?} exited with {code}: {}",
                            out.trim()
                        )),
                        Err(e) => Err(short(&e)),
                    }
                }
                a => probe::run_network(a, &pod_ip, ps.timeout).await,
            };
            (name, id, kind, ps, outcome)
        }
    }))
    .await;
    for (name, id, kind, ps, outcome) in results {
        let Some((_, st)) = probes.get_mut(&(id.clone(), kind)) else {
            continue;
        };
        if let Err(msg) = &outcome {
            ctx.recorder.record(
                pod,
                "Warning",
                "Unhealthy",
                format!("{} probe failed: {msg}", kind.word()),
            );
        }
        let verdict = st.record(&ps, outcome.is_ok(), Instant::now());
        if verdict == Some(false) && kind != Kind::Readiness {
            let why = if kind == Kind::Liveness {
                "liveness"
            } else {
                "startup"
            };
            ctx.recorder.record(
                pod,
                "Normal",
                "Killing",
                format!("Container {name} failed {why} probe, will be restarted"),
            );
            // In the background: a process that ignores SIGTERM holds the kill for the
            // whole grace period, and the pod's other probes and status go on meanwhile.
            let grace = pod["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30);
            let runtime = ctx.runtime.clone();
            let who = format!("{}/{name}", pod_ref(pod));
            let (recorder, pod, ip) = (ctx.recorder.clone(), pod.clone(), pod_ip.clone());
            let spec = pod["spec"]["containers"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == name.as_str()))
                .cloned()
                .unwrap_or_default();
            tokio::spawn(async move {
                let grace =
                    hooks::pre_stop(runtime.as_ref(), &recorder, &pod, &spec, &id, &ip, grace)
                        .await;
                if let Err(e) = runtime.stop_container(&id, grace).await {
                    tracing::warn!(container = %who, error = %e, "killing unhealthy container");
                }
            });
        }
    }
    for spec in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = spec["name"].as_str().unwrap_or("");
        let Some(c) = obs.latest(name).filter(|c| c.state == pod::CState::Running) else {
            continue;
        };
        let verdict = |k: Kind| -> bool {
            probe::spec(spec, k).is_none()
                || probes
                    .get(&(c.id.clone(), k))
                    .is_some_and(|(_, s)| s.result == Some(true))
        };
        let started = verdict(Kind::Startup);
        let ready = started && verdict(Kind::Readiness);
        obs.probed.insert(name.to_string(), (started, ready));
    }
}

/// Containers that should run but wait: image and config errors, and crash-loop back-off.
fn waiting_reasons(
    pod: &Value,
    obs: &Observed,
    backoff: &mut Backoff,
    errors: &BTreeMap<String, Waiting>,
    running_since: &mut HashMap<String, Instant>,
) -> BTreeMap<String, Waiting> {
    let mut out = errors.clone();
    let policy = pod::restart_policy(pod);
    let m = &pod["metadata"];
    for name in pod::init_names(pod).into_iter().chain(pod::app_names(pod)) {
        let Some(c) = obs.latest(&name) else {
            continue;
        };
        match c.state {
            pod::CState::Running => {
                let since = *running_since
                    .entry(format!("{name}/{}", c.attempt))
                    .or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(600) {
                    backoff.ran_long(&name);
                }
            }
            pod::CState::Exited
                if pod::should_restart(policy, c.exit_code)
                    && !(c.exit_code == 0 && pod::init_names(pod).contains(&name))
                    && backoff.in_backoff(&name) =>
            {
                out.entry(name.clone()).or_insert_with(|| Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {}s restarting failed container={name} pod={}_{}({})",
                        backoff.delay(&name).as_secs(),
                        m["name"].as_str().unwrap_or(""),
                        m["namespace"].as_str().unwrap_or(""),
                        m["uid"].as_str().unwrap_or("")
                    ),
                });
            }
            _ => {}
        }
    }
    out
}

/// Whether the pod's NetworkPolicy rules are in place (always, for host-network pods
/// and with enforcement off): no container starts before they are.
async fn isolated(ctx: &Ctx, pod: &Value, sandbox_ip: &str) -> bool {
    let Some(np) = &ctx.netpol else { return true };
    if criconv::host_network(pod) {
        return true;
    }
    let ips: Vec<std::net::IpAddr> = sandbox_ip.parse().into_iter().collect();
    match crate::netpol::view(pod, &ips) {
        Some(view) => np.admit(view).await,
        None => false,
    }
}

/// Image policy, env, create and start; a failure comes back as the container's waiting
/// reason, with kubelet's events on the way.
async fn start_container(
    ctx: &Ctx,
    pod: &Value,
    spec: &Value,
    sandbox: &pod::SandboxObs,
    sandbox_cfg: skiff_cri::cri::PodSandboxConfig,
    attempt: u32,
) -> Result<(), Waiting> {
    let sandbox_id = sandbox.id.as_str();
    let name = spec["name"].as_str().unwrap_or("");
    let image = spec["image"].as_str().unwrap_or("");
    let policy = spec["imagePullPolicy"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| default_pull_policy(image).to_string());
    let present = ctx.runtime.image_id(image).await.ok().flatten();
    match (policy.as_str(), present) {
        ("Never", None) => {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            ctx.recorder
                .record(pod, "Warning", "ErrImageNeverPull", msg.clone());
            return Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: msg,
            });
        }
        ("Always", present) | (_, present @ None) => {
            ctx.recorder.record(
                pod,
                "Normal",
                "Pulling",
                format!("Pulling image \"{image}\""),
            );
            let t = Instant::now();
            match pull_with_secrets(ctx, pod, image).await {
                Ok(_) => ctx.recorder.record(
                    pod,
                    "Normal",
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        t.elapsed().as_secs_f64()
                    ),
                ),
                Err(e) if present.is_some() && ctx.opts.offline => ctx.recorder.record(
                    pod,
                    "Normal",
                    "Pulled",
                    format!("Offline: pulling image \"{image}\" failed ({}); using the image already present on machine", short(&e)),
                ),
                Err(e) => {
                    let msg = format!("Failed to pull image \"{image}\": {}", short(&e));
                    ctx.recorder.record(pod, "Warning", "Failed", msg.clone());
                    return Err(Waiting { reason: "ErrImagePull".into(), message: msg });
                }
            }
        }
        _ => ctx.recorder.record(
            pod,
            "Normal",
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        ),
    }
    let config_error = |message: String| {
        ctx.recorder
            .record(pod, "Warning", "Failed", format!("Error: {message}"));
        Waiting {
            reason: "CreateContainerConfigError".into(),
            message,
        }
    };
    let env = resolve_env(ctx, pod, spec).await.map_err(config_error)?;
    let (uid, user) = ctx
        .runtime
        .image_user(image)
        .await
        .map_err(|e| config_error(short(&e)))?;
    criconv::verify_run_as_non_root(pod, spec, uid, &user).map_err(config_error)?;
    let mut cfg = criconv::container_config(pod, spec, image, attempt, &env);
    cfg.mounts =
        crate::volumes::mounts(&ctx.opts.dir.join("volumes"), pod, spec).map_err(config_error)?;
    let log_file = std::path::Path::new(&sandbox_cfg.log_directory).join(&cfg.log_path);
    match ctx
        .runtime
        .create_and_start(sandbox_id, sandbox_cfg, cfg)
        .await
    {
        Ok(id) => {
            link_log(ctx, pod, name, &id, &log_file);
            ctx.recorder.record(
                pod,
                "Normal",
                "Created",
                format!("Created container: {name}"),
            );
            ctx.recorder.record(
                pod,
                "Normal",
                "Started",
                format!("Started container {name}"),
            );
            // postStart runs before the container counts as started; its failure kills
            // the container, which then restarts by the pod's policy.
            let Some(hook) = hooks::hook(spec, "postStart") else {
                return Ok(());
            };
            let grace = pod["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30);
            let ran = hooks::run(
                ctx.runtime.as_ref(),
                &id,
                &hook,
                &sandbox.ip,
                Duration::from_secs(grace.max(1) as u64),
            )
            .await;
            let Err(e) = ran else {
                return Ok(());
            };
            let message = format!("PostStartHook failed: {e}");
            ctx.recorder
                .record(pod, "Warning", "FailedPostStartHook", message.clone());
            if let Err(e) = ctx.runtime.stop_container(&id, grace).await {
                tracing::warn!(pod = %pod_ref(pod), container = name, error = %e, "killing after a failed postStart");
            }
            Err(Waiting {
                reason: "PostStartHookError".into(),
                message,
            })
        }
        Err(e) => {
            let msg = short(&e);
            ctx.recorder
                .record(pod, "Warning", "Failed", format!("Error: {msg}"));
            // Created but not started: the runtime keeps it as exited (StartError, 128),
            // which is what its status then shows, as kubelet's does.
            let reason = match &e {
                skiff_cri::Error::Rpc {
                    call: "StartContainer",
                    ..
                } => RUN_CONTAINER_ERROR,
                _ => "CreateContainerError",
            };
            Err(Waiting {
                reason: reason.into(),
                message: msg,
            })
        }
    }
}

/// The started container's `containers/` link, for log collectors. As kubelet, none
/// when the runtime wrote no file: it would only dangle.
fn link_log(ctx: &Ctx, pod: &Value, container: &str, id: &str, file: &std::path::Path) {
    if !file.exists() {
        return;
    }
    let m = &pod["metadata"];
    let (ns, name) = (
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or(""),
    );
    if let Err(e) = ctx.logs.link(ns, name, container, id, file) {
        tracing::warn!(pod = %pod_ref(pod), container, error = %e, "linking a container's log");
    }
}

fn unlink_log(ctx: &Ctx, pod: &Value, container: &str, id: &str) {
    let m = &pod["metadata"];
    ctx.logs.unlink(
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or(""),
        container,
        id,
    );
}

/// The sandbox config with the pod's DNS; `creating` reports a missing cluster DNS once,
/// when the sandbox is made, as kubelet does.
fn sandbox_config(
    ctx: &Ctx,
    pod: &Value,
    attempt: u32,
    creating: bool,
) -> skiff_cri::cri::PodSandboxConfig {
    let mut cfg = criconv::sandbox_config(pod, attempt, &ctx.logs.pods());
    if let Some(linux) = cfg.linux.as_mut() {
        linux.cgroup_parent = host::under_cgroup_root(&ctx.opts.cgroup_root, &linux.cgroup_parent);
    }
    let (dns, missing) = criconv::dns_config(
        pod,
        &ctx.opts.cluster_dns,
        &ctx.opts.cluster_domain,
        &ctx.host_dns,
    );
    if missing && creating {
        ctx.recorder.record(
            pod,
            "Warning",
            "MissingClusterDNS",
            format!(
                "pod: \"{}_{}({})\". kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                pod["metadata"]["name"].as_str().unwrap_or(""),
                pod["metadata"]["namespace"].as_str().unwrap_or(""),
                key_of(pod)
            ),
        );
    }
    cfg.dns_config = Some(dns);
    cfg
}

/// The node's resolver config for `Default` DNS; behind a local stub resolver
/// (systemd-resolved's 127.0.0.53) the real upstreams, which pods can reach.
fn host_resolv(path: &std::path::Path) -> criconv::Resolv {
    let read =
        |p: &std::path::Path| std::fs::read_to_string(p).map(|t| criconv::parse_resolv_conf(&t));
    let etc = read(path).unwrap_or_default();
    if etc.nameservers.iter().any(|n| n.starts_with("127."))
        && let Ok(upstream) = read("/run/systemd/resolve/resolv.conf".as_ref())
    {
        return upstream;
    }
    etc
}

/// Pulls with the pod's imagePullSecrets that name the image's registry, each in turn
/// until one works; anonymously when none does. A secret that cannot be read is
/// reported and skipped, as kubelet does.
async fn pull_with_secrets(ctx: &Ctx, pod: &Value, image: &str) -> skiff_cri::Result<String> {
    let host = crate::credentials::registry_host(image);
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut auths = Vec::new();
    let mut missing = Vec::new();
    for r in pod["spec"]["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = r["name"].as_str().filter(|n| !n.is_empty()) else {
            continue;
        };
        match secrets.get_opt(name).await {
            Ok(Some(s)) => {
                let kind = s.type_.unwrap_or_default();
                let key = if kind == "kubernetes.io/dockercfg" {
                    ".dockercfg"
                } else {
                    ".dockerconfigjson"
                };
                if let Some(data) = s.data.as_ref().and_then(|d| d.get(key)) {
                    auths.extend(crate::credentials::matching(&kind, &data.0, &host));
                }
            }
            _ => missing.push(name.to_string()),
        }
    }
    if !missing.is_empty() {
        ctx.recorder.record(
            pod,
            "Warning",
            "FailedToRetrieveImagePullSecret",
            format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        );
    }
    if auths.is_empty() {
        return ctx.runtime.pull(image, None).await;
    }
    let mut last = None;
    for auth in auths {
        match ctx.runtime.pull(image, Some(auth)).await {
            Ok(id) => return Ok(id),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one credential was tried"))
}

/// kubelet's reason for a container the runtime created but could not start.
const RUN_CONTAINER_ERROR: &str = "RunContainerError";

fn short(e: &skiff_cri::Error) -> String {
    match e {
        skiff_cri::Error::Rpc { status, .. } => status.message().to_string(),
        e => e.to_string(),
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`, as Kubernetes defaults.
pub fn default_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// env, with ConfigMap and Secret references looked up, and envFrom first as Kubernetes
/// orders them (explicit `env` entries override).
async fn resolve_env(
    ctx: &Ctx,
    pod: &Value,
    spec: &Value,
) -> Result<Vec<(String, String)>, String> {
    use crate::volumes::{Source, fetch};
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    let mut out: Vec<(String, String)> = Vec::new();
    for from in spec["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        for (source, r) in [
            (Source::ConfigMap, &from["configMapRef"]),
            (Source::Secret, &from["secretRef"]),
        ] {
            let Some(n) = r["name"].as_str() else {
                continue;
            };
            match fetch(&ctx.client, ns, source, n, false).await? {
                Some(data) => {
                    for (k, v) in data {
                        out.push((format!("{prefix}{k}"), text(v)));
                    }
                }
                None if r["optional"].as_bool().unwrap_or(false) => {}
                None => return Err(format!("{} \"{n}\" not found", source.lower())),
            }
        }
    }
    let simple = criconv::simple_env(pod, spec, &ctx.node_ip);
    for ((name, value), e) in simple
        .into_iter()
        .zip(spec["env"].as_array().into_iter().flatten())
    {
        let value = match value {
            Some(v) if e.get("value").is_some() => criconv::expand(&v, &out),
            Some(v) => v,
            None => {
                let from = &e["valueFrom"];
                let keyref = [
                    (Source::ConfigMap, &from["configMapKeyRef"]),
                    (Source::Secret, &from["secretKeyRef"]),
                ]
                .into_iter()
                .find(|(_, r)| r.is_object());
                // resourceFieldRef and others are not resolved yet: left empty.
                let Some((source, r)) = keyref else {
                    out.retain(|(k, _)| *k != name);
                    out.push((name, String::new()));
                    continue;
                };
                let (n, k) = (
                    r["name"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                );
                let optional = r["optional"].as_bool().unwrap_or(false);
                match fetch(&ctx.client, ns, source, n, false).await? {
                    Some(mut data) => match data.remove(k) {
                        Some(v) => text(v),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {k} in {} {ns}/{n}",
                                source.kind()
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("{} \"{n}\" not found", source.lower())),
                }
            }
        };
        out.retain(|(k, _)| *k != name);
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("127.0.0.1:5000/web"), "Always");
        assert_eq!(default_pull_policy("127.0.0.1:5000/web:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let mut b = Backoff::default();
        assert!(!b.in_backoff("c"));
        b.restarted("c");
        assert!(b.in_backoff("c"));
        assert_eq!(b.delay("c"), Duration::from_secs(10));
        for _ in 0..10 {
            b.restarted("c");
        }
        assert_eq!(b.delay("c"), Duration::from_secs(300));
        b.ran_long("c");
        assert!(!b.in_backoff("c"));
    }
}
