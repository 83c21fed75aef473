//! A node survives its own processes dying (root, a real containerd): `skiff up` killed
//! with -9 leaves its containerd and pods running, and the next start stops that
//! containerd before starting its own (never two on one root) without restarting a
//! container; a containerd killed under a running agent is started again and every pod
//! reconciled, including a container that died while containerd was away.

mod common;

use common::node::{container_pid, containerds, http_get, wait_phase, write_test_images};
use common::{Cluster, eventually};
use serde_json::Value;
use std::time::Duration;

fn container(p: &Value) -> (String, i64) {
    let cs = &p["status"]["containerStatuses"][0];
    (
        cs["containerID"].as_str().unwrap().to_string(),
        cs["restartCount"].as_i64().unwrap(),
    )
}

fn kill9(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -9 {pid}");
}

#[test]
fn node_outlives_its_processes() {
    let dir = tempfile::tempdir().unwrap();
    write_test_images(&dir.path().join("data/agent/images"));
    let mut c = Cluster::start_in(dir, &["up", "--offline"]);
    let agent_dir = c.data_dir().join("agent");
    c.ok(&["run", "web", "--image=nginx"]);
    let before = wait_phase(&c, "web", "Running");
    let ip = before["status"]["podIP"].as_str().unwrap().to_string();
    let first = containerds(&agent_dir);
    assert_eq!(first.len(), 1, "containerds: {first:?}");

    // skiff dies without a word: containerd and the pod run on.
    c.kill9();
    assert_eq!(containerds(&agent_dir), first, "containerd died with skiff");
    assert!(http_get(&ip, 80).contains("hello from skiff"));

    // The next start stops the old containerd first: one containerd, same container.
    c.spawn();
    let second = eventually(Duration::from_secs(60), || {
        let now = containerds(&agent_dir);
        (now.len() == 1 && now != first).then_some(now)
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        containerds(&agent_dir),
        second,
        "a second containerd started"
    );
    let after = wait_phase(&c, "web", "Running");
    assert_eq!(
        container(&after),
        container(&before),
        "the container was replaced"
    );
    assert!(http_get(&ip, 80).contains("hello from skiff"));

    // containerd dies under a running agent, and the pod's process with it while it is
    // away: containerd comes back, and the agent restarts the container as kubelet
    // would (same sandbox, so same IP).
    let (id, _) = container(&after);
    kill9(second[0]);
    kill9(container_pid(&agent_dir, &id));
    let third = eventually(Duration::from_secs(60), || {
        let now = containerds(&agent_dir);
        (now.len() == 1 && now != second).then_some(now)
    });
    let restarted = eventually(Duration::from_secs(90), || {
        let p = common::node::pod_json(&c, "web")?;
        let ready = p["status"]["containerStatuses"][0]["ready"] == true;
        (ready && container(&p).1 == 1).then_some(p)
    });
    assert_ne!(container(&restarted).0, id);
    assert_eq!(restarted["status"]["podIP"], before["status"]["podIP"]);
    assert!(http_get(&ip, 80).contains("hello from skiff"));
    // New pods run on the new containerd.
    c.ok(&["run", "fresh", "--image=nginx"]);
    wait_phase(&c, "fresh", "Running");
    assert_eq!(containerds(&agent_dir), third);

    c.ok(&["delete", "pod", "web", "fresh", "--grace-period=1"]);
    c.stop();
    assert!(
        containerds(&agent_dir).is_empty(),
        "containerd left running"
    );
}
