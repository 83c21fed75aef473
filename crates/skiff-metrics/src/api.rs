//! NodeMetrics and PodMetrics (`metrics.k8s.io/v1beta1`) as metrics-server writes them,
//! with quantities in canonical form.

use crate::store::{PodUsage, Usage};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// Nano-cores as a canonical decimal quantity: `250m`, `2`, `1500u`, `123n`.
pub fn cpu(nano: u64) -> String {
    if nano == 0 {
        "0".into()
    } else if nano.is_multiple_of(1_000_000_000) {
        format!("{}", nano / 1_000_000_000)
    } else if nano.is_multiple_of(1_000_000) {
        format!("{}m", nano / 1_000_000)
    } else if nano.is_multiple_of(1_000) {
        format!("{}u", nano / 1_000)
    } else {
        format!("{nano}n")
    }
}

/// Bytes as a canonical binary quantity: `512Ki`, `3Mi`, or plain bytes.
pub fn memory(bytes: u64) -> String {
    let mut v = bytes;
    for suffix in ["", "Ki", "Mi", "Gi", "Ti"] {
        if v == 0 || !v.is_multiple_of(1024) || suffix == "Ti" {
            return format!("{v}{suffix}");
        }
        v /= 1024;
    }
    unreachable!("the last suffix returns")
}

/// Milliseconds since the epoch as an RFC 3339 time, to the second.
pub fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A window as a Go duration: `15.002s`.
fn window(ms: i64) -> String {
    let secs = ms as f64 / 1e3;
    format!("{secs}s")
}

// Written as typed values borrowing the caller's names and labels, not JSON trees: a
// list of 30,000 PodMetrics as `serde_json::Value`s held some 200 MB while written.

#[derive(Serialize)]
pub struct Quantities {
    cpu: String,
    memory: String,
}

fn usage(u: &Usage) -> Quantities {
    Quantities {
        cpu: cpu(u.cpu_nano_cores),
        memory: memory(u.memory_bytes),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    creation_timestamp: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Metadata<'a>,
    timestamp: String,
    window: String,
    usage: Quantities,
}

#[derive(Serialize)]
pub struct ContainerMetrics<'a> {
    name: &'a str,
    usage: Quantities,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Metadata<'a>,
    timestamp: String,
    window: String,
    containers: Vec<ContainerMetrics<'a>>,
}

/// A node's metrics; `labels` are the Node's, `now` the time of the answer.
pub fn node_metrics<'a>(
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    u: &Usage,
    now: &'a str,
) -> NodeMetrics<'a> {
    NodeMetrics {
        kind: "NodeMetrics",
        api_version: GROUP_VERSION,
        metadata: Metadata {
            name,
            namespace: None,
            creation_timestamp: now,
            labels,
        },
        timestamp: time(u.at_ms),
        window: window(u.window_ms),
        usage: usage(u),
    }
}

pub fn pod_metrics<'a>(
    p: &'a PodUsage,
    labels: &'a BTreeMap<String, String>,
    now: &'a str,
) -> PodMetrics<'a> {
    PodMetrics {
        kind: "PodMetrics",
        api_version: GROUP_VERSION,
        metadata: Metadata {
            name: &p.name,
            namespace: Some(&p.namespace),
            creation_timestamp: now,
            labels,
        },
        timestamp: time(p.at_ms),
        window: window(p.window_ms),
        containers: p
            .containers
            .iter()
            .map(|(name, u)| ContainerMetrics {
                name,
                usage: usage(u),
            })
            .collect(),
    }
}

/// A `…MetricsList` written item by item, so that no more than one item is held
/// besides the bytes: at 30,000 pods, items collected first were another 12 MB.
pub struct ListWriter {
    out: Vec<u8>,
    empty: bool,
}

impl ListWriter {
    /// A list of `kind` with room for about `items` items.
    pub fn new(kind: &str, items: usize) -> ListWriter {
        // Items are about 300 bytes; room enough up front spares copies while it grows.
        let mut out = Vec::with_capacity(128 + items * 320);
        out.extend_from_slice(
            format!(
                r#"{{"kind":"{kind}","apiVersion":"{GROUP_VERSION}","metadata":{{}},"items":["#
            )
            .as_bytes(),
        );
        ListWriter { out, empty: true }
    }

    pub fn push<T: Serialize>(&mut self, item: &T) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        serde_json::to_writer(&mut self.out, item).expect("serializable");
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"]}");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_canonical_form() {
        assert_eq!(cpu(250_000_000), "250m");
        assert_eq!(cpu(2_000_000_000), "2");
        assert_eq!(cpu(1_500_000), "1500u");
        assert_eq!(cpu(123), "123n");
        assert_eq!(cpu(0), "0");
        assert_eq!(memory(512 * 1024), "512Ki");
        assert_eq!(memory(3 * 1024 * 1024), "3Mi");
        assert_eq!(memory(1000), "1000");
        assert_eq!(memory(0), "0");
    }

    #[test]
    fn lists_are_written_item_by_item() {
        let u = Usage {
            cpu_nano_cores: 1_000_000,
            memory_bytes: 1024,
            at_ms: 0,
            window_ms: 1000,
        };
        let none = BTreeMap::new();
        let mut w = ListWriter::new("NodeMetricsList", 2);
        w.push(&node_metrics("a", &none, &u, "t"));
        w.push(&node_metrics("b", &none, &u, "t"));
        let v: serde_json::Value = serde_json::from_slice(&w.finish()).unwrap();
        assert_eq!(v["kind"], "NodeMetricsList");
        assert_eq!(v["apiVersion"], GROUP_VERSION);
        assert_eq!(v["metadata"], serde_json::json!({}));
        assert_eq!(v["items"][1]["metadata"]["name"], "b");
        let empty: serde_json::Value =
            serde_json::from_slice(&ListWriter::new("PodMetricsList", 0).finish()).unwrap();
        assert_eq!(empty["items"], serde_json::json!([]));
    }

    #[test]
    fn node_metrics_as_metrics_server_writes_them() {
        let u = Usage {
            cpu_nano_cores: 250_000_000,
            memory_bytes: 2 * 1024 * 1024,
            at_ms: 1_700_000_010_000,
            window_ms: 15_002,
        };
        let none = BTreeMap::new();
        let v =
            serde_json::to_value(node_metrics("n1", &none, &u, &time(1_700_000_011_000))).unwrap();
        assert_eq!(v["kind"], "NodeMetrics");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:30Z");
        assert_eq!(v["window"], "15.002s");
        assert_eq!(
            v["usage"],
            serde_json::json!({"cpu": "250m", "memory": "2Mi"})
        );
        assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:31Z");
        assert_eq!(v["metadata"].get("labels"), None, "no empty labels");
    }
}
