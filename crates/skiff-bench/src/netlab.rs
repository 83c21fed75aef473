//! The node the network benchmarks (`bench proxy`, `bench dns`) share: a network
//! namespace of its own (`skb<pid>-node`, 198.19.0.2/24 on a veth whose other end is in
//! `skb<pid>-peer`, addresses that exist only there), the real `skiff server` and
//! `skiff agent` binaries run inside it through `nsenter --net` (not `ip netns exec`,
//! which mounts a sysfs of its own over /sys and hides runc's cgroups), the agent with
//! its own data dir, containerd and cgroup root. The benchmark's client runs in that
//! namespace too: on a thread that has entered it before opening any socket.
//!
//! Everything made here goes when the [`Lab`] is dropped, after a failure or Ctrl-C too:
//! the processes (agent first, so it stops its pods and containerd), anything of ours
//! they left, mounts under the data dir, the namespaces, the cgroup root, the temp dir.

use super::client_for;
use anyhow::{Context, anyhow, bail, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The node's address, on its veth; the peer end has `PEER_IP`.
pub(crate) const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub(crate) const NODE_NAME: &str = "skb-node";
/// Where the benchmarks' pods and Services go.
pub(crate) const NAMESPACE: &str = "default";
pub(crate) const HTTPD_IMAGE: &str = "registry.skiff.local/skb-httpd:1";
/// Backend pods; Service `i` selects the first `i % BACKENDS + 1` of them.
pub(crate) const BACKENDS: usize = 10;
const API_PORT: u16 = 6443;

/// What the node itself needs: `(program, Debian package)`.
const NODE_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("nft", "nftables"),
    ("conntrack", "conntrack"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("/bin/busybox", "busybox-static"),
];

/// Fails unless we are root and every `(program, Debian package)` the node needs, and
/// `tools`, is installed.
pub(crate) fn preflight(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    ensure!(
        root,
        "this benchmark needs root (network namespaces, nftables, containerd)"
    );
    let mut missing: Vec<(&str, &str)> = NODE_TOOLS
        .iter()
        .chain(tools)
        .filter(|(prog, _)| find_program(prog).is_none())
        .copied()
        .collect();
    if !["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        missing.push(("CNI plugins", "containernetworking-plugins"));
    }
    ensure!(
        missing.is_empty(),
        "missing tools: {}; install with `apt-get install -y {}`",
        missing
            .iter()
            .map(|(prog, pkg)| format!("{prog} (Debian package `{pkg}`)"))
            .collect::<Vec<_>>()
            .join(", "),
        missing
            .iter()
            .map(|(_, pkg)| *pkg)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// The machine's load when the run starts: other work on its cores shows in every
/// figure.
pub(crate) fn load_note() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let f: Vec<&str> = load.split_whitespace().collect();
    format!(
        "machine load average at start: {} (1 min), {} (5 min) on {} cores",
        f.first().unwrap_or(&"?"),
        f.get(1).unwrap_or(&"?"),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

fn find_program(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Path::new(prog).exists().then(|| PathBuf::from(prog));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.exists())
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// What the client side needs to know of the lab (cheap to clone into a thread).
#[derive(Clone)]
pub(crate) struct LabInfo {
    pub node_ns: String,
    pub kubeconfig: PathBuf,
    pub agent_pid: u32,
    pub dir: PathBuf,
}

impl LabInfo {
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.node_ns))
    }
}

pub(crate) struct Lab {
    /// `skb<pid>`: names the namespaces and the cgroup root.
    pub prefix: String,
    namespaces: Vec<String>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    skiff: PathBuf,
    server: Option<Child>,
    agent: Option<Child>,
    /// Other processes of ours in the namespace (dnsmasq), stopped first.
    extra: Vec<Child>,
    server_args: Vec<String>,
}

impl Lab {
    /// The namespaces, the images and the server (not yet the agent: [`Lab::start_agent`]
    /// once the server answers).
    pub fn create(skiff: &Path) -> anyhow::Result<Lab> {
        Lab::create_with(skiff, &[])
    }

    /// As [`Lab::create`], the server given `server_args` too.
    pub fn create_with(skiff: &Path, server_args: &[&str]) -> anyhow::Result<Lab> {
        let prefix = format!("skb{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()?;
        let mut lab = Lab {
            prefix: prefix.clone(),
            namespaces: Vec::new(),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            skiff: skiff.to_path_buf(),
            server: None,
            agent: None,
            extra: Vec::new(),
            server_args: server_args.iter().map(|a| a.to_string()).collect(),
        };
        let (node, peer) = (lab.node_ns(), format!("{prefix}-peer"));
        for ns in [&node, &peer] {
            ip(&["netns", "add", ns])?;
            lab.namespaces.push(ns.clone());
        }
        // The pair is made inside the namespaces: nothing appears on the host.
        ip(&[
            "-n", &node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            &peer,
        ])?;
        for (ns, addr) in [(&node, NODE_IP), (&peer, PEER_IP)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // A node has a default route; this one ends in the peer namespace, which
        // forwards nothing.
        ip(&[
            "-n",
            &node,
            "route",
            "add",
            "default",
            "via",
            &PEER_IP.to_string(),
        ])?;
        write_images(&lab.agent_data().join("agent/images"))?;
        lab.start_server()?;
        Ok(lab)
    }

    pub fn node_ns(&self) -> String {
        format!("{}-node", self.prefix)
    }

    /// The namespace at the other end of the node's veth: a client outside the cluster.
    pub fn peer_ns(&self) -> String {
        format!("{}-peer", self.prefix)
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    fn server_data(&self) -> PathBuf {
        self.dir_path.join("server")
    }

    fn agent_data(&self) -> PathBuf {
        self.dir_path.join("agent-data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.server_data().join("kubeconfig.yaml")
    }

    fn cgroup_root(&self) -> String {
        format!("/{}", self.prefix)
    }

    /// `program` inside the node's network namespace, in a process group of its own
    /// (a Ctrl-C at the terminal reaches only the benchmark, which stops it in order).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.node_ns()))
            .arg("--")
            .arg(program)
            .process_group(0);
        c
    }

    fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::File::create(self.dir_path.join(name))?)
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        let skiff = self.skiff.display().to_string();
        let child = self
            .command(&skiff)
            .args([
                "server",
                "--bind-address",
                "0.0.0.0",
                "--https-port",
                &API_PORT.to_string(),
                "--advertise-address",
                &NODE_IP.to_string(),
                "--tls-san",
                &NODE_IP.to_string(),
                "--data-dir",
            ])
            .arg(self.server_data())
            .args(&self.server_args)
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file("server.log")?)
            .spawn()
            .context("starting skiff server")?;
        self.server = Some(child);
        let t0 = Instant::now();
        while !(self.kubeconfig().exists() && self.server_data().join("token").exists()) {
            if let Some(s) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "skiff server exited ({s}):\n{}",
                    self.log_tail("server.log")
                );
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "skiff server wrote no kubeconfig in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits for the server's `/readyz`, then starts the node agent joined to it.
    pub async fn start_agent(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig();
        in_netns(self.netns_path(), move || async move {
            let t0 = Instant::now();
            loop {
                if let Ok(c) = client_for(&kubeconfig).await
                    && let Ok(body) = c
                        .request_text(http::Request::get("/readyz").body(Vec::new())?)
                        .await
                    && body.trim() == "ok"
                {
                    return Ok(());
                }
                ensure!(
                    t0.elapsed() < Duration::from_secs(30),
                    "server not ready in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await?;
        let token = std::fs::read_to_string(self.server_data().join("token"))?;
        let skiff = self.skiff.display().to_string();
        let child = self
            .command(&skiff)
            .args([
                "agent",
                "--offline",
                "--node-name",
                NODE_NAME,
                "--node-ip",
                &NODE_IP.to_string(),
                "--cgroup-root",
                &self.cgroup_root(),
                "--server",
                &format!("https://{NODE_IP}:{API_PORT}"),
                "--token",
                token.trim(),
                "--ca-file",
            ])
            .arg(self.server_data().join("tls/ca.crt"))
            .arg("--data-dir")
            .arg(self.agent_data())
            // Info: the proxy's "service rules synced" lines (with their nft times) are
            // evidence worth keeping beside the figures.
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(self.log_file("agent.log")?)
            .spawn()
            .context("starting skiff agent")?;
        self.agent = Some(child);
        Ok(())
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.node_ns()))
    }

    pub fn info(&self) -> anyhow::Result<LabInfo> {
        let agent_pid = self.agent.as_ref().context("agent not started")?.id();
        Ok(LabInfo {
            node_ns: self.node_ns(),
            kubeconfig: self.kubeconfig(),
            agent_pid,
            dir: self.dir_path.clone(),
        })
    }

    /// A process of ours in the namespace, stopped before the node goes.
    pub fn adopt(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.extra.push(child);
        pid
    }

    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir_path.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The agent's warnings and errors (`WARN`/`ERROR` lines), counted by message.
    pub fn log_problems(&self, name: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir_path.join(name)).unwrap_or_default();
        let mut seen: Vec<(String, usize, String)> = Vec::new();
        for l in text.lines() {
            if !(l.contains(" WARN ") || l.contains(" ERROR ")) {
                continue;
            }
            // "<time>  WARN <spans>: <target>: <message> <fields>": keyed by what follows
            // the timestamp up to the first field.
            let rest = l.split_once(' ').map_or(l, |(_, r)| r).trim();
            let key: String = rest
                .split_whitespace()
                .take_while(|w| !w.contains('='))
                .collect::<Vec<_>>()
                .join(" ");
            match seen.iter_mut().find(|(k, _, _)| *k == key) {
                Some(e) => e.1 += 1,
                None => seen.push((key, 1, l.to_string())),
            }
        }
        seen.into_iter()
            .map(|(_, n, first)| {
                let first: String = first.chars().take(400).collect();
                format!("{n} x {first}")
            })
            .collect()
    }

    pub fn print_log_tails(&self) {
        for name in ["server.log", "agent.log"] {
            eprintln!("--- tail of {name} ---\n{}", self.log_tail(name));
        }
    }

    /// Processes of ours the agent left behind (only when it did not stop cleanly): its
    /// containerd and shims (their command lines name our data dir) and anything in our
    /// cgroup root. Sandboxes go through CRI first, so their namespaces are removed.
    fn sweep_leftovers(&self) {
        let data = self.agent_data().display().to_string();
        let containerd = self.agent_data().join("agent/containerd/containerd.sock");
        if pids_with_cmdline(&data, "containerd ")
            .into_iter()
            .next()
            .is_some()
        {
            eprintln!("cleanup: the agent left containerd running; removing its pod sandboxes");
            let socket = containerd.display().to_string();
            let _ = std::thread::spawn(move || remove_sandboxes(&socket)).join();
        }
        let mut pids = pids_with_cmdline(&data, "");
        pids.extend(pids_in_cgroup_root(&self.prefix));
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|p| *p != std::process::id());
        if !pids.is_empty() {
            eprintln!("cleanup: stopping leftover processes of this benchmark: {pids:?}");
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Mounts under our temp dir (overlays, shm), deepest first.
    fn unmount_leftovers(&self) {
        let prefix = self.dir_path.display().to_string();
        let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| p.replace("\\040", " "))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", &p]).status();
        }
    }

    fn remove_cgroup_root(&self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let root = h.path().join(&self.prefix);
            if root.is_dir() {
                remove_cgroup_tree(&root);
            }
        }
    }
}

/// `rmdir` bottom-up: cgroup directories go once empty of children and processes.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn pids_with_cmdline(needle: &str, starts_with: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.starts_with(starts_with) && cmd.contains(needle)).then_some(pid)
        })
        .collect()
}

fn pids_in_cgroup_root(prefix: &str) -> Vec<u32> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<u32>) {
        if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(t.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    if let Ok(hs) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hs.flatten() {
            let root = h.path().join(prefix);
            if root.is_dir() {
                walk(&root, &mut out);
            }
        }
    }
    out
}

/// Stops and removes every pod sandbox on the containerd at `socket` (its CNI teardown
/// removes the pods' network namespaces).
fn remove_sandboxes(socket: &str) {
    use skiff_cri::{cri, rpc};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let work = async {
        let mut c = skiff_cri::Cri::connect(socket).await.ok()?;
        let list = rpc(
            "ListPodSandbox",
            c.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest::default()),
        )
        .await
        .ok()?;
        for sb in list.items {
            let _ = rpc(
                "StopPodSandbox",
                c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                }),
            )
            .await;
            let _ = rpc(
                "RemovePodSandbox",
                c.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id,
                }),
            )
            .await;
        }
        Some(())
    };
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), work).await });
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
fn stop(mut child: Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            eprintln!(
                "cleanup: pid {} still running after {grace:?}; killing it",
                child.id()
            );
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.extra.drain(..) {
            stop(c, Duration::from_secs(10));
        }
        // The agent first: it stops its pods and its containerd.
        if let Some(c) = self.agent.take() {
            stop(c, Duration::from_secs(120));
        }
        if let Some(c) = self.server.take() {
            stop(c, Duration::from_secs(30));
        }
        self.sweep_leftovers();
        self.unmount_leftovers();
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        self.remove_cgroup_root();
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            eprintln!("cleanup: could not remove {}: {e}", self.dir_path.display());
        }
    }
}

/// The backends' image: busybox `httpd` on :8080 serving a small file.
fn write_images(dir: &Path) -> anyhow::Result<()> {
    use skiff_cri::image;
    std::fs::create_dir_all(dir)?;
    let mut root = image::busybox_root("/bin/busybox".as_ref())
        .context("reading /bin/busybox (Debian package `busybox-static`)")?;
    root.push(image::Entry::File {
        path: "var/www/index.html".into(),
        mode: 0o644,
        data: b"hello from a skiff bench backend\n".to_vec(),
    });
    let httpd = image::ImageSpec {
        name: HTTPD_IMAGE.into(),
        entries: root,
        cmd: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
            .map(String::from)
            .to_vec(),
        env: vec!["PATH=/bin".into()],
        exposed_ports: vec!["8080/tcp".into()],
        ..Default::default()
    };
    image::write_oci_archive(&httpd, &dir.join("skb-httpd.tar"))?;
    Ok(())
}

/// Runs `f`'s future on a thread of its own that has entered the network namespace at
/// `netns` before creating any socket (a socket belongs to its creating thread's
/// namespace; threads it starts inherit it), on a current-thread runtime.
pub(crate) async fn in_netns<T, F, Fut>(netns: PathBuf, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skb-netns".into())
        .spawn(move || {
            let run = || -> anyhow::Result<T> {
                enter_netns(&netns)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(f())
            };
            let _ = tx.send(run());
        })?;
    rx.await
        .map_err(|_| anyhow!("the namespace thread ended without an answer"))?
}

/// Blocking work (`f`) on a thread of its own inside the network namespace at `netns`.
pub(crate) async fn blocking_in_netns<T, F>(netns: PathBuf, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skb-netns-io".into())
        .spawn(move || {
            let r = enter_netns(&netns).and_then(|()| f());
            let _ = tx.send(r);
        })?;
    rx.await
        .map_err(|_| anyhow!("the namespace thread ended without an answer"))?
}

fn enter_netns(path: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering {}", path.display()))?;
    Ok(())
}

/// Waits until the node is Ready with a pod CIDR; returns the CIDR's gateway address
/// (`10.42.N.1`, where the bridge, and the node's cluster DNS, answer).
pub(crate) async fn wait_node_ready(client: &Client) -> anyhow::Result<Ipv4Addr> {
    let nodes: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    loop {
        if let Ok(n) = nodes.get(NODE_NAME).await {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
            if ready && let Some(cidr) = cidr {
                let net: Ipv4Addr = cidr
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .with_context(|| format!("pod CIDR {cidr}"))?;
                return Ok(Ipv4Addr::from(u32::from(net) + 1));
            }
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(180),
            "node {NODE_NAME} not Ready with a pod CIDR in 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn service_name(i: usize) -> String {
    format!("svc-{i}")
}

pub(crate) fn service_fqdn(i: usize) -> String {
    format!("svc-{i}.{NAMESPACE}.svc.cluster.local")
}

/// How many backends Service `i` selects.
pub(crate) fn endpoints_of(i: usize) -> usize {
    i % BACKENDS + 1
}

/// A Service on port 80 → 8080 selecting the first `k` backends.
pub(crate) fn service_json(name: &str, k: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"skiff-bench": "proxy"}},
        "spec": {
            "selector": {format!("skb-lt{k}"): "1"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    })
}

/// Creates one Service; returns its ClusterIP.
pub(crate) async fn create_service(
    client: &Client,
    name: &str,
    k: usize,
) -> anyhow::Result<Ipv4Addr> {
    let body = serde_json::to_vec(&service_json(name, k))?;
    let req = http::Request::post(format!("/api/v1/namespaces/{NAMESPACE}/services"))
        .header("Content-Type", "application/json")
        .body(body)?;
    let svc: serde_json::Value = client
        .request(req)
        .await
        .with_context(|| format!("creating Service {name}"))?;
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("Service {name} has no IPv4 cluster IP"))
}

/// Creates Services `range` (`svc-i`, selecting `endpoints_of(i)` backends),
/// `concurrency` requests at a time; returns their ClusterIPs in order.
pub(crate) async fn create_services(
    client: &Client,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> anyhow::Result<Vec<Ipv4Addr>> {
    use futures::StreamExt;
    let start = range.start;
    let results: Vec<anyhow::Result<(usize, Ipv4Addr)>> = futures::stream::iter(range)
        .map(|i| {
            let client = client.clone();
            async move {
                let ip = create_service(&client, &service_name(i), endpoints_of(i)).await?;
                Ok((i, ip))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = vec![Ipv4Addr::UNSPECIFIED; results.len()];
    for r in results {
        let (i, ip) = r?;
        out[i - start] = ip;
    }
    Ok(out)
}

/// A small deterministic shuffle (xorshift), so runs are repeatable.
pub(crate) fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Address helper.
pub(crate) fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}
