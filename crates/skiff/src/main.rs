//! The skiff binary: reads flags, builds components, runs them, stops them cleanly.

mod etcd_member;
mod etcd_snapshot;
mod secrets_encrypt;
mod serverjoin;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use skiff_agent::certificates::{self, Auth, Server};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

// mimalloc: the API server's work is allocation-heavy (JSON trees per request); glibc's
// malloc spent a fifth of the server's CPU in a create benchmark, and its per-thread
// arenas inflated RSS. Built without the `mimalloc` feature, the system allocator serves
// (for heap profilers that hook malloc, such as heaptrack).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes-compatible cluster in one binary"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `skiff_apiserver=debug`.
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server on the embedded store).
    Server(Box<ServerArgs>),
    /// Run a single-node cluster: the control plane and, in the same process, a node
    /// agent that joins it through the API as a remote node would (with `--simulate N`,
    /// N simulated nodes instead).
    Up(Box<UpArgs>),
    /// Run a node agent against a server: pods on containerd, or `--simulate N` nodes.
    Agent(Box<AgentArgs>),
    /// Benchmarks that print side-by-side figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Images in the node's containerd: import archives, list, remove.
    Image(ImageArgs),
    /// Secrets encryption at rest: status, key rotation, re-encryption.
    SecretsEncrypt(secrets_encrypt::SecretsEncryptArgs),
    /// Snapshots of a `--cluster-init` server's etcd member: save, ls, delete.
    EtcdSnapshot(etcd_snapshot::EtcdSnapshotArgs),
    /// The etcd cluster's members: list them, remove the member of a server that leaves.
    EtcdMember(etcd_member::EtcdMemberArgs),
}

#[derive(Args)]
struct ImageArgs {
    /// The node's data dir (containerd's socket is `<data-dir>/agent/containerd/`).
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Use this CRI socket instead.
    #[arg(long, global = true)]
    container_runtime_endpoint: Option<String>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import image archives (OCI layout or docker save tarballs).
    Import { files: Vec<PathBuf> },
    /// List images.
    Ls,
    /// Remove images by reference or id.
    Rm { images: Vec<String> },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Scheduling throughput on simulated nodes against the direct-binding ceiling.
    Scheduler {
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 10000)]
        pods: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// After the timed run, pods are added up to this many (all bound) before the
        /// server's RSS is read.
        #[arg(long, default_value_t = 30000)]
        hold_pods: usize,
    },
    /// The per-object cost of a custom object's prune, defaults, validation and
    /// managedFields against a ConfigMap's, without a server.
    CrdCost,
    /// API extensions: custom-object creates against ConfigMap creates (a large CRD
    /// schema with CEL rules), and the latency a validating webhook adds.
    Extensions {
        /// Creates of each kind, in four alternating rounds (long enough rounds that a
        /// moment's noise on a shared machine weighs little).
        #[arg(long, default_value_t = 40000)]
        creates: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Pod startup latency on a real node against the bare CRI sequence, agent RSS and
    /// idle CPU (root; containerd).
    Pods {
        /// Sequential single-pod rounds.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Pods started at once.
        #[arg(long, default_value_t = 50)]
        concurrent: usize,
    },
    /// What statistics cost a real node's agent: RSS and CPU with 100 pods running,
    /// never asked for statistics, then scraped through the API server (root;
    /// containerd).
    Stats {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// Length of each measured window.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// How often statistics are fetched while measured (over a second, so each
        /// fetch measures anew rather than getting the agent's last reading).
        #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
        interval: std::time::Duration,
        /// The scrape interval the cost per scrape is given at.
        #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
        resolution: std::time::Duration,
    },
    /// What the metrics API costs the server with many simulated nodes and pods
    /// (metrics off and on, side by side) and how fast `kubectl top pods -A` answers.
    Metrics {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 30000)]
        pods: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// `--metric-resolution` of the server with metrics on.
        #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
        resolution: std::time::Duration,
        /// Timed runs of `kubectl top pods -A`.
        #[arg(long, default_value_t = 5)]
        top_runs: usize,
    },
    /// A many-replica Deployment on simulated nodes (create, then a rolling update)
    /// against the same number of bare pods.
    Workloads {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        replicas: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// NetworkPolicy enforcement on a real node with many policies and pods: policy
    /// created/deleted → enforced on the wire, and per-request cost against a pod no
    /// policy selects (root; containerd).
    Netpol {
        #[arg(long, default_value_t = 1000)]
        policies: usize,
        #[arg(long, default_value_t = 1000)]
        pods: usize,
        #[arg(long, default_value_t = 30)]
        samples: usize,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
    },
    /// The built-in Ingress controller's proxy against nginx in front of the same
    /// backends, same load generator, in one run (needs Debian's nginx).
    Ingress {
        /// Keep-alive client connections, one request in flight on each.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Length of one timed turn.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Turns per proxy, alternating.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
    },
    /// A mixed workload (Deployments scaled, rolled, deleted; Jobs; ConfigMap churn;
    /// watches opened and dropped) on simulated nodes for N minutes, with the server's
    /// and agent's RSS, descriptors, threads and CPU every minute; fails if memory or
    /// descriptors grow after warm-up.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        #[arg(long, default_value_t = 50)]
        nodes: usize,
    },
    /// Service proxy on a real node in a network namespace of its own: Service create →
    /// first packet through its ClusterIP at each size, ClusterIP against pod IP request
    /// latency, agent RSS with and without the Services (root; containerd).
    Proxy {
        /// Numbers of Services present when the programming latency is sampled.
        #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
        services: Vec<usize>,
        /// Services created and timed at each size.
        #[arg(long, default_value_t = 50)]
        samples: usize,
        /// Requests to each of pod IP and ClusterIP for the per-packet cost.
        #[arg(long, default_value_t = 5000)]
        requests: usize,
        /// Service creates in flight while the background Services are made.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// The node's cluster DNS against dnsmasq serving the same names, one core each,
    /// measured with dnsperf (root; Debian packages dnsperf and dnsmasq-base).
    Dns {
        /// Services whose names both servers hold.
        #[arg(long, default_value_t = 10000)]
        services: usize,
        /// Seconds per dnsperf run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds of runs, alternating which server goes first.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// dnsperf clients (`-c`).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// dnsperf queries outstanding (`-q`).
        #[arg(long, default_value_t = 256)]
        outstanding: usize,
        /// Service creates in flight while the Services are made.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// API server throughput, latency, fan-out and memory against the raw store.
    Api {
        #[arg(long, default_value_t = 5000)]
        creates: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// HTTP/2 connections the concurrent creates are spread over (client-go uses
        /// one per process).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        watchers: usize,
        #[arg(long, default_value_t = 30000)]
        hold_pods: usize,
        /// `sqlite` (default) or `etcd` (a member started for the run).
        #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "etcd"])]
        datastore: String,
        /// With `--datastore etcd`, above 1: creates only, through the first of that many
        /// servers on their embedded etcd cluster (and of one such server first).
        #[arg(long, default_value_t = 1)]
        etcd_members: usize,
    },
    /// Three servers on embedded etcd and an agent's balancer: `kill -9` of the leading
    /// server to the next write through the balancer and to the new leader's first
    /// controller action; idle RSS with embedded etcd against SQLite.
    Failover {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds servers sit idle before their memory is read.
        #[arg(long, default_value_t = 20)]
        idle_seconds: u64,
        /// `--etcd-arg` for the servers of the rounds, `name=value`; repeatable.
        #[arg(long = "etcd-arg")]
        etcd_arg: Vec<String>,
    },
}

#[derive(Args, Clone)]
struct SimArgs {
    /// Register N simulated nodes (no containers; pods bound to them run on paper).
    #[arg(long, default_value_t = 0)]
    simulate: usize,
    /// Capacity of each simulated node, e.g. `cpu=4,memory=8Gi,pods=110`.
    #[arg(long, default_value = "")]
    simulate_capacity: String,
    /// Name prefix of simulated nodes.
    #[arg(long, default_value = "sim")]
    simulate_prefix: String,
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Use this CRI socket (containerd or CRI-O) instead of starting containerd.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// No registry is reachable: `Always` pulls (the default for `:latest`) fall back to
    /// an image already present, with an event saying so.
    #[arg(long)]
    offline: bool,
    /// On exit, leave pods running (their containers outlive containerd in their shims).
    #[arg(long)]
    leave_pods_running: bool,
    /// A static busybox (Debian's busybox-static) for the sandbox image built at start.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// Port of the agent's HTTPS endpoint, which the API server calls for logs.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Folder of static pod manifests (default: `<data-dir>/agent/pod-manifests`).
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Cluster DNS server address(es) for `ClusterFirst` pods (comma-separated): the
    /// `kube-dns` Service, which every real node answers itself.
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    cluster_dns: Vec<String>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// A container's log file is rotated past this size (kubelet's containerLogMaxSize).
    #[arg(long, default_value = "10Mi")]
    container_log_max_size: String,
    /// Log files kept per container, the live one included (containerLogMaxFiles).
    #[arg(long, default_value_t = 5)]
    container_log_max_files: usize,
    /// Container logs go in `<dir>/pods/<ns>_<pod>_<uid>/<container>/<n>.log`, linked
    /// from `<dir>/containers/<pod>_<ns>_<container>-<id>.log`, kubelet's layout that
    /// log collectors read (default: /var/log as root, else `<data-dir>/agent`).
    #[arg(long)]
    pod_log_dir: Option<PathBuf>,
    /// The node's address (default: its first non-loopback IPv4 address).
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    /// Pod cgroups go under `<cgroup-root>/kubepods`: give two agents on one machine
    /// different roots.
    #[arg(long, default_value = "/")]
    cgroup_root: String,
    /// How pods reach other nodes' pods: `host-gw` (routes via the nodes' addresses,
    /// one L2 segment), `vxlan` (encapsulated, anywhere), or `none`.
    #[arg(long, default_value = "host-gw")]
    flannel_backend: skiff_agent::podnet::Backend,
    /// The resolver config pods with `dnsPolicy: Default` get, and the cluster DNS
    /// forwards other names to.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The built-in Ingress controller's HTTP port on this node (0: no HTTP listener).
    #[arg(long, default_value_t = 80)]
    ingress_http_port: u16,
    /// Its HTTPS port (0: no HTTPS listener).
    #[arg(long, default_value_t = 443)]
    ingress_https_port: u16,
}

#[derive(Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    sim: SimArgs,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args, Clone)]
struct AgentArgs {
    /// API server URL, e.g. https://127.0.0.1:6443.
    #[arg(long, env = "SKIFF_SERVER")]
    server: String,
    /// The server's join token (`<data-dir>/token` on the server).
    #[arg(long, env = "SKIFF_TOKEN")]
    token: String,
    /// The cluster CA certificate (`<data-dir>/tls/ca.crt` on the server).
    #[arg(long)]
    ca_file: std::path::PathBuf,
    /// Where the agent keeps containerd's state and images to import
    /// (`<data-dir>/agent`; pod logs too when not root, see `--pod-log-dir`).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Parts of the node not to run: `network-policy` (NetworkPolicies are then not
    /// enforced, and a table an earlier run left is removed), `ingress` (the built-in
    /// Ingress controller, as both its ports 0).
    #[arg(long = "disable", value_delimiter = ',')]
    disable: Vec<String>,
    /// The local port of the agent's API load balancer (k3s' `--lb-server-port`): the
    /// agent's clients reach every server through 127.0.0.1 here.
    #[arg(long, default_value_t = 6444)]
    lb_server_port: u16,
    #[command(flatten)]
    sim: SimArgs,
    #[command(flatten)]
    node: NodeArgs,
}

/// Where the API server keeps its objects.
#[derive(Args, Clone)]
struct DatastoreArgs {
    /// The datastore (k3s' flag): `sqlite://PATH` (default `<data-dir>/db/state.db`),
    /// or etcd: `https://host:2379,…` (with the three files below) or `http://…`.
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,
    /// CA bundle (PEM) that etcd's serving certificate chains to.
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate (PEM) to present to etcd.
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// Key (PEM) of the client certificate.
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
    /// Run an etcd member of our own and keep the state there (k3s' embedded HA); data
    /// already in SQLite moves into it at the first such start.
    #[arg(long)]
    cluster_init: bool,
    /// The embedded member's client port.
    #[arg(long, default_value_t = 2379)]
    etcd_client_port: u16,
    /// The embedded member's peer port.
    #[arg(long, default_value_t = 2380)]
    etcd_peer_port: u16,
    /// One more flag for the embedded etcd member, `name=value` (e.g.
    /// `election-timeout=1000`); repeatable, overriding skiff's own.
    #[arg(long = "etcd-arg")]
    etcd_arg: Vec<String>,
    /// Join the cluster of this server (`https://host:6443`), one started with
    /// `--cluster-init`: this server runs an etcd member too, added to that cluster.
    #[arg(long = "server")]
    join_server: Option<String>,
    /// The server token of the cluster to join (the first server's
    /// `<data-dir>/server-token`).
    #[arg(long = "token", env = "SKIFF_TOKEN")]
    join_token: Option<String>,
    /// Make the embedded member the only one of a new cluster, keeping its data (or,
    /// with `--cluster-reset-restore-path`, the data of a snapshot), then exit.
    #[arg(long)]
    cluster_reset: bool,
    #[arg(long)]
    cluster_reset_restore_path: Option<PathBuf>,
    /// When the embedded member is snapshotted (cron, as k3s: every 12 hours).
    #[arg(long, default_value = "0 */12 * * *")]
    etcd_snapshot_schedule_cron: String,
    /// Scheduled snapshots kept.
    #[arg(long, default_value_t = 5)]
    etcd_snapshot_retention: usize,
    /// Where snapshots go (default `<data-dir>/db/snapshots`).
    #[arg(long)]
    etcd_snapshot_dir: Option<PathBuf>,
    #[arg(long)]
    etcd_disable_snapshots: bool,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Where the store, certificates and kubeconfig live.
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    datastore: DatastoreArgs,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, default_value_t = 6443)]
    https_port: u16,
    /// Write the admin kubeconfig here too (mode 0600).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Extra subject alternative names for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// The `server` the written kubeconfig names, e.g. a fixed registration address in
    /// front of several servers (`https://lb.example:6443`); its host is added to the
    /// serving certificate. Default: this server on loopback.
    #[arg(long, value_parser = parse_kubeconfig_server)]
    kubeconfig_server: Option<KubeconfigServer>,
    /// The address pods reach the API server on (the `kubernetes` Service's endpoint);
    /// default the bind address, or the machine's primary address when that is a
    /// wildcard or loopback.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Components not to run (repeatable or comma-separated): `scheduler`,
    /// `node-ipam`, `node-lifecycle`, `garbage-collector`, `replicaset`, `deployment`,
    /// `job`, `cronjob`, `daemonset`, `statefulset`, `disruption`,
    /// `horizontal-pod-autoscaler`, `pod-garbage-collector`, `endpoint`,
    /// `endpointslice`, `endpointslicemirroring`, `persistentvolume-binder`, `service-lb`, `ingress-status`,
    /// `clusterrole-aggregation`, `csrapproving`, `csrsigning`, `csrcleaner`; `all`
    /// for none. With `skiff up`, also `network-policy` (the node's enforcement) and
    /// `ingress` (the node's Ingress controller).
    #[arg(long = "disable", value_delimiter = ',')]
    disable: Vec<String>,
    /// Authorizers in order (kube-apiserver's `--authorization-mode`): `Node`, `RBAC`,
    /// `AlwaysAllow`, `AlwaysDeny`. Members of `system:masters` are always allowed.
    #[arg(long, default_value = "Node,RBAC", value_parser = parse_modes)]
    authorization_mode: Modes,
    /// Read-only requests in flight at once, per lane (users; nodes and controllers
    /// have a lane of their own); past it users get 429 with `Retry-After`. 0: no limit.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests in flight at once, per lane, as `--max-requests-inflight`.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// How long an Event is kept after it was last written (kube-apiserver's
    /// `--event-ttl`), e.g. `1h` or `90s`.
    #[arg(long, default_value = "1h", value_parser = parse_go_duration)]
    event_ttl: std::time::Duration,
    /// How often nodes' resource metrics are scraped for `metrics.k8s.io` (`kubectl
    /// top`), as metrics-server's `--metric-resolution`, e.g. `15s`.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    metric_resolution: std::time::Duration,
    /// Requests without credentials reach `/healthz`, `/livez`, `/readyz` and
    /// `/version` as `system:anonymous`; false answers them 401 too.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// The audit policy (`audit.k8s.io/v1` Policy, YAML or JSON); with
    /// `--audit-log-path`, every request is logged at the level it gives.
    #[arg(long, requires = "audit_log_path")]
    audit_policy_file: Option<PathBuf>,
    /// Where audit Events go, one JSON object per line (`-`: standard output).
    #[arg(long, requires = "audit_policy_file")]
    audit_log_path: Option<PathBuf>,
    /// Megabytes an audit log file grows to before it is rotated (0: never).
    #[arg(long, default_value_t = 0)]
    audit_log_maxsize: u64,
    /// Rotated audit log files kept (0: all).
    #[arg(long, default_value_t = 0)]
    audit_log_maxbackup: usize,
    /// Encrypt Secrets at rest with a key skiff generates (aescbc, as k3s), kept in
    /// `<data-dir>/cred/encryption-config.json`; `skiff secrets-encrypt` rotates it.
    #[arg(long, conflicts_with = "encryption_provider_config")]
    secrets_encryption: bool,
    /// kube-apiserver's EncryptionConfiguration file (aescbc, aesgcm, secretbox,
    /// identity) for what to encrypt at rest, and with which keys.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// kube-apiserver's AdmissionConfiguration: the PodSecurity plugin's defaults and
    /// exemptions (inline, or a PodSecurityConfiguration file it names).
    #[arg(long)]
    admission_control_config_file: Option<PathBuf>,
    /// Seconds without a Lease renewal after which a node is unreachable.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Longest life of a certificate the built-in signers issue (a Go duration, as
    /// kube-controller-manager's flag); nodes renew theirs at 70–90 % of it.
    #[arg(long, default_value = "8760h", value_parser = parse_go_duration)]
    cluster_signing_duration: std::time::Duration,
    /// Terminated pods (Succeeded, Failed) kept before the oldest are deleted; 0 keeps
    /// them all.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Tests only: seconds between pod GC rounds; a node must be gone for two rounds
    /// before its pods are collected.
    #[arg(long, default_value_t = 20, hide = true)]
    pod_gc_period: u64,
    /// Tests only: the CronJob controller's clock runs this many times faster than
    /// wall time (60: a `*/1 * * * *` schedule fires every second).
    #[arg(long, default_value_t = 1.0, hide = true)]
    cronjob_clock_rate: f64,
    /// Benchmarks only: bind unscheduled pods to nodes in turn, no decisions (the
    /// scheduler's ceiling in `skiff bench scheduler`).
    #[arg(long, hide = true)]
    bench_direct_binder: bool,
}

fn default_data_dir() -> PathBuf {
    // Root gets the system location; anyone else a directory of their own.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        PathBuf::from("/var/lib/skiff")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/skiff")
    }
}

fn main() -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Transparent huge pages make every page the allocator gives back and takes again
    // cost a 2 MiB clear: a fifth of the server's CPU under a create burst. Small pages
    // suit a server whose heap churns.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("warning: could not disable transparent huge pages: {e}");
    }
    // A server holds a descriptor per client and watch: take the hard limit, as Go
    // programs such as kube-apiserver do at start.
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        eprintln!("warning: could not raise the open-files limit to {hard}: {e}");
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    // Few blocking threads: each one that touches the allocator can keep an arena of its
    // own, and the store needs only a handful of readers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Server(a) => run_server(*a, None).await,
            Command::Up(a) => {
                let a = *a;
                run_server(a.server, Some((a.sim, a.node))).await
            }
            Command::Agent(a) => run_agent(*a).await,
            Command::Image(a) => run_image(a).await,
            Command::SecretsEncrypt(a) => secrets_encrypt::run(a, default_data_dir()).await,
            Command::EtcdSnapshot(a) => etcd_snapshot::run(a, default_data_dir()).await,
            Command::EtcdMember(a) => etcd_member::run(a, default_data_dir()).await,
            Command::Bench(BenchCommand::Scheduler {
                nodes,
                pods,
                concurrency,
                hold_pods,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::scheduler(skiff_bench::SchedulerBenchOptions {
                    skiff,
                    node_counts: nodes,
                    pods,
                    concurrency,
                    hold_pods,
                })
                .await
            }
            Command::Bench(BenchCommand::Workloads {
                nodes,
                replicas,
                concurrency,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::workloads(skiff_bench::WorkloadsBenchOptions {
                    skiff,
                    nodes,
                    replicas,
                    concurrency,
                })
                .await
            }
            Command::Bench(BenchCommand::Stats {
                pods,
                seconds,
                interval,
                resolution,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::stats(skiff_bench::StatsBenchOptions {
                    skiff,
                    pods,
                    seconds,
                    interval,
                    resolution,
                })
                .await
            }
            Command::Bench(BenchCommand::Metrics {
                nodes,
                pods,
                concurrency,
                resolution,
                top_runs,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::metrics(skiff_bench::MetricsBenchOptions {
                    skiff,
                    nodes,
                    pods,
                    concurrency,
                    resolution,
                    top_runs,
                })
                .await
            }
            Command::Bench(BenchCommand::Soak { minutes, nodes }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::soak(skiff_bench::SoakBenchOptions {
                    skiff,
                    minutes,
                    nodes,
                })
                .await
            }
            Command::Bench(BenchCommand::CrdCost) => {
                skiff_bench::crd_cost();
                Ok(())
            }
            Command::Bench(BenchCommand::Extensions {
                creates,
                concurrency,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::extensions(skiff_bench::ExtensionsBenchOptions {
                    skiff,
                    creates,
                    concurrency,
                })
                .await
            }
            Command::Bench(BenchCommand::Pods { rounds, concurrent }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::pods(skiff_bench::PodsBenchOptions {
                    skiff,
                    rounds,
                    concurrent,
                })
                .await
            }
            Command::Bench(BenchCommand::Netpol {
                policies,
                pods,
                samples,
                requests,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::netpol(skiff_bench::NetpolBenchOptions {
                    skiff,
                    policies,
                    pods,
                    samples,
                    requests,
                })
                .await
            }
            Command::Bench(BenchCommand::Ingress {
                connections,
                seconds,
                rounds,
            }) => {
                skiff_bench::ingress(skiff_bench::IngressBenchOptions {
                    connections,
                    seconds,
                    rounds,
                })
                .await
            }
            Command::Bench(BenchCommand::Proxy {
                services,
                samples,
                requests,
                concurrency,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::proxy(skiff_bench::ProxyBenchOptions {
                    skiff,
                    services,
                    samples,
                    requests,
                    concurrency,
                })
                .await
            }
            Command::Bench(BenchCommand::Dns {
                services,
                seconds,
                rounds,
                clients,
                outstanding,
                concurrency,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::dns(skiff_bench::DnsBenchOptions {
                    skiff,
                    services,
                    seconds,
                    rounds,
                    clients,
                    outstanding,
                    concurrency,
                })
                .await
            }
            Command::Bench(BenchCommand::Api {
                creates,
                concurrency,
                connections,
                watchers,
                hold_pods,
                datastore,
                etcd_members,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::api(skiff_bench::ApiBenchOptions {
                    skiff,
                    creates,
                    concurrency,
                    connections,
                    watchers,
                    hold_pods,
                    etcd: datastore == "etcd",
                    etcd_members,
                })
                .await
            }
            Command::Bench(BenchCommand::Failover {
                rounds,
                idle_seconds,
                etcd_arg,
            }) => {
                let skiff = std::env::current_exe().context("locating the skiff binary")?;
                skiff_bench::failover(skiff_bench::FailoverBenchOptions {
                    skiff,
                    rounds,
                    idle: std::time::Duration::from_secs(idle_seconds),
                    etcd_args: etcd_arg,
                })
                .await
            }
        }
    })
}

/// Starts one controller given its stop signal (once per term of leadership).
type Start = Box<dyn Fn(tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> + Send>;

/// Runs `starts` while this server leads through `lease`. Losing the lease (renewals
/// failing for 10 s, e.g. while the disk is full) stops them all before anyone else may
/// take it over (15 s), so two leaders never act; then this server campaigns again.
/// kube-controller-manager exits instead and leaves the restart to its supervisor.
fn spawn_led(
    lease: &'static str,
    client: kube::Client,
    identity: String,
    stop: tokio::sync::watch::Receiver<bool>,
    starts: Vec<Start>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if starts.is_empty() {
            return;
        }
        while let Some(mut leading) = skiff_controllers::leader::lead(
            client.clone(),
            lease,
            "kube-system",
            &identity,
            stop.clone(),
        )
        .await
        {
            let (term_tx, term_rx) = tokio::sync::watch::channel(false);
            let handles: Vec<_> = starts.iter().map(|s| s(term_rx.clone())).collect();
            let mut stopping = stop.clone();
            let lost = tokio::select! {
                l = async { leading.wait_for(|l| !*l).await.is_ok() } => l,
                _ = async { stopping.wait_for(|s| *s).await.is_ok() } => false,
            };
            let _ = term_tx.send(true);
            for h in handles {
                let _ = h.await;
            }
            // A renewer that ended with the shutdown (its channel closed) is no loss.
            if !lost {
                return;
            }
            tracing::error!(
                lease,
                "leader election lost; controllers stopped, campaigning again"
            );
        }
    })
}

/// `<hostname>_<id>`, the id kept in the data dir: a restarted server is the same
/// candidate and takes its own lease back at once.
fn server_identity(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("server-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "skiff".into());
    Ok(format!("{host}_{id}"))
}

/// The server's state and credentials (the store holds every Secret, `tls/` the CA key,
/// `token` joins nodes) made readable by their owner only; returns what was open. The
/// agent's directory is closed at its top: containerd keeps its own modes inside.
fn close_private_state(data_dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let state: Vec<PathBuf> = ["", "db", "tls", "token", "kubeconfig.yaml", "server-id"]
        .iter()
        .map(|p| data_dir.join(p))
        .collect();
    let mut opened = skiff_pki::private::close_all(&state)
        .with_context(|| format!("making {} private", data_dir.display()))?;
    let agent = data_dir.join("agent");
    if skiff_pki::private::close(&agent)? {
        opened.push(agent);
    }
    Ok(opened)
}

/// The store `--datastore-endpoint` names: SQLite by default, or etcd, waited for (with
/// a clear message every few seconds) when it is not up yet.
async fn open_store(
    a: &DatastoreArgs,
    data_dir: &std::path::Path,
    embedded: &EmbeddedEtcd,
) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
    let endpoint = a.datastore_endpoint.as_deref().unwrap_or("");
    if a.cluster_init || a.join_server.is_some() {
        anyhow::ensure!(
            endpoint.is_empty(),
            "--cluster-init runs its own etcd: drop --datastore-endpoint"
        );
        return embedded.open(data_dir).await;
    }
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        let path = match endpoint.strip_prefix("sqlite://") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ if endpoint.is_empty() || endpoint.starts_with("sqlite://") => {
                data_dir.join("db").join("state.db")
            }
            _ => anyhow::bail!(
                "--datastore-endpoint {endpoint:?}: expected sqlite://PATH, https://HOST:PORT[,…] or http://HOST:PORT[,…]"
            ),
        };
        let store = skiff_store::SqliteStore::open(&path)
            .with_context(|| format!("opening store {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    let read = |p: &Option<PathBuf>| -> anyhow::Result<Option<Vec<u8>>> {
        p.as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    let cfg = skiff_store::EtcdConfig {
        endpoints: endpoint.split(',').map(str::to_string).collect(),
        ca: read(&a.datastore_cafile)?,
        cert: read(&a.datastore_certfile)?,
        key: read(&a.datastore_keyfile)?,
    };
    if endpoint.starts_with("https://") && cfg.ca.is_none() {
        anyhow::bail!("--datastore-cafile is needed to trust etcd at {endpoint}");
    }
    connect_etcd(&cfg, endpoint).await
}

/// Connects, waiting (and saying so) while etcd does not answer.
async fn connect_etcd(
    cfg: &skiff_store::EtcdConfig,
    endpoint: &str,
) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
    // An etcd still starting may take the connection and leave the first request
    // unanswered until keep-alive gives up (15 s): each attempt is bounded instead.
    const ATTEMPT: std::time::Duration = std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_secs(1);
    loop {
        let attempt = async {
            let s = skiff_store::EtcdStore::connect(cfg).await?;
            skiff_store::Store::current_revision(&s).await.map(|_| s)
        };
        let ready = match tokio::time::timeout(ATTEMPT, attempt).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {ATTEMPT:?}")),
        };
        match ready {
            Ok(s) => {
                tracing::info!(endpoint, "datastore: etcd");
                return Ok(Arc::new(s));
            }
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "etcd is not reachable yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
}

/// `--kubeconfig-server`: an `https://host[:port]` URL, and its host for the serving
/// certificate.
#[derive(Debug, Clone)]
struct KubeconfigServer {
    url: String,
    host: String,
}

fn parse_kubeconfig_server(s: &str) -> Result<KubeconfigServer, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("must be an https:// URL".into());
    }
    let host = uri.host().ok_or("names no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(KubeconfigServer {
        url: s.trim_end_matches('/').to_string(),
        host,
    })
}

async fn run_server(a: ServerArgs, up: Option<(SimArgs, NodeArgs)>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let data_dir = a.data_dir.unwrap_or_else(default_data_dir);
    let mut config = skiff_apiserver::Config::new(data_dir.clone());
    config.bind_address = a.bind_address;
    config.https_port = a.https_port;
    config.tls_sans = a.tls_san;
    if let Some(k) = a.kubeconfig_server {
        config.tls_sans.push(k.host);
        config.kubeconfig_server = Some(k.url);
    }
    config.advertise_address = a.advertise_address;
    config.authorization_modes = a.authorization_mode.0.clone();
    config.anonymous_auth = a.anonymous_auth;
    config.event_ttl = a.event_ttl;
    config.metric_resolution = a.metric_resolution;
    config.inflight = skiff_apiserver::flowcontrol::Limits {
        readonly: a.max_requests_inflight,
        mutating: a.max_mutating_requests_inflight,
    };
    if let Some(f) = &a.admission_control_config_file {
        config.pod_security = pod_security_config(f)?;
    }
    config.audit = a
        .audit_policy_file
        .clone()
        .zip(a.audit_log_path.clone())
        .map(|(policy_file, path)| skiff_apiserver::audit::Config {
            policy_file,
            log: skiff_apiserver::audit::sink::LogConfig {
                path,
                max_size_mb: a.audit_log_maxsize,
                max_backups: a.audit_log_maxbackup,
            },
        });
    config
        .tls_sans
        .extend(a.advertise_address.map(|ip| ip.to_string()));
    // What an earlier run (or a hand) left readable by others is closed, and said.
    for p in close_private_state(&data_dir)? {
        tracing::warn!(path = %p.display(), "was readable by other users; now by its owner only");
    }
    skiff_pki::private::create_private_dir(&data_dir.join("db"))
        .with_context(|| format!("creating {}", data_dir.join("db").display()))?;
    let embedded = EmbeddedEtcd::new(&a.datastore, &data_dir, a.advertise_address)?;
    if a.datastore.cluster_reset {
        let restore = a.datastore.cluster_reset_restore_path.as_deref();
        embedded.reset(&data_dir, restore).await?;
        println!(
            "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now."
        );
        return Ok(());
    }
    let store = open_store(&a.datastore, &data_dir, &embedded).await?;
    config.joinable = embedded.joinable(&data_dir)?;
    let (store, encryption) = secrets_encrypt::wrap_store(
        store,
        &data_dir,
        a.secrets_encryption,
        a.encryption_provider_config.clone(),
    )?;
    config.encryption = encryption;
    let server = skiff_apiserver::server::start(config, store).await?;
    // What this start created is private from the outset (no warning for it).
    close_private_state(&data_dir)?;
    if let Some(extra) = &a.write_kubeconfig {
        let kc = std::fs::read(&server.kubeconfig_path).context("reading generated kubeconfig")?;
        skiff_pki::write_private(extra, &kc)
            .with_context(|| format!("writing {}", extra.display()))?;
    }
    tracing::info!(addr = %server.addr, ready_after_ms = started.elapsed().as_millis() as u64, kubeconfig = %server.kubeconfig_path.display(), "skiff is ready");

    // Controllers go through the API like any client (authentication, authorization,
    // admission, validation, storage), over the in-process loopback transport rather
    // than TLS to ourselves; each acts as its own user, as in Kubernetes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut controllers = Vec::new();
    let loopback = |user: &str| kube::Client::new(server.loopback(user), "default");
    let controller_manager = loopback("system:kube-controller-manager");
    let enabled = |c: &str| !a.disable.iter().any(|d| d == c || d == "all");
    // One list-watch per collection for all of the controller manager's loops.
    let informers = skiff_controllers::trim::informers(controller_manager.clone());
    // Each runs only while this server holds its Lease (kube-controller-manager,
    // kube-scheduler in kube-system), so several servers can share a store.
    let mut manager: Vec<Start> = Vec::new();
    let mut scheduling: Vec<Start> = Vec::new();
    // Node IPAM and lifecycle act as kube-controller-manager's `node-controller`.
    let node_controller = loopback("system:serviceaccount:kube-system:node-controller");
    if enabled("node-ipam") {
        let c = node_controller.clone();
        let i = informers.clone();
        manager.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::ipam::run(c.clone(), i.clone(), stop))
        }));
    }
    if enabled("scheduler") {
        let c = loopback("system:kube-scheduler");
        scheduling.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::scheduler::run(c.clone(), stop))
        }));
    }
    if a.bench_direct_binder {
        let c = loopback("system:kube-scheduler");
        scheduling.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::directbind::run(c.clone(), stop))
        }));
    }
    let grace = std::time::Duration::from_secs(a.node_monitor_grace_period);
    if enabled("node-lifecycle") {
        let c = node_controller.clone();
        let i = informers.clone();
        manager.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::nodelifecycle::run(
                c.clone(),
                i.clone(),
                grace,
                stop,
            ))
        }));
    }
    // `$run(client, [informers,] stop)`, as its own service account.
    macro_rules! managed {
        ($name:literal, $user:literal, $run:path) => {
            if enabled($name) {
                let c = loopback(concat!("system:serviceaccount:kube-system:", $user));
                manager.push(Box::new(move |stop| tokio::spawn($run(c.clone(), stop))));
            }
        };
        ($name:literal, $user:literal, $run:path, informers) => {
            if enabled($name) {
                let c = loopback(concat!("system:serviceaccount:kube-system:", $user));
                let i = informers.clone();
                manager.push(Box::new(move |stop| {
                    tokio::spawn($run(c.clone(), i.clone(), stop))
                }));
            }
        };
    }
    managed!(
        "replicaset",
        "replicaset-controller",
        skiff_controllers::replicaset::run,
        informers
    );
    managed!(
        "deployment",
        "deployment-controller",
        skiff_controllers::deployment::run,
        informers
    );
    if enabled("job") {
        let c = loopback("system:serviceaccount:kube-system:job-controller");
        // Finished Jobs past their TTL go as Kubernetes' ttl-after-finished controller.
        let ttl = loopback("system:serviceaccount:kube-system:ttl-after-finished-controller");
        let i = informers.clone();
        manager.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::job::run(
                c.clone(),
                ttl.clone(),
                i.clone(),
                stop,
            ))
        }));
    }
    managed!(
        "daemonset",
        "daemon-set-controller",
        skiff_controllers::daemonset::run,
        informers
    );
    managed!(
        "statefulset",
        "statefulset-controller",
        skiff_controllers::statefulset::run,
        informers
    );
    managed!(
        "garbage-collector",
        "generic-garbage-collector",
        skiff_controllers::gc::run
    );
    managed!(
        "disruption",
        "disruption-controller",
        skiff_controllers::disruption::run,
        informers
    );
    managed!(
        "endpoint",
        "endpoint-controller",
        skiff_controllers::endpoints::run,
        informers
    );
    managed!(
        "endpointslice",
        "endpointslice-controller",
        skiff_controllers::endpointslice::run,
        informers
    );
    managed!(
        "endpointslicemirroring",
        "endpointslicemirroring-controller",
        skiff_controllers::endpointslicemirroring::run,
        informers
    );
    managed!(
        "service-lb",
        "service-controller",
        skiff_controllers::servicelb::run,
        informers
    );
    managed!(
        "ingress-status",
        "ingress-status-controller",
        skiff_controllers::ingressstatus::run,
        informers
    );
    managed!(
        "clusterrole-aggregation",
        "clusterrole-aggregation-controller",
        skiff_controllers::clusterroleaggregation::run,
        informers
    );
    if ["csrapproving", "csrsigning", "csrcleaner"]
        .iter()
        .any(|c| enabled(c))
    {
        let c = loopback("system:serviceaccount:kube-system:certificate-controller");
        let i = informers.clone();
        let opts = skiff_controllers::certificates::Options {
            pki: server.api.pki.clone(),
            signing_duration: a.cluster_signing_duration,
            approve: enabled("csrapproving"),
            sign: enabled("csrsigning"),
            clean: enabled("csrcleaner"),
        };
        manager.push(Box::new(move |stop| {
            let opts = opts.clone();
            tokio::spawn(skiff_controllers::certificates::run(
                c.clone(),
                i.clone(),
                opts,
                stop,
            ))
        }));
    }
    if enabled("persistentvolume-binder") {
        let sa = |n: &str| loopback(&format!("system:serviceaccount:kube-system:{n}"));
        let clients = skiff_controllers::persistentvolume::Clients {
            binder: sa("persistent-volume-binder"),
            pvc_protection: sa("pvc-protection-controller"),
            pv_protection: sa("pv-protection-controller"),
        };
        let i = informers.clone();
        manager.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::persistentvolume::run(
                clients.clone(),
                i.clone(),
                stop,
            ))
        }));
    }
    managed!(
        "horizontal-pod-autoscaler",
        "horizontal-pod-autoscaler",
        skiff_controllers::hpa::run
    );
    if enabled("pod-garbage-collector") {
        let c = loopback("system:serviceaccount:kube-system:pod-garbage-collector");
        let period = std::time::Duration::from_secs(a.pod_gc_period.max(1));
        let config = skiff_controllers::podgc::Config {
            terminated_threshold: a.terminated_pod_gc_threshold,
            period,
            quarantine: 2 * period,
        };
        let i = informers.clone();
        manager.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::podgc::run(
                c.clone(),
                i.clone(),
                config,
                stop,
            ))
        }));
    }
    if enabled("cronjob") {
        let c = loopback("system:serviceaccount:kube-system:cronjob-controller");
        let clock = skiff_controllers::cronjob::Clock::with_rate(a.cronjob_clock_rate);
        let i = informers.clone();
        manager.push(Box::new(move |stop| {
            tokio::spawn(skiff_controllers::cronjob::run(
                c.clone(),
                i.clone(),
                clock.clone(),
                stop,
            ))
        }));
    }
    let identity = server_identity(&data_dir)?;
    controllers.push(spawn_led(
        "kube-controller-manager",
        controller_manager.clone(),
        identity.clone(),
        stop_rx.clone(),
        manager,
    ));
    controllers.push(spawn_led(
        "kube-scheduler",
        loopback("system:kube-scheduler"),
        identity,
        stop_rx.clone(),
        scheduling,
    ));
    let (sim, node) = up.unzip();
    if node.is_some() || sim.as_ref().is_some_and(|s| s.simulate > 0) {
        // Nodes join as remote nodes would: HTTPS, bootstrapped with the join token.
        let ca = std::fs::read_to_string(data_dir.join("tls").join("ca.crt"))
            .context("reading the cluster CA")?;
        let token =
            std::fs::read_to_string(data_dir.join("token")).context("reading the join token")?;
        let api = Server {
            url: server.api.local_url.clone(),
            ca_pem: ca.clone(),
        };
        let bootstrap = certificates::client(&api, Auth::Token(token.trim())).await?;
        match sim.filter(|s| s.simulate > 0) {
            Some(sim) => {
                let task = spawn_sims(api, bootstrap, sim_options(&sim)?, stop_rx.clone(), None);
                controllers.push(task);
            }
            None => {
                let node = node.expect("a node when not simulating");
                let mut opts = agent_options(&node, &data_dir, &ca)?;
                opts.network_policy = enabled("network-policy");
                if !enabled("ingress") {
                    opts.ingress = skiff_ingress::server::Ports { http: 0, https: 0 };
                }
                let task = spawn_agent(api, bootstrap, opts, stop_rx.clone(), None);
                controllers.push(task);
            }
        }
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); None }
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        why = embedded.failure() => { tracing::error!(%why, "shutting down"); Some(why) }
    };
    let _ = stop_tx.send(true);
    for c in controllers {
        let _ = c.await;
    }
    server.shutdown().await;
    embedded.stop().await;
    match failed {
        Some(why) => anyhow::bail!(why),
        None => Ok(()),
    }
}

/// `--etcd-snapshot-*`.
struct Snapshots {
    schedule: Option<skiff_validation::cron::Schedule>,
    retention: usize,
    dir: PathBuf,
}

/// Takes a snapshot at every time of `schedule` (UTC), keeping the newest `keep`.
async fn scheduled_snapshots(
    member: skiff_etcd::Member,
    schedule: skiff_validation::cron::Schedule,
    dir: PathBuf,
    keep: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const PREFIX: &str = "etcd-snapshot";
    loop {
        let now = chrono::Utc::now();
        let Some(next) = schedule.next_after(now, chrono_tz::UTC) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        match skiff_etcd::snapshot::save(&member, &dir, PREFIX).await {
            Ok(s) => {
                tracing::info!(snapshot = %s.path.display(), bytes = s.size, "etcd snapshot saved")
            }
            Err(e) => tracing::warn!(error = %e, "scheduled etcd snapshot failed"),
        }
        if let Err(e) = skiff_etcd::snapshot::prune(&dir, &format!("{PREFIX}-"), keep) {
            tracing::warn!(error = %e, "pruning etcd snapshots failed");
        }
    }
}

/// The etcd member of `--cluster-init`, supervised beside the server.
struct EmbeddedEtcd {
    member: Option<skiff_etcd::Member>,
    snapshots: Snapshots,
    /// `--server` and `--token`: the cluster this server joins.
    join: Option<(String, String)>,
    stop: tokio::sync::watch::Sender<bool>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Why the member can no longer run (it was removed from the cluster): the server
    /// stops with it.
    failed: tokio::sync::watch::Sender<Option<String>>,
}

impl EmbeddedEtcd {
    fn new(
        a: &DatastoreArgs,
        data_dir: &std::path::Path,
        advertise: Option<IpAddr>,
    ) -> anyhow::Result<EmbeddedEtcd> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "skiff".into());
        let member = (a.cluster_init || a.join_server.is_some()).then(|| skiff_etcd::Member {
            // Unique per server on one machine, stable across restarts.
            name: format!("{host}-{}", a.etcd_peer_port),
            data_dir: data_dir.join("db").join("etcd"),
            tls_dir: data_dir.join("tls").join("etcd"),
            advertise: advertise.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            client_port: a.etcd_client_port,
            peer_port: a.etcd_peer_port,
            join: Vec::new(),
            extra: a.etcd_arg.clone(),
        });
        let (stop, _) = tokio::sync::watch::channel(false);
        let schedule = (!a.etcd_disable_snapshots)
            .then(|| skiff_validation::cron::Schedule::parse(&a.etcd_snapshot_schedule_cron))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--etcd-snapshot-schedule-cron: {e}"))?;
        let snapshots = Snapshots {
            schedule,
            retention: a.etcd_snapshot_retention,
            dir: a
                .etcd_snapshot_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("db").join("snapshots")),
        };
        let join = match (&a.join_server, &a.join_token) {
            (Some(s), Some(t)) => Some((s.clone(), t.clone())),
            (Some(_), None) => {
                anyhow::bail!("--server needs --token (the first server's server-token)")
            }
            _ => None,
        };
        Ok(EmbeddedEtcd {
            member,
            snapshots,
            join,
            stop,
            task: parking_lot::Mutex::new(None),
            failed: tokio::sync::watch::channel(None).0,
        })
    }

    /// What other servers need to join this one's cluster.
    fn joinable(
        &self,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Option<skiff_apiserver::serverjoin::Joinable>> {
        let Some(m) = &self.member else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(data_dir.join("server-token"))?;
        Ok(Some(skiff_apiserver::serverjoin::Joinable {
            server_token: token.trim().to_string(),
            etcd_client_url: m.client_url(),
        }))
    }

    /// Starts the member and returns the store on it, with SQLite's data moved in at
    /// the first start.
    async fn open(
        &self,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
        let mut member = self.member.clone().context("no embedded etcd configured")?;
        if self.join.is_none()
            && let Some(aside) = skiff_etcd::set_aside_unfinished(&member)?
        {
            tracing::warn!(moved = %aside.display(), "the etcd member's first start never answered; starting it afresh");
        }
        let first_join = self
            .join
            .as_ref()
            .filter(|_| !skiff_etcd::has_data(&member));
        let etcd_url = match first_join {
            Some((server, token)) => Some(serverjoin::fetch(server, token, data_dir).await?),
            None => None,
        };
        let pki = skiff_pki::ClusterPki::load_or_create(
            data_dir,
            &skiff_pki::ServingSans::default_for_host(&[]),
        )?;
        member.ensure_certs(&pki)?;
        serverjoin::ensure_server_token(data_dir, &pki.ca_cert_pem, self.join.as_ref())?;
        if let Some(url) = etcd_url {
            member.join = skiff_etcd::add_member(&url, &member).await?;
            tracing::info!(members = member.join.len(), "joined the etcd cluster");
        }
        let cfg = member.store_config()?;
        skiff_etcd::begin_bootstrap(&member)?;
        let rx = self.stop.subscribe();
        let (m, failed) = (member.clone(), self.failed.clone());
        *self.task.lock() = Some(tokio::spawn(async move {
            if let Err(e) = skiff_etcd::supervise(m, rx).await {
                tracing::error!(error = %e, "etcd member supervision failed");
                failed.send_replace(Some(e.to_string()));
            }
        }));
        let local = member.local_client_url();
        let store = tokio::select! {
            store = connect_etcd(&cfg, &local) => store?,
            why = self.failure() => anyhow::bail!(why),
        };
        skiff_etcd::bootstrapped(&member)?;
        if let Some(schedule) = self.snapshots.schedule.clone() {
            let (dir, keep) = (self.snapshots.dir.clone(), self.snapshots.retention);
            tokio::spawn(scheduled_snapshots(
                member.clone(),
                schedule,
                dir,
                keep,
                self.stop.subscribe(),
            ));
        }
        let sqlite = data_dir.join("db").join("state.db");
        if sqlite.exists() && self.join.is_none() {
            let from = skiff_store::SqliteStore::open(&sqlite)?;
            let n = skiff_store::copy_all(&from, store.as_ref()).await?;
            drop(from);
            let moved = sqlite.with_extension("db.moved-to-etcd");
            std::fs::rename(&sqlite, &moved)?;
            tracing::info!(objects = n, kept = %moved.display(), "SQLite state moved into etcd");
        }
        Ok(store)
    }

    /// Waits until the member can no longer run; why. Never, without a member.
    async fn failure(&self) -> String {
        let mut rx = self.failed.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            // The sender lives in `self`: this only ever waits.
            let _ = rx.changed().await;
        }
    }

    /// `--cluster-reset`: the member alone in a new cluster, from its own data or a
    /// snapshot's.
    async fn reset(
        &self,
        data_dir: &std::path::Path,
        restore: Option<&std::path::Path>,
    ) -> anyhow::Result<()> {
        let member = self
            .member
            .clone()
            .context("--cluster-reset needs --cluster-init")?;
        let pki = skiff_pki::ClusterPki::load_or_create(
            data_dir,
            &skiff_pki::ServingSans::default_for_host(&[]),
        )?;
        member.ensure_certs(&pki)?;
        match restore {
            Some(file) => {
                let kept = skiff_etcd::snapshot::restore(&member, file).await?;
                tracing::info!(snapshot = %file.display(), old = %kept.display(), "etcd restored from a snapshot");
            }
            None => skiff_etcd::snapshot::reset(&member).await?,
        }
        // The data is what the user chose, never to be set aside as an unfinished start.
        skiff_etcd::bootstrapped(&member)?;
        Ok(())
    }

    async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// The PodSecurity settings of an AdmissionConfiguration file.
fn pod_security_config(
    file: &std::path::Path,
) -> anyhow::Result<skiff_podsecurity::config::Config> {
    use skiff_podsecurity::config::{
        Source, admission_configuration, parse_pod_security_configuration,
        pod_security_configuration,
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let what = |e: String| anyhow::anyhow!("{}: {e}", file.display());
    match admission_configuration(&read(file)?).map_err(what)? {
        Source::Inline(v) => pod_security_configuration(v).map_err(what),
        Source::File(p) => {
            let p = file.parent().unwrap_or(std::path::Path::new(".")).join(p);
            parse_pod_security_configuration(&read(&p)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
        Source::Absent => Ok(Default::default()),
    }
}

/// `--authorization-mode`'s list as one value (clap would read a `Vec` as repeats).
#[derive(Debug, Clone)]
struct Modes(Vec<skiff_apiserver::auth::Mode>);

fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    skiff_validation::cron::go_duration(s)
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 8760h or 90s"))
}

fn parse_modes(s: &str) -> Result<Modes, String> {
    skiff_apiserver::auth::Mode::parse_list(s).map(Modes)
}

fn sim_options(sim: &SimArgs) -> anyhow::Result<skiff_agent::sim::SimOptions> {
    let capacity = skiff_agent::sim::SimOptions::parse_capacity(&sim.simulate_capacity)
        .map_err(anyhow::Error::msg)?;
    Ok(skiff_agent::sim::SimOptions {
        count: sim.simulate,
        prefix: sim.simulate_prefix.clone(),
        capacity,
    })
}

/// The agent's load balancer in front of the servers, on `port` of 127.0.0.1 (another
/// free port if that one is taken, as by a second agent on this machine).
async fn start_balancer(
    server: &str,
    port: u16,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<skiff_agent::apilb::Balancer> {
    let uri: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server}"))?;
    let host = uri.host().context("--server needs a host")?;
    let target = format!(
        "{}:{}",
        host.trim_matches(['[', ']']),
        uri.port_u16().unwrap_or(6443)
    );
    let first = tokio::net::lookup_host(&target)
        .await?
        .next()
        .with_context(|| format!("{target} has no address"))?;
    let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    match skiff_agent::apilb::Balancer::start(at(port), first, stop.clone()).await {
        Ok(lb) => Ok(lb),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(port, "load balancer port taken; using another");
            Ok(skiff_agent::apilb::Balancer::start(at(0), first, stop).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_agent(a: AgentArgs) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(&a.ca_file)
        .with_context(|| format!("reading {}", a.ca_file.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lb = start_balancer(&a.server, a.lb_server_port, stop_rx.clone()).await?;
    let api = Server {
        url: lb.url(),
        ca_pem: ca.clone(),
    };
    let bootstrap = certificates::client(&api, Auth::Token(&a.token)).await?;
    let task = if a.sim.simulate > 0 {
        let opts = sim_options(&a.sim)?;
        spawn_sims(api, bootstrap, opts, stop_rx, Some(lb))
    } else {
        let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
        let agent_dir = data_dir.join("agent");
        if skiff_pki::private::close(&agent_dir)? {
            tracing::warn!(path = %agent_dir.display(), "was readable by other users; now by its owner only");
        }
        skiff_pki::private::create_private_dir(&agent_dir)?;
        let mut opts = agent_options(&a.node, &data_dir, &ca)?;
        opts.network_policy = !a.disable.iter().any(|d| d == "network-policy");
        if a.disable.iter().any(|d| d == "ingress") {
            opts.ingress = skiff_ingress::server::Ports { http: 0, https: 0 };
        }
        spawn_agent(api, bootstrap, opts, stop_rx, Some(lb))
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop_tx.send(true);
    task.await?;
    Ok(())
}

/// The node agent, as `system:node:<name>` once bootstrapped (its certificate kept in
/// `<agent dir>/pki`).
fn spawn_agent(
    api: Server,
    bootstrap: kube::Client,
    opts: skiff_agent::kubelet::AgentOptions,
    stop: tokio::sync::watch::Receiver<bool>,
    lb: Option<skiff_agent::apilb::Balancer>,
) -> tokio::task::JoinHandle<()> {
    let store = opts.dir.join("pki").join("kubelet-client-current.pem");
    let client =
        certificates::node_client(api, bootstrap, &opts.node_name, Some(store), stop.clone());
    if let Some(lb) = lb {
        tokio::spawn(lb.follow(client.clone(), stop.clone()));
    }
    tokio::spawn(async move {
        if let Err(e) = skiff_agent::kubelet::run(client, opts, stop).await {
            tracing::error!(error = %e, "node agent stopped");
        }
    })
}

/// Simulated nodes, each bootstrapping its own identity (kept in memory only).
fn spawn_sims(
    api: Server,
    bootstrap: kube::Client,
    opts: skiff_agent::sim::SimOptions,
    stop: tokio::sync::watch::Receiver<bool>,
    lb: Option<skiff_agent::apilb::Balancer>,
) -> tokio::task::JoinHandle<()> {
    let first = skiff_agent::sim::fleet(&opts)
        .first()
        .map(|n| n.name.clone());
    tokio::spawn(async move {
        let connect = |node: &str| {
            let c =
                certificates::node_client(api.clone(), bootstrap.clone(), node, None, stop.clone());
            // The fleet learns the servers through its first node.
            if let Some(lb) = lb.as_ref().filter(|_| first.as_deref() == Some(node)) {
                tokio::spawn(lb.clone().follow(c.clone(), stop.clone()));
            }
            c
        };
        if let Err(e) = skiff_agent::sim::run(connect, opts, stop.clone()).await {
            tracing::error!(error = %e, "simulated nodes stopped");
        }
    })
}

async fn run_image(a: ImageArgs) -> anyhow::Result<()> {
    use skiff_cri::{cri, rpc};
    let socket = match &a.container_runtime_endpoint {
        Some(e) => PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)),
        None => a
            .data_dir
            .clone()
            .unwrap_or_else(default_data_dir)
            .join("agent/containerd/containerd.sock"),
    };
    let mut c = skiff_cri::Cri::connect(&socket.display().to_string())
        .await
        .with_context(|| format!("is the node running? no CRI at {}", socket.display()))?;
    match a.command {
        ImageCommand::Import { files } => {
            for f in files {
                skiff_cri::image::import(&socket, &f).await?;
                println!("imported {}", f.display());
            }
        }
        ImageCommand::Ls => {
            let images = rpc(
                "ListImages",
                c.images.list_images(cri::ListImagesRequest::default()),
            )
            .await?;
            println!("{:<60} {:<16} {:>10}", "IMAGE", "IMAGE ID", "SIZE");
            for i in images.images {
                let id =
                    i.id.trim_start_matches("sha256:")
                        .chars()
                        .take(13)
                        .collect::<String>();
                let size = format!("{:.1}MB", i.size as f64 / 1e6);
                let names = if i.repo_tags.is_empty() {
                    i.repo_digests.clone()
                } else {
                    i.repo_tags.clone()
                };
                for n in names {
                    println!("{n:<60} {id:<16} {size:>10}");
                }
            }
        }
        ImageCommand::Rm { images } => {
            for image in images {
                rpc(
                    "RemoveImage",
                    c.images.remove_image(cri::RemoveImageRequest {
                        image: Some(cri::ImageSpec {
                            image: image.clone(),
                            ..Default::default()
                        }),
                    }),
                )
                .await?;
                println!("deleted {image}");
            }
        }
    }
    Ok(())
}

/// Absolute, as CRI wants its log directories (and the links' targets must be).
fn pod_log_dir(node: &NodeArgs, data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = node.pod_log_dir.clone().unwrap_or_else(|| {
        skiff_agent::podlogs::default_root(
            &data_dir.join("agent"),
            nix::unistd::geteuid().is_root(),
        )
    });
    std::path::absolute(&dir).with_context(|| format!("--pod-log-dir {}", dir.display()))
}

fn agent_options(
    node: &NodeArgs,
    data_dir: &std::path::Path,
    ca_pem: &str,
) -> anyhow::Result<skiff_agent::kubelet::AgentOptions> {
    let node_name = match &node.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .context("reading the host name")?
            .to_string_lossy()
            .to_lowercase(),
    };
    Ok(skiff_agent::kubelet::AgentOptions {
        node_name,
        dir: data_dir.join("agent"),
        pod_log_dir: pod_log_dir(node, data_dir)?,
        cri_endpoint: node.container_runtime_endpoint.clone(),
        offline: node.offline,
        leave_running: node.leave_pods_running,
        busybox: node.busybox.clone(),
        ca_pem: ca_pem.to_string(),
        kubelet_port: node.kubelet_port,
        pod_manifest_path: node
            .pod_manifest_path
            .clone()
            .unwrap_or_else(|| data_dir.join("agent").join("pod-manifests")),
        cluster_dns: node.cluster_dns.clone(),
        cluster_domain: node.cluster_domain.clone(),
        container_log_max_size: skiff_agent::criconv::bytes(&node.container_log_max_size)
            .filter(|b| *b > 0)
            .with_context(|| {
                format!(
                    "--container-log-max-size {:?}: not a quantity",
                    node.container_log_max_size
                )
            })? as u64,
        container_log_max_files: node.container_log_max_files.max(2),
        node_ip: node.node_ip,
        cgroup_root: node.cgroup_root.clone(),
        backend: node.flannel_backend,
        resolv_conf: node.resolv_conf.clone(),
        network_policy: true,
        ingress: skiff_ingress::server::Ports {
            http: node.ingress_http_port,
            https: node.ingress_https_port,
        },
    })
}
