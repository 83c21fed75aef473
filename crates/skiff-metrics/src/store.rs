//! The last two readings of each node and container, from successive scrapes, and the
//! usage they give: CPU as the rate between the two cumulative readings (over their
//! window), memory as the last working set. A container whose counter went back (it
//! restarted) starts over; what a scrape no longer lists is forgotten.

use crate::prom::Sample;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the API reports of one node or container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
    /// The later reading's time, milliseconds since the epoch.
    pub at_ms: i64,
    /// Between the two readings.
    pub window_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    at_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct Series {
    prev: Option<Reading>,
    last: Option<Reading>,
    memory: Option<u64>,
}

impl Series {
    fn push(&mut self, r: Reading) {
        match self.last {
            // The same reading scraped twice: keep the window we have.
            Some(l) if l.at_ms >= r.at_ms => {}
            Some(l) if r.cpu_seconds >= l.cpu_seconds => {
                self.prev = Some(l);
                self.last = Some(r);
            }
            _ => {
                self.prev = None;
                self.last = Some(r);
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        let (p, l) = (self.prev?, self.last?);
        let window_ms = l.at_ms - p.at_ms;
        if window_ms <= 0 {
            return None;
        }
        let rate = (l.cpu_seconds - p.cpu_seconds) / (window_ms as f64 / 1e3);
        Some(Usage {
            cpu_nano_cores: (rate * 1e9).round() as u64,
            memory_bytes: self.memory?,
            at_ms: l.at_ms,
            window_ms,
        })
    }
}

#[derive(Debug, Default)]
struct NodeEntry {
    node: Series,
    /// (namespace, pod) → container → its series.
    pods: HashMap<(String, String), BTreeMap<String, Series>>,
}

#[derive(Debug, Default)]
pub struct Store {
    nodes: HashMap<String, NodeEntry>,
}

/// A pod's usage: each container's, all at one time and window.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub at_ms: i64,
    pub window_ms: i64,
    pub containers: Vec<(String, Usage)>,
}

impl Store {
    /// A scrape of `node`'s `/metrics/resource` taken at `scraped_ms` (the time for
    /// samples without their own).
    pub fn absorb(&mut self, node: &str, samples: &[Sample], scraped_ms: i64) {
        let entry = self.nodes.entry(node.to_string()).or_default();
        let mut seen: HashSet<(String, String, String)> = HashSet::new();
        for s in samples {
            let at_ms = s.at_ms.unwrap_or(scraped_ms);
            match s.name.as_str() {
                "node_cpu_usage_seconds_total" => entry.node.push(Reading {
                    cpu_seconds: s.value,
                    at_ms,
                }),
                "node_memory_working_set_bytes" => entry.node.memory = Some(s.value as u64),
                "container_cpu_usage_seconds_total" | "container_memory_working_set_bytes" => {
                    let (Some(ns), Some(pod), Some(c)) =
                        (s.label("namespace"), s.label("pod"), s.label("container"))
                    else {
                        continue;
                    };
                    let key = (ns.to_string(), pod.to_string());
                    seen.insert((key.0.clone(), key.1.clone(), c.to_string()));
                    let series = entry
                        .pods
                        .entry(key)
                        .or_default()
                        .entry(c.to_string())
                        .or_default();
                    if s.name == "container_cpu_usage_seconds_total" {
                        series.push(Reading {
                            cpu_seconds: s.value,
                            at_ms,
                        });
                    } else {
                        series.memory = Some(s.value as u64);
                    }
                }
                _ => {}
            }
        }
        for ((ns, pod), containers) in entry.pods.iter_mut() {
            containers.retain(|c, _| seen.contains(&(ns.clone(), pod.clone(), c.clone())));
        }
        entry.pods.retain(|_, c| !c.is_empty());
    }

    /// Forgets the nodes not in `live`.
    pub fn retain_nodes(&mut self, live: &HashSet<String>) {
        self.nodes.retain(|n, _| live.contains(n));
    }

    pub fn node(&self, name: &str) -> Option<Usage> {
        self.nodes.get(name)?.node.usage()
    }

    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Every pod whose containers all have a usage, as metrics-server reports only
    /// whole pods.
    pub fn pods(&self) -> Vec<PodUsage> {
        let mut out = Vec::new();
        for entry in self.nodes.values() {
            for ((ns, name), containers) in &entry.pods {
                let usages: Option<Vec<(String, Usage)>> = containers
                    .iter()
                    .map(|(c, s)| s.usage().map(|u| (c.clone(), u)))
                    .collect();
                let Some(usages) = usages else { continue };
                let Some((_, first)) = usages.first() else {
                    continue;
                };
                out.push(PodUsage {
                    namespace: ns.clone(),
                    name: name.clone(),
                    at_ms: first.at_ms,
                    window_ms: first.window_ms,
                    containers: usages,
                });
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::parse;

    fn scrape(t_ms: i64, node_cpu: f64, a: f64, b: Option<f64>) -> String {
        let mut s = format!(
            "node_cpu_usage_seconds_total {node_cpu} {t_ms}\nnode_memory_working_set_bytes 4096 {t_ms}\ncontainer_cpu_usage_seconds_total{{container=\"a\",namespace=\"d\",pod=\"p\"}} {a} {t_ms}\ncontainer_memory_working_set_bytes{{container=\"a\",namespace=\"d\",pod=\"p\"}} 1024 {t_ms}\n"
        );
        if let Some(b) = b {
            s += &format!(
                "container_cpu_usage_seconds_total{{container=\"b\",namespace=\"d\",pod=\"p\"}} {b} {t_ms}\ncontainer_memory_working_set_bytes{{container=\"b\",namespace=\"d\",pod=\"p\"}} 2048 {t_ms}\n"
            );
        }
        s
    }

    #[test]
    fn rates_need_two_readings_and_a_whole_pod() {
        let mut st = Store::default();
        st.absorb("n", &parse(&scrape(10_000, 100.0, 1.0, Some(2.0))), 0);
        assert_eq!(st.node("n"), None, "one reading has no rate");
        assert!(st.pods().is_empty());
        st.absorb("n", &parse(&scrape(25_000, 115.0, 2.5, Some(2.0))), 0);
        assert_eq!(
            st.node("n"),
            Some(Usage {
                cpu_nano_cores: 1_000_000_000,
                memory_bytes: 4096,
                at_ms: 25_000,
                window_ms: 15_000
            })
        );
        let pods = st.pods();
        assert_eq!(pods.len(), 1);
        assert_eq!(
            pods[0].containers[0],
            (
                "a".into(),
                Usage {
                    cpu_nano_cores: 100_000_000,
                    memory_bytes: 1024,
                    at_ms: 25_000,
                    window_ms: 15_000
                }
            )
        );
        assert_eq!(pods[0].containers[1].1.cpu_nano_cores, 0);

        // Container b restarted (its counter went back): the pod waits for its next reading.
        st.absorb("n", &parse(&scrape(40_000, 130.0, 4.0, Some(0.5))), 0);
        assert!(st.pods().is_empty(), "{:?}", st.pods());
        // b is gone from the scrape: the pod is whole again.
        st.absorb("n", &parse(&scrape(55_000, 145.0, 5.5, None)), 0);
        let pods = st.pods();
        assert_eq!(pods[0].containers.len(), 1);
        st.retain_nodes(&HashSet::new());
        assert_eq!(st.node("n"), None);
    }
}
