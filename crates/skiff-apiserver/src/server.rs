//! Wiring: the server state, the TLS listener and the per-connection authentication.

use crate::auth::{Chain, UserInfo};
use crate::cache::WatchCache;
use crate::conn::ConnUser;
use crate::conn::Peer;
use crate::metrics::Metrics;
use crate::state::ApiServer;
use crate::state::Config;
use anyhow::Context;
use hyper::body::Incoming;
use skiff_pki::ClusterPki;
use skiff_store::Store;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

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
    let aggregator = Arc::new(crate::apiservices::Aggregator::default());
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
        service_alloc: Default::default(),
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
        converter: admission.converter(),
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
    crate::namespaces::spawn_namespace_finalizer(api.clone());
    crate::namespace_defaults::spawn_namespace_defaults(api.clone());
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
    let router = crate::router::router(api.clone());
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
            router: crate::router::router(api),
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
