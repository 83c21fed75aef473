//! The upstream NetworkPolicy e2e model (`skiff_netpol::upstream`), evaluated without a
//! network: every case's every stage, the full 81-cell table of who reaches whom for
//! every protocol and port the pods serve, the diagonal included (traffic passes when
//! the sender's egress and the receiver's ingress both allow it). `skiff`'s
//! `tests/netpol_model.rs` measures the same cases on real pods.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use skiff_netpol::upstream::{self, PROBES, Probe, Step, TCP_80, Table};
use skiff_netpol::{Namespace, Pod, Policies, evaluate};
use std::collections::BTreeMap;

/// The table `policies` make for `probe` among `pods`.
fn table(
    policies: &[NetworkPolicy],
    pods: &[Pod],
    namespaces: &[Namespace],
    probe: Probe,
) -> Table {
    let compiled = Policies::new(policies);
    let iso: Vec<_> = pods
        .iter()
        .map(|p| evaluate(&compiled, p, pods, namespaces))
        .collect();
    let mut t = Table::open();
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            let ok = iso[i].sends(to.ips[0], probe.protocol, probe.port)
                && iso[j].admits(from.ips[0], probe.protocol, probe.port);
            t.set(i, j, ok);
        }
    }
    t
}

fn set_label(labels: &mut BTreeMap<String, String>, key: &str, value: Option<&str>) {
    match value {
        Some(v) => labels.insert(key.to_string(), v.to_string()),
        None => labels.remove(key),
    };
}

#[test]
fn every_upstream_case_gives_its_tables() {
    let cases = upstream::cases();
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        assert!(names.insert(case.name), "two cases named {:?}", case.name);
        assert!(!case.stages.is_empty(), "{}", case.name);
        let (mut pods, mut namespaces) = upstream::cluster();
        let mut policies: BTreeMap<(String, String), NetworkPolicy> = BTreeMap::new();
        for (n, stage) in case.stages.iter().enumerate() {
            for step in &stage.steps {
                match step {
                    Step::Apply(p) => {
                        let p: NetworkPolicy =
                            serde_json::from_value(upstream::resolve(p, &upstream::model_address))
                                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                        let key = (
                            p.metadata.namespace.clone().unwrap(),
                            p.metadata.name.clone().unwrap(),
                        );
                        policies.insert(key, p);
                    }
                    Step::Delete { namespace, name } => {
                        let gone = policies.remove(&(namespace.to_string(), name.to_string()));
                        assert!(
                            gone.is_some(),
                            "{}: no policy {namespace}/{name}",
                            case.name
                        );
                    }
                    Step::LabelPod { pod, key, value } => {
                        let p = &mut pods[upstream::index(pod)];
                        set_label(&mut p.labels, key, *value);
                    }
                    Step::LabelNamespace {
                        namespace,
                        key,
                        value,
                    } => {
                        let ns = namespaces.iter_mut().find(|n| n.name == *namespace);
                        set_label(&mut ns.unwrap().labels, key, *value);
                    }
                }
            }
            let current: Vec<NetworkPolicy> = policies.values().cloned().collect();
            for probe in PROBES {
                let want = stage.expected(probe);
                let got = table(&current, &pods, &namespaces, probe);
                checked += 1;
                if &got != want {
                    failures.push(format!(
                        "{} (stage {}), {probe}: expected\n{want}evaluated\n{got}",
                        case.name,
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        cases.len() >= 50 && checked >= 6 * 60,
        "{} cases",
        cases.len()
    );
}

#[test]
fn address_templates_are_filled_in() {
    let p = json!({"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "{x/b}/4", "except": ["{y/c}/32", "{z/a}/24"]}}]}]}});
    let r = upstream::resolve(&p, &upstream::model_address);
    assert_eq!(
        r["spec"]["egress"][0]["to"][0]["ipBlock"],
        json!({"cidr": "0.0.0.0/4", "except": ["10.42.1.12/32", "10.42.2.0/24"]})
    );
}

#[test]
fn tables_print_a_row_per_sender() {
    let t = Table::open()
        .expect_all_ingress("x/a", false)
        .expect("y/b", "x/a", true);
    let s = t.to_string();
    let rows: Vec<&str> = s.lines().collect();
    assert_eq!(rows[2], "x/a   X.. ... ...");
    assert_eq!(rows[6], "y/b   ... ... ...");
    assert_eq!(rows[7], "y/c   X.. ... ...");
    assert_eq!(t.differences(&Table::open(), true).len(), 7);
    assert_eq!(t.differences(&Table::open(), false).len(), 8);
}

#[test]
fn host_network_pods_are_not_selected() {
    let (mut pods, namespaces) = upstream::cluster();
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

fn policy(ns: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": ns}, "spec": spec}))
        .unwrap()
}

/// Every kind of rule the model's cases use at once, rendered for every pod, is a
/// ruleset the kernel takes (`nft -c` checks it without applying it).
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
    let (pods, namespaces) = upstream::cluster();
    let compiled = Policies::new(&policies);
    let iso: Vec<_> = pods
        .iter()
        .map(|p| evaluate(&compiled, p, &pods, &namespaces))
        .collect();
    let table: Vec<_> = pods.iter().zip(&iso).map(|(p, i)| (p.ips[0], i)).collect();
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

/// A peer the API would have refused (so no real cluster can hold it) allows nothing.
#[test]
fn unreadable_peers_allow_nothing() {
    let p = policy(
        "x",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}),
    );
    let (pods, namespaces) = upstream::cluster();
    assert_eq!(
        table(&[p], &pods, &namespaces, TCP_80),
        Table::open().expect_peer(("", ""), ("x", ""), false)
    );
}
