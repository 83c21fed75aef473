//! `exec`, `attach` and `portForward` on the agent: the API server's WebSocket (v5 or v4
//! channel protocol) is joined to the runtime's streaming server for the CRI `Exec`,
//! `Attach` or `PortForward`, which speaks v4 over WebSocket.
//! Frames are the same on both sides (a channel byte, then data). v5's stdin-close frame
//! (channel 255) has no v4 equivalent: a v5 client with stdin goes over the runtime's
//! SPDY form instead (`spdyexec`), where stdin closes.

use crate::runtime::Runtime;
use crate::server::{Body, text};
use crate::spdyexec::Streams;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

pub async fn serve(
    runtime: Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
    container: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some((key, protocol)) = upgrade_request(&req) else {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required".into());
    };
    let mut cmd = Vec::new();
    let (mut tty, mut stdin, mut stdout, mut stderr) = (false, false, false, false);
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        let on = matches!(v.as_ref(), "true" | "1");
        match k.as_ref() {
            "command" => cmd.push(v.into_owned()),
            "tty" => tty = on,
            "stdin" => stdin = on,
            "stdout" => stdout = on,
            "stderr" => stderr = on,
            _ => {}
        }
    }
    if cmd.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command".into(),
        );
    }
    let target = match runtime.log_target(ns, pod, container, false).await {
        Ok(Some(t)) if t.running => t,
        Ok(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container not found ({container:?})"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let url = match runtime
        .exec_url(&target.container_id, cmd, tty, stdin, stdout, stderr)
        .await
    {
        Ok(u) => u,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let streams = Streams {
        stdin,
        stdout,
        stderr,
        tty,
    };
    join_either(&url, streams, key, protocol, req).await
}

/// `attach`: like exec, but to the streams of the container's main process.
pub async fn serve_attach(
    runtime: Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
    container: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some((key, protocol)) = upgrade_request(&req) else {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required".into());
    };
    let (mut tty, mut stdin, mut stdout, mut stderr) = (false, false, false, false);
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        let on = matches!(v.as_ref(), "true" | "1");
        match k.as_ref() {
            "tty" => tty = on,
            "stdin" => stdin = on,
            "stdout" => stdout = on,
            "stderr" => stderr = on,
            _ => {}
        }
    }
    let target = match runtime.log_target(ns, pod, container, false).await {
        Ok(Some(t)) if t.running => t,
        Ok(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container not found ({container:?})"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let url = match runtime
        .attach_url(&target.container_id, tty, stdin, stdout, stderr)
        .await
    {
        Ok(u) => u,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let streams = Streams {
        stdin,
        stdout,
        stderr,
        tty,
    };
    join_either(&url, streams, key, protocol, req).await
}

/// A v5 client with stdin can close it, which only the runtime's SPDY form carries; the
/// rest go over the runtime's WebSocket form frame for frame.
async fn join_either(
    url: &str,
    streams: Streams,
    key: http::HeaderValue,
    protocol: String,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if !(streams.stdin && protocol == "v5.channel.k8s.io") {
        return join(url, key, protocol, req).await;
    }
    let session = match crate::spdyexec::connect(url, streams).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let client = server_websocket(&mut req);
    tokio::spawn(async move {
        let Some(client) = client.await else {
            return;
        };
        session.relay(client).await;
    });
    switching(key, protocol)
}

/// The client's side of the upgrade this response grants, as a WebSocket (None if the
/// client went away before the upgrade completed).
fn server_websocket(
    req: &mut Request<Incoming>,
) -> impl std::future::Future<
    Output = Option<
        tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    >,
> + Send
+ 'static {
    let on_upgrade = hyper::upgrade::on(req);
    async move {
        let upgraded = on_upgrade.await.ok()?;
        Some(
            tokio_tungstenite::WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await,
        )
    }
}

fn switching(key: http::HeaderValue, protocol: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(text(StatusCode::OK, String::new()).into_body())
        .expect("valid response")
}

/// `portForward`: a WebSocket in the v4 channel protocol with one data and one error
/// channel per `port` of the query, joined to the runtime's port forwarder.
pub async fn serve_port_forward(
    runtime: Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some((key, protocol)) = upgrade_request(&req) else {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required".into());
    };
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        if k == "port" {
            match v.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("invalid port {v:?}: must be between 1 and 65535"),
                    );
                }
            }
        }
    }
    if ports.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "query parameter \"port\" is required".into(),
        );
    }
    let url = match runtime.port_forward_url(ns, pod, &ports).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("pod {ns}/{pod} has no running sandbox"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    join(&url, key, protocol, req).await
}

/// The WebSocket key and the first subprotocol the caller offered.
fn upgrade_request(req: &Request<Incoming>) -> Option<(http::HeaderValue, String)> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned()?;
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("v4.channel.k8s.io")
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Some((key, protocol))
}

/// A client's channel frame as bytes. Text frames count as binary ones, as in
/// kube-apiserver's stream server: the Python client sends string stdin as text.
pub(crate) fn frame_bytes(m: &Message) -> Option<bytes::Bytes> {
    match m {
        Message::Binary(b) => Some(b.clone()),
        Message::Text(t) => Some(bytes::Bytes::copy_from_slice(t.as_bytes())),
        _ => None,
    }
}

/// Opens the runtime's streaming URL as a v4 WebSocket, then answers the caller's
/// upgrade and relays frames both ways.
async fn join(
    url: &str,
    key: http::HeaderValue,
    protocol: String,
    mut req: Request<Incoming>,
) -> Response<Body> {
    // The runtime's streaming server: plain HTTP on loopback, upgraded to WebSocket.
    let ws_url = url
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let upstream =
        match tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            ws_url.as_str(),
        ) {
            Ok(mut r) => {
                r.headers_mut().insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    http::HeaderValue::from_static("v4.channel.k8s.io"),
                );
                match tokio_tungstenite::connect_async(r).await {
                    Ok((ws, _)) => ws,
                    Err(e) => {
                        return text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("runtime stream: {e}"),
                        );
                    }
                }
            }
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("runtime stream: {e}"),
                );
            }
        };
    let client = server_websocket(&mut req);
    tokio::spawn(async move {
        let Some(client) = client.await else {
            return;
        };
        let (mut c_tx, mut c_rx) = client.split();
        let (mut u_tx, mut u_rx) = upstream.split();
        let up = async {
            while let Some(Ok(m)) = c_rx.next().await {
                if m.is_close() {
                    break;
                }
                let Some(b) = frame_bytes(&m) else { continue };
                if b.first() == Some(&255) {
                    continue;
                }
                if u_tx.send(Message::Binary(b)).await.is_err() {
                    break;
                }
            }
        };
        let down = async {
            while let Some(m) = u_rx.next().await {
                tracing::trace!(?m, "runtime stream message");
                let Ok(m) = m else { break };
                let close = m.is_close();
                if c_tx.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = c_tx.close().await;
        };
        // The stream's end upstream ends the session; the client leaving first ends it
        // too (dropping the upstream stream closes it).
        tokio::select! {
            _ = down => {}
            _ = up => {}
        }
    });
    switching(key, protocol)
}
