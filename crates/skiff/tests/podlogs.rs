//! Container logs where log collectors look (root; containerd, CNI plugins,
//! busybox-static): kubelet's layout under the node's log root (`--pod-log-dir`, a
//! directory of this test's own so concurrent tests never share /var/log), and a
//! DaemonSet pod mounting it as fluentd mounts the host's /var/log reads another pod's
//! lines through `containers/`. A crashing container's dead instances lose their files
//! and links as they are removed, a deleted pod its directory and links, and a clean
//! stop leaves the root empty.

mod common;

use common::lab::Lab;
use common::node::wait_phase;
use common::{Cluster, eventually, tail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WRITER: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: writer\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: w\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'i=0; while :; do echo \"writer line $i\"; i=$((i+1)); sleep 1; done']\n";

const CRASHER: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: crasher\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo crashing; exit 1']\n";

/// The guide's logging DaemonSet, reduced: the log root mounted at its own path (the
/// links are absolute, as kubelet's), the writer's lines followed through its link.
fn collector(root: &Path) -> String {
    let root = root.display();
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: collector\nspec:\n  selector:\n    matchLabels: {{app: collector}}\n  template:\n    metadata:\n      labels: {{app: collector}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: tail\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, 'tail -n +1 -F {root}/containers/writer_default_w-*.log']\n        volumeMounts:\n        - {{name: varlog, mountPath: {root}, readOnly: true}}\n      volumes:\n      - name: varlog\n        hostPath: {{path: {root}}}\n"
    )
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn uid(c: &Cluster, pod: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"])
}

/// `kubectl logs` of the DaemonSet's pod, once it has one.
fn collected(c: &Cluster) -> String {
    let out = c.kubectl(&["logs", "daemonset/collector"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_daemonset_reads_other_pods_logs_through_containers() {
    let logs = tempfile::tempdir().unwrap();
    let root = logs.path().to_path_buf();
    let lab = Lab::new(1);
    let mut c = lab.start_server(&[&format!("--pod-log-dir={}", root.display())]);
    lab.wait_ready(&c);

    // The writer writes: kubectl logs shows it, read from the file the runtime keeps.
    c.apply(WRITER);
    let pod = wait_phase(&c, "writer", "Running");
    eventually(Duration::from_secs(30), || {
        c.ok(&["logs", "writer"])
            .contains("writer line 1")
            .then_some(())
    });

    // kubelet's layout: the file by pod and restart count, the link by container id.
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let pod_dir = root.join(format!("pods/default_writer_{}", uid(&c, "writer")));
    let file = pod_dir.join("w/0.log");
    let link = root.join(format!("containers/writer_default_w-{id}.log"));
    assert_eq!(std::fs::read_link(&link).unwrap(), file);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains(" stdout F writer line 0"),
        "{}",
        file.display()
    );

    // The collector, another pod, reads the writer's lines through the link.
    c.apply(&collector(&root));
    eventually(Duration::from_secs(60), || {
        let got = collected(&c);
        got.contains(" stdout F writer line").then_some(())
    });

    crashing_containers_lose_their_links(&c, &root);

    // A deleted pod takes its directory and links with it; the collector's stay.
    c.ok(&["delete", "pod", "writer", "--wait=true"]);
    eventually(Duration::from_secs(30), || {
        (!pod_dir.exists() && std::fs::symlink_metadata(&link).is_err()).then_some(())
    });
    let left = names(&root.join("containers"));
    assert!(left.iter().all(|n| n.starts_with("collector-")), "{left:?}");
    assert_eq!(left.len(), 1, "{left:?}");

    // A clean stop removes its pods, and with them everything under the root.
    c.ok(&["delete", "daemonset", "collector", "--wait=true"]);
    c.stop();
    assert!(
        names(&root).is_empty(),
        "left under {}: {:?}\nlog:\n{}",
        root.display(),
        names(&root),
        tail(&c.log(), 40)
    );
}

/// A container that keeps crashing: one dead instance is kept (its file and link, for
/// `--previous`), older ones are removed with both.
fn crashing_containers_lose_their_links(c: &Cluster, root: &Path) {
    c.apply(CRASHER);
    let dir: PathBuf = root.join(format!("pods/default_crasher_{}/c", uid(c, "crasher")));
    let links = || -> BTreeSet<String> {
        names(&root.join("containers"))
            .into_iter()
            .filter(|n| n.starts_with("crasher_default_c-"))
            .collect()
    };
    // The first instance's link, while it is the only one.
    let first = eventually(Duration::from_secs(60), || {
        let now = links();
        (now.len() == 1).then(|| now.into_iter().next().unwrap())
    });
    eventually(Duration::from_secs(120), || {
        let restarts = c.ok(&[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        let files = names(&dir);
        let now = links();
        let done = restarts.parse::<u32>().is_ok_and(|r| r >= 2)
            && !files.contains("0.log")
            && !now.contains(&first)
            && now.len() == 2
            && now
                .iter()
                .all(|l| std::fs::metadata(root.join("containers").join(l)).is_ok());
        done.then_some(())
    });
    assert!(
        c.ok(&["logs", "crasher", "--previous"])
            .contains("crashing"),
        "the kept instance's log"
    );
    c.ok(&["delete", "pod", "crasher", "--wait=true"]);
}
