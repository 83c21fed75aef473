//! `--datastore-endpoint` on a real etcd (Debian's `etcd-server`, started by the test):
//! objects made through kubectl live under `/registry/…` where `etcdctl` users look for
//! them and survive a `kill -9` of the server; a server whose etcd is down at start says
//! so and waits for it instead of failing.

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
