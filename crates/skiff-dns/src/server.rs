//! The sockets: DNS over UDP and TCP on each configured address, `/metrics` over HTTP,
//! and the task that keeps the index current from the catalog's change feed.
//!
//! Cluster names are answered inline on the receiving task (the index read lock is held
//! only while the reply is built, not while it is encoded or sent); several tasks share
//! each UDP socket so replies are built on every core. A reply built from the index is
//! kept for the same query bytes until the index changes (`replies`). A query that must wait on an
//! upstream is handed to a task of its own, so it never holds up the rest; how many may
//! wait at once is bounded. TCP takes several queries per connection, answered in order,
//! until the client closes it or stays idle too long.

use crate::answer::{Outcome, answer, reply};
use crate::forward::{Forwarder, Net};
use crate::metrics::{self, Metrics, Plugin, Proto};
use crate::replies::{Meta, Replies};
use crate::wire::{self, Request};
use crate::zone::Index;
use crate::{Config, Error};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use parking_lot::RwLock;
use skiff_catalog::{ServiceKey, Shared, Update};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// Queries waiting on upstreams at once; past this they get SERVFAIL at once.
const MAX_FORWARDS: usize = 1024;
/// TCP connections at once; past this new ones are closed (clients retry).
const MAX_TCP: usize = 512;
/// A TCP client has this long to send the rest of a query it started.
const TCP_READ: Duration = Duration::from_secs(3);
/// A reply has this long to be written to a TCP client.
const TCP_WRITE: Duration = Duration::from_secs(10);
/// Replies to cluster names kept per protocol (a few MB at most): the names a busy
/// node's pods ask, many times over.
const REPLIES_KEPT: usize = 10_000;

/// Everything the query path shares.
struct Dns {
    index: RwLock<Index>,
    /// Bumped with each change of `index`, under its write lock.
    generation: AtomicU64,
    replies: Replies,
    forwarder: Forwarder<Net>,
    metrics: Arc<Metrics>,
    forwards: Arc<Semaphore>,
    tcp_idle: Duration,
}

/// Bound sockets, not yet serving.
pub struct Server {
    dns: Arc<Dns>,
    catalog: Arc<Shared>,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    metrics: Option<TcpListener>,
}

/// Binds every socket of `config` (an error if any cannot be bound) and serves until
/// `shutdown` turns true (or its sender goes).
pub async fn serve(
    catalog: Arc<Shared>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    bind(catalog, config).await?.run(shutdown).await
}

/// Binds every socket of `config`: UDP and TCP on each listen address (port 0 picks one
/// port for both), and the metrics address.
pub async fn bind(catalog: Arc<Shared>, config: Config) -> Result<Server, Error> {
    let index = Index::from_config(&config)?;
    let first = *config.listen_udp_tcp.first().ok_or(Error::NoListen)?;
    let (mut udp, mut tcp) = (Vec::new(), Vec::new());
    for addr in &config.listen_udp_tcp {
        let (u, t) = bind_pair(*addr).await?;
        udp.push(Arc::new(u));
        tcp.push(t);
    }
    let metrics = match config.metrics {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?,
        ),
        None => None,
    };
    let counters = Arc::new(Metrics::new(
        format!("dns://:{}", first.port()),
        &config.upstreams,
    ));
    let forwarder = Forwarder::new(
        config.upstreams.clone(),
        Net,
        config.upstream_timeout,
        config.cache_entries,
        counters.clone(),
    );
    let dns = Arc::new(Dns {
        index: RwLock::new(index),
        generation: AtomicU64::new(0),
        replies: Replies::new(REPLIES_KEPT),
        forwarder,
        metrics: counters,
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        tcp_idle: config.tcp_idle,
    });
    Ok(Server {
        dns,
        catalog,
        udp,
        tcp,
        metrics,
    })
}

/// UDP and TCP on one address; with port 0, the same port for both (retried if the
/// kernel's UDP pick is taken for TCP).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let tries = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = udp
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(Error::Bind {
                    addr: local,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(Error::NoListen))
}

impl Server {
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` turns true or its sender goes; every task it started
    /// (connections and pending forwards included) is stopped before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let mut tasks = JoinSet::new();
        let mut updates = self.catalog.subscribe();
        // A catalog synced already is indexed before the first query is read, so no
        // query meets the empty index (SERVFAIL) in the meantime.
        if let Ok(Update::Reset) = updates.try_recv() {
            rebuild(&self.catalog, &self.dns);
        }
        tasks.spawn(follow(self.catalog.clone(), self.dns.clone(), updates));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        for sock in &self.udp {
            for _ in 0..workers {
                tasks.spawn(udp_worker(sock.clone(), self.dns.clone()));
            }
        }
        for listener in self.tcp {
            tasks.spawn(tcp_accept(listener, self.dns.clone()));
        }
        if let Some(listener) = self.metrics {
            tasks.spawn(metrics::serve(listener, self.dns.metrics.clone()));
        }
        tracing::info!(udp = ?self.udp.iter().filter_map(|s| s.local_addr().ok()).collect::<Vec<_>>(), "cluster DNS serving");
        let _ = shutdown.wait_for(|stop| *stop).await;
        tasks.shutdown().await;
        Ok(())
    }
}

/// Keeps the index current: a rebuild (off the lock, then swapped in) on a reset, the
/// changed Services only otherwise; changes that queued up are applied together.
async fn follow(catalog: Arc<Shared>, dns: Arc<Dns>, mut updates: mpsc::UnboundedReceiver<Update>) {
    while let Some(first) = updates.recv().await {
        let (mut reset, mut keys) = (false, Vec::<ServiceKey>::new());
        for u in std::iter::once(first).chain(std::iter::from_fn(|| updates.try_recv().ok())) {
            match u {
                Update::Reset => reset = true,
                Update::Changed(k) => keys.extend(k),
            }
        }
        if reset {
            rebuild(&catalog, &dns);
        } else {
            let serial = unix_serial();
            keys.sort();
            keys.dedup();
            let c = catalog.read();
            let mut index = dns.index.write();
            index.apply(&c, &keys, serial);
            dns.generation.fetch_add(1, Ordering::Release);
        }
    }
}

/// The index built afresh from the catalog (off the lock, then swapped in).
fn rebuild(catalog: &Shared, dns: &Dns) {
    let fresh = {
        let c = catalog.read();
        let mut index = dns.index.read().empty_like();
        index.rebuild(&c, unix_serial());
        index
    };
    let mut index = dns.index.write();
    *index = fresh;
    dns.generation.fetch_add(1, Ordering::Release);
}

/// CoreDNS's SOA serial: the time of the last change, in seconds.
fn unix_serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// What the receiving task does with a packet.
enum Step {
    /// The reply is in the output buffer.
    Send,
    Drop,
    /// It needs an upstream.
    Remote(Box<Remote>),
}

struct Remote {
    query: Message,
    /// An ExternalName chain to complete, rather than a plain forward.
    chase: Option<(Message, Name, RecordType)>,
    limit: u16,
    qtype: u16,
    start: Instant,
}

impl Dns {
    /// Everything that needs no upstream, without awaiting.
    fn local(&self, packet: &[u8], peer: SocketAddr, proto: Proto, out: &mut Vec<u8>) -> Step {
        let start = Instant::now();
        let current = self.generation.load(Ordering::Acquire);
        if let Some(kept) = self.replies.get(proto, packet, current, out) {
            self.metrics.request(proto, peer.is_ipv6(), kept.qtype);
            let took = start.elapsed();
            self.metrics
                .response(Plugin::Kubernetes, kept.rcode, kept.qtype, took);
            return Step::Send;
        }
        let query = match wire::decode(packet) {
            Request::Drop => return Step::Drop,
            Request::Malformed(m) => {
                return self.finish(&m, 0, Plugin::Server, wire::UDP_MIN, start, out);
            }
            Request::Query(q) => q,
        };
        let qtype = query
            .queries
            .first()
            .map_or(0, |q| u16::from(q.query_type()));
        self.metrics.request(proto, peer.is_ipv6(), qtype);
        let limit = match proto {
            Proto::Udp => wire::udp_limit(&query),
            Proto::Tcp => u16::MAX,
        };
        let (outcome, generation) = {
            let index = self.index.read();
            (
                answer(&index, &query),
                self.generation.load(Ordering::Acquire),
            )
        };
        let remote = |chase| {
            Step::Remote(Box::new(Remote {
                query,
                chase,
                limit,
                qtype,
                start,
            }))
        };
        match outcome {
            Outcome::Reply(m) if m.authoritative => {
                let step = self.finish(&m, qtype, Plugin::Kubernetes, limit, start, out);
                if matches!(step, Step::Send) {
                    let rcode = u16::from(m.response_code);
                    let meta = Meta { qtype, rcode };
                    self.replies.put(proto, packet, generation, meta, out);
                }
                step
            }
            Outcome::Reply(m) => self.finish(&m, qtype, Plugin::Server, limit, start, out),
            Outcome::Forward => remote(None),
            Outcome::Chase {
                reply,
                target,
                qtype,
            } => remote(Some((reply, target, qtype))),
        }
    }

    /// The reply for a query that needs an upstream; false if there is none to send.
    async fn remote(&self, r: Box<Remote>, out: &mut Vec<u8>) -> bool {
        let (m, plugin) = match r.chase {
            None => self.forwarder.forward(&r.query).await,
            Some((mut partial, target, qtype)) => {
                if let Some(up) = self.forwarder.lookup(&target, qtype).await {
                    partial.answers.extend(up.answers);
                }
                (partial, Plugin::Kubernetes)
            }
        };
        matches!(
            self.finish(&m, r.qtype, plugin, r.limit, r.start, out),
            Step::Send
        )
    }

    /// SERVFAIL for a query that found every upstream slot taken.
    fn overloaded(&self, r: &Remote, out: &mut Vec<u8>) -> bool {
        let m = reply(&r.query, ResponseCode::ServFail, false);
        matches!(
            self.finish(&m, r.qtype, Plugin::Server, r.limit, r.start, out),
            Step::Send
        )
    }

    fn finish(
        &self,
        m: &Message,
        qtype: u16,
        plugin: Plugin,
        limit: u16,
        start: Instant,
        out: &mut Vec<u8>,
    ) -> Step {
        if !wire::encode(m, limit, out) {
            tracing::debug!(id = m.id, "reply could not be encoded");
            return Step::Drop;
        }
        self.metrics
            .response(plugin, u16::from(m.response_code), qtype, start.elapsed());
        Step::Send
    }
}

/// One of the tasks reading a UDP socket.
async fn udp_worker(sock: Arc<UdpSocket>, dns: Arc<Dns>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(512);
    let mut pending = JoinSet::new();
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive failed");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        while pending.try_join_next().is_some() {}
        match dns.local(&buf[..n], peer, Proto::Udp, &mut out) {
            Step::Send => send(&sock, &out, peer).await,
            Step::Drop => {}
            Step::Remote(r) => match dns.forwards.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (sock, dns) = (sock.clone(), dns.clone());
                    pending.spawn(async move {
                        let mut out = Vec::new();
                        if dns.remote(r, &mut out).await {
                            send(&sock, &out, peer).await;
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    if dns.overloaded(&r, &mut out) {
                        send(&sock, &out, peer).await;
                    }
                }
            },
        }
    }
}

async fn send(sock: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(e) = sock.send_to(bytes, peer).await {
        tracing::debug!(%peer, error = %e, "dns udp send failed");
    }
}

async fn tcp_accept(listener: TcpListener, dns: Arc<Dns>) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, usually: back off rather than spin.
                tracing::warn!(error = %e, "dns tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_TCP {
            continue;
        }
        conns.spawn(tcp_conn(stream, peer, dns.clone()));
    }
}

/// Length-prefixed queries, answered in order, until EOF, an error or idleness.
async fn tcp_conn(mut stream: TcpStream, peer: SocketAddr, dns: Arc<Dns>) {
    let _ = stream.set_nodelay(true);
    let (mut buf, mut out, mut framed) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(dns.tcp_idle, stream.read_u16()).await else {
            return;
        };
        buf.resize(usize::from(len), 0);
        if !matches!(
            tokio::time::timeout(TCP_READ, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let sent = match dns.local(&buf, peer, Proto::Tcp, &mut out) {
            Step::Send => true,
            Step::Drop => false,
            Step::Remote(r) => dns.remote(r, &mut out).await,
        };
        if !sent {
            continue;
        }
        let Ok(n) = u16::try_from(out.len()) else {
            return;
        };
        framed.clear();
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        if !matches!(
            tokio::time::timeout(TCP_WRITE, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
