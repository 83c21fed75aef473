//! Connections to extension API servers (APIServices naming a Service), kept as
//! kube-aggregator's pooled transport keeps them: an HTTP/2 connection, once made, is
//! shared by every request and availability check to the same endpoint with the same
//! TLS settings, and the TLS client config is built once per settings, not per request
//! (it parses the caBundle and our proxy key). A server that only speaks HTTP/1.1 gets
//! a connection per request, as before.

use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_admission::KeptConnections;
use std::collections::HashMap;
use std::sync::Arc;

/// What the TLS client config depends on: the APIService's caBundle (base64, as
/// written) and `insecureSkipTLSVerify`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct TlsSettings {
    pub ca_bundle: Option<String>,
    pub insecure: bool,
}

/// Where a request goes: the resolved endpoint and the name the certificate must carry.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub server_name: String,
}

type ConnKey = (Endpoint, TlsSettings);

#[derive(Default)]
pub(crate) struct ExtensionClient {
    configs: parking_lot::Mutex<HashMap<TlsSettings, Arc<rustls::ClientConfig>>>,
    conns: KeptConnections<ConnKey, Body>,
}

impl ExtensionClient {
    /// Sends `req` to `to`, on a kept HTTP/2 connection when there is one (a new one if
    /// that closed before the request went out). `config`
    /// builds the TLS client config for `tls` the first time it is needed. Errors are
    /// worded as Go words dial and TLS failures.
    pub(crate) async fn send(
        &self,
        to: &Endpoint,
        tls: &TlsSettings,
        config: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
        mut req: Request<Body>,
    ) -> Result<http::Response<Incoming>, String> {
        let key = (to.clone(), tls.clone());
        if let Some(mut kept) = self.conns.get(&key)
            && kept.ready().await.is_ok()
        {
            match kept.try_send_request(absolute(req, to)).await {
                Ok(resp) => return Ok(resp),
                // Closed before the request went out (the server ended an idle
                // connection): it goes on a new one, as Go's transport retries what it
                // never wrote. One that went out is not sent again.
                Err(mut e) => {
                    self.conns.forget(&key);
                    match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(e.into_error().to_string()),
                    }
                }
            }
        }
        let config = self.config(tls, config)?;
        match dial(to, config).await? {
            Conn::H2(mut sender) => {
                let out = sender.send_request(absolute(req, to));
                self.conns.keep(key, sender);
                out.await.map_err(|e| e.to_string())
            }
            Conn::H1(mut sender) => sender
                .send_request(origin_form(req))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    fn config(
        &self,
        tls: &TlsSettings,
        build: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(c) = self.configs.lock().get(tls) {
            return Ok(c.clone());
        }
        let mut c = (*build()?).clone();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let c = Arc::new(c);
        self.configs.lock().insert(tls.clone(), c.clone());
        Ok(c)
    }
}

/// The request with an absolute URI, from which HTTP/2 takes `:scheme` and
/// `:authority` (HTTP/1.1 sends the path and a Host header).
fn absolute(mut req: Request<Body>, to: &Endpoint) -> Request<Body> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("https://{}:{}{path}", to.server_name, to.port);
    if let Ok(uri) = uri.parse() {
        *req.uri_mut() = uri;
        req.headers_mut().remove(http::header::HOST);
    }
    req
}

/// The request as HTTP/1.1 sends it: the path, and a Host header (a request given back
/// by a closed HTTP/2 connection carries an absolute URI instead).
fn origin_form(mut req: Request<Body>) -> Request<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return req;
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = path.parse() {
        *req.uri_mut() = uri;
    }
    if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
        req.headers_mut().insert(http::header::HOST, host);
    }
    req
}

enum Conn {
    H2(SendRequest<Body>),
    H1(hyper::client::conn::http1::SendRequest<Body>),
}

/// A new connection: TCP, TLS offering h2 and http/1.1, then the protocol the server
/// chose.
async fn dial(to: &Endpoint, config: Arc<rustls::ClientConfig>) -> Result<Conn, String> {
    let tcp = tokio::net::TcpStream::connect((to.host.as_str(), to.port))
        .await
        .map_err(|e| go_dial_error(&to.host, to.port, &e))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(to.server_name.clone())
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| skiff_admission::tls_error(&e))?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        return Ok(Conn::H2(sender));
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(Conn::H1(sender))
}

/// A dial failure as Go's net package words it (`dial tcp 127.0.0.1:443: connect:
/// connection refused`), which kube-aggregator's messages carry.
fn go_dial_error(host: &str, port: u16, e: &std::io::Error) -> String {
    let addr = match host {
        "localhost" => format!("127.0.0.1:{port}"),
        h => format!("{h}:{port}"),
    };
    format!("dial tcp {addr}: {}", skiff_admission::dial_error(e))
}
