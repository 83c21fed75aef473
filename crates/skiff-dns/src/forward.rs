//! Names outside the cluster: asked of the upstream resolvers, through a cache.
//!
//! Each upstream query gets a fresh random id (the client's is restored on the way back)
//! and, over UDP, a fresh socket with a random port, so a reply can neither be confused
//! with another nor easily spoofed; a reply must match the id and the question. The
//! upstream that answered last is asked first; one that does not answer within the
//! timeout (or refuses) passes the query to the next, and SERVFAIL is the answer when
//! none does. A truncated UDP answer is fetched again over TCP.
//!
//! The cache keeps answers as the upstream's bytes for their smallest TTL (at most an
//! hour), and NXDOMAIN/NODATA for their SOA's negative TTL (RFC 2308, at most 30
//! minutes); it is bounded in entries, dropping expired ones first, then arbitrary ones.
//! TTLs handed out from it count down.
//!
//! The sockets sit behind [`Transport`], so the logic is tested against fakes.

use crate::answer::{EDNS_PAYLOAD, reply, reply_edns};
use crate::metrics::{Metrics, Plugin};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A positive answer is kept at most this long, whatever its TTL (CoreDNS's cache).
const MAX_SUCCESS_TTL: u32 = 3600;
/// A negative answer is kept at most this long.
const MAX_DENIAL_TTL: u32 = 1800;
/// Answers larger than this are not cached (they are rare and would crowd the rest).
const MAX_CACHED_BYTES: usize = 4096;
/// All cached answers together stay under this (typical answers are ~100 bytes, so the
/// entry bound is what usually applies): the node's DNS has a memory budget.
const CACHE_BYTES: usize = 4 << 20;

/// One query to one upstream, and its reply's bytes.
pub trait Transport: Send + Sync + 'static {
    /// Sends `query` over UDP and returns the first reply carrying its id.
    fn udp(&self, to: SocketAddr, query: &[u8])
    -> impl Future<Output = io::Result<Vec<u8>>> + Send;
    /// Sends `query` over TCP (length-prefixed) and returns the reply.
    fn tcp(&self, to: SocketAddr, query: &[u8])
    -> impl Future<Output = io::Result<Vec<u8>>> + Send;
}

/// Real sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Net;

impl Transport for Net {
    async fn udp(&self, to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(any).await?;
        // Connected: the kernel drops datagrams from anyone else.
        sock.connect(to).await?;
        sock.send(query).await?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).await?;
            if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    async fn tcp(&self, to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
        let len = u16::try_from(query.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut stream = TcpStream::connect(to).await?;
        stream.set_nodelay(true)?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let n = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(n)];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    }
}

/// What answers are cached under: the question, and whether DNSSEC records were asked
/// for (they change the answer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Compared and hashed without regard to case.
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
}

impl Key {
    pub fn new(q: &Query, dnssec_ok: bool) -> Key {
        Key {
            name: q.name().clone(),
            qtype: q.query_type(),
            qclass: q.query_class(),
            dnssec_ok,
        }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    bytes: Arc<[u8]>,
    stored: Instant,
    ttl: u32,
    denial: bool,
}

/// Upstream answers by question, bounded in entries. Pure: the time is handed in.
#[derive(Debug)]
pub struct Cache {
    map: HashMap<Key, Cached>,
    cap: usize,
    max_bytes: usize,
    bytes: usize,
    denials: usize,
}

/// A cache hit: the stored bytes, how many seconds they have aged, and whether it is a
/// negative answer.
pub struct Hit {
    pub bytes: Arc<[u8]>,
    pub age: u32,
    pub denial: bool,
}

impl Cache {
    /// At most `cap` entries of at most `max_bytes` together.
    pub fn new(cap: usize, max_bytes: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            cap: cap.max(1),
            max_bytes,
            bytes: 0,
            denials: 0,
        }
    }

    /// A live entry for `key`; an expired one is dropped.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Hit> {
        let c = self.map.get(key)?;
        let age = now.saturating_duration_since(c.stored).as_secs();
        if age >= u64::from(c.ttl) {
            self.remove(key);
            return None;
        }
        Some(Hit {
            bytes: c.bytes.clone(),
            age: age as u32,
            denial: c.denial,
        })
    }

    pub fn put(&mut self, key: Key, bytes: Arc<[u8]>, ttl: u32, denial: bool, now: Instant) {
        // A newer answer supersedes the kept one, even when it is too large to keep.
        self.remove(&key);
        if bytes.len() > self.max_bytes {
            return;
        }
        if self.map.len() >= self.cap || self.bytes + bytes.len() > self.max_bytes {
            self.evict(now, bytes.len());
        }
        self.bytes += bytes.len();
        self.denials += usize::from(denial);
        let entry = Cached {
            bytes,
            stored: now,
            ttl,
            denial,
        };
        self.map.insert(key, entry);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.map.remove(key) {
            self.forget(&old);
        }
    }

    fn forget(&mut self, old: &Cached) {
        self.bytes = self.bytes.saturating_sub(old.bytes.len());
        self.denials = self.denials.saturating_sub(usize::from(old.denial));
    }

    /// Makes room for one more entry of `incoming` bytes: expired entries first; then a
    /// sixteenth of the entries at a time, in hash order (as good as random), so the
    /// next evictions are far apart.
    fn evict(&mut self, now: Instant, incoming: usize) {
        self.map
            .retain(|_, c| now.saturating_duration_since(c.stored).as_secs() < u64::from(c.ttl));
        self.recount();
        while !self.map.is_empty()
            && (self.map.len() >= self.cap || self.bytes + incoming > self.max_bytes)
        {
            let drop: Vec<Key> = self.map.keys().take(self.cap / 16 + 1).cloned().collect();
            for k in &drop {
                self.remove(k);
            }
        }
    }

    fn recount(&mut self) {
        self.bytes = self.map.values().map(|c| c.bytes.len()).sum();
        self.denials = self.map.values().filter(|c| c.denial).count();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Negative entries among [`Cache::len`].
    pub fn denials(&self) -> usize {
        self.denials
    }

    /// Bytes of all entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// How long an upstream answer may be cached, and whether it is negative; none for
/// what is not cached (errors, truncated answers, TTL 0, negative answers without SOA).
pub fn cache_ttl(m: &Message) -> Option<(u32, bool)> {
    if m.truncation {
        return None;
    }
    let kept = match m.response_code {
        ResponseCode::NoError if !m.answers.is_empty() => {
            let min = m.all_sections().map(|r| r.ttl).min()?;
            (min.min(MAX_SUCCESS_TTL), false)
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let soa = m.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?;
            (soa.min(MAX_DENIAL_TTL), true)
        }
        _ => return None,
    };
    (kept.0 > 0).then_some(kept)
}

/// The upstreams and the cache.
pub struct Forwarder<T: Transport = Net> {
    upstreams: Vec<SocketAddr>,
    transport: T,
    timeout: Duration,
    /// The upstream asked first: the last one that answered.
    preferred: AtomicUsize,
    cache: Mutex<Cache>,
    metrics: Arc<Metrics>,
}

impl<T: Transport> Forwarder<T> {
    pub fn new(
        upstreams: Vec<SocketAddr>,
        transport: T,
        timeout: Duration,
        cache_entries: usize,
        metrics: Arc<Metrics>,
    ) -> Forwarder<T> {
        Forwarder {
            upstreams,
            transport,
            timeout,
            preferred: AtomicUsize::new(0),
            cache: Mutex::new(Cache::new(cache_entries, CACHE_BYTES)),
            metrics,
        }
    }

    /// The reply to a client's query of one question (SERVFAIL when no upstream
    /// answers), and who produced it.
    pub async fn forward(&self, query: &Message) -> (Message, Plugin) {
        let Some(q) = query.queries.first() else {
            return (reply(query, ResponseCode::FormErr, false), Plugin::Server);
        };
        let dnssec_ok = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let key = Key::new(q, dnssec_ok);
        match self.resolve(&key, q, query.checking_disabled).await {
            Some((upstream, plugin)) => (for_client(query, upstream), plugin),
            None => (reply(query, ResponseCode::ServFail, false), Plugin::Forward),
        }
    }

    /// The upstream answer for `name`/`qtype` (to complete an ExternalName's chain).
    pub async fn lookup(&self, name: &Name, qtype: RecordType) -> Option<Message> {
        let q = Query::query(name.clone(), qtype);
        let key = Key::new(&q, false);
        self.resolve(&key, &q, false).await.map(|(m, _)| m)
    }

    async fn resolve(&self, key: &Key, q: &Query, cd: bool) -> Option<(Message, Plugin)> {
        if let Some(m) = self.cached(key) {
            return Some((m, Plugin::Cache));
        }
        self.metrics.cache_miss();
        let (m, raw) = self.exchange(q, key.dnssec_ok, cd).await?;
        self.store(key, &m, raw);
        Some((m, Plugin::Forward))
    }

    fn cached(&self, key: &Key) -> Option<Message> {
        let hit = self.cache.lock().get(key, Instant::now())?;
        let mut m = Message::from_vec(&hit.bytes).ok()?;
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(hit.age);
        }
        self.metrics.cache_hit(hit.denial);
        Some(m)
    }

    fn store(&self, key: &Key, m: &Message, raw: Vec<u8>) {
        let Some((ttl, denial)) = cache_ttl(m) else {
            return;
        };
        if raw.len() > MAX_CACHED_BYTES {
            return;
        }
        let mut cache = self.cache.lock();
        cache.put(key.clone(), raw.into(), ttl, denial, Instant::now());
        let (len, denials) = (cache.len(), cache.denials());
        drop(cache);
        self.metrics.cache_entries(len - denials, denials);
    }

    /// Asks the upstreams in turn, from the preferred one; the reply and its bytes.
    async fn exchange(&self, q: &Query, dnssec_ok: bool, cd: bool) -> Option<(Message, Vec<u8>)> {
        let query = upstream_query(q, dnssec_ok, cd);
        let bytes = query.to_vec().ok()?;
        let n = self.upstreams.len();
        let first = self.preferred.load(Relaxed);
        let mut refused = None;
        for i in 0..n {
            let at = (first + i) % n;
            let to = self.upstreams[at];
            self.metrics.forward_request(at);
            match self.ask(to, &query, &bytes).await {
                Ok((m, raw)) => {
                    self.metrics
                        .forward_response(at, u16::from(m.response_code));
                    // A resolver that refuses us may not be ours to use: try the next.
                    if m.response_code == ResponseCode::Refused {
                        refused = Some((m, raw));
                        continue;
                    }
                    self.preferred.store(at, Relaxed);
                    return Some((m, raw));
                }
                Err(e) => {
                    self.metrics.forward_failure(at);
                    tracing::debug!(upstream = %to, error = %e, "upstream did not answer");
                }
            }
        }
        refused
    }

    /// One upstream: UDP, then TCP if the answer was truncated.
    async fn ask(
        &self,
        to: SocketAddr,
        query: &Message,
        bytes: &[u8],
    ) -> io::Result<(Message, Vec<u8>)> {
        let raw = self.within(self.transport.udp(to, bytes)).await?;
        let m = matching(query, &raw)?;
        if !m.truncation {
            return Ok((m, raw));
        }
        let raw = self.within(self.transport.tcp(to, bytes)).await?;
        Ok((matching(query, &raw)?, raw))
    }

    async fn within(&self, f: impl Future<Output = io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

/// The query sent upstream: the client's question, recursion desired, a new id.
fn upstream_query(q: &Query, dnssec_ok: bool, cd: bool) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = cd;
    m.add_query(q.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(dnssec_ok);
    m.set_edns(edns);
    m
}

/// `raw` decoded, if it is the reply to `query` (same id, a response, same question).
fn matching(query: &Message, raw: &[u8]) -> io::Result<Message> {
    let m = Message::from_vec(raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let ours =
        m.id == query.id && m.message_type == MessageType::Response && m.queries == query.queries;
    if !ours {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reply does not match the query",
        ));
    }
    Ok(m)
}

/// An upstream (or cached) answer dressed as the reply to the client's query: its id,
/// its question as it spelled it, its flags and OPT.
fn for_client(query: &Message, upstream: Message) -> Message {
    let mut m = upstream;
    m.metadata.id = query.id;
    m.metadata.op_code = query.op_code;
    m.metadata.recursion_desired = query.recursion_desired;
    m.metadata.checking_disabled = query.checking_disabled;
    m.metadata.recursion_available = true;
    m.metadata.truncation = false;
    m.queries = query.queries.clone();
    m.edns = query.edns.as_ref().map(reply_edns);
    m.signature = None;
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::sync::atomic::AtomicU32;

    /// Upstreams in memory: each address answers per its behaviour; every question
    /// asked is counted.
    #[derive(Default)]
    struct Fake {
        asked: AtomicU32,
        tcp_asked: AtomicU32,
    }

    fn answer_to(query: &[u8], to: SocketAddr, tcp: bool) -> io::Result<Vec<u8>> {
        let q = Message::from_vec(query).unwrap();
        let name = q.queries[0].name().to_ascii();
        let mut m = q.clone();
        m.metadata.message_type = MessageType::Response;
        m.edns = None;
        let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, 30);
        match (to.port(), name.as_str()) {
            (1, _) => return Err(io::ErrorKind::ConnectionRefused.into()),
            (2, _) => m.metadata.response_code = ResponseCode::Refused,
            (_, "big.example.") if !tcp => m.metadata.truncation = true,
            (_, "gone.example.") => {
                m.metadata.response_code = ResponseCode::NXDomain;
                m.add_authority(Record::from_rdata(Name::root(), 60, RData::SOA(soa)));
            }
            (_, "wrong-id.example.") => m.metadata.id ^= 1,
            _ => {
                let owner = q.queries[0].name().clone();
                m.add_answer(Record::from_rdata(
                    owner.clone(),
                    300,
                    RData::A(A::new(192, 0, 2, 1)),
                ));
                m.add_answer(Record::from_rdata(
                    owner,
                    60,
                    RData::A(A::new(192, 0, 2, 2)),
                ));
            }
        }
        Ok(m.to_vec().unwrap())
    }

    impl Transport for Fake {
        async fn udp(&self, to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
            self.asked.fetch_add(1, Relaxed);
            answer_to(query, to, false)
        }
        async fn tcp(&self, to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
            self.tcp_asked.fetch_add(1, Relaxed);
            answer_to(query, to, true)
        }
    }

    fn forwarder(ports: &[u16]) -> Forwarder<Fake> {
        let ups: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let metrics = Arc::new(Metrics::new("dns://:53".into(), &ups));
        Forwarder::new(ups, Fake::default(), Duration::from_secs(1), 100, metrics)
    }

    fn client(name: &str) -> Message {
        let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        q
    }

    #[tokio::test]
    async fn answers_come_back_with_the_clients_id_and_are_cached() {
        let f = forwarder(&[1, 2, 53]);
        let (m, plugin) = f.forward(&client("www.Example.")).await;
        assert_eq!(
            (m.id, m.response_code, plugin),
            (4242, ResponseCode::NoError, Plugin::Forward)
        );
        assert_eq!(
            m.queries[0].name().to_ascii(),
            "www.Example.",
            "the client's spelling"
        );
        assert_eq!(m.answers.len(), 2);
        assert_eq!(
            f.transport.asked.load(Relaxed),
            3,
            "refused, then refused, then answered"
        );
        assert_eq!(f.preferred.load(Relaxed), 2);

        let (m, plugin) = f.forward(&client("WWW.example.")).await;
        assert_eq!((m.id, plugin), (4242, Plugin::Cache));
        assert!(m.answers.iter().all(|r| r.ttl <= 300));
        assert_eq!(
            f.transport.asked.load(Relaxed),
            3,
            "the case-insensitive hit asked nobody"
        );

        let (m, _) = f.forward(&client("gone.example.")).await;
        assert_eq!(m.response_code, ResponseCode::NXDomain);
        let (m, plugin) = f.forward(&client("gone.example.")).await;
        assert_eq!(
            (m.response_code, plugin),
            (ResponseCode::NXDomain, Plugin::Cache)
        );
    }

    #[tokio::test]
    async fn truncation_goes_to_tcp_and_bad_replies_to_servfail() {
        let f = forwarder(&[53]);
        let (m, _) = f.forward(&client("big.example.")).await;
        assert!(!m.truncation && m.answers.len() == 2);
        assert_eq!(f.transport.tcp_asked.load(Relaxed), 1);
        let (m, _) = f.forward(&client("wrong-id.example.")).await;
        assert_eq!(m.response_code, ResponseCode::ServFail);
        let none = forwarder(&[]);
        let (m, _) = none.forward(&client("www.example.")).await;
        assert_eq!(m.response_code, ResponseCode::ServFail);
        let all_down = forwarder(&[1, 1]);
        assert!(
            all_down
                .lookup(&Name::from_ascii("a.example.").unwrap(), RecordType::A)
                .await
                .is_none()
        );
    }

    #[test]
    fn cache_ttls_follow_rfc_2308_and_the_cache_stays_bounded() {
        let owner = Name::from_ascii("a.example.").unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            owner.clone(),
            7200,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        assert_eq!(cache_ttl(&m), Some((3600, false)));
        m.answers[0].ttl = 0;
        assert_eq!(cache_ttl(&m), None);
        let mut neg = Message::new(1, MessageType::Response, OpCode::Query);
        neg.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(cache_ttl(&neg), None, "no SOA, no negative caching");
        let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, 45);
        neg.add_authority(Record::from_rdata(Name::root(), 900, RData::SOA(soa)));
        assert_eq!(cache_ttl(&neg), Some((45, true)));
        neg.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cache_ttl(&neg), None);

        let now = Instant::now();
        let mut c = Cache::new(32, 100);
        let key = |i: usize| {
            Key::new(
                &Query::query(
                    Name::from_ascii(format!("n{i}.example.")).unwrap(),
                    RecordType::A,
                ),
                false,
            )
        };
        for i in 0..100 {
            c.put(key(i), Arc::from(&b"x"[..]), 10, i % 2 == 0, now);
            assert!(c.len() <= 32);
        }
        assert_eq!(c.denials(), c.map.values().filter(|e| e.denial).count());
        c.put(key(1), Arc::from(&[0u8; 101][..]), 10, false, now);
        assert!(c.get(&key(1), now).is_none(), "larger than the whole cache");
        for i in 0..10 {
            c.put(key(i), Arc::from(&[0u8; 30][..]), 10, false, now);
            assert!(c.bytes() <= 100);
            let sum: usize = c.map.values().map(|e| e.bytes.len()).sum();
            assert_eq!(c.bytes(), sum);
        }
        c.put(key(99), Arc::from(&b"x"[..]), 10, false, now);
        assert!(c.get(&key(99), now + Duration::from_secs(9)).is_some());
        assert!(
            c.get(&key(99), now + Duration::from_secs(10)).is_none(),
            "expired"
        );
        assert!(c.get(&key(99), now).is_none(), "and dropped");
    }
}
