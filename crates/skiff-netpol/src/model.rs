//! What the evaluation reads of pods and namespaces, and what it produces.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From the API's spelling; TCP when left out, as the API defaults it.
    pub fn parse(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// A container port with a name, which a policy may refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// What a policy reads of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its addresses once it has them (a pod without any is selected but is no peer).
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
    pub host_network: bool,
}

impl Pod {
    /// The port `name` of this pod, for `protocol`.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// What a policy reads of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Ports `first..=last` of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

/// The far ends a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// Every address.
    Any,
    /// These pod addresses and blocks (a CIDR less its holes).
    Some {
        ips: BTreeSet<IpAddr>,
        blocks: Vec<(IpNet, Vec<IpNet>)>,
    },
}

impl Peers {
    pub fn none() -> Peers {
        Peers::Some {
            ips: BTreeSet::new(),
            blocks: Vec::new(),
        }
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Peers::Any => true,
            Peers::Some { ips, blocks } => {
                ips.contains(&ip)
                    || blocks.iter().any(|(net, holes)| {
                        net.contains(&ip) && !holes.iter().any(|h| h.contains(&ip))
                    })
            }
        }
    }
}

/// Traffic one rule allows: from (to) any of `peers`, on any of `ports`
/// (`None`: every port of every protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub peers: Peers,
    pub ports: Option<Vec<PortRange>>,
}

impl Allow {
    /// Whether this lets traffic with `ip` at the far end on `protocol`/`port` through.
    pub fn allows(&self, ip: IpAddr, protocol: Protocol, port: u16) -> bool {
        self.peers.contains(ip)
            && self.ports.as_ref().is_none_or(|ports| {
                ports
                    .iter()
                    .any(|r| r.protocol == protocol && (r.first..=r.last).contains(&port))
            })
    }
}

/// One pod's isolation: `None` in a direction means it is not isolated there (all
/// traffic passes); `Some` lists what passes, nothing else does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    pub ingress: Option<Vec<Allow>>,
    pub egress: Option<Vec<Allow>>,
}

impl Isolation {
    pub fn admits(&self, from: IpAddr, protocol: Protocol, port: u16) -> bool {
        passes(&self.ingress, from, protocol, port)
    }

    pub fn sends(&self, to: IpAddr, protocol: Protocol, port: u16) -> bool {
        passes(&self.egress, to, protocol, port)
    }
}

fn passes(rules: &Option<Vec<Allow>>, ip: IpAddr, protocol: Protocol, port: u16) -> bool {
    rules
        .as_ref()
        .is_none_or(|rules| rules.iter().any(|a| a.allows(ip, protocol, port)))
}
