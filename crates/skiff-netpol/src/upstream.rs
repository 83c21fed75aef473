//! Upstream Kubernetes' NetworkPolicy e2e model (`test/e2e/network/netpol`) as data, so
//! that the same cases are checked by pure evaluation (`tests/model.rs`) and on real pods
//! (`skiff`'s `tests/netpol_model.rs`).
//!
//! The cluster: namespaces x, y, z (labelled `ns: x` …; the API server adds
//! `kubernetes.io/metadata.name`), each with pods a, b, c (labelled `pod: a` …), every
//! pod serving ports 80 and 81 on TCP, UDP and SCTP, its container ports named as
//! upstream names them (`serve-80-tcp`, `serve-81-udp`, …).
//!
//! A [`Case`] is one upstream test (`It(...)`, by its name; the UDP and SCTP contexts'
//! cases prefixed `UDP: ` and `SCTP: ` where their policies differ from the TCP ones, and
//! skiff's own additions prefixed `skiff: `) as [`Stage`]s: [`Step`]s (policies applied
//! or deleted, labels changed) then the expected [`Table`] of who reaches whom for every
//! [`Probe`] (protocol and port) of [`PROBES`], written with upstream's `Reachability`
//! vocabulary (`expect`, `expect_peer`, `expect_all_ingress`, `expect_all_egress`).
//! Upstream states one protocol and port per check; the tables for the other probes
//! follow from the same policies. Every case runs on all nine pods (upstream now creates
//! only the pods a case names; the cells of the others are as the policies make them).
//!
//! A table's diagonal (a pod to itself) is what the policies say; on a real network that
//! traffic never leaves the pod, and upstream does not compare it (`ignoreLoopback`).
//! Policies that need pod addresses (ipBlocks) hold templates that [`resolve`] fills in.

use crate::model::{NamedPort, Namespace, Pod, Protocol};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use Protocol::{Sctp, Tcp, Udp};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
pub const PROTOCOLS: [Protocol; 3] = [Tcp, Udp, Sctp];

/// The pods in table order: `x/a`, `x/b`, …, `z/c`.
pub fn pod_names() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// The table index of pod `ns/pod`.
pub fn index(pod: &str) -> usize {
    let (ns, name) = pod.split_once('/').expect("a pod is named ns/pod");
    let i = NAMESPACES.iter().position(|n| *n == ns).expect("namespace");
    let j = PODS.iter().position(|p| *p == name).expect("pod");
    i * 3 + j
}

/// `tcp`, `udp` or `sctp`.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Tcp => "tcp",
        Udp => "udp",
        Sctp => "sctp",
    }
}

/// Upstream's name of a pod's container port: `serve-80-tcp`.
pub fn port_name(protocol: Protocol, port: u16) -> String {
    format!("serve-{port}-{}", protocol_name(protocol))
}

/// The labels a namespace is created with.
pub fn namespace_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ns".to_string(), ns.to_string())])
}

/// The labels a pod is created with.
pub fn pod_labels(pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("pod".to_string(), pod.to_string())])
}

/// The address pod `i` has in the model: 10.42.<namespace>.<10 + pod>.
pub fn model_address(i: usize) -> IpAddr {
    format!("10.42.{}.{}", i / 3, 10 + i % 3).parse().unwrap()
}

/// The model's pods (on [`model_address`]es) and namespaces, labelled as created (the
/// namespaces with `kubernetes.io/metadata.name` too, as the API server adds it).
pub fn cluster() -> (Vec<Pod>, Vec<Namespace>) {
    let mut pods = Vec::new();
    for (i, name) in pod_names().iter().enumerate() {
        let (ns, pod) = name.split_once('/').unwrap();
        let ports = PROTOCOLS
            .iter()
            .flat_map(|&protocol| {
                PORTS.iter().map(move |&port| NamedPort {
                    name: port_name(protocol, port),
                    protocol,
                    port,
                })
            })
            .collect();
        pods.push(Pod {
            namespace: ns.to_string(),
            name: pod.to_string(),
            labels: pod_labels(pod),
            ips: vec![model_address(i)],
            ports,
            host_network: false,
        });
    }
    let namespaces = NAMESPACES
        .iter()
        .map(|ns| {
            let mut labels = namespace_labels(ns);
            labels.insert("kubernetes.io/metadata.name".into(), ns.to_string());
            Namespace {
                name: ns.to_string(),
                labels,
            }
        })
        .collect();
    (pods, namespaces)
}

/// One protocol and port traffic is tried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = protocol_name(self.protocol).to_uppercase();
        write!(f, "{p}/{}", self.port)
    }
}

pub const TCP_80: Probe = Probe {
    protocol: Tcp,
    port: 80,
};
pub const TCP_81: Probe = Probe {
    protocol: Tcp,
    port: 81,
};
pub const UDP_80: Probe = Probe {
    protocol: Udp,
    port: 80,
};
pub const UDP_81: Probe = Probe {
    protocol: Udp,
    port: 81,
};
pub const SCTP_80: Probe = Probe {
    protocol: Sctp,
    port: 80,
};
pub const SCTP_81: Probe = Probe {
    protocol: Sctp,
    port: 81,
};

/// Every protocol and port the pods serve; each stage has a table for each.
pub const PROBES: [Probe; 6] = [TCP_80, TCP_81, UDP_80, UDP_81, SCTP_80, SCTP_81];

/// Who reaches whom: `cell(from, to)` for the 9 × 9 pods in [`pod_names`] order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Table {
    cells: [[bool; 9]; 9],
}

/// Pods matching a peer of upstream's `ExpectPeer`: namespace and pod name, `""` for any.
fn matches(peer: (&str, &str), i: usize) -> bool {
    (peer.0.is_empty() || peer.0 == NAMESPACES[i / 3])
        && (peer.1.is_empty() || peer.1 == PODS[i % 3])
}

impl Table {
    /// Everything reaches everything.
    pub fn open() -> Table {
        Table {
            cells: [[true; 9]; 9],
        }
    }

    pub fn cell(&self, from: usize, to: usize) -> bool {
        self.cells[from][to]
    }

    pub fn set(&mut self, from: usize, to: usize, ok: bool) {
        self.cells[from][to] = ok;
    }

    /// `from` (`ns/pod`) to `to`.
    pub fn expect(mut self, from: &str, to: &str, ok: bool) -> Table {
        self.set(index(from), index(to), ok);
        self
    }

    /// Every pod matching `from` to every pod matching `to`; a peer is (namespace, pod),
    /// `""` meaning any, as upstream's `Peer{Namespace, Pod}`.
    pub fn expect_peer(mut self, from: (&str, &str), to: (&str, &str), ok: bool) -> Table {
        for i in (0..9).filter(|&i| matches(from, i)) {
            for j in (0..9).filter(|&j| matches(to, j)) {
                self.cells[i][j] = ok;
            }
        }
        self
    }

    /// Everything to `to`.
    pub fn expect_all_ingress(self, to: &str, ok: bool) -> Table {
        let (ns, pod) = to.split_once('/').unwrap();
        self.expect_peer(("", ""), (ns, pod), ok)
    }

    /// `from` to everything.
    pub fn expect_all_egress(self, from: &str, ok: bool) -> Table {
        let (ns, pod) = from.split_once('/').unwrap();
        self.expect_peer((ns, pod), ("", ""), ok)
    }

    /// The cells where the two differ, as (from, to); the diagonal left out with
    /// `ignore_loopback`.
    pub fn differences(&self, other: &Table, ignore_loopback: bool) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for i in 0..9 {
            for j in 0..9 {
                if (i != j || !ignore_loopback) && self.cells[i][j] != other.cells[i][j] {
                    out.push((i, j));
                }
            }
        }
        out
    }
}

/// A row per sender, a column per receiver; `.` passes, `X` does not.
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "      x   y   z")?;
        writeln!(f, "      abc abc abc")?;
        for (i, name) in pod_names().iter().enumerate() {
            write!(f, "{name}  ")?;
            for j in 0..9 {
                if j % 3 == 0 {
                    f.write_str(" ")?;
                }
                f.write_str(if self.cells[i][j] { "." } else { "X" })?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{self}")
    }
}

/// A change to the cluster.
#[derive(Debug, Clone)]
pub enum Step {
    /// Create the NetworkPolicy (a whole object, which may hold address templates to
    /// [`resolve`]), or replace the one of its namespace and name.
    Apply(Value),
    Delete {
        namespace: &'static str,
        name: &'static str,
    },
    /// Set (`Some`) or remove (`None`) a label of pod `pod` (`ns/pod`).
    LabelPod {
        pod: &'static str,
        key: &'static str,
        value: Option<&'static str>,
    },
    /// Set (`Some`) or remove (`None`) a label of a namespace.
    LabelNamespace {
        namespace: &'static str,
        key: &'static str,
        value: Option<&'static str>,
    },
}

/// Steps, then what every probe should find.
#[derive(Debug, Clone)]
pub struct Stage {
    pub steps: Vec<Step>,
    expect: BTreeMap<Probe, Table>,
}

impl Stage {
    /// `steps`, after which `table` holds for every probe (until [`Stage::on`] says
    /// otherwise for some).
    fn new(steps: Vec<Step>, table: Table) -> Stage {
        Stage {
            steps,
            expect: PROBES.iter().map(|p| (*p, table)).collect(),
        }
    }

    /// `table` for `probes`.
    fn on(mut self, probes: &[Probe], table: Table) -> Stage {
        for p in probes {
            self.expect.insert(*p, table);
        }
        self
    }

    /// The table expected for `probe`, one of [`PROBES`].
    pub fn expected(&self, probe: Probe) -> &Table {
        &self.expect[&probe]
    }
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub stages: Vec<Stage>,
}

/// `policy` with its address templates filled in: a string `{ns/pod}/N` becomes the
/// `/N` network holding that pod's address (`address` of its [`index`]).
pub fn resolve(policy: &Value, address: &dyn Fn(usize) -> IpAddr) -> Value {
    match policy {
        Value::String(s) => {
            let Some((pod, prefix)) = s
                .strip_prefix('{')
                .and_then(|s| s.split_once("}/"))
                .and_then(|(pod, n)| Some((pod, n.parse::<u8>().ok()?)))
            else {
                return policy.clone();
            };
            let net = ipnet::IpNet::new(address(index(pod)), prefix).expect("prefix");
            Value::String(net.trunc().to_string())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(v, address)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), resolve(v, address)))
                .collect(),
        ),
        v => v.clone(),
    }
}

fn policy(namespace: &str, name: &str, spec: Value) -> Step {
    Step::Apply(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
}

fn case(name: &'static str, stages: Vec<Stage>) -> Case {
    Case { name, stages }
}

fn stage(steps: Vec<Step>, table: Table) -> Stage {
    Stage::new(steps, table)
}

fn open() -> Table {
    Table::open()
}

const TCP: [Probe; 2] = [TCP_80, TCP_81];
const UDP: [Probe; 2] = [UDP_80, UDP_81];
const SCTP: [Probe; 2] = [SCTP_80, SCTP_81];
const NOT_TCP: [Probe; 4] = [UDP_80, UDP_81, SCTP_80, SCTP_81];

/// The cases, in upstream's order, then skiff's.
pub fn cases() -> Vec<Case> {
    let deny_x = || open().expect_peer(("", ""), ("x", ""), false);
    let deny_to_xa = || open().expect_all_ingress("x/a", false);
    let only_y_to_xa = || {
        open()
            .expect_peer(("x", ""), ("x", "a"), false)
            .expect_peer(("z", ""), ("x", "a"), false)
    };
    let mut cases = vec![
        case(
            "no policy: everything reaches everything",
            vec![stage(vec![], open())],
        ),
        case(
            "should support a 'default-deny-ingress' policy",
            vec![stage(
                vec![policy(
                    "x",
                    "deny-ingress",
                    json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                )],
                deny_x(),
            )],
        ),
        case(
            "should support a 'default-deny-all' policy",
            vec![stage(
                vec![policy(
                    "x",
                    "deny-all",
                    json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                )],
                deny_x().expect_peer(("x", ""), ("", ""), false),
            )],
        ),
        case(
            "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "x-a-allows-x-b",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
                )],
                deny_to_xa().expect("x/b", "x/a", true),
            )],
        ),
        case(
            "should enforce policy to allow ingress traffic for a target",
            vec![stage(
                vec![
                    policy(
                        "x",
                        "deny-all",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                    ),
                    policy(
                        "x",
                        "allow-all-to-a",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {}}]}]}),
                    ),
                ],
                deny_x().expect_all_ingress("x/a", true),
            )],
        ),
        case(
            "should enforce policy to allow ingress traffic from pods in all namespaces",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-from-another-ns",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {}}}]}]}),
                )],
                open(),
            )],
        ),
        case(
            "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-client-a-via-ns-selector",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
                )],
                only_y_to_xa(),
            )],
        ),
        case(
            "should enforce policy based on PodSelector with MatchExpressions",
            vec![stage(
                vec![policy(
                    "x",
                    "x-a-allows-x-b",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                            {"key": "pod", "operator": "In", "values": ["b"]}]}}]}]}),
                )],
                deny_to_xa().expect("x/b", "x/a", true),
            )],
        ),
        case(
            "should enforce policy based on NamespaceSelector with MatchExpressions",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-y-match-selector",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                            {"key": "ns", "operator": "In", "values": ["y"]}]}}]}]}),
                )],
                only_y_to_xa(),
            )],
        ),
        case(
            "should enforce policy based on PodSelector or NamespaceSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-y-match-selector",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [
                            {"namespaceSelector": {"matchExpressions": [
                                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]}},
                            {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
                )],
                open()
                    .expect("x/a", "x/a", false)
                    .expect("x/c", "x/a", false),
            )],
        ),
        case(
            "should enforce policy based on PodSelector and NamespaceSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-y-podselector-and-nsselector",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{
                            "namespaceSelector": {"matchExpressions": [
                                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]},
                            "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
                )],
                deny_to_xa()
                    .expect("y/b", "x/a", true)
                    .expect("z/b", "x/a", true),
            )],
        ),
        case(
            "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-y-z-pod-b-c",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{
                            "namespaceSelector": {"matchExpressions": [
                                {"key": "ns", "operator": "NotIn", "values": ["x"]}]},
                            "podSelector": {"matchExpressions": [
                                {"key": "pod", "operator": "In", "values": ["b", "c"]}]}}]}]}),
                )],
                open()
                    .expect_peer(("x", ""), ("x", "a"), false)
                    .expect("y/a", "x/a", false)
                    .expect("z/a", "x/a", false),
            )],
        ),
        case(
            "should enforce policy based on any PodSelectors",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-x-pod-b-c",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [
                            {"podSelector": {"matchLabels": {"pod": "b"}}},
                            {"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
                )],
                deny_to_xa()
                    .expect("x/b", "x/a", true)
                    .expect("x/c", "x/a", true),
            )],
        ),
        case(
            "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-y-pod-a-via-namespace-pod-selector",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                            "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                )],
                deny_to_xa().expect("y/a", "x/a", true),
            )],
        ),
        case(
            "should enforce policy based on Ports",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-ns-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                                "ports": [{"port": 81, "protocol": "TCP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[TCP_81], only_y_to_xa()),
            ],
        ),
        case(
            "should enforce multiple, stacked policies with overlapping podSelectors",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-ns-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                                "ports": [{"port": 81, "protocol": "TCP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[TCP_81], only_y_to_xa()),
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-ns-selector-80",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                                "ports": [{"port": 80, "protocol": "TCP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&TCP, only_y_to_xa()),
            ],
        ),
        case(
            "should support allow-all policy",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-all",
                    json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}),
                )],
                open(),
            )],
        ),
        case(
            "should allow ingress access on one named port",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-all",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"],
                            "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
                    )],
                    deny_x(),
                )
                .on(&[TCP_81], open()),
            ],
        ),
        case(
            "should allow ingress access from namespace on one named port",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-ns-selector-80",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                                "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[TCP_80], only_y_to_xa()),
            ],
        ),
        case(
            "should allow egress access on one named port",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-egress",
                        json!({"podSelector": {}, "policyTypes": ["Egress"],
                            "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
                    )],
                    open().expect_peer(("x", ""), ("", ""), false),
                )
                .on(&[TCP_80], open()),
            ],
        ),
        case(
            "should enforce updated policy",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-all-mutate-to-deny-all",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}),
                    )],
                    open(),
                ),
                stage(
                    vec![policy(
                        "x",
                        "allow-all-mutate-to-deny-all",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}),
                    )],
                    deny_x(),
                ),
            ],
        ),
        case(
            "should allow ingress access from updated namespace",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-ns-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}]}),
                    )],
                    deny_to_xa(),
                ),
                stage(
                    vec![Step::LabelNamespace {
                        namespace: "y",
                        key: "ns2",
                        value: Some("updated"),
                    }],
                    deny_to_xa().expect_peer(("y", ""), ("", ""), true),
                ),
            ],
        ),
        case(
            "should allow ingress access from updated pod",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-pod-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}]}),
                    )],
                    deny_to_xa(),
                ),
                stage(
                    vec![Step::LabelPod {
                        pod: "x/b",
                        key: "pod2",
                        value: Some("updated"),
                    }],
                    deny_to_xa().expect("x/b", "x/a", true),
                ),
            ],
        ),
        case(
            "should deny ingress from pods on other namespaces",
            vec![stage(
                vec![policy(
                    "x",
                    "deny-empty-policy",
                    json!({"podSelector": {}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {}}}]}]}),
                )],
                open()
                    .expect_peer(("y", ""), ("x", ""), false)
                    .expect_peer(("z", ""), ("x", ""), false),
            )],
        ),
        case(
            "should deny ingress access to updated pod",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "deny-ingress-via-label-selector",
                        json!({"podSelector": {"matchLabels": {"target": "isolated"}}, "policyTypes": ["Ingress"]}),
                    )],
                    open(),
                ),
                stage(
                    vec![Step::LabelPod {
                        pod: "x/a",
                        key: "target",
                        value: Some("isolated"),
                    }],
                    deny_to_xa(),
                ),
            ],
        ),
        case(
            "should deny egress from pods based on PodSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "deny-egress-pod-a",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]}),
                )],
                open().expect_all_egress("x/a", false),
            )],
        ),
        case(
            "should deny egress from all pods in a namespace",
            vec![stage(
                vec![policy(
                    "x",
                    "deny-egress-ns-x",
                    json!({"podSelector": {}, "policyTypes": ["Egress"]}),
                )],
                open().expect_peer(("x", ""), ("", ""), false),
            )],
        ),
        case(
            "should work with Ingress, Egress specified together",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-pod-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress", "Ingress"],
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                            "egress": [{"ports": [{"port": 80}]}]}),
                    )],
                    deny_to_xa()
                        .expect_all_egress("x/a", false)
                        .expect("x/b", "x/a", true),
                )
                .on(&[TCP_80], deny_to_xa().expect("x/b", "x/a", true)),
            ],
        ),
        case(
            "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
            vec![stage(
                vec![
                    policy(
                        "x",
                        "allow-to-ns-y-pod-a",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                                "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                    ),
                    policy(
                        "y",
                        "allow-from-xa-on-ya-match-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}},
                                "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                    ),
                    policy(
                        "y",
                        "allow-from-xa-on-yb-match-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}},
                                "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                    ),
                ],
                open()
                    .expect_peer(("x", "a"), ("", ""), false)
                    .expect_peer(("", ""), ("y", "a"), false)
                    .expect_peer(("x", "a"), ("y", "a"), true)
                    .expect_peer(("", ""), ("y", "b"), false),
            )],
        ),
        case(
            "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-to-ns-y-pod-a",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                            "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                )],
                open()
                    .expect_all_egress("x/a", false)
                    .expect("x/a", "y/a", true),
            )],
        ),
        case(
            "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-ingress-by-proto",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"ports": [{"protocol": "TCP"}]}]}),
                    )],
                    open(),
                )
                .on(&NOT_TCP, deny_to_xa()),
            ],
        ),
        case(
            "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-ingress-port-80",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"],
                            "ingress": [{"ports": [{"port": 80}]}]}),
                    )],
                    deny_x(),
                )
                .on(&[TCP_80], open()),
                stage(
                    vec![policy(
                        "x",
                        "allow-ingress",
                        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}),
                    )],
                    open(),
                ),
            ],
        ),
        case(
            "should enforce multiple egress policies with egress allow-all policy taking precedence",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-egress-port-80",
                        json!({"podSelector": {}, "policyTypes": ["Egress"],
                            "egress": [{"ports": [{"port": 80}]}]}),
                    )],
                    open().expect_peer(("x", ""), ("", ""), false),
                )
                .on(&[TCP_80], open()),
                stage(
                    vec![policy(
                        "x",
                        "allow-egress",
                        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}),
                    )],
                    open(),
                ),
            ],
        ),
        case(
            "should stop enforcing policies after they are deleted",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "deny-all",
                        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                    )],
                    deny_x().expect_peer(("x", ""), ("", ""), false),
                ),
                stage(
                    vec![Step::Delete {
                        namespace: "x",
                        name: "deny-all",
                    }],
                    open(),
                ),
            ],
        ),
        case(
            "should allow egress access to server in CIDR block",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-client-a-via-cidr-egress-rule",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "{y/b}/32"}}]}]}),
                )],
                open()
                    .expect_all_egress("x/a", false)
                    .expect("x/a", "y/b", true),
            )],
        ),
        case(
            "should enforce except clause while egress access to server in CIDR block",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-client-a-via-cidr-egress-rule",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "{x/b}/4", "except": ["{x/b}/32"]}}]}]}),
                )],
                open().expect("x/a", "x/b", false),
            )],
        ),
        case(
            "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-cidr-egress-rule",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{"ipBlock": {"cidr": "{x/b}/4", "except": ["{x/b}/32"]}}]}]}),
                    )],
                    open().expect("x/a", "x/b", false),
                ),
                stage(
                    vec![policy(
                        "x",
                        "allow-client-a-via-cidr-egress-rule",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{"ipBlock": {"cidr": "{x/b}/32"}}]}]}),
                    )],
                    open()
                        .expect_all_egress("x/a", false)
                        .expect("x/a", "x/b", true),
                ),
            ],
        ),
        case(
            "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-egress-for-target",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{}]}),
                    )],
                    open(),
                ),
                stage(
                    vec![policy(
                        "x",
                        "deny-ingress-via-label-selector",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}),
                    )],
                    deny_to_xa(),
                ),
            ],
        ),
        case(
            "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
            vec![
                stage(
                    vec![
                        policy(
                            "x",
                            "deny-ingress",
                            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                        ),
                        policy(
                            "x",
                            "allow-only-sctp-ingress-on-port-81",
                            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                                "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}]}),
                        ),
                    ],
                    deny_x(),
                )
                .on(&[SCTP_81], deny_x().expect_all_ingress("x/a", true)),
            ],
        ),
        case(
            "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-only-sctp-ingress-on-port-80",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[SCTP_80], open()),
            ],
        ),
        case(
            "should not allow access by TCP when a policy specifies only UDP",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-only-udp-ingress-on-port-81",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[UDP_81], open()),
            ],
        ),
        case(
            "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-client-a-via-ns-selector-for-immutable-ns-label",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}),
                )],
                only_y_to_xa(),
            )],
        ),
        case(
            "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
            vec![stage(
                vec![policy(
                    "x",
                    "allow-ns-y-match-selector-for-immutable-ns-label",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [
                            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["y"]}]}}]}]}),
                )],
                open().expect_peer(("x", "a"), ("y", ""), false),
            )],
        ),
        // The UDP and SCTP contexts: their other cases have the TCP cases' policies.
        case(
            "UDP: should enforce policy based on Ports",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-ingress-on-port-81-ns-x",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                                "ports": [{"port": 81, "protocol": "UDP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[UDP_81], only_y_to_xa()),
            ],
        ),
        case(
            "SCTP: should enforce policy based on Ports",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "allow-ingress-on-port-81-ns-x",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                                "ports": [{"port": 81, "protocol": "SCTP"}]}]}),
                    )],
                    deny_to_xa(),
                )
                .on(&[SCTP_81], only_y_to_xa()),
            ],
        ),
    ];
    cases.extend(skiff_cases());
    cases
}

/// Cases of skiff's own, on the same cluster.
fn skiff_cases() -> Vec<Case> {
    let deny_x = || open().expect_peer(("", ""), ("x", ""), false);
    vec![
        case(
            "skiff: a later, wider policy adds to a default deny (the union of both)",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "deny",
                        json!({"podSelector": {}}),
                    )],
                    deny_x(),
                ),
                stage(
                    vec![policy(
                        "x",
                        "from-a",
                        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                    )],
                    deny_x().expect_peer(("x", "a"), ("x", ""), true),
                ),
            ],
        ),
        case(
            "skiff: a namespaceSelector peer or a podSelector peer of the policy's own namespace",
            vec![stage(
                vec![policy(
                    "x",
                    "or",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                        {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                        {"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                )],
                open()
                    .expect_all_ingress("x/a", false)
                    .expect_peer(("y", ""), ("x", "a"), true)
                    .expect("x/a", "x/a", true),
            )],
        ),
        case(
            "skiff: a namespaceSelector with NotIn",
            vec![stage(
                vec![policy(
                    "x",
                    "not-y",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "ns", "operator": "NotIn", "values": ["y"]}]}}]}]}),
                )],
                open().expect_peer(("y", ""), ("x", ""), false),
            )],
        ),
        case(
            "skiff: a port range (endPort) of one protocol",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "udp-80-81",
                        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 80, "endPort": 81}]}]}),
                    )],
                    deny_x(),
                )
                .on(&UDP, open()),
            ],
        ),
        case(
            "skiff: a protocol with no port allows every port of it",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "sctp",
                        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP"}]}]}),
                    )],
                    deny_x(),
                )
                .on(&SCTP, open()),
            ],
        ),
        case(
            "skiff: egress rules alone isolate both ways; an egress named port is resolved on each receiver",
            vec![
                stage(
                    vec![policy(
                        "x",
                        "udp-80-out",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}},
                            "egress": [{"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}]}),
                    )],
                    open()
                        .expect_all_ingress("x/a", false)
                        .expect_all_egress("x/a", false),
                )
                .on(&[UDP_80], open().expect_all_ingress("x/a", false)),
                stage(
                    vec![policy(
                        "x",
                        "udp-80-out",
                        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                            "egress": [{"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}]}),
                    )],
                    open().expect_all_egress("x/a", false),
                )
                .on(&[UDP_80], open()),
            ],
        ),
        case(
            "skiff: a named port matches nothing on an ipBlock peer",
            vec![stage(
                vec![policy(
                    "x",
                    "named-to-block",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "{x/a}/16"}}], "ports": [{"port": "serve-80-tcp"}]}]}),
                )],
                open().expect_all_egress("x/a", false),
            )],
        ),
        case(
            "skiff: ipBlocks with holes, a hole's address allowed by another peer",
            vec![stage(
                vec![policy(
                    "x",
                    "blocks",
                    json!({"podSelector": {}, "ingress": [{"from": [
                        {"ipBlock": {"cidr": "{x/a}/16", "except": ["{y/a}/32", "{y/b}/32", "{y/c}/32"]}},
                        {"ipBlock": {"cidr": "{y/b}/32"}}]}]}),
                )],
                deny_x()
                    .expect_peer(("x", ""), ("x", ""), true)
                    .expect_peer(("z", ""), ("x", ""), true)
                    .expect_peer(("y", "b"), ("x", ""), true),
            )],
        ),
    ]
}
