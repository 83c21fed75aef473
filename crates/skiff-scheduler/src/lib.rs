//! Scheduling decisions as pure functions of a snapshot: which nodes a pod fits (filters)
//! and which of those is best (scores), with Kubernetes' plugin semantics and its
//! `FailedScheduling` message. The scheduler loop (reflector, binding, retries) lives
//! elsewhere and calls [`schedule`].

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

mod filters;
mod scores;
pub mod volumes;

pub use filters::{Filter, term_matches, tolerated, tolerates};

/// Resource amounts in Kubernetes' units: CPU in millicores, everything else in units.
/// The standard resources have fields of their own: the filters and scores read them for
/// hundreds of nodes per pod, where map lookups by name would dominate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub cpu: i128,
    pub memory: i128,
    pub pods: i128,
    pub ephemeral_storage: i128,
    /// Extended resources (`example.com/gpu`, hugepages-…), by name.
    pub other: BTreeMap<String, i128>,
}

impl Resources {
    pub fn get(&self, name: &str) -> i128 {
        match name {
            "cpu" => self.cpu,
            "memory" => self.memory,
            "pods" => self.pods,
            "ephemeral-storage" => self.ephemeral_storage,
            _ => self.other.get(name).copied().unwrap_or(0),
        }
    }

    fn slot(&mut self, name: &str) -> &mut i128 {
        match name {
            "cpu" => &mut self.cpu,
            "memory" => &mut self.memory,
            "pods" => &mut self.pods,
            "ephemeral-storage" => &mut self.ephemeral_storage,
            _ => self.other.entry(name.to_string()).or_default(),
        }
    }

    /// Every amount by name, standard resources first (Kubernetes' order), zeros
    /// included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i128)> {
        [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("ephemeral-storage", self.ephemeral_storage),
            ("pods", self.pods),
        ]
        .into_iter()
        .chain(self.other.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
        self.ephemeral_storage += other.ephemeral_storage;
        for (k, v) in &other.other {
            *self.other.entry(k.clone()).or_default() += v;
        }
    }

    fn sub(&mut self, other: &Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (k, v) in &other.other {
            *self.other.entry(k.clone()).or_default() -= v;
        }
    }

    fn max_with(&mut self, other: &Resources) {
        for (k, v) in other.iter() {
            let e = self.slot(k);
            *e = (*e).max(v);
        }
    }

    /// From a `{"cpu": "250m", "memory": "64Mi"}` map.
    pub fn from_json(v: &Value) -> Resources {
        let mut r = Resources::default();
        for (k, q) in v.as_object().into_iter().flatten() {
            let Some(q) = q
                .as_str()
                .map(str::to_string)
                .or_else(|| q.as_i64().map(|n| n.to_string()))
            else {
                continue;
            };
            if let Ok(q) = skiff_validation::quantity::parse(&q) {
                *r.slot(k) = if k == "cpu" { q.millis() } else { q.value() };
            }
        }
        r
    }
}

/// What the scheduler keeps of a pod already on a node (for inter-pod rules and
/// preemption).
#[derive(Debug, Clone)]
pub struct PodMeta {
    pub name: String,
    pub priority: i64,
    pub requests: Resources,
    pub host_ports: Vec<(String, String, i64)>,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Required pod anti-affinity terms of that pod.
    pub anti_affinity: Vec<Value>,
    /// UID of its controller, for spreading pods of one owner.
    pub owner: Option<String>,
}

/// What the scheduler needs to know about a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<String>,
    pub spread: Vec<Value>,
    pub node_name: Option<String>,
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub affinity: Value,
    pub tolerations: Vec<Value>,
    /// (hostIP, protocol, hostPort)
    pub host_ports: Vec<(String, String, i64)>,
    pub priority: i64,
    /// Names of the PersistentVolumeClaims its volumes use.
    pub claims: Vec<String>,
}

/// The claims a pod's volumes use: `persistentVolumeClaim` volumes, and generic
/// ephemeral volumes' claims (named `<pod>-<volume>`).
fn pod_claims(p: &Value) -> Vec<String> {
    let pod = p["metadata"]["name"].as_str().unwrap_or("");
    p["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| match v["persistentVolumeClaim"]["claimName"].as_str() {
            Some(c) => Some(c.to_string()),
            None if v["ephemeral"].is_object() => {
                Some(format!("{pod}-{}", v["name"].as_str().unwrap_or("")))
            }
            None => None,
        })
        .collect()
}

impl PodInfo {
    pub fn from_json(p: &Value) -> PodInfo {
        let spec = &p["spec"];
        // Kubernetes' effective request: the larger of the app containers' sum and any
        // single init container, plus the pod overhead.
        let mut sum = Resources::default();
        for c in spec["containers"].as_array().into_iter().flatten() {
            sum.add(&Resources::from_json(&c["resources"]["requests"]));
        }
        let mut init_max = Resources::default();
        let mut sidecars = Resources::default();
        for c in spec["initContainers"].as_array().into_iter().flatten() {
            let r = Resources::from_json(&c["resources"]["requests"]);
            if c["restartPolicy"] == "Always" {
                // Restartable init containers (sidecars) keep running next to the app.
                sidecars.add(&r);
                init_max.max_with(&sidecars);
            } else {
                let mut with_sidecars = sidecars.clone();
                with_sidecars.add(&r);
                init_max.max_with(&with_sidecars);
            }
        }
        sum.add(&sidecars);
        sum.max_with(&init_max);
        sum.add(&Resources::from_json(&spec["overhead"]));
        let mut host_ports = Vec::new();
        for c in spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["initContainers"].as_array().into_iter().flatten())
        {
            for port in c["ports"].as_array().into_iter().flatten() {
                if let Some(hp) = port["hostPort"].as_i64().filter(|p| *p > 0) {
                    host_ports.push((
                        port["hostIP"].as_str().unwrap_or("0.0.0.0").to_string(),
                        port["protocol"].as_str().unwrap_or("TCP").to_string(),
                        hp,
                    ));
                }
            }
        }
        PodInfo {
            namespace: p["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: p["metadata"]["name"].as_str().unwrap_or("").to_string(),
            labels: string_map(&p["metadata"]["labels"]),
            owner: p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["controller"] == true)
                .and_then(|r| r["uid"].as_str())
                .map(str::to_string),
            spread: spec["topologySpreadConstraints"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            node_name: spec["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            requests: sum,
            node_selector: spec["nodeSelector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            affinity: spec["affinity"].clone(),
            tolerations: spec["tolerations"].as_array().cloned().unwrap_or_default(),
            host_ports,
            priority: spec["priority"].as_i64().unwrap_or(0),
            claims: pod_claims(p),
        }
    }
}

/// A node with what is already placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub pod_count: i128,
    pub host_ports: Vec<(String, String, i64)>,
    pub pods: Vec<PodMeta>,
}

pub(crate) fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl NodeInfo {
    pub fn from_json(n: &Value) -> NodeInfo {
        NodeInfo {
            name: n["metadata"]["name"].as_str().unwrap_or("").to_string(),
            labels: n["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            taints: n["spec"]["taints"].as_array().cloned().unwrap_or_default(),
            unschedulable: n["spec"]["unschedulable"].as_bool().unwrap_or(false),
            allocatable: Resources::from_json(&n["status"]["allocatable"]),
            requested: Resources::default(),
            pod_count: 0,
            host_ports: Vec::new(),
            pods: Vec::new(),
        }
    }

    /// Accounts a pod placed on this node.
    pub fn add_pod(&mut self, p: &PodInfo) {
        self.add_meta(PodMeta::from_info(p));
    }

    fn add_meta(&mut self, m: PodMeta) {
        self.requested.add(&m.requests);
        self.pod_count += 1;
        self.host_ports.extend(m.host_ports.iter().cloned());
        self.pods.push(m);
    }

    fn remove_meta(&mut self, matches: impl Fn(&PodMeta) -> bool) -> Option<PodMeta> {
        let i = self.pods.iter().position(matches)?;
        let m = self.pods.swap_remove(i);
        self.requested.sub(&m.requests);
        self.pod_count -= 1;
        self.host_ports = self
            .pods
            .iter()
            .flat_map(|q| q.host_ports.iter().cloned())
            .collect();
        Some(m)
    }
}

impl PodMeta {
    fn from_info(p: &PodInfo) -> PodMeta {
        PodMeta {
            name: p.name.clone(),
            priority: p.priority,
            requests: p.requests.clone(),
            host_ports: p.host_ports.clone(),
            namespace: p.namespace.clone(),
            labels: p.labels.clone(),
            anti_affinity:
                p.affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            owner: p.owner.clone(),
        }
    }
}

/// Nodes with their pods, as the scheduler's reflector sees them. Kept up to date change
/// by change (`set_node`, `place`, `unplace`), so a scheduler never rebuilds it from a
/// full list.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    /// Whether any placed pod has required anti-affinity (checked for every candidate
    /// otherwise, which would make a round quadratic in nodes).
    pub any_anti_affinity: bool,
    /// Claims, volumes and classes, for pods with claims.
    pub volumes: volumes::VolumeView,
    index: HashMap<String, usize>,
    /// `ns/name` -> the node a pod is counted on (or waits for, see `waiting`).
    placed: HashMap<String, String>,
    /// Pods bound to a node the snapshot does not know (yet): counted once it appears.
    waiting: HashMap<String, Vec<PodMeta>>,
    anti_affinity_pods: usize,
}

fn pod_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Snapshot {
    /// Builds the snapshot from node and pod objects (pods count where they are bound,
    /// unless they have finished).
    pub fn build(nodes: &[Value], pods: &[Value]) -> Snapshot {
        let mut snap = Snapshot::default();
        for n in nodes {
            snap.set_node(n);
        }
        for p in pods {
            snap.set_pod(p);
        }
        snap
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Adds a node or updates what the scheduler reads of it, keeping its pods.
    pub fn set_node(&mut self, n: &Value) {
        let fresh = NodeInfo::from_json(n);
        if let Some(i) = self.index.get(&fresh.name) {
            let cur = &mut self.nodes[*i];
            cur.labels = fresh.labels;
            cur.taints = fresh.taints;
            cur.unschedulable = fresh.unschedulable;
            cur.allocatable = fresh.allocatable;
            return;
        }
        let name = fresh.name.clone();
        self.index.insert(name.clone(), self.nodes.len());
        self.nodes.push(fresh);
        for m in self.waiting.remove(&name).unwrap_or_default() {
            self.count(&name, m);
        }
    }

    /// Forgets a node; its pods wait in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let gone = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        self.anti_affinity_pods -= gone
            .pods
            .iter()
            .filter(|q| !q.anti_affinity.is_empty())
            .count();
        self.any_anti_affinity = self.anti_affinity_pods > 0;
        self.waiting.insert(gone.name, gone.pods);
    }

    /// Accounts a pod object: counted on its node while bound and not finished,
    /// forgotten otherwise.
    pub fn set_pod(&mut self, p: &Value) {
        let info = PodInfo::from_json(p);
        let finished = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        match info.node_name.clone() {
            Some(node) if !finished => self.place(&node, &info),
            _ => self.unplace(&info.namespace, &info.name),
        }
    }

    /// Counts a pod on a node, moving it if it was counted elsewhere.
    pub fn place(&mut self, node: &str, p: &PodInfo) {
        self.unplace(&p.namespace, &p.name);
        self.placed
            .insert(pod_key(&p.namespace, &p.name), node.to_string());
        self.count(node, PodMeta::from_info(p));
    }

    fn count(&mut self, node: &str, m: PodMeta) {
        match self.index.get(node) {
            Some(i) => {
                if !m.anti_affinity.is_empty() {
                    self.anti_affinity_pods += 1;
                    self.any_anti_affinity = true;
                }
                self.nodes[*i].add_meta(m);
            }
            None => self.waiting.entry(node.to_string()).or_default().push(m),
        }
    }

    /// Stops counting a pod (deleted, finished, or an assumed binding that failed).
    pub fn unplace(&mut self, ns: &str, name: &str) {
        let Some(node) = self.placed.remove(&pod_key(ns, name)) else {
            return;
        };
        let matches = |q: &PodMeta| q.namespace == ns && q.name == name;
        match self.index.get(&node) {
            Some(i) => {
                if let Some(m) = self.nodes[*i].remove_meta(matches)
                    && !m.anti_affinity.is_empty()
                {
                    self.anti_affinity_pods -= 1;
                    self.any_anti_affinity = self.anti_affinity_pods > 0;
                }
            }
            None => {
                if let Some(w) = self.waiting.get_mut(&node) {
                    w.retain(|q| !matches(q));
                }
            }
        }
    }

    /// Places a pod on a node in the snapshot (the scheduler assumes it before the bind
    /// returns, so later decisions see it).
    pub fn assume(&mut self, node: &str, p: &PodInfo) {
        self.place(node, p);
    }

    /// Whether a pod is counted on some node (bound or assumed).
    pub fn is_placed(&self, ns: &str, name: &str) -> bool {
        self.placed.contains_key(&pod_key(ns, name))
    }

    /// The same, by `ns/name` key.
    pub fn is_placed_key(&self, key: &str) -> bool {
        self.placed.contains_key(key)
    }

    /// `ns/name` of every pod counted.
    pub fn placed_keys(&self) -> impl Iterator<Item = &String> {
        self.placed.keys()
    }
}

/// Why a pod fits nowhere, worded as Kubernetes' `FitError`.
#[derive(Debug, Clone, PartialEq)]
pub struct FitError {
    pub num_nodes: usize,
    /// Reason -> number of nodes that failed with it.
    pub reasons: BTreeMap<String, usize>,
    /// Why no node was even tried (a PreFilter's verdict), if so.
    pub pre_filter: Option<String>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        if let Some(why) = &self.pre_filter {
            write!(f, "0/{} nodes are available: {why}.", self.num_nodes)
        } else if self.num_nodes == 0 {
            // Kubernetes' ErrNoNodesAvailable.
            write!(f, "no nodes available to schedule pods")
        } else if parts.is_empty() {
            write!(f, "0/{} nodes are available.", self.num_nodes)
        } else {
            write!(
                f,
                "0/{} nodes are available: {}.",
                self.num_nodes,
                parts.join(", ")
            )
        }
    }
}

/// Picks a node for `pod`: the highest total score among the nodes every filter passes,
/// ties broken by name so decisions are repeatable.
pub fn schedule(pod: &Value, snap: &Snapshot) -> Result<String, FitError> {
    schedule_from(pod, snap, 0).map(|(node, _)| node)
}

/// How many feasible nodes are enough before scoring: Kubernetes' adaptive
/// `percentageOfNodesToScore` (all below 100 nodes; 50% shrinking by one point per 125
/// nodes, at least 5% and at least 100 nodes).
pub fn feasible_nodes_to_find(all: usize) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let pct = (50 - (all / 125) as i64).max(5) as usize;
    (all * pct / 100).max(MIN)
}

/// [`schedule`] starting the node search at `start` (schedulers rotate it so every node
/// gets examined in turn) and stopping once `feasible_nodes_to_find` nodes fit, as
/// Kubernetes does. Returns the node and how many nodes were examined.
pub fn schedule_from(
    pod: &Value,
    snap: &Snapshot,
    start: usize,
) -> Result<(String, usize), FitError> {
    schedule_info(&PodInfo::from_json(pod), snap, start)
}

/// [`schedule_from`] for a pod already read into a [`PodInfo`] (which the caller can then
/// assume without reading the pod again).
pub fn schedule_info(
    p: &PodInfo,
    snap: &Snapshot,
    start: usize,
) -> Result<(String, usize), FitError> {
    let all = snap.nodes.len();
    let want = feasible_nodes_to_find(all);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut examined = 0;
    if !p.claims.is_empty()
        && let Some(why) = snap.volumes.pre_filter(&p.namespace, &p.claims)
    {
        return Err(FitError {
            num_nodes: all,
            reasons,
            pre_filter: Some(why),
        });
    }
    let active: Vec<filters::Filter> = filters::ALL
        .iter()
        .copied()
        .filter(|f| f.relevant(p, snap))
        .collect();
    for k in 0..all {
        if feasible.len() >= want {
            break;
        }
        let n = &snap.nodes[(start + k) % all];
        examined += 1;
        let failed: Vec<String> = active
            .iter()
            .map(|f| f.check(p, n, snap))
            .find(|r| !r.is_empty())
            .unwrap_or_default();
        if failed.is_empty() {
            feasible.push(n);
        } else {
            for r in failed {
                *reasons.entry(r).or_default() += 1;
            }
        }
    }
    if feasible.is_empty() {
        return Err(FitError {
            num_nodes: all,
            reasons,
            pre_filter: None,
        });
    }
    let scores = scores::totals(p, &feasible, snap);
    let best = feasible
        .iter()
        .zip(scores)
        .map(|(n, score)| (score, n.name.as_str()))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, name)| name.to_string())
        .expect("feasible is not empty");
    Ok((best, examined))
}

/// A preemption plan: evict `victims` (namespace, name) from `node` so the pod fits.
#[derive(Debug, Clone, PartialEq)]
pub struct Preemption {
    pub node: String,
    pub victims: Vec<(String, String)>,
}

impl NodeInfo {
    fn without(&self, victims: &[usize]) -> NodeInfo {
        let mut n = NodeInfo {
            requested: Resources::default(),
            pod_count: 0,
            host_ports: Vec::new(),
            pods: Vec::new(),
            ..self.clone()
        };
        for (i, q) in self.pods.iter().enumerate() {
            if victims.contains(&i) {
                continue;
            }
            n.requested.add(&q.requests);
            n.pod_count += 1;
            n.host_ports.extend(q.host_ports.iter().cloned());
            n.pods.push(q.clone());
        }
        n
    }
}

/// Kubernetes' default preemption, simplified: on each node, take away every pod of
/// lower priority; if the pod then fits, give back as many victims as possible (highest
/// priority first). The node needing the fewest victims (then the lowest top victim
/// priority) wins. Pods with `preemptionPolicy: Never` preempt nobody.
pub fn preempt(pod: &Value, snap: &Snapshot) -> Option<Preemption> {
    if pod["spec"]["preemptionPolicy"] == "Never" {
        return None;
    }
    let p = PodInfo::from_json(pod);
    let fits = |n: &NodeInfo| filters::ALL.iter().all(|f| f.check(&p, n, snap).is_empty());
    let mut best: Option<(usize, i64, Preemption)> = None;
    for n in &snap.nodes {
        let mut lower: Vec<usize> = (0..n.pods.len())
            .filter(|i| n.pods[*i].priority < p.priority)
            .collect();
        if lower.is_empty() || !fits(&n.without(&lower)) {
            continue;
        }
        // Reprieve the most important victims first.
        lower.sort_by_key(|i| std::cmp::Reverse(n.pods[*i].priority));
        let mut victims = lower.clone();
        for i in lower {
            let trial: Vec<usize> = victims.iter().copied().filter(|v| *v != i).collect();
            if fits(&n.without(&trial)) {
                victims = trial;
            }
        }
        let top = victims
            .iter()
            .map(|i| n.pods[*i].priority)
            .max()
            .unwrap_or(i64::MIN);
        let plan = Preemption {
            node: n.name.clone(),
            victims: victims
                .iter()
                .map(|i| (n.pods[*i].namespace.clone(), n.pods[*i].name.clone()))
                .collect(),
        };
        let better = match &best {
            None => true,
            Some((count, prio, _)) => (victims.len(), top) < (*count, *prio),
        };
        if better {
            best = Some((victims.len(), top, plan));
        }
    }
    best.map(|(_, _, plan)| plan)
}

#[cfg(test)]
mod tests;
