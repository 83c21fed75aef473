//! The cluster network end to end, on real nodes of the network lab (root; containerd,
//! CNI plugins, nftables, busybox-static, which scripts/deps.sh installs): two nodes,
//! each in its own network namespace with its own containerd, joined to one server;
//! pods reach each other by pod IP, by Service and by DNS name, driven by the real
//! kubectl. Only addresses inside the lab's namespaces are ever dialled.
//!
//! The tests take turns (`LAB`): each lab node runs a containerd, and the machine has
//! two cores.

mod common;

use common::lab::{Agent, Lab, sh};
use common::node::wait_phase;
use common::{Cluster, eventually, manifest, tail};
use std::sync::Mutex;
use std::time::Duration;

static LAB: Mutex<()> = Mutex::new(());

/// A busybox pod pinned to `node` that sleeps (a client to exec from).
fn client_pod(c: &Cluster, name: &str, node: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: client\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    ));
}

/// The shell line that serves `text` over HTTP on `port` (busybox httpd; `-v` logs each
/// client's address).
fn httpd(text: &str, port: u16) -> String {
    format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -v -p {port} -h /www")
}

/// A web pod pinned to `node` answering with its own name on `port`.
fn web_pod(c: &Cluster, name: &str, node: &str, extra_spec: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  nodeName: {node}\n{extra_spec}  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, '{}']\n    ports:\n    - name: http\n      containerPort: 8080\n",
        httpd(name, 8080)
    ));
}

/// The backend of the guide's `backend-service`: two replicas, one per node, answering
/// with their pod name on 8080; ready once listening, serving on through a short
/// preStop while the Service lets them go.
const BACKEND: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  replicas: 2
  selector:
    matchLabels: {app: backend}
  template:
    metadata:
      labels: {app: backend}
    spec:
      terminationGracePeriodSeconds: 10
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: backend}
      containers:
      - name: backend
        image: busybox
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports:
        - containerPort: 8080
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec:
              command: [sleep, '3']
"#;

/// Waits for the backend's rollout; if it does not finish, fails with what held it: the
/// pods and sets, their events, and what the server (requests aside) and node 1 logged.
fn backend_rolled_out(c: &Cluster, b: &Agent, timeout: &str) {
    let timeout = format!("--timeout={timeout}");
    let rollout = c.kubectl(&["rollout", "status", "deployment/backend", &timeout]);
    if rollout.status.success() {
        return;
    }
    panic!(
        "backend not rolled out: {}\n{}\n{}\n{}\n{}\nserver log, requests aside:\n{}\nagent 1:\n{}",
        String::from_utf8_lossy(&rollout.stderr),
        c.ok(&["get", "pods", "-o", "wide"]),
        c.ok(&["get", "replicasets", "-o", "wide"]),
        c.ok(&["describe", "deployment", "backend"]),
        c.ok(&["describe", "pods", "-l", "app=backend"]),
        c.log_besides_requests(80),
        b.log()
    );
}

/// One HTTP GET from inside `pod` (busybox nc: its wget crashes): success and output.
fn get(c: &Cluster, pod: &str, host: &str, port: u16) -> (bool, String) {
    sh(
        c,
        pod,
        &format!("printf 'GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 3 {host} {port}"),
    )
}

/// GET until the answer contains `want` (rules and names take a moment to appear).
fn get_eventually(c: &Cluster, pod: &str, host: &str, port: u16, want: &str) -> String {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(20), || {
            let (ok, out) = get(c, pod, host, port);
            last = out.clone();
            (ok && out.contains(want)).then_some(out)
        })
    }));
    found.unwrap_or_else(|_| panic!("{pod} → {host}:{port} never answered {want:?}: {last}"))
}

fn nslookup(c: &Cluster, pod: &str, args: &str) -> String {
    sh(c, pod, &format!("nslookup {args}")).1
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    let mut a = args.to_vec();
    a.extend(["-o", &p]);
    c.ok(&a)
}

fn pod_ip(c: &Cluster, pod: &str) -> String {
    jsonpath(c, &["get", "pod", pod], "{.status.podIP}")
}

/// The lab's two nodes Ready, with the server's agent on node 0; the agent log is
/// printed if they never are.
fn two_nodes(lab: &Lab, node_flags: &[&str]) -> (Cluster, Agent) {
    // Pods of a node that is deleted go within seconds, not the default 40.
    let mut flags = vec!["--pod-gc-period=1"];
    flags.extend(node_flags);
    let c = lab.start_server(&flags);
    let b = lab.start_agent(&c, 1, node_flags);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lab.wait_ready(&c))).is_err() {
        panic!(
            "nodes not Ready\nserver:\n{}\nagent 1:\n{}",
            tail(&c.log(), 60),
            b.log()
        );
    }
    (c, b)
}

#[test]
fn services_dns_and_pods_across_two_nodes() {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(2);
    let (c, mut b) = two_nodes(&lab, &[]);
    let (n0, n1) = (lab.node_name(0), lab.node_name(1));
    client_pod(&c, "client-a", &n0);
    client_pod(&c, "client-b", &n1);
    web_pod(&c, "web-b", &n1, "");
    c.apply(BACKEND);
    c.ok(&[
        "apply",
        "-f",
        manifest("backend-service.yaml").to_str().unwrap(),
    ]);
    for p in ["client-a", "client-b", "web-b"] {
        wait_phase(&c, p, "Running");
    }
    backend_rolled_out(&c, &b, "60s");

    pods_reach_each_other_across_nodes(&c, &lab);
    the_guides_service_is_reached_every_way(&c, &lab);
    dns_answers_every_record_type(&c);
    exposed_deployments_answer_by_name(&c);
    pods_reach_the_api_with_their_token(&c);
    external_traffic_can_stay_on_its_node(&c, &lab);
    affinity_and_hairpin(&c);
    a_rolling_update_loses_no_request(&c, &b);
    a_leaving_node_takes_its_routes_and_endpoints(&c, &lab, &mut b);
}

#[test]
fn vxlan_carries_pods_across_nodes() {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(2);
    let (c, _b) = two_nodes(&lab, &["--flannel-backend=vxlan"]);
    let n1 = lab.node_name(1);
    client_pod(&c, "client-a", &lab.node_name(0));
    web_pod(&c, "web-b", &n1, "");
    wait_phase(&c, "client-a", "Running");
    wait_phase(&c, "web-b", "Running");
    // Node 0 reaches node 1's pods through the VXLAN device, its VTEP announced.
    let mac = jsonpath(
        &c,
        &["get", "node", &n1],
        "{.metadata.annotations.skiff\\.io/vtep-mac}",
    );
    assert_eq!(mac.len(), 17, "{mac}");
    let cidr1 = jsonpath(&c, &["get", "node", &n1], "{.spec.podCIDR}");
    let out = lab
        .exec(0, "ip")
        .args(["route", "show", &cidr1])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(routes.contains("dev skiff-vxlan"), "{routes}");
    let ip_b = pod_ip(&c, "web-b");
    let (ok, out) = get(&c, "client-a", &ip_b, 8080);
    assert!(
        ok && out.contains("web-b"),
        "pod A → pod B over VXLAN: {out}"
    );
    // Services across nodes work over it too.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web-svc\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n");
    get_eventually(&c, "client-a", "web-svc", 80, "web-b");
}

/// The pod bridge's MAC was set (the kernel's `NET_ADDR_SET`, 3), to one naming its
/// gateway address: pods joining it cannot change it under the ARP caches of pods
/// already there.
fn the_bridge_keeps_its_address(c: &Cluster, lab: &Lab) {
    let read = |f: &str| {
        // `ip netns exec` mounts the namespace's own /sys.
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.ns(0), "cat"])
            .arg(format!("/sys/class/net/skiff0/{f}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(read("addr_assign_type"), "3");
    let cidr = jsonpath(c, &["get", "node", &lab.node_name(0)], "{.spec.podCIDR}");
    let base: std::net::Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
    let [a, b, c3, d] = base.octets();
    let want = format!("0a:58:{a:02x}:{b:02x}:{c3:02x}:{:02x}", d + 1);
    assert_eq!(read("address"), want);
}

fn pods_reach_each_other_across_nodes(c: &Cluster, lab: &Lab) {
    let n1 = lab.node_name(1);
    // Node 0 routes node 1's pod CIDR via node 1's address (host-gw).
    let cidr1 = jsonpath(c, &["get", "node", &n1], "{.spec.podCIDR}");
    let out = lab
        .exec(0, "ip")
        .args(["route", "show", &cidr1])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(routes.contains(&format!("via {}", lab.ip(1))), "{routes}");
    the_bridge_keeps_its_address(c, lab);

    let ip_b = pod_ip(c, "web-b");
    let (ok, out) = get(c, "client-a", &ip_b, 8080);
    assert!(ok && out.contains("web-b"), "pod A → pod B by IP: {out}");
    // Not NATed: web-b's httpd saw client-a's own address.
    let ip_a = pod_ip(c, "client-a");
    let logs = c.ok(&["logs", "web-b"]);
    assert!(logs.contains(&ip_a), "{ip_a} not in web-b's log:\n{logs}");

    // By Service and by DNS name, through node 0's proxy and DNS, to node 1.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web-svc\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n");
    get_eventually(c, "client-a", "web-svc", 80, "web-b");
    get_eventually(
        c,
        "client-a",
        "web-svc.default.svc.cluster.local",
        80,
        "web-b",
    );
    // Each node answers DNS itself: node 1's own endpoint of kube-dns is its gateway.
    let dns = eventually(Duration::from_secs(30), || {
        let out = jsonpath(
            c,
            &[
                "get",
                "endpointslices",
                "-n",
                "kube-system",
                "-l",
                "kubernetes.io/service-name=kube-dns",
            ],
            "{range .items[*]}{.endpoints[0].nodeName}={.endpoints[0].addresses[0]}{\"\\n\"}{end}",
        );
        (out.lines().count() == 2).then_some(out)
    });
    let gateway1 = format!("{}1", cidr1.trim_end_matches("0/24"));
    assert!(dns.contains(&format!("{n1}={gateway1}")), "{dns}");
    // internalTrafficPolicy: Local keeps each node's queries on its own DNS: queries
    // from node 0 count on node 0's server only.
    let gateway0 = {
        let cidr0 = jsonpath(c, &["get", "node", &lab.node_name(0)], "{.spec.podCIDR}");
        format!("{}1", cidr0.trim_end_matches("0/24"))
    };
    let requests = |gateway: &str| -> u64 {
        let (_, out) = sh(
            c,
            "client-a",
            &format!("printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {gateway} 9153"),
        );
        out.lines()
            .filter(|l| l.starts_with("coredns_dns_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (before0, before1) = (requests(&gateway0), requests(&gateway1));
    for _ in 0..5 {
        nslookup(c, "client-a", "web-svc.default.svc.cluster.local");
    }
    let (after0, after1) = (requests(&gateway0), requests(&gateway1));
    assert!(after0 >= before0 + 5, "node 0's DNS: {before0} → {after0}");
    assert_eq!(before1, after1, "node 1's DNS answered node 0's pods");
    let (ok, out) = sh(c, "client-b", "cat /etc/resolv.conf");
    assert!(ok && out.contains("nameserver 10.43.0.10"), "{out}");
    assert!(
        out.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{out}"
    );
    assert!(out.contains("ndots:5"), "{out}");
}

fn the_guides_service_is_reached_every_way(c: &Cluster, lab: &Lab) {
    let ip = jsonpath(c, &["get", "svc", "backend-service"], "{.spec.clusterIP}");
    for host in [
        "backend-service",
        "backend-service.default.svc.cluster.local",
        &ip,
    ] {
        get_eventually(c, "client-a", host, 80, "backend-");
    }
    // NodePort, on each node's address (node 1's from a pod on node 0).
    c.ok(&[
        "expose",
        "deployment",
        "backend",
        "--name=backend-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    let np = jsonpath(
        c,
        &["get", "svc", "backend-np"],
        "{.spec.ports[0].nodePort}",
    );
    let np: u16 = np.parse().unwrap();
    get_eventually(c, "client-a", &lab.ip(1), np, "backend-");
    get_eventually(c, "client-b", &lab.ip(0), np, "backend-");
    // A LoadBalancer: the nodes' addresses at once, and traffic to them balanced.
    c.ok(&[
        "expose",
        "deployment",
        "backend",
        "--name=backend-lb",
        "--type=LoadBalancer",
        "--port=8081",
        "--target-port=8080",
    ]);
    let external = eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "svc", "backend-lb", "--no-headers"]);
        let col = out.split_whitespace().nth(3)?.to_string();
        (!col.contains("pending")).then_some(col)
    });
    assert!(
        external.contains(&lab.ip(0)) && external.contains(&lab.ip(1)),
        "{external}"
    );
    for addr in external.split(',') {
        get_eventually(c, "client-a", addr, 8081, "backend-");
    }
    // No endpoints: refused at once, not a timeout.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: nobody\nspec:\n  selector:\n    app: nobody\n  ports:\n  - port: 80\n");
    let started = std::time::Instant::now();
    let (ok, out) = get(c, "client-a", "nobody", 80);
    assert!(!ok, "a Service with no endpoints answered: {out}");
    assert!(started.elapsed() < Duration::from_secs(3), "{out}");
}

fn dns_answers_every_record_type(c: &Cluster) {
    let cluster_ip = jsonpath(c, &["get", "svc", "backend-service"], "{.spec.clusterIP}");
    // A, by short name through the search path and fully qualified.
    let out = nslookup(c, "client-a", "backend-service.default.svc.cluster.local");
    assert!(out.contains(&cluster_ip), "{out}");
    // SRV for a named port.
    let out = nslookup(
        c,
        "client-a",
        "-type=srv _http._tcp.web-svc.default.svc.cluster.local",
    );
    assert!(
        out.contains("web-svc.default.svc.cluster.local") && out.contains("80"),
        "{out}"
    );
    // PTR of a cluster IP.
    let out = nslookup(c, "client-a", &cluster_ip);
    assert!(
        out.contains("backend-service.default.svc.cluster.local"),
        "{out}"
    );
    // dns-version.
    let out = nslookup(c, "client-a", "-type=txt dns-version.cluster.local");
    assert!(out.contains("1.1.0"), "{out}");
    // Pod records.
    let ip_b = pod_ip(c, "web-b");
    let dashed = ip_b.replace('.', "-");
    let out = nslookup(
        c,
        "client-a",
        &format!("{dashed}.default.pod.cluster.local"),
    );
    assert!(out.contains(&ip_b), "{out}");
    // Headless: a record per ready endpoint, hostname records, NXDOMAIN with none.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web-h\nspec:\n  clusterIP: None\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 8080\n");
    web_pod(
        c,
        "web-0",
        "lab-0",
        "  hostname: web-0\n  subdomain: web-h\n",
    );
    wait_phase(c, "web-0", "Running");
    let ip0 = pod_ip(c, "web-0");
    let out = eventually(Duration::from_secs(20), || {
        let out = nslookup(c, "client-a", "web-h.default.svc.cluster.local");
        (out.contains(&ip0) && out.contains(&ip_b)).then_some(out)
    });
    assert!(!out.contains(&cluster_ip), "{out}");
    let out = nslookup(c, "client-a", "web-0.web-h.default.svc.cluster.local");
    assert!(out.contains(&ip0) && !out.contains(&ip_b), "{out}");
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: empty-h\nspec:\n  clusterIP: None\n  selector:\n    app: nobody\n  ports:\n  - port: 80\n");
    let out = nslookup(c, "client-a", "empty-h.default.svc.cluster.local");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // An existing name asked for a type it lacks: no data, not NXDOMAIN.
    let out = nslookup(
        c,
        "client-a",
        "-type=aaaa backend-service.default.svc.cluster.local",
    );
    assert!(
        !out.contains("NXDOMAIN") && !out.contains(&cluster_ip),
        "{out}"
    );
    // ExternalName: a CNAME.
    c.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=backend-service.default.svc.cluster.local",
    ]);
    let out = eventually(Duration::from_secs(20), || {
        let out = nslookup(c, "client-a", "ext.default.svc.cluster.local");
        out.contains("backend-service.default.svc.cluster.local")
            .then_some(out)
    });
    assert!(out.contains(&cluster_ip), "{out}");
}

fn exposed_deployments_answer_by_name(c: &Cluster) {
    c.ok(&["create", "deployment", "web", "--image=nginx"]);
    c.ok(&["expose", "deployment", "web", "--port=80"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    get_eventually(c, "client-b", "web", 80, "hello from skiff");
}

fn pods_reach_the_api_with_their_token(c: &Cluster) {
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "printf 'GET /api HTTP/1.0\\r\\nHost: kubernetes.default.svc\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n' \"$(cat {sa}/token)\" | openssl s_client -quiet -connect kubernetes.default.svc:443 -servername kubernetes.default.svc -verify_hostname kubernetes.default.svc -CAfile {sa}/ca.crt -verify_return_error 2>&1"
    );
    for pod in ["client-a", "client-b"] {
        let (_, out) = sh(c, pod, &script);
        assert!(
            out.contains("200 OK") && out.contains("APIVersions"),
            "{pod}: {out}"
        );
    }
    // The check can fail: without the token the API refuses.
    let (_, out) = sh(
        c,
        "client-b",
        &script.replace("Authorization: Bearer %s\\r\\n", ""),
    );
    assert!(out.contains("401"), "{out}");
}

/// `externalTrafficPolicy: Local`: a client outside the cluster is answered only by the
/// node's own endpoints and keeps its address; the health check port says which nodes
/// have them.
fn external_traffic_can_stay_on_its_node(c: &Cluster, lab: &Lab) {
    c.ok(&["label", "pod", "web-b", "side=b"]);
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: b-local\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector:\n    side: b\n  ports:\n  - port: 8082\n    targetPort: 8080\n");
    let hc = jsonpath(c, &["get", "svc", "b-local"], "{.spec.healthCheckNodePort}");
    let hc: u16 = hc.parse().expect("a healthCheckNodePort was allocated");
    let np = jsonpath(c, &["get", "svc", "b-local"], "{.spec.ports[0].nodePort}");
    let np: u16 = np.parse().unwrap();
    let answer = eventually(Duration::from_secs(20), || {
        let out = lab.get_from_outside(&lab.ip(1), np, "/");
        out.contains("web-b").then_some(out)
    });
    assert!(answer.contains("200 OK"), "{answer}");
    let logs = c.ok(&["logs", "web-b"]);
    assert!(
        logs.contains(common::lab::OUTSIDE),
        "the outside client's address was not kept: {logs}"
    );
    let health1 = lab.get_from_outside(&lab.ip(1), hc, "/");
    assert!(
        health1.contains("200 OK") && health1.contains("\"localEndpoints\":1"),
        "{health1}"
    );
    let health0 = lab.get_from_outside(&lab.ip(0), hc, "/");
    assert!(
        health0.contains("503") && health0.contains("\"localEndpoints\":0"),
        "{health0}"
    );
    // Node 0 has no local endpoint: outside traffic to it is not sent across.
    let out = lab.get_from_outside(&lab.ip(0), np, "/");
    assert!(!out.contains("web-b"), "{out}");
}

/// ClientIP affinity keeps a client on one endpoint (where without it the two share the
/// load); a pod reaches itself through its own Service.
fn affinity_and_hairpin(c: &Cluster) {
    let names = |svc: &str| {
        let script = format!(
            "for i in $(seq 1 16); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {svc} 80 | tail -n 1; done"
        );
        let (_, out) = sh(c, "client-a", &script);
        out.lines()
            .filter(|l| l.starts_with("backend-"))
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let spread = names("backend-service");
    assert_eq!(
        spread.len(),
        2,
        "without affinity both backends answer: {spread:?}"
    );
    c.ok(&[
        "expose",
        "deployment",
        "backend",
        "--name=sticky",
        "--port=80",
        "--target-port=8080",
        "--session-affinity=ClientIP",
    ]);
    let sticky = eventually(Duration::from_secs(20), || {
        let n = names("sticky");
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(sticky.len(), 1, "ClientIP affinity: {sticky:?}");
    // Hairpin: web-b through b-local's cluster IP, whose only endpoint is web-b.
    let ip = jsonpath(c, &["get", "svc", "b-local"], "{.spec.clusterIP}");
    get_eventually(c, "web-b", &ip, 8082, "web-b");
}

fn a_rolling_update_loses_no_request(c: &Cluster, b: &Agent) {
    // A steady client on node 1: 300 requests 50 ms apart, each on a new connection
    // through DNS and the Service; it counts what fails and stops by itself.
    let loop_script = "ok=0; fail=0; i=0; while [ $i -lt 300 ]; do if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 backend-service 80 | grep -q backend-; then ok=$((ok+1)); else fail=$((fail+1)); fi; i=$((i+1)); sleep 0.05; done; echo ok=$ok fail=$fail";
    let mut cmd = c.kubectl_cmd(&["exec", "client-b", "--", "sh", "-c", loop_script]);
    let client = std::thread::spawn(move || cmd.output().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let before = c.ok(&["get", "pods", "-l", "app=backend", "-o", "name"]);
    c.ok(&["rollout", "restart", "deployment/backend"]);
    backend_rolled_out(c, b, "90s");
    // Every old pod goes (each serving through its preStop while the Service lets it go).
    eventually(Duration::from_secs(60), || {
        let now = c.ok(&["get", "pods", "-l", "app=backend", "-o", "name"]);
        before.lines().all(|p| !now.contains(p)).then_some(())
    });
    // The client was still asking when the last old pod went: it saw the whole update.
    assert!(
        !client.is_finished(),
        "the client loop ended before the update did"
    );
    let out = client.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok=300 fail=0"),
        "requests lost in a rolling update: {text}"
    );
}

fn a_leaving_node_takes_its_routes_and_endpoints(c: &Cluster, lab: &Lab, b: &mut Agent) {
    let n1 = lab.node_name(1);
    let cidr1 = jsonpath(c, &["get", "node", &n1], "{.spec.podCIDR}");
    let ip_b = pod_ip(c, "web-b");
    let route = || {
        let out = lab
            .exec(0, "ip")
            .args(["route", "show", &cidr1])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let endpoints = || c.ok(&["get", "endpoints", "web-svc", "--no-headers"]);
    assert!(route().contains(&lab.ip(1)), "{}", route());
    assert!(endpoints().contains(&ip_b), "{}", endpoints());
    b.stop();
    // A clean stop leaves nothing of the node's network behind in its namespace.
    let left = |program: &str, args: &[&str]| {
        let out = lab.exec(1, program).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(left("nft", &["list", "tables"]), "", "nft tables left");
    assert_eq!(
        left("ip", &["route", "show", "proto", "83"]),
        "",
        "routes left"
    );
    assert!(!left("ip", &["link"]).contains("skiff0"), "bridge left");
    c.ok(&["delete", "node", &n1]);
    eventually(Duration::from_secs(30), || route().is_empty().then_some(()));
    eventually(Duration::from_secs(60), || {
        (!endpoints().contains(&ip_b)).then_some(())
    });
    // Its DNS endpoint went with the Node that owned it.
    eventually(Duration::from_secs(30), || {
        let out = c.ok(&["get", "endpointslices", "-n", "kube-system", "--no-headers"]);
        (!out.contains(&format!("kube-dns-{n1}"))).then_some(())
    });
}
