//! `pods/portforward`. kubectl speaks SPDY/3.1 tunnelled in WebSocket messages
//! (`SPDY/3.1+portforward.k8s.io`): per local connection an error stream and a data
//! stream, each naming the pod port. The API server ends the SPDY session here and opens,
//! per data stream, a WebSocket to the node agent in the v4 channel protocol (one port,
//! channel 0 data, channel 1 errors), which the agent joins to the runtime's forwarder.
//! Clients that ask for `v4.channel.k8s.io` themselves (the Python client) are relayed
//! to the agent as they are.

use crate::nodeproxy::{AgentWs, agent_address, agent_ws, relay};
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::{StatusCode, header};
use serde_json::Value;
use skiff_spdy::{self as spdy, Frame};
use skiff_types::ApiError;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const SPDY_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";
/// RST_STREAM status for a stream this side cannot make sense of.
const PROTOCOL_ERROR: u32 = 1;

pub async fn portforward(
    api: &Arc<ApiServer>,
    pod: &Value,
    mut req: http::Request<Body>,
) -> Result<Response, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let headers = req.headers();
    let (is_ws, offered) = crate::nodeproxy::websocket_offer(headers);
    let protocol = [SPDY_PROTOCOL, CHANNEL_PROTOCOL]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p));
    let (Some(protocol), Some(key), true) = (
        protocol,
        headers.get(header::SEC_WEBSOCKET_KEY).cloned(),
        is_ws,
    ) else {
        return Err(ApiError::bad_request(format!(
            "Upgrade request required: port-forward is served over WebSocket ({SPDY_PROTOCOL} or {CHANNEL_PROTOCOL})"
        )));
    };
    let node = crate::nodeproxy::running_node(pod)?;
    let (ip, port) = agent_address(api, node).await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    if protocol == CHANNEL_PROTOCOL {
        // `ports=80,8080` or repeated; the agent wants `port=` per port.
        let query = req.uri().query().unwrap_or("");
        let mut ports = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == "ports" || k == "port" {
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if !p.parse::<u16>().is_ok_and(|p| p > 0) {
                        return Err(ApiError::bad_request(format!(
                            "invalid port {p:?} in ports: must be between 1 and 65535"
                        )));
                    }
                    ports.push(format!("port={p}"));
                }
            }
        }
        if ports.is_empty() {
            return Err(ApiError::bad_request(
                "at least one port must be given in ports",
            ));
        }
        let path = format!("/portForward/{ns}/{name}?{}", ports.join("&"));
        let agent = agent_ws(api, &ip, port, &path, CHANNEL_PROTOCOL)
            .await
            .map_err(|e| ApiError::bad_request(format!("unable to upgrade connection: {e}")))?;
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                relay(server_ws(upgraded).await, agent).await;
            }
        });
    } else {
        let api = api.clone();
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: upgrade failed");
                    return;
                }
            };
            tracing::trace!("port-forward: SPDY session starts");
            let (mut ws_tx, ws_rx) = server_ws(upgraded).await.split();
            let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
            let writer = async move {
                while let Some(b) = out_rx.recv().await {
                    if ws_tx.send(Message::Binary(b)).await.is_err() {
                        break;
                    }
                }
                let _ = ws_tx.close().await;
            };
            let input = ws_rx.filter_map(|m| async move {
                match m {
                    Ok(Message::Binary(b)) => Some(b),
                    _ => None,
                }
            });
            let dial = Dialer {
                api,
                ip,
                port,
                ns,
                name,
            };
            tokio::join!(writer, session(Box::pin(input), out_tx, Arc::new(dial)));
        });
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn server_ws(
    upgraded: hyper::upgrade::Upgraded,
) -> tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
    tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await
}

/// Opens the agent's forwarder for one port of the pod.
struct Dialer {
    api: Arc<ApiServer>,
    ip: String,
    port: u16,
    ns: String,
    name: String,
}

impl Dialer {
    async fn dial(&self, pod_port: u16) -> Result<AgentWs, String> {
        let path = format!("/portForward/{}/{}?port={pod_port}", self.ns, self.name);
        agent_ws(&self.api, &self.ip, self.port, &path, CHANNEL_PROTOCOL).await
    }
}

/// What the client sent on a data stream.
enum Up {
    Data(Bytes),
    /// The client will send no more (FIN).
    Fin,
}

/// Runs one SPDY session: `input` is the client's byte stream in arbitrary pieces,
/// `out` takes the bytes to send back.
async fn session<S>(mut input: S, out: mpsc::Sender<Bytes>, dial: Arc<Dialer>)
where
    S: futures::Stream<Item = Bytes> + Unpin,
{
    let (ftx, mut frx) = mpsc::channel::<Frame>(64);
    let encoder = async move {
        let mut enc = spdy::Encoder::default();
        let mut buf = BytesMut::new();
        while let Some(f) = frx.recv().await {
            if let Err(e) = enc.encode(&f, &mut buf) {
                tracing::debug!(error = %e, "port-forward: frame not encodable");
                continue;
            }
            if out.send(buf.split().freeze()).await.is_err() {
                break;
            }
        }
    };
    let decoder = async move {
        let mut dec = spdy::Decoder::default();
        let mut buf = BytesMut::new();
        // requestid → error stream id; data stream id → its forwarder's inbox.
        let mut error_streams: HashMap<String, u32> = HashMap::new();
        let mut data_streams: HashMap<u32, mpsc::Sender<Up>> = HashMap::new();
        'read: while let Some(chunk) = input.next().await {
            buf.extend_from_slice(&chunk);
            loop {
                let frame = match dec.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward: ending SPDY session");
                        let _ = ftx
                            .send(Frame::GoAway {
                                last_good: 0,
                                status: 1,
                            })
                            .await;
                        break 'read;
                    }
                };
                tracing::trace!(?frame, "port-forward: frame");
                match frame {
                    Frame::SynStream { id, headers, .. } => {
                        let h = |k: &str| {
                            headers
                                .iter()
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        };
                        let (kind, request) = (h("streamtype"), h("requestid"));
                        let _ = ftx
                            .send(Frame::SynReply {
                                id,
                                flags: 0,
                                headers: Vec::new(),
                            })
                            .await;
                        match kind.as_str() {
                            "error" => {
                                error_streams.insert(request, id);
                            }
                            "data" => {
                                let error_id = error_streams.remove(&request);
                                let (tx, rx) = mpsc::channel(16);
                                data_streams.insert(id, tx);
                                tokio::spawn(forward(
                                    dial.clone(),
                                    h("port"),
                                    id,
                                    error_id,
                                    rx,
                                    ftx.clone(),
                                ));
                            }
                            _ => {
                                let _ = ftx
                                    .send(Frame::RstStream {
                                        id,
                                        status: PROTOCOL_ERROR,
                                    })
                                    .await;
                            }
                        }
                    }
                    Frame::Data { id, flags, data } => {
                        if let Some(tx) = data_streams.get(&id) {
                            if !data.is_empty() {
                                let _ = tx.send(Up::Data(data)).await;
                            }
                            if flags & spdy::FLAG_FIN != 0 {
                                let _ = tx.send(Up::Fin).await;
                                data_streams.remove(&id);
                            }
                        }
                    }
                    // Dropping the inbox without a FIN tells the forwarder to abort.
                    Frame::RstStream { id, .. } => {
                        data_streams.remove(&id);
                    }
                    Frame::Ping(id) => {
                        let _ = ftx.send(Frame::Ping(id)).await;
                    }
                    Frame::GoAway { .. } => break 'read,
                    _ => {}
                }
            }
        }
    };
    tokio::join!(encoder, decoder);
}

/// One local connection: the client's data stream joined to a fresh agent forwarder.
async fn forward(
    dial: Arc<Dialer>,
    port: String,
    data_id: u32,
    error_id: Option<u32>,
    mut inbox: mpsc::Receiver<Up>,
    out: mpsc::Sender<Frame>,
) {
    let finish = |error: Option<String>| {
        let out = out.clone();
        async move {
            let _ = out
                .send(Frame::Data {
                    id: data_id,
                    flags: spdy::FLAG_FIN,
                    data: Bytes::new(),
                })
                .await;
            if let Some(error_id) = error_id {
                if let Some(e) = error.filter(|e| !e.is_empty()) {
                    let _ = out
                        .send(Frame::Data {
                            id: error_id,
                            flags: 0,
                            data: Bytes::from(e),
                        })
                        .await;
                }
                let _ = out
                    .send(Frame::Data {
                        id: error_id,
                        flags: spdy::FLAG_FIN,
                        data: Bytes::new(),
                    })
                    .await;
            }
        }
    };
    let Some(pod_port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
        finish(Some(format!(
            "invalid port {port:?}: must be between 1 and 65535"
        )))
        .await;
        return;
    };
    let ws = match dial.dial(pod_port).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, pod_port, "port-forward: agent refused");
            finish(Some(format!(
                "error forwarding port {pod_port} to pod {}/{}: {e}",
                dial.ns, dial.name
            )))
            .await;
            return;
        }
    };
    let (mut ws_tx, mut ws_rx) = ws.split();
    // false: the client reset the stream, so nothing more is owed to it.
    let up = async {
        while let Some(m) = inbox.recv().await {
            match m {
                Up::Data(b) => {
                    let mut msg = Vec::with_capacity(b.len() + 1);
                    msg.push(0u8);
                    msg.extend_from_slice(&b);
                    if ws_tx.send(Message::Binary(msg.into())).await.is_err() {
                        return true;
                    }
                }
                // The v4 channel protocol cannot half-close: the pod side ends the stream.
                Up::Fin => return futures::future::pending().await,
            }
        }
        false
    };
    let down = async {
        // Each channel's first two bytes are its port (little-endian), not payload.
        let mut prefix = [2usize; 2];
        let mut error = Vec::new();
        while let Some(Ok(m)) = ws_rx.next().await {
            let Message::Binary(b) = m else {
                if m.is_close() {
                    break;
                }
                continue;
            };
            let Some((&channel, mut payload)) = b.split_first() else {
                continue;
            };
            let ch = usize::from(channel);
            if ch > 1 {
                continue;
            }
            let skip = prefix[ch].min(payload.len());
            prefix[ch] -= skip;
            payload = &payload[skip..];
            if payload.is_empty() {
                continue;
            }
            if ch == 0 {
                let frame = Frame::Data {
                    id: data_id,
                    flags: 0,
                    data: Bytes::copy_from_slice(payload),
                };
                if out.send(frame).await.is_err() {
                    break;
                }
            } else {
                error.extend_from_slice(payload);
            }
        }
        String::from_utf8_lossy(&error).into_owned()
    };
    tokio::select! {
        error = down => {
            tracing::debug!(pod_port, %error, "port-forward: pod side ended");
            finish(Some(error)).await
        }
        owed = up => if owed { finish(None).await },
    }
}
