//! The `kubernetes` Service's endpoints when several servers share a store, as
//! kube-apiserver's lease endpoint reconciler keeps them: each server renews a Lease of
//! its own in kube-system (`apiserver-<hash of its address>`, labelled as upstream's
//! identity leases, its address in an annotation) every 5 s for 15 s, and writes the
//! Endpoints and EndpointSlice with the addresses of every server whose Lease is live,
//! sorted, so servers never fight over them; a server that stops cleanly withdraws at
//! once. Agents learn the servers from these Endpoints.

use crate::reconcile::reconcile_one;
use crate::request::{DeleteOptions, Target};
use crate::state::ApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use skiff_types::ApiError;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
pub const ADDRESS_ANNOTATION: &str = "skiff.io/advertise-address";
const LEASE_SECONDS: i64 = 15;
const RENEW: Duration = Duration::from_secs(5);

fn lease_name(addr: SocketAddr) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(addr.to_string().as_bytes());
    let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("apiserver-{hex}")
}

fn target(name: Option<String>) -> Target {
    Target {
        ri: crate::registry::builtin("coordination.k8s.io", "leases"),
        namespace: Some("kube-system".into()),
        name,
        sub: None,
    }
}

/// The servers whose Lease is live at `now` (seconds since the epoch), sorted.
pub fn live(leases: &[Lease], now: i64) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = leases
        .iter()
        .filter(|l| {
            l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(IDENTITY_LABEL))
                .is_some()
        })
        .filter(|l| {
            let spec = l.spec.as_ref();
            let renewed = spec
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.as_second());
            let secs = spec.and_then(|s| s.lease_duration_seconds).unwrap_or(0) as i64;
            renewed.is_some_and(|r| r + secs >= now)
        })
        .filter_map(|l| {
            l.metadata
                .annotations
                .as_ref()?
                .get(ADDRESS_ANNOTATION)?
                .parse()
                .ok()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Endpoints subsets for `servers`: one subset per port (servers on one machine differ
/// by port), addresses sorted.
pub fn subsets(servers: &[SocketAddr]) -> Value {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for s in servers {
        by_port
            .entry(s.port())
            .or_default()
            .push(s.ip().to_string());
    }
    Value::Array(
        by_port
            .into_iter()
            .map(|(port, ips)| {
                let addrs: Vec<Value> = ips.into_iter().map(|ip| json!({"ip": ip})).collect();
                json!({"addresses": addrs, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
            })
            .collect(),
    )
}

/// Whether the stored object lacks any of `fields` as `want` has them (absent: true).
fn differs(
    api: &ApiServer,
    group: &str,
    plural: &str,
    ns: &str,
    want: &Value,
    fields: &[&str],
) -> bool {
    let ri = crate::registry::builtin(group, plural);
    let name = want["metadata"]["name"].as_str().unwrap_or("");
    let Some(cur) = api
        .cache
        .get(&ri.key(Some(ns), name))
        .and_then(|s| serde_json::from_slice::<Value>(&s.value).ok())
    else {
        return true;
    };
    fields.iter().any(|f| cur[*f] != want[*f])
}

/// Writes the object unless it is already as wanted: these run every few seconds, and
/// a write nobody needs would wake every watcher of the kind.
async fn reconcile_if_changed(
    api: &ApiServer,
    group: &str,
    plural: &str,
    ns: &str,
    want: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    if differs(api, group, plural, ns, &want, fields) {
        reconcile_one(api, group, plural, ns, want, fields).await?;
    }
    Ok(())
}

async fn renew_lease(api: &ApiServer) -> Result<(), ApiError> {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": lease_name(api.advertise), "namespace": "kube-system",
                     "labels": {IDENTITY_LABEL: "kube-apiserver"},
                     "annotations": {ADDRESS_ANNOTATION: api.advertise.to_string()}},
        "spec": {"holderIdentity": lease_name(api.advertise), "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
    });
    reconcile_one(
        api,
        "coordination.k8s.io",
        "leases",
        "kube-system",
        lease,
        &["spec"],
    )
    .await
}

/// Writes the `kubernetes` Endpoints and EndpointSlice for the live servers.
pub async fn reconcile_endpoints(api: &ApiServer) -> Result<(), ApiError> {
    let t = target(None);
    let (all, _, _) = api
        .cache
        .list(&t.ri.prefix(Some("kube-system")), None, None, &|_| true);
    let leases: Vec<Lease> = all
        .iter()
        .filter_map(|s| serde_json::from_slice(&s.value).ok())
        .collect();
    let mut servers = live(&leases, jiff_now());
    if servers.is_empty() {
        // This server's own Lease is not in the cache yet.
        servers.push(api.advertise);
    }
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets(&servers),
    });
    reconcile_if_changed(api, "", "endpoints", "default", ep, &["subsets"]).await?;
    // A slice holds one port set: the servers on the first server's port.
    let port = servers[0].port();
    let family = if servers[0].is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoints: Vec<Value> = servers
        .iter()
        .filter(|s| s.port() == port)
        .map(|s| json!({"addresses": [s.ip().to_string()], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    reconcile_if_changed(
        api,
        "discovery.k8s.io",
        "endpointslices",
        "default",
        slice,
        &["addressType", "endpoints", "ports"],
    )
    .await
}

fn jiff_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// Renews and reconciles once (at start, before serving).
pub async fn announce(api: &ApiServer) -> Result<(), ApiError> {
    renew_lease(api).await?;
    reconcile_endpoints(api).await
}

/// Renews every 5 s, reconciling the endpoints each time.
pub fn spawn(api: Arc<ApiServer>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RENEW);
        loop {
            tick.tick().await;
            if let Err(e) = announce(&api).await {
                tracing::warn!(error = %e, "apiserver lease not renewed");
            }
        }
    });
}

/// On a clean stop: this server's Lease goes and the endpoints follow at once.
pub async fn withdraw(api: &ApiServer) {
    let t = target(Some(lease_name(api.advertise)));
    let _ = api.delete(&t, &DeleteOptions::default()).await;
    let _ = reconcile_endpoints(api).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(addr: &str, renewed: &str, secs: i32, labelled: bool) -> Lease {
        let labels = if labelled {
            json!({IDENTITY_LABEL: "kube-apiserver"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({"metadata": {"name": "x", "labels": labels, "annotations": {ADDRESS_ANNOTATION: addr}},
            "spec": {"renewTime": renewed, "leaseDurationSeconds": secs}})).unwrap()
    }

    #[test]
    fn only_live_labelled_leases_count_and_ports_make_subsets() {
        let t0 = "2026-01-01T00:00:00.000000Z";
        let now = k8s_openapi::jiff::Timestamp::from_second(1767225600 + 10)
            .unwrap()
            .as_second();
        let leases = [
            lease("10.0.0.2:6443", t0, 15, true),
            lease("10.0.0.1:6443", t0, 15, true),
            lease("10.0.0.3:6443", t0, 5, true),
            lease("10.0.0.4:6443", t0, 15, false),
            lease("10.0.0.1:7443", t0, 15, true),
        ];
        let got = live(&leases, now);
        let want: Vec<SocketAddr> = ["10.0.0.1:6443", "10.0.0.1:7443", "10.0.0.2:6443"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            subsets(&got),
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                   {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]}])
        );
    }
}
