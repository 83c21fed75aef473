//! Three servers on one machine sharing an embedded etcd cluster (`--cluster-init`, two
//! joined), and a simulated-node agent behind its load balancer. Under a steady stream
//! of compare-and-swap increments of one ConfigMap through all three servers, `kill -9`
//! of a server and then of the etcd leader: no acknowledged increment is lost (each
//! acknowledged value is unique, values rise with resourceVersions, and the final value
//! is every acknowledged increment plus at most the increments whose outcome was never
//! known), and a write that completed before another began has the smaller
//! resourceVersion (real-time order), as a linearizable compare-and-swap register must.
//! The agent starts against the server that is killed: its node keeps renewing its
//! Lease through the others.

mod common;

use common::Cluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn server(extra: &[&str]) -> Cluster {
    // Loopback is where they listen here, so that is what the Endpoints must say for
    // the agent's balancer to reach them.
    let mut args = vec!["server".to_string()];
    for f in ["--etcd-client-port", "--etcd-peer-port"] {
        args.push(f.into());
        args.push(common::free_port().to_string());
    }
    args.extend(["--advertise-address".to_string(), "127.0.0.1".to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cluster::start_with(&args)
}

/// One acknowledged increment: the value written, its resourceVersion, and when the
/// request started and ended.
#[derive(Debug, Clone)]
struct Op {
    value: u64,
    rv: u64,
    start: Instant,
    end: Instant,
}

enum Outcome {
    Acked(u64, u64),
    /// Refused: the read was stale (409) or nothing was sent.
    Failed,
    /// Sent, but no answer: it may or may not have happened.
    Unknown,
}

async fn increment(api: &Api<ConfigMap>) -> Outcome {
    let Ok(cur) = api.get("counter").await else {
        return Outcome::Failed;
    };
    let n: u64 = cur
        .data
        .as_ref()
        .and_then(|d| d.get("n")?.parse().ok())
        .unwrap_or(0);
    let mut next = cur.clone();
    next.data = Some(BTreeMap::from([("n".to_string(), (n + 1).to_string())]));
    // resourceVersion in `next` makes the replace a compare-and-swap.
    match api.replace("counter", &PostParams::default(), &next).await {
        Ok(put) => match put.metadata.resource_version.and_then(|r| r.parse().ok()) {
            Some(rv) => Outcome::Acked(n + 1, rv),
            None => Outcome::Unknown,
        },
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => Outcome::Failed,
        Err(_) => Outcome::Unknown,
    }
}

/// The agent process, killed (by its PID) when dropped.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ends the etcd members of these data dirs when dropped: a server killed with -9 (or a
/// failed assertion before its restart) leaves its member running.
struct Reap(Vec<std::path::PathBuf>);

impl Drop for Reap {
    fn drop(&mut self) {
        for dir in &self.0 {
            if let Some(pid) = etcd_pid_in(dir) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn etcd_pid_of(c: &Cluster) -> Option<i32> {
    etcd_pid_in(&c.data_dir())
}

fn etcd_pid_in(data_dir: &std::path::Path) -> Option<i32> {
    let want = format!("--data-dir={}", data_dir.join("db/etcd").display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmd.split(|b| *b == 0)
            .any(|a| a == want.as_bytes())
            .then_some(pid)
    })
}

#[test]
fn no_acknowledged_write_is_lost_when_a_server_and_the_etcd_leader_die() {
    let mut s1 = server(&["--cluster-init"]);
    let token = std::fs::read_to_string(s1.data_dir().join("server-token")).unwrap();
    let url = format!("https://127.0.0.1:{}", s1.port);
    let s2 = server(&["--server", &url, "--token", token.trim()]);
    let mut s3 = server(&["--server", &url, "--token", token.trim()]);
    // Declared after the servers: dropped (and run) before they are.
    let _reap = Reap(vec![s1.data_dir(), s2.data_dir(), s3.data_dir()]);
    s1.ok(&["create", "configmap", "counter", "--from-literal=n=0"]);
    let join = std::fs::read_to_string(s1.data_dir().join("token")).unwrap();
    let _agent = Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "agent",
                "--simulate",
                "1",
                "--simulate-prefix",
                "ha",
                "--lb-server-port",
                "0",
            ])
            .arg(format!("--server=https://127.0.0.1:{}", s3.port))
            .arg(format!("--token={}", join.trim()))
            .arg("--ca-file")
            .arg(s1.data_dir().join("tls/ca.crt"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(s1.dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let renewed = |c: &Cluster| {
        let out = c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "ha-0",
            "-o",
            "jsonpath={.spec.renewTime}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    common::eventually(Duration::from_secs(60), || {
        let out = s1.kubectl(&[
            "get",
            "node",
            "ha-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
    // Learned every server (the Endpoints are read every 5 s).
    std::thread::sleep(Duration::from_secs(6));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let apis: Vec<Api<ConfigMap>> = [&s1, &s2, &s3]
        .iter()
        .map(|c| Api::default_namespaced(rt.block_on(c.kube_client())))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let api = apis[w % 3].clone();
        let stop = stop.clone();
        workers.push(rt.spawn(async move {
            let (mut ops, mut unknown) = (Vec::new(), 0u64);
            // Bounded: at most this many attempts, and never past the stop.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let start = Instant::now();
                match increment(&api).await {
                    Outcome::Acked(value, rv) => ops.push(Op {
                        value,
                        rv,
                        start,
                        end: Instant::now(),
                    }),
                    Outcome::Failed => tokio::time::sleep(Duration::from_millis(20)).await,
                    Outcome::Unknown => {
                        unknown += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ops, unknown)
        }));
    }
    std::thread::sleep(Duration::from_secs(3));
    s3.kill9();
    let before = renewed(&s1);
    std::thread::sleep(Duration::from_secs(3));
    // The etcd leader: the member etcd says leads (kill -9 of its process).
    let leader = [&s1, &s2].into_iter().find_map(|c| {
        let pid = etcd_pid_of(c)?;
        let status = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://127.0.0.1:{}", c.args[2]))
            .arg(format!(
                "--cacert={}",
                c.data_dir().join("tls/etcd/ca.crt").display()
            ))
            .arg(format!(
                "--cert={}",
                c.data_dir().join("tls/etcd/client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                c.data_dir().join("tls/etcd/client.key").display()
            ))
            .args(["endpoint", "status", "-w", "json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
        let s = &v[0]["Status"];
        (s["leader"] == s["header"]["member_id"]).then_some(pid)
    });
    if let Some(pid) = leader {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::Relaxed);
    let (mut ops, mut unknown) = (Vec::new(), 0);
    for w in workers {
        let (o, u) = rt.block_on(w).unwrap();
        ops.extend(o);
        unknown += u;
    }
    assert!(
        leader.is_some(),
        "no etcd leader found among the first two servers"
    );
    assert!(
        ops.len() > 20,
        "too few increments acknowledged: {}",
        ops.len()
    );

    // No two acknowledged writes wrote the same value (that would be a lost update),
    // and values rise with revisions.
    ops.sort_by_key(|o| o.rv);
    for pair in ops.windows(2) {
        assert!(
            pair[0].value < pair[1].value,
            "{:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    // Real-time order: a write done before another began has the smaller revision.
    for a in &ops {
        for b in &ops {
            if a.end < b.start {
                assert!(
                    a.rv < b.rv,
                    "{a:?} finished before {b:?} began, yet has a later revision"
                );
            }
        }
    }
    // And the stored value is the last acknowledged one (s1's etcd may be the one
    // killed: its supervisor restarts it).
    let last = common::eventually(Duration::from_secs(60), || {
        let out = s1.kubectl(&["get", "configmap", "counter", "-o", "jsonpath={.data.n}"]);
        String::from_utf8_lossy(&out.stdout).parse::<u64>().ok()
    });
    let acked = ops.len() as u64;
    assert!(
        (acked..=acked + unknown).contains(&last),
        "final {last} with {acked} acknowledged and {unknown} unknown increments"
    );
    // The node renewed its Lease after its server died (every 10 s, through another).
    common::eventually(Duration::from_secs(30), || {
        (renewed(&s1) > before).then_some(())
    });
    eprintln!("{acked} acknowledged, {unknown} unknown, final {last}");
    s3.restart();
    s1.restart();
}
