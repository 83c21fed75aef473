//! One pod network across nodes, as flannel's backends make it: every node routes the
//! other nodes' pod CIDRs, via their InternalIPs on a shared L2 segment (`host-gw`) or
//! through a VXLAN device (`vxlan`) for nodes that are not. Pod-to-pod traffic is never
//! NATed; traffic from pods to anything outside the cluster CIDR is masqueraded.
//!
//! `plan` is the pure decision (Nodes → routes, neighbours, forwarding entries); the
//! `iproute` module carries it out with `ip` and `bridge`.

use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The annotation on which a node announces its VXLAN device's MAC (flannel keeps the
/// same in `flannel.alpha.coreos.com/backend-data`).
pub const VTEP_MAC_ANNOTATION: &str = "skiff.io/vtep-mac";
/// The VXLAN device, its VNI and UDP port (flannel's defaults).
pub const VXLAN_DEVICE: &str = "skiff-vxlan";
pub const VXLAN_ID: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;
/// VXLAN over IPv4 costs 50 bytes of every frame.
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Routes via the other nodes' InternalIPs: all nodes on one L2 segment.
    #[default]
    HostGw,
    /// Routes through a VXLAN device: nodes anywhere their InternalIPs reach.
    Vxlan,
    /// No routes: the pod network across nodes is someone else's job.
    None,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            "none" => Ok(Backend::None),
            other => Err(format!(
                "unknown flannel backend {other:?} (host-gw, vxlan or none)"
            )),
        }
    }
}

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, l) = s.split_once('/')?;
        let len: u8 = l.parse().ok().filter(|l| *l <= 32)?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Some(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// The network's first address, flannel's VTEP address for the node.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The first host address: the bridge's gateway address on its node.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What routing needs of another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub pod_cidr: Cidr,
    pub ip: Ipv4Addr,
    pub vtep_mac: Option<String>,
}

impl Peer {
    /// None for a node without a pod CIDR or an IPv4 InternalIP yet.
    pub fn from_node(n: &Node) -> Option<Peer> {
        let name = n.metadata.name.clone()?;
        let spec = n.spec.as_ref()?;
        let pod_cidr = spec
            .pod_cidrs
            .iter()
            .flatten()
            .chain(spec.pod_cidr.iter())
            .find_map(|c| Cidr::parse(c))?;
        let ip = n
            .status
            .as_ref()?
            .addresses
            .iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok())?;
        let vtep_mac = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VTEP_MAC_ANNOTATION))
            .cloned();
        Some(Peer {
            name,
            pod_cidr,
            ip,
            vtep_mac,
        })
    }
}

/// A route to another node's pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: Cidr,
    pub via: Ipv4Addr,
    /// Set for VXLAN routes (`dev skiff-vxlan onlink`).
    pub dev: Option<String>,
}

/// A remote VTEP: its address answers to its MAC (neighbour), and frames for the MAC go
/// to the node's InternalIP (forwarding database).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vtep {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub node_ip: Ipv4Addr,
}

/// The host's routing state for the pod network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub routes: BTreeSet<Route>,
    pub vteps: BTreeSet<Vtep>,
}

/// The routes (and VTEPs) this node needs to reach every other node's pods. A peer on
/// this node's own address, or holding this node's CIDR, is left out.
pub fn plan(backend: Backend, own: &str, own_ip: Ipv4Addr, peers: &[Peer]) -> Plan {
    let mut p = Plan::default();
    for peer in peers.iter().filter(|x| x.name != own && x.ip != own_ip) {
        match backend {
            Backend::HostGw => {
                p.routes.insert(Route {
                    dst: peer.pod_cidr,
                    via: peer.ip,
                    dev: None,
                });
            }
            Backend::Vxlan => {
                let Some(mac) = &peer.vtep_mac else { continue };
                let vtep = peer.pod_cidr.network();
                p.vteps.insert(Vtep {
                    ip: vtep,
                    mac: mac.clone(),
                    node_ip: peer.ip,
                });
                p.routes.insert(Route {
                    dst: peer.pod_cidr,
                    via: vtep,
                    dev: Some(VXLAN_DEVICE.into()),
                });
            }
            Backend::None => {}
        }
    }
    p
}

/// What to remove and add to go from `old` to `new`: removals first, so a route that
/// moved is never doubled.
pub fn diff<T: Ord + Clone>(old: &BTreeSet<T>, new: &BTreeSet<T>) -> (Vec<T>, Vec<T>) {
    (
        old.difference(new).cloned().collect(),
        new.difference(old).cloned().collect(),
    )
}

/// The nftables table that masquerades pod traffic leaving the cluster CIDR (flannel's
/// `ipMasq`); pod-to-pod traffic, across nodes too, keeps its addresses.
pub fn egress_table(cluster_cidr: &str) -> String {
    format!(
        "table ip skiff-egress {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {cluster_cidr} ip daddr {cluster_cidr} return\n    ip saddr {cluster_cidr} ip daddr 224.0.0.0/4 return\n    ip saddr {cluster_cidr} masquerade fully-random\n  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: &str, ip: &str, mac: Option<&str>) -> Node {
        let mut v = json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                           "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}});
        if let Some(m) = mac {
            v["metadata"]["annotations"] = json!({VTEP_MAC_ANNOTATION: m});
        }
        serde_json::from_value(v).unwrap()
    }

    fn peers(nodes: &[Node]) -> Vec<Peer> {
        nodes.iter().filter_map(Peer::from_node).collect()
    }

    #[test]
    fn cidrs_parse_and_name_their_addresses() {
        let c = Cidr::parse("10.42.3.7/24").unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.gateway().to_string(), "10.42.3.1");
        assert!(Cidr::parse("10.42.3.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn host_gw_routes_each_other_node_via_its_address() {
        let nodes = [
            node("a", "10.42.0.0/24", "172.30.0.2", None),
            node("b", "10.42.1.0/24", "172.30.0.3", None),
            node("c", "10.42.2.0/24", "172.30.0.4", None),
        ];
        let p = plan(
            Backend::HostGw,
            "a",
            "172.30.0.2".parse().unwrap(),
            &peers(&nodes),
        );
        let routes: Vec<String> = p
            .routes
            .iter()
            .map(|r| format!("{} via {}", r.dst, r.via))
            .collect();
        assert_eq!(
            routes,
            ["10.42.1.0/24 via 172.30.0.3", "10.42.2.0/24 via 172.30.0.4"]
        );
        assert!(p.vteps.is_empty());
        // A node without a CIDR or an address yet is skipped; none routes nothing.
        let mut bare = node("d", "10.42.3.0/24", "172.30.0.5", None);
        bare.spec.as_mut().unwrap().pod_cidr = None;
        bare.spec.as_mut().unwrap().pod_cidrs = None;
        assert!(Peer::from_node(&bare).is_none());
        assert_eq!(
            plan(
                Backend::None,
                "a",
                "172.30.0.2".parse().unwrap(),
                &peers(&nodes)
            ),
            Plan::default()
        );
    }

    #[test]
    fn vxlan_routes_through_the_device_once_a_peer_announces_its_mac() {
        let nodes = [
            node("a", "10.42.0.0/24", "172.30.0.2", Some("aa:aa:aa:aa:aa:aa")),
            node("b", "10.42.1.0/24", "172.30.0.3", Some("bb:bb:bb:bb:bb:bb")),
            node("c", "10.42.2.0/24", "172.30.0.4", None),
        ];
        let p = plan(
            Backend::Vxlan,
            "a",
            "172.30.0.2".parse().unwrap(),
            &peers(&nodes),
        );
        assert_eq!(p.routes.len(), 1, "c has no VTEP yet");
        let r = p.routes.iter().next().unwrap();
        assert_eq!(
            (r.dst.to_string(), r.via.to_string(), r.dev.as_deref()),
            (
                "10.42.1.0/24".into(),
                "10.42.1.0".into(),
                Some(VXLAN_DEVICE)
            )
        );
        let v = p.vteps.iter().next().unwrap();
        assert_eq!(
            (v.ip.to_string(), v.mac.as_str(), v.node_ip.to_string()),
            ("10.42.1.0".into(), "bb:bb:bb:bb:bb:bb", "172.30.0.3".into())
        );
    }

    #[test]
    fn a_leaving_node_takes_its_route_with_it() {
        let two = peers(&[
            node("a", "10.42.0.0/24", "172.30.0.2", None),
            node("b", "10.42.1.0/24", "172.30.0.3", None),
        ]);
        let ip = "172.30.0.2".parse().unwrap();
        let before = plan(Backend::HostGw, "a", ip, &two);
        let after = plan(Backend::HostGw, "a", ip, &two[..1]);
        let (gone, added) = diff(&before.routes, &after.routes);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].dst.to_string(), "10.42.1.0/24");
        assert!(added.is_empty());
    }

    #[test]
    fn egress_masquerades_only_traffic_leaving_the_cluster() {
        let t = egress_table("10.42.0.0/16");
        assert!(t.contains("ip saddr 10.42.0.0/16 ip daddr 10.42.0.0/16 return"));
        assert!(t.contains("ip saddr 10.42.0.0/16 masquerade"));
    }
}
