//! A [`kube::Client`] that talks HTTP/2 over one TLS connection, as kubelet's client-go
//! transport does. kube-rs' own client speaks HTTP/1.1, where every request in flight
//! needs a connection of its own: a node that updates two pods' status at once holds
//! two, and at thousands of nodes the API server keeps tens of thousands of idle
//! connections. Over HTTP/2 a node's Lease renewals, status updates and watches share
//! one connection, kept honest by pings.

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use std::time::Duration;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// client-go's HTTP/2 health check: a ping after 30 s without frames, the connection
/// dropped if no answer comes within 15 s (kubelet's `ReadIdleTimeout`/`PingTimeout`).
const PING_AFTER: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for `config` whose requests all share one HTTP/2 connection (opened on first
/// use, reopened after it fails). TLS only: HTTP/2 is negotiated through ALPN.
pub fn client(config: kube::Config) -> kube::Result<kube::Client> {
    // hyper-rustls offers `h2` through ALPN itself.
    let tls = config.rustls_client_config()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    let hyper = HyperClient::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_AFTER)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        // The token layer's filter fails with a boxed error; so must the client under it.
        .map_err(|e| -> BoxError { Box::new(e) })
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}
