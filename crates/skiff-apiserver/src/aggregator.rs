//! kube-aggregator inside the API server (apiregistration.k8s.io/v1 APIService):
//! - every group-version the server serves itself is listed as a local APIService
//!   (`v1.apps`, `v1.stable.example.com` for a CRD), Available because Local;
//! - an APIService naming a Service is checked every few seconds (its discovery
//!   document fetched through the Service), its `Available` condition kept current, and
//!   while available its group-version is routed there: discovery merged, requests
//!   authenticated and authorized here, then proxied with the request-header client
//!   certificate and `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-*`.

use crate::apiservices::{Aggregator, ApiService, GROUP, PLURAL};
use crate::extension_client::{Endpoint, TlsSettings};
use crate::registry::{RemoteVersion, Snapshot, builtin};
use crate::request::Target;
use crate::request::system_write_options;
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use http::{HeaderValue, Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_pki::UserInfo;
use skiff_types::{ApiError, Subresource};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";
const CHECK_EVERY: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the local-APIService and availability loop.
pub fn spawn(api: Arc<ApiServer>, agg: Arc<Aggregator>) {
    tokio::spawn(async move {
        loop {
            reconcile(&api, &agg).await;
            tokio::select! {
                _ = agg.changed.notified() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    });
}

async fn reconcile(api: &Arc<ApiServer>, agg: &Aggregator) {
    let all: Vec<(ApiService, Value)> = agg.services.lock().values().cloned().collect();
    let served = api.registry.snapshot();
    ensure_local(api, &served, &all).await;
    let mut remote = Vec::new();
    for (svc, obj) in all.iter().filter(|(s, _)| s.spec.service.is_some()) {
        let check = check(api, svc).await;
        let cond = match &check {
            Ok(_) => ("True", "Passed", "all checks passed".to_string()),
            Err((reason, msg)) => ("False", *reason, msg.clone()),
        };
        if let Err(e) = write_available(api, obj, cond).await {
            tracing::debug!(apiservice = %svc.metadata.name, error = %e, "APIService status not written");
        }
        if served.has_version(&svc.spec.group, &svc.spec.version) {
            continue;
        }
        let previous = served.remote(&svc.spec.group, &svc.spec.version);
        let (resources, available) = match check {
            Ok(r) => (r, true),
            // Listed still, from what it said last (kube keeps it as stale).
            Err(_) => (previous.map_or(Value::Null, |p| p.resources.clone()), false),
        };
        remote.push(Arc::new(RemoteVersion {
            group: svc.spec.group.clone(),
            version: svc.spec.version.clone(),
            apiservice: svc.metadata.name.clone(),
            resources,
            available,
        }));
    }
    api.registry.set_remote(remote);
}

/// A local APIService per group-version served here; the ones no longer served go.
async fn ensure_local(api: &ApiServer, served: &Snapshot, all: &[(ApiService, Value)]) {
    let mut wanted = BTreeMap::new();
    for (gi, g) in served.groups().iter().enumerate() {
        for (vi, v) in g.versions.iter().enumerate() {
            let name = format!("{}.{}", v.version, g.name);
            let custom = v.resources.iter().all(|r| r.custom.is_some());
            wanted.insert(name, (g.name.clone(), v.version.clone(), gi, vi, custom));
        }
    }
    for (name, (group, version, gi, vi, custom)) in &wanted {
        if all.iter().any(|(s, _)| &s.metadata.name == name) {
            continue;
        }
        let obj = json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name, "labels": {AUTOMANAGED: if *custom { "true" } else { "onstart" }}},
            "spec": {"group": group, "version": version,
                     "groupPriorityMinimum": if *custom { 1000 } else { 18000 - 100 * *gi as i64 },
                     "versionPriority": 15 - *vi as i64},
        });
        let t = Target {
            ri: builtin(GROUP, PLURAL),
            namespace: None,
            name: None,
            sub: None,
        };
        match api.create(&t, obj.clone(), &system_write_options()).await {
            Ok(r) => {
                let cond = (
                    "True",
                    "Local",
                    "Local APIServices are always available".to_string(),
                );
                let _ = write_available(api, &r.object, cond).await;
            }
            Err(e) if e.code == 409 => {}
            Err(e) => {
                tracing::warn!(apiservice = %name, error = %e, "local APIService not created")
            }
        }
    }
    for (s, _) in all {
        let managed = s.metadata.labels.contains_key(AUTOMANAGED);
        if managed && s.spec.service.is_none() && !wanted.contains_key(&s.metadata.name) {
            let t = Target {
                ri: builtin(GROUP, PLURAL),
                namespace: None,
                name: Some(s.metadata.name.clone()),
                sub: None,
            };
            let _ = api.delete(&t, &Default::default()).await;
        }
    }
}

/// Sets the Available condition when it changed.
async fn write_available(
    api: &ApiServer,
    obj: &Value,
    (status, reason, message): (&str, &str, String),
) -> Result<(), ApiError> {
    let current = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
    if current.is_some_and(|c| {
        c["status"] == status && c["reason"] == reason && c["message"] == message.as_str()
    }) {
        return Ok(());
    }
    let t = Target {
        ri: builtin(GROUP, PLURAL),
        namespace: None,
        name: obj["metadata"]["name"].as_str().map(str::to_string),
        sub: Some(Subresource::Status),
    };
    let since = match current {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(crate::request::now_rfc3339()),
    };
    let cond = json!({"type": "Available", "status": status, "lastTransitionTime": since, "reason": reason, "message": message});
    api.write_existing(&t, None, &system_write_options(), |cur| {
        let mut next = cur.clone();
        next["status"] = json!({"conditions": [cond.clone()]});
        Ok(next)
    })
    .await
    .map(drop)
}

/// The discovery check: the extension server's APIResourceList for the group-version,
/// or (reason, message) as kube-aggregator reports a failure.
async fn check(api: &ApiServer, svc: &ApiService) -> Result<Value, (&'static str, String)> {
    let path = format!("/apis/{}/{}", svc.spec.group, svc.spec.version);
    let req = Request::get(&path)
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .expect("valid request");
    let url = |host: &str, port: u16| format!("https://{host}:{port}{path}");
    let fail = |m: String| ("FailedDiscoveryCheck", m);
    let sent = tokio::time::timeout(CHECK_TIMEOUT, send(api, svc, req, None)).await;
    let resp = match sent {
        Err(_) => {
            return Err(fail(format!(
                "failing or missing response from {}: timeout",
                target_url(svc)
            )));
        }
        Ok(Err(SendError::Resolve(e))) => return Err((e.reason(), e.to_string())),
        Ok(Err(SendError::Dial(host, port, e))) => {
            let u = url(&host, port);
            return Err(fail(format!(
                "failing or missing response from {u}: Get {u:?}: {e}"
            )));
        }
        Ok(Ok(r)) => r,
    };
    if resp.status() != 200 {
        return Err(fail(format!(
            "failing or missing response from {}: bad status from {}: {}",
            target_url(svc),
            target_url(svc),
            resp.status().as_u16()
        )));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| fail(format!("invalid discovery document: {e}")))
}

fn target_url(svc: &ApiService) -> String {
    let s = svc.spec.service.as_ref().expect("remote");
    format!(
        "https://{}:{}/apis/{}/{}",
        s.host(),
        s.port.unwrap_or(443),
        svc.spec.group,
        svc.spec.version
    )
}

enum SendError {
    Resolve(crate::services::ResolveError),
    Dial(String, u16, String),
}

/// Sends `req` to the APIService's Service as the request-header proxy, as `user`.
async fn send(
    api: &ApiServer,
    svc: &ApiService,
    req: Request<Body>,
    user: Option<&UserInfo>,
) -> Result<http::Response<hyper::body::Incoming>, SendError> {
    let s = svc.spec.service.as_ref().expect("remote");
    let port = s.port.unwrap_or(443);
    let (host, port) = crate::services::resolve(&api.cache, &s.namespace, &s.name, port)
        .map_err(SendError::Resolve)?;
    let to = Endpoint {
        host,
        port,
        server_name: s.host(),
    };
    let tls = TlsSettings {
        ca_bundle: svc.spec.ca_bundle.clone(),
        insecure: svc.spec.insecure_skip_tls_verify,
    };
    let req = outgoing(req, &to.server_name, user);
    api.aggregator
        .client
        .send(&to, &tls, || client_tls(api, svc), req)
        .await
        .map_err(|e| SendError::Dial(to.host.clone(), to.port, e))
}

/// TLS towards the extension server: its caBundle as roots (or no check with
/// `insecureSkipTLSVerify`), our proxy certificate.
fn client_tls(api: &ApiServer, svc: &ApiService) -> Result<Arc<rustls::ClientConfig>, String> {
    let (cert, key) = (
        &api.pki.proxy_client_cert_pem,
        &api.pki.proxy_client_key_pem,
    );
    if svc.spec.insecure_skip_tls_verify {
        return skiff_pki::insecure_client_config(cert, key).map_err(|e| e.to_string());
    }
    let ca = match &svc.spec.ca_bundle {
        Some(b) => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("caBundle: {e}"))?,
        )
        .map_err(|e| format!("caBundle: {e}"))?,
        None => api.pki.ca_cert_pem.clone(),
    };
    skiff_pki::agent_client_config(
        &ca,
        &api.pki.proxy_client_cert_pem,
        &api.pki.proxy_client_key_pem,
    )
    .map_err(|e| e.to_string())
}

/// Headers that stay between the client and us, or that only we may set.
fn dropped(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "connection"
        || n == "host"
        || n == "transfer-encoding"
        || n.starts_with("impersonate-")
        || n.starts_with("x-remote-")
}

fn outgoing(req: Request<Body>, host: &str, user: Option<&UserInfo>) -> Request<Body> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut out = Request::builder().method(parts.method).uri(path);
    for (k, v) in parts.headers.iter().filter(|(k, _)| !dropped(k.as_str())) {
        out = out.header(k, v);
    }
    out = out.header(header::HOST, host);
    if let Some(u) = user {
        if let Ok(v) = HeaderValue::from_str(&u.username) {
            out = out.header("X-Remote-User", v);
        }
        for g in &u.groups {
            if let Ok(v) = HeaderValue::from_str(g) {
                out = out.header("X-Remote-Group", v);
            }
        }
        if !u.uid.is_empty()
            && let Ok(v) = HeaderValue::from_str(&u.uid)
        {
            out = out.header("X-Remote-Uid", v);
        }
    }
    out.body(body).expect("valid request")
}

/// Serves a request for an extension server's group-version.
pub async fn proxy(
    api: &ApiServer,
    remote: &RemoteVersion,
    user: &UserInfo,
    req: Request<Body>,
) -> Response {
    let svc = {
        let all = api.aggregator.services.lock();
        all.get(&remote.apiservice).map(|(s, _)| s.clone())
    };
    let (Some(svc), true) = (svc, remote.available) else {
        return crate::respond::error_response(&ApiError::service_unavailable(
            "the server is currently unable to handle the request",
        ));
    };
    match send(api, &svc, req, Some(user)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONNECTION);
            parts.headers.remove(header::TRANSFER_ENCODING);
            Response::from_parts(parts, Body::new(body))
        }
        Err(SendError::Resolve(e)) => {
            crate::respond::error_response(&ApiError::service_unavailable(e.to_string()))
        }
        Err(SendError::Dial(host, port, e)) => {
            crate::respond::error_response(&ApiError::service_unavailable(format!(
                "error trying to reach service: {e} (https://{host}:{port})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_requests_carry_the_user_and_drop_credentials() {
        let req = Request::get("/apis/g/v1/things?limit=1")
            .header("Authorization", "Bearer secret")
            .header("Impersonate-User", "root")
            .header("X-Remote-User", "forged")
            .header("Accept", "application/json")
            .body(Body::empty())
            .unwrap();
        let user = UserInfo {
            username: "alice".into(),
            uid: String::new(),
            groups: vec!["dev".into(), "system:authenticated".into()],
        };
        let out = outgoing(req, "api.ns.svc", Some(&user));
        let h = out.headers();
        assert!(h.get("authorization").is_none() && h.get("impersonate-user").is_none());
        assert_eq!(h.get("x-remote-user").unwrap(), "alice");
        assert_eq!(h.get_all("x-remote-group").iter().count(), 2);
        assert_eq!(h.get("accept").unwrap(), "application/json");
        assert_eq!(out.uri(), "/apis/g/v1/things?limit=1");
    }
}
