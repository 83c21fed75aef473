//! The streaming subresources relayed to a node agent: `pods/log`, `pods/exec`,
//! `pods/attach`, `pods/portforward`, and `nodes/<name>/proxy`.

use crate::attributes::PathInfo;
use crate::request::Target;
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use http::Request;
use skiff_types::{ApiError, Subresource};
use std::sync::Arc;

/// The subresources served here.
pub fn handles(sub: Subresource) -> bool {
    matches!(
        sub,
        Subresource::Proxy
            | Subresource::Exec
            | Subresource::Attach
            | Subresource::PortForward
            | Subresource::Log
    )
}

pub async fn serve(
    api: &Arc<ApiServer>,
    info: PathInfo,
    sub: Subresource,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let t = &info.target;
    if sub == Subresource::Proxy {
        let node = t.name().to_string();
        return crate::agentproxy::proxy(api, &node, &info.proxy_path, req).await;
    }
    let streams = matches!(
        sub,
        Subresource::Exec | Subresource::Attach | Subresource::PortForward
    );
    match info.verb {
        "get" | "create" if streams => {
            let pod = pod_of(api, t).await?;
            match sub {
                Subresource::PortForward => crate::portforward::portforward(api, &pod, req).await,
                _ => crate::nodeproxy::exec(api, &pod, sub == Subresource::Attach, req).await,
            }
        }
        "get" if sub == Subresource::Log => {
            let pod = pod_of(api, t).await?;
            crate::nodeproxy::logs(api, &pod, req.uri().query()).await
        }
        _ => node_proxy_unavailable(api, t).await,
    }
}

async fn pod_of(api: &ApiServer, t: &Target) -> Result<serde_json::Value, ApiError> {
    api.get_object(&Target {
        sub: None,
        ..t.clone()
    })
    .await
}

async fn node_proxy_unavailable(api: &ApiServer, t: &Target) -> Result<Response, ApiError> {
    let pod = pod_of(api, t).await?;
    let name = t.name();
    match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        None => Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        ))),
        Some(node) => Err(ApiError::service_unavailable(format!(
            "no node agent is connected for node {node:?}"
        ))),
    }
}
