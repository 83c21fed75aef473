//! Calling a webhook: HTTPS (verified against its caBundle, or the system roots
//! without one), HTTP/2 or HTTP/1.1 as ALPN settles. An HTTP/2 connection is kept per
//! endpoint and reused (a TLS handshake per call would cost more than the call);
//! HTTP/1.1 gets a connection per call. Errors
//! are worded as Go's net/http and crypto/tls word them, since kube shows them.

use crate::webhook::ClientConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where a Service-backed webhook is reached: the API server resolves the Service
/// through its endpoints (kube's ServiceResolver).
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, namespace: &str, name: &str, port: u16) -> Result<SocketAddr, String>;
}

/// The most of a webhook's response read (kube reads up to 3 MiB more than a request).
const MAX_RESPONSE: usize = 6 * 1024 * 1024;

/// Where one call goes, and how it is trusted and bounded. Admission webhooks and
/// CRD conversion webhooks both reach their endpoints through this.
pub(crate) struct Target<'a> {
    /// The URL as errors show it, `?timeout=` included.
    pub url: String,
    host: String,
    port: u16,
    /// Path and query sent.
    path: String,
    service: Option<(String, String)>,
    /// The PEM CA bundle; empty means the system roots.
    ca_bundle: &'a [u8],
    timeout: Duration,
}

impl<'a> Target<'a> {
    pub(crate) fn new(
        client: &ClientConfig,
        ca_bundle: &'a [u8],
        timeout_seconds: u32,
    ) -> Result<Target<'a>, String> {
        let timeout = format!("timeout={timeout_seconds}s");
        let (host, port, path, service) = match client {
            ClientConfig::Service {
                namespace,
                name,
                path,
                port,
            } => (
                format!("{name}.{namespace}.svc"),
                *port,
                path.clone(),
                Some((namespace.clone(), name.clone())),
            ),
            ClientConfig::Url(u) => {
                let (h, p, path) = split_url(u)?;
                (h, p, path, None)
            }
        };
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let path = format!("{path}?{timeout}");
        let url = match &service {
            Some(_) => format!("https://{host}:{port}{path}"),
            None => url_for_display(client, &path),
        };
        Ok(Target {
            url,
            host,
            port,
            path,
            service,
            ca_bundle,
            timeout: Duration::from_secs(timeout_seconds.into()),
        })
    }
}

fn url_for_display(c: &ClientConfig, path: &str) -> String {
    let ClientConfig::Url(u) = c else {
        return String::new();
    };
    let rest = u.strip_prefix("https://").unwrap_or(u);
    let authority = rest.split('/').next().unwrap_or_default();
    format!("https://{authority}{path}")
}

/// `https://host[:port][/path]` → host (brackets stripped), port, path.
fn split_url(u: &str) -> Result<(String, u16, String), String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("invalid url {u:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("unsupported protocol scheme in {u:?}"));
    }
    let host = uri.host().unwrap_or_default();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let path = uri.path().to_string();
    Ok((host, uri.port_u16().unwrap_or(443), path))
}

/// How webhooks are reached: the Service resolver and the kept connections.
pub(crate) struct Transport {
    resolver: Arc<dyn Resolver>,
    /// Open HTTP/2 connections by (address, server name, caBundle).
    pool: KeptConnections<PoolKey, Full<Bytes>>,
}

type PoolKey = (SocketAddr, String, Vec<u8>);

impl Transport {
    pub(crate) fn new(resolver: Arc<dyn Resolver>) -> Self {
        Transport {
            resolver,
            pool: KeptConnections::default(),
        }
    }
}

/// HTTP/2 client connections kept by where they go, each shared by every request
/// there (a sender is a handle to its connection).
pub struct KeptConnections<K, B> {
    conns: parking_lot::Mutex<HashMap<K, SendRequest<B>>>,
}

impl<K, B> Default for KeptConnections<K, B> {
    fn default() -> Self {
        KeptConnections {
            conns: parking_lot::Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq, B> KeptConnections<K, B> {
    /// The kept connection to `key`, if it is still open.
    pub fn get(&self, key: &K) -> Option<SendRequest<B>> {
        let mut conns = self.conns.lock();
        match conns.get(key) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                conns.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `sender` for `key`, dropping connections the other side has closed.
    pub fn keep(&self, key: K, sender: SendRequest<B>) {
        let mut conns = self.conns.lock();
        conns.retain(|_, s| !s.is_closed());
        conns.insert(key, sender);
    }

    /// Forgets the connection to `key` (it failed).
    pub fn forget(&self, key: &K) {
        self.conns.lock().remove(key);
    }
}

/// POSTs `body` (JSON) to the target and returns a 2xx answer's body; otherwise the
/// error as client-go's REST client words it: `Post "<url>": <transport error>`, or
/// for a non-2xx answer the Status' message (or a generic text).
pub(crate) async fn post_json(
    transport: &Transport,
    target: &Target<'_>,
    body: Vec<u8>,
) -> Result<Bytes, String> {
    let (status, answer) = post(transport, target, body)
        .await
        .map_err(|e| format!("Post {:?}: {e}", target.url))?;
    if !(200..300).contains(&status) {
        return Err(status_error(status, &answer));
    }
    Ok(answer)
}

/// client-go's error for a non-2xx answer: a Status' message, or a generic one.
fn status_error(code: u16, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let msg = parsed
        .as_ref()
        .filter(|v| v.get("kind").and_then(serde_json::Value::as_str) == Some("Status"))
        .and_then(|v| v.get("message"))
        .and_then(serde_json::Value::as_str);
    match msg {
        Some(m) => m.to_string(),
        None if body.is_empty() => {
            format!(
                "the server responded with the status code {code} but did not return more information"
            )
        }
        None => format!(
            "an error on the server ({:?}) has prevented the request from succeeding",
            String::from_utf8_lossy(body).trim()
        ),
    }
}

/// POSTs `body` to the target; `Ok((status, body))` for any HTTP answer, `Err` with
/// the transport error as Go words it (without the `Post "<url>": ` prefix).
async fn post(
    transport: &Transport,
    target: &Target<'_>,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    match tokio::time::timeout(target.timeout, exchange(transport, target, body)).await {
        Ok(r) => r,
        Err(_) => Err("context deadline exceeded".into()),
    }
}

async fn exchange(
    transport: &Transport,
    t: &Target<'_>,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let addr = match &t.service {
        Some((ns, name)) => transport.resolver.resolve(ns, name, t.port).await?,
        None => lookup(&t.host, t.port).await?,
    };
    let authority = format!("{}:{}", t.host, t.port);
    let body = Bytes::from(body);
    let request = || {
        http::Request::post(format!("https://{authority}{}", t.path))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, */*")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())
    };
    let key = (addr, t.host.clone(), t.ca_bundle.to_vec());
    if let Some(mut s) = transport.pool.get(&key)
        && s.ready().await.is_ok()
    {
        match s.try_send_request(request()?).await {
            Ok(resp) => return read(resp).await,
            // The kept connection closed before the request went out: a fresh one
            // below, as Go's transport retries what it never wrote. A request that went
            // out is not sent twice (the webhook may have acted on it).
            Err(e) => {
                transport.pool.forget(&key);
                if e.message().is_none() {
                    return Err(e.into_error().to_string());
                }
            }
        }
    }
    let req = request()?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {}", dial_error(&e)))?;
    // Requests are small and answered at once: no waiting to coalesce segments.
    let _ = tcp.set_nodelay(true);
    let config = tls_config(t.ca_bundle)?;
    let name = ServerName::try_from(t.host.clone()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(&e))?;
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        transport.pool.keep(key, s.clone());
        return read(s.send_request(req).await.map_err(|e| e.to_string())?).await;
    }
    send_http1(TokioIo::new(tls), req, &authority).await
}

async fn send_http1<IO>(
    io: IO,
    mut req: http::Request<Full<Bytes>>,
    authority: &str,
) -> Result<(u16, Bytes), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    *req.uri_mut() = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let host = http::HeaderValue::from_str(authority).map_err(|e| e.to_string())?;
    req.headers_mut().insert(http::header::HOST, host);
    let (mut s, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    read(s.send_request(req).await.map_err(|e| e.to_string())?).await
}

async fn read(resp: http::Response<hyper::body::Incoming>) -> Result<(u16, Bytes), String> {
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn lookup(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))
}

/// A failed connect as Go's net package words its tail (`connect: connection refused`).
pub fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => format!("connect: {e}"),
    }
}

/// Go's crypto/tls and crypto/x509 wording for the common failures.
pub fn tls_error(e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error as Tls};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<Tls>());
    let x509 = |m: &str| format!("tls: failed to verify certificate: x509: {m}");
    match inner {
        Some(Tls::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            x509("certificate signed by unknown authority")
        }
        Some(Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::NotValidYet,
        )) => x509("certificate has expired or is not yet valid"),
        Some(Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => x509("certificate is not valid for the requested host name"),
        Some(other) => format!("tls: {other}"),
        None => e.to_string(),
    }
}

/// Client TLS: the caBundle's certificates (or the system roots), ALPN h2 and http/1.1.
fn tls_config(ca_bundle: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_bundle.is_empty() {
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    } else {
        for c in rustls_pemfile::certs(&mut &*ca_bundle) {
            let c = c.map_err(|e| format!("unable to load root certificates: {e}"))?;
            roots
                .add(c)
                .map_err(|e| format!("unable to load root certificates: {e}"))?;
        }
        if roots.is_empty() {
            return Err("unable to load root certificates: no certificates found".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
