//! Three servers on one machine sharing an embedded etcd cluster (`--cluster-init`, two
//! joined), and a simulated-node agent behind its load balancer. Under a steady stream
//! of compare-and-swap increments of one ConfigMap and of creates through all three
//! servers, with a Deployment rolling out, `kill -9` of a server (its etcd member dies
//! with it) and then of the etcd leader (the cluster is without a quorum until its
//! server's supervisor restarts it):
//! - the history of reads and swaps is linearizable (`skiff_store::history`, as Jepsen's
//!   knossos checks): no acknowledged write lost, no stale read, no lost update; every
//!   acknowledged create is there;
//! - a watch from the counter's creation, moved to another server whenever its own dies
//!   or drops it, resumes from the last resourceVersion it saw with no gap and no
//!   duplicate, and shows every acknowledged write at its resourceVersion;
//! - the rollout completes, and the agent, started against the server that is killed,
//!   keeps renewing its node's Lease through the others and never goes NotReady.

mod common;

use common::Cluster;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use skiff_store::history::{self, Call, Outcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Microseconds since the run's common origin: the history's clock.
fn micros(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

fn value_of(cm: &ConfigMap) -> u64 {
    cm.data
        .as_ref()
        .and_then(|d| d.get("n")?.parse().ok())
        .unwrap_or(0)
}

fn rv_of(cm: &ConfigMap) -> u64 {
    let rv = cm.metadata.resource_version.as_deref();
    rv.and_then(|r| r.parse().ok())
        .expect("a numeric resourceVersion")
}

/// What the workers saw: every call, for the checker, and the values and
/// resourceVersions of the acknowledged writes, for the watch.
#[derive(Default)]
struct Record {
    ops: Vec<history::Op>,
    acked: Vec<(u64, u64)>,
}

impl Record {
    fn push(&mut self, process: u32, call: Call, invoke: u64, t0: Instant, outcome: Outcome) {
        let complete = micros(t0);
        self.ops.push(history::Op {
            process,
            call,
            invoke,
            complete,
            outcome,
        });
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.ops.iter().filter(|o| o.outcome == outcome).count()
    }
}

/// One increment: a read, then a replace carrying the read's resourceVersion (so a
/// compare-and-swap). False if it did not go through.
async fn increment(api: &Api<ConfigMap>, t0: Instant, p: u32, rec: &mut Record) -> bool {
    let invoke = micros(t0);
    let Ok(cur) = api.get("counter").await else {
        return false;
    };
    let n = value_of(&cur);
    rec.push(p, Call::Read { value: n }, invoke, t0, Outcome::Ok);
    let mut next = cur;
    next.data = Some(BTreeMap::from([("n".to_string(), (n + 1).to_string())]));
    let invoke = micros(t0);
    let outcome = match api.replace("counter", &PostParams::default(), &next).await {
        Ok(put) => {
            rec.acked.push((n + 1, rv_of(&put)));
            Outcome::Ok
        }
        Err(e) if refused(&e) => Outcome::Failed,
        Err(_) => Outcome::Unknown,
    };
    rec.push(p, Call::Cas { from: n, to: n + 1 }, invoke, t0, outcome);
    outcome == Outcome::Ok
}

/// Whether a write surely did not happen: refused as stale (409) or invalid, or never
/// sent (the connection was refused).
fn refused(e: &kube::Error) -> bool {
    if let kube::Error::Api(s) = e {
        return s.code == 409 || s.code == 422;
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let io = s.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = s.source();
    }
    false
}

/// Six clients incrementing the counter through the three servers (two each) until
/// `stop`.
fn spawn_workers(
    rt: &tokio::runtime::Runtime,
    apis: &[Api<ConfigMap>],
    t0: Instant,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Record>> {
    (0..6)
        .map(|w| {
            let (api, stop) = (apis[w % 3].clone(), stop.clone());
            rt.spawn(async move {
                let mut rec = Record::default();
                // Bounded: at most this many attempts, and never past the stop.
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if !increment(&api, t0, w as u32, &mut rec).await {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                rec
            })
        })
        .collect()
}

/// Two clients creating ConfigMaps (labelled `ha=item`) through the servers in turn
/// until `stop`; the names whose creation was acknowledged.
fn spawn_creators(
    rt: &tokio::runtime::Runtime,
    apis: &[Api<ConfigMap>],
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..2)
        .map(|w| {
            let (apis, stop) = (apis.to_vec(), stop.clone());
            rt.spawn(async move {
                let mut acked = Vec::new();
                for i in 0..20_000usize {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("item-{w}-{i}");
                    let mut cm = ConfigMap::default();
                    cm.metadata.name = Some(name.clone());
                    cm.metadata.labels = Some([("ha".to_string(), "item".to_string())].into());
                    match apis[i % 3].create(&PostParams::default(), &cm).await {
                        Ok(_) => acked.push(name),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                acked
            })
        })
        .collect()
}

/// Every acknowledged create is there.
fn check_creates(api: &Api<ConfigMap>, rt: &tokio::runtime::Runtime, acked: &[String]) {
    let lp = kube::api::ListParams::default().labels("ha=item");
    let listed = rt.block_on(api.list(&lp)).unwrap();
    let names: std::collections::BTreeSet<String> = listed
        .items
        .iter()
        .filter_map(|cm| cm.metadata.name.clone())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "{} creates acknowledged, all there ({} listed)",
        acked.len(),
        names.len()
    );
}

/// One connection of the watcher: to which server (index), from which
/// resourceVersion, when (the history's clock), what it brought and why it ended.
#[derive(Debug)]
#[allow(dead_code)] // Read through Debug, in reports.
struct Segment {
    server: usize,
    from_rv: u64,
    start: u64,
    end: u64,
    events: usize,
    why: String,
}

#[derive(Debug, Default)]
struct WatchLog {
    /// (value, resourceVersion) of every change seen, in order.
    seen: Vec<(u64, u64)>,
    segments: Vec<Segment>,
    /// The answer if a server said 410 Gone: the watch's history was gone.
    gone: Option<String>,
    /// Events a counter that is only ever replaced should not produce.
    odd: Vec<String>,
}

/// A raw watch of the counter that, whenever its stream ends or fails, watches again
/// through the next server from the last resourceVersion it saw (no relist: a relist
/// would hide a gap).
struct Watcher {
    apis: Vec<Api<ConfigMap>>,
    t0: Instant,
    rv: u64,
    /// Stop once this value is seen (set when the load is over).
    target: Arc<AtomicU64>,
    deadline: Instant,
    log: WatchLog,
}

impl Watcher {
    fn done(&self) -> bool {
        let last = self.log.seen.last().map_or(0, |s| s.0);
        last >= self.target.load(Ordering::Relaxed)
            || Instant::now() > self.deadline
            || self.log.gone.is_some()
    }

    async fn run(mut self, order: [usize; 3]) -> WatchLog {
        let wp = WatchParams::default().fields("metadata.name=counter");
        // Bounded by `done`'s deadline.
        for &server in order.iter().cycle() {
            if self.done() {
                break;
            }
            match self.apis[server].watch(&wp, &self.rv.to_string()).await {
                Ok(stream) => self.follow(server, stream.boxed()).await,
                Err(kube::Error::Api(s)) if s.code == 410 => self.log.gone = Some(format!("{s:?}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        self.log
    }

    async fn follow(
        &mut self,
        server: usize,
        mut stream: BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>,
    ) {
        let (from_rv, start, before) = (self.rv, micros(self.t0), self.log.seen.len());
        let why = loop {
            if self.done() {
                break "done".to_string();
            }
            // A short wait, to look at `done` again.
            match tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
                Err(_) => continue,
                Ok(None) => break "ended".to_string(),
                Ok(Some(Err(e))) => break e.to_string(),
                Ok(Some(Ok(ev))) => {
                    if let Some(why) = self.take(ev) {
                        break why;
                    }
                }
            }
        };
        self.log.segments.push(Segment {
            server,
            from_rv,
            start,
            end: micros(self.t0),
            events: self.log.seen.len() - before,
            why,
        });
    }

    /// Takes one event in; Some(why) if the stream is over.
    fn take(&mut self, ev: WatchEvent<ConfigMap>) -> Option<String> {
        match ev {
            WatchEvent::Added(cm) | WatchEvent::Modified(cm) => {
                self.rv = rv_of(&cm);
                self.log.seen.push((value_of(&cm), self.rv));
            }
            WatchEvent::Bookmark(b) => {
                let rv = b.metadata.resource_version.parse().unwrap_or(0);
                self.rv = self.rv.max(rv);
            }
            WatchEvent::Deleted(cm) => self.log.odd.push(format!("DELETED {cm:?}")),
            WatchEvent::Error(s) if s.code == 410 => {
                self.log.gone = Some(format!("{s:?}"));
                return Some("410 Gone".into());
            }
            WatchEvent::Error(s) => return Some(format!("error event {s:?}")),
        }
        None
    }
}

/// The watch resumed without a gap or a duplicate, showed every acknowledged write as
/// acknowledged, and was on `killed` when it died (at `killed_at`) and resumed.
fn check_watch(log: &WatchLog, acked: &[(u64, u64)], last: u64, killed: usize, killed_at: u64) {
    assert!(
        log.gone.is_none(),
        "a server answered the resumed watch 410 Gone (its resourceVersion no longer \
         servable, within seconds): {:?}\n{:#?}",
        log.gone,
        log.segments
    );
    assert!(log.odd.is_empty(), "{:?}", log.odd);
    for w in log.seen.windows(2) {
        assert!(
            w[0].1 < w[1].1,
            "resourceVersion {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    let top = log.seen.last().map_or(0, |s| s.0);
    assert!(
        top >= last,
        "the watch ended at {top}, the counter is at {last}: {:#?}",
        log.segments
    );
    if let Some(i) = (0..log.seen.len()).find(|&i| log.seen[i].0 != i as u64 + 1) {
        let around = &log.seen[i.saturating_sub(3)..(i + 3).min(log.seen.len())];
        panic!(
            "the watch skipped or repeated a value at {}: {around:?}",
            i + 1
        );
    }
    let by_value: HashMap<u64, u64> = log.seen.iter().copied().collect();
    for (v, rv) in acked {
        assert_eq!(
            by_value.get(v),
            Some(rv),
            "acknowledged write of {v} at {rv}"
        );
    }
    let on_killed = log
        .segments
        .iter()
        .position(|s| s.server == killed && s.start < killed_at && s.end >= killed_at);
    assert!(
        on_killed.is_some_and(|i| i + 1 < log.segments.len()),
        "the watch was not on the killed server when it died, or never resumed: {:#?}",
        log.segments
    );
}

/// Rolls out slowly enough (six one-pod steps, each waiting `minReadySeconds`) to be in
/// flight through both faults.
const ROLL: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 6
  minReadySeconds: 3
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: roll}
  template:
    metadata:
      labels: {app: roll}
    spec:
      containers:
      - name: app
        image: nginx
";

/// The rollout finished: the second ReplicaSet has every replica available, the first
/// none left.
fn check_rollout(c: &Cluster) {
    c.ok(&["rollout", "status", "deployment/roll", "--timeout=120s"]);
    let sets: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "rs", "-l", "app=roll", "-o", "json"])).unwrap();
    let revision = |r: &str| {
        let items = sets["items"].as_array().unwrap();
        let rev = |s: &&serde_json::Value| {
            s["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == r
        };
        items
            .iter()
            .find(rev)
            .cloned()
            .unwrap_or_else(|| panic!("no revision {r}: {sets}"))
    };
    let new = revision("2");
    assert_eq!(new["spec"]["replicas"], 6, "{new}");
    assert_eq!(new["status"]["availableReplicas"], 6, "{new}");
    assert_eq!(revision("1")["spec"]["replicas"], 0, "{sets}");
}

/// Ready's status and when it last changed.
fn ready(c: &Cluster) -> String {
    let cond = "{.status.conditions[?(@.type==\"Ready\")]";
    let path = format!("jsonpath={cond}.status}} {cond}.lastTransitionTime}}");
    let out = c.kubectl(&["get", "node", "ha-0", "-o", &path]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The etcd leader's process, among the members of `cs` (index into `cs`, pid).
fn etcd_leader(cs: &[&Cluster]) -> Option<(usize, i32)> {
    cs.iter().enumerate().find_map(|(i, c)| {
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
        (s["leader"] == s["header"]["member_id"]).then_some((i, pid))
    })
}

/// `kill -9` of the etcd leader's process; which of `cs` it belonged to.
fn kill_etcd_leader(cs: &[&Cluster]) -> Option<usize> {
    let (i, pid) = etcd_leader(cs)?;
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    Some(i)
}

fn start_agent(s1: &Cluster, s3: &Cluster) -> Agent {
    let join = std::fs::read_to_string(s1.data_dir().join("token")).unwrap();
    Agent(
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
    )
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
    let created: u64 = s1
        .ok(&[
            "create",
            "configmap",
            "counter",
            "--from-literal=n=0",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    let _agent = start_agent(&s1, &s3);
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
        ready(&s1).starts_with("True ").then_some(())
    });
    let ready_at = Instant::now();
    s1.apply(ROLL);
    s1.ok(&["rollout", "status", "deployment/roll", "--timeout=90s"]);
    let ready_before = ready(&s1);
    // Learned every server (the Endpoints are read every 5 s).
    std::thread::sleep(Duration::from_secs(6).saturating_sub(ready_at.elapsed()));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let apis: Vec<Api<ConfigMap>> = [&s1, &s2, &s3]
        .iter()
        .map(|c| Api::default_namespaced(rt.block_on(c.kube_client())))
        .collect();
    let t0 = Instant::now();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let watcher = Watcher {
        apis: apis.clone(),
        t0,
        rv: created,
        target: target.clone(),
        deadline: t0 + Duration::from_secs(90),
        log: WatchLog::default(),
    };
    // First on s3, the server that dies.
    let watch = rt.spawn(watcher.run([2, 0, 1]));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_workers(&rt, &apis, t0, &stop);
    let creators = spawn_creators(&rt, &apis, &stop);
    std::thread::sleep(Duration::from_secs(3));
    s1.ok(&["set", "env", "deployment/roll", "ROLL=1"]);
    let killed_at = micros(t0);
    s3.kill9();
    let before = renewed(&s1);
    let rollout = s1.kubectl(&["rollout", "status", "deployment/roll", "--watch=false"]);
    let rollout = String::from_utf8_lossy(&rollout.stdout);
    assert!(
        !rollout.contains("successfully"),
        "rolled out before the faults: {rollout}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let leader = kill_etcd_leader(&[&s1, &s2]);
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::Relaxed);
    let mut rec = Record::default();
    for w in workers {
        let r = rt.block_on(w).unwrap();
        rec.ops.extend(r.ops);
        rec.acked.extend(r.acked);
    }
    let created: Vec<String> = creators
        .into_iter()
        .flat_map(|c| rt.block_on(c).unwrap())
        .collect();
    let leader = leader.expect("no etcd leader found among the first two servers");
    eprintln!(
        "killed s3, then s{}'s etcd member (the leader); at the first kill: {rollout}",
        leader + 1
    );
    // The surviving server whose etcd member lived throughout.
    let (steady, steady_api) = if leader == 0 { (&s2, 1) } else { (&s1, 0) };
    let acked = rec.acked.len() as u64;
    assert!(acked > 20, "too few increments acknowledged: {acked}");

    // The final value, read after the load as one more call of the history.
    let last = common::eventually(Duration::from_secs(60), || {
        let invoke = micros(t0);
        let n = value_of(&rt.block_on(apis[steady_api].get("counter")).ok()?);
        rec.push(6, Call::Read { value: n }, invoke, t0, Outcome::Ok);
        Some(n)
    });
    target.store(last, Ordering::Relaxed);
    let unknown = rec.count(Outcome::Unknown) as u64;
    eprintln!(
        "history: {} calls ({} failed, {unknown} unknown), {acked} acknowledged increments, final {last}",
        rec.ops.len(),
        rec.count(Outcome::Failed),
    );
    let checked = Instant::now();
    if let Err(e) = history::check(0, &rec.ops) {
        panic!("{e}");
    }
    eprintln!("linearizable (checked in {:?})", checked.elapsed());
    assert!(
        (acked..=acked + unknown).contains(&last),
        "final {last} with {acked} acknowledged and {unknown} unknown increments"
    );

    let log = rt.block_on(watch).unwrap();
    for s in &log.segments {
        eprintln!("watch: {s:?}");
    }
    check_watch(&log, &rec.acked, last, 2, killed_at);
    check_creates(&apis[steady_api], &rt, &created);

    // The node renewed its Lease after its server died (every 10 s, through another),
    // and was never taken for dead.
    common::eventually(Duration::from_secs(30), || {
        (renewed(steady) > before).then_some(())
    });
    assert_eq!(
        ready(steady),
        ready_before,
        "the node's Ready condition changed"
    );
    check_rollout(steady);
    s3.restart();
    s1.restart();
}
