//! NetworkPolicy enforced by a real node (root; containerd, CNI plugins, nftables,
//! busybox-static): the guide's `network-policy.yaml` on one node of the network lab,
//! and a pod isolated before its first container starts. Every "denied" is first shown
//! allowed without the policy.

mod common;

use common::lab::{Lab, sh};
use common::node::wait_phase;
use common::{Cluster, eventually, manifest};
use std::sync::Mutex;
use std::time::Duration;

/// The tests take turns: each lab node runs a containerd, and the machine has two cores.
static LAB: Mutex<()> = Mutex::new(());

/// A sleeping busybox pod labelled `app: {app}` (a client to exec from).
fn client(c: &Cluster, name: &str, app: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    ));
}

/// The guide's backend: answers with its name on 8080, behind `backend-service`.
fn backend(c: &Cluster) {
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: backend\n  labels:\n    app: backend\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'mkdir -p /www && echo backend > /www/index.html && exec httpd -f -p 8080 -h /www']\n    ports:\n    - containerPort: 8080\n");
    c.ok(&[
        "apply",
        "-f",
        manifest("backend-service.yaml").to_str().unwrap(),
    ]);
}

/// Whether one HTTP GET from `pod` to `host:port` is answered by the backend.
fn reaches(c: &Cluster, pod: &str, host: &str, port: u16) -> bool {
    let (ok, out) = sh(
        c,
        pod,
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port}"),
    );
    ok && out.contains("backend")
}

/// Waits until `pod` reaching `host:port` is `want` (rules take a moment).
fn settles(c: &Cluster, pod: &str, host: &str, port: u16, want: bool) {
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(15), || {
            (reaches(c, pod, host, port) == want).then_some(())
        })
    }));
    assert!(
        found.is_ok(),
        "{pod} → {host}:{port} never became {}",
        if want { "reachable" } else { "unreachable" }
    );
}

fn pod_ip(c: &Cluster, pod: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

fn nft_table(lab: &Lab) -> String {
    let out = lab
        .exec(0, "nft")
        .args(["list", "table", "inet", "skiff-netpol"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_guides_network_policy_is_enforced() {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1);
    let c = lab.start_server(&[]);
    lab.wait_ready(&c);
    backend(&c);
    client(&c, "frontend", "frontend");
    client(&c, "other", "other");
    for p in ["backend", "frontend", "other"] {
        wait_phase(&c, p, "Running");
    }
    let ip = pod_ip(&c, "backend");
    // Without the policy, both reach the backend, by Service and by pod IP.
    for p in ["frontend", "other"] {
        settles(&c, p, "backend-service", 80, true);
        assert!(reaches(&c, p, &ip, 8080), "{p} → {ip}:8080");
    }
    let policy = manifest("network-policy.yaml");
    c.ok(&["apply", "-f", policy.to_str().unwrap()]);
    settles(&c, "other", "backend-service", 80, false);
    assert!(
        !reaches(&c, "other", &ip, 8080),
        "other → backend by pod IP"
    );
    assert!(
        reaches(&c, "frontend", "backend-service", 80),
        "frontend → Service"
    );
    assert!(reaches(&c, "frontend", &ip, 8080), "frontend → pod IP");
    assert!(
        nft_table(&lab).contains(&format!("in-{ip}")),
        "{}",
        nft_table(&lab)
    );
    // Deleted, both reach it again.
    c.ok(&["delete", "-f", policy.to_str().unwrap()]);
    settles(&c, "other", "backend-service", 80, true);
    assert!(reaches(&c, "other", &ip, 8080));
    assert!(reaches(&c, "frontend", "backend-service", 80));

    a_pod_is_isolated_before_its_containers_start(&c, &ip);

    // A clean stop takes the table with it.
    assert!(nft_table(&lab).contains("table inet skiff-netpol"));
    drop(c);
    let out = lab
        .exec(0, "nft")
        .args(["list", "table", "inet", "skiff-netpol"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "table left behind: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A pod that connects the moment its container starts: allowed without a policy,
/// refused from its first packet with an egress default deny in place.
fn a_pod_is_isolated_before_its_containers_start(c: &Cluster, backend_ip: &str) {
    let eager = |name: &str| {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: eager\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'if printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 2 {backend_ip} 8080 | grep -q backend; then echo REACHED; else echo REFUSED; fi']\n"
        ));
        wait_phase(c, name, "Succeeded");
        c.ok(&["logs", name])
    };
    assert!(eager("eager-open").contains("REACHED"), "without a policy");
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: eager-no-egress\nspec:\n  podSelector:\n    matchLabels:\n      app: eager\n  policyTypes: [Egress]\n");
    // The policy is in the API before the pod is: the node must have it in place
    // before the container's first packet.
    let out = eager("eager-denied");
    assert!(out.contains("REFUSED"), "{out}");
}

/// `--disable network-policy`: a table an earlier run left is removed, and a policy
/// that would deny is not enforced.
#[test]
fn disabled_enforcement_leaves_no_rules() {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1);
    let left = lab
        .exec(0, "nft")
        .args(["add table inet skiff-netpol"])
        .status()
        .unwrap();
    assert!(left.success());
    assert!(
        nft_table(&lab).contains("skiff-netpol"),
        "the leftover is there"
    );
    let c = lab.start_server(&["--disable", "network-policy"]);
    lab.wait_ready(&c);
    backend(&c);
    client(&c, "other", "other");
    wait_phase(&c, "backend", "Running");
    wait_phase(&c, "other", "Running");
    assert_eq!(nft_table(&lab), "", "the leftover table is gone");
    c.ok(&[
        "apply",
        "-f",
        manifest("network-policy.yaml").to_str().unwrap(),
    ]);
    settles(&c, "other", "backend-service", 80, true);
    std::thread::sleep(Duration::from_secs(2));
    assert!(reaches(&c, "other", "backend-service", 80), "not enforced");
    assert_eq!(nft_table(&lab), "");
}
