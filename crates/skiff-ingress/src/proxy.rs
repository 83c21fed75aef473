//! One request through the controller: routed by the current [`Table`], forwarded over
//! HTTP/1.1 to an endpoint of its Service on a pooled connection (round robin; the next
//! endpoint when one refuses or does not answer the connection, or a pooled connection
//! turns out closed, the request not yet sent, or drops a bodiless idempotent request
//! unanswered), with
//! `X-Forwarded-*` added and hop-by-hop headers dropped; a WebSocket (or any) upgrade
//! becomes a byte pipe between the two sides. No rule: 404; nowhere to send it: 503;
//! every endpoint failing: 502, each with a line saying why.

use crate::pool::{Pool, Returning, Upstream};
use crate::table::{Route, Table};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How the client reached us.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The listener's port, for `X-Forwarded-Port`.
    pub port: u16,
    /// `addr`'s IP and `port` as header values, made once per connection.
    ip_value: HeaderValue,
    port_value: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool, port: u16) -> Peer {
        let value = |s: String| HeaderValue::from_str(&s).expect("digits, dots and colons");
        Peer {
            addr,
            tls,
            port,
            ip_value: value(addr.ip().to_string()),
            port_value: HeaderValue::from(port),
        }
    }
}

/// Routes and forwards; shared by every connection of both listeners.
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    /// Bumped with each new table: workers keep theirs until it moves, rather than
    /// touching the shared lock (and its cache line) on every request.
    version: AtomicU64,
    /// Every worker's pool of endpoint connections.
    pools: Mutex<Vec<Weak<Pool>>>,
    /// One `skiff_ingress::access` line per request.
    access_log: bool,
}

/// At most this many endpoints are tried for one request.
const ATTEMPTS: usize = 3;

impl Proxy {
    /// A proxy that logs every request.
    pub fn new() -> Arc<Proxy> {
        Proxy::with_access_log(true)
    }

    pub fn with_access_log(access_log: bool) -> Arc<Proxy> {
        Arc::new(Proxy {
            table: RwLock::new(Arc::new(Table::default())),
            version: AtomicU64::new(0),
            pools: Mutex::default(),
            access_log,
        })
    }

    /// New requests route by `table`; requests and connections in flight are untouched,
    /// idle connections to endpoints no longer in it close.
    pub fn set_table(&self, table: Table) {
        let live: std::collections::HashSet<SocketAddr> = table
            .upstreams()
            .flat_map(|u| u.addrs.iter().copied())
            .collect();
        *self.table.write() = Arc::new(table);
        self.version.fetch_add(1, Ordering::Release);
        let mut pools = self.pools.lock();
        pools.retain(|p| p.strong_count() > 0);
        for p in pools.iter().filter_map(Weak::upgrade) {
            p.retain(|a| live.contains(a));
        }
    }

    /// The table, as the worker owning `pool` last took it, refreshed if it moved.
    fn current(&self, pool: &Pool) -> Arc<Table> {
        let version = self.version.load(Ordering::Acquire);
        let mut mine = pool.table.lock();
        match &*mine {
            Some((v, t)) if *v == version => t.clone(),
            _ => {
                let t = self.table.read().clone();
                *mine = Some((version, t.clone()));
                t
            }
        }
    }

    /// A pool of endpoint connections for one worker's requests.
    pub fn new_pool(&self) -> Arc<Pool> {
        let pool = Arc::new(Pool::default());
        self.pools.lock().push(Arc::downgrade(&pool));
        pool
    }

    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        pool: &Arc<Pool>,
    ) -> Response<ProxyBody> {
        let table = self.current(pool);
        let host_value = request_host(&req);
        let host = host_value
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut log = self.access_log.then(|| Access::new(&req, host, peer));
        // The endpoint being tried, where the log line (written even if dropped) sees it.
        let mut unlogged = None;
        let trying = match &mut log {
            Some(log) => &mut log.upstream,
            None => &mut unlogged,
        };
        let resp = match table.lookup(host, req.uri().path()) {
            None => {
                let why = format!(
                    "no Ingress rule for host \"{host}\" and path \"{}\"",
                    req.uri().path()
                );
                answer(StatusCode::NOT_FOUND, &why)
            }
            Some(route) => {
                Proxy::forward(route, req, host_value.as_ref(), peer, pool, trying).await
            }
        };
        if let Some(log) = &mut log {
            log.write(resp.status().as_u16());
        }
        resp
    }

    async fn forward(
        route: &Route,
        mut req: Request<Incoming>,
        host: Option<&HeaderValue>,
        peer: &Peer,
        pool: &Arc<Pool>,
        trying: &mut Option<SocketAddr>,
    ) -> Response<ProxyBody> {
        let up = &route.upstream;
        if let Some(problem) = &up.problem {
            let why = format!("{problem} (Ingress {})", route.ingress);
            return answer(StatusCode::SERVICE_UNAVAILABLE, &why);
        }
        let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        upstream_headers(&mut parts.headers, host, peer, upgrade.is_some());
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            parts.uri = origin_form(&parts.uri);
        }
        parts.version = Version::HTTP_11;
        // A bodiless idempotent request is sent again to the next endpoint when one took
        // it and failed without answering (an endpoint stopping as it arrived), as
        // nginx's `proxy_next_upstream error` does.
        let replay = (upgrade.is_none()
            && idempotent(&parts.method)
            && hyper::body::Body::is_end_stream(&body))
        .then(|| parts.clone());
        let mut req = Request::from_parts(parts, Either::Left(body));
        let mut last_error = String::new();
        for addr in up.rotation().take(ATTEMPTS) {
            *trying = Some(addr);
            let mut up = match pool.checkout(addr).await {
                Ok(up) => up,
                Err(e) => {
                    tracing::debug!(upstream = %up.name, error = %e, "endpoint refused; trying the next");
                    last_error = e.to_string();
                    continue;
                }
            };
            match up.send(req).await {
                Ok(resp) => return Proxy::finish(resp, addr, up, upgrade, pool),
                Err(mut e) => {
                    last_error = error_chain(e.error());
                    // Not sent (the connection closed under it): another may take it.
                    match (e.take_message(), &replay) {
                        (Some(r), _) => req = r,
                        (None, Some(p)) => {
                            req = Request::from_parts(p.clone(), Either::Right(Empty::new()))
                        }
                        (None, None) => break,
                    }
                }
            }
        }
        *trying = None;
        let why = format!("{}: {last_error} (Ingress {})", up.name, route.ingress);
        answer(StatusCode::BAD_GATEWAY, &why)
    }

    /// The upstream's response on its way back; a `101` joins the two upgraded
    /// connections, anything else returns its connection to the pool once read.
    fn finish(
        resp: Response<Incoming>,
        addr: SocketAddr,
        up: Upstream,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        pool: &Arc<Pool>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = resp.into_parts();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let mut upstream = Response::from_parts(parts.clone(), body);
                let upstream_upgrade = hyper::upgrade::on(&mut upstream);
                // Its connection, ending, hands the socket over.
                up.spawn();
                tokio::spawn(pipe(client_upgrade, upstream_upgrade));
                return Response::from_parts(parts, empty());
            }
            return answer(
                StatusCode::BAD_GATEWAY,
                "the endpoint switched protocols unasked",
            );
        }
        strip_hop_by_hop(&mut parts.headers);
        let body = Returning::new(body, pool.clone(), addr, up);
        Response::from_parts(parts, body.boxed())
    }
}

/// One request's `skiff_ingress::access` line, written when its response is ready, or
/// with nginx's 499 when the client goes first (the request dropped mid-way), naming
/// the endpoint it was waiting on.
struct Access {
    method: http::Method,
    host: String,
    path: String,
    client: std::net::IpAddr,
    started: Instant,
    /// Set once the line is written.
    logged: bool,
    upstream: Option<SocketAddr>,
}

impl Access {
    fn new<B>(req: &Request<B>, host: &str, peer: &Peer) -> Access {
        Access {
            method: req.method().clone(),
            host: host.to_string(),
            path: req.uri().path().to_string(),
            client: peer.addr.ip(),
            started: Instant::now(),
            logged: false,
            upstream: None,
        }
    }

    fn write(&mut self, status: u16) {
        self.logged = true;
        let upstream = self.upstream.map_or_else(|| "-".into(), |a| a.to_string());
        tracing::info!(
            target: "skiff_ingress::access",
            client = %self.client, method = %self.method, host = %self.host,
            path = %self.path, status, upstream,
            ms = self.started.elapsed().as_secs_f64() * 1000.0,
        );
    }
}

impl Drop for Access {
    fn drop(&mut self) {
        if !self.logged {
            self.write(499);
        }
    }
}

async fn pipe(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
        return;
    };
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// `Host` as the client sent it (HTTP/2: the `:authority`). A header's value is a
/// shared slice of what was read, so taking it costs no copy.
/// RFC 9110's idempotent methods: sending one twice does what sending it once does.
fn idempotent(m: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(m)
}

fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    }
}

fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: a look at each of their few names beats a removal
    // (a hash) per listed name.
    if !h.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = connection_tokens(h)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        h.remove(name);
    }
}

/// The client's headers made the endpoint's.
fn upstream_headers(h: &mut HeaderMap, host: Option<&HeaderValue>, peer: &Peer, upgrade: bool) {
    let upgrade_to = h.get(header::UPGRADE).cloned();
    strip_hop_by_hop(h);
    h.reserve(6);
    if let (true, Some(to)) = (upgrade, upgrade_to) {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, to);
    }
    // HTTP/1.1 brought `Host` along; HTTP/2's `:authority` becomes it.
    if let Some(v) = host {
        if !h.contains_key(header::HOST) {
            h.insert(header::HOST, v.clone());
        }
        h.insert(X_FORWARDED_HOST, v.clone());
    }
    let forwarded_for = match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {}", peer.addr.ip())).ok(),
        None => Some(peer.ip_value.clone()),
    };
    if let Some(v) = forwarded_for {
        h.insert(X_FORWARDED_FOR, v);
    }
    let proto = if peer.tls { "https" } else { "http" };
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    h.insert(X_FORWARDED_PORT, peer.port_value.clone());
    h.insert(X_REAL_IP, peer.ip_value.clone());
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The request target as an origin server expects it (`/path?query`; an HTTP/2 or
/// absolute-form request carries scheme and authority, which `Host` now says).
fn origin_form(client: &Uri) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        client
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// An answer of the controller's own: status line and the reason, as text.
pub fn answer(status: StatusCode, why: &str) -> Response<ProxyBody> {
    let text = format!(
        "{} {}: {why}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer::new("192.0.2.7:5555".parse().unwrap(), true, 443)
    }

    #[test]
    fn forwarded_headers_are_added_and_hop_by_hop_ones_dropped() {
        let mut client = HeaderMap::new();
        client.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        client.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        client.insert("x-secret", "1".parse().unwrap());
        client.insert("keep-alive", "timeout=5".parse().unwrap());
        client.insert(header::ACCEPT, "*/*".parse().unwrap());
        let mut h = client.clone();
        upstream_headers(
            &mut h,
            Some(&HeaderValue::from_static("a.example")),
            &peer(),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["host"], "a.example");
        assert_eq!(h[header::ACCEPT], "*/*");
        for gone in ["connection", "x-secret", "keep-alive"] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
    }

    #[test]
    fn an_upgrade_keeps_its_headers() {
        let mut client = HeaderMap::new();
        client.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        client.insert(header::UPGRADE, "websocket".parse().unwrap());
        let mut h = client.clone();
        upstream_headers(&mut h, Some(&HeaderValue::from_static("a")), &peer(), true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        let mut h = client.clone();
        upstream_headers(&mut h, Some(&HeaderValue::from_static("a")), &peer(), false);
        assert!(!h.contains_key(header::UPGRADE));
    }

    #[test]
    fn the_endpoint_gets_path_and_query_in_origin_form() {
        let u = origin_form(&"/a/b?c=d".parse().unwrap());
        assert_eq!(u.to_string(), "/a/b?c=d");
        let u = origin_form(&"https://h:8443/x?y".parse().unwrap());
        assert_eq!(u.to_string(), "/x?y");
        assert_eq!(u.authority(), None);
    }
}
