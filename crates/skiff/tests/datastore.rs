//! `--datastore-endpoint` on a real etcd (Debian's `etcd-server`, started by the test):
//! objects made through kubectl live under `/registry/…` where `etcdctl` users look for
//! them and survive a `kill -9` of the server; a server whose etcd is down at start says
//! so and waits for it instead of failing. `--cluster-init`: the server runs its own
//! member (mutual TLS from the cluster CA), moves SQLite's state into it, and stops it
//! with itself.

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
    let ep = e.endpoint();
    e.kill();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(4));
        e.spawn();
        e
    });
    let c = Cluster::start_with(&["server", "--datastore-endpoint", &ep]);
    let _e = later.join().unwrap();
    assert!(
        c.log().contains("etcd is not reachable yet; retrying"),
        "{}",
        c.log()
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
