//! Policies compiled once (selectors parsed, CIDRs read) and evaluated per pod.

use crate::model::{Allow, Isolation, Namespace, Peers, Pod, PortRange, Protocol};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_validation::labels::Selector;
use std::collections::{BTreeMap, BTreeSet};

/// A selector that matches nothing: what an unreadable one (which validation should
/// have refused) becomes, so that a broken rule allows nothing rather than everything.
fn selector(s: Option<&LabelSelector>) -> Option<Selector> {
    match s {
        None => Some(Selector::everything()),
        Some(s) => serde_json::to_value(s)
            .ok()
            .and_then(|v| Selector::from_label_selector(&v).ok()),
    }
}

#[derive(Debug)]
enum Peer {
    /// Pods matching `pods` in the policy's namespace (`namespaces: None`) or in the
    /// namespaces `namespaces` matches. `None` selectors never match.
    Pods {
        namespaces: Option<Option<Selector>>,
        pods: Option<Selector>,
    },
    Block(IpNet, Vec<IpNet>),
    Nothing,
}

impl Peer {
    fn of(p: &NetworkPolicyPeer) -> Peer {
        if let Some(b) = &p.ip_block {
            let holes: Option<Vec<IpNet>> =
                b.except.iter().flatten().map(|c| c.parse().ok()).collect();
            return match (b.cidr.parse(), holes) {
                (Ok(net), Some(holes)) => Peer::Block(net, holes),
                _ => Peer::Nothing,
            };
        }
        if p.pod_selector.is_none() && p.namespace_selector.is_none() {
            return Peer::Nothing;
        }
        Peer::Pods {
            namespaces: p.namespace_selector.as_ref().map(|s| selector(Some(s))),
            pods: selector(p.pod_selector.as_ref()),
        }
    }
}

#[derive(Debug)]
enum Port {
    Numbers(PortRange),
    Named(Protocol, String),
    Nothing,
}

impl Port {
    fn of(p: &NetworkPolicyPort) -> Port {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            return Port::Nothing;
        };
        let number = |n: i32| u16::try_from(n).ok();
        match &p.port {
            None => Port::Numbers(PortRange {
                protocol,
                first: 0,
                last: u16::MAX,
            }),
            Some(IntOrString::String(name)) => Port::Named(protocol, name.clone()),
            Some(IntOrString::Int(n)) => match (number(*n), p.end_port.map(number)) {
                (Some(first), None) => Port::Numbers(PortRange {
                    protocol,
                    first,
                    last: first,
                }),
                (Some(first), Some(Some(last))) if last >= first => Port::Numbers(PortRange {
                    protocol,
                    first,
                    last,
                }),
                _ => Port::Nothing,
            },
        }
    }
}

/// One ingress or egress rule: `None` peers or ports mean all of them.
#[derive(Debug)]
struct Rule {
    peers: Option<Vec<Peer>>,
    ports: Option<Vec<Port>>,
}

impl Rule {
    fn new(peers: Option<&Vec<NetworkPolicyPeer>>, ports: Option<&Vec<NetworkPolicyPort>>) -> Rule {
        Rule {
            peers: peers
                .filter(|p| !p.is_empty())
                .map(|p| p.iter().map(Peer::of).collect()),
            ports: ports
                .filter(|p| !p.is_empty())
                .map(|p| p.iter().map(Port::of).collect()),
        }
    }
}

#[derive(Debug)]
struct Compiled {
    namespace: String,
    selects: Option<Selector>,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

impl Compiled {
    fn of(p: &NetworkPolicy) -> Compiled {
        let spec = p.spec.clone().unwrap_or_default();
        let (ingress, egress) = types(&spec);
        Compiled {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            selects: selector(spec.pod_selector.as_ref()),
            ingress: ingress.then(|| {
                spec.ingress
                    .iter()
                    .flatten()
                    .map(|r| Rule::new(r.from.as_ref(), r.ports.as_ref()))
                    .collect()
            }),
            egress: egress.then(|| {
                spec.egress
                    .iter()
                    .flatten()
                    .map(|r| Rule::new(r.to.as_ref(), r.ports.as_ref()))
                    .collect()
            }),
        }
    }

    fn selects(&self, pod: &Pod) -> bool {
        !pod.host_network
            && pod.namespace == self.namespace
            && self
                .selects
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }
}

/// Whether a policy isolates for ingress and for egress.
fn types(spec: &NetworkPolicySpec) -> (bool, bool) {
    match &spec.policy_types {
        Some(t) if !t.is_empty() => (
            t.iter().any(|t| t == "Ingress"),
            t.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// The policies of a cluster, read once.
#[derive(Debug, Default)]
pub struct Policies(Vec<Compiled>);

impl Policies {
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a NetworkPolicy>) -> Policies {
        Policies(policies.into_iter().map(Compiled::of).collect())
    }
}

/// The pods and namespaces peers are looked up in.
struct World<'a> {
    pods: &'a [Pod],
    namespace_labels: BTreeMap<&'a str, &'a BTreeMap<String, String>>,
}

impl World<'_> {
    /// The pods `peer` names, for a policy of namespace `own`.
    fn pods_of<'p>(&'p self, peer: &'p Peer, own: &'p str) -> impl Iterator<Item = &'p Pod> + 'p {
        self.pods.iter().filter(move |p| {
            let Peer::Pods { namespaces, pods } = peer else {
                return false;
            };
            let in_namespace = match namespaces {
                None => p.namespace == own,
                Some(sel) => {
                    let labels = self.namespace_labels.get(p.namespace.as_str());
                    match (sel, labels) {
                        (Some(sel), Some(labels)) => sel.matches(labels),
                        _ => false,
                    }
                }
            };
            !p.host_network && in_namespace && pods.as_ref().is_some_and(|s| s.matches(&p.labels))
        })
    }

    fn peers(&self, peers: &Option<Vec<Peer>>, own: &str) -> Peers {
        let Some(peers) = peers else {
            return Peers::Any;
        };
        let mut ips = BTreeSet::new();
        let mut blocks = Vec::new();
        for peer in peers {
            match peer {
                Peer::Block(net, holes) => blocks.push((*net, holes.clone())),
                _ => ips.extend(self.pods_of(peer, own).flat_map(|p| p.ips.iter().copied())),
            }
        }
        Peers::Some { ips, blocks }
    }
}

/// Ports with names resolved on `on`; `None` for all ports.
fn resolve(ports: &Option<Vec<Port>>, on: Option<&Pod>) -> Option<Vec<PortRange>> {
    let ports = ports.as_ref()?;
    Some(
        ports
            .iter()
            .filter_map(|p| match p {
                Port::Numbers(r) => Some(*r),
                Port::Named(protocol, name) => named(*protocol, name, on?),
                Port::Nothing => None,
            })
            .collect(),
    )
}

/// A named port as `on` has it, if it does.
fn named(protocol: Protocol, name: &str, on: &Pod) -> Option<PortRange> {
    let port = on.named_port(name, protocol)?;
    Some(PortRange {
        protocol,
        first: port,
        last: port,
    })
}

/// The named ports of `ports` as `on` has them.
fn named_on(ports: &[Port], on: &Pod) -> Vec<PortRange> {
    ports
        .iter()
        .filter_map(|p| match p {
            Port::Named(protocol, name) => named(*protocol, name, on),
            _ => None,
        })
        .collect()
}

/// What `pod` may receive and send under `policies`, its peers looked up among `pods`
/// (every pod of the cluster with its addresses) in `namespaces`.
pub fn evaluate(
    policies: &Policies,
    pod: &Pod,
    pods: &[Pod],
    namespaces: &[Namespace],
) -> Isolation {
    let world = World {
        pods,
        namespace_labels: namespaces
            .iter()
            .map(|n| (n.name.as_str(), &n.labels))
            .collect(),
    };
    let mut out = Isolation::default();
    for p in policies.0.iter().filter(|p| p.selects(pod)) {
        if let Some(rules) = &p.ingress {
            let allows = out.ingress.get_or_insert_with(Vec::new);
            for r in rules {
                allows.push(Allow {
                    peers: world.peers(&r.peers, &p.namespace),
                    ports: resolve(&r.ports, Some(pod)),
                });
            }
        }
        if let Some(rules) = &p.egress {
            let allows = out.egress.get_or_insert_with(Vec::new);
            for r in rules {
                allows.extend(egress(&world, r, &p.namespace));
            }
        }
    }
    out
}

/// An egress rule's allows. A named port is resolved on each destination pod, so the
/// rule's named ports become one allow per destination pod that has them, beside one
/// for its numbered ports.
fn egress(world: &World, r: &Rule, own: &str) -> Vec<Allow> {
    let peers = world.peers(&r.peers, own);
    let Some(ports) = &r.ports else {
        return vec![Allow { peers, ports: None }];
    };
    let numbered = resolve(&r.ports, None).unwrap_or_default();
    let mut out = Vec::new();
    if !numbered.is_empty() {
        out.push(Allow {
            peers,
            ports: Some(numbered),
        });
    }
    if !ports.iter().any(|p| matches!(p, Port::Named(..))) {
        return out;
    }
    let destinations: Vec<&Pod> = match &r.peers {
        None => world.pods.iter().filter(|p| !p.host_network).collect(),
        Some(peers) => peers
            .iter()
            .flat_map(|peer| world.pods_of(peer, own))
            .collect(),
    };
    for d in destinations.into_iter().filter(|d| !d.ips.is_empty()) {
        let named = named_on(ports, d);
        if !named.is_empty() {
            out.push(Allow {
                peers: Peers::Some {
                    ips: d.ips.iter().copied().collect(),
                    blocks: Vec::new(),
                },
                ports: Some(named),
            });
        }
    }
    out
}
