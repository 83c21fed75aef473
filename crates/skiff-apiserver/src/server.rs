//! Wiring: the server state, the TLS listener and the per-connection authentication.

use crate::auth::{Authorizer, Chain, Mode, UserInfo};
use crate::cache::WatchCache;
use crate::metrics::Metrics;
use anyhow::Context;
use hyper::body::Incoming;
use skiff_pki::{ClusterPki, TokenAuthenticator};
use skiff_store::Store;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

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
    /// Serialises allocations of cluster IPs and node ports.
    pub alloc_lock: tokio::sync::Mutex<()>,
    /// What each Service holds of the cluster IPs and node ports, by stored version.
    pub service_allocations: parking_lot::Mutex<crate::kinds::HeldByKey>,
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
    /// APIServices: local ones kept, remote ones checked and proxied to.
    pub aggregator: Arc<crate::aggregator::Aggregator>,
    /// OpenAPI v3 documents of the custom group-versions.
    pub openapi: crate::openapi::CustomDocs,
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub kubeconfig_path: PathBuf,
    pub api: Arc<ApiServer>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// An in-process client transport into this server for components that run in the
    /// same process (scheduler, controllers), acting as `username` with only what RBAC
    /// grants that user: a `system:serviceaccount:<ns>:<name>` user is in its
    /// ServiceAccount groups, as kube-controller-manager's controllers are with
    /// `--use-service-account-credentials`.
    pub fn loopback(&self, username: &str) -> Loopback {
        Loopback::new(self.api.clone(), user_named(username, &[]))
    }

    /// As `loopback`, in `groups` too.
    pub fn loopback_in(&self, username: &str, groups: &[&str]) -> Loopback {
        Loopback::new(self.api.clone(), user_named(username, groups))
    }

    /// Stops accepting, lets in-flight requests finish briefly, returns.
    pub async fn shutdown(self) {
        crate::apiservers::withdraw(&self.api).await;
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }

    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn advertise_ip(config: &Config, local: IpAddr) -> IpAddr {
    config
        .advertise_address
        .or_else(|| (!local.is_loopback()).then_some(local))
        .or_else(|| skiff_pki::primary_ipv4().map(IpAddr::V4))
        .unwrap_or(local)
}

/// Starts the API server on `store`: PKI, watch cache, bootstrap objects, listener.
pub async fn start(config: Config, store: Arc<dyn Store>) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let sans = skiff_pki::ServingSans::default_for_host(&config.tls_sans);
    let pki = ClusterPki::load_or_create(&config.data_dir, &sans).context("loading cluster PKI")?;
    let tls = pki.server_config().context("building TLS config")?;
    let agent_tls = skiff_pki::agent_client_config(
        &pki.ca_cert_pem,
        &pki.kubelet_client_cert_pem,
        &pki.kubelet_client_key_pem,
    )
    .context("building the TLS client config for node agents")?;

    let listener = TcpListener::bind((config.bind_address, config.https_port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind_address, config.https_port))?;
    let addr = listener.local_addr()?;
    let local_ip = if config.bind_address.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        config.bind_address
    };
    let advertise = SocketAddr::new(advertise_ip(&config, local_ip), addr.port());
    let local_url = format!("https://{}", SocketAddr::new(local_ip, addr.port()));

    let kubeconfig_path = config
        .kubeconfig_path
        .clone()
        .unwrap_or_else(|| config.data_dir.join("kubeconfig.yaml"));
    let kubeconfig = skiff_pki::kubeconfig(
        config.kubeconfig_server.as_deref().unwrap_or(&local_url),
        &pki.ca_cert_pem,
        &pki.admin_cert_pem,
        &pki.admin_key_pem,
    );
    skiff_pki::write_private(&kubeconfig_path, kubeconfig.as_bytes())
        .with_context(|| format!("writing {}", kubeconfig_path.display()))?;

    let cache = WatchCache::start(store.clone(), config.watch_cache_events)
        .await
        .context("starting watch cache")?;
    let audit = match &config.audit {
        Some(a) => Some(Arc::new(
            crate::audit::Auditor::load(a).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let rbac = Arc::new(crate::rbac::Rbac::default());
    cache.add_observer(rbac.prefixes(), rbac.clone());
    let nodes = Arc::new(crate::nodeauth::NodeAuthorizer::default());
    cache.add_observer(nodes.prefixes(), nodes.clone());
    let crds = Arc::new(crate::crds::Crds::default());
    cache.add_observer(crds.prefixes(), crds.clone());
    let admission = Arc::new(crate::dynamic_admission::DynamicAdmission::new(
        cache.clone(),
    ));
    cache.add_observer(admission.prefixes(), admission.clone());
    let aggregator = Arc::new(crate::aggregator::Aggregator::default());
    cache.add_observer(aggregator.prefixes(), aggregator.clone());
    let (ready_tx, ready_rx) = watch::channel(false);
    let api = Arc::new(ApiServer {
        store: store.clone(),
        cache: cache.clone(),
        data_dir: config.data_dir.clone(),
        joinable: config.joinable.clone(),
        authorizer: Arc::new(Chain::new(&config.authorization_modes, rbac.clone(), nodes)),
        rbac,
        anonymous_auth: config.anonymous_auth,
        audit,
        encryption: config.encryption.clone(),
        pod_security: config.pod_security.clone(),
        token_authenticators: vec![
            Arc::new(skiff_pki::StaticTokenAuthenticator::new(&pki.join_token)),
            Arc::new(
                crate::serviceaccount::ServiceAccountTokenAuthenticator::new(
                    pki.service_account_key.clone(),
                    cache.clone(),
                    vec![crate::serviceaccount::ISSUER.to_string()],
                ),
            ),
        ],
        metrics: Metrics::default(),
        flow: crate::flowcontrol::FlowControl::new(config.inflight),
        alloc_lock: tokio::sync::Mutex::new(()),
        service_allocations: Default::default(),
        started: Instant::now(),
        advertise,
        local_url,
        ready: ready_rx,
        agent_tls,
        pki: Arc::new(pki),
        resource_metrics: Default::default(),
        registry: crate::registry::Registry::default(),
        openapi: Default::default(),
        aggregator: aggregator.clone(),
        admission,
    });
    crate::bootstrap::ensure(&api)
        .await
        .context("creating bootstrap objects")?;
    crate::crds::spawn(api.clone(), crds);
    crate::aggregator::spawn(api.clone(), aggregator);
    let _ = ready_tx.send(true);
    spawn_background(&api, &config);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(accept_loop(listener, acceptor, api.clone(), shutdown_rx));
    tracing::info!(%addr, kubeconfig = %kubeconfig_path.display(), "API server listening");
    Ok(RunningServer {
        addr,
        kubeconfig_path,
        api,
        shutdown: shutdown_tx,
        task,
    })
}

fn spawn_background(api: &Arc<ApiServer>, config: &Config) {
    // Compaction: keep a window of history so watches can resume, drop the rest.
    let store = api.store.clone();
    let keep = config.compaction_keep_revisions;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Ok(rev) = store.current_revision().await else {
                continue;
            };
            let target = rev - keep;
            if target > 0
                && let Err(e) = store.compact(target).await
            {
                tracing::warn!(error = %e, target, "compaction failed");
            }
        }
    });
    crate::kinds::spawn_namespace_finalizer(api.clone());
    crate::serviceaccount::spawn_namespace_defaults(api.clone());
    crate::eventttl::spawn(api.clone(), config.event_ttl);
    crate::metricsapi::spawn_scraper(api.clone(), config.metric_resolution);
    crate::apiservers::spawn(api.clone());
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    api: Arc<ApiServer>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = crate::handlers::router(api.clone());
    let protocols = Arc::new(crate::httpconn::Protocols::new());
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, most likely: give connections time to end.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress; connection dropped");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let protocols = protocols.clone();
        let api = api.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            drop(handshake);
            let _open = Open::new(&api);
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| skiff_pki::user_from_client_cert(leaf.as_ref()));
            let conn_user = ConnUser(cert_user);
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(conn_user.clone());
                req.extensions_mut().insert(Peer(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            protocols.serve(tls, svc, shutdown).await;
        });
    }
}

/// Counts a connection open in `skiff_open_connections` while it lives.
struct Open(Arc<ApiServer>);

impl Open {
    fn new(api: &Arc<ApiServer>) -> Open {
        api.metrics
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open(api.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .metrics
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A client that opens a connection and never finishes its handshake holds a task and
/// a descriptor this long at most, and only this many such connections exist at once
/// (further ones are closed at once until handshakes finish).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 1024;

/// A `tower::Service` that hands requests straight to the router: no TCP, TLS or HTTP
/// framing, which at thousands of binds a second is a third of a request's CPU. Every
/// request still goes through authentication (as the loopback user), authorization,
/// admission, validation and storage, exactly as a remote request does.
#[derive(Clone)]
pub struct Loopback {
    router: axum::Router,
    user: ConnUser,
}

/// A user as authentication would present it: a ServiceAccount in its groups, everyone
/// in `system:authenticated`.
fn user_named(username: &str, groups: &[&str]) -> UserInfo {
    let mut all: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    if let Some((ns, _)) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        all.push("system:serviceaccounts".into());
        all.push(format!("system:serviceaccounts:{ns}"));
    }
    all.push(crate::identity::AUTHENTICATED.into());
    UserInfo {
        username: username.to_string(),
        uid: String::new(),
        groups: all,
    }
}

impl Loopback {
    pub fn new(api: Arc<ApiServer>, user: UserInfo) -> Loopback {
        Loopback {
            router: crate::handlers::router(api),
            user: ConnUser(Some(user)),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> tower::Service<hyper::Request<B>> for Loopback
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = hyper::Response<axum::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(self.user.clone());
        req.extensions_mut()
            .insert(Peer(SocketAddr::from(([127, 0, 0, 1], 0))));
        Box::pin(self.router.clone().oneshot(req))
    }
}

/// The user a connection's client certificate authenticated, if any.
#[derive(Clone, Debug)]
pub struct ConnUser(pub Option<UserInfo>);

/// The remote address of a request.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);
