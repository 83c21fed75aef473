//! `metrics.k8s.io/v1beta1`, built in as metrics-server would serve it through the
//! aggregation layer: every node with an agent endpoint is scraped at
//! `/metrics/resource` each `--metric-resolution` (the API server's own kubelet-client
//! identity, as for logs), the readings kept in a [`skiff_metrics::Store`], and
//! NodeMetrics and PodMetrics served with discovery, so `kubectl top` works. Requests
//! are authorized as the resources `nodes` and `pods` of the group `metrics.k8s.io`.
//! Simulated nodes have nothing to scrape: their pods' usage comes from
//! [`skiff_metrics::simulated`] (annotations, else half the requests).
//!
//! When the aggregation layer exists this becomes the local APIService
//! `v1beta1.metrics.k8s.io`, replaceable by a real metrics-server.

use crate::cache::{Attrs, Stored};
use crate::metricsgroup::{GROUP, Target};
use crate::respond::error_response;
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use serde::Deserialize;
use skiff_metrics::api;
use skiff_types::ApiError;
use skiff_validation::labels;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// One scrape may take this long before the node is skipped this round.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// A field of the object's selector attributes, "" when it has none.
fn field<'a>(a: &'a Attrs, name: &str) -> &'a str {
    a.fields
        .iter()
        .find(|(f, _)| *f == name)
        .and_then(|(_, v)| v.as_deref())
        .unwrap_or("")
}

/// The objects of `resource` (core group) in `namespace`, from the watch cache. What is
/// read of them here (names, labels, node, phase) is their selector attributes, parsed
/// once per stored version and shared with selector lists and watches, so a request
/// costs no parsing of tens of thousands of pods.
fn objects(api: &ApiServer, resource: &str, namespace: Option<&str>) -> Vec<Arc<Stored>> {
    let ri = crate::registry::builtin("", resource);
    api.cache
        .list(&ri.prefix(namespace), None, None, &|_| true)
        .0
}

/// Answers a GET the authorizer allowed.
pub fn serve(api: &ApiServer, t: &Target, query: Option<&str>) -> Response {
    let run = || match answer(api, t, query) {
        Ok(body) => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => error_response(&e),
    };
    // A list of tens of thousands of PodMetrics takes tens of milliseconds to write:
    // off the async worker, as big lists are, so handshakes and Leases go on.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if t.name.is_none() && multi_thread {
        tokio::task::block_in_place(run)
    } else {
        run()
    }
}

fn answer(api: &ApiServer, t: &Target, query: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let selector = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned());
    let selector = match selector {
        Some(s) => labels::Selector::parse(&s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => labels::Selector::everything(),
    };
    let now = api::time(chrono::Utc::now().timestamp_millis());
    let objects = objects(api, t.resource, t.namespace.as_deref());
    let wanted: Vec<&Attrs> = objects
        .iter()
        .filter_map(|s| s.attrs("", t.resource))
        .filter(|a| {
            t.name
                .as_ref()
                .is_none_or(|n| n == field(a, "metadata.name"))
                && selector.matches(&a.labels)
        })
        .collect();
    if t.resource == "nodes" {
        nodes_body(api, t, &wanted, &now)
    } else {
        pods_body(api, t, &wanted, &now)
    }
}

// The store's read lock is held while the answer is written, item by item: readers
// share it, and the scraper's write waits a few milliseconds per thousand items.

fn nodes_body(
    api: &ApiServer,
    t: &Target,
    wanted: &[&Attrs],
    now: &str,
) -> Result<Vec<u8>, ApiError> {
    let store = api.resource_metrics.read();
    let mut list = api::ListWriter::new("NodeMetricsList", wanted.len());
    for a in wanted {
        let name = field(a, "metadata.name");
        let Some(u) = store.node(name) else { continue };
        let item = api::node_metrics(name, &a.labels, &u, now);
        if t.name.is_some() {
            return Ok(serde_json::to_vec(&item).expect("serializable"));
        }
        list.push(&item);
    }
    finish(t, list)
}

fn pods_body(
    api: &ApiServer,
    t: &Target,
    wanted: &[&Attrs],
    now: &str,
) -> Result<Vec<u8>, ApiError> {
    let store = api.resource_metrics.read();
    let mut list = api::ListWriter::new("PodMetricsList", wanted.len());
    for a in wanted {
        let (node, ns, name) = (
            field(a, "spec.nodeName"),
            field(a, "metadata.namespace"),
            field(a, "metadata.name"),
        );
        let Some(u) = store.pod(node, ns, name) else {
            continue;
        };
        let item = api::pod_metrics(&u, &a.labels, now);
        if t.name.is_some() {
            return Ok(serde_json::to_vec(&item).expect("serializable"));
        }
        list.push(&item);
    }
    finish(t, list)
}

/// The list, or NotFound for a named GET that found nothing.
fn finish(t: &Target, list: api::ListWriter) -> Result<Vec<u8>, ApiError> {
    match &t.name {
        Some(name) => Err(ApiError::not_found(GROUP, t.resource, name)),
        None => Ok(list.finish()),
    }
}

/// Scrapes every node with an agent endpoint each `resolution`, for as long as the
/// server runs.
pub fn spawn_scraper(api: Arc<ApiServer>, resolution: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(resolution);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            scrape_all(&api).await;
        }
    });
}

async fn scrape_all(api: &Arc<ApiServer>) {
    let t0 = std::time::Instant::now();
    let nodes: Vec<String> = objects(api, "nodes", None)
        .iter()
        .filter_map(|s| s.attrs("", "nodes"))
        .map(|a| field(a, "metadata.name").to_string())
        .collect();
    let scrapes = nodes.iter().map(|n| async move {
        let got = tokio::time::timeout(SCRAPE_TIMEOUT, scrape(api, n)).await;
        (n, got)
    });
    let results = futures::future::join_all(scrapes).await;
    let simulated: HashSet<&str> = results
        .iter()
        .filter(|(_, got)| matches!(got, Ok(Ok(None))))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut sim_pods = simulated_pods(api, &simulated);
    let at = chrono::Utc::now().timestamp_millis();
    let mut store = api.resource_metrics.write();
    for (node, got) in results {
        match got {
            Ok(Ok(Some(text))) => store.absorb(node, &skiff_metrics::prom::parse(&text), at),
            // A simulated node has no endpoint to scrape: its pods say what they use.
            Ok(Ok(None)) => {
                let pods = sim_pods.remove(node.as_str()).unwrap_or_default();
                skiff_metrics::simulated::absorb(&mut store, node, &pods, at);
            }
            Ok(Err(e)) => tracing::debug!(%node, error = %e, "scraping resource metrics failed"),
            Err(_) => tracing::debug!(%node, "scraping resource metrics timed out"),
        }
    }
    let live: HashSet<String> = nodes.into_iter().collect();
    store.retain_nodes(&live);
    let elapsed_ms = t0.elapsed().as_millis() as u64;
    tracing::debug!(nodes = live.len(), elapsed_ms, "resource metrics scraped");
}

/// The fields of a Pod read for a simulated node's usage.
#[derive(Deserialize, Default)]
struct SimPodObject {
    #[serde(default)]
    metadata: SimMeta,
    #[serde(default)]
    spec: SimSpec,
    #[serde(default)]
    status: SimStatus,
}

#[derive(Deserialize, Default)]
struct SimMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SimSpec {
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    containers: Vec<SimContainer>,
}

#[derive(Deserialize, Default)]
struct SimContainer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resources: SimResources,
}

#[derive(Deserialize, Default)]
struct SimResources {
    #[serde(default)]
    requests: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SimStatus {
    start_time: Option<String>,
}

/// Millicores (`cpu`) or bytes of a quantity; 0 when absent or malformed.
fn amount(q: Option<&String>, cpu: bool) -> i64 {
    let Some(q) = q.and_then(|q| skiff_validation::quantity::parse(q).ok()) else {
        return 0;
    };
    (if cpu { q.millis() } else { q.value() }) as i64
}

/// The running pods of each simulated node, from the watch cache.
fn simulated_pods(
    api: &ApiServer,
    nodes: &HashSet<&str>,
) -> std::collections::HashMap<String, Vec<skiff_metrics::simulated::SimPod>> {
    use skiff_metrics::simulated::{CPU_ANNOTATION, MEMORY_ANNOTATION, SimPod};
    let mut out: std::collections::HashMap<String, Vec<SimPod>> = Default::default();
    if nodes.is_empty() {
        return out;
    }
    // Only the running pods of simulated nodes are parsed, found by their attributes.
    let candidate = |s: &Stored| {
        s.attrs("", "pods").is_some_and(|a| {
            field(a, "status.phase") == "Running" && nodes.contains(field(a, "spec.nodeName"))
        })
    };
    for p in objects(api, "pods", None)
        .iter()
        .filter(|s| candidate(s))
        .filter_map(|s| serde_json::from_slice::<SimPodObject>(&s.value).ok())
    {
        let started_ms = p
            .status
            .start_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp_millis());
        let annotated = |key: &str, cpu: bool| {
            p.metadata
                .annotations
                .get(key)
                .map(|q| amount(Some(q), cpu))
        };
        let sim = SimPod {
            namespace: p.metadata.namespace.clone(),
            name: p.metadata.name.clone(),
            started_ms,
            cpu: annotated(CPU_ANNOTATION, true),
            memory: annotated(MEMORY_ANNOTATION, false),
            containers: p
                .spec
                .containers
                .iter()
                .map(|c| {
                    let r = &c.resources.requests;
                    (
                        c.name.clone(),
                        amount(r.get("cpu"), true),
                        amount(r.get("memory"), false),
                    )
                })
                .collect(),
        };
        out.entry(p.spec.node_name.clone()).or_default().push(sim);
    }
    out
}

/// The node's `/metrics/resource`, or None when it has no agent endpoint.
async fn scrape(api: &ApiServer, node: &str) -> Result<Option<String>, String> {
    let Ok((ip, port)) = crate::nodeproxy::agent_address(api, node).await else {
        return Ok(None);
    };
    let resp = crate::nodeproxy::agent_get(api, &ip, port, "/metrics/resource").await?;
    if !resp.status().is_success() {
        return Err(format!("{} from {ip}:{port}", resp.status()));
    }
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}
