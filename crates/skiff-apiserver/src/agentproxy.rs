//! `nodes/<name>/proxy/<path>`: a request carried to the node's agent as the API server
//! (its kubelet-client certificate), the answer relayed back as it comes — how
//! `kubectl get --raw /api/v1/nodes/<n>/proxy/stats/summary` and metrics scrapers reach
//! a node's statistics. Authorized as `nodes/proxy` before it gets here.

use crate::nodeproxy::{agent_address, agent_tls_stream};
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use http::{Request, header};
use skiff_types::ApiError;
use std::sync::Arc;

/// Headers of the client's that mean something between it and us only.
const NOT_FORWARDED: [header::HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
];

pub async fn proxy(
    api: &Arc<ApiServer>,
    node: &str,
    path: &str,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (ip, port) = agent_address(api, node).await?;
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let unreachable = |e: String| {
        ApiError::service_unavailable(format!(
            "error trying to reach service: {e} (https://{ip}:{port}{path})"
        ))
    };
    let tls = agent_tls_stream(api, &ip, port)
        .await
        .map_err(unreachable)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (parts, body) = req.into_parts();
    let mut out = Request::builder()
        .method(parts.method)
        .uri(target)
        .header(header::HOST, format!("{ip}:{port}"));
    for (k, v) in parts
        .headers
        .iter()
        .filter(|(k, _)| !NOT_FORWARDED.contains(k))
    {
        out = out.header(k, v);
    }
    let out = out
        .body(body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let resp = send
        .send_request(out)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, Body::new(body)))
}
