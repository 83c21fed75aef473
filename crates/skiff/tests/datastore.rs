//! `--datastore-endpoint` on a real etcd (Debian's `etcd-server`, started by the test):
//! objects made through kubectl live under `/registry/…` where `etcdctl` users look for
//! them and survive a `kill -9` of the server; a server whose etcd is down at start says
//! so and waits for it instead of failing. `--cluster-init`: the server runs its own
//! member (mutual TLS from the cluster CA), moves SQLite's state into it, stops it with
//! itself, and starts afresh a member whose first start never answered. `skiff
//! etcd-member` lists the members and removes the one of a server that leaves, which
//! then stops, saying so.

mod common;

use common::Cluster;
use skiff_store::testing::Etcd;
use std::time::Duration;

fn etcdctl(e: &Etcd, args: &[&str]) -> String {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", e.endpoint()))
        .args(args)
        .output()
        .expect("etcdctl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn objects_live_in_etcd_under_the_registry_and_survive_kill_9() {
    let e = Etcd::start(tempfile::tempdir().unwrap().keep());
    let ep = e.endpoint();
    let mut c = Cluster::start_with(&["server", "--datastore-endpoint", &ep]);
    assert!(
        etcdctl(
            &e,
            &["get", "/registry/configmaps/default/app", "--keys-only"]
        )
        .is_empty()
    );
    c.ok(&["create", "configmap", "app", "--from-literal=k=v"]);
    let keys = etcdctl(
        &e,
        &[
            "get",
            "/registry/configmaps/default/",
            "--prefix",
            "--keys-only",
        ],
    );
    assert!(keys.contains("/registry/configmaps/default/app"), "{keys}");
    c.kill9();
    c.restart();
    assert_eq!(
        c.ok(&["get", "configmap", "app", "-o", "jsonpath={.data.k}"]),
        "v"
    );
}

#[test]
fn a_server_waits_for_an_etcd_that_is_down_at_start() {
    let mut e = Etcd::start(tempfile::tempdir().unwrap().keep());
    e.kill();
    let c = start_while(&mut e, |e| {
        std::thread::sleep(Duration::from_secs(4));
        e.spawn();
    });
    assert!(
        c.log().contains("etcd is not reachable yet; retrying"),
        "{}",
        c.log()
    );
    c.ok(&["create", "configmap", "after", "--from-literal=k=v"]);
}

/// An endpoint that takes connections but does not answer (as an etcd that is still
/// starting may): each attempt gives up after a few seconds instead of waiting for
/// keep-alive, and the server is ready once etcd answers.
#[test]
fn a_server_gives_up_on_attempts_that_get_no_answer() {
    let mut e = Etcd::start(tempfile::tempdir().unwrap().keep());
    let ep = e.endpoint();
    e.kill();
    let port: u16 = ep.rsplit(':').next().unwrap().parse().unwrap();
    // Bound but never accepting: the kernel completes the handshakes, nothing answers.
    let mute = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let c = start_while(&mut e, |e| {
        std::thread::sleep(Duration::from_secs(8));
        drop(mute);
        e.spawn();
    });
    assert!(c.log().contains("no answer within 5s"), "{}", c.log());
    c.ok(&["create", "configmap", "after", "--from-literal=k=v"]);
}

/// Starts a server on etcd `ep` while `meanwhile` runs; a server that does not become
/// ready fails the test with etcd's log beside its own.
fn start_while(e: &mut Etcd, meanwhile: impl FnOnce(&mut Etcd)) -> Cluster {
    let args = ["server", "--datastore-endpoint", &e.endpoint()].map(String::from);
    let server = std::thread::spawn(move || {
        Cluster::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
    });
    meanwhile(e);
    match server.join() {
        Ok(c) => c,
        Err(why) => {
            let why = why
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "the server did not start".into());
            panic!("{why}\netcd's log:\n{}", e.log())
        }
    }
}

/// A `--cluster-init` server's etcd member may be killed before it has bootstrapped
/// (its first second) and then never answer. Its first start is marked until the member
/// answers; data with the mark is set aside at the next start, and data without it (a
/// member's, however broken) is never touched.
#[test]
fn a_member_whose_first_start_never_answered_starts_afresh() {
    fn unfinished(mark: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("data/db/etcd/member/wal");
        std::fs::create_dir_all(&wal).unwrap();
        // What etcd cannot start from, standing for a member that cannot elect itself.
        std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"torn").unwrap();
        if mark {
            std::fs::write(dir.path().join("data/db/etcd.bootstrapping"), b"").unwrap();
        }
        dir
    }
    let set_aside = |db: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(db)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("etcd.unfinished-"))
            .collect()
    };
    let args = |dir| {
        let (client, peer) = (
            common::free_port().to_string(),
            common::free_port().to_string(),
        );
        let a = [
            "server",
            "--cluster-init",
            "--etcd-client-port",
            &client,
            "--etcd-peer-port",
            &peer,
        ];
        Cluster::start_in(dir, &a)
    };
    // Without the mark: kept, and the server does not come up on it.
    let mut kept = unfinished(false);
    kept.disable_cleanup(true); // outlives the failed start, to be looked at
    let path = kept.path().to_path_buf();
    let refused = std::thread::spawn(move || args(kept)).join();
    assert!(
        refused.is_err(),
        "a server came up on data etcd cannot read"
    );
    let db = path.join("data/db");
    assert!(db.join("etcd/member/wal").exists(), "kept where it was");
    assert!(set_aside(&db).is_empty(), "{:?}", set_aside(&db));
    std::fs::remove_dir_all(&path).unwrap();
    // With it: set aside, and the member starts afresh.
    let c = args(unfinished(true));
    assert!(
        c.log().contains("first start never answered"),
        "{}",
        c.log()
    );
    let db = c.data_dir().join("db");
    let aside = set_aside(&db);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(db.join(&aside[0]).join("member/wal").exists());
    assert!(
        !db.join("etcd.bootstrapping").exists(),
        "the new member answered"
    );
    c.ok(&["create", "configmap", "after", "--from-literal=k=v"]);
}

#[test]
fn cluster_init_runs_its_own_etcd_and_moves_sqlite_state_into_it() {
    let mut c = Cluster::start_with(&["server"]);
    c.ok(&["create", "configmap", "before", "--from-literal=k=v"]);
    let (client, peer) = (common::free_port(), common::free_port());
    c.stop();
    c.args = [
        "server",
        "--cluster-init",
        "--etcd-client-port",
        &client.to_string(),
        "--etcd-peer-port",
        &peer.to_string(),
    ]
    .map(String::from)
    .to_vec();
    c.spawn();
    // What SQLite held is served from etcd now.
    assert_eq!(
        c.ok(&["get", "configmap", "before", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    c.ok(&["create", "configmap", "after", "--from-literal=k=w"]);
    let data = c.data_dir();
    assert!(!data.join("db/state.db").exists());
    assert!(data.join("db/state.db.moved-to-etcd").exists());
    // The member speaks mutual TLS only, with certificates from the cluster CA.
    let tls = data.join("tls/etcd");
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://127.0.0.1:{client}"))
        .arg(format!("--cacert={}", tls.join("ca.crt").display()))
        .arg(format!("--cert={}", tls.join("client.crt").display()))
        .arg(format!("--key={}", tls.join("client.key").display()))
        .args([
            "get",
            "/registry/configmaps/default/",
            "--prefix",
            "--keys-only",
        ])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&out.stdout);
    assert!(
        keys.contains("/registry/configmaps/default/before")
            && keys.contains("/registry/configmaps/default/after"),
        "{keys}"
    );
    let anonymous = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://127.0.0.1:{client}"))
        .arg(format!("--cacert={}", tls.join("ca.crt").display()))
        .args([
            "--command-timeout=3s",
            "get",
            "/registry/",
            "--prefix",
            "--keys-only",
        ])
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "etcd answered a client without a certificate"
    );
    // A stop stops the member; a start brings it back with everything.
    c.restart();
    assert_eq!(
        c.ok(&["get", "configmap", "after", "-o", "jsonpath={.data.k}"]),
        "w"
    );
    c.stop();
    let gone = std::net::TcpStream::connect(("127.0.0.1", client)).is_err();
    assert!(gone, "the member outlived its server's clean stop");
}

fn etcd_ports() -> [String; 4] {
    [
        "--etcd-client-port".into(),
        common::free_port().to_string(),
        "--etcd-peer-port".into(),
        common::free_port().to_string(),
    ]
}

#[test]
fn a_second_server_joins_with_the_server_token_and_a_wrong_token_is_refused() {
    let p1 = etcd_ports();
    let mut args1 = vec!["server", "--cluster-init"];
    args1.extend(p1.iter().map(String::as_str));
    let c1 = Cluster::start_with(&args1);
    let token = std::fs::read_to_string(c1.data_dir().join("server-token")).unwrap();
    let url = format!("https://127.0.0.1:{}", c1.port);

    // A wrong secret behind the right CA hash: refused, and said so.
    let (hash, _) = token.split_once("::server:").unwrap();
    let wrong = format!("{hash}::server:not-the-secret");
    let dir = tempfile::tempdir().unwrap();
    let p = etcd_ports();
    let mut bad = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--server",
            &url,
            "--token",
            &wrong,
            "--bind-address",
            "127.0.0.1",
        ])
        .args([
            "--https-port",
            &common::free_port().to_string(),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(&p)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = common::eventually(Duration::from_secs(30), || bad.try_wait().unwrap());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut bad.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success() && err.contains("server token rejected"),
        "{status}: {err}"
    );

    let p2 = etcd_ports();
    let mut args2 = vec!["server", "--server", &url, "--token", token.trim()];
    args2.extend(p2.iter().map(String::as_str));
    let c2 = Cluster::start_with(&args2);
    c1.ok(&["create", "configmap", "from-one", "--from-literal=k=1"]);
    assert_eq!(
        c2.ok(&["get", "configmap", "from-one", "-o", "jsonpath={.data.k}"]),
        "1"
    );
    c2.ok(&["create", "configmap", "from-two", "--from-literal=k=2"]);
    common::eventually(Duration::from_secs(10), || {
        let out = c1.kubectl(&["get", "configmap", "from-two", "-o", "jsonpath={.data.k}"]);
        (String::from_utf8_lossy(&out.stdout) == "2").then_some(())
    });
    // One cluster: the same CA, two etcd members.
    let ca = |c: &Cluster| std::fs::read(c.data_dir().join("tls/ca.crt")).unwrap();
    assert_eq!(ca(&c1), ca(&c2));
    let tls = c1.data_dir().join("tls/etcd");
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://127.0.0.1:{}", p1[1]))
        .arg(format!("--cacert={}", tls.join("ca.crt").display()))
        .arg(format!("--cert={}", tls.join("client.crt").display()))
        .arg(format!("--key={}", tls.join("client.key").display()))
        .args(["member", "list"])
        .output()
        .unwrap();
    let members = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        members.lines().filter(|l| l.contains("started")).count(),
        2,
        "{members}"
    );

    // The `kubernetes` Service names both servers. (Stopping one would leave its etcd
    // with one member of two: no quorum, by etcd's rule; three servers are the HA shape.)
    let ports = |c: &Cluster| {
        c.ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[*].ports[0].port}",
        ])
    };
    let mut both = [c1.port.to_string(), c2.port.to_string()];
    both.sort();
    let both = both.join(" ");
    common::eventually(Duration::from_secs(15), || {
        (ports(&c1) == both).then_some(())
    });
    assert_eq!(ports(&c2), both);
    the_second_server_leaves(c1, c2, &p1, &p2);
}

/// `skiff etcd-member` beside the first server.
fn etcd_member(c: &Cluster, client_port: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("etcd-member")
        .args(args)
        .arg("--data-dir")
        .arg(c.data_dir())
        .args(["--etcd-client-port", client_port])
        .output()
        .unwrap()
}

/// Removing the second server's member: listed first, then gone; the running server
/// stops and says why, and so does a new start on its data dir; the first goes on
/// alone (a quorum of one) and the `kubernetes` Service names it alone.
fn the_second_server_leaves(c1: Cluster, mut c2: Cluster, p1: &[String; 4], p2: &[String; 4]) {
    let peer = format!("https://127.0.0.1:{}", p2[3]);
    let ls = etcd_member(&c1, &p1[1], &["ls"]);
    let listed = String::from_utf8_lossy(&ls.stdout).into_owned();
    let line = listed.lines().find(|l| l.contains(&peer));
    let name = line
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| {
            panic!(
                "{peer} not listed: {listed}{}",
                String::from_utf8_lossy(&ls.stderr)
            )
        });
    assert_eq!(
        listed.lines().filter(|l| l.contains("leader")).count(),
        1,
        "{listed}"
    );
    let out = etcd_member(&c1, &p1[1], &["remove", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&etcd_member(&c1, &p1[1], &["ls"]).stdout).into_owned();
    assert!(!listed.contains(&peer), "{listed}");

    let child = c2.child.as_mut().unwrap();
    let status = common::eventually(Duration::from_secs(60), || child.try_wait().unwrap());
    assert!(!status.success(), "{status}");
    assert!(
        c2.log().contains("was removed from the cluster"),
        "{}",
        c2.log()
    );
    c1.ok(&["create", "configmap", "after-leaving", "--from-literal=k=1"]);
    let port = c1.port.to_string();
    common::eventually(Duration::from_secs(30), || {
        let out = c1.kubectl(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[*].ports[0].port}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == port).then_some(())
    });

    // Its data dir no longer starts a member: said, not retried for ever.
    c2.child = None;
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(&c2.args)
        .args([
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            &common::free_port().to_string(),
        ])
        .arg("--data-dir")
        .arg(c2.data_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("was removed from the cluster"),
        "{err}"
    );
}

#[test]
fn snapshots_are_saved_listed_restored_and_deleted() {
    let p = etcd_ports();
    let mut args = vec!["server", "--cluster-init"];
    args.extend(p.iter().map(String::as_str));
    let mut c = Cluster::start_with(&args);
    let data = c.data_dir();
    let snapshot = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("etcd-snapshot")
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .args(["--etcd-client-port", &p[1]])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    assert!(!snapshot(&["ls"]).contains("before-"));
    c.ok(&["create", "configmap", "kept", "--from-literal=k=v"]);
    let saved = snapshot(&["save", "--name", "before"]);
    assert!(
        saved.starts_with("Snapshot ") && saved.contains("/db/snapshots/before-"),
        "{saved}"
    );
    let ls = snapshot(&["ls"]);
    let name = ls
        .split_whitespace()
        .find(|w| w.starts_with("before-"))
        .unwrap_or_else(|| panic!("{ls}"))
        .to_string();
    c.ok(&["create", "configmap", "later", "--from-literal=k=v"]);
    c.stop();

    let file = data.join("db/snapshots").join(&name);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(&args)
        .args(["--cluster-reset", "--cluster-reset-restore-path"])
        .arg(&file)
        .args([
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            &c.port.to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("restart without --cluster-reset"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.spawn();
    assert_eq!(
        c.ok(&["get", "configmap", "kept", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    assert!(
        c.absent(&["get", "configmap", "later"]),
        "the restore kept a write made after the snapshot"
    );

    snapshot(&["delete", &name]);
    assert!(!snapshot(&["ls"]).contains(&name));
}

/// A TCP forwarder on `127.0.0.2`, standing in for a load balancer in front of the
/// servers; its port. Its threads end with the test process.
fn registration_address(to: u16) -> u16 {
    use std::net::{TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

#[test]
fn the_kubeconfig_can_name_a_fixed_registration_address() {
    let port = common::free_port();
    let url = format!("https://127.0.0.2:{}", registration_address(port));
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start_on(port, dir, &["server", "--kubeconfig-server", &url]);
    // Ready means kubectl got through the kubeconfig, so through the forwarder, with
    // the certificate naming 127.0.0.2; the name is what is checked.
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: {url}\n")),
        "{kubeconfig}"
    );
    c.ok(&["get", "--raw", "/readyz"]);
    let out = c.kubectl(&[
        "--tls-server-name=elsewhere.test",
        "get",
        "--raw",
        "/readyz",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("x509"),
        "a name the certificate lacks must be refused: {err}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--kubeconfig-server", "http://lb.example:6443"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("must be an https:// URL"),
        "{err}"
    );
}
