//! The summary as Prometheus text: kubelet's resource metrics (`/metrics/resource`, what
//! metrics-server and skiff's metrics API scrape) and the agent's own (`/metrics`).

use super::summary::{CpuStats, MemoryStats, Summary};
use std::fmt::Write;

/// One metric family: its header, then samples added in order.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64, at_ms: Option<i64>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = write!(self.out, " {value}");
        if let Some(ms) = at_ms {
            let _ = write!(self.out, " {ms}");
        }
        self.out.push('\n');
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn ms(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn cpu_seconds(c: &Option<CpuStats>) -> Option<(f64, Option<i64>)> {
    let c = c.as_ref()?;
    Some((c.usage_core_nano_seconds? as f64 / 1e9, ms(&c.time)))
}

fn working_set(m: &Option<MemoryStats>) -> Option<(f64, Option<i64>)> {
    let m = m.as_ref()?;
    Some((m.working_set_bytes? as f64, ms(&m.time)))
}

/// kubelet's `/metrics/resource`, families in its (alphabetical) order.
pub fn resource_metrics(s: &Summary) -> String {
    let mut out = String::new();
    let containers = || {
        s.pods.iter().flat_map(|p| {
            p.containers.iter().map(move |c| {
                let labels = [
                    ("container", c.name.as_str()),
                    ("namespace", p.pod_ref.namespace.as_str()),
                    ("pod", p.pod_ref.name.as_str()),
                ];
                (labels, c)
            })
        })
    };
    let name = "container_cpu_usage_seconds_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    );
    for (labels, c) in containers() {
        if let Some((v, at)) = cpu_seconds(&c.cpu) {
            f.sample(name, &labels, v, at);
        }
    }
    let name = "container_memory_working_set_bytes";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[STABLE] Current working set of the container in bytes",
    );
    for (labels, c) in containers() {
        if let Some((v, at)) = working_set(&c.memory) {
            f.sample(name, &labels, v, at);
        }
    }
    let name = "container_start_time_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[STABLE] Start time of the container since unix epoch in seconds",
    );
    for (labels, c) in containers() {
        if let Some(started) = c.start_time.as_deref().and_then(ms) {
            f.sample(name, &labels, started as f64 / 1e3, None);
        }
    }
    let name = "node_cpu_usage_seconds_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    );
    if let Some((v, at)) = cpu_seconds(&s.node.cpu) {
        f.sample(name, &[], v, at);
    }
    let name = "node_memory_working_set_bytes";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[STABLE] Current working set of the node in bytes",
    );
    if let Some((v, at)) = working_set(&s.node.memory) {
        f.sample(name, &[], v, at);
    }
    let pods = || {
        s.pods.iter().map(|p| {
            let labels = [
                ("namespace", p.pod_ref.namespace.as_str()),
                ("pod", p.pod_ref.name.as_str()),
            ];
            (labels, p)
        })
    };
    let name = "pod_cpu_usage_seconds_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    );
    for (labels, p) in pods() {
        if let Some((v, at)) = cpu_seconds(&p.cpu) {
            f.sample(name, &labels, v, at);
        }
    }
    let name = "pod_memory_working_set_bytes";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[STABLE] Current working set of the pod in bytes",
    );
    for (labels, p) in pods() {
        if let Some((v, at)) = working_set(&p.memory) {
            f.sample(name, &labels, v, at);
        }
    }
    let name = "resource_scrape_error";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    );
    f.sample(name, &[], 0.0, None);
    out
}

/// The agent's own metrics, under kubelet's names where kubelet has one.
pub fn agent_metrics(s: &Summary, process: &Process) -> String {
    let mut out = String::new();
    let name = "kubelet_running_containers";
    let running: usize = s.pods.iter().map(|p| p.containers.len()).sum();
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[ALPHA] Number of containers currently running",
    );
    f.sample(
        name,
        &[("container_state", "running")],
        running as f64,
        None,
    );
    let name = "kubelet_running_pods";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "[ALPHA] Number of pods that have a running pod sandbox",
    );
    f.sample(name, &[], s.pods.len() as f64, None);
    let name = "process_cpu_seconds_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    f.sample(name, &[], process.cpu_seconds, None);
    let name = "process_resident_memory_bytes";
    let mut f = Family::new(&mut out, name, "gauge", "Resident memory size in bytes.");
    f.sample(name, &[], process.rss_bytes as f64, None);
    out
}

/// This process's own use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl Process {
    pub fn read() -> Process {
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        // utime and stime: the 12th and 13th fields after the parenthesised name.
        let ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_string();
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(f.iter().sum::<u64>())
            })
            .unwrap_or(0);
        Process {
            cpu_seconds: ticks as f64 / 100.0,
            rss_bytes: rss_kib * 1024,
        }
    }
}
