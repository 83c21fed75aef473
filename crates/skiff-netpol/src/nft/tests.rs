use super::*;
use crate::model::{Allow, Isolation, Peers, PortRange, Protocol};
use std::collections::BTreeSet;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(first: u16, last: u16) -> PortRange {
    PortRange {
        protocol: Protocol::Tcp,
        first,
        last,
    }
}

#[test]
fn an_isolated_pod_gets_a_chain_its_peers_a_set() {
    let iso = Isolation {
        ingress: Some(vec![
            Allow {
                peers: Peers::Some {
                    ips: BTreeSet::from([ip("10.42.0.7"), ip("10.42.0.8"), ip("10.42.1.3")]),
                    blocks: vec![(
                        "192.168.0.0/16".parse().unwrap(),
                        vec!["192.168.1.0/24".parse().unwrap()],
                    )],
                },
                ports: Some(vec![
                    tcp(80, 80),
                    tcp(8000, 8080),
                    PortRange {
                        protocol: Protocol::Udp,
                        first: 53,
                        last: 53,
                    },
                ]),
            },
            // Matches nothing: left out.
            Allow {
                peers: Peers::Any,
                ports: Some(vec![]),
            },
        ]),
        egress: Some(vec![Allow {
            peers: Peers::Any,
            ports: None,
        }]),
    };
    let got = ruleset(&[(ip("10.42.0.5"), &iso)]);
    let want = "\
table inet skiff-netpol
delete table inet skiff-netpol
table inet skiff-netpol {
  set in-10.42.0.5-0-v4 { type ipv4_addr ; flags interval ; elements = { 10.42.0.7-10.42.0.8, 10.42.1.3, 192.168.0.0-192.168.0.255, 192.168.2.0-192.168.255.255 } ; }
  chain in-10.42.0.5 {
    ip saddr @in-10.42.0.5-0-v4 meta l4proto tcp th dport { 80, 8000-8080 } return
    ip saddr @in-10.42.0.5-0-v4 meta l4proto udp th dport { 53 } return
    drop
  }
  chain out-10.42.0.5 {
    return
    drop
  }
  map ingress-v4 { type ipv4_addr : verdict ; elements = { 10.42.0.5 : jump in-10.42.0.5 } ; }
  map ingress-v6 { type ipv6_addr : verdict ; }
  map egress-v4 { type ipv4_addr : verdict ; elements = { 10.42.0.5 : jump out-10.42.0.5 } ; }
  map egress-v6 { type ipv6_addr : verdict ; }
  chain forward {
    type filter hook forward priority -5 ; policy accept ;
    ct state established,related accept
    ip daddr vmap @ingress-v4
    ip6 daddr vmap @ingress-v6
    ip saddr vmap @egress-v4
    ip6 saddr vmap @egress-v6
  }
}
";
    assert_eq!(got, want);
}

#[test]
fn a_pod_isolated_with_no_allows_drops_everything() {
    let iso = Isolation {
        ingress: Some(vec![]),
        egress: None,
    };
    let got = ruleset(&[(ip("10.42.0.9"), &iso)]);
    assert!(
        got.contains("  chain in-10.42.0.9 {\n    drop\n  }\n"),
        "{got}"
    );
    assert!(!got.contains("out-10.42.0.9"), "{got}");
    // Not isolated either way: not in the table at all.
    let open = ruleset(&[(ip("10.42.0.9"), &Isolation::default())]);
    assert!(!open.contains("10.42.0.9"), "{open}");
}

#[test]
fn blocks_less_holes_are_disjoint_ranges() {
    let peers = Peers::Some {
        ips: BTreeSet::from([ip("10.0.0.1"), ip("10.0.3.0")]),
        blocks: vec![(
            "10.0.0.0/22".parse().unwrap(),
            vec![
                "10.0.1.0/24".parse().unwrap(),
                "10.0.3.0/25".parse().unwrap(),
                "10.0.0.0/30".parse().unwrap(),
            ],
        )],
    };
    // 10.0.0.1 is both a pod and in a hole: the pod address is still allowed.
    assert_eq!(
        intervals(&peers, Family::V4),
        [
            "10.0.0.1",
            "10.0.0.4-10.0.0.255",
            "10.0.2.0-10.0.3.0",
            "10.0.3.128-10.0.3.255"
        ]
    );
    assert!(intervals(&peers, Family::V6).is_empty());
    let v6 = Peers::Some {
        ips: BTreeSet::from([ip("fd00::1")]),
        blocks: vec![],
    };
    assert_eq!(intervals(&v6, Family::V6), ["fd00::1"]);
}

#[test]
fn every_port_of_a_protocol_needs_no_port_match() {
    let all_udp = PortRange {
        protocol: Protocol::Udp,
        first: 0,
        last: u16::MAX,
    };
    assert_eq!(
        port_matches(Some(&[all_udp, tcp(1, 1)])).unwrap(),
        ["meta l4proto tcp th dport { 1 }", "meta l4proto udp"]
    );
    assert_eq!(port_matches(None), None);
}

#[test]
fn cleanup_removes_the_table() {
    assert_eq!(
        cleanup(),
        "table inet skiff-netpol\ndelete table inet skiff-netpol\n"
    );
}
