//! The network lab: several real nodes on this one machine. Each node is a network
//! namespace of its own, wired by a veth pair to a bridge in a "lan" namespace, with an
//! address in 198.18.0.0/24 (the benchmarking range) that exists only inside the lab.
//! A server (with its node agent) runs in the first node's namespace, agents in the
//! others, each with its own containerd, data dir and cgroup root. Everything the lab
//! made is removed when it is dropped, after a failure too.

use super::{Cluster, eventually, tail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const LAN: &str = "198.18.0";
/// The address of a client outside the cluster (the lan namespace's own).
pub const OUTSIDE: &str = "198.18.0.100";

pub struct Lab {
    /// Unique per lab: names its namespaces, veths and cgroup roots.
    pub prefix: String,
    nodes: usize,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// `n` node namespaces on one bridge. Needs root (netns, veth, bridges).
    pub fn new(n: usize) -> Lab {
        assert!(
            nix_is_root(),
            "the network lab needs root (network namespaces)"
        );
        let lab = Lab {
            prefix: format!("sk{}", std::process::id() % 100_000),
            nodes: n,
        };
        let lan = lab.lan();
        ip(&["netns", "add", &lan]);
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        // A client outside the cluster, on the same segment.
        ip(&[
            "-n",
            &lan,
            "addr",
            "add",
            &format!("{}/24", OUTSIDE),
            "dev",
            "br0",
        ]);
        for i in 0..n {
            let ns = lab.ns(i);
            let (a, b) = (format!("{}a{i}", lab.prefix), format!("{}b{i}", lab.prefix));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &ns]);
            ip(&["link", "set", &b, "netns", &lan]);
            ip(&["-n", &ns, "link", "set", &a, "name", "eth0"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &lan, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &lan, "link", "set", &b, "up"]);
        }
        lab
    }

    fn lan(&self) -> String {
        format!("{}-lan", self.prefix)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Node `i`'s address on the lab's LAN.
    pub fn ip(&self, i: usize) -> String {
        format!("{LAN}.{}", i + 2)
    }

    pub fn node_name(&self, i: usize) -> String {
        format!("lab-{i}")
    }

    /// Node `i`'s cgroup root, apart from every other agent's on the machine.
    pub fn cgroup_root(&self, i: usize) -> String {
        format!("/{}-n{i}", self.prefix)
    }

    /// The node flags every lab agent gets.
    pub fn node_args(&self, i: usize) -> Vec<String> {
        vec![
            "--offline".into(),
            format!("--node-name={}", self.node_name(i)),
            format!("--cgroup-root={}", self.cgroup_root(i)),
        ]
    }

    /// One HTTP GET from outside the cluster (busybox nc in the lan namespace): the
    /// response, empty if none came.
    pub fn get_from_outside(&self, host: &str, port: u16, path: &str) -> String {
        use std::io::Write;
        let mut child = in_netns(&self.lan(), "busybox")
            .args(["nc", "-w", "3", host, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        let _ = child.stdin.take().unwrap().write_all(req.as_bytes());
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    }

    /// `program` run by a client outside the cluster (the lan namespace).
    pub fn outside(&self, program: &str) -> Command {
        in_netns(&self.lan(), program)
    }

    /// `program` inside node `i`'s namespace.
    pub fn exec(&self, i: usize, program: &str) -> Command {
        in_netns(&self.ns(i), program)
    }

    /// The server and node 0's agent (`skiff up`) in node 0's namespace; `extra` flags
    /// are added. Test images go in before the agent starts.
    pub fn start_server(&self, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        super::node::write_test_images(&dir.path().join("data/agent/images"));
        let mut args: Vec<String> = vec!["up".into()];
        args.extend(self.node_args(0));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Cluster::start_in_netns(dir, &self.ns(0), &args)
    }

    /// A node agent (`skiff agent`) in node `i`'s namespace joined to `server`.
    pub fn start_agent(&self, server: &Cluster, i: usize, extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        super::node::write_test_images(&dir.path().join("data/agent/images"));
        let token = std::fs::read_to_string(server.data_dir().join("token")).unwrap();
        let mut cmd = self.exec(i, env!("CARGO_BIN_EXE_skiff"));
        cmd.arg("agent")
            .arg(format!("--server=https://{}:6443", self.ip(0)))
            .arg(format!("--token={}", token.trim()))
            .arg("--ca-file")
            .arg(server.data_dir().join("tls/ca.crt"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(self.node_args(i))
            .args(extra);
        Agent::spawn(cmd, dir)
    }

    /// Waits until `kubectl get nodes` shows every lab node Ready.
    pub fn wait_ready(&self, c: &Cluster) {
        let names: Vec<String> = (0..self.nodes).map(|i| self.node_name(i)).collect();
        eventually(Duration::from_secs(90), || {
            let out = c.ok(&["get", "nodes", "--no-headers"]);
            let ready = names.iter().all(|n| {
                out.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&n.as_str()) && f.get(1) == Some(&"Ready")
                })
            });
            ready.then_some(())
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The nodes' processes have stopped by now (Cluster and Agent are dropped
        // first); deleting a namespace takes its veths and addresses with it.
        for i in 0..self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.lan()])
            .status();
        for i in 0..self.nodes {
            let root = self.cgroup_root(i);
            remove_cgroup_root(root.trim_start_matches('/'));
        }
    }
}

/// An agent's empty cgroup root in every hierarchy (it removes its own on a clean stop).
fn remove_cgroup_root(root: &str) {
    if let Ok(hs) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hs.flatten() {
            let _ = std::fs::remove_dir(h.path().join(root).join("kubepods"));
            let _ = std::fs::remove_dir(h.path().join(root));
        }
    }
}

/// `program` in network namespace `ns` and nothing else apart: `ip netns exec` would
/// also mount a sysfs of its own over /sys, hiding the cgroup mounts runc needs.
pub fn in_netns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    c
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A `skiff agent` process of the lab, stopped (SIGTERM, then its pods and containerd
/// go) when dropped.
pub struct Agent {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
}

impl Agent {
    fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Agent {
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = cmd
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        Agent {
            child: Some(child),
            dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default(),
            40,
        )
    }

    /// SIGTERM and wait (an agent stops its pods and containerd first).
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "agent log tail ({}):\n{}",
                self.dir.path().display(),
                self.log()
            );
            let ctd = self.data_dir().join("agent/containerd/containerd.log");
            let ctd = std::fs::read_to_string(ctd).unwrap_or_default();
            eprintln!("its containerd's log tail:\n{}", tail(&ctd, 20));
        }
        self.stop();
    }
}

fn stop_child(mut c: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.wait();
}

/// `kubectl exec POD -- sh -c SCRIPT`: (exit status success, stdout+stderr).
pub fn sh(c: &Cluster, pod: &str, script: &str) -> (bool, String) {
    let out = c.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
