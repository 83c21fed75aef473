//! The health servers kube-proxy runs, answering as it does: one per
//! `externalTrafficPolicy: Local` Service on its `healthCheckNodePort` (200 while this
//! node has ready endpoints for it, so load balancers send traffic only to such
//! nodes), and the proxy's own `/healthz` and `/livez` (200 unless a change has waited
//! longer than the health timeout to be applied).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use parking_lot::Mutex;
use skiff_catalog::ServiceKey;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The proxy's sync health, as kube-proxy's `ProxyHealthServer` keeps it.
#[derive(Debug)]
pub struct ProxyHealth {
    timeout: Duration,
    state: Mutex<SyncTimes>,
}

#[derive(Debug, Default)]
struct SyncTimes {
    last_updated: Option<SystemTime>,
    /// When the oldest change not yet applied arrived.
    oldest_pending: Option<Instant>,
}

impl ProxyHealth {
    pub fn new(timeout: Duration) -> ProxyHealth {
        ProxyHealth {
            timeout,
            state: Mutex::new(SyncTimes::default()),
        }
    }

    /// A change arrived that needs the rules updated.
    pub fn queued(&self) {
        self.state
            .lock()
            .oldest_pending
            .get_or_insert_with(Instant::now);
    }

    /// The rules now reflect every change queued so far.
    pub fn updated(&self) {
        let mut s = self.state.lock();
        s.oldest_pending = None;
        s.last_updated = Some(SystemTime::now());
    }

    pub fn healthy(&self) -> bool {
        let s = self.state.lock();
        s.oldest_pending.is_none_or(|t| t.elapsed() < self.timeout)
    }

    fn last_updated(&self) -> Option<SystemTime> {
        self.state.lock().last_updated
    }
}

/// kube-proxy's per-Service answer.
pub fn service_body(key: &ServiceKey, local: usize, proxy_healthy: bool) -> (StatusCode, String) {
    let body = serde_json::json!({
        "service": {"namespace": &*key.namespace, "name": &*key.name},
        "localEndpoints": local,
        "serviceProxyHealthy": proxy_healthy,
    });
    let status = if local > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body.to_string())
}

/// kube-proxy's `/healthz` answer (`lastUpdated` is now while healthy, as there).
pub fn healthz_body(
    healthy: bool,
    last: Option<SystemTime>,
    now: SystemTime,
) -> (StatusCode, String) {
    let fmt = |t: SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%d %H:%M:%S%.f %z UTC")
            .to_string()
    };
    let (status, last) = if healthy {
        (StatusCode::OK, now)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            last.unwrap_or(SystemTime::UNIX_EPOCH),
        )
    };
    let body = serde_json::json!({
        "lastUpdated": fmt(last), "currentTime": fmt(now), "nodeEligible": true,
    });
    (status, body.to_string())
}

fn response(status: StatusCode, body: String, weight: Option<usize>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("X-Content-Type-Options", "nosniff");
    if let Some(w) = weight {
        b = b.header("X-Load-Balancing-Endpoint-Weight", w.to_string());
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

type Handler = Arc<dyn Fn(&str) -> Response<Full<Bytes>> + Send + Sync>;

/// Serves `handler` (given the request path) on `listener` until aborted.
async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let r = handler(req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
            // Load balancers' and scripts' probes often close their side right after
            // the request: answer them anyway.
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Starts `/healthz` and `/livez` on `addr`; the task ends when aborted.
pub async fn spawn_healthz(
    addr: SocketAddr,
    health: Arc<ProxyHealth>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handler: Handler = Arc::new(move |path| match path {
        "/healthz" | "/livez" => {
            let (s, b) = healthz_body(health.healthy(), health.last_updated(), SystemTime::now());
            response(s, b, None)
        }
        _ => response(StatusCode::NOT_FOUND, "{}".into(), None),
    });
    Ok((local, tokio::spawn(serve(listener, handler))))
}

/// The per-Service servers, one listener per `healthCheckNodePort`.
pub struct ServiceHealthServers {
    ip: IpAddr,
    proxy: Arc<ProxyHealth>,
    counts: Arc<Mutex<HashMap<u16, (ServiceKey, usize)>>>,
    listeners: HashMap<u16, JoinHandle<()>>,
}

impl ServiceHealthServers {
    pub fn new(ip: IpAddr, proxy: Arc<ProxyHealth>) -> Self {
        ServiceHealthServers {
            ip,
            proxy,
            counts: Arc::default(),
            listeners: HashMap::new(),
        }
    }

    /// Makes the servers match `want` (port → Service and its local ready endpoints).
    pub async fn sync(&mut self, want: HashMap<u16, (ServiceKey, usize)>) {
        self.listeners.retain(|port, task| {
            let keep = want.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        *self.counts.lock() = want.clone();
        for port in want.keys() {
            if !self.listeners.contains_key(port) {
                self.start(*port).await;
            }
        }
    }

    async fn start(&mut self, port: u16) {
        let listener = match TcpListener::bind((self.ip, port)).await {
            Ok(l) => l,
            Err(e) => {
                // Tried again at the next sync.
                tracing::warn!(port, error = %e, "health check port not served");
                return;
            }
        };
        let (counts, proxy) = (self.counts.clone(), self.proxy.clone());
        let handler: Handler = Arc::new(move |_path| {
            let Some((key, n)) = counts.lock().get(&port).cloned() else {
                return response(StatusCode::NOT_FOUND, "{}".into(), None);
            };
            let (s, b) = service_body(&key, n, proxy.healthy());
            response(s, b, Some(n))
        });
        self.listeners
            .insert(port, tokio::spawn(serve(listener, handler)));
    }

    pub fn ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.listeners.keys().copied().collect();
        v.sort();
        v
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for t in self.listeners.values() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_answers_are_kube_proxys() {
        let key = ServiceKey::new("default", "web");
        let (s, b) = service_body(&key, 2, true);
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"service": {"namespace": "default", "name": "web"},
                               "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        assert_eq!(
            service_body(&key, 0, true).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            service_body(&key, 3, false).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn healthz_turns_unhealthy_when_a_change_waits_too_long() {
        let h = ProxyHealth::new(Duration::from_millis(20));
        assert!(h.healthy(), "healthy while starting");
        h.queued();
        assert!(h.healthy(), "not late yet");
        std::thread::sleep(Duration::from_millis(30));
        assert!(!h.healthy());
        h.updated();
        assert!(h.healthy());
        let (s, b) = healthz_body(true, None, SystemTime::now());
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["nodeEligible"], true);
        assert!(v["lastUpdated"].as_str().unwrap().ends_with("+0000 UTC"));
    }
}
