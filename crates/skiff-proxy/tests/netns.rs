//! The proxy for real, as root: a "node" network namespace with a bridge and "pod"
//! namespaces on veths (10.42.0.0/24, the node's bridge 10.42.0.1), an "outside" client
//! namespace on a second link (10.99.0.0/24), listeners in the pods, and the real runner
//! driving `nft` and `conntrack` inside the node namespace. Every address used lives in
//! a namespace this test creates; nothing leaves them, and the namespaces (with their
//! links and tables) are deleted by a guard, even on panic.

mod common;

use common::*;
use skiff_catalog::{Protocol, ServiceType, Shared};
use skiff_proxy::{Config, ConntrackCommand, Nft, NftCommand};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const NODE_IP: &str = "10.42.0.1";
const OUTSIDE_NODE_IP: &str = "10.99.0.1";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/netns.rs creates network namespaces and needs root: run `cargo test -p skiff-proxy --test netns` as root"
    );
}

fn sh(cmd: &str) {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip -n NS ...`
fn ip(ns: &str, cmd: &str) {
    sh(&format!("ip -n {ns} {cmd}"));
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces of one test, deleted on drop; listeners stop first.
struct Lab {
    prefix: String,
    names: Vec<String>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// A node with pods `a` (10.42.0.2) and `b` (10.42.0.3) and an outside client.
    fn new() -> Lab {
        require_root();
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let mut lab = Lab {
            prefix: format!("skpx-{}-{n}-", std::process::id()),
            names: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let node = lab.add_ns("node");
        for cmd in [
            "link set lo up",
            "link add br0 type bridge",
            "addr add 10.42.0.1/24 dev br0",
            "link set br0 up",
            // Service addresses route to the bridge, so the node's own connections
            // reach the output hook (an unreachable route fails them in connect()).
            "route add 10.43.0.0/16 dev br0",
        ] {
            ip(&node, cmd);
        }
        sh(&format!(
            "ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1"
        ));
        lab.add_pod("a", "10.42.0.2");
        lab.add_pod("b", "10.42.0.3");
        let out = lab.add_ns("out");
        ip(
            &node,
            &format!("link add ext0 type veth peer name eth0 netns {out}"),
        );
        ip(&node, "addr add 10.99.0.1/24 dev ext0");
        ip(&node, "link set ext0 up");
        ip(&out, "addr add 10.99.0.2/24 dev eth0");
        ip(&out, "link set eth0 up");
        ip(&out, "link set lo up");
        lab
    }

    fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    fn add_ns(&mut self, short: &str) -> String {
        let name = self.ns(short);
        sh(&format!("ip netns add {name}"));
        self.names.push(name.clone());
        name
    }

    fn add_pod(&mut self, short: &str, addr: &str) {
        let (node, pod) = (self.ns("node"), self.add_ns(short));
        ip(
            &node,
            &format!("link add veth-{short} type veth peer name eth0 netns {pod}"),
        );
        ip(&node, &format!("link set veth-{short} master br0 up"));
        // As the CNI bridge plugin's `hairpinMode`: a pod's packet DNATed back to
        // itself leaves the bridge by the port it came in on.
        ip(
            &node,
            &format!("link set veth-{short} type bridge_slave hairpin on"),
        );
        ip(&pod, &format!("addr add {addr}/24 dev eth0"));
        ip(&pod, "link set eth0 up");
        ip(&pod, "link set lo up");
        ip(&pod, &format!("route add default via {NODE_IP}"));
    }

    /// In pod `short`: answers each TCP connection on `port` with "`short` `peer ip`".
    fn serve_tcp(&mut self, short: &str, port: u16) {
        let (stop, name, ns) = (self.stop.clone(), short.to_string(), self.ns(short));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.threads.push(std::thread::spawn(move || {
            enter(&ns);
            let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let _ = writeln!(s, "{name} {}", peer.ip());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
        ready_rx.recv().unwrap();
    }

    /// In pod `short`: answers each UDP datagram on `port` likewise.
    fn serve_udp(&mut self, short: &str, port: u16) {
        let (stop, name, ns) = (self.stop.clone(), short.to_string(), self.ns(short));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.threads.push(std::thread::spawn(move || {
            enter(&ns);
            let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(format!("{name} {}\n", peer.ip()).as_bytes(), peer);
                }
            }
        }));
        ready_rx.recv().unwrap();
    }

    /// Runs `f` on a thread inside namespace `short`.
    fn within<T: Send + 'static>(&self, short: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = self.ns(short);
        std::thread::spawn(move || {
            enter(&ns);
            f()
        })
        .join()
        .unwrap()
    }

    /// Connects from namespace `from` to `to` and reads the answer line.
    fn tcp(&self, from: &str, to: &str, timeout_ms: u64) -> std::io::Result<String> {
        let to: SocketAddr = to.parse().unwrap();
        self.within(from, move || {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(timeout_ms))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.trim().to_string())
        })
    }

    /// Like `tcp`, which must succeed.
    fn ok(&self, from: &str, to: &str) -> String {
        self.tcp(from, to, 2000)
            .unwrap_or_else(|e| panic!("{from} → {to}: {e}\n{}", self.nft_list()))
    }

    fn nft_list(&self) -> String {
        output(&[
            "ip",
            "netns",
            "exec",
            &self.ns("node"),
            "nft",
            "list",
            "ruleset",
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Moves this thread into network namespace `name`.
fn enter(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// The real `nft`, counting finished transactions so the test knows rules are in.
struct Counted {
    inner: NftCommand,
    done: AtomicUsize,
}

#[async_trait::async_trait]
impl Nft for Counted {
    async fn run(&self, script: &str) -> skiff_proxy::Result<()> {
        let r = self.inner.run(script).await;
        if let Err(e) = &r {
            eprintln!("nft failed: {e}\n{script}");
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        r
    }
}

struct Proxy {
    nft: Arc<Counted>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<skiff_proxy::Result<()>>,
    seen: usize,
}

impl Proxy {
    fn start(lab: &Lab, shared: Arc<Shared>) -> Proxy {
        let node = lab.ns("node");
        let nft = Arc::new(Counted {
            inner: NftCommand::in_netns(&node),
            done: AtomicUsize::new(0),
        });
        let mut cfg = Config::new("node-a");
        cfg.node_ips = vec![NODE_IP.parse().unwrap(), OUTSIDE_NODE_IP.parse().unwrap()];
        cfg.healthz_address = None;
        cfg.health_check_ip = [127, 0, 0, 1].into();
        let (stop, rx) = watch::channel(false);
        let ct = Arc::new(ConntrackCommand::in_netns(&node));
        let task = tokio::spawn(skiff_proxy::run(shared, cfg, nft.clone(), ct, rx));
        Proxy {
            nft,
            stop,
            task,
            seen: 0,
        }
    }

    /// Waits for the next transaction to finish (the change just made is in).
    async fn applied(&mut self) {
        let n = self.seen + 1;
        wait_for("a transaction", 20, || {
            self.nft.done.load(Ordering::SeqCst) >= n
        })
        .await;
        self.seen = self.nft.done.load(Ordering::SeqCst);
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn is_refused(r: &std::io::Result<String>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_work_between_real_namespaces() {
    let mut lab = Lab::new();
    lab.serve_tcp("a", 8080);
    lab.serve_tcp("b", 8080);
    let web = service("web", "10.43.0.10", 80, Protocol::Tcp);
    let empty = service("empty", "10.43.0.20", 80, Protocol::Tcp);
    let mut np = service("np", "10.43.0.30", 80, Protocol::Tcp);
    np.type_ = ServiceType::NodePort;
    np.ports[0].node_port = Some(30080);
    let shared = synced(
        vec![web.clone(), empty.clone(), np.clone()],
        vec![
            slice(&web, 8080, &[("10.42.0.2", "node-a")]),
            slice(&np, 8080, &[("10.42.0.2", "node-a")]),
        ],
    );
    let mut proxy = Proxy::start(&lab, shared.clone());
    proxy.applied().await;

    // ClusterIP from a pod: pod to pod is never NATed.
    assert_eq!(lab.ok("b", "10.43.0.10:80"), "a 10.42.0.3");
    // From the node.
    assert!(lab.ok("node", "10.43.0.10:80").starts_with("a "));
    // Hairpin: a reaches itself through its Service, masqueraded to the node.
    assert_eq!(lab.ok("a", "10.43.0.10:80"), "a 10.42.0.1");
    // No endpoints: refused at once, from a pod and from the node.
    let t = Instant::now();
    assert!(is_refused(&lab.tcp("b", "10.43.0.20:80", 3000)), "rejected");
    assert!(
        is_refused(&lab.tcp("node", "10.43.0.20:80", 3000)),
        "rejected"
    );
    // A port the cluster IP does not serve: refused too.
    let r = lab.tcp("b", "10.43.0.10:81", 3000);
    assert!(is_refused(&r), "{r:?}\n{}", lab.nft_list());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "reject, not a timeout: {:?}",
        t.elapsed()
    );

    // NodePort on the node's addresses, from outside (masqueraded), a pod and the node.
    assert_eq!(lab.ok("out", "10.99.0.1:30080"), "a 10.42.0.1");
    assert!(lab.ok("b", "10.99.0.1:30080").starts_with("a "));
    assert!(lab.ok("node", "10.42.0.1:30080").starts_with("a "));

    // Two endpoints: both get connections.
    put_slice(
        &shared,
        slice(
            &web,
            8080,
            &[("10.42.0.2", "node-a"), ("10.42.0.3", "node-b")],
        ),
    );
    proxy.applied().await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(lab.ok("node", "10.43.0.10:80")[..1].to_string());
        if seen.len() == 2 {
            break;
        }
    }
    assert!(seen.contains("a") && seen.contains("b"), "{seen:?}");

    // externalTrafficPolicy Local: the client's address is kept.
    np.external_local = true;
    put_service(&shared, np.clone());
    proxy.applied().await;
    assert_eq!(lab.ok("out", "10.99.0.1:30080"), "a 10.99.0.2");
    // Its only endpoint on another node: outsiders are dropped, pods and the node
    // still short-circuit to it.
    put_slice(&shared, slice(&np, 8080, &[("10.42.0.2", "node-b")]));
    proxy.applied().await;
    let r = lab.tcp("out", "10.99.0.1:30080", 700);
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::TimedOut),
        "dropped: {r:?}"
    );
    assert!(lab.ok("b", "10.99.0.1:30080").starts_with("a "));
    assert!(lab.ok("node", "10.99.0.1:30080").starts_with("a "));

    // Deleting the Service removes its rules.
    assert!(lab.nft_list().contains("default/web/tcp/p"));
    delete_service(&shared, &web.key);
    proxy.applied().await;
    let rules = lab.nft_list();
    assert!(!rules.contains("default/web/"), "{rules}");
    assert!(!rules.contains("10.43.0.10"), "{rules}");
    assert!(lab.tcp("b", "10.43.0.10:80", 500).is_err());

    // A clean stop, and cleanup, leave no table.
    proxy.stop().await;
    assert!(!lab.nft_list().contains("skiff-proxy"));
    let nft = NftCommand::in_netns(&lab.ns("node"));
    sh(&format!(
        "ip netns exec {} nft add table ip skiff-proxy",
        lab.ns("node")
    ));
    skiff_proxy::cleanup(&nft).await.unwrap();
    assert!(!lab.nft_list().contains("skiff-proxy"));
}

/// Sends from one UDP socket (same source port each time) and reads the answer.
fn udp_asker(
    lab: &Lab,
    from: &str,
) -> (
    std::sync::mpsc::Sender<()>,
    std::sync::mpsc::Receiver<String>,
) {
    let (ask_tx, ask_rx) = std::sync::mpsc::channel::<()>();
    let (ans_tx, ans_rx) = std::sync::mpsc::channel();
    let ns = lab.ns(from);
    std::thread::spawn(move || {
        enter(&ns);
        let s = UdpSocket::bind("0.0.0.0:40000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        while ask_rx.recv().is_ok() {
            s.send_to(b"?", "10.43.0.53:53").unwrap();
            let ans = match s.recv_from(&mut buf) {
                Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
                Err(e) => format!("error {e}"),
            };
            let _ = ans_tx.send(ans);
        }
    });
    (ask_tx, ans_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_follow_their_endpoints() {
    let mut lab = Lab::new();
    lab.serve_udp("a", 5353);
    lab.serve_udp("b", 5353);
    let dns = service("dns", "10.43.0.53", 53, Protocol::Udp);
    let shared = synced(
        vec![dns.clone()],
        vec![slice(&dns, 5353, &[("10.42.0.2", "node-a")])],
    );
    let mut proxy = Proxy::start(&lab, shared.clone());
    proxy.applied().await;
    let (ask, answer) = udp_asker(&lab, "b");
    let query = || {
        ask.send(()).unwrap();
        answer.recv().unwrap()
    };
    assert_eq!(query(), "a 10.42.0.3");
    assert_eq!(query(), "a 10.42.0.3", "the flow stays with a");
    // a goes away: its conntrack entry is deleted, the same flow now reaches b.
    put_slice(&shared, slice(&dns, 5353, &[("10.42.0.3", "node-a")]));
    proxy.applied().await;
    let mut last = String::new();
    for _ in 0..50 {
        last = query();
        if last.starts_with('b') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b answers its own query through the Service: hairpin, so masqueraded.
    assert_eq!(last, "b 10.42.0.1");
    proxy.stop().await;
}
