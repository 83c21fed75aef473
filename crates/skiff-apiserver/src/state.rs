//! The API server's shared state and its configuration. Every layer reads it; it names
//! only types from modules below the request pipeline.

use crate::auth::{Authorizer, Mode};
use crate::cache::WatchCache;
use crate::metrics::Metrics;
use skiff_pki::{ClusterPki, TokenAuthenticator};
use skiff_store::Store;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_port: u16,
    /// Where to write the admin kubeconfig (default `<data-dir>/kubeconfig.yaml`).
    pub kubeconfig_path: Option<PathBuf>,
    /// Extra SANs for the serving certificate.
    pub tls_sans: Vec<String>,
    /// The kubeconfig's `server`, when clients reach the servers through a fixed
    /// registration address (a load balancer or DNS name in front of them) rather than
    /// this server on loopback.
    pub kubeconfig_server: Option<String>,
    /// The address the `kubernetes` Service's endpoints name (kube-apiserver's
    /// `--advertise-address`); default the bind address unless it is a wildcard or
    /// loopback, else the machine's primary address. Never loopback: pods dial it.
    pub advertise_address: Option<IpAddr>,
    /// Events kept in the watch cache for resuming watches.
    pub watch_cache_events: usize,
    /// Store history older than this many revisions is compacted.
    pub compaction_keep_revisions: i64,
    /// `--authorization-mode`, in order (members of `system:masters` are always allowed).
    pub authorization_modes: Vec<Mode>,
    /// Requests without credentials are `system:anonymous` on the public endpoints
    /// (`--anonymous-auth`); otherwise, and everywhere else, 401.
    pub anonymous_auth: bool,
    /// `--audit-policy-file` and `--audit-log-*`; None: no audit log.
    pub audit: Option<crate::audit::Config>,
    /// Secrets encryption at rest (the store given to `start` is already the
    /// encrypting one); None: off.
    pub encryption: Option<Arc<crate::secrets_encryption::Control>>,
    /// Pod Security defaults and exemptions (`--admission-control-config-file`).
    pub pod_security: skiff_podsecurity::config::Config,
    /// `--max-requests-inflight` / `--max-mutating-requests-inflight`, per lane.
    pub inflight: crate::flowcontrol::Limits,
    /// `--event-ttl`: how long an Event lives after it was last written.
    pub event_ttl: std::time::Duration,
    /// `--metric-resolution`: how often nodes' resource metrics are scraped.
    pub metric_resolution: std::time::Duration,
    /// Other servers may join this one's cluster (it runs an embedded etcd member).
    pub joinable: Option<crate::serverjoin::Joinable>,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            data_dir,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            https_port: 6443,
            kubeconfig_path: None,
            tls_sans: Vec::new(),
            kubeconfig_server: None,
            advertise_address: None,
            watch_cache_events: 20_000,
            compaction_keep_revisions: 50_000,
            authorization_modes: vec![Mode::Node, Mode::Rbac],
            anonymous_auth: true,
            audit: None,
            encryption: None,
            pod_security: Default::default(),
            inflight: Default::default(),
            event_ttl: std::time::Duration::from_secs(3600),
            metric_resolution: std::time::Duration::from_secs(15),
            joinable: None,
        }
    }
}

/// Shared state of the API server.
pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub cache: Arc<WatchCache>,
    pub data_dir: std::path::PathBuf,
    pub joinable: Option<crate::serverjoin::Joinable>,
    pub authorizer: Arc<dyn Authorizer>,
    /// The RBAC policy (kept whatever the modes: escalation checks read it).
    pub rbac: Arc<crate::rbac::Rbac>,
    pub anonymous_auth: bool,
    pub audit: Option<Arc<crate::audit::Auditor>>,
    pub encryption: Option<Arc<crate::secrets_encryption::Control>>,
    pub pod_security: skiff_podsecurity::config::Config,
    pub token_authenticators: Vec<Arc<dyn TokenAuthenticator>>,
    pub metrics: Metrics,
    /// Seats for requests in flight, by lane (overload protection).
    pub flow: crate::flowcontrol::FlowControl,
    /// Services' cluster IPs and node ports.
    pub service_alloc: crate::service_alloc::ServiceAllocator,
    pub started: Instant,
    /// Address clients reach the API on from anywhere in the cluster (the `kubernetes`
    /// Service's endpoint).
    pub advertise: SocketAddr,
    /// `https://…` for clients on this machine (the kubeconfig, an in-process agent).
    pub local_url: String,
    pub ready: watch::Receiver<bool>,
    /// Signs agents' serving certificates.
    pub pki: Arc<ClusterPki>,
    /// mTLS towards node agents (logs, exec, port-forward).
    pub agent_tls: Arc<rustls::ClientConfig>,
    /// The last scrapes of nodes' resource metrics (`metrics.k8s.io`).
    pub resource_metrics: parking_lot::RwLock<skiff_metrics::Store>,
    /// The kinds served now: built-ins and established CustomResourceDefinitions.
    pub registry: crate::registry::Registry,
    /// Admission webhooks and ValidatingAdmissionPolicies.
    pub admission: Arc<crate::dynamic_admission::DynamicAdmission>,
    /// Calls CRDs' conversion webhooks (sharing the admission webhooks' connections).
    pub converter: skiff_admission::Converter,
    /// APIServices: local ones kept, remote ones checked and proxied to.
    pub aggregator: Arc<crate::apiservices::Aggregator>,
    /// OpenAPI v3 documents of the custom group-versions.
    pub openapi: crate::openapi::CustomDocs,
}
