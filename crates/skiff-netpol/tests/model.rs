//! The upstream NetworkPolicy e2e model, evaluated without a network: namespaces x, y, z
//! with pods a, b, c each, every case checked as the 81-cell table of who reaches whom on
//! one port and protocol. A row is the sending pod, a column the receiving one; `.`
//! passes, `X` does not (traffic passes when the sender's egress and the receiver's
//! ingress both allow it).

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use skiff_netpol::{NamedPort, Namespace, Pod, Policies, Protocol, evaluate};
use std::collections::BTreeMap;
use std::net::IpAddr;

use Protocol::{Sctp, Tcp, Udp};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every pod serves 80 and 81 on TCP, UDP and SCTP, named as upstream names them.
fn cluster() -> (Vec<Pod>, Vec<Namespace>) {
    let mut pods = Vec::new();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        for (j, name) in PODS.iter().enumerate() {
            let mut ports = Vec::new();
            for (protocol, p) in [(Tcp, "tcp"), (Udp, "udp"), (Sctp, "sctp")] {
                for port in [80, 81] {
                    ports.push(NamedPort {
                        name: format!("serve-{port}-{p}"),
                        protocol,
                        port,
                    });
                }
            }
            pods.push(Pod {
                namespace: ns.to_string(),
                name: name.to_string(),
                labels: labels(&[("pod", name)]),
                ips: vec![format!("10.42.{i}.{}", j + 10).parse().unwrap()],
                ports,
                host_network: false,
            });
        }
    }
    let namespaces = NAMESPACES
        .iter()
        .map(|ns| Namespace {
            name: ns.to_string(),
            labels: labels(&[("ns", ns), ("kubernetes.io/metadata.name", ns)]),
        })
        .collect();
    (pods, namespaces)
}

fn policy(ns: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": ns}, "spec": spec}))
        .unwrap()
}

fn ip(p: &Pod) -> IpAddr {
    p.ips[0]
}

/// The 81-cell table for `protocol`/`port`, one line per sender.
fn table(policies: &[NetworkPolicy], protocol: Protocol, port: u16) -> String {
    let (pods, namespaces) = cluster();
    let compiled = Policies::new(policies);
    let iso: Vec<_> = pods
        .iter()
        .map(|p| evaluate(&compiled, p, &pods, &namespaces))
        .collect();
    let mut out = String::new();
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            let ok =
                iso[i].sends(ip(to), protocol, port) && iso[j].admits(ip(from), protocol, port);
            out.push(if ok { '.' } else { 'X' });
            if j % 3 == 2 && j < 8 {
                out.push(' ');
            }
        }
        out.push('\n');
    }
    out
}

fn grid(rows: &[&str]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

const ALL: &str = "... ... ...";

#[test]
fn no_policy_lets_everything_through() {
    assert_eq!(table(&[], Tcp, 80), grid(&[ALL; 9]));
}

#[test]
fn default_deny_ingress_isolates_one_namespace() {
    let deny = policy("x", json!({"podSelector": {}}));
    let want = grid(&["XXX ... ..."; 9]);
    assert_eq!(table(std::slice::from_ref(&deny), Tcp, 80), want);
    // A later, wider policy in the same namespace adds to it (union).
    let from_a = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[0] = ALL;
    assert_eq!(table(&[deny, from_a], Tcp, 80), grid(&rows));
}

#[test]
fn default_deny_egress_and_all() {
    let egress = policy("x", json!({"podSelector": {}, "policyTypes": ["Egress"]}));
    let mut rows = [ALL; 9];
    rows[..3].copy_from_slice(&["XXX XXX XXX"; 3]);
    assert_eq!(table(&[egress], Udp, 81), grid(&rows));
    let all = policy(
        "x",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    );
    let mut rows = ["XXX ... ..."; 9];
    rows[..3].copy_from_slice(&["XXX XXX XXX"; 3]);
    assert_eq!(table(&[all], Tcp, 80), grid(&rows));
}

#[test]
fn namespace_and_pod_selectors_and_or() {
    // Both in one peer: pods a of namespace y only.
    let and = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    );
    let mut rows = [ALL; 9];
    for (i, r) in rows.iter_mut().enumerate() {
        if i != 3 {
            *r = "X.. ... ...";
        }
    }
    assert_eq!(table(&[and], Tcp, 80), grid(&rows));
    // As two peers: every pod of y, and pod a of x (the policy's own namespace).
    let or = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    );
    let rows = [
        "... ... ...",
        "X.. ... ...",
        "X.. ... ...",
        ALL,
        ALL,
        ALL,
        "X.. ... ...",
        "X.. ... ...",
        "X.. ... ...",
    ];
    assert_eq!(table(&[or], Tcp, 80), grid(&rows));
}

#[test]
fn match_expressions_select_namespaces() {
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": "ns", "operator": "NotIn", "values": ["y"]}]}}]}]}),
    );
    let mut rows = [ALL; 9];
    rows[3..6].copy_from_slice(&["XXX ... ..."; 3]);
    assert_eq!(table(&[p], Tcp, 80), grid(&rows));
}

#[test]
fn ports_by_number_name_and_range_and_protocol() {
    let named = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    );
    assert_eq!(
        table(std::slice::from_ref(&named), Tcp, 81),
        grid(&[ALL; 9])
    );
    assert_eq!(
        table(std::slice::from_ref(&named), Tcp, 80),
        grid(&["XXX ... ..."; 9])
    );
    // The same number on another protocol is another port: SCTP is not TCP.
    assert_eq!(table(&[named], Sctp, 81), grid(&["XXX ... ..."; 9]));
    let range = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 80, "endPort": 81}]}]}),
    );
    assert_eq!(
        table(std::slice::from_ref(&range), Udp, 81),
        grid(&[ALL; 9])
    );
    assert_eq!(table(&[range], Tcp, 81), grid(&["XXX ... ..."; 9]));
    // A protocol with no port: every port of it.
    let sctp = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP"}]}]}),
    );
    assert_eq!(
        table(std::slice::from_ref(&sctp), Sctp, 80),
        grid(&[ALL; 9])
    );
    assert_eq!(table(&[sctp], Udp, 80), grid(&["XXX ... ..."; 9]));
}

#[test]
fn egress_named_ports_resolve_on_the_destination() {
    // x/a may only send to UDP 80 by name; the name is looked up on each receiver.
    let egress = json!([{"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}]);
    // With no policyTypes, egress rules make the policy isolate both ways: nothing
    // reaches x/a any more.
    let both = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "egress": egress}),
    );
    assert_eq!(table(&[both], Udp, 80), grid(&["X.. ... ..."; 9]));
    let p = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": egress}),
    );
    assert_eq!(table(std::slice::from_ref(&p), Udp, 80), grid(&[ALL; 9]));
    let mut rows = [ALL; 9];
    rows[0] = "XXX XXX XXX";
    assert_eq!(table(&[p], Udp, 81), grid(&rows));
}

#[test]
fn ip_blocks_with_holes() {
    // Everything in 10.42.0.0/16 but namespace y (10.42.1.0/24), except y/b itself.
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.42.0.0/16", "except": ["10.42.1.0/24"]}},
        {"ipBlock": {"cidr": "10.42.1.11/32"}}]}]}),
    );
    let mut rows = [ALL; 9];
    rows[3] = "XXX ... ...";
    rows[5] = "XXX ... ...";
    assert_eq!(table(&[p], Tcp, 80), grid(&rows));
}

#[test]
fn a_named_port_matches_nothing_on_an_ip_block() {
    let p = policy(
        "x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{
        "to": [{"ipBlock": {"cidr": "10.42.0.0/16"}}], "ports": [{"port": "serve-80-tcp"}]}]}),
    );
    let mut rows = [ALL; 9];
    rows[0] = "XXX XXX XXX";
    assert_eq!(table(&[p], Tcp, 80), grid(&rows));
}

#[test]
fn host_network_pods_are_not_selected() {
    let (mut pods, namespaces) = cluster();
    pods[0].host_network = true;
    let deny = [policy("x", json!({"podSelector": {}}))];
    let compiled = Policies::new(&deny);
    assert!(
        evaluate(&compiled, &pods[0], &pods, &namespaces)
            .ingress
            .is_none()
    );
    assert!(
        evaluate(&compiled, &pods[1], &pods, &namespaces)
            .ingress
            .is_some()
    );
}

/// Every policy of this file at once, rendered for every pod, is a ruleset the kernel
/// takes (`nft -c` checks it without applying it).
#[test]
fn the_rendered_table_is_accepted_by_nft() {
    let policies = [
        policy("x", json!({"podSelector": {}})),
        policy(
            "x",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}},
            {"ipBlock": {"cidr": "10.42.0.0/16", "except": ["10.42.1.0/24"]}}],
            "ports": [{"port": "serve-81-tcp"}, {"protocol": "UDP", "port": 80, "endPort": 81}, {"protocol": "SCTP"}]}]}),
        ),
        policy(
            "y",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"ports": [{"protocol": "UDP", "port": "serve-80-udp"}, {"port": 443}]},
            {"to": [{"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::/120"]}}]}]}),
        ),
        policy(
            "z",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
    ];
    let (pods, namespaces) = cluster();
    let compiled = Policies::new(&policies);
    let iso: Vec<_> = pods
        .iter()
        .map(|p| evaluate(&compiled, p, &pods, &namespaces))
        .collect();
    let table: Vec<_> = pods.iter().zip(&iso).map(|(p, i)| (ip(p), i)).collect();
    let script = skiff_netpol::nft::ruleset(&table);
    assert!(
        script.contains("chain out-10.42.1.10") && script.contains("fd00::100-"),
        "{script}"
    );
    let mut nft = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft (package nftables) is needed");
    use std::io::Write;
    nft.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft refused:\n{script}");
}

#[test]
fn unreadable_peers_allow_nothing() {
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}),
    );
    assert_eq!(table(&[p], Tcp, 80), grid(&["XXX ... ..."; 9]));
}
