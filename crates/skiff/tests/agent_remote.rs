//! A node agent in its own process, joined to `skiff server` over HTTPS as a remote node
//! is: it starts its static pods with no API server to talk to; while the API server is
//! away its pods keep running, and what happened meanwhile reaches the API once it is
//! back. Root, like agent.rs; cargo runs test binaries one
//! after another, so the two never share the machine's bridge and routes.

mod common;

use common::node::{containerds, pod_json, wait_phase, write_test_images};
use common::{Cluster, eventually, free_port, tail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `skiff agent`, stopped with SIGTERM (its pods and containerd with it) when dropped.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return; // reaped: its PID may be another process's by now
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pods_outlive_the_api_server() {
    let mut c = Cluster::start_with(&["server"]);
    let node_dir = c.dir.path().join("node");
    write_test_images(&node_dir.join("agent/images"));
    let token = std::fs::read_to_string(c.data_dir().join("token")).unwrap();
    // The API server is not there when the node starts: its static pod runs anyway.
    c.stop();
    let manifests = node_dir.join("agent/pod-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("standalone.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: standalone}\nspec:\n  hostNetwork: true\n  containers:\n  - {name: c, image: busybox, command: [sleep, '3600']}\n",
    )
    .unwrap();
    let agent_log = c.dir.path().join("agent.log");
    let port = c.port;
    let ca = c.data_dir().join("tls/ca.crt");
    let spawn_agent = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&agent_log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "agent",
                "--offline",
                "--kubelet-port",
                &free_port().to_string(),
                "--server",
                &format!("https://127.0.0.1:{port}"),
                "--token",
                token.trim(),
                "--ca-file",
            ])
            .arg(&ca)
            .arg("--data-dir")
            .arg(&node_dir)
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        AgentProc(child)
    };
    let mut agent = spawn_agent();
    let agent_tail = || tail(&std::fs::read_to_string(&agent_log).unwrap_or_default(), 40);
    let socket = node_dir.join("agent/containerd/containerd.sock");
    let tasks = || {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io", "tasks", "ls"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let count_running = |t: &str| {
        t.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("RUNNING"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Its sandbox and its container.
    while count_running(&tasks()) < 2 {
        assert!(
            Instant::now() < deadline,
            "the static pod did not start without the API server:\n{}\nagent:\n{}",
            tasks(),
            agent_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    c.spawn();
    eventually(Duration::from_secs(90), || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        (out.split_whitespace().nth(1) == Some("Ready")).then_some(())
    });
    // Once the API is there, the static pod shows as its mirror.
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let mirror = wait_phase(&c, &format!("standalone-{node}"), "Running");
    assert!(
        mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string(),
        "{mirror}"
    );

    // One pod that runs on; one that finishes when told through a hostPath, so that it
    // ends while the API server is away.
    let trigger = c.dir.path().join("trigger");
    std::fs::create_dir_all(&trigger).unwrap();
    c.ok(&[
        "run",
        "steady",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ]);
    let manifest = c.dir.path().join("waiter.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: waiter}}
spec:
  restartPolicy: Never
  containers:
  - name: waiter
    image: busybox
    command: [sh, -c, 'until [ -e /trigger/go ]; do sleep 0.2; done; exit 7']
    volumeMounts: [{{name: t, mountPath: /trigger}}]
  volumes: [{{name: t, hostPath: {{path: {}}}}}]
"#,
            trigger.display()
        ),
    )
    .unwrap();
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let id = |p: &serde_json::Value| {
        p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .trim_start_matches("containerd://")
            .to_string()
    };
    let cid = id(&wait_phase(&c, "steady", "Running"));
    let waiter_id = id(&wait_phase(&c, "waiter", "Running"));

    // The API server dies without a word.
    c.kill9();
    std::fs::write(trigger.join("go"), b"").unwrap();
    let running = |t: &str, id: &str| {
        t.lines()
            .any(|l| l.starts_with(id) && l.split_whitespace().nth(2) == Some("RUNNING"))
    };
    // The waiter's task stops; the steady one runs on; the agent stays up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = tasks();
        if !running(&t, &waiter_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks while the API server is away:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(5));
    let t = tasks();
    assert!(running(&t, &cid), "the steady container stopped:\n{t}");
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent exited without its API server:\n{}",
        agent_tail()
    );

    // Back: the waiter's end is reported as kubelet would have, and the steady pod
    // was never restarted.
    c.spawn();
    let waiter = wait_phase(&c, "waiter", "Failed");
    let term = &waiter["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 7, "{waiter}\nagent:\n{}", agent_tail());
    assert_eq!(term["reason"], "Error");
    let steady = pod_json(&c, "steady").unwrap();
    let cs = &steady["status"]["containerStatuses"][0];
    assert_eq!(steady["status"]["phase"], "Running");
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(
        cs["containerID"].as_str().unwrap(),
        format!("containerd://{cid}")
    );
    eventually(Duration::from_secs(30), || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        (out.split_whitespace().nth(1) == Some("Ready")).then_some(())
    });

    // The agent is killed with -9: its containerd and pods run on; the next agent stops
    // that containerd before starting its own, and no container restarts.
    let agent_dir = node_dir.join("agent");
    let first = containerds(&agent_dir);
    assert_eq!(first.len(), 1, "containerds: {first:?}");
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    assert_eq!(
        containerds(&agent_dir),
        first,
        "containerd died with the agent"
    );
    assert!(running(&tasks(), &cid), "the steady container stopped");
    let agent = spawn_agent();
    eventually(Duration::from_secs(60), || {
        let now = containerds(&agent_dir);
        (now.len() == 1 && now != first).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        containerds(&agent_dir).len(),
        1,
        "two containerds on one root"
    );
    let steady = wait_phase(&c, "steady", "Running");
    let cs = &steady["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0, "{steady}\nagent:\n{}", agent_tail());
    assert_eq!(
        cs["containerID"].as_str().unwrap(),
        format!("containerd://{cid}")
    );
    assert!(running(&tasks(), &cid), "the steady container stopped");

    c.ok(&["delete", "pod", "steady", "waiter", "--grace-period=1"]);
    drop(agent);
    c.stop();
}
