//! The API server's side of node streaming: `pods/log` carried to the pod's node agent
//! over mutual TLS (agents serve with certificates from `kubernetes.io/kubelet-serving`
//! CSRs).

use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use skiff_types::ApiError;
use std::sync::Arc;

/// Where the agent of `node` listens: its InternalIP and `daemonEndpoints` port.
pub(crate) async fn agent_address(api: &ApiServer, node: &str) -> Result<(String, u16), ApiError> {
    let ri = crate::registry::builtin("", "nodes");
    let key = ri.key(None, node);
    let n = match api.cache.get(&key) {
        Some(s) => crate::codec::from_stored(&s)?,
        None => api
            .get_raw(&key)
            .await?
            .ok_or_else(|| ApiError::not_found("", "nodes", node))?,
    };
    let ip = n["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::service_unavailable(format!("node {node:?} has no InternalIP")))?
        .to_string();
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(0) as u16;
    if port == 0 {
        return Err(ApiError::service_unavailable(format!(
            "node {node:?} serves no agent endpoint (a simulated node has no containers)"
        )));
    }
    Ok((ip, port))
}

/// The container a request names, or the only one; Kubernetes' error otherwise.
/// Whether a request asks for a WebSocket upgrade, and the subprotocols it offers.
pub(crate) fn websocket_offer(headers: &http::HeaderMap) -> (bool, Vec<String>) {
    let is_ws = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    (is_ws, offered)
}

/// The node a pod was bound to, or kube's 400 for one that has none.
pub(crate) fn node_of(pod: &Value) -> Result<&str, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}

/// The node of a pod a stream can be opened to: bound and running.
pub(crate) fn running_node(pod: &Value) -> Result<&str, ApiError> {
    let node = node_of(pod)?;
    if pod["status"]["phase"] != "Running" {
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} is not running (phase {})",
            pod["status"]["phase"].as_str().unwrap_or("Pending")
        )));
    }
    Ok(node)
}

/// A log or exec query's parameters, and the container it names (or the pod's only one).
fn container_params(pod: &Value, query: &str) -> Result<(Vec<(String, String)>, String), ApiError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let asked = params
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str());
    let container = pick_container(pod, asked)?;
    Ok((params, container))
}

pub fn pick_container(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let all: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if all.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let apps: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match apps.as_slice() {
                [one] => Ok(one.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    apps.join(" ")
                ))),
            }
        }
    }
}

/// Which instance of a container logs come from, by the pod's status as kubelet decides:
/// the current one (or, while it waits to restart, the last that ran), or with
/// `previous` the last terminated one. Errors are Kubernetes' words.
pub fn container_instance(
    pod: &Value,
    container: &str,
    previous: bool,
) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let status = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|f| pod["status"][f].as_array().into_iter().flatten())
        .find(|s| s["name"] == container);
    let last = status
        .and_then(|s| s["lastState"]["terminated"]["containerID"].as_str())
        .filter(|id| !id.is_empty());
    let strip = |id: &str| id.split_once("://").map_or(id, |(_, i)| i).to_string();
    if previous {
        return last.map(strip).ok_or_else(|| {
            ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        });
    }
    let Some(s) = status else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    };
    if let Some(reason) = s["state"]["waiting"]["reason"].as_str() {
        return last.map(strip).ok_or_else(|| {
            ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            ))
        });
    }
    s["containerID"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(strip)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            ))
        })
}

/// `GET pods/<name>/log`: streamed from the node agent's `/containerLogs`.
pub async fn logs(
    api: &Arc<ApiServer>,
    pod: &Value,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let node = node_of(pod)?;
    let (params, container) = container_params(pod, query.unwrap_or(""))?;
    let previous = params
        .iter()
        .any(|(k, v)| k == "previous" && matches!(v.as_str(), "true" | "1"));
    let id = container_instance(pod, &container, previous)?;
    let forwarded = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("containerID", &id);
        for (k, v) in params.iter().filter(|(k, _)| {
            matches!(
                k.as_str(),
                "follow" | "tailLines" | "sinceSeconds" | "sinceTime" | "timestamps" | "limitBytes"
            )
        }) {
            q.append_pair(k, v);
        }
        q.finish()
    };
    let path = format!("/containerLogs/{ns}/{name}/{container}?{forwarded}");
    let (ip, port) = agent_address(api, node).await?;
    let resp = agent_get(api, &ip, port, &path).await.map_err(|e| {
        ApiError::service_unavailable(format!("Get \"https://{ip}:{port}{path}\": {e}"))
    })?;
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    if !status.is_success() {
        // The agent answers errors as text; Kubernetes relays them in a Status.
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&bytes).trim().to_string();
        return Err(
            if status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST {
                ApiError::bad_request(msg)
            } else {
                ApiError::service_unavailable(msg)
            },
        );
    }
    parts.headers.clear();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(Response::from_parts(parts, Body::new(body)))
}

pub(crate) async fn agent_tls_stream(
    api: &ApiServer,
    ip: &str,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .map_err(|_| "dial timeout".to_string())?
    .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let server_name =
        rustls::pki_types::ServerName::try_from(ip.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(api.agent_tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())
}

pub(crate) async fn agent_get(
    api: &ApiServer,
    ip: &str,
    port: u16,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let tls = agent_tls_stream(api, ip, port).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path)
        .header(header::HOST, format!("{ip}:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    send.send_request(req).await.map_err(|e| e.to_string())
}

/// Subprotocols of `pods/exec` over WebSocket that we carry (kubectl asks for v5 first).
const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// `GET pods/<name>/exec` or `pods/<name>/attach` with a WebSocket upgrade: the same
/// stream is opened to the node agent (mutual TLS), then frames are relayed both ways
/// unchanged.
pub async fn exec(
    api: &Arc<ApiServer>,
    pod: &Value,
    attach: bool,
    mut req: http::Request<Body>,
) -> Result<Response, ApiError> {
    let what = if attach { "attach" } else { "exec" };
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let headers = req.headers();
    let (is_ws, offered) = websocket_offer(headers);
    let Some(protocol) = EXEC_PROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .map(|p| p.to_string())
    else {
        return Err(ApiError::bad_request(format!(
            "Upgrade request required: {what} is served over WebSocket (v5.channel.k8s.io or v4.channel.k8s.io)"
        )));
    };
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_ws)
        .cloned()
    else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let node = running_node(pod)?;
    let (params, container) = container_params(pod, req.uri().query().unwrap_or(""))?;
    let forwarded = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| {
            matches!(
                k.as_str(),
                "command" | "stdin" | "stdout" | "stderr" | "tty"
            )
        }) {
            q.append_pair(k, v);
        }
        q.finish()
    };
    let (ip, port) = agent_address(api, node).await?;
    let path = format!("/{what}/{ns}/{name}/{container}?{forwarded}");
    let agent = agent_ws(api, &ip, port, &path, &protocol)
        .await
        .map_err(|e| ApiError::bad_request(format!("unable to upgrade connection: {e}")))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let client = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        relay(client, agent).await;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(resp)
}

pub(crate) type AgentWs =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub(crate) async fn agent_ws(
    api: &ApiServer,
    ip: &str,
    port: u16,
    path: &str,
    protocol: &str,
) -> Result<AgentWs, String> {
    let tls = agent_tls_stream(api, ip, port).await?;
    let req = http::Request::get(format!("wss://{ip}:{port}{path}"))
        .header(header::HOST, format!("{ip}:{port}"))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(
            header::SEC_WEBSOCKET_KEY,
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(())
        .map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_else(|| format!("agent answered {}", resp.status())),
            e => e.to_string(),
        })?;
    Ok(ws)
}

/// Copies messages both ways until either side closes.
pub(crate) async fn relay<A, B>(
    a: tokio_tungstenite::WebSocketStream<A>,
    b: tokio_tungstenite::WebSocketStream<B>,
) where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::{SinkExt, StreamExt};
    let (mut a_tx, mut a_rx) = a.split();
    let (mut b_tx, mut b_rx) = b.split();
    let up = async {
        while let Some(Ok(m)) = a_rx.next().await {
            let close = m.is_close();
            if b_tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = b_tx.close().await;
    };
    let down = async {
        while let Some(Ok(m)) = b_rx.next().await {
            let close = m.is_close();
            if a_tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = a_tx.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"containerStatuses": [status]}})
    }

    #[test]
    fn log_instance_follows_the_status_as_kubelet() {
        let running = pod(
            json!({"name": "a", "containerID": "containerd://c2", "state": {"running": {}},
            "lastState": {"terminated": {"containerID": "containerd://c1"}}}),
        );
        assert_eq!(container_instance(&running, "a", false).unwrap(), "c2");
        assert_eq!(container_instance(&running, "a", true).unwrap(), "c1");
        let crashlooping = pod(
            json!({"name": "a", "containerID": "containerd://c1", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"containerID": "containerd://c1"}}}),
        );
        assert_eq!(container_instance(&crashlooping, "a", false).unwrap(), "c1");
        assert_eq!(container_instance(&crashlooping, "a", true).unwrap(), "c1");
        let done = pod(
            json!({"name": "a", "containerID": "containerd://c1", "state": {"terminated": {}}, "lastState": {}}),
        );
        assert_eq!(
            container_instance(&done, "a", true).unwrap_err().message,
            "previous terminated container \"a\" in pod \"p\" not found"
        );
        let creating = pod(
            json!({"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}),
        );
        assert_eq!(
            container_instance(&creating, "a", false)
                .unwrap_err()
                .message,
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert!(
            pick_container(&running, None)
                .unwrap_err()
                .message
                .contains("choose one of: [a b]")
        );
        assert_eq!(pick_container(&running, Some("b")).unwrap(), "b");
    }
}
