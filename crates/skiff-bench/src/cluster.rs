//! N `skiff server`s on one machine sharing an embedded etcd cluster, as an HA
//! deployment runs them: the first with `--cluster-init`, the others joining it with its
//! server token, each on ports of its own and advertising loopback (so the `kubernetes`
//! Endpoints, which agents' balancers follow, name addresses this machine reaches).

use crate::{client_for, free_port, rss_kib};
use anyhow::Context;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `/readyz`: a joining one first has its member
/// added and caught up.
const READY_WITHIN: Duration = Duration::from_secs(90);
/// How long a SIGTERM'd server may take to stop its controllers and its member.
const STOP_WITHIN: Duration = Duration::from_secs(30);

pub(crate) struct Server {
    /// `s1`, `s2`, … in the order they were started.
    pub name: String,
    dir: PathBuf,
    pub port: u16,
    pub etcd_client_port: u16,
    /// Flags beyond the ports and the data dir: `--cluster-init` or `--server … --token
    /// …`, and the caller's.
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    fn new(name: String, dir: PathBuf, join: &[String], extra: &[&str]) -> Server {
        let etcd_client_port = free_port();
        let mut args = vec![
            "server".to_string(),
            "--etcd-client-port".into(),
            etcd_client_port.to_string(),
            "--etcd-peer-port".into(),
            free_port().to_string(),
            "--advertise-address".into(),
            "127.0.0.1".into(),
        ];
        args.extend(join.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        Server {
            name,
            dir,
            port: free_port(),
            etcd_client_port,
            args,
            child: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self, skiff: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let child = Command::new(skiff)
            .args(&self.args)
            .args([
                "--bind-address",
                "127.0.0.1",
                "--https-port",
                &self.port.to_string(),
                "--data-dir",
            ])
            .arg(self.data_dir())
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", skiff.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits for `/readyz`; fails early, with the end of its log, if the server exits.
    async fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                anyhow::bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
            }
            if self.ready().await {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > READY_WITHIN {
                anyhow::bail!(
                    "{} not ready within {READY_WITHIN:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        // Not before it listens: a refused connection would be logged as an error.
        if !self.kubeconfig().exists()
            || tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
        {
            return false;
        }
        let Ok(c) = client_for(&self.kubeconfig()).await else {
            return false;
        };
        let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), c.request_text(req)).await,
            Ok(Ok(body)) if body.trim() == "ok"
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process of this server's etcd member, found by its data dir (a member a
    /// killed server left behind has no parent to ask).
    pub fn etcd_pid(&self) -> Option<u32> {
        let want = format!("--data-dir={}", self.data_dir().join("db/etcd").display());
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmd.split(|b| *b == 0)
                .any(|a| a == want.as_bytes())
                .then_some(pid)
        })
    }

    /// The server's identity in leader election Leases, `<host>_<server-id>`; matched
    /// by the id it keeps in its data dir.
    pub fn holds(&self, holder: &str) -> bool {
        std::fs::read_to_string(self.data_dir().join("server-id"))
            .map(|id| !id.trim().is_empty() && holder.ends_with(&format!("_{}", id.trim())))
            .unwrap_or(false)
    }

    /// (server, etcd member) resident memory in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        (
            self.pid().map_or(0, rss_kib),
            self.etcd_pid().map_or(0, rss_kib),
        )
    }

    /// SIGKILL to the server and its member at once, as a host going down takes both
    /// (the member would follow anyway, by its parent-death signal). Returns when the
    /// signals went out.
    pub fn kill9(&mut self) -> Instant {
        let member = self.etcd_pid();
        let at = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Some(pid) = member {
                signal(pid, Signal::SIGKILL);
            }
            let _ = c.wait();
        }
        at
    }

    /// SIGTERM (the server stops its member), SIGKILL if it has not exited in time;
    /// then a member still running (one that outlived its server) is ended too.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), Signal::SIGTERM);
            let t0 = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && t0.elapsed() < STOP_WITHIN {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.reap_member();
    }

    fn reap_member(&self) {
        let Some(pid) = self.etcd_pid() else { return };
        signal(pid, Signal::SIGTERM);
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && t0.elapsed() < STOP_WITHIN {
            std::thread::sleep(Duration::from_millis(50));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            signal(pid, Signal::SIGKILL);
        }
    }
}

/// A signal to a process this bench started (or a server it started did).
fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

pub(crate) struct Cluster {
    skiff: PathBuf,
    pub servers: Vec<Server>,
    // Declared last: removed after every server has stopped.
    _root: tempfile::TempDir,
}

impl Cluster {
    /// `n` servers, each ready before the next joins (etcd adds members one at a time).
    pub async fn start(skiff: &Path, n: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let root = tempfile::tempdir()?;
        let mut cluster = Cluster {
            skiff: skiff.to_path_buf(),
            servers: Vec::new(),
            _root: root,
        };
        for i in 0..n {
            let join = match cluster.servers.first() {
                None => vec!["--cluster-init".to_string()],
                Some(first) => {
                    let token = std::fs::read_to_string(first.data_dir().join("server-token"))
                        .context("reading the first server's server-token")?;
                    vec![
                        "--server".to_string(),
                        format!("https://127.0.0.1:{}", first.port),
                        "--token".into(),
                        token.trim().to_string(),
                    ]
                }
            };
            let name = format!("s{}", i + 1);
            let dir = cluster._root.path().join(&name);
            cluster.servers.push(Server::new(name, dir, &join, extra));
            cluster.spawn_ready(i).await?;
        }
        Ok(cluster)
    }

    async fn spawn_ready(&mut self, i: usize) -> anyhow::Result<Duration> {
        let s = &mut self.servers[i];
        s.spawn(&self.skiff)?;
        s.wait_ready().await
    }

    /// Starts server `i` again on its data dir and ports.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<Duration> {
        self.servers[i].stop();
        self.spawn_ready(i).await
    }

    /// The index of the server whose identity is `holder`.
    pub fn holder_index(&self, holder: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.holds(holder))
    }

    /// Whether server `i`'s member leads etcd, as `etcdctl endpoint status` says.
    pub fn member_leads(&self, i: usize) -> Option<bool> {
        let s = &self.servers[i];
        let tls = s.data_dir().join("tls/etcd");
        let file = |f: &str| tls.join(f).display().to_string();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!(
                "--endpoints=https://127.0.0.1:{}",
                s.etcd_client_port
            ))
            .arg(format!("--cacert={}", file("ca.crt")))
            .arg(format!("--cert={}", file("client.crt")))
            .arg(format!("--key={}", file("client.key")))
            .args(["--command-timeout=2s", "endpoint", "status", "-w", "json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let status = &v[0]["Status"];
        Some(status["leader"] == status["header"]["member_id"])
    }

    /// The etcd client TLS material of server `i`, for a client of its member.
    pub fn etcd_config(&self, i: usize) -> anyhow::Result<skiff_store::EtcdConfig> {
        let s = &self.servers[i];
        let tls = s.data_dir().join("tls/etcd");
        let read =
            |f: &str| std::fs::read(tls.join(f)).with_context(|| format!("{f} of {}", s.name));
        Ok(skiff_store::EtcdConfig {
            endpoints: vec![format!("https://127.0.0.1:{}", s.etcd_client_port)],
            ca: Some(read("ca.crt")?),
            cert: Some(read("client.crt")?),
            key: Some(read("client.key")?),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in self.servers.iter_mut().rev() {
            s.stop();
        }
    }
}
