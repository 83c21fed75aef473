//! The node's ports 80 and 443: each accepted connection served as HTTP/1.1 (with
//! upgrades) or HTTP/2 (by preface on port 80, by ALPN on 443) through the [`Proxy`].
//!
//! One worker thread per core, each a single-threaded runtime with listeners of its own
//! on the shared ports (`SO_REUSEPORT`: the kernel spreads connections; one socket
//! accepted from by every worker measured 15 % slower) and its own pool of endpoint
//! connections, as nginx runs a worker per core: a request and its upstream exchange
//! never cross threads, which on a busy proxy costs more than the HTTP work itself. A port that cannot be bound is retried every few seconds (another
//! server may hold it for now); on shutdown the listeners close and open connections
//! get 5 s to finish.

use crate::pool::Pool;
use crate::proxy::{Peer, Proxy};
use crate::tls::CertResolver;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

/// The listeners' ports; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(5);
const REBIND: Duration = Duration::from_secs(5);

/// Serves both listeners until `shutdown`, on one worker thread per core.
pub async fn serve(
    proxy: Arc<Proxy>,
    certs: Arc<CertResolver>,
    ports: Ports,
    shutdown: watch::Receiver<bool>,
) {
    let tls = TlsAcceptor::from(tls_config(certs));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    tracing::info!(
        http = ports.http,
        https = ports.https,
        workers,
        "ingress controller serving"
    );
    let mut done = Vec::new();
    for w in 0..workers {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (proxy, tls, stop) = (proxy.clone(), tls.clone(), shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("ingress-{w}"))
            .spawn(move || {
                // Sockets polled every 8 tasks rather than 61: a busy worker answers
                // new bytes sooner (p99 1.2-1.4x nginx's at 61, 0.9-1.0x at 8).
                let rt = tokio::runtime::Builder::new_current_thread()
                    .event_interval(8)
                    .enable_all()
                    .build()
                    .expect("a single-threaded runtime");
                rt.block_on(worker(proxy, tls, ports, stop));
                drop(tx);
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => tracing::error!(error = %e, "starting an ingress worker"),
        }
    }
    for d in done {
        let _ = d.await;
    }
}

async fn worker(
    proxy: Arc<Proxy>,
    tls: TlsAcceptor,
    ports: Ports,
    shutdown: watch::Receiver<bool>,
) {
    let pool = proxy.new_pool();
    let mut tasks = tokio::task::JoinSet::new();
    if ports.http != 0 {
        let w = Worker {
            proxy: proxy.clone(),
            pool: pool.clone(),
            tls: None,
            port: ports.http,
        };
        tasks.spawn(w.listen(shutdown.clone()));
    }
    if ports.https != 0 {
        let w = Worker {
            proxy,
            pool,
            tls: Some(tls),
            port: ports.https,
        };
        tasks.spawn(w.listen(shutdown));
    }
    while tasks.join_next().await.is_some() {}
}

fn tls_config(certs: Arc<CertResolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

async fn bind(port: u16, shutdown: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    // Said once: a port another server keeps would otherwise fill the log.
    let mut said = false;
    loop {
        // Dual-stack where the node has IPv6, else IPv4 only.
        let any6 = SocketAddr::from(([0u16; 8], port));
        let bound =
            bind_shared(any6).or_else(|_| bind_shared(SocketAddr::from(([0, 0, 0, 0], port))));
        match bound {
            Ok(l) => {
                tracing::debug!(port, "ingress worker listening");
                return Some(l);
            }
            Err(e) if !said => {
                tracing::warn!(port, error = %e, "ingress port not free; retrying every 5 s");
                said = true;
            }
            Err(e) => tracing::debug!(port, error = %e, "ingress port still not free"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REBIND) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

/// A listener on a port every worker listens on.
fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    s.set_reuseaddr(true)?;
    s.set_reuseport(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

/// One worker's listener on one port.
struct Worker {
    proxy: Arc<Proxy>,
    pool: Arc<Pool>,
    tls: Option<TlsAcceptor>,
    port: u16,
}

impl Worker {
    async fn listen(self, mut shutdown: watch::Receiver<bool>) {
        let Worker {
            proxy,
            pool,
            tls,
            port,
        } = self;
        let Some(listener) = bind(port, &mut shutdown).await else {
            return;
        };
        let mut conns = tokio::task::JoinSet::new();
        let mut stops = Stops::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, addr)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let peer = Peer::new(canonical(addr), tls.is_some(), port);
                    let stop = stops.add();
                    let (proxy, pool, tls) = (proxy.clone(), pool.clone(), tls.clone());
                    conns.spawn(async move {
                        match tls {
                            None => connection(stream, proxy, pool, peer, stop).await,
                            Some(tls) => {
                                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream));
                                if let Ok(Ok(s)) = handshake.await {
                                    connection(s, proxy, pool, peer, stop).await;
                                }
                            }
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        drop(stops);
        let drained =
            tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} });
        if drained.await.is_err() {
            conns.shutdown().await;
        }
    }
}

/// A stop signal per open connection, given by dropping its sender. Not one shared
/// `watch`: every poll of a connection would poll that too, taking the lock its
/// waiters share with every other connection.
#[derive(Default)]
struct Stops {
    senders: Vec<oneshot::Sender<()>>,
    /// Length after the last sweep of closed connections' senders.
    swept: usize,
}

impl Stops {
    fn add(&mut self) -> oneshot::Receiver<()> {
        if self.senders.len() >= 2 * self.swept.max(32) {
            self.senders.retain(|s| !s.is_closed());
            self.swept = self.senders.len();
        }
        let (tx, rx) = oneshot::channel();
        self.senders.push(tx);
        rx
    }
}

/// An IPv4 client on the dual-stack socket, as itself.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

async fn connection<I>(
    io: I,
    proxy: Arc<Proxy>,
    pool: Arc<Pool>,
    peer: Peer,
    stop: oneshot::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // One reference count per request rather than three.
    let ctx = Arc::new((proxy, pool, peer));
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move {
            let (proxy, pool, peer) = &*ctx;
            Ok::<_, Infallible>(proxy.handle(req, peer, pool).await)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "ingress connection ended with an error");
            }
            return;
        }
        _ = stop => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN, conn).await;
}
