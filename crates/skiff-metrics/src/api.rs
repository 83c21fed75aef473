//! NodeMetrics and PodMetrics (`metrics.k8s.io/v1beta1`) as metrics-server writes them,
//! with quantities in canonical form.

use crate::store::{PodUsage, Usage};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};

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

fn time(ms: i64) -> String {
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

fn usage(u: &Usage) -> Value {
    json!({"cpu": cpu(u.cpu_nano_cores), "memory": memory(u.memory_bytes)})
}

fn metadata(name: &str, namespace: Option<&str>, labels: &Map<String, Value>, now: &str) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": now});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if !labels.is_empty() {
        m["labels"] = Value::Object(labels.clone());
    }
    m
}

/// A node's metrics; `labels` are the Node's, `now_ms` the time of the answer.
pub fn node_metrics(name: &str, labels: &Map<String, Value>, u: &Usage, now_ms: i64) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(name, None, labels, &time(now_ms)),
        "timestamp": time(u.at_ms),
        "window": window(u.window_ms),
        "usage": usage(u),
    })
}

pub fn pod_metrics(p: &PodUsage, labels: &Map<String, Value>, now_ms: i64) -> Value {
    let containers: Vec<Value> = p
        .containers
        .iter()
        .map(|(name, u)| json!({"name": name, "usage": usage(u)}))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(&p.name, Some(&p.namespace), labels, &time(now_ms)),
        "timestamp": time(p.at_ms),
        "window": window(p.window_ms),
        "containers": containers,
    })
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
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
    fn node_metrics_as_metrics_server_writes_them() {
        let u = Usage {
            cpu_nano_cores: 250_000_000,
            memory_bytes: 2 * 1024 * 1024,
            at_ms: 1_700_000_010_000,
            window_ms: 15_002,
        };
        let v = node_metrics("n1", &Map::new(), &u, 1_700_000_011_000);
        assert_eq!(v["kind"], "NodeMetrics");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:30Z");
        assert_eq!(v["window"], "15.002s");
        assert_eq!(v["usage"], json!({"cpu": "250m", "memory": "2Mi"}));
    }
}
