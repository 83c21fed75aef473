//! Request counters and latency histograms in Prometheus text format, named like
//! Kubernetes' (`apiserver_request_total`, `apiserver_request_duration_seconds`).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Watchers cut off for taking nothing, by resource.
    terminated_watchers: Mutex<BTreeMap<String, u64>>,
    /// Client connections open now (TLS, past the handshake).
    pub connections: std::sync::atomic::AtomicI64,
    /// Watch streams open now.
    pub watches: std::sync::atomic::AtomicI64,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default() += 1;
        // Long-running requests would swamp the latency figures, as in Kubernetes.
        if verb == "WATCH" || verb == "CONNECT" {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let mut d = self.durations.lock();
        let h = d
            .entry((verb.to_string(), resource.to_string()))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn watcher_terminated(&self, resource: &str) {
        *self
            .terminated_watchers
            .lock()
            .entry(resource.to_string())
            .or_default() += 1;
    }

    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = format!(
            "# HELP skiff_open_connections Client connections open now.\n# TYPE skiff_open_connections gauge\nskiff_open_connections {}\n# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests.\n# TYPE apiserver_longrunning_requests gauge\napiserver_longrunning_requests{{verb=\"WATCH\"}} {}\n",
            self.connections.load(Relaxed),
            self.watches.load(Relaxed)
        );
        out.push_str("# HELP apiserver_terminated_watchers_total Counter of watchers closed due to unresponsiveness broken by resource type.\n");
        out.push_str("# TYPE apiserver_terminated_watchers_total counter\n");
        for (res, n) in self.terminated_watchers.lock().iter() {
            let _ = writeln!(
                out,
                "apiserver_terminated_watchers_total{{resource=\"{res}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, res, code), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",resource=\"{res}\",verb=\"{verb}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, res), h) in self.durations.lock().iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{resource=\"{res}\",verb=\"{verb}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{resource=\"{res}\",verb=\"{verb}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{resource=\"{res}\",verb=\"{verb}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{resource=\"{res}\",verb=\"{verb}\"}} {}",
                h.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_buckets() {
        let m = Metrics::default();
        m.observe("GET", "pods", 200, Duration::from_millis(3));
        m.observe("GET", "pods", 200, Duration::from_millis(30));
        let t = m.render();
        assert!(
            t.contains("apiserver_request_total{code=\"200\",resource=\"pods\",verb=\"GET\"} 2")
        );
        assert!(t.contains("le=\"0.005\"} 1"));
        assert!(t.contains("le=\"0.05\"} 2"));
        assert!(t.contains(
            "apiserver_request_duration_seconds_count{resource=\"pods\",verb=\"GET\"} 2"
        ));
    }
}
