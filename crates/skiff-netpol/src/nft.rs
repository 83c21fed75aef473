//! Isolations as one nftables table, `inet skiff-netpol`, written as the `nft -f` script
//! that replaces it whole in one transaction.
//!
//! Layout: a filter chain on the forward hook (pod traffic, routed or bridged through
//! br_netfilter, after the Service DNAT, so policies see endpoint addresses as Kubernetes
//! requires) lets established and related packets pass, then looks the destination up in
//! `ingress` and the source in `egress`: verdict maps from an isolated pod's address to
//! its chain. A pod's chain returns for what its allows let through and drops the rest,
//! so a packet passes only if the sender's egress and the receiver's ingress both return.
//! Peers are one interval set per allow and family (pod addresses, and blocks less their
//! holes as ranges), so a packet costs a map and a set lookup, not a walk over rules.
//! Traffic from the node to its pods (probes) never crosses the forward hook.

use crate::model::{Allow, Isolation, Peers, PortRange, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

pub const TABLE: &str = "skiff-netpol";

/// Before the Service proxy's filter chains (priority filter, 0).
const PRIORITY: i32 = -5;

/// The script replacing the table with `pods` (an isolated pod's address and its
/// isolation); pods isolated in neither direction are left out.
pub fn ruleset(pods: &[(IpAddr, &Isolation)]) -> String {
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    let mut maps: BTreeMap<(&str, Family), Vec<String>> = BTreeMap::new();
    for (ip, iso) in pods {
        let fam = Family::of(*ip);
        for (dir, allows, far) in [("in", &iso.ingress, "saddr"), ("out", &iso.egress, "daddr")] {
            let Some(allows) = allows else { continue };
            let chain = format!("{dir}-{ip}");
            maps.entry((dir, fam))
                .or_default()
                .push(format!("{ip} : jump {chain}"));
            chain_of(&mut s, &chain, allows, far);
        }
    }
    for (dir, map) in [("in", "ingress"), ("out", "egress")] {
        for fam in [Family::V4, Family::V6] {
            let elements = maps.remove(&(dir, fam)).unwrap_or_default();
            let _ = writeln!(
                s,
                "  map {map}-{} {{ type {} : verdict ; {}}}",
                fam.name(),
                fam.addr_type(),
                elements_clause(&elements)
            );
        }
    }
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority {PRIORITY} ; policy accept ;\n    ct state established,related accept"
    );
    for (map, near) in [("ingress", "daddr"), ("egress", "saddr")] {
        for fam in [Family::V4, Family::V6] {
            let _ = writeln!(s, "    {} {near} vmap @{map}-{}", fam.proto(), fam.name());
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// The script removing the table (a clean stop, or the feature turned off).
pub fn cleanup() -> String {
    format!("table inet {TABLE}\ndelete table inet {TABLE}\n")
}

fn elements_clause(elements: &[String]) -> String {
    if elements.is_empty() {
        String::new()
    } else {
        format!("elements = {{ {} }} ; ", elements.join(", "))
    }
}

/// A pod's chain: a rule per allow, family and protocol that returns, then drop.
fn chain_of(s: &mut String, chain: &str, allows: &[Allow], far: &str) {
    let mut body = String::new();
    for (i, a) in allows.iter().enumerate() {
        let ports = port_matches(a.ports.as_deref());
        if ports.as_ref().is_some_and(|p| p.is_empty()) {
            continue;
        }
        let peers: Vec<(Family, Option<String>)> = match &a.peers {
            Peers::Any => vec![(Family::Any, None)],
            peers => [Family::V4, Family::V6]
                .into_iter()
                .filter_map(|fam| {
                    let elements = intervals(peers, fam);
                    if elements.is_empty() {
                        return None;
                    }
                    let set = format!("{chain}-{i}-{}", fam.name());
                    let _ = writeln!(
                        s,
                        "  set {set} {{ type {} ; flags interval ; elements = {{ {} }} ; }}",
                        fam.addr_type(),
                        elements.join(", ")
                    );
                    Some((fam, Some(format!("{} {far} @{set}", fam.proto()))))
                })
                .collect(),
        };
        for (_, peer) in peers {
            let peer = peer.map(|p| format!("{p} ")).unwrap_or_default();
            match &ports {
                None => {
                    let _ = writeln!(body, "    {peer}return");
                }
                Some(ports) => {
                    for p in ports {
                        let _ = writeln!(body, "    {peer}{p} return");
                    }
                }
            }
        }
    }
    let _ = writeln!(s, "  chain {chain} {{\n{body}    drop\n  }}");
}

/// `meta l4proto P th dport { … }` per protocol; `None` for every port; an empty list
/// when nothing can match.
fn port_matches(ports: Option<&[PortRange]>) -> Option<Vec<String>> {
    let ports = ports?;
    let mut by: BTreeMap<Protocol, BTreeSet<(u16, u16)>> = BTreeMap::new();
    for p in ports {
        by.entry(p.protocol).or_default().insert((p.first, p.last));
    }
    Some(
        by.into_iter()
            .map(|(proto, ranges)| {
                let name = match proto {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                };
                if ranges.contains(&(0, u16::MAX)) {
                    return format!("meta l4proto {name}");
                }
                let list: Vec<String> = ranges
                    .into_iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                format!("meta l4proto {name} th dport {{ {} }}", list.join(", "))
            })
            .collect(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
    Any,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
            Family::Any => "any",
        }
    }
    fn addr_type(self) -> &'static str {
        if self == Family::V6 {
            "ipv6_addr"
        } else {
            "ipv4_addr"
        }
    }
    fn proto(self) -> &'static str {
        if self == Family::V6 { "ip6" } else { "ip" }
    }
}

/// The peers of one family as set elements: each a single address or an `a-b` range,
/// disjoint and in order (nft refuses overlapping intervals).
fn intervals(peers: &Peers, fam: Family) -> Vec<String> {
    let Peers::Some { ips, blocks } = peers else {
        return Vec::new();
    };
    let mut ranges: Vec<(u128, u128)> = Vec::new();
    let v6 = fam == Family::V6;
    let num = |ip: IpAddr| match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    };
    for ip in ips.iter().filter(|ip| ip.is_ipv6() == v6) {
        ranges.push((num(*ip), num(*ip)));
    }
    for (net, holes) in blocks.iter().filter(|(n, _)| n.addr().is_ipv6() == v6) {
        let mut pieces = vec![(num(net.network()), num(net.broadcast()))];
        for h in holes {
            pieces = subtract(&pieces, (num(h.network()), num(h.broadcast())));
        }
        ranges.extend(pieces);
    }
    merge(ranges)
        .into_iter()
        .map(|(a, b)| {
            let addr = |n: u128| -> IpAddr {
                if v6 {
                    std::net::Ipv6Addr::from(n).into()
                } else {
                    std::net::Ipv4Addr::from(n as u32).into()
                }
            };
            if a == b {
                addr(a).to_string()
            } else {
                format!("{}-{}", addr(a), addr(b))
            }
        })
        .collect()
}

fn subtract(pieces: &[(u128, u128)], (h0, h1): (u128, u128)) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    for &(a, b) in pieces {
        if h1 < a || h0 > b {
            out.push((a, b));
            continue;
        }
        if h0 > a {
            out.push((a, h0 - 1));
        }
        if h1 < b {
            out.push((h1 + 1, b));
        }
    }
    out
}

fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort();
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests;
