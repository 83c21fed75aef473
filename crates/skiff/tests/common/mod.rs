//! Test harness: starts the real `skiff server` binary on a free port in a temp dir and
//! drives the real kubectl against it with the generated kubeconfig.
#![allow(dead_code)]

pub mod lab;
pub mod node;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Subcommand and extra flags the server runs with (`server`, or `up --simulate 3`).
    pub args: Vec<String>,
    /// The network namespace the server (and kubectl) run in, for clusters of the
    /// network lab (`lab`); None: this machine's own, on loopback.
    pub netns: Option<String>,
}

pub fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&["server"])
    }

    /// `skiff <args...>` instead of `skiff server`, e.g. `["up", "--simulate", "3"]`.
    pub fn start_with(args: &[&str]) -> Cluster {
        Self::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// As `start_with`, in a directory the caller has prepared (`<dir>/data` is the
    /// data dir).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Cluster {
        Self::start_on(free_port(), dir, args)
    }

    /// As `start_in`, listening on `port`.
    pub fn start_on(port: u16, dir: tempfile::TempDir, args: &[&str]) -> Cluster {
        let mut c = Cluster {
            child: None,
            dir,
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
            netns: None,
        };
        c.spawn();
        c
    }

    /// As `start_in`, inside network namespace `netns`, listening on all its addresses
    /// on 6443 (the namespace is the server's machine).
    pub fn start_in_netns(dir: tempfile::TempDir, netns: &str, args: &[&str]) -> Cluster {
        let mut c = Cluster {
            child: None,
            dir,
            port: 6443,
            args: args.iter().map(|s| s.to_string()).collect(),
            netns: Some(netns.to_string()),
        };
        c.spawn();
        c
    }

    /// `program` run in the cluster's network namespace, if it has one.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => lab::in_netns(ns, program),
            None => Command::new(program),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    /// A kube-rs client as the admin of the kubeconfig the server wrote.
    pub async fn kube_client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let opts = kube::config::KubeConfigOptions::default();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let bind = if self.netns.is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        let child = self
            .command(env!("CARGO_BIN_EXE_skiff"))
            .args(&self.args)
            .args([
                "--bind-address",
                bind,
                "--https-port",
                &self.port.to_string(),
                "--data-dir",
            ])
            .arg(self.data_dir())
            .env(
                "SKIFF_LOG",
                "info,skiff_apiserver=debug,skiff_ingress=debug",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("skiff server exited early ({status}); log:\n{}", self.log());
            }
            if self.kubeconfig().exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in time; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The last `n` lines the server logged, its request lines left out: what a failing
    /// test shows of what the server did.
    #[allow(dead_code)]
    pub fn log_besides_requests(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("skiff_apiserver::router"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// [`eventually`], failing with `what` was awaited and what the server logged.
    #[allow(dead_code)]
    pub fn eventually<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        until(timeout, f, || {
            format!(
                " ({what})\nserver log, requests aside:\n{}",
                self.log_besides_requests(60)
            )
        })
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            // An agent stops its pods and containerd before it exits.
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
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kcache"))
            .args(args);
        cmd.env_remove("KUBECONFIG");
        cmd
    }

    /// kubectl with nothing but `token` for credentials.
    pub fn kubectl_token(&self, token: &str, args: &[&str]) -> Output {
        self.kubectl_with(&[format!("--token={token}")], args)
    }

    /// kubectl with nothing but a client certificate and its key (files) for credentials.
    pub fn kubectl_cert(&self, cert: &Path, key: &Path, args: &[&str]) -> Output {
        let creds = [
            format!("--client-certificate={}", cert.display()),
            format!("--client-key={}", key.display()),
        ];
        self.kubectl_with(&creds, args)
    }

    fn kubectl_with(&self, creds: &[String], args: &[&str]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig=/dev/null")
            .arg(format!("--server=https://127.0.0.1:{}", self.port))
            .arg(format!(
                "--certificate-authority={}",
                self.data_dir().join("tls/ca.crt").display()
            ));
        cmd.args(creds)
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl")
    }

    /// Who the API server says `token` is, asked with nothing but the token (None:
    /// refused).
    pub fn whoami(&self, token: &str) -> Option<String> {
        let args = [
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ];
        let out = self.kubectl_token(token, &args);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    pub fn kubectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.kubectl_cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run kubectl")
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {:?} failed: {}\n{}\nserver log tail:\n{}",
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply -f -` with `yaml`, asserts success, returns stdout.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Whether kubectl says the object is not there: NotFound, not just any failure
    /// (an unreachable or refusing server fails too).
    pub fn absent(&self, args: &[&str]) -> bool {
        let out = self.kubectl(args);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("(NotFound)")
    }

    /// Asserts that `kubectl get …` answers NotFound.
    pub fn gone(&self, args: &[&str]) {
        let err = self.fails(args);
        assert!(err.contains("(NotFound)"), "kubectl {args:?}: {err}");
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {:?} should fail, printed: {}",
            args,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` until it returns Some or the timeout passes.
pub fn eventually<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    until(timeout, f, String::new)
}

/// Polls `f` until it gives a value; past `timeout` fails, `why` adding to the message.
fn until<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    why: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("condition not met within {timeout:?}{}", why());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `tests/python/client_e2e.py` with the official Kubernetes Python client (from
/// the venv `scripts/deps.sh` makes) against `c`; fails with its output.
#[allow(dead_code)]
pub fn python_client(c: &Cluster, args: &[&str]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../../target/pyclient/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/deps.sh (it installs the Python client)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("tests/python/client_e2e.py"))
        .arg(c.kubeconfig())
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python client e2e failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
