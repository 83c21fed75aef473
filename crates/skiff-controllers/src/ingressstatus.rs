//! The status of the Ingresses the built-in Ingress controller serves (`ingress-status`),
//! as an ingress controller publishes it: every Ingress of skiff's class (by
//! `skiff_ingress::class::ours`: its class is one whose controller is skiff's, or it
//! names none and the default class is skiff's) shows in `status.loadBalancer.ingress`
//! the addresses of the nodes serving Ingresses (Ready and carrying the
//! `ingress.skiff.io/ports` annotation their agent puts on them): each node's
//! ExternalIPs if it has any, else its InternalIPs; sorted, without repeats. Kept
//! current as nodes, IngressClasses and Ingresses change; an Ingress of another class
//! is left alone. Written through `ingresses/status`, only when it differs.
//!
//! [`addresses`] and [`desired`] are the pure decision.

use crate::control::{self, Backoff, Dirty, Keyed};
use crate::endpointutil::{decode, key_of, not_older};
use crate::servicelb::{LbNode, patch_load_balancer};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use skiff_ingress::class::{NODE_ANNOTATION, ours};
use skiff_kube::informer::Informers;
use skiff_kube::reflect::Change;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;

/// What the status reads of a node: what a load balancer reads, and whether its agent
/// serves Ingresses (the node carries [`NODE_ANNOTATION`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngressNode {
    pub node: LbNode,
    pub serving: bool,
}

impl IngressNode {
    pub fn from_node(n: &Node) -> IngressNode {
        let serving = n
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(NODE_ANNOTATION));
        IngressNode {
            node: LbNode::from_node(n),
            serving,
        }
    }
}

/// The addresses every Ingress of skiff's shows: those of the Ready serving nodes.
pub fn addresses(nodes: &BTreeMap<String, IngressNode>) -> Vec<IngressLoadBalancerIngress> {
    let ips: BTreeSet<&String> = nodes
        .values()
        .filter(|n| n.node.ready && n.serving)
        .flat_map(|n| n.node.public())
        .collect();
    ips.into_iter()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip.clone()),
            ..IngressLoadBalancerIngress::default()
        })
        .collect()
}

/// What `ingress` should show, given the cluster's classes and the serving nodes'
/// [`addresses`]: None when it is not skiff's to say.
pub fn desired(
    ingress: &Ingress,
    classes: &[IngressClass],
    addresses: &[IngressLoadBalancerIngress],
) -> Option<Vec<IngressLoadBalancerIngress>> {
    ours(ingress, classes).then(|| addresses.to_vec())
}

fn current(ingress: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

const INGRESSES: usize = 0;
const CLASSES: usize = 1;

#[derive(Default)]
struct View {
    ingresses: BTreeMap<String, Ingress>,
    /// By name.
    classes: Vec<IngressClass>,
    nodes: BTreeMap<String, IngressNode>,
    /// [`addresses`] of `nodes`.
    addresses: Vec<IngressLoadBalancerIngress>,
}

impl View {
    fn observe_ingress(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                dirty.extend(self.ingresses.keys().cloned());
                self.ingresses = items
                    .into_iter()
                    .filter_map(decode::<Ingress>)
                    .map(|i| (key_of(&i.metadata), i))
                    .collect();
                dirty.extend(self.ingresses.keys().cloned());
            }
            Change::Apply(v) => {
                if let Some(i) = decode::<Ingress>(v) {
                    let key = key_of(&i.metadata);
                    dirty.insert(key);
                    self.wrote(i);
                }
            }
            Change::Delete(v) => {
                if let Some(i) = decode::<Ingress>(v) {
                    let key = key_of(&i.metadata);
                    self.ingresses.remove(&key);
                    dirty.insert(key);
                }
            }
        }
    }

    /// Holds `i` unless a newer copy is held (one this controller wrote itself).
    fn wrote(&mut self, i: Ingress) {
        let key = key_of(&i.metadata);
        let held = self
            .ingresses
            .get(&key)
            .and_then(|h| h.metadata.resource_version.as_deref());
        if not_older(i.metadata.resource_version.as_deref(), held) {
            self.ingresses.insert(key, i);
        }
    }

    fn observe_class(&mut self, c: Change, dirty: &mut Dirty) {
        let name = |c: &IngressClass| c.metadata.name.clone().unwrap_or_default();
        match c {
            Change::Reset(items) => {
                self.classes = items.into_iter().filter_map(decode).collect();
            }
            Change::Apply(v) => {
                if let Some(class) = decode::<IngressClass>(v) {
                    self.classes.retain(|c| name(c) != name(&class));
                    self.classes.push(class);
                }
            }
            Change::Delete(v) => {
                if let Some(class) = decode::<IngressClass>(v) {
                    self.classes.retain(|c| name(c) != name(&class));
                }
            }
        }
        self.classes.sort_by_key(name);
        // Which Ingresses are skiff's may have changed: all are looked at.
        dirty.extend(self.ingresses.keys().cloned());
    }

    fn observe_node(&mut self, c: Change, dirty: &mut Dirty) {
        let entry = |n: Node| {
            let serving = IngressNode::from_node(&n);
            (n.metadata.name.unwrap_or_default(), serving)
        };
        match c {
            Change::Reset(items) => {
                self.nodes = items.into_iter().filter_map(decode).map(entry).collect();
            }
            Change::Apply(v) => {
                if let Some((name, n)) = decode(v).map(entry) {
                    self.nodes.insert(name, n);
                }
            }
            Change::Delete(v) => {
                if let Some((name, _)) = decode(v).map(entry) {
                    self.nodes.remove(&name);
                }
            }
        }
        let fresh = addresses(&self.nodes);
        if fresh != self.addresses {
            self.addresses = fresh;
            dirty.extend(self.ingresses.keys().cloned());
        }
    }
}

struct Controller {
    client: kube::Client,
    view: View,
    backoff: Backoff,
}

impl Controller {
    async fn write(
        &mut self,
        key: &str,
        want: Vec<IngressLoadBalancerIngress>,
    ) -> crate::Result<()> {
        if let Some(written) = patch_load_balancer::<Ingress, _>(&self.client, key, &want).await? {
            self.view.wrote(written);
        }
        Ok(())
    }
}

impl Keyed for Controller {
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty) {
        match source {
            INGRESSES => self.view.observe_ingress(change, dirty),
            CLASSES => self.view.observe_class(change, dirty),
            _ => self.view.observe_node(change, dirty),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.view.ingresses.keys().cloned().collect()
    }

    async fn sync(&mut self, key: &str) -> Option<Duration> {
        let v = &self.view;
        let ingress = v.ingresses.get(key)?;
        let want = desired(ingress, &v.classes, &v.addresses)?;
        if want == current(ingress) {
            self.backoff.succeeded(key);
            return None;
        }
        let outcome = self.write(key, want).await;
        self.backoff
            .settle(key, outcome, "ingress status not written")
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, informers: Informers, shutdown: watch::Receiver<bool>) {
    let sources = vec![
        informers.watch("/apis/networking.k8s.io/v1/ingresses"),
        informers.watch("/apis/networking.k8s.io/v1/ingressclasses"),
        informers.watch("/api/v1/nodes"),
    ];
    let c = Controller {
        client,
        view: View::default(),
        backoff: Backoff::default(),
    };
    control::run_keyed(c, sources, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_ingress::class::{CONTROLLER, DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION};
    use std::sync::Arc;

    /// Objects as the informers share them.
    fn arc(v: serde_json::Value) -> Arc<serde_json::Value> {
        Arc::new(v)
    }

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        let ann = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": ann, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"controller": controller},
        }))
        .unwrap()
    }

    fn ingress(name: &str, class: Option<&str>, legacy: Option<&str>) -> serde_json::Value {
        let mut i = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "5"},
            "spec": {"ingressClassName": class},
        });
        if let Some(l) = legacy {
            i["metadata"]["annotations"] = json!({LEGACY_CLASS_ANNOTATION: l});
        }
        i
    }

    fn node(ready: bool, serving: bool, internal: &str, external: Option<&str>) -> IngressNode {
        IngressNode {
            node: LbNode {
                ready,
                internal: vec![internal.into()],
                external: external.into_iter().map(Into::into).collect(),
                ..LbNode::default()
            },
            serving,
        }
    }

    fn ips(v: &[IngressLoadBalancerIngress]) -> Vec<&str> {
        v.iter().filter_map(|i| i.ip.as_deref()).collect()
    }

    #[test]
    fn ready_serving_nodes_give_their_addresses() {
        let nodes: BTreeMap<String, IngressNode> = [
            ("a", node(true, true, "10.0.0.2", None)),
            ("b", node(true, true, "10.0.0.3", Some("203.0.113.9"))),
            ("c", node(false, true, "10.0.0.4", None)),
            ("d", node(true, false, "10.0.0.5", None)),
            // Two nodes behind one address: listed once.
            ("e", node(true, true, "10.0.0.1", Some("203.0.113.9"))),
            ("f", node(true, true, "10.0.0.1", None)),
        ]
        .map(|(k, n)| (k.to_string(), n))
        .into();
        assert_eq!(
            ips(&addresses(&nodes)),
            ["10.0.0.1", "10.0.0.2", "203.0.113.9"]
        );
        assert!(addresses(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn only_skiffs_ingresses_get_them() {
        let addrs = addresses(&[("a".to_string(), node(true, true, "10.0.0.2", None))].into());
        let decide = |i: serde_json::Value, classes: &[IngressClass]| {
            let i: Ingress = serde_json::from_value(i).unwrap();
            desired(&i, classes, &addrs).map(|v| ips(&v).join(","))
        };
        let skiff = class("skiff", CONTROLLER, true);
        let nginx = class("nginx", "k8s.io/ingress-nginx", false);
        let both = [skiff.clone(), nginx.clone()];
        let ours = Some("10.0.0.2".to_string());
        assert_eq!(decide(ingress("i", Some("skiff"), None), &both), ours);
        assert_eq!(decide(ingress("i", Some("nginx"), None), &both), None);
        assert_eq!(decide(ingress("i", Some("gone"), None), &both), None);
        assert_eq!(decide(ingress("i", None, Some("skiff")), &both), ours);
        assert_eq!(decide(ingress("i", None, Some("nginx")), &both), None);
        // No class: the default's controller decides.
        assert_eq!(decide(ingress("i", None, None), &both), ours);
        let plain = class("skiff", CONTROLLER, false);
        assert_eq!(decide(ingress("i", None, None), &[plain, nginx]), None);
        // A class of another name with skiff's controller is skiff's too.
        let mine = class("mine", CONTROLLER, false);
        assert_eq!(decide(ingress("i", Some("mine"), None), &[mine]), ours);
        // Serving nodes gone: empty, not None.
        let none = desired(
            &serde_json::from_value(ingress("i", Some("skiff"), None)).unwrap(),
            &both,
            &[],
        );
        assert_eq!(none, Some(vec![]));
    }

    #[test]
    fn nodes_are_read_from_their_typed_form() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "a", "annotations": {NODE_ANNOTATION: "80,443"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "ExternalIP", "address": "203.0.113.9"}, {"type": "Hostname", "address": "a"}],
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let i = IngressNode::from_node(&n);
        assert!(i.node.ready && i.serving);
        assert_eq!(i.node.internal, ["10.0.0.2"]);
        assert_eq!(i.node.public(), ["203.0.113.9"]);
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap();
        assert_eq!(IngressNode::from_node(&bare), IngressNode::default());
    }

    #[test]
    fn changes_mark_the_ingresses_they_concern() {
        let mut v = View::default();
        let mut dirty = Dirty::new();
        v.observe_ingress(
            Change::Reset(vec![
                arc(ingress("a", Some("skiff"), None)),
                arc(ingress("b", Some("nginx"), None)),
            ]),
            &mut dirty,
        );
        assert_eq!(dirty.len(), 2);
        dirty.clear();
        let node = |annotated: bool| {
            let mut n = json!({"metadata": {"name": "n"}, "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                "conditions": [{"type": "Ready", "status": "True"}]}});
            if annotated {
                n["metadata"]["annotations"] = json!({NODE_ANNOTATION: "80,443"});
            }
            arc(n)
        };
        // A node that serves nothing changes no address: nothing to look at.
        v.observe_node(Change::Apply(node(false)), &mut dirty);
        assert!(dirty.is_empty());
        v.observe_node(Change::Apply(node(true)), &mut dirty);
        assert_eq!(dirty.len(), 2);
        assert_eq!(ips(&v.addresses), ["10.0.0.2"]);
        dirty.clear();
        v.observe_node(Change::Apply(node(true)), &mut dirty);
        assert!(dirty.is_empty(), "the same addresses");
        let class = serde_json::to_value(class("nginx", "k8s.io/ingress-nginx", false)).unwrap();
        v.observe_class(Change::Apply(arc(class)), &mut dirty);
        assert_eq!(dirty.len(), 2);
        // A copy older than the one held is not taken.
        let mut newer = ingress("a", Some("nginx"), None);
        newer["metadata"]["resourceVersion"] = json!("9");
        v.wrote(serde_json::from_value(newer).unwrap());
        v.observe_ingress(
            Change::Apply(arc(ingress("a", Some("skiff"), None))),
            &mut dirty,
        );
        let held = &v.ingresses["default/a"];
        assert_eq!(held.metadata.resource_version.as_deref(), Some("9"));
    }
}
