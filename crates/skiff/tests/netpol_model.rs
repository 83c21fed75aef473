//! Upstream's NetworkPolicy e2e model (`skiff_netpol::upstream`, which `skiff-netpol`'s
//! `tests/model.rs` evaluates without a network) measured on real pods of the network
//! lab (root; containerd, CNI plugins, nftables, busybox-static, and rustc with glibc's
//! static libraries): namespaces x, y, z with pods a, b, c each, on one node, then on two
//! nodes with every namespace's pods spread over both. Each case's policies go in with
//! the real kubectl, its labels change with `kubectl label`, and after each stage the
//! 81-cell table of who reaches whom is measured on the wire for every protocol and port
//! the pods serve: TCP, UDP and SCTP on ports 80 and 81 (six tables a stage), and
//! compared with the model's.
//!
//! The pods run `tests/helpers/netpol_probe.rs` (built here with rustc, static): busybox
//! has no UDP client or server, and the lab kernel has no SCTP at all, so that prober
//! speaks SCTP on raw sockets (real SCTP packets, INIT and INIT ACK, which netfilter and
//! conntrack track as SCTP; see its doc comment). A measurement is one `kubectl exec` per
//! pod, all nine at once, each probing the nine pods on the six ports in parallel with a
//! short timeout, every UDP and SCTP probe from a source port no earlier probe used (one
//! that did could ride on a flow conntrack still holds from when it was allowed, which
//! passes as established whatever the policies now say); a stage is measured again until
//! it matches or 10 s have passed since its steps (rules land within a second). As
//! upstream (`ignoreLoopback`), a pod's traffic to itself is not compared: it never
//! leaves the pod, so no node sees it. Every mismatch is reported with both tables once
//! all cases have run. `SKIFF_NETPOL_CASES=text` runs only the cases whose name contains
//! `text`. Each test takes about two minutes, one to two seconds a case.

mod common;

use common::lab::{Agent, Lab};
use common::{Cluster, eventually, tail};
use serde_json::{Value, json};
use skiff_netpol::upstream::{self, Case, PROBES, Probe, Step, Table};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests take turns: each lab node runs a containerd, and the machine has two cores.
static LAB: Mutex<()> = Mutex::new(());

/// How long a probe waits for an answer.
const PROBE_MILLIS: u64 = 500;
/// How long a stage may take to be measured as expected.
const SETTLE: Duration = Duration::from_secs(10);
const IMAGE: &str = "docker.io/library/netpol-probe:latest";
/// The probes' source ports go from here, in turn, up to 60000 (hundreds of
/// measurements) before they start over.
const FIRST_PORT: u16 = 20_000;

#[test]
fn the_upstream_model_on_one_node() {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1);
    let c = lab.start_server(&[]);
    lab.wait_ready(&c);
    run_model(&lab, &c, &[]);
}

#[test]
fn the_upstream_model_on_two_nodes() {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(2);
    let c = lab.start_server(&[]);
    let b = lab.start_agent(&c, 1, &[]);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lab.wait_ready(&c))).is_err() {
        panic!(
            "nodes not Ready\nserver:\n{}\nagent 1:\n{}",
            tail(&c.log(), 60),
            b.log()
        );
    }
    run_model(&lab, &c, &[&b]);
}

/// The model's pods (pod `i` on node `i % nodes`), then every case in turn.
fn run_model(lab: &Lab, c: &Cluster, agents: &[&Agent]) {
    let nodes = 1 + agents.len();
    let archive = probe_image();
    let mut data_dirs = vec![c.data_dir()];
    data_dirs.extend(agents.iter().map(|a| a.data_dir()));
    for dir in &data_dirs {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["image", "import", "--data-dir"])
            .arg(dir)
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "image import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let started = Instant::now();
    let m = Model::create(lab, c, nodes);
    eprintln!(
        "{nodes} node(s): pods running in {:.1?}; addresses {:?}",
        started.elapsed(),
        m.ips
    );
    m.wait_open();
    let mut failures = Vec::new();
    // SKIFF_NETPOL_CASES=text: only the cases whose name contains it.
    let only = std::env::var("SKIFF_NETPOL_CASES").unwrap_or_default();
    let cases: Vec<Case> = upstream::cases()
        .into_iter()
        .filter(|c| c.name.contains(&only))
        .collect();
    for case in &cases {
        let t = Instant::now();
        let (failed, measurements) = m.run(case);
        eprintln!(
            "{} {:>7.1?} {measurements:>2} measurement(s)  {}",
            if failed.is_empty() { "ok  " } else { "FAIL" },
            t.elapsed(),
            case.name
        );
        failures.extend(failed);
        m.reset(case);
    }
    eprintln!(
        "{nodes} node(s): {} cases in {:.1?}",
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} mismatch(es) on {nodes} node(s); a pod's traffic to itself (the diagonal) is not \
         compared:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The prober built for the pods (once per source text) as an image archive.
fn probe_image() -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    let src =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/netpol_probe.rs");
    let text = std::fs::read(&src).unwrap();
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = dir.join(format!("netpol-probe-{:016x}", h.finish()));
    if !bin.exists() {
        // The toolchain's rustc, beside the cargo that built this test.
        let rustc = std::path::Path::new(env!("CARGO")).with_file_name("rustc");
        let rustc = if rustc.exists() {
            rustc
        } else {
            "rustc".into()
        };
        let partial = bin.with_extension("partial");
        let out = std::process::Command::new(rustc)
            .args("--edition 2024 -C opt-level=2 -C debuginfo=0 -C strip=symbols".split(' '))
            // Static: the image has no C library.
            .args(["-C", "target-feature=+crt-static", "-o"])
            .arg(&partial)
            .arg(&src)
            .output()
            .expect("run rustc");
        assert!(
            out.status.success(),
            "building {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &bin).unwrap();
        // Builds of earlier sources go.
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("netpol-probe-") && e.path() != bin {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut entries = skiff_cri::image::busybox_root("/bin/busybox".as_ref()).unwrap();
    entries.push(skiff_cri::image::Entry::File {
        path: "bin/netpol-probe".into(),
        mode: 0o755,
        data: std::fs::read(&bin).unwrap(),
    });
    let spec = skiff_cri::image::ImageSpec {
        name: IMAGE.into(),
        entries,
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let archive = dir.join("netpol-probe.tar");
    skiff_cri::image::write_oci_archive(&spec, &archive).unwrap();
    archive
}

/// The cluster of the model, running.
struct Model<'a> {
    lab: &'a Lab,
    c: &'a Cluster,
    nodes: usize,
    names: Vec<String>,
    /// Pod addresses, in table order.
    ips: Vec<IpAddr>,
    /// The first source port of the next measurement's UDP and SCTP probes: each probe
    /// has a port of its own, so that none is taken for a flow conntrack already knows.
    next_port: std::cell::Cell<u16>,
}

impl<'a> Model<'a> {
    /// Namespaces x, y, z and their pods, each answering on its ports, pinned to nodes.
    fn create(lab: &'a Lab, c: &'a Cluster, nodes: usize) -> Model<'a> {
        let mut items = Vec::new();
        for ns in upstream::NAMESPACES {
            items.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": upstream::namespace_labels(ns)}}));
        }
        let names = upstream::pod_names();
        for (i, name) in names.iter().enumerate() {
            let (ns, pod) = name.split_once('/').unwrap();
            let ports: Vec<Value> = upstream::PROTOCOLS
                .iter()
                .flat_map(|&p| {
                    upstream::PORTS.iter().map(move |&port| {
                        json!({"name": upstream::port_name(p, port), "containerPort": port,
                            "protocol": upstream::protocol_name(p).to_uppercase()})
                    })
                })
                .collect();
            items.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": ns, "labels": upstream::pod_labels(pod)},
                "spec": {"nodeName": lab.node_name(i % nodes), "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "serve", "image": IMAGE, "imagePullPolicy": "Never",
                        "command": ["/bin/netpol-probe", "serve", name], "ports": ports}]}}));
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        c.apply(&list.to_string());
        let ips = eventually(Duration::from_secs(90), || {
            names
                .iter()
                .map(|n| running_ip(c, n))
                .collect::<Option<Vec<_>>>()
        });
        Model {
            lab,
            c,
            nodes,
            names,
            ips,
            next_port: std::cell::Cell::new(FIRST_PORT),
        }
    }

    /// Waits until everything reaches everything (the servers are up, routes are in).
    fn wait_open(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.measure();
            let wrong: Vec<String> = PROBES
                .iter()
                .filter(|p| !got[*p].differences(&Table::open(), true).is_empty())
                .map(|p| format!("{p}:\n{}", got[p]))
                .collect();
            if wrong.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "without policies not everything reaches everything:\n{}",
                wrong.join("\n")
            );
        }
    }

    /// Runs `case`'s stages: a description of each mismatch, and how many measurements
    /// were taken.
    fn run(&self, case: &Case) -> (Vec<String>, usize) {
        let mut failures = Vec::new();
        let mut measurements = 0;
        for (n, stage) in case.stages.iter().enumerate() {
            let before = self.rulesets();
            let t0 = Instant::now();
            for step in &stage.steps {
                self.step(step);
            }
            // Most steps change some node's rules: measure once they have.
            while self.rulesets() == before && t0.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut tries = 0;
            let wrong = loop {
                tries += 1;
                let got = self.measure();
                let wrong: Vec<(Probe, Table)> = PROBES
                    .iter()
                    .filter(|p| !stage.expected(**p).differences(&got[*p], true).is_empty())
                    .map(|p| (*p, got[p]))
                    .collect();
                if wrong.is_empty() || t0.elapsed() > SETTLE {
                    break wrong;
                }
                let cells: Vec<String> = wrong
                    .iter()
                    .map(|(p, got)| {
                        let d = stage.expected(*p).differences(got, true);
                        let (i, j) = d[0];
                        let (from, to) = (&self.names[i], &self.names[j]);
                        format!("{p}: {} cell(s), {from} → {to} first", d.len())
                    })
                    .collect();
                eprintln!(
                    "     measurement {tries} of stage {} after {:.1?}: {}",
                    n + 1,
                    t0.elapsed(),
                    cells.join("; ")
                );
            };
            measurements += tries;
            for (p, got) in wrong {
                failures.push(format!(
                    "{} (stage {} of {}), {p}, after {tries} measurements in {:.1?}: expected\n{}measured\n{got}",
                    case.name,
                    n + 1,
                    case.stages.len(),
                    t0.elapsed(),
                    stage.expected(p),
                ));
            }
        }
        (failures, measurements)
    }

    fn step(&self, step: &Step) {
        match step {
            Step::Apply(p) => {
                let p = upstream::resolve(p, &|i| self.ips[i]);
                self.c.apply(&p.to_string());
            }
            Step::Delete { namespace, name } => {
                self.c
                    .ok(&["delete", "networkpolicy", "-n", namespace, name]);
            }
            Step::LabelPod { pod, key, value } => {
                let (ns, name) = pod.split_once('/').unwrap();
                self.c.ok(&[
                    "label",
                    "pod",
                    "-n",
                    ns,
                    name,
                    "--overwrite",
                    &label(key, *value),
                ]);
            }
            Step::LabelNamespace {
                namespace,
                key,
                value,
            } => {
                self.c.ok(&[
                    "label",
                    "namespace",
                    namespace,
                    "--overwrite",
                    &label(key, *value),
                ]);
            }
        }
    }

    /// Back to no policies and the labels the pods and namespaces were made with, once
    /// every node has taken its rules away.
    fn reset(&self, case: &Case) {
        self.c
            .ok(&["delete", "networkpolicies", "--all", "--all-namespaces"]);
        for step in case.stages.iter().flat_map(|s| &s.steps) {
            match step {
                Step::LabelPod { pod, key, .. } => {
                    let (ns, name) = pod.split_once('/').unwrap();
                    let base = upstream::pod_labels(name).get(*key).cloned();
                    self.c.ok(&[
                        "label",
                        "pod",
                        "-n",
                        ns,
                        name,
                        "--overwrite",
                        &label(key, base.as_deref()),
                    ]);
                }
                Step::LabelNamespace { namespace, key, .. } => {
                    let base = upstream::namespace_labels(namespace).get(*key).cloned();
                    self.c.ok(&[
                        "label",
                        "namespace",
                        namespace,
                        "--overwrite",
                        &label(key, base.as_deref()),
                    ]);
                }
                _ => {}
            }
        }
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(SETTLE, || {
                self.rulesets()
                    .iter()
                    .all(|r| !r.contains("chain in-") && !r.contains("chain out-"))
                    .then_some(())
            })
        }));
        assert!(
            found.is_ok(),
            "rules left after {}:\n{}",
            case.name,
            self.rulesets().join("\n")
        );
    }

    /// Each node's `inet skiff-netpol` table.
    fn rulesets(&self) -> Vec<String> {
        (0..self.nodes)
            .map(|i| {
                let out = self
                    .lab
                    .exec(i, "nft")
                    .args(["list", "table", "inet", "skiff-netpol"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect()
    }

    /// One measurement: every pod probes every pod on every protocol and port.
    fn measure(&self) -> BTreeMap<Probe, Table> {
        let targets: Vec<String> = self
            .ips
            .iter()
            .flat_map(|ip| {
                PROBES.iter().map(move |p| {
                    format!("{ip}:{}:{}", upstream::protocol_name(p.protocol), p.port)
                })
            })
            .collect();
        let first = self.next_port.get();
        let next = first + targets.len() as u16;
        self.next_port
            .set(if next > 60_000 { FIRST_PORT } else { next });
        let first = first.to_string();
        let children: Vec<_> = self
            .names
            .iter()
            .map(|name| {
                let (ns, pod) = name.split_once('/').unwrap();
                let mut args = vec!["exec", "-n", ns, pod, "--", "/bin/netpol-probe", "probe"];
                let millis = PROBE_MILLIS.to_string();
                args.extend([millis.as_str(), first.as_str()]);
                args.extend(targets.iter().map(String::as_str));
                self.c
                    .kubectl_cmd(&args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Every cell starts unreached; an answer from the right pod reaches it.
        let none = Table::open().expect_peer(("", ""), ("", ""), false);
        let mut tables: BTreeMap<Probe, Table> = PROBES.iter().map(|p| (*p, none)).collect();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                eprintln!(
                    "probe from {} failed: {}",
                    self.names[i],
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let [ip, proto, port, answer] = f[..] else {
                    continue;
                };
                let Some(j) = self.ips.iter().position(|a| a.to_string() == ip) else {
                    continue;
                };
                let probe = PROBES.iter().find(|p| {
                    upstream::protocol_name(p.protocol) == proto && p.port.to_string() == port
                });
                if let Some(p) = probe {
                    if answer != "-" && answer != self.names[j] {
                        eprintln!(
                            "{ip} answered {proto}/{port} as {answer}, not {}",
                            self.names[j]
                        );
                    }
                    tables
                        .get_mut(p)
                        .unwrap()
                        .set(i, j, answer == self.names[j]);
                }
            }
        }
        tables
    }
}

/// `key=value`, or `key-` to remove it.
fn label(key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{key}={v}"),
        None => format!("{key}-"),
    }
}

/// The address of pod `ns/name` once it is running.
fn running_ip(c: &Cluster, name: &str) -> Option<IpAddr> {
    let (ns, pod) = name.split_once('/').unwrap();
    let out = c.kubectl(&["get", "pod", "-n", ns, pod, "-o", "json"]);
    let p: Value = serde_json::from_slice(&out.stdout).ok()?;
    if p["status"]["phase"] != "Running" {
        return None;
    }
    p["status"]["podIP"].as_str()?.parse().ok()
}
