//! The last two readings of each node and container, from successive scrapes, and the
//! usage they give: CPU as the rate between the two cumulative readings (over their
//! window), memory as the last working set. A container whose counter went back (it
//! restarted) starts over; what a scrape no longer lists is forgotten.

use crate::prom::Sample;
use std::collections::{HashMap, HashSet};

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

/// One container's series, and the last round that listed it.
#[derive(Debug)]
struct Container {
    name: String,
    series: Series,
    seen: u64,
}

/// A pod's containers, sorted by name: pods have one or two, so a vector (a B-tree
/// allocates room for eleven at its first entry, a kilobyte a pod at 30,000 pods).
type Containers = Vec<Container>;

#[derive(Debug, Default)]
struct NodeEntry {
    node: Series,
    /// namespace → pod → containers, looked up by `&str` without building keys.
    pods: HashMap<String, HashMap<String, Containers>>,
}

#[derive(Debug, Default)]
pub struct Store {
    nodes: HashMap<String, NodeEntry>,
    /// Counts scrapes, so each container remembers the last one that listed it.
    rounds: u64,
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

/// The value `key` holds in `map`, inserted empty when missing; the key is copied only
/// then.
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

/// One scrape of one node being written into the store: readings go in one by one,
/// and [`Round::end`] forgets the containers the scrape did not list.
pub struct Round<'s> {
    entry: &'s mut NodeEntry,
    round: u64,
}

impl Round<'_> {
    pub fn node_cpu(&mut self, cpu_seconds: f64, at_ms: i64) {
        self.entry.node.push(Reading { cpu_seconds, at_ms });
    }

    pub fn node_memory(&mut self, bytes: u64) {
        self.entry.node.memory = Some(bytes);
    }

    fn container(&mut self, namespace: &str, pod: &str, name: &str) -> &mut Series {
        let containers = slot(slot(&mut self.entry.pods, namespace), pod);
        let i = match containers.binary_search_by(|c| c.name.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                // Exactly: a vector's first growth makes room for four, 384 bytes where
                // a pod of one container needs 96.
                containers.reserve_exact(1);
                let c = Container {
                    name: name.to_string(),
                    series: Series::default(),
                    seen: self.round,
                };
                containers.insert(i, c);
                i
            }
        };
        containers[i].seen = self.round;
        &mut containers[i].series
    }

    pub fn container_cpu(
        &mut self,
        (namespace, pod, name): (&str, &str, &str),
        cpu_seconds: f64,
        at_ms: i64,
    ) {
        self.container(namespace, pod, name)
            .push(Reading { cpu_seconds, at_ms });
    }

    pub fn container_memory(&mut self, (namespace, pod, name): (&str, &str, &str), bytes: u64) {
        self.container(namespace, pod, name).memory = Some(bytes);
    }

    /// Forgets what this scrape did not list.
    pub fn end(self) {
        let round = self.round;
        for pods in self.entry.pods.values_mut() {
            for containers in pods.values_mut() {
                containers.retain(|c| c.seen == round);
            }
            pods.retain(|_, c| !c.is_empty());
        }
        self.entry.pods.retain(|_, p| !p.is_empty());
    }
}

impl Store {
    /// Starts writing a scrape of `node`.
    pub fn round(&mut self, node: &str) -> Round<'_> {
        self.rounds += 1;
        Round {
            entry: slot(&mut self.nodes, node),
            round: self.rounds,
        }
    }

    /// A scrape of `node`'s `/metrics/resource` taken at `scraped_ms` (the time for
    /// samples without their own).
    pub fn absorb(&mut self, node: &str, samples: &[Sample], scraped_ms: i64) {
        let mut round = self.round(node);
        for s in samples {
            let at_ms = s.at_ms.unwrap_or(scraped_ms);
            let container = || {
                Some((
                    s.label("namespace")?,
                    s.label("pod")?,
                    s.label("container")?,
                ))
            };
            match s.name.as_str() {
                "node_cpu_usage_seconds_total" => round.node_cpu(s.value, at_ms),
                "node_memory_working_set_bytes" => round.node_memory(s.value as u64),
                "container_cpu_usage_seconds_total" => {
                    if let Some(c) = container() {
                        round.container_cpu(c, s.value, at_ms);
                    }
                }
                "container_memory_working_set_bytes" => {
                    if let Some(c) = container() {
                        round.container_memory(c, s.value as u64);
                    }
                }
                _ => {}
            }
        }
        round.end();
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

    /// The usage of pod `namespace/name` as `node` reported it, when every container
    /// has one (metrics-server reports only whole pods).
    pub fn pod(&self, node: &str, namespace: &str, name: &str) -> Option<PodUsage> {
        let containers = self.nodes.get(node)?.pods.get(namespace)?.get(name)?;
        whole(namespace, name, containers)
    }

    /// Every whole pod, by namespace and name.
    pub fn pods(&self) -> Vec<PodUsage> {
        let mut out: Vec<PodUsage> = self
            .nodes
            .values()
            .flat_map(|e| e.pods.iter())
            .flat_map(|(ns, pods)| pods.iter().map(move |(name, c)| (ns, name, c)))
            .filter_map(|(ns, name, c)| whole(ns, name, c))
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }
}

fn whole(namespace: &str, name: &str, containers: &Containers) -> Option<PodUsage> {
    let usages: Vec<(String, Usage)> = containers
        .iter()
        .map(|c| c.series.usage().map(|u| (c.name.clone(), u)))
        .collect::<Option<_>>()?;
    let first = usages.first()?.1;
    Some(PodUsage {
        namespace: namespace.to_string(),
        name: name.to_string(),
        at_ms: first.at_ms,
        window_ms: first.window_ms,
        containers: usages,
    })
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
