//! The cluster network end to end, on real nodes of the network lab (root; containerd,
//! CNI plugins, nftables, busybox-static, which scripts/deps.sh installs): two nodes,
//! each in its own network namespace with its own containerd, joined to one server;
//! pods reach each other by pod IP, by Service and by DNS name, driven by the real
//! kubectl. Only addresses inside the lab's namespaces are ever dialled.

mod common;

use common::lab::{Lab, sh};
use common::node::wait_phase;
use common::{Cluster, eventually, tail};
use std::time::Duration;

/// A busybox pod pinned to `node` that sleeps (a client to exec from).
fn client_pod(c: &Cluster, name: &str, node: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: client\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    ));
}

/// A web pod pinned to `node` answering with its own name on `port`.
fn web_pod(c: &Cluster, name: &str, node: &str, labels: &str, port: u16) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -v -p {port} -h /www']\n    ports:\n    - containerPort: {port}\n"
    ));
}

/// One HTTP GET from inside `pod` (busybox nc: its wget crashes), the body's last line.
fn get(c: &Cluster, pod: &str, host: &str, port: u16) -> (bool, String) {
    sh(
        c,
        pod,
        &format!("printf 'GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 3 {host} {port}"),
    )
}

fn pod_ip(c: &Cluster, pod: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

#[test]
fn two_nodes_share_one_pod_network() {
    let lab = Lab::new(2);
    let c = lab.start_server(&[]);
    let b = lab.start_agent(&c, 1, &[]);
    let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lab.wait_ready(&c)));
    if ready.is_err() {
        panic!(
            "nodes not Ready\nserver:\n{}\nagent b:\n{}",
            tail(&c.log(), 60),
            b.log()
        );
    }
    let (n0, n1) = (lab.node_name(0), lab.node_name(1));
    // Each node routes the other's pod CIDR via its address (host-gw).
    let cidr1 = c.ok(&["get", "node", &n1, "-o", "jsonpath={.spec.podCIDR}"]);
    let routes = lab
        .exec(0, "ip")
        .args(["route", "show", &cidr1])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    assert!(routes.contains(&format!("via {}", lab.ip(1))), "{routes}");

    web_pod(&c, "web-b", &n1, "{app: web}", 8080);
    client_pod(&c, "client-a", &n0);
    wait_phase(&c, "web-b", "Running");
    wait_phase(&c, "client-a", "Running");
    let ip_b = pod_ip(&c, "web-b");
    let (ok, out) = get(&c, "client-a", &ip_b, 8080);
    assert!(ok && out.contains("web-b"), "pod A → pod B by IP: {out}");
    // Not NATed: web-b's httpd (-v logs each client) saw client-a's own address.
    let ip_a = pod_ip(&c, "client-a");
    let logs = c.ok(&["logs", "web-b"]);
    assert!(
        logs.contains(&ip_a),
        "client {ip_a} not in web-b's log:\n{logs}"
    );

    // Each node answers cluster DNS itself, on its bridge's gateway address, and says so
    // as its own endpoint of kube-dns.
    let dns = eventually(Duration::from_secs(30), || {
        let out = c.ok(&[
            "get", "endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns",
            "-o", "jsonpath={range .items[*]}{.endpoints[0].nodeName}={.endpoints[0].addresses[0]}{\"\\n\"}{end}",
        ]);
        (out.lines().count() == 2).then_some(out)
    });
    let cidr0 = c.ok(&["get", "node", &n0, "-o", "jsonpath={.spec.podCIDR}"]);
    let gateway0 = format!("{}1", cidr0.trim_end_matches("0/24"));
    assert!(dns.contains(&format!("{n0}={gateway0}")), "{dns}");
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web-svc\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n");
    let cluster_ip = c.ok(&["get", "svc", "web-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    let (ok, out) = sh(
        &c,
        "client-a",
        &format!("nslookup web-svc.default.svc.cluster.local {gateway0}"),
    );
    assert!(ok && out.contains(&cluster_ip), "{out}");
    // Through the pod's own resolv.conf (kube-dns, 10.43.0.10) and the Service's
    // ClusterIP, by short name, to the pod on the other node.
    let (ok, out) = get(&c, "client-a", "web-svc", 80);
    assert!(ok && out.contains("web-b"), "web-svc from client-a: {out}");
}
