//! The agent's HTTPS endpoint (port 10250): a serving certificate from the cluster CA,
//! and only the API server's kubelet-client identity may connect. Serves
//! `/containerLogs/<ns>/<pod>/<container>` from CRI log files, exec, attach and
//! port-forward, and the statistics (`/stats/summary`, `/metrics/resource`, `/metrics`).

use crate::logs::{self, LogOptions};
use crate::runtime::Runtime;
use crate::stats::Stats;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn text(code: StatusCode, msg: String) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(msg)).map_err(|e| match e {}).boxed())
        .expect("valid response")
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    runtime: Arc<dyn Runtime>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "agent endpoint accept failed"); continue; }
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let (runtime, stats) = (runtime.clone(), stats.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            // The client CA is checked by rustls; the identity is checked here.
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| skiff_pki::user_from_client_cert(leaf.as_ref()));
            let allowed = user
                .as_ref()
                .is_some_and(|u| u.username == skiff_pki::KUBELET_CLIENT_CN);
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (runtime, stats) = (runtime.clone(), stats.clone());
                async move {
                    if !allowed {
                        return Ok::<_, std::convert::Infallible>(text(
                            StatusCode::FORBIDDEN,
                            "only the API server may use this endpoint".into(),
                        ));
                    }
                    Ok(route(runtime, &stats, req).await)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "agent endpoint connection ended");
            }
        });
    }
}

async fn route(runtime: Arc<dyn Runtime>, stats: &Stats, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method().as_str(), segs.as_slice()) {
        ("GET", ["containerLogs", ns, pod, container]) => {
            container_logs(runtime, ns, pod, container, req.uri().query().unwrap_or("")).await
        }
        ("GET", ["exec", ns, pod, container]) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            crate::exec::serve(runtime, &ns, &pod, &container, req).await
        }
        ("GET", ["attach", ns, pod, container]) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            crate::exec::serve_attach(runtime, &ns, &pod, &container, req).await
        }
        ("GET", ["portForward", ns, pod]) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            crate::exec::serve_port_forward(runtime, &ns, &pod, req).await
        }
        ("GET", ["healthz"]) => text(StatusCode::OK, "ok".into()),
        ("GET", ["stats", "summary"]) => {
            let only = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .any(|(k, v)| k == "only_cpu_and_memory" && v == "true");
            crate::stats::serve::summary(stats, only).await
        }
        ("GET", ["metrics", "resource"]) => crate::stats::serve::resource(stats).await,
        ("GET", ["metrics"]) => crate::stats::serve::agent(stats).await,
        _ => text(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    }
}

async fn container_logs(
    runtime: Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let opts = match LogOptions::parse(query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    // The API server names the instance (it decides from the pod's status, as kubelet
    // does); without it, the newest instance or the one before.
    let by_id = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "containerID")
        .map(|(_, v)| v.into_owned());
    let found = match &by_id {
        Some(id) => runtime.log_target_by_id(id).await,
        None => runtime.log_target(ns, pod, container, opts.previous).await,
    };
    let target = match found {
        Ok(Some(t)) => t,
        Ok(None) if opts.previous => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        Ok(None) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                ),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    tokio::spawn(async move {
        if let Err(e) = stream_file(&runtime, &target, &opts, &tx).await {
            tracing::debug!(path = %target.path.display(), error = %e, "log stream ended");
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(body))
        .expect("valid response")
}

/// Sends the rendered log, then (with follow) what is appended until the container ends
/// or the client goes away; stops at `limitBytes`.
async fn stream_file(
    runtime: &Arc<dyn Runtime>,
    target: &crate::runtime::LogTarget,
    opts: &LogOptions,
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) -> std::io::Result<()> {
    let mut file = match tokio::fs::File::open(&target.path).await {
        Ok(f) => f,
        // A container that never wrote has no file yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.follow => loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(f) = tokio::fs::File::open(&target.path).await {
                break f;
            }
            if tx.is_closed() || !runtime.running(&target.container_id).await.unwrap_or(false) {
                return Ok(());
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut buf = String::new();
    file.read_to_string(&mut buf).await?;
    let mut budget = opts.limit_bytes.unwrap_or(usize::MAX);
    let (complete, rest) = split_complete(&buf);
    let first = logs::tail(logs::render(&complete, opts), opts.tail_lines);
    if !send(tx, first, &mut budget).await {
        return Ok(());
    }
    if !opts.follow {
        return Ok(());
    }
    let mut carry = rest.to_string();
    let mut pos = file.seek(SeekFrom::Current(0)).await?;
    let mut idle_checks = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tx.is_closed() {
            return Ok(());
        }
        let mut more = String::new();
        file.seek(SeekFrom::Start(pos)).await?;
        let n = file.read_to_string(&mut more).await?;
        pos += n as u64;
        if n > 0 {
            carry.push_str(&more);
            let (complete, rest) = split_complete(&carry);
            let lines = logs::render(&complete, opts);
            let rest = rest.to_string();
            if !send(tx, lines, &mut budget).await {
                return Ok(());
            }
            carry = rest;
            continue;
        }
        // Nothing new: every second, see whether the container still runs.
        idle_checks += 1;
        if idle_checks.is_multiple_of(10)
            && !runtime.running(&target.container_id).await.unwrap_or(false)
        {
            return Ok(());
        }
    }
}

fn split_complete(s: &str) -> (Vec<&str>, &str) {
    match s.rfind('\n') {
        Some(i) => (s[..i].split('\n').collect(), &s[i + 1..]),
        None => (Vec::new(), s),
    }
}

/// Sends lines within the byte budget; false once the budget or the client is gone.
async fn send(
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    lines: Vec<String>,
    budget: &mut usize,
) -> bool {
    for l in lines {
        if *budget == 0 {
            return false;
        }
        let mut b = l.into_bytes();
        if b.len() > *budget {
            b.truncate(*budget);
        }
        *budget -= b.len();
        if tx.send(Ok(Frame::data(Bytes::from(b)))).await.is_err() {
            return false;
        }
    }
    *budget > 0
}
