//! The Node authorizer's graph (kube's plugin/pkg/auth/authorizer/node/graph.go), kept
//! as reference counts instead of vertices: for every secret, ConfigMap, claim and
//! ServiceAccount a bound pod names, how many pods on each node name it. A decision is
//! then a lookup or two, and setting a pod costs what the pod names.
//!
//! Edges, all toward a node, as kube's:
//! - pod → node (`spec.nodeName`); a mirror pod has this edge only;
//! - secret, ConfigMap, claim, ServiceAccount → pod;
//! - PV → claim, from the PV's `spec.claimRef` (the PV side is authoritative: a claim's
//!   `spec.volumeName` is written by its user, so it grants nothing);
//! - PV secret (kubelet-visible ones) → PV;
//! - VolumeAttachment → node (`spec.nodeName`).
//!
//! And one kube has not: a Secret an Ingress names in `spec.tls[].secretName` reaches
//! every node, for the Ingress controller each node agent runs (any node may serve any
//! Ingress). Only that Secret: it is still read by name, as the others.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::refs::{
    is_mirror_pod, list, pod_claim_names, pod_configmap_names, pod_secret_names,
    pv_kubelet_secrets, text,
};

/// namespace → name → value; looked up with borrowed strs.
#[derive(Debug)]
struct NsMap<V>(HashMap<String, HashMap<String, V>>);

impl<V> Default for NsMap<V> {
    fn default() -> Self {
        NsMap(HashMap::new())
    }
}

impl<V> NsMap<V> {
    fn get(&self, ns: &str, name: &str) -> Option<&V> {
        self.0.get(ns)?.get(name)
    }

    fn get_mut(&mut self, ns: &str, name: &str) -> Option<&mut V> {
        self.0.get_mut(ns)?.get_mut(name)
    }

    fn insert(&mut self, ns: &str, name: &str, v: V) {
        self.0
            .entry(ns.to_string())
            .or_default()
            .insert(name.to_string(), v);
    }

    fn remove(&mut self, ns: &str, name: &str) -> Option<V> {
        let names = self.0.get_mut(ns)?;
        let v = names.remove(name);
        if names.is_empty() {
            self.0.remove(ns);
        }
        v
    }

    fn get_or_insert_default(&mut self, ns: &str, name: &str) -> &mut V
    where
        V: Default,
    {
        let names = self.0.entry(ns.to_string()).or_default();
        if !names.contains_key(name) {
            names.insert(name.to_string(), V::default());
        }
        names.get_mut(name).expect("just inserted")
    }

    /// Number of entries, all namespaces together.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.values().map(HashMap::len).sum()
    }
}

/// What a pod may reach besides itself, all in the pod's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RefKind {
    Secret = 0,
    ConfigMap = 1,
    Claim = 2,
    ServiceAccount = 3,
}

const REF_KINDS: usize = 4;

/// node → number of pods on it that name the object.
type NodeCounts = HashMap<String, u32>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct PodEntry {
    node: String,
    /// Sorted, without duplicates.
    refs: Vec<(RefKind, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PvEntry {
    claim_namespace: String,
    claim: String,
    /// `(namespace, name)`, without duplicates.
    secrets: Vec<(String, String)>,
}

/// What every node may reach through the pods bound to it, the PersistentVolumes bound
/// to their claims and the VolumeAttachments naming it, and what all nodes reach through
/// Ingresses. Fed one object at a time from the watch cache; [`Graph::authorize`]
/// decides from it.
#[derive(Debug, Default)]
pub struct Graph {
    pods: NsMap<PodEntry>,
    refs: [NsMap<NodeCounts>; REF_KINDS],
    pvs: HashMap<String, PvEntry>,
    /// secret → the PVs naming it.
    pv_secrets: NsMap<HashSet<String>>,
    /// VolumeAttachment → node.
    attachments: HashMap<String, String>,
    /// Ingress → the TLS secrets it names (its namespace), sorted, without duplicates;
    /// only Ingresses naming some.
    ingresses: NsMap<Vec<String>>,
    /// TLS secret → number of Ingresses naming it.
    ingress_secrets: NsMap<u32>,
}

fn pod_entry(pod: &Value, node: &str) -> PodEntry {
    let mut refs: Vec<(RefKind, String)> = Vec::new();
    if !is_mirror_pod(pod) {
        let sa = text(&pod["spec"]["serviceAccountName"]);
        let sa = if sa.is_empty() { "default" } else { sa };
        refs.push((RefKind::ServiceAccount, sa.to_string()));
        let secrets = pod_secret_names(pod)
            .into_iter()
            .map(|n| (RefKind::Secret, n));
        let configmaps = pod_configmap_names(pod)
            .into_iter()
            .map(|n| (RefKind::ConfigMap, n));
        refs.extend(secrets.chain(configmaps).map(|(k, n)| (k, n.to_string())));
        refs.extend(
            pod_claim_names(pod)
                .into_iter()
                .map(|c| (RefKind::Claim, c)),
        );
    }
    refs.sort_unstable();
    refs.dedup();
    PodEntry {
        node: node.to_string(),
        refs,
    }
}

/// The Secrets an Ingress (networking.k8s.io/v1) names in `spec.tls[].secretName`,
/// sorted, without duplicates or empty names.
fn ingress_tls_secrets(ingress: &Value) -> Vec<String> {
    let mut names: Vec<String> = list(&ingress["spec"]["tls"])
        .iter()
        .map(|tls| text(&tls["secretName"]))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn namespace_name(obj: &Value) -> (&str, &str) {
    (
        text(&obj["metadata"]["namespace"]),
        text(&obj["metadata"]["name"]),
    )
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a pod. A pod counts once bound (`spec.nodeName` set); an unbound
    /// one is removed. A mirror pod reaches its node only: it must never grant its node
    /// anything (NodeRestriction also keeps nodes from creating mirror pods that name
    /// other objects).
    pub fn set_pod(&mut self, pod: &Value) {
        let (ns, name) = namespace_name(pod);
        let node = text(&pod["spec"]["nodeName"]);
        if node.is_empty() {
            self.remove_pod(ns, name);
            return;
        }
        let entry = pod_entry(pod, node);
        if self.pods.get(ns, name) == Some(&entry) {
            return;
        }
        self.remove_pod(ns, name);
        for (kind, obj) in &entry.refs {
            let counts = self.refs[*kind as usize].get_or_insert_default(ns, obj);
            *counts.entry(entry.node.clone()).or_default() += 1;
        }
        self.pods.insert(ns, name, entry);
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some(entry) = self.pods.remove(namespace, name) else {
            return;
        };
        for (kind, obj) in &entry.refs {
            self.release(*kind, namespace, obj, &entry.node);
        }
    }

    fn release(&mut self, kind: RefKind, ns: &str, obj: &str, node: &str) {
        let map = &mut self.refs[kind as usize];
        let Some(counts) = map.get_mut(ns, obj) else {
            return;
        };
        if let Some(n) = counts.get_mut(node) {
            *n -= 1;
            if *n == 0 {
                counts.remove(node);
            }
        }
        if counts.is_empty() {
            map.remove(ns, obj);
        }
    }

    /// Adds or replaces a PersistentVolume. Only a PV with `spec.claimRef` reaches
    /// anything: the nodes running pods of that claim, which may then read the PV and
    /// its kubelet-visible secrets (CSI node publish/stage/expand, cephfs, rbd, …).
    pub fn set_pv(&mut self, pv: &Value) {
        let name = text(&pv["metadata"]["name"]);
        self.remove_pv(name);
        let claim_ref = &pv["spec"]["claimRef"];
        if claim_ref.is_null() {
            return;
        }
        let mut secrets: Vec<(String, String)> = pv_kubelet_secrets(pv)
            .into_iter()
            .map(|(ns, s)| (ns.to_string(), s.to_string()))
            .collect();
        secrets.sort_unstable();
        secrets.dedup();
        for (ns, secret) in &secrets {
            let pvs = self.pv_secrets.get_or_insert_default(ns, secret);
            pvs.insert(name.to_string());
        }
        let entry = PvEntry {
            claim_namespace: text(&claim_ref["namespace"]).to_string(),
            claim: text(&claim_ref["name"]).to_string(),
            secrets,
        };
        self.pvs.insert(name.to_string(), entry);
    }

    pub fn remove_pv(&mut self, name: &str) {
        let Some(entry) = self.pvs.remove(name) else {
            return;
        };
        for (ns, secret) in &entry.secrets {
            let Some(pvs) = self.pv_secrets.get_mut(ns, secret) else {
                continue;
            };
            pvs.remove(name);
            if pvs.is_empty() {
                self.pv_secrets.remove(ns, secret);
            }
        }
    }

    /// Adds or replaces a VolumeAttachment (`storage.k8s.io`): readable by the node in
    /// its `spec.nodeName`.
    pub fn set_volume_attachment(&mut self, attachment: &Value) {
        let name = text(&attachment["metadata"]["name"]);
        let node = text(&attachment["spec"]["nodeName"]);
        if node.is_empty() {
            self.attachments.remove(name);
        } else {
            self.attachments.insert(name.to_string(), node.to_string());
        }
    }

    pub fn remove_volume_attachment(&mut self, name: &str) {
        self.attachments.remove(name);
    }

    /// Adds or replaces an Ingress: the Secrets its `spec.tls[].secretName` name (in its
    /// namespace) become readable by every node, until no Ingress names them.
    pub fn set_ingress(&mut self, ingress: &Value) {
        let (ns, name) = namespace_name(ingress);
        let secrets = ingress_tls_secrets(ingress);
        if self.ingresses.get(ns, name) == Some(&secrets) {
            return;
        }
        self.remove_ingress(ns, name);
        if secrets.is_empty() {
            return;
        }
        for secret in &secrets {
            *self.ingress_secrets.get_or_insert_default(ns, secret) += 1;
        }
        self.ingresses.insert(ns, name, secrets);
    }

    pub fn remove_ingress(&mut self, namespace: &str, name: &str) {
        let Some(secrets) = self.ingresses.remove(namespace, name) else {
            return;
        };
        for secret in &secrets {
            let Some(n) = self.ingress_secrets.get_mut(namespace, secret) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                self.ingress_secrets.remove(namespace, secret);
            }
        }
    }

    pub(crate) fn pod_on(&self, node: &str, ns: &str, name: &str) -> bool {
        self.pods.get(ns, name).is_some_and(|p| p.node == node)
    }

    /// Whether a pod on `node` names the object.
    pub(crate) fn named_on(&self, node: &str, kind: RefKind, ns: &str, name: &str) -> bool {
        self.refs[kind as usize]
            .get(ns, name)
            .is_some_and(|counts| counts.contains_key(node))
    }

    pub(crate) fn pv_on(&self, node: &str, name: &str) -> bool {
        self.pvs
            .get(name)
            .is_some_and(|pv| self.named_on(node, RefKind::Claim, &pv.claim_namespace, &pv.claim))
    }

    /// A secret a pod on `node` names, that a PV reachable from `node` names, or that an
    /// Ingress names (any node).
    pub(crate) fn secret_on(&self, node: &str, ns: &str, name: &str) -> bool {
        self.named_on(node, RefKind::Secret, ns, name)
            || self.ingress_secrets.get(ns, name).is_some()
            || self
                .pv_secrets
                .get(ns, name)
                .is_some_and(|pvs| pvs.iter().any(|pv| self.pv_on(node, pv)))
    }

    pub(crate) fn attachment_on(&self, node: &str, name: &str) -> bool {
        self.attachments.get(name).is_some_and(|n| n == node)
    }

    /// Number of objects indexed, for tests: bound pods, referenced objects per kind,
    /// PVs, PV secrets, VolumeAttachments, Ingresses naming secrets, their secrets.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> [usize; 10] {
        [
            self.pods.len(),
            self.refs[0].len(),
            self.refs[1].len(),
            self.refs[2].len(),
            self.refs[3].len(),
            self.pvs.len(),
            self.pv_secrets.len(),
            self.attachments.len(),
            self.ingresses.len(),
            self.ingress_secrets.len(),
        ]
    }
}
