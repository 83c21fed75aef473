//! Persistent volumes end to end with real kubectl: the default StorageClass
//! `local-path`; a claim with `Immediate` binding and hand-made volumes binds the
//! smallest that fits, and its Retain volume stays Released after it; a StatefulSet's
//! claim templates are provisioned on the nodes its pods go to (simulated nodes here);
//! a claim in use waits for its pod before it goes (pvc-protection), and its Delete
//! volume goes with it; a claim grows only once its class allows expansion. On a real
//! node (root, containerd): a StatefulSet's file outlives its pod, the directory belongs
//! to the pod's fsGroup, and it is removed with the claim.

mod common;

use common::{Cluster, eventually};
use std::time::Duration;

fn get(c: &Cluster, what: &str, path: &str) -> String {
    c.ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

fn wait_for(c: &Cluster, what: &str, path: &str, want: &str) {
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&["get", what, "-o", &format!("jsonpath={path}")]);
        (String::from_utf8_lossy(&out.stdout) == want).then_some(())
    });
}

/// Waits until `kubectl get …` answers NotFound.
fn vanish(c: &Cluster, args: &[&str]) {
    eventually(Duration::from_secs(60), || c.absent(args).then_some(()));
}

const MANUAL: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: manual\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: Immediate\n";

fn pv(name: &str, size: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\nspec:\n  storageClassName: manual\n  capacity:\n    storage: {size}\n  accessModes: [ReadWriteOnce]\n  hostPath:\n    path: /tmp/skiff-test-{name}\n"
    )
}

fn pvc(name: &str, size: &str, class: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  storageClassName: {class}\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: {size}\n"
    )
}

const STS: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: web\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      securityContext:\n        fsGroup: 2000\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, 'sleep 3600']\n        volumeMounts:\n        - name: data\n          mountPath: /data\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi\n";

#[test]
fn immediate_claims_bind_the_smallest_fitting_volume_and_retain_it() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    let sc = c.ok(&["get", "storageclass", "--no-headers"]);
    let cols: Vec<&str> = sc.split_whitespace().collect();
    assert_eq!(
        cols[..6],
        [
            "local-path",
            "(default)",
            "skiff.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{sc}"
    );
    c.apply(MANUAL);
    for (n, s) in [("pv-small", "1Gi"), ("pv-fit", "2Gi"), ("pv-big", "5Gi")] {
        c.apply(&pv(n, s));
    }
    wait_for(&c, "pv/pv-fit", "{.status.phase}", "Available");
    // Nothing that large: the claim waits, and says why.
    c.apply(&pvc("huge", "10Gi", "manual"));
    let ev = eventually(Duration::from_secs(30), || {
        let out = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=huge",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        (!out.is_empty()).then_some(out)
    });
    assert!(ev.contains("ProvisioningFailed"), "{ev}");
    assert_eq!(get(&c, "pvc/huge", "{.status.phase}"), "Pending");

    c.apply(&pvc("claim", "1500Mi", "manual"));
    wait_for(&c, "pvc/claim", "{.status.phase}", "Bound");
    assert_eq!(get(&c, "pvc/claim", "{.spec.volumeName}"), "pv-fit");
    let row = c.ok(&["get", "pvc", "claim", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[..6],
        ["claim", "Bound", "pv-fit", "2Gi", "RWO", "manual"],
        "{row}"
    );
    wait_for(&c, "pv/pv-fit", "{.status.phase}", "Bound");
    assert_eq!(get(&c, "pv/pv-fit", "{.spec.claimRef.name}"), "claim");
    assert_eq!(get(&c, "pv/pv-small", "{.status.phase}"), "Available");
    assert!(
        get(&c, "pvc/claim", "{.metadata.finalizers}").contains("kubernetes.io/pvc-protection")
    );

    c.ok(&["delete", "pvc", "claim"]);
    wait_for(&c, "pv/pv-fit", "{.status.phase}", "Released");
    // Retain: it stays, still naming the claim it served.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(&c, "pv/pv-fit", "{.status.phase}"), "Released");
    assert_eq!(get(&c, "pv/pv-fit", "{.spec.claimRef.name}"), "claim");
}

#[test]
fn statefulset_claims_are_provisioned_where_their_pods_go_on_simulated_nodes() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    c.apply(STS);
    for i in 0..2 {
        wait_for(&c, &format!("pvc/data-web-{i}"), "{.status.phase}", "Bound");
        wait_for(&c, &format!("pod/web-{i}"), "{.status.phase}", "Running");
        // Defaulted to the default class, and pinned to its pod's node.
        assert_eq!(
            get(&c, &format!("pvc/data-web-{i}"), "{.spec.storageClassName}"),
            "local-path"
        );
        let pv = get(&c, &format!("pvc/data-web-{i}"), "{.spec.volumeName}");
        let node = get(&c, &format!("pod/web-{i}"), "{.spec.nodeName}");
        assert_eq!(
            get(
                &c,
                &format!("pv/{pv}"),
                "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
            ),
            node
        );
        assert_eq!(
            get(
                &c,
                &format!("pv/{pv}"),
                "{.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}"
            ),
            "skiff.io/local-path"
        );
    }

    // A claim in use waits for its pod.
    let pv0 = get(&c, "pvc/data-web-0", "{.spec.volumeName}");
    c.ok(&["delete", "pvc", "data-web-0", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!get(&c, "pvc/data-web-0", "{.metadata.deletionTimestamp}").is_empty());
    assert_eq!(get(&c, "pvc/data-web-0", "{.status.phase}"), "Bound");
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    vanish(&c, &["get", "pod", "web-1"]);
    // web-1's claim is not the one deleted: it stays; web-0 keeps data-web-0 alive.
    assert!(!c.absent(&["get", "pvc", "data-web-0"]));
    c.ok(&["scale", "statefulset", "web", "--replicas=0"]);
    vanish(&c, &["get", "pod", "web-0"]);
    vanish(&c, &["get", "pvc", "data-web-0"]);
    // Reclaim Delete: the provisioner deletes its volume.
    vanish(&c, &["get", "pv", &pv0]);

    // Growing needs a class that allows it.
    let patch = r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#;
    let denied = c.fails(&["patch", "pvc", "data-web-1", "-p", patch]);
    assert!(denied.contains("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"), "{denied}");
    c.ok(&[
        "patch",
        "storageclass",
        "local-path",
        "-p",
        r#"{"allowVolumeExpansion":true}"#,
    ]);
    c.ok(&["patch", "pvc", "data-web-1", "-p", patch]);
    let pv1 = get(&c, "pvc/data-web-1", "{.spec.volumeName}");
    wait_for(&c, &format!("pv/{pv1}"), "{.spec.capacity.storage}", "2Gi");
    wait_for(&c, "pvc/data-web-1", "{.status.capacity.storage}", "2Gi");
}

#[test]
fn a_statefulsets_file_outlives_its_pod_and_goes_with_its_claim_on_a_real_node() {
    use common::lab::{Lab, sh};
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::new(1);
    let c = lab.start_server(&[]);
    lab.wait_ready(&c);
    // A second container, not root, mounts the volume read-only.
    c.apply(&STS.replace("replicas: 2", "replicas: 1").replace(
        "          mountPath: /data\n  volumeClaimTemplates:",
        "          mountPath: /data\n      - name: reader\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, 'sleep 3600']\n        securityContext:\n          runAsUser: 1000\n        volumeMounts:\n        - name: data\n          mountPath: /data\n          readOnly: true\n  volumeClaimTemplates:",
    ));
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/web-0",
        "--timeout=120s",
    ]);
    let first_uid = get(&c, "pod/web-0", "{.metadata.uid}");
    let (ok, out) = sh(&c, "web-0", "echo kept > /data/f && cat /data/f");
    assert!(ok && out.contains("kept"), "{out}");
    // A read-only mount cannot be written, even by the group that owns the volume.
    let out = c.kubectl(&[
        "exec",
        "web-0",
        "-c",
        "reader",
        "--",
        "sh",
        "-c",
        "id -G; echo x > /data/g",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains("2000") && text.contains("Read-only file system"),
        "{text}"
    );

    let pv = get(&c, "pvc/data-web-0", "{.spec.volumeName}");
    let dir = std::path::PathBuf::from(get(&c, &format!("pv/{pv}"), "{.spec.hostPath.path}"));
    assert!(
        dir.starts_with(c.data_dir()),
        "{} is not under the node's data dir",
        dir.display()
    );
    assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "kept\n");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().gid(),
        2000,
        "fsGroup owns the volume"
    );

    c.ok(&["delete", "pod", "web-0"]);
    eventually(Duration::from_secs(120), || {
        let uid = get(&c, "pod/web-0", "{.metadata.uid}");
        let ready = get(
            &c,
            "pod/web-0",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (uid != first_uid && ready == "True").then_some(())
    });
    let (ok, out) = sh(&c, "web-0", "cat /data/f");
    assert!(
        ok && out.contains("kept"),
        "the new pod sees the old pod's file: {out}"
    );

    c.ok(&["scale", "statefulset", "web", "--replicas=0"]);
    vanish(&c, &["get", "pod", "web-0"]);
    assert!(dir.exists());
    c.ok(&["delete", "pvc", "data-web-0"]);
    vanish(&c, &["get", "pv", &pv]);
    assert!(!dir.exists(), "{} outlived its claim", dir.display());
}
