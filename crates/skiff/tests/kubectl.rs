//! Real kubectl against a real `skiff server`: the commands of the kubectl contract that
//! need no running container, and every manifest of the Pods guide.

mod common;

use common::{Cluster, manifest};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Removes the pod's owner references by hand and waits for its controller (uid
/// `owner_uid`) to adopt it again: the same pod, not a replacement.
fn adopted_again(c: &Cluster, pod: &str, owner_uid: &str) {
    let uid = c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    c.ok(&[
        "patch",
        "pod",
        pod,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/ownerReferences"}]"#,
    ]);
    common::eventually(Duration::from_secs(30), || {
        let owner = c.ok(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.metadata.ownerReferences[0].uid}",
        ]);
        (owner == owner_uid).then_some(())
    });
    assert_eq!(
        c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]),
        uid
    );
}

fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(words)
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"))
}

#[test]
fn run_get_and_output_formats() {
    let c = Cluster::start();
    assert_eq!(
        c.ok(&["run", "my-pod", "--image=nginx"]).trim(),
        "pod/my-pod created"
    );

    let out = c.ok(&["get", "pods"]);
    assert_eq!(
        words(out.lines().next().unwrap()),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let r = row(&out, "my-pod");
    assert_eq!(&r[..4], ["my-pod", "0/1", "Pending", "0"]);

    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        words(wide.lines().next().unwrap()),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert_eq!(
        &row(&wide, "my-pod")[5..],
        ["<none>", "<none>", "<none>", "<none>"]
    );

    let yaml = c.ok(&["get", "pod", "my-pod", "-o", "yaml"]);
    assert!(
        yaml.contains("name: my-pod")
            && yaml.contains("image: nginx")
            && yaml.contains("phase: Pending"),
        "{yaml}"
    );
    let json: Value = serde_json::from_str(&c.ok(&["get", "pod", "my-pod", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "Pod");
    assert_eq!(json["metadata"]["labels"]["run"], "my-pod");
    assert_eq!(json["spec"]["restartPolicy"], "Always");
    assert_eq!(json["spec"]["containers"][0]["imagePullPolicy"], "Always");
    assert_eq!(json["status"]["qosClass"], "BestEffort");
    assert!(json["metadata"]["uid"].as_str().unwrap().len() > 10);
    assert_eq!(c.ok(&["get", "pods", "-o", "name"]).trim(), "pod/my-pod");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "my-pod",
            "-o",
            "jsonpath={.spec.containers[0].name}"
        ]),
        "my-pod"
    );
    let cc = c.ok(&[
        "get",
        "pods",
        "-o",
        "custom-columns=N:.metadata.name,I:.spec.containers[0].image",
    ]);
    assert_eq!(row(&cc, "my-pod"), ["my-pod", "nginx"]);
    // -A adds NAMESPACE from the row objects; --show-labels from their metadata.
    let all = c.ok(&["get", "pods", "-A", "--show-labels"]);
    assert_eq!(row(&all, "default")[..2], ["default", "my-pod"]);
    assert!(all.contains("run=my-pod"), "{all}");

    let err = c.fails(&["get", "pod", "nope"]);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let err = c.fails(&["run", "my-pod", "--image=nginx"]);
    assert!(
        err.contains("AlreadyExists") && err.contains("pods \"my-pod\" already exists"),
        "{err}"
    );
}

#[test]
fn apply_every_guide_manifest_twice_then_configure() {
    let c = Cluster::start();
    // envFrom in the guide's secure pod refers to these.
    c.ok(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=MODE=prod",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "db-secret",
        "--from-literal=password=s3cret",
    ]);
    let cases = [
        ("pod.yaml", "pod/my-pod"),
        ("webserver-pod.yaml", "pod/webserver-pod"),
        ("backend-service.yaml", "service/backend-service"),
        (
            "network-policy.yaml",
            "networkpolicy.networking.k8s.io/allow-frontend-to-backend",
        ),
        ("daemonset.yaml", "daemonset.apps/logging-daemonset"),
        ("job.yaml", "job.batch/db-backup"),
        ("cronjob.yaml", "cronjob.batch/cleanup-job"),
        ("single-container-pod.yaml", "pod/single-container-pod"),
        ("multi-container-pod.yaml", "pod/multi-container-pod"),
        ("static-pod.yaml", "pod/static-pod"),
        ("secure-pod.yaml", "pod/secure-pod"),
    ];
    for (file, name) in cases {
        let f = manifest(file);
        let f = f.to_str().unwrap();
        assert_eq!(
            c.ok(&["apply", "-f", f]).trim(),
            format!("{name} created"),
            "{file}"
        );
        assert_eq!(
            c.ok(&["apply", "-f", f]).trim(),
            format!("{name} unchanged"),
            "{file}"
        );
    }
    // An edit of the manifest: the image changes, the ports stay (strategic merge).
    let edited = std::fs::read_to_string(manifest("pod.yaml"))
        .unwrap()
        .replace("image: nginx", "image: nginx:1.27");
    let tmp = c.dir.path().join("pod-edited.yaml");
    std::fs::write(&tmp, edited).unwrap();
    assert_eq!(
        c.ok(&["apply", "-f", tmp.to_str().unwrap()]).trim(),
        "pod/my-pod configured"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "my-pod",
            "-o",
            "jsonpath={.spec.containers[0].image} {.spec.containers[0].ports[0].containerPort}"
        ]),
        "nginx:1.27 80"
    );

    let svc = c.ok(&["get", "svc", "backend-service"]);
    assert_eq!(
        words(svc.lines().next().unwrap()),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let r = row(&svc, "backend-service");
    assert_eq!(r[1], "ClusterIP");
    assert!(r[2].starts_with("10.43."), "{svc}");
    assert_eq!(r[4], "80/TCP");

    let cj = c.ok(&["get", "cronjobs"]);
    assert_eq!(&row(&cj, "cleanup-job")[1..6], ["0", "0", "*", "*", "*"]);
    let job = c.ok(&["get", "job", "db-backup", "-o", "json"]);
    let job: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string()
    );

    // delete -f removes what apply made.
    let out = c.ok(&[
        "delete",
        "-f",
        manifest("webserver-pod.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "pod \"webserver-pod\" deleted");
    c.gone(&["get", "pod", "webserver-pod"]);
}

#[test]
fn server_side_apply_creates_and_records_managers() {
    let c = Cluster::start();
    let f = manifest("pod.yaml");
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", f.to_str().unwrap()])
            .trim(),
        "pod/my-pod serverside-applied"
    );
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", f.to_str().unwrap()])
            .trim(),
        "pod/my-pod serverside-applied"
    );
    let mf = c.ok(&[
        "get",
        "pod",
        "my-pod",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(mf.contains("kubectl"), "{mf}");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "my-pod",
            "-o",
            "jsonpath={.spec.containers[0].ports[0].containerPort}"
        ]),
        "80"
    );
}

#[test]
fn edit_describe_label_annotate_delete() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", manifest("pod.yaml").to_str().unwrap()]);
    let out = c.kubectl_env(
        &["edit", "pod", "my-pod"],
        &[("KUBE_EDITOR", "sed -i -e s/app:\\ myapp/app:\\ edited/")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pod/my-pod edited"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "my-pod",
            "-o",
            "jsonpath={.metadata.labels.app}"
        ]),
        "edited"
    );

    assert_eq!(
        c.ok(&["label", "pod", "my-pod", "tier=frontend"]).trim(),
        "pod/my-pod labeled"
    );
    assert_eq!(
        c.ok(&["annotate", "pod", "my-pod", "owner=team-a"]).trim(),
        "pod/my-pod annotated"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "tier=frontend", "-o", "name"])
            .trim(),
        "pod/my-pod"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "tier in (backend)", "-o", "name"])
            .trim(),
        ""
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name"
        ])
        .trim(),
        "pod/my-pod"
    );

    let d = c.ok(&["describe", "pod", "my-pod"]);
    assert!(d.contains("Name:") && d.contains("my-pod"), "{d}");
    assert!(d.contains("Status:") && d.contains("Pending"), "{d}");
    assert!(
        d.contains("owner: team-a") || d.contains("owner=team-a"),
        "{d}"
    );
    assert!(
        d.contains("Containers:") && d.contains("my-container") && d.contains("80/TCP"),
        "{d}"
    );

    let out = c.ok(&["delete", "pod", "my-pod"]);
    assert_eq!(out.trim(), "pod \"my-pod\" deleted");
    assert_eq!(c.ok(&["get", "pods", "-o", "name"]).trim(), "");
}

#[test]
fn imperative_creates_scale_expose() {
    let c = Cluster::start();
    // kubectl 1.33 sends this one as protobuf.
    assert_eq!(
        c.ok(&["create", "deployment", "web", "--image=nginx"])
            .trim(),
        "deployment.apps/web created"
    );
    let d = c.ok(&["get", "deployment", "web"]);
    assert_eq!(
        words(d.lines().next().unwrap()),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    // The controller makes its ReplicaSet at once; with no node nothing becomes ready.
    common::eventually(Duration::from_secs(20), || {
        let d = c.ok(&["get", "deployment", "web"]);
        (row(&d, "web")[..4] == ["web", "0/1", "1", "0"]).then_some(())
    });
    assert_eq!(
        c.ok(&["scale", "deployment", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "3 2"
    );

    assert_eq!(
        c.ok(&["create", "configmap", "app-config", "--from-literal=a=b"])
            .trim(),
        "configmap/app-config created"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "generic",
            "db-secret",
            "--from-literal=password=s3cret"
        ])
        .trim(),
        "secret/db-secret created"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "secret",
            "db-secret",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "czNjcmV0"
    );
    let s = c.ok(&["get", "secrets"]);
    assert_eq!(&row(&s, "db-secret")[1..3], ["Opaque", "1"]);

    assert_eq!(
        c.ok(&["expose", "deployment", "web", "--port=80"]).trim(),
        "service/web exposed"
    );
    let svc: Value = serde_json::from_str(&c.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.43.")
    );
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert_eq!(
        c.ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}"
        ]),
        "10.43.0.1"
    );

    c.ok(&["create", "namespace", "team"]);
    c.ok(&[
        "create",
        "configmap",
        "x",
        "-n",
        "team",
        "--from-literal=k=v",
    ]);
    assert_eq!(
        c.ok(&["get", "sa", "-n", "team", "-o", "name"]).trim(),
        "serviceaccount/default"
    );
    // `delete ns --all` takes the user's namespace but none the cluster needs, and says
    // so for each as kube-apiserver does (kubectl then exits non-zero).
    let out = c.kubectl(&["delete", "namespace", "--all", "--wait=false"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("namespace \"team\" deleted"), "{stdout}");
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(
            stderr.contains(&format!(
                "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{stderr}"
        );
        c.ok(&["get", "namespace", ns]);
    }
    common::eventually(Duration::from_secs(15), || {
        c.absent(&["get", "ns", "team"]).then_some(())
    });
    // Its objects went first (the namespace is finalized only once it is empty).
    assert_eq!(c.ok(&["get", "configmaps", "-n", "team", "-o", "name"]), "");
}

#[test]
fn discovery_explain_auth_and_get_all() {
    let c = Cluster::start();
    let ar = c.ok(&["api-resources"]);
    let pods = row(&ar, "pods");
    assert_eq!(pods, ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        row(&ar, "deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(c.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let ex = c.ok(&["explain", "pod.spec.containers"]);
    assert!(
        ex.contains("List of containers belonging to the pod."),
        "{ex}"
    );
    let all = c.ok(&["get", "all", "-A"]);
    assert!(all.contains("service/kubernetes"), "{all}");
    let ns = c.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(row(&ns, n)[1], "Active");
    }
    let v = c.ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
}

#[test]
fn bad_manifests_get_kubernetes_errors() {
    let c = Cluster::start();
    let bad =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("The Pod \"bad\" is invalid: spec.containers[0].image: Required value"),
        "{err}"
    );

    let typo = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  containers:\n  - name: c\n    imagee: nginx\n    image: nginx\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], typo);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown field \"spec.containers[0].imagee\""),
        "{err}"
    );

    let badname = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let out = c.kubectl_stdin(&["create", "-f", "-"], badname);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
}

/// A running `kubectl get -w`, its output read line by line on a thread of its own.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far, in order.
    seen: Vec<String>,
}

impl Watch {
    fn start(c: &Cluster, args: &[&str]) -> Watch {
        let mut child = c
            .kubectl_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a line satisfies `hit` (true) or `timeout` passes (false).
    fn until(&mut self, timeout: Duration, hit: impl Fn(&str) -> bool) -> bool {
        use std::sync::mpsc::RecvTimeoutError;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let found = hit(&l);
                    self.seen.push(l);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Stops kubectl and gives every line it printed.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader ends at the closed pipe, so this ends too.
        self.seen.extend(self.lines.iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn get_watch_shows_changes() {
    let c = Cluster::start();
    c.ok(&["run", "before", "--image=nginx"]);
    let mut w = Watch::start(
        &c,
        &[
            "get",
            "pods",
            "-w",
            "--output-watch-events",
            "-L",
            "seen",
            "--request-timeout=30s",
        ],
    );
    // The initial list is printed once kubectl has it; whatever is created after that
    // reaches kubectl only as a watch event (from the list's resourceVersion on).
    let named = |event: &'static str, name: &'static str| {
        move |l: &str| words(l).starts_with(&[event, name])
    };
    assert!(
        w.until(Duration::from_secs(20), named("ADDED", "before")),
        "the initial list never showed; saw {:?}",
        w.seen
    );
    c.ok(&["run", "watched", "--image=nginx"]);
    assert!(
        w.until(Duration::from_secs(20), named("ADDED", "watched")),
        "watch never showed the new pod; saw {:?}",
        w.seen
    );
    // A change to it comes as MODIFIED, with the change in it.
    c.ok(&["label", "pod", "watched", "seen=yes"]);
    assert!(
        w.until(Duration::from_secs(20), |l| {
            let cols = words(l);
            cols.starts_with(&["MODIFIED", "watched"]) && cols.last() == Some(&"yes")
        }),
        "watch never showed the label; saw {:?}",
        w.seen
    );
    w.stop();
}

#[test]
fn state_survives_restart() {
    let mut c = Cluster::start();
    c.ok(&["create", "configmap", "keep", "--from-literal=a=1"]);
    c.ok(&["run", "p1", "--image=nginx"]);
    let rv_before = c.ok(&[
        "get",
        "cm",
        "keep",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    c.restart();
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "keep",
            "-o",
            "jsonpath={.data.a} {.metadata.resourceVersion}"
        ]),
        format!("1 {rv_before}")
    );
    assert_eq!(c.ok(&["get", "pods", "-o", "name"]).trim(), "pod/p1");
    c.ok(&["create", "configmap", "after", "--from-literal=b=2"]);
    let rv_after: i64 = c
        .ok(&[
            "get",
            "cm",
            "after",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    assert!(
        rv_after > rv_before.parse::<i64>().unwrap(),
        "revisions must keep increasing across restarts"
    );
    // The controllers lead through their Leases, and a restarted server takes its own
    // back at once: a ReplicaSet made now gets its pod without waiting for expiry.
    let holder = |lease: &str| {
        c.ok(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds}",
        ])
    };
    let kcm = holder("kube-controller-manager");
    assert!(kcm.ends_with(" 15"), "{kcm}");
    assert_eq!(holder("kube-scheduler"), kcm);
    c.ok(&["create", "deployment", "d", "--image=nginx"]);
    common::eventually(Duration::from_secs(5), || {
        (!c.ok(&["get", "pods", "-l", "app=d", "-o", "name"])
            .is_empty())
        .then_some(())
    });
}

fn node_manifest(name: &str, cpu: &str, extra_spec: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n{labels}spec:\n{extra_spec}status:\n  capacity:\n    cpu: \"{cpu}\"\n    memory: 8Gi\n    pods: \"110\"\n  allocatable:\n    cpu: \"{cpu}\"\n    memory: 8Gi\n    pods: \"110\"\n  conditions:\n  - type: Ready\n    status: \"True\"\n    reason: KubeletReady\n    message: ready\n"
    )
}

#[test]
fn scheduler_places_pods_and_explains_failures() {
    let c = Cluster::start();
    let taint = "  taints:\n  - key: dedicated\n    value: gpu\n    effect: NoSchedule\n";
    for m in [
        node_manifest(
            "small",
            "500m",
            "  unschedulable: false\n",
            "    disk: ssd\n",
        ),
        node_manifest("gpu-1", "8", taint, ""),
        node_manifest("gpu-2", "8", taint, ""),
    ] {
        c.apply(&m);
    }
    let nodes = c.ok(&["get", "nodes"]);
    assert_eq!(
        words(nodes.lines().next().unwrap()),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    assert_eq!(&row(&nodes, "small")[..3], ["small", "Ready", "<none>"]);

    // Fits only on "small" (selector), so the scheduler must pick it.
    c.ok(&[
        "run",
        "fits",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"ssd"}}}"#,
    ]);
    let node = common::eventually(Duration::from_secs(20), || {
        let n = c.ok(&["get", "pod", "fits", "-o", "jsonpath={.spec.nodeName}"]);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(node, "small");
    let wide = c.ok(&["get", "pod", "fits", "-o", "wide"]);
    assert_eq!(row(&wide, "fits")[6], "small");
    let d = c.ok(&["describe", "pod", "fits"]);
    assert!(
        d.contains("Scheduled") && d.contains("Successfully assigned default/fits to small"),
        "{d}"
    );

    // Too big for "small", and the others are tainted: Kubernetes' message.
    c.ok(&["run", "big", "--image=nginx", "--overrides", r#"{"spec":{"containers":[{"name":"big","image":"nginx","resources":{"requests":{"cpu":"1"}}}]}}"#]);
    let want = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}.";
    let d = common::eventually(Duration::from_secs(20), || {
        let d = c.ok(&["describe", "pod", "big"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(d.contains(want), "{d}");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "big",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}"
        ]),
        "Unschedulable"
    );
    assert_eq!(row(&c.ok(&["get", "pods"]), "big")[2], "Pending");

    // Tolerating the taint makes it schedulable on a GPU node.
    c.ok(&["run", "gpu-job", "--image=nginx", "--overrides", r#"{"spec":{"tolerations":[{"key":"dedicated","operator":"Equal","value":"gpu","effect":"NoSchedule"}],"containers":[{"name":"gpu-job","image":"nginx","resources":{"requests":{"cpu":"1"}}}]}}"#]);
    let node = common::eventually(Duration::from_secs(20), || {
        let n = c.ok(&["get", "pod", "gpu-job", "-o", "jsonpath={.spec.nodeName}"]);
        (!n.is_empty()).then_some(n)
    });
    assert!(node.starts_with("gpu-"), "{node}");
    // Bound: the binding set PodScheduled, and it stays (the node keeps it).
    let scheduled = c.ok(&[
        "get",
        "pod",
        "gpu-job",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}",
    ]);
    assert_eq!(scheduled, "True");

    // Cordon: new pods avoid the node.
    assert_eq!(c.ok(&["cordon", "small"]).trim(), "node/small cordoned");
    assert_eq!(
        row(&c.ok(&["get", "nodes"]), "small")[1],
        "Ready,SchedulingDisabled"
    );
    c.ok(&[
        "run",
        "after-cordon",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"ssd"}}}"#,
    ]);
    let d = common::eventually(Duration::from_secs(20), || {
        let d = c.ok(&["describe", "pod", "after-cordon"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(d.contains("node(s) were unschedulable"), "{d}");
    assert_eq!(c.ok(&["uncordon", "small"]).trim(), "node/small uncordoned");
    let node = common::eventually(Duration::from_secs(40), || {
        let n = c.ok(&[
            "get",
            "pod",
            "after-cordon",
            "-o",
            "jsonpath={.spec.nodeName}",
        ]);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(node, "small");
}

#[test]
fn simulated_nodes_run_pods_and_finish_jobs() {
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        "3",
        "--simulate-capacity",
        "cpu=2,memory=4Gi",
    ]);
    let nodes = common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "nodes", "-o", "wide"]);
        (out.lines().count() == 4).then_some(out)
    });
    let r = row(&nodes, "sim-0");
    assert_eq!(&r[..3], ["sim-0", "Ready", "<none>"]);
    assert_eq!(r[4], "v1.33.0+skiff");
    assert!(r[5].starts_with("198.18."), "{nodes}");
    // Each node heartbeats through its Lease and gets a pod CIDR.
    let leases = c.ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
    assert_eq!(leases.lines().count(), 3, "{leases}");
    let cidr = common::eventually(Duration::from_secs(20), || {
        let v = c.ok(&["get", "node", "sim-1", "-o", "jsonpath={.spec.podCIDR}"]);
        (!v.is_empty()).then_some(v)
    });
    assert!(
        cidr.starts_with("10.42.") && cidr.ends_with(".0/24"),
        "{cidr}"
    );
    // A node shown not Ready while alive says otherwise at once, not on the minute's
    // status refresh (kubelet checks its Node every 10 s).
    c.ok(&[
        "patch",
        "node",
        "sim-2",
        "--subresource=status",
        "--type=strategic",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown"}]}}"#,
    ]);
    common::eventually(Duration::from_secs(20), || {
        (row(&c.ok(&["get", "nodes"]), "sim-2")[1] == "Ready").then_some(())
    });
    // The repost stamps Ready's transition; the other conditions keep theirs.
    let conds: Value = serde_json::from_str(&c.ok(&[
        "get",
        "node",
        "sim-2",
        "-o",
        "jsonpath={.status.conditions}",
    ]))
    .unwrap();
    let since = |t: &str| {
        conds
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()["lastTransitionTime"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(since("Ready") >= since("MemoryPressure"), "{conds}");
    assert_eq!(since("MemoryPressure"), since("PIDPressure"), "{conds}");

    c.ok(&["run", "web", "--image=nginx"]);
    let wide = common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pod", "web", "-o", "wide"]);
        (row(&out, "web")[2] == "Running").then_some(out)
    });
    let r = row(&wide, "web");
    assert_eq!(r[1], "1/1");
    assert!(r[5].starts_with("10.42."), "{wide}");
    assert!(r[6].starts_with("sim-"), "{wide}");

    // restartPolicy Never: finishes after the annotated run time with the annotated code.
    c.ok(&[
        "run",
        "ok-job",
        "--image=busybox",
        "--restart=Never",
        "--annotations=skiff.io/simulate-run-seconds=0.5",
    ]);
    c.ok(&[
        "run",
        "bad-job",
        "--image=busybox",
        "--restart=Never",
        "--annotations=skiff.io/simulate-run-seconds=0.5",
        "--annotations=skiff.io/simulate-exit-code=3",
    ]);
    common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pods"]);
        (row(&out, "ok-job")[2] == "Completed" && row(&out, "bad-job")[2] == "Error").then_some(())
    });
    assert_eq!(
        c.ok(&["get", "pod", "ok-job", "-o", "jsonpath={.status.phase}"]),
        "Succeeded"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "bad-job",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}"
        ]),
        "3"
    );

    // restartPolicy OnFailure: a failed run is restarted after kubelet's 10 s back-off.
    c.ok(&[
        "run",
        "retry-job",
        "--image=busybox",
        "--restart=OnFailure",
        "--annotations=skiff.io/simulate-run-seconds=0.2",
        "--annotations=skiff.io/simulate-exit-code=1",
    ]);
    common::eventually(Duration::from_secs(30), || {
        let n = c.ok(&[
            "get",
            "pod",
            "retry-job",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        (n.trim().parse::<i64>().unwrap_or(0) >= 1).then_some(())
    });
    assert_eq!(
        c.ok(&["get", "pod", "retry-job", "-o", "jsonpath={.status.phase}"]),
        "Running"
    );

    // Graceful deletion completes through the simulated node.
    assert_eq!(
        c.ok(&["delete", "pod", "web", "--timeout=30s"]).trim(),
        "pod \"web\" deleted"
    );
    c.gone(&["get", "pod", "web"]);
}

/// A `skiff agent --simulate` process joined to the cluster with the join token.
fn start_agent(c: &Cluster, nodes: &str) -> std::process::Child {
    let token = std::fs::read_to_string(c.data_dir().join("token")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "agent",
            "--simulate",
            nodes,
            "--simulate-prefix",
            "remote",
            "--server",
            &format!("https://127.0.0.1:{}", c.port),
            "--token",
            token.trim(),
            "--ca-file",
        ])
        .arg(c.data_dir().join("tls/ca.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start agent")
}

#[test]
fn node_death_taints_and_evicts_then_recovers() {
    let c = Cluster::start_with(&["server", "--node-monitor-grace-period", "12"]);
    // A Node whose kubelet never posts status: Ready and the pressures turn Unknown
    // once the grace period has passed ("never posted"), as `describe node` shows.
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: silent\n");
    let mut agent = start_agent(&c, "1");
    common::eventually(Duration::from_secs(20), || {
        (row_opt(&c.ok(&["get", "nodes"]), "remote-0").is_some_and(|r| r[1] == "Ready"))
            .then_some(())
    });
    let reasons = common::eventually(Duration::from_secs(40), || {
        let r = c.ok(&[
            "get",
            "node",
            "silent",
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
        ]);
        r.contains("Ready=").then_some(r)
    });
    assert_eq!(
        reasons.trim(),
        "Ready=Unknown/NodeStatusNeverUpdated MemoryPressure=Unknown/NodeStatusNeverUpdated DiskPressure=Unknown/NodeStatusNeverUpdated PIDPressure=Unknown/NodeStatusNeverUpdated"
    );
    let described = c.ok(&["describe", "node", "silent"]);
    assert!(
        described.contains("Kubelet never posted node status."),
        "{described}"
    );
    // Tolerates unreachability for 2 s only (the default would be 300 s).
    c.ok(&["run", "short", "--image=nginx", "--overrides", r#"{"spec":{"tolerations":[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":2}]}}"#]);
    c.ok(&["run", "patient", "--image=nginx"]);
    common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pods"]);
        (row(&out, "short")[2] == "Running" && row(&out, "patient")[2] == "Running").then_some(())
    });

    // The node dies: no more Lease renewals.
    let _ = agent.kill();
    let _ = agent.wait();
    let taints = common::eventually(Duration::from_secs(40), || {
        let node: Value =
            serde_json::from_str(&c.ok(&["get", "node", "remote-0", "-o", "json"])).unwrap();
        let t = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        t.iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable")
            .then_some(t)
    });
    // Both of Kubernetes' unreachable taints: NoSchedule keeps new pods off, NoExecute
    // evicts, counting tolerationSeconds from its timeAdded.
    let mut effects: Vec<String> = taints
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect();
    effects.sort();
    assert_eq!(
        effects,
        [
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/unreachable:NoSchedule"
        ],
        "{taints:?}"
    );
    let no_execute = taints.iter().find(|t| t["effect"] == "NoExecute").unwrap();
    assert!(
        no_execute["timeAdded"]
            .as_str()
            .is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok()),
        "{taints:?}"
    );
    assert_eq!(row(&c.ok(&["get", "nodes"]), "remote-0")[1], "NotReady");
    assert_eq!(
        c.ok(&[
            "get",
            "node",
            "remote-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"
        ]),
        "Unknown"
    );
    // The short toleration runs out: the pod is evicted (Terminating, as no kubelet answers);
    // the default 300 s toleration keeps the other one.
    common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pods"]);
        (row(&out, "short")[2] == "Terminating").then_some(())
    });
    assert_eq!(row(&c.ok(&["get", "pods"]), "patient")[2], "Running");
    let d = c.ok(&["describe", "pod", "short"]);
    assert!(d.contains("TaintManagerEviction"), "{d}");

    // The node comes back: taints go, and the pending deletion completes.
    let mut agent = start_agent(&c, "1");
    common::eventually(Duration::from_secs(30), || {
        let t = c.ok(&["get", "node", "remote-0", "-o", "jsonpath={.spec.taints}"]);
        (!t.contains("unreachable")).then_some(())
    });
    assert_eq!(row(&c.ok(&["get", "nodes"]), "remote-0")[1], "Ready");
    common::eventually(Duration::from_secs(20), || {
        c.absent(&["get", "pod", "short"]).then_some(())
    });
    let _ = agent.kill();
    let _ = agent.wait();
}

fn row_opt<'a>(out: &'a str, name: &str) -> Option<Vec<&'a str>> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(words)
}

#[test]
fn drain_honours_disruption_budgets() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    common::eventually(Duration::from_secs(20), || {
        (c.ok(&["get", "nodes", "-o", "name"]).lines().count() == 2).then_some(())
    });
    for (pod, node) in [("web-a", "sim-0"), ("web-b", "sim-1")] {
        let overrides = format!(r#"{{"spec":{{"nodeName":"{node}"}}}}"#);
        c.ok(&[
            "run",
            pod,
            "--image=nginx",
            "--labels=app=web",
            "--overrides",
            &overrides,
        ]);
    }
    common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pods"]);
        (row(&out, "web-a")[2] == "Running" && row(&out, "web-b")[2] == "Running").then_some(())
    });
    assert_eq!(
        c.ok(&[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=2"
        ])
        .trim(),
        "poddisruptionbudget.policy/web created"
    );
    // The disruption controller publishes where the budget stands.
    common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pdb", "web", "--no-headers"]);
        (words(&out)[1..4] == ["2", "N/A", "0"]).then_some(())
    });
    assert_eq!(
        c.ok(&["get", "pdb", "web", "-o", "jsonpath={.status.currentHealthy}/{.status.expectedPods} {.status.conditions[0].reason}"]),
        "2/2 InsufficientPods"
    );

    let out = c.kubectl(&["drain", "sim-0", "--force", "--timeout=5s"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{all}"
    );
    assert_eq!(
        row(&c.ok(&["get", "nodes"]), "sim-0")[1],
        "Ready,SchedulingDisabled"
    );
    assert_eq!(row(&c.ok(&["get", "pods"]), "web-a")[2], "Running");

    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    let out = c.ok(&["drain", "sim-0", "--force", "--timeout=30s"]);
    assert!(out.contains("node/sim-0 drained"), "{out}");
    c.gone(&["get", "pod", "web-a"]);
    assert_eq!(row(&c.ok(&["get", "pods"]), "web-b")[2], "Running");
}

#[test]
fn priority_classes_set_pod_priority() {
    let c = Cluster::start();
    assert_eq!(
        c.ok(&["create", "priorityclass", "high", "--value=1000"])
            .trim(),
        "priorityclass.scheduling.k8s.io/high created"
    );
    c.ok(&[
        "run",
        "vip",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"priorityClassName":"high"}}"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "vip",
            "-o",
            "jsonpath={.spec.priority} {.spec.preemptionPolicy}"
        ]),
        "1000 PreemptLowerPriority"
    );
    let err = c.fails(&[
        "run",
        "nope",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"priorityClassName":"missing"}}"#,
    ]);
    assert!(
        err.contains("no PriorityClass with name missing was found"),
        "{err}"
    );
    let pcs = c.ok(&["get", "priorityclasses"]);
    assert_eq!(
        &row(&pcs, "system-node-critical")[..3],
        ["system-node-critical", "2000001000", "false"]
    );
}

#[test]
fn preemption_makes_room_for_higher_priority() {
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        "1",
        "--simulate-capacity",
        "cpu=1,memory=4Gi",
    ]);
    common::eventually(Duration::from_secs(20), || {
        (c.ok(&["get", "nodes", "-o", "name"]).lines().count() == 1).then_some(())
    });
    c.ok(&["create", "priorityclass", "low", "--value=10"]);
    c.ok(&["create", "priorityclass", "high", "--value=1000"]);
    c.ok(&["run", "batch", "--image=nginx", "--overrides", r#"{"spec":{"priorityClassName":"low","containers":[{"name":"batch","image":"nginx","resources":{"requests":{"cpu":"800m"}}}]}}"#]);
    common::eventually(Duration::from_secs(20), || {
        (row(&c.ok(&["get", "pods"]), "batch")[2] == "Running").then_some(())
    });
    c.ok(&["run", "urgent", "--image=nginx", "--overrides", r#"{"spec":{"priorityClassName":"high","containers":[{"name":"urgent","image":"nginx","resources":{"requests":{"cpu":"500m"}}}]}}"#]);
    let node = common::eventually(Duration::from_secs(30), || {
        let n = c.ok(&["get", "pod", "urgent", "-o", "jsonpath={.spec.nodeName}"]);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(node, "sim-0");
    c.gone(&["get", "pod", "batch"]);
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Preempted",
        "-o",
        "name",
    ]);
    assert!(!ev.trim().is_empty(), "no Preempted event");
}

#[test]
fn bench_direct_binder_binds_without_a_scheduler() {
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        "2",
        "--disable",
        "scheduler",
        "--bench-direct-binder",
    ]);
    common::eventually(Duration::from_secs(20), || {
        (c.ok(&["get", "nodes"]).lines().count() == 3).then_some(())
    });
    c.ok(&["run", "a", "--image=busybox"]);
    c.ok(&["run", "b", "--image=busybox"]);
    let nodes = common::eventually(Duration::from_secs(20), || {
        let out = c.ok(&["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"]);
        let n: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        (n.len() == 2).then_some(n)
    });
    assert_ne!(nodes[0], nodes[1], "pods go to the nodes in turn");
    // No scheduler ran: no Scheduled events.
    assert!(!c.ok(&["get", "events"]).contains("Scheduled"));
}

#[test]
fn service_accounts_tokens_and_the_root_ca() {
    let c = Cluster::start();
    // Every namespace has the cluster CA for pods to trust the API with.
    c.ok(&["create", "namespace", "team"]);
    let ca = std::fs::read_to_string(c.data_dir().join("tls/ca.crt")).unwrap();
    let get_ca = || {
        c.kubectl(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ])
    };
    assert_eq!(String::from_utf8_lossy(&get_ca().stdout), ca);
    // ... and gets it back when it is deleted or edited, as the publisher does.
    c.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]);
    common::eventually(Duration::from_secs(10), || {
        (String::from_utf8_lossy(&get_ca().stdout) == ca).then_some(())
    });
    c.ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "-p",
        r#"{"data":{"ca.crt":"tampered"}}"#,
    ]);
    common::eventually(Duration::from_secs(10), || {
        (String::from_utf8_lossy(&get_ca().stdout) == ca).then_some(())
    });
    // A deleted `default` ServiceAccount is made again (a new object), as the
    // ServiceAccount controller does.
    let sa_uid = || {
        c.kubectl(&[
            "get",
            "sa",
            "default",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
    };
    let first = String::from_utf8_lossy(&sa_uid().stdout).to_string();
    assert!(!first.is_empty());
    c.ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    common::eventually(Duration::from_secs(10), || {
        let now = String::from_utf8_lossy(&sa_uid().stdout).to_string();
        (!now.is_empty() && now != first).then_some(())
    });

    // The ServiceAccount admission plugin mounts the API access volume.
    c.ok(&["run", "p", "--image=busybox", "-n", "team"]);
    let pod: Value =
        serde_json::from_str(&c.ok(&["get", "pod", "p", "-n", "team", "-o", "json"])).unwrap();
    let vol = &pod["spec"]["volumes"][0];
    let name = vol["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-"), "{vol}");
    let sources = &vol["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(
        sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["name"], name);
    assert_eq!(
        mount["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(mount["readOnly"], true);
    // Not when the pod (or its service account) says no.
    c.ok(&["create", "serviceaccount", "quiet", "-n", "team"]);
    c.ok(&[
        "patch",
        "serviceaccount",
        "quiet",
        "-n",
        "team",
        "-p",
        r#"{"automountServiceAccountToken":false}"#,
    ]);
    c.ok(&[
        "run",
        "q",
        "--image=busybox",
        "-n",
        "team",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"quiet"}}"#,
    ]);
    let q = c.ok(&[
        "get",
        "pod",
        "q",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.volumes}",
    ]);
    assert_eq!(q, "", "a volume despite automountServiceAccountToken=false");
    let missing = c.fails(&[
        "run",
        "r",
        "--image=busybox",
        "-n",
        "team",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"nobody"}}"#,
    ]);
    assert!(
        missing.contains(
            r#"pods "r" is forbidden: error looking up service account team/nobody: serviceaccount "nobody" not found"#
        ),
        "{missing}"
    );

    // kubectl create token: TokenRequest, checked as Kubernetes checks it.
    let token = c.ok(&["create", "token", "default", "-n", "team"]);
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let short = c.fails(&["create", "token", "default", "-n", "team", "--duration=5m"]);
    assert!(
        short.contains("may not specify a duration less than 10 minutes"),
        "{short}"
    );
    let nobody = c.fails(&["create", "token", "nobody", "-n", "team"]);
    assert!(
        nobody.contains(r#"serviceaccounts "nobody" not found"#),
        "{nobody}"
    );
    let other_sa = c.fails(&[
        "create",
        "token",
        "quiet",
        "-n",
        "team",
        "--bound-object-kind=Pod",
        "--bound-object-name=p",
    ]);
    assert!(
        other_sa.contains("to pod running with different serviceaccount name"),
        "{other_sa}"
    );
    // The token names its service account to the API, until the account is gone.
    let quiet = c.ok(&["create", "token", "quiet", "-n", "team"]);
    assert_eq!(
        c.whoami(quiet.trim()).as_deref(),
        Some("system:serviceaccount:team:quiet")
    );
    c.ok(&["delete", "serviceaccount", "quiet", "-n", "team"]);
    assert!(c.whoami(quiet.trim()).is_none());
    // Relying parties can check tokens with the published key.
    let jwks: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
}

#[test]
fn garbage_collector_follows_owner_references() {
    let c = Cluster::start();
    let uid = |name: &str| c.ok(&["get", "configmap", name, "-o", "jsonpath={.metadata.uid}"]);
    let dependent = |name: &str, owners: &[(&str, String)], block: bool| {
        let refs: Vec<Value> = owners
            .iter()
            .map(|(n, u)| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": u, "blockOwnerDeletion": block, "controller": *n == "live"}))
            .collect();
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "ownerReferences": refs}, "data": {"k": "v"}});
        let f = c.dir.path().join(format!("{name}.json"));
        std::fs::write(&f, cm.to_string()).unwrap();
        c.ok(&["create", "-f", f.to_str().unwrap()]);
    };
    let gone = |name: &str| {
        common::eventually(Duration::from_secs(20), || {
            c.absent(&["get", "configmap", name]).then_some(())
        })
    };
    for n in ["bg", "or", "fg", "live"] {
        c.ok(&["create", "configmap", n, "--from-literal=a=b"]);
    }
    dependent("bg-dep", &[("bg", uid("bg"))], false);
    dependent("or-dep", &[("or", uid("or"))], true);
    dependent("fg-dep", &[("fg", uid("fg"))], true);
    dependent(
        "half",
        &[("live", uid("live")), ("ghost", "0000-ghost".into())],
        false,
    );
    dependent("stray", &[("never", "0000-never".into())], false);

    // Background (kubectl's default): the owner goes at once, its dependent after.
    c.ok(&["delete", "configmap", "bg"]);
    gone("bg-dep");
    // A dependent whose only owner never existed goes too.
    gone("stray");
    // Orphan: the dependent stays, released.
    c.ok(&["delete", "configmap", "or", "--cascade=orphan"]);
    gone("or");
    let refs = c.ok(&[
        "get",
        "configmap",
        "or-dep",
        "-o",
        "jsonpath={.metadata.ownerReferences}",
    ]);
    assert_eq!(refs, "", "or-dep still has owners: {refs}");
    // Foreground: kubectl waits while the dependent goes first, then the owner.
    c.ok(&["delete", "configmap", "fg", "--cascade=foreground"]);
    gone("fg");
    assert!(!c.kubectl(&["get", "configmap", "fg-dep"]).status.success());
    // A dangling reference beside a live owner is removed; the object stays.
    common::eventually(Duration::from_secs(20), || {
        let refs = c.ok(&[
            "get",
            "configmap",
            "half",
            "-o",
            "jsonpath={.metadata.ownerReferences[*].name}",
        ]);
        (refs == "live").then_some(())
    });
    // The reference that stays keeps its flags.
    assert_eq!(
        c.ok(&[
            "get",
            "configmap",
            "half",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].controller}",
        ]),
        "true"
    );
}

#[test]
fn replicasets_keep_their_pods() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: nginx}]}\n";
    c.apply(rs);
    let pods = |sel: &str| -> Vec<String> {
        c.ok(&["get", "pods", "-l", sel, "-o", "name"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let settle = |want: &str| {
        common::eventually(Duration::from_secs(30), || {
            let out = c.ok(&["get", "rs", "web", "--no-headers"]);
            let w = words(&out);
            (w[1..4] == [want, want, want]).then_some(())
        })
    };
    settle("3");
    assert_eq!(pods("app=web").len(), 3);
    let owner = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.ownerReferences[0].kind}/{.items[0].metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "ReplicaSet/web");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");

    // A deleted pod is replaced.
    let first = pods("app=web")[0].clone();
    c.ok(&["delete", &first, "--wait=false"]);
    common::eventually(Duration::from_secs(30), || {
        let now = pods("app=web");
        (now.len() == 3 && !now.contains(&first)).then_some(())
    });
    settle("3");

    // scale up and down.
    c.ok(&["scale", "rs", "web", "--replicas=5"]);
    settle("5");
    c.ok(&["scale", "rs", "web", "--replicas=2"]);
    settle("2");
    common::eventually(Duration::from_secs(30), || {
        (pods("app=web").len() == 2).then_some(())
    });

    // A matching orphan is adopted, and the surplus it makes is removed.
    c.ok(&["run", "stray", "--image=nginx", "--labels=app=web"]);
    common::eventually(Duration::from_secs(30), || {
        (pods("app=web").len() == 2).then_some(())
    });
    // A pod relabelled out of the set is released and replaced.
    let leaving = pods("app=web")[0].clone();
    c.ok(&["label", &leaving, "app=debug", "--overwrite"]);
    common::eventually(Duration::from_secs(30), || {
        (pods("app=web").len() == 2).then_some(())
    });
    common::eventually(Duration::from_secs(30), || {
        let r = c.ok(&[
            "get",
            &leaving,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ]);
        r.is_empty().then_some(())
    });

    // Deleting the set takes its pods (background cascade); orphaning keeps them.
    c.ok(&["delete", "rs", "web"]);
    common::eventually(Duration::from_secs(30), || {
        pods("app=web").is_empty().then_some(())
    });
    c.apply(rs);
    settle("3");
    c.ok(&["delete", "rs", "web", "--cascade=orphan"]);
    common::eventually(Duration::from_secs(30), || {
        let refs = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences}",
        ]);
        refs.is_empty().then_some(())
    });
    assert_eq!(pods("app=web").len(), 3);
}

/// Recreate empties the old ReplicaSet and waits for its pods to be gone before the
/// new one starts, at full size (a rolling update would start it at its surge, 1).
#[test]
fn a_recreate_deployment_replaces_all_pods_at_once() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    c.ok(&[
        "create",
        "deployment",
        "re",
        "--image=nginx:1",
        "--replicas=3",
    ]);
    c.ok(&[
        "patch",
        "deployment/re",
        "-p",
        r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#,
    ]);
    let status = ["rollout", "status", "deployment/re", "--timeout=60s"];
    assert!(c.ok(&status).contains("successfully rolled out"));
    c.ok(&["set", "image", "deployment/re", "nginx=nginx:2"]);
    assert!(c.ok(&status).contains("successfully rolled out"));
    // Events are written beside the rollout: wait for both scale-ups to be recorded.
    let events = c.eventually(Duration::from_secs(20), "both scale-ups recorded", || {
        let out = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=re,reason=ScalingReplicaSet",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        (out.matches("from 0 to").count() >= 2).then_some(out)
    });
    let lines: Vec<&str> = events.lines().collect();
    assert!(lines.iter().any(|l| l.contains("from 3 to 0")), "{events}");
    let ups: Vec<&&str> = lines.iter().filter(|l| l.contains("from 0 to")).collect();
    assert_eq!(ups.len(), 2, "{events}");
    assert!(ups.iter().all(|l| l.ends_with("from 0 to 3")), "{events}");
}

#[test]
fn deployments_roll_out_scale_and_roll_back() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1",
        "--replicas=3",
    ]);
    let status = |args: &[&str]| {
        let mut a = vec!["rollout", "status", "deployment/web", "--timeout=60s"];
        a.extend_from_slice(args);
        c.ok(&a)
    };
    assert!(status(&[]).contains("successfully rolled out"));
    let row = |out: &str| words(out.lines().nth(1).unwrap()).join(" ");
    let get = c.ok(&["get", "deployment", "web"]);
    assert!(row(&get).starts_with("web 3/3 3 3"), "{get}");
    let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "{rs}");
    let hash = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.labels.pod-template-hash}",
    ]);
    assert!(rs.trim().ends_with(&format!("web-{hash}")), "{rs} {hash}");
    assert_eq!(
        c.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ]),
        "1"
    );

    // A new image rolls out through a second ReplicaSet; the first is kept at 0.
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:2"]);
    c.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=image 2",
    ]);
    assert!(status(&[]).contains("successfully rolled out"));
    let sets = c.ok(&["get", "rs", "-l", "app=web", "--no-headers"]);
    let mut desired: Vec<&str> = sets.lines().map(|l| words(l)[1]).collect();
    desired.sort();
    assert_eq!(desired, ["0", "3"], "{sets}");
    let images = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(images.split(' ').all(|i| i == "nginx:2"), "{images}");
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    assert!(history.contains("image 2"), "{history}");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Deployment",
    ]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");

    // undo returns to the first template, as revision 3.
    c.ok(&["rollout", "undo", "deployment/web"]);
    assert!(status(&[]).contains("successfully rolled out"));
    let image = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1");
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("3 "), "{history}");
    assert_eq!(
        c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        2
    );
    c.ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    assert!(status(&[]).contains("successfully rolled out"));
    let image = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:2");

    // scale, restart, pause and resume.
    c.ok(&["scale", "deployment/web", "--replicas=5"]);
    assert!(status(&[]).contains("successfully rolled out"));
    common::eventually(Duration::from_secs(30), || {
        let get = c.ok(&["get", "deployment", "web"]);
        row(&get).starts_with("web 5/5 5 5").then_some(())
    });
    c.ok(&["rollout", "restart", "deployment/web"]);
    assert!(status(&[]).contains("successfully rolled out"));
    assert_eq!(
        c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        3
    );
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        3,
        "a paused deployment rolled out"
    );
    c.ok(&["rollout", "resume", "deployment/web"]);
    assert!(status(&[]).contains("successfully rolled out"));
    let images = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(images.split(' ').all(|i| i == "nginx:3"), "{images}");
    let describe = c.ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("NewReplicaSetAvailable"), "{describe}");

    // Orphaned by --cascade=orphan, its ReplicaSets are adopted by the next Deployment
    // that selects them (and so go with it below).
    let owners = || {
        c.ok(&[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences[0].uid}",
        ])
    };
    let sets = c
        .ok(&["get", "rs", "-l", "app=web", "-o", "name"])
        .lines()
        .count();
    assert!(sets >= 2, "{sets}");
    c.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    common::eventually(Duration::from_secs(30), || {
        owners().is_empty().then_some(())
    });
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:3",
        "--replicas=3",
    ]);
    let uid = c.ok(&["get", "deployment", "web", "-o", "jsonpath={.metadata.uid}"]);
    common::eventually(Duration::from_secs(30), || {
        let o = owners();
        let o: Vec<&str> = o.split_whitespace().collect();
        (o.len() >= sets && o.iter().all(|u| *u == uid)).then_some(())
    });
    assert!(status(&[]).contains("successfully rolled out"));

    // Deleting the deployment takes its ReplicaSets and their pods.
    c.ok(&["delete", "deployment", "web"]);
    common::eventually(Duration::from_secs(30), || {
        let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
        let pods = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        (rs.is_empty() && pods.is_empty()).then_some(())
    });
}

#[test]
fn jobs_complete_fail_and_expire() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    let job = |name: &str, spec: &str, annotations: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    metadata:\n      annotations: {{{annotations}}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n"
        )
    };
    let status = |name: &str| {
        let out = c.ok(&["get", "job", name, "--no-headers"]);
        words(&out)[1].to_string()
    };
    let wait_status = |name: &str, want: &str| {
        common::eventually(Duration::from_secs(60), || {
            (status(name) == want).then_some(())
        })
    };
    // completions 5, parallelism 2: two at once, never more. Each pod's run is the span
    // from its start (the earlier of status.startTime and its container's startedAt) to
    // its container's end (terminated.finishedAt), in whole seconds: 2 s runs keep each
    // span at least a second long, and a pod started the second another ended did not
    // run with it (the job replaces a pod only once it has ended).
    c.apply(&job(
        "five",
        "  completions: 5\n  parallelism: 2\n",
        "skiff.io/simulate-run-seconds: '2'",
    ));
    wait_status("five", "Complete");
    let list: Value =
        serde_json::from_str(&c.ok(&["get", "pods", "-l", "job-name=five", "-o", "json"])).unwrap();
    let time = |v: &Value| -> k8s_openapi::jiff::Timestamp {
        v.as_str()
            .unwrap_or_else(|| panic!("no time: {v}"))
            .parse()
            .unwrap()
    };
    let mut spans = Vec::new();
    for p in list["items"].as_array().unwrap() {
        let ended = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        let (start, started, end) = (
            time(&p["status"]["startTime"]),
            time(&ended["startedAt"]),
            time(&ended["finishedAt"]),
        );
        assert!(started < end, "{p}");
        spans.push((start.min(started), end));
    }
    // Ends before starts at the same second: the spans are half-open.
    let mut changes: Vec<(k8s_openapi::jiff::Timestamp, i32)> = spans
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    changes.sort();
    let (mut running, mut most) = (0, 0);
    for (_, d) in changes {
        running += d;
        most = most.max(running);
    }
    assert_eq!(most, 2, "pods ran at once at most {most} (spans {spans:?})");
    let out = c.ok(&["get", "job", "five"]);
    let r = row(&out, "five");
    assert_eq!(&r[1..3], ["Complete", "5/5"], "{out}");
    assert_eq!(
        c.ok(&["get", "pods", "-l", "job-name=five", "-o", "name"])
            .lines()
            .count(),
        5
    );
    // Results are counted and the pods released from the tracking finalizer.
    common::eventually(Duration::from_secs(30), || {
        let f = c.ok(&[
            "get",
            "pods",
            "-l",
            "job-name=five",
            "-o",
            "jsonpath={.items[*].metadata.finalizers}",
        ]);
        f.is_empty().then_some(())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=five",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Completed"),
        "{events}"
    );

    // A job that always fails stops at backoffLimit (1: two failures), after a back-off.
    c.apply(&job(
        "bad",
        "  backoffLimit: 1\n",
        "skiff.io/simulate-run-seconds: '0.2', skiff.io/simulate-exit-code: '2'",
    ));
    wait_status("bad", "Failed");
    let reason = c.ok(&[
        "get",
        "job",
        "bad",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
    ]);
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(
        c.ok(&["get", "job", "bad", "-o", "jsonpath={.status.failed}"]),
        "2"
    );

    // podFailurePolicy FailJob on an exit code ends it at the first failure.
    c.apply(&job(
            "policy",
            "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {operator: In, values: [42]}\n",
            "skiff.io/simulate-run-seconds: '0.2', skiff.io/simulate-exit-code: '42'",
        ),
    );
    wait_status("policy", "Failed");
    let reason = c.ok(&[
        "get",
        "job",
        "policy",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
    ]);
    assert_eq!(reason, "PodFailurePolicy");

    // Indexed: one pod per index, each told its index.
    c.apply(&job(
        "ix",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        "skiff.io/simulate-run-seconds: '0.3'",
    ));
    wait_status("ix", "Complete");
    assert_eq!(
        c.ok(&[
            "get",
            "job",
            "ix",
            "-o",
            "jsonpath={.status.completedIndexes}"
        ]),
        "0-2"
    );
    let indexes = c.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=ix",
        "-o",
        "jsonpath={.items[*].metadata.annotations.batch\\.kubernetes\\.io/job-completion-index}",
    ]);
    let mut ix: Vec<&str> = indexes.split(' ').collect();
    ix.sort();
    assert_eq!(ix, ["0", "1", "2"]);

    // activeDeadlineSeconds, then ttlSecondsAfterFinished removes the job and its pods.
    c.apply(&job(
        "slow",
        "  activeDeadlineSeconds: 2\n  ttlSecondsAfterFinished: 2\n",
        "skiff.io/simulate-run-seconds: '600'",
    ));
    // Read in the same poll: the TTL may remove the job a second after it fails.
    let reason = common::eventually(Duration::from_secs(60), || {
        let r = c.ok(&[
            "get",
            "job",
            "slow",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ]);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reason, "DeadlineExceeded");
    common::eventually(Duration::from_secs(30), || {
        let gone = c.absent(&["get", "job", "slow"]);
        let pods = c.ok(&["get", "pods", "-l", "job-name=slow", "-o", "name"]);
        (gone && pods.is_empty()).then_some(())
    });

    // A running pod whose reference was removed by hand is adopted again (the
    // selector names the job's uid); deleted with --cascade=orphan, the job leaves its
    // pod running and free of the tracking finalizer.
    c.apply(&job("long", "", "skiff.io/simulate-run-seconds: '600'"));
    let pod = common::eventually(Duration::from_secs(30), || {
        let p = c.ok(&[
            "get",
            "pods",
            "-l",
            "job-name=long",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        (!p.is_empty()).then_some(p)
    });
    let job_uid = c.ok(&["get", "job", "long", "-o", "jsonpath={.metadata.uid}"]);
    adopted_again(&c, &pod, &job_uid);
    assert_eq!(
        c.ok(&["get", "pods", "-l", "job-name=long", "-o", "name"])
            .lines()
            .count(),
        1
    );
    c.ok(&["delete", "job", "long", "--cascade=orphan"]);
    common::eventually(Duration::from_secs(30), || {
        let p = c.ok(&[
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.status.phase} {.metadata.ownerReferences}{.metadata.finalizers}",
        ]);
        (p == "Running ").then_some(())
    });
    c.ok(&["delete", "pod", &pod, "--wait=false"]);

    // kubectl delete job takes its pods with it.
    c.ok(&["delete", "job", "five"]);
    common::eventually(Duration::from_secs(30), || {
        c.ok(&["get", "pods", "-l", "job-name=five", "-o", "name"])
            .is_empty()
            .then_some(())
    });
}

#[test]
fn cronjobs_fire_on_schedule() {
    // The CronJob controller's clock runs 60 times faster: a minute a second.
    let c = Cluster::start_with(&["up", "--simulate", "2", "--cronjob-clock-rate", "60"]);
    c.apply(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n  schedule: '*/1 * * * *'\n  successfulJobsHistoryLimit: 2\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          annotations: {skiff.io/simulate-run-seconds: '0.2'}\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n",
    );
    let owned = || -> Vec<String> {
        c.ok(&[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[?(@.metadata.ownerReferences[0].name==\"tick\")]}{.metadata.name}{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    };
    // Several runs happen; finished ones beyond the history limit are removed.
    let events = common::eventually(Duration::from_secs(40), || {
        let e = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=tick",
        ]);
        (e.matches("Created job").count() >= 4 && e.contains("SawCompletedJob")).then_some(e)
    });
    assert!(events.contains("SuccessfulDelete"), "{events}");
    common::eventually(Duration::from_secs(20), || {
        (owned().len() <= 3).then_some(())
    });
    let row_ = c.ok(&["get", "cronjob", "tick", "--no-headers"]);
    let w = words(&row_);
    assert_eq!(&w[..4], ["tick", "*/1", "*", "*"], "{row_}");
    let last = c.ok(&[
        "get",
        "cronjob",
        "tick",
        "-o",
        "jsonpath={.status.lastScheduleTime}",
    ]);
    assert!(last.ends_with(":00Z"), "{last}");
    let names = owned();
    assert!(names.iter().all(|n| n.starts_with("tick-")), "{names:?}");

    // Suspended: no more runs.
    c.ok(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let before = c
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=tick",
        ])
        .matches("Created job")
        .count();
    std::thread::sleep(Duration::from_secs(3));
    let after = c
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=tick",
        ])
        .matches("Created job")
        .count();
    assert_eq!(before, after, "a suspended CronJob started jobs");

    // kubectl create job --from=cronjob: a Job from its template, owned by it.
    c.ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    assert_eq!(
        c.ok(&[
            "get",
            "job",
            "by-hand",
            "-o",
            "jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}"
        ]),
        "manual"
    );
    common::eventually(Duration::from_secs(30), || {
        let out = c.ok(&["get", "job", "by-hand", "--no-headers"]);
        (words(&out)[1] == "Complete").then_some(())
    });

    // Forbid: a long run blocks the next ones.
    c.apply(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: slow}\nspec:\n  schedule: '@every 1m'\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          annotations: {skiff.io/simulate-run-seconds: '600'}\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n",
    );
    common::eventually(Duration::from_secs(20), || {
        let e = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=slow",
        ]);
        e.contains("JobAlreadyActive").then_some(())
    });
    // Each blocked start repeats the event: one Event counts them, as in Kubernetes.
    common::eventually(Duration::from_secs(20), || {
        let counts = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=JobAlreadyActive",
            "-o",
            "jsonpath={.items[*].count}",
        ]);
        let n: Vec<i64> = counts
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        (n.len() == 1 && n[0] >= 2).then_some(())
    });
    let active = c.ok(&[
        "get",
        "cronjob",
        "slow",
        "-o",
        "jsonpath={.status.active[*].name}",
    ]);
    assert_eq!(active.split(' ').count(), 1, "{active}");
}

#[test]
fn the_guides_workloads_run_on_simulated_nodes() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    for f in ["daemonset.yaml", "job.yaml", "cronjob.yaml"] {
        c.ok(&["apply", "-f", manifest(f).to_str().unwrap()]);
    }
    // The DaemonSet: one fluentd pod per node.
    assert!(
        c.ok(&["rollout", "status", "ds/logging-daemonset", "--timeout=60s"])
            .contains("successfully rolled out")
    );
    let nodes = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=logging",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    let mut nodes: Vec<&str> = nodes.split_whitespace().collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-0", "sim-1"]);
    // The Job: its one pod runs pg_dump (which a simulated container ends after a
    // second, with exit code 0) and the job completes.
    common::eventually(Duration::from_secs(60), || {
        let job = c.ok(&["get", "job", "db-backup", "--no-headers"]);
        (words(&job)[1..3] == ["Complete", "1/1"]).then_some(())
    });
    let out = c.ok(&["get", "pods", "-l", "job-name=db-backup", "--no-headers"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(words(&out)[2], "Completed", "{out}");
    // The CronJob waits for midnight; a run on demand makes the same pod now.
    let cj = c.ok(&["get", "cronjob", "cleanup-job", "--no-headers"]);
    assert_eq!(&words(&cj)[6..9], ["<none>", "False", "0"], "{cj}");
    assert_eq!(
        c.ok(&["create", "job", "cleanup-now", "--from=cronjob/cleanup-job"])
            .trim(),
        "job.batch/cleanup-now created"
    );
    let pod: Value = common::eventually(Duration::from_secs(30), || {
        let out = c.ok(&["get", "pods", "-l", "job-name=cleanup-now", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().and_then(|i| i.first().cloned())
    });
    assert_eq!(pod["spec"]["restartPolicy"], "OnFailure");
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        serde_json::json!(["rm", "-rf", "/tmp/*"])
    );
    let job: Value =
        serde_json::from_str(&c.ok(&["get", "job", "cleanup-now", "-o", "json"])).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
}

#[test]
fn daemonsets_follow_nodes_and_roll() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    c.apply(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: logging}\nspec:\n  selector: {matchLabels: {app: logging}}\n  template:\n    metadata: {labels: {app: logging}}\n    spec:\n      containers: [{name: fluentd, image: fluentd:1}]\n",
    );
    let placed = || -> Vec<String> {
        let out = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=logging",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ]);
        let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    };
    common::eventually(Duration::from_secs(30), || {
        (placed() == ["sim-0", "sim-1"]).then_some(())
    });
    assert!(
        c.ok(&["rollout", "status", "ds/logging", "--timeout=60s"])
            .contains("successfully rolled out")
    );
    let out = c.ok(&["get", "ds", "logging", "--no-headers"]);
    assert_eq!(&words(&out)[1..6], ["2", "2", "2", "2", "2"], "{out}");

    // Ownership is claimed, as Kubernetes' controllers do: a pod whose reference was
    // removed by hand is adopted again (the same pod, none added) ...
    let ds_uid = c.ok(&["get", "ds", "logging", "-o", "jsonpath={.metadata.uid}"]);
    let first = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=logging",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    adopted_again(&c, &first, &ds_uid);
    assert_eq!(placed(), ["sim-0", "sim-1"]);
    // ... and one relabelled out of the selector is released and replaced on its node.
    let node = c.ok(&["get", "pod", &first, "-o", "jsonpath={.spec.nodeName}"]);
    c.ok(&["label", "pod", &first, "app=elsewhere", "--overwrite"]);
    common::eventually(Duration::from_secs(30), || {
        let owners = c.ok(&[
            "get",
            "pod",
            &first,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ]);
        (owners.is_empty() && placed() == ["sim-0", "sim-1"]).then_some(())
    });
    let replacement = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=logging",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert!(
        !replacement.is_empty() && replacement != first,
        "{replacement}"
    );
    c.ok(&["delete", "pod", &first, "--wait=false"]);

    // A node joining gets its pod; one leaving takes it along.
    let mut agent = start_agent(&c, "1");
    common::eventually(Duration::from_secs(30), || {
        (placed() == ["remote-0", "sim-0", "sim-1"]).then_some(())
    });
    agent.kill().unwrap();
    agent.wait().unwrap();
    c.ok(&["delete", "node", "remote-0"]);
    common::eventually(Duration::from_secs(30), || {
        (placed() == ["sim-0", "sim-1"]).then_some(())
    });

    // A tainted node is skipped unless tolerated.
    c.ok(&["taint", "node", "sim-1", "dedicated=db:NoExecute"]);
    common::eventually(Duration::from_secs(30), || {
        (placed() == ["sim-0"]).then_some(())
    });
    c.ok(&["taint", "node", "sim-1", "dedicated=db:NoExecute-"]);
    common::eventually(Duration::from_secs(30), || {
        (placed() == ["sim-0", "sim-1"]).then_some(())
    });

    // RollingUpdate: a new image replaces each pod; the history has both templates.
    c.ok(&["set", "image", "ds/logging", "fluentd=fluentd:2"]);
    assert!(
        c.ok(&["rollout", "status", "ds/logging", "--timeout=60s"])
            .contains("successfully rolled out")
    );
    common::eventually(Duration::from_secs(30), || {
        let images = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=logging",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        (images == "fluentd:2 fluentd:2").then_some(())
    });
    let history = c.ok(&["rollout", "history", "ds/logging"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    c.ok(&["rollout", "undo", "ds/logging"]);
    assert_eq!(
        c.ok(&[
            "get",
            "ds",
            "logging",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "fluentd:1"
    );
    common::eventually(Duration::from_secs(30), || {
        let images = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=logging",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        (images == "fluentd:1 fluentd:1").then_some(())
    });

    c.ok(&["delete", "ds", "logging"]);
    common::eventually(Duration::from_secs(30), || {
        placed().is_empty().then_some(())
    });
}

#[test]
fn statefulsets_keep_names_order_and_claims() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    let sts = "apiVersion: v1\nkind: Service\nmetadata: {name: nginx}\nspec:\n  clusterIP: None\n  selector: {app: nginx}\n  ports: [{port: 80}]\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  serviceName: nginx\n  replicas: 3\n  selector: {matchLabels: {app: nginx}}\n  template:\n    metadata: {labels: {app: nginx}}\n    spec:\n      containers: [{name: nginx, image: nginx:1}]\n  volumeClaimTemplates:\n  - metadata: {name: www}\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources: {requests: {storage: 1Gi}}\n";
    // Creation and readiness in the order a watch sees them (the store's one revision
    // order). A pod of another app is listed first, so the watch is known to be running
    // before the set exists and every change of the set's pods comes as an event.
    c.ok(&["run", "marker", "--image=nginx", "--labels=role=marker"]);
    let mut watcher = Watch::start(&c, &["get", "pods", "-w", "-o", "json"]);
    assert!(
        watcher.until(Duration::from_secs(20), |l| l.contains("\"marker\"")),
        "the initial list never showed; saw {:?}",
        watcher.seen
    );
    c.apply(sts);
    assert!(
        c.ok(&["rollout", "status", "sts/web", "--timeout=60s"])
            .contains("roll")
    );
    let pods = || -> Vec<String> {
        let out = c.ok(&["get", "pods", "-l", "app=nginx", "-o", "name"]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    common::eventually(Duration::from_secs(30), || {
        (pods() == ["pod/web-0", "pod/web-1", "pod/web-2"]).then_some(())
    });
    let text = watcher.stop().join("\n");
    let seen: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect();
    let named = |e: &Value, name: &str| e["metadata"]["name"] == name;
    let ready_since = |e: &Value| {
        e["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(|t| t.parse::<k8s_openapi::jiff::Timestamp>().unwrap())
    };
    let states = || -> Vec<String> {
        seen.iter()
            .map(|e| {
                format!(
                    "{} ready={}",
                    e["metadata"]["name"].as_str().unwrap_or("?"),
                    ready_since(e).is_some()
                )
            })
            .collect()
    };
    // Each pod is created only after the one before it became Ready (OrderedReady):
    // in the watch, and by the clocks (to the second they are kept in).
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready_at = seen
            .iter()
            .position(|e| named(e, before) && ready_since(e).is_some())
            .unwrap_or_else(|| panic!("{before} never seen Ready: {:?}", states()));
        let created_at = seen
            .iter()
            .position(|e| named(e, after))
            .unwrap_or_else(|| panic!("{after} never seen: {:?}", states()));
        assert!(
            ready_at < created_at,
            "{after} created before {before} was Ready: {:?}",
            states()
        );
        let ready = ready_since(&seen[ready_at]).unwrap();
        let created: k8s_openapi::jiff::Timestamp =
            seen[created_at]["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        assert!(
            created >= ready,
            "{after} created at {created}, {before} Ready at {ready}"
        );
    }
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "web-1",
            "-o",
            "jsonpath={.spec.hostname}.{.spec.subdomain}"
        ]),
        "web-1.nginx"
    );
    let claims = c.ok(&["get", "pvc", "-o", "name"]);
    for n in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/www-web-{n}")),
            "{claims}"
        );
    }
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "web-2",
            "-o",
            "jsonpath={.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}"
        ]),
        "www-web-2"
    );

    // Scale down from the top; the claims stay. Back up: the same names and claims.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    common::eventually(Duration::from_secs(30), || {
        (pods() == ["pod/web-0"]).then_some(())
    });
    assert_eq!(c.ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
    c.ok(&["scale", "sts", "web", "--replicas=3"]);
    common::eventually(Duration::from_secs(30), || {
        (pods() == ["pod/web-0", "pod/web-1", "pod/web-2"]).then_some(())
    });
    // A member whose reference was removed by hand is adopted again, not replaced.
    let set_uid = c.ok(&["get", "sts", "web", "-o", "jsonpath={.metadata.uid}"]);
    adopted_again(&c, "web-1", &set_uid);

    // A rolling update replaces them from the highest ordinal down.
    c.ok(&["set", "image", "sts/web", "nginx=nginx:2"]);
    assert!(
        c.ok(&["rollout", "status", "sts/web", "--timeout=60s"])
            .contains("complete")
    );
    let images = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=nginx",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(images, "nginx:2 nginx:2 nginx:2");
    let history = c.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let st = c.ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.currentRevision}={.status.updateRevision}",
    ]);
    let (cur, upd) = st.split_once('=').unwrap();
    assert_eq!(cur, upd);

    // Deleting the set takes the pods; the claims outlive it.
    c.ok(&["delete", "sts", "web"]);
    common::eventually(Duration::from_secs(30), || pods().is_empty().then_some(()));
    assert_eq!(c.ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
}

#[test]
fn pods_of_a_dead_node_move_once_evicted() {
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        "1",
        "--node-monitor-grace-period",
        "6",
        "--pod-gc-period",
        "1",
    ]);
    let mut agent = start_agent(&c, "1");
    common::eventually(Duration::from_secs(20), || {
        (row_opt(&c.ok(&["get", "nodes"]), "remote-0").is_some_and(|r| r[1] == "Ready"))
            .then_some(())
    });
    c.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}]\n      containers: [{name: c, image: nginx}]\n",
    );
    let on = |node: &str| {
        c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            &format!("spec.nodeName={node},status.phase=Running"),
            "-o",
            "name",
        ])
        .lines()
        .count()
    };
    common::eventually(Duration::from_secs(30), || {
        (on("remote-0") > 0 && on("sim-0") + on("remote-0") == 4).then_some(())
    });
    // The node dies; once its pods are evicted, their replacements run elsewhere.
    let _ = agent.kill();
    let _ = agent.wait();
    common::eventually(Duration::from_secs(120), || {
        let live = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.spec.nodeName}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ]);
        let healthy = live.lines().filter(|l| l.trim() == "sim-0").count();
        (healthy == 4).then_some(())
    });
    let out = c.ok(&["get", "deployment", "web", "--no-headers"]);
    assert_eq!(words(&out)[1], "4/4", "{out}");
    // The evicted pods stay Terminating: no kubelet is left to finish them...
    assert!(on_node_any(&c, "remote-0") > 0);
    // ...until the node is deleted; then pod GC force-deletes them.
    c.ok(&["delete", "node", "remote-0"]);
    common::eventually(Duration::from_secs(30), || {
        (on_node_any(&c, "remote-0") == 0).then_some(())
    });
    let out = c.ok(&["get", "deployment", "web", "--no-headers"]);
    assert_eq!(words(&out)[1], "4/4", "{out}");
}

/// Pods bound to `node`, whatever their phase, terminating or not.
fn on_node_any(c: &Cluster, node: &str) -> usize {
    c.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "name",
    ])
    .lines()
    .count()
}

#[test]
fn pod_gc_keeps_the_newest_terminated_pods_and_collects_orphans() {
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        "1",
        "--terminated-pod-gc-threshold",
        "2",
        "--pod-gc-period",
        "1",
    ]);
    // Four pods finish, one after the other; only the newest two are kept.
    for i in 0..4 {
        c.ok(&[
            "run",
            &format!("done-{i}"),
            "--image=busybox",
            "--restart=Never",
            "--annotations=skiff.io/simulate-run-seconds=0.1",
        ]);
        common::eventually(Duration::from_secs(20), || {
            (c.ok(&[
                "get",
                "pod",
                &format!("done-{i}"),
                "-o",
                "jsonpath={.status.phase}",
            ]) == "Succeeded")
                .then_some(())
        });
        // Distinct creation timestamps (seconds) order them.
        std::thread::sleep(Duration::from_millis(1100));
    }
    c.ok(&["run", "running", "--image=nginx"]);
    common::eventually(Duration::from_secs(20), || {
        let names = c.ok(&["get", "pods", "-o", "name"]);
        (names.lines().collect::<Vec<_>>() == ["pod/done-2", "pod/done-3", "pod/running"])
            .then_some(())
    });

    // A pod bound to a node that does not exist is failed and deleted once the node has
    // been missing for the quarantine.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stray}\nspec:\n  nodeName: nowhere\n  containers: [{name: c, image: nginx}]\n",
    );
    c.ok(&["get", "pod", "stray"]);
    common::eventually(Duration::from_secs(20), || {
        c.kubectl(&["get", "pod", "stray"])
            .status
            .code()
            .filter(|c| *c != 0)
    });
    assert_eq!(on_node_any(&c, "sim-0"), 3);
}

#[test]
fn autoscalers_keep_bounds_and_say_why_metrics_fail() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=1",
    ]);
    c.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--min=3",
        "--max=5",
        "--cpu-percent=50",
    ]);
    // Below minReplicas: raised to it.
    common::eventually(Duration::from_secs(30), || {
        (c.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ]) == "3")
            .then_some(())
    });
    let events = common::eventually(Duration::from_secs(30), || {
        let e = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=HorizontalPodAutoscaler",
        ]);
        e.contains("SuccessfulRescale").then_some(e)
    });
    assert!(
        events.contains("New size: 3; reason: Current number of replicas below Spec.MinReplicas"),
        "{events}"
    );
    // Inside the bounds the CPU metric decides, and these pods request no CPU to
    // measure it against.
    // (Until two scrapes of the metrics, it says none were returned.)
    let active = common::eventually(Duration::from_secs(70), || {
        let hpa: Value = serde_json::from_str(&c.ok(&["get", "hpa", "web", "-o", "json"])).unwrap();
        hpa["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                c["type"] == "ScalingActive"
                    && c["reason"] == "FailedGetResourceMetric"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("missing request"))
            })
            .cloned()
    });
    assert_eq!(active["status"], "False", "{active}");
    assert!(
        active["message"].as_str().is_some_and(|m| m.contains(
            "failed to get cpu utilization: missing request for cpu in container nginx of Pod web-"
        )),
        "{active}"
    );
    // kubectl's columns; REPLICAS catches up at the next 15 s sync.
    common::eventually(Duration::from_secs(40), || {
        let out = c.ok(&["get", "hpa", "web", "--no-headers"]);
        let w = words(&out);
        (w[1..7] == ["Deployment/web", "cpu:", "<unknown>/50%", "3", "5", "3"][..]).then_some(())
    });
}

#[test]
fn simulated_pods_report_usage_and_autoscale() {
    let c = Cluster::start_with(&["up", "--simulate", "1", "--metric-resolution=2s"]);
    // Each pod says it uses 400m against 100m requested.
    c.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: busy\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: busy\n  template:\n    metadata:\n      labels:\n        app: busy\n      annotations:\n        skiff.io/simulate-cpu: 400m\n        skiff.io/simulate-memory: 64Mi\n    spec:\n      containers:\n      - name: c\n        image: nginx\n        resources:\n          requests:\n            cpu: 100m\n            memory: 32Mi\n");
    let top = common::eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&["top", "pods", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("busy-")).then_some(text)
    });
    let w = words(&top);
    assert_eq!(&w[1..3], ["400m", "64Mi"], "{top}");
    let nodes = c.ok(&["top", "nodes", "--no-headers"]);
    let node_cpu = words(&nodes)[1]
        .trim_end_matches('m')
        .parse::<u64>()
        .unwrap_or(0);
    assert!(node_cpu >= 400, "{nodes}");
    // 400 % of the request against 50 %: up, by at most max(2 × 1, 4) at once.
    c.ok(&[
        "autoscale",
        "deployment",
        "busy",
        "--cpu-percent=50",
        "--min=1",
        "--max=4",
    ]);
    common::eventually(Duration::from_secs(60), || {
        let r = c.ok(&[
            "get",
            "deployment",
            "busy",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        (r == "4").then_some(())
    });
    common::eventually(Duration::from_secs(40), || {
        let out = c.ok(&["get", "hpa", "busy", "--no-headers"]);
        (words(&out)[2..4] == ["cpu:", "400%/50%"]).then_some(())
    });
}

/// skiff's HPA sync period (upstream's `--horizontal-pod-autoscaler-sync-period`
/// default; skiff has no flag for it).
const HPA_SYNC_PERIOD: Duration = Duration::from_secs(15);

/// HPA `i` of `hundred_hpas_over_a_thousand_pods_act_within_one_sync_period`: (the
/// replicas it is driven to from 10, each pod's simulated CPU in millicores against a
/// 100m request and a 50 % target, minReplicas, maxReplicas). `ceil(10 × u / 50)` is
/// the answer with a margin of a millicore either way; 11 is missing because 10 % more
/// is within the tolerance. The bound on the far side keeps the answer where it is at
/// the next syncs, when each pod still uses as much as before.
fn hpa_case(i: usize) -> (i64, i64, i64, i64) {
    let sizes: Vec<i64> = (2..=20).filter(|&d| d != 11).collect();
    let d = sizes[i % sizes.len()];
    match d.cmp(&10) {
        std::cmp::Ordering::Less => (d, 5 * d - 2, d, 20),
        std::cmp::Ordering::Equal => (d, 50, 1, 20),
        std::cmp::Ordering::Greater => (d, 5 * d - 2, 1, d),
    }
}

fn hpa_manifests(n: usize) -> (String, String) {
    let (mut deployments, mut hpas) = (String::new(), String::new());
    for i in 0..n {
        let (_, milli, min, max) = hpa_case(i);
        deployments.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: load-{i}\nspec:\n  replicas: 10\n  selector:\n    matchLabels:\n      app: load-{i}\n  template:\n    metadata:\n      labels:\n        app: load-{i}\n      annotations:\n        skiff.io/simulate-cpu: {milli}m\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - name: c\n        image: nginx\n        resources:\n          requests:\n            cpu: 100m\n            memory: 16Mi\n"
        ));
        hpas.push_str(&format!(
            "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: load-{i}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: load-{i}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: 50\n"
        ));
    }
    (deployments, hpas)
}

/// `kubectl get <kind> -o json`'s items by name.
fn items_by_name(c: &Cluster, kind: &str) -> std::collections::HashMap<String, Value> {
    let v: Value = serde_json::from_str(&c.ok(&["get", kind, "-o", "json"])).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o.clone(),
            )
        })
        .collect()
}

/// Whether HPA `i` has acted on its metrics: its answer, the utilization it read, and
/// a scale time when it had to rescale.
fn hpa_acted(i: usize, hpa: &Value) -> bool {
    let (d, milli, _, _) = hpa_case(i);
    let s = &hpa["status"];
    let read = s["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64();
    s["desiredReplicas"].as_i64() == Some(d)
        && read.is_some_and(|u| (u - milli).abs() <= 1)
        && (d == 10 || s["lastScaleTime"].is_string())
}

/// Polls every second until `f` holds, for at most `limit`.
fn poll(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn hundred_hpas_over_a_thousand_pods_act_within_one_sync_period() {
    const N: usize = 100;
    let c = Cluster::start_with(&[
        "up",
        "--simulate",
        "10",
        "--simulate-capacity",
        "cpu=64,pods=250",
        "--metric-resolution=2s",
    ]);
    let (deployments, hpas) = hpa_manifests(N);
    c.apply(&deployments);
    let count = |args: &[&str]| c.ok(args).lines().count();
    poll(Duration::from_secs(120), "1,000 pods running", || {
        count(&[
            "get",
            "pods",
            "--no-headers",
            "--field-selector=status.phase=Running",
        ]) >= N * 10
    });
    poll(Duration::from_secs(30), "metrics of every pod", || {
        count(&["top", "pods", "--no-headers"]) >= N * 10
    });
    // One more window, so that every reading began after its pod was ready (the HPA
    // counts a CPU reading from before readiness as the pod's start-up, not its load).
    std::thread::sleep(Duration::from_secs(3));

    // Metrics and targets are there: every HPA must act within one sync period of
    // being created, however many there are.
    let t0 = std::time::Instant::now();
    // `create`, not `apply`: one request per HPA, so they arrive close together.
    let out = c.kubectl_stdin(&["create", "-f", "-"], &hpas);
    assert!(out.status.success(), "{out:?}");
    let applied = t0.elapsed();
    let mut acted_at: std::collections::HashMap<usize, Duration> = Default::default();
    poll(HPA_SYNC_PERIOD * 3, "every HPA acted", || {
        for (name, h) in items_by_name(&c, "hpa") {
            let i: usize = name.trim_start_matches("load-").parse().unwrap();
            if hpa_acted(i, &h) {
                acted_at.entry(i).or_insert_with(|| t0.elapsed());
            }
        }
        acted_at.len() == N
    });
    let last = acted_at.values().max().copied().unwrap_or_default();
    // Each rescaled HPA's own delay, from its creation to its scale, by the server's
    // clock: how long kubectl took to create the others (longer on a busy machine)
    // does not count, a backlog in the controller does.
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok();
    let delays: Vec<i64> = items_by_name(&c, "hpa")
        .values()
        .filter_map(|h| {
            let scaled = time(&h["status"]["lastScaleTime"])?;
            Some((scaled - time(&h["metadata"]["creationTimestamp"])?).num_seconds())
        })
        .collect();
    let slowest = delays.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{N} HPAs created in {applied:?}, all seen acted {last:?} after the first create; {} rescaled, the slowest {slowest} s after its creation",
        delays.len()
    );
    assert!(
        slowest <= HPA_SYNC_PERIOD.as_secs() as i64,
        "an HPA rescaled {slowest} s after its creation, more than one sync period"
    );

    // The Deployments follow, and the HPAs see them there at the next sync and stay.
    poll(HPA_SYNC_PERIOD * 3, "Deployments at their sizes", || {
        let deps = items_by_name(&c, "deployments");
        let hpas = items_by_name(&c, "hpa");
        (0..N).all(|i| {
            let (d, ..) = hpa_case(i);
            let name = format!("load-{i}");
            let (dep, hpa) = (&deps[&name], &hpas[&name]);
            dep["spec"]["replicas"].as_i64() == Some(d)
                && dep["status"]["replicas"].as_i64() == Some(d)
                && hpa["status"]["currentReplicas"].as_i64() == Some(d)
                && hpa_acted(i, hpa)
        })
    });
}

/// The ENDPOINTS column of `kubectl get endpoints <name>` (empty while there is none).
fn endpoints_column(c: &Cluster, name: &str) -> String {
    let out = c.kubectl(&["get", "endpoints", name, "--no-headers"]);
    let out = String::from_utf8_lossy(&out.stdout);
    words(&out)
        .get(1)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The EndpointSlices labelled for Service `svc`, as JSON items.
fn slices_of(c: &Cluster, svc: &str) -> Vec<Value> {
    let sel = format!("kubernetes.io/service-name={svc}");
    let out = c.ok(&["get", "endpointslices", "-l", &sel, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn services_get_endpoints_and_slices() {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    common::eventually(Duration::from_secs(20), || {
        (c.ok(&["get", "nodes", "-o", "name"]).lines().count() == 2).then_some(())
    });
    // The guide's Service and three backend pods behind it.
    c.ok(&[
        "apply",
        "-f",
        manifest("backend-service.yaml").to_str().unwrap(),
    ]);
    c.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  replicas: 3
  selector:
    matchLabels:
      app: backend
  template:
    metadata:
      labels:
        app: backend
    spec:
      containers:
      - name: api
        image: example/backend:1
        ports:
        - name: http
          containerPort: 8080
        - name: metrics
          containerPort: 9100
"#,
    );
    assert!(
        c.ok(&["rollout", "status", "deployment/backend", "--timeout=60s"])
            .contains("successfully rolled out")
    );
    let pods: Value =
        serde_json::from_str(&c.ok(&["get", "pods", "-l", "app=backend", "-o", "json"])).unwrap();
    let pods = pods["items"].as_array().unwrap().clone();
    let mut ips: Vec<String> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    ips.sort();
    assert_eq!(ips.len(), 3);
    let with_port =
        |port: u16| -> Vec<String> { ips.iter().map(|ip| format!("{ip}:{port}")).collect() };
    // Endpoints: the three pods on port 8080, sorted as Kubernetes packs them.
    let col = common::eventually(Duration::from_secs(30), || {
        let col = endpoints_column(&c, "backend-service");
        (col.split(',').count() == 3).then_some(col)
    });
    assert_eq!(col, with_port(8080).join(","));
    let described = c.ok(&["describe", "svc", "backend-service"]);
    let line = described
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_else(|| panic!("{described}"));
    assert!(line.contains(&with_port(8080)[0]), "{described}");

    // One EndpointSlice owned by the Service, each pod an endpoint.
    let slices = slices_of(&c, "backend-service");
    assert_eq!(slices.len(), 1, "{slices:?}");
    let s = &slices[0];
    let svc_uid = c.ok(&[
        "get",
        "svc",
        "backend-service",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(s["addressType"], "IPv4");
    assert_eq!(
        s["ports"],
        serde_json::json!([{"name": "", "port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(s["metadata"]["generateName"], "backend-service-");
    assert_eq!(
        s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &s["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("Service"), Some(svc_uid.as_str()))
    );
    assert_eq!(
        (
            owner["controller"].as_bool(),
            owner["blockOwnerDeletion"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(
        s["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string()
    );
    let endpoints = s["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3);
    for e in endpoints {
        let target = &e["targetRef"];
        let pod = pods
            .iter()
            .find(|p| p["metadata"]["name"] == target["name"])
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(target["kind"], "Pod");
        assert_eq!(target["uid"], pod["metadata"]["uid"]);
        assert_eq!(e["addresses"], serde_json::json!([pod["status"]["podIP"]]));
        assert_eq!(e["nodeName"], pod["spec"]["nodeName"]);
        assert_eq!(
            e["conditions"],
            serde_json::json!({"ready": true, "serving": true, "terminating": false})
        );
    }

    // A named targetPort resolves to each pod's port of that name; a LoadBalancer shows
    // the nodes' addresses; a Service without a selector gets its Endpoints mirrored.
    c.apply(
        r#"apiVersion: v1
kind: Service
metadata:
  name: backend-metrics
spec:
  selector:
    app: backend
  ports:
  - name: metrics
    port: 9000
    targetPort: metrics
---
apiVersion: v1
kind: Service
metadata:
  name: backend-lb
spec:
  type: LoadBalancer
  selector:
    app: backend
  ports:
  - port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: external-db
spec:
  ports:
  - port: 5432
---
apiVersion: v1
kind: Endpoints
metadata:
  name: external-db
subsets:
- addresses:
  - ip: 192.0.2.10
  - ip: 192.0.2.11
  notReadyAddresses:
  - ip: 192.0.2.12
  ports:
  - port: 5432
"#,
    );
    let col = common::eventually(Duration::from_secs(30), || {
        let col = endpoints_column(&c, "backend-metrics");
        (col.split(',').count() == 3).then_some(col)
    });
    assert_eq!(col, with_port(9100).join(","));
    let s = common::eventually(Duration::from_secs(30), || {
        slices_of(&c, "backend-metrics")
            .pop()
            .filter(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 3))
    });
    assert_eq!(s["ports"][0]["name"], "metrics");
    assert_eq!(s["ports"][0]["port"], 9100);

    let external =
        |c: &Cluster| row(&c.ok(&["get", "svc", "backend-lb"]), "backend-lb")[3].to_string();
    common::eventually(Duration::from_secs(30), || {
        (external(&c) == "198.18.0.1,198.18.0.2").then_some(())
    });
    let ingress = c.ok(&[
        "get",
        "svc",
        "backend-lb",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ipMode}",
    ]);
    assert_eq!(ingress, "VIP VIP");
    // Nodes excluded from load balancers drop out, and come back.
    let exclude = "node.kubernetes.io/exclude-from-external-load-balancers";
    c.ok(&["label", "node", "sim-1", &format!("{exclude}=")]);
    common::eventually(Duration::from_secs(30), || {
        (external(&c) == "198.18.0.1").then_some(())
    });
    c.ok(&["label", "node", "sim-0", &format!("{exclude}=")]);
    common::eventually(Duration::from_secs(30), || {
        (external(&c) == "<pending>").then_some(())
    });
    c.ok(&["label", "node", "sim-0", "sim-1", &format!("{exclude}-")]);
    common::eventually(Duration::from_secs(30), || {
        (external(&c) == "198.18.0.1,198.18.0.2").then_some(())
    });
    // A type change: ClusterIP drops the node port and the addresses, NodePort gets a
    // node port again.
    let node_port = |c: &Cluster| {
        c.ok(&[
            "get",
            "svc",
            "backend-lb",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
    };
    assert!(node_port(&c).parse::<u16>().is_ok());
    c.ok(&[
        "patch",
        "svc",
        "backend-lb",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    assert_eq!(node_port(&c), "");
    common::eventually(Duration::from_secs(30), || {
        (external(&c) == "<none>").then_some(())
    });
    c.ok(&[
        "patch",
        "svc",
        "backend-lb",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let np: u16 = node_port(&c)
        .parse()
        .expect("a node port allocated on update");
    assert!((30000..=32767).contains(&np), "{np}");

    let mirrored = common::eventually(Duration::from_secs(30), || {
        slices_of(&c, "external-db").pop()
    });
    assert_eq!(
        mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(
        mirrored["metadata"]["ownerReferences"][0]["kind"],
        "Endpoints"
    );
    let ready: Vec<(&str, bool)> = mirrored["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap(),
                e["conditions"]["ready"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ready,
        [
            ("192.0.2.10", true),
            ("192.0.2.11", true),
            ("192.0.2.12", false)
        ]
    );
    assert_eq!(
        endpoints_column(&c, "external-db"),
        "192.0.2.10:5432,192.0.2.11:5432"
    );
    // The Endpoints gone, so is its mirror; the API server's own is never mirrored.
    c.ok(&["delete", "endpoints", "external-db"]);
    common::eventually(Duration::from_secs(30), || {
        slices_of(&c, "external-db").is_empty().then_some(())
    });
    let managers: Vec<Value> = slices_of(&c, "kubernetes")
        .iter()
        .map(|s| s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"].clone())
        .collect();
    assert!(
        !managers.contains(&serde_json::json!(
            "endpointslicemirroring-controller.k8s.io"
        )),
        "{managers:?}"
    );

    // Scaled to nothing: no endpoints, an empty placeholder slice.
    c.ok(&["scale", "deployment", "backend", "--replicas=0"]);
    common::eventually(Duration::from_secs(30), || {
        (endpoints_column(&c, "backend-service") == "<none>").then_some(())
    });
    let placeholder = common::eventually(Duration::from_secs(30), || {
        let s = slices_of(&c, "backend-service");
        (s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(|e| e.is_empty()))
            .then(|| s[0].clone())
    });
    assert_eq!(placeholder["ports"], serde_json::json!([]));
    let shown = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=backend-service",
        "--no-headers",
    ]);
    assert_eq!(
        words(&shown)[1..4],
        ["IPv4", "<unset>", "<unset>"],
        "{shown}"
    );

    // Deleting the Service takes its slices (garbage collector) and Endpoints with it.
    c.ok(&["delete", "svc", "backend-service"]);
    common::eventually(Duration::from_secs(30), || {
        slices_of(&c, "backend-service").is_empty().then_some(())
    });
    common::eventually(Duration::from_secs(30), || {
        c.absent(&["get", "endpoints", "backend-service"])
            .then_some(())
    });
}

/// Nothing stored may fail to decode as its kind: a well-typed patch goes in, the same
/// field with the wrong JSON type is refused in kube-apiserver's words (kubectl's own
/// test looks for `cannot restore map from string`), and the object is left as it was.
#[test]
fn writes_that_would_not_decode_are_refused() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "typed", "--from-literal=k=v"]);
    c.ok(&[
        "patch",
        "cm",
        "typed",
        "-p",
        r#"{"metadata":{"labels":{"a":"b"}}}"#,
    ]);

    let err = c.fails(&[
        "patch",
        "cm",
        "typed",
        "-p",
        r#"{"metadata":{"labels":"invalid"}}"#,
    ]);
    assert!(err.contains("cannot restore map from string"), "{err}");
    assert!(
        err.contains(r#"patch: Invalid value: "map[metadata:map[labels:invalid]]""#),
        "{err}"
    );
    let err = c.fails(&[
        "patch",
        "cm",
        "typed",
        "--type=merge",
        "-p",
        r#"{"data":{"k":5}}"#,
    ]);
    assert!(
        err.contains(
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        ),
        "{err}"
    );
    let err = c.fails(&[
        "patch",
        "cm",
        "typed",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/metadata/labels","value":["a"]}]"#,
    ]);
    assert!(
        err.contains("cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"),
        "{err}"
    );
    let cm: Value = serde_json::from_str(&c.ok(&["get", "cm", "typed", "-o", "json"])).unwrap();
    assert_eq!(cm["metadata"]["labels"]["a"], "b");
    assert_eq!(cm["data"]["k"], "v");

    // A body kubectl would not decode itself, sent as is: refused as Go's decoder does.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("pod.json");
    let pod = |port: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"typed"}},"spec":{{"containers":[{{"name":"c","image":"nginx","ports":[{{"containerPort":{port}}}]}}]}}}}"#
        )
    };
    std::fs::write(&body, pod("\"80\"")).unwrap();
    let path = body.to_str().unwrap();
    let raw = [
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods",
        "-f",
        path,
    ];
    let err = c.fails(&raw);
    assert!(
        err.contains(r#"Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"#)
            || err.contains(r#"Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"#),
        "{err}"
    );
    c.gone(&["get", "pod", "typed"]);
    std::fs::write(&body, pod("80")).unwrap();
    c.ok(&raw);
    c.ok(&["get", "pod", "typed"]);
}

/// Kinds and defaults a new user meets that Kubernetes has: PodTemplates, a
/// ReplicationController's selector taken from its template (so `expose rc` works),
/// pods without fields nobody set.
#[test]
fn pod_templates_rc_defaults_and_no_stray_nulls() {
    let c = Cluster::start();
    c.apply(
        "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: tpl\ntemplate:\n  metadata:\n    labels:\n      app: tpl\n  spec:\n    containers:\n    - name: c\n      image: nginx\n",
    );
    let out = c.ok(&["get", "podtemplates"]);
    assert_eq!(
        words(out.lines().next().unwrap()),
        ["NAME", "CONTAINERS", "IMAGES", "POD", "LABELS"]
    );
    assert_eq!(row(&out, "tpl"), ["tpl", "c", "nginx", "app=tpl"]);

    c.apply(
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc\nspec:\n  replicas: 0\n  template:\n    metadata:\n      labels:\n        app: rc\n    spec:\n      containers:\n      - name: c\n        image: nginx\n",
    );
    let rc: Value = serde_json::from_str(&c.ok(&["get", "rc", "rc", "-o", "json"])).unwrap();
    assert_eq!(rc["spec"]["selector"], serde_json::json!({"app": "rc"}));
    assert_eq!(rc["metadata"]["labels"], serde_json::json!({"app": "rc"}));
    c.ok(&["expose", "rc", "rc", "--port=80"]);
    let sel = c.ok(&["get", "svc", "rc", "-o", "jsonpath={.spec.selector.app}"]);
    assert_eq!(sel, "rc");

    c.ok(&["run", "plain", "--image=nginx"]);
    let pod: Value = serde_json::from_str(&c.ok(&["get", "pod", "plain", "-o", "json"])).unwrap();
    assert!(
        pod["spec"].get("initContainers").is_none(),
        "{}",
        pod["spec"]
    );
    assert!(
        pod["spec"]["containers"][0].get("volumeMounts").is_some(),
        "the token is mounted"
    );
}

/// The store (every Secret), the CA key, the join token and the kubeconfig are the
/// owner's only; state an earlier run left open is closed at start, with a warning, and
/// nothing in it is lost.
#[test]
fn the_data_dir_is_private_and_repaired_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let mut c = Cluster::start();
    c.ok(&["create", "secret", "generic", "s", "--from-literal=k=v"]);
    let d = c.data_dir();
    let (db, tls) = (d.join("db"), d.join("tls"));
    let files: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .chain(std::fs::read_dir(&tls).unwrap())
        .map(|e| e.unwrap().path())
        .chain([d.join("token"), d.join("kubeconfig.yaml")])
        .collect();
    assert!(files.iter().any(|f| f.ends_with("state.db")), "{files:?}");
    for dir in [&d, &db, &tls] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // Opened as an older version left them: closed again at the next start.
    c.stop();
    set(&d, 0o755);
    set(&db, 0o755);
    set(&db.join("state.db"), 0o644);
    set(&d.join("token"), 0o644);
    c.spawn();
    assert_eq!(
        (
            mode(&d),
            mode(&db),
            mode(&db.join("state.db")),
            mode(&d.join("token"))
        ),
        (0o700, 0o700, 0o600, 0o600)
    );
    let log = c.log();
    assert!(
        log.contains("was readable by other users; now by its owner only"),
        "{}",
        common::tail(&log, 20)
    );
    let k = c.ok(&["get", "secret", "s", "-o", "jsonpath={.data.k}"]);
    assert_eq!(k, "dg==");
}

/// `--event-ttl`: an Event lives that long after it was last written, then it is gone,
/// as kube-apiserver's etcd lease expires it; one written again lives on.
#[test]
fn events_expire_after_the_event_ttl() {
    let c = Cluster::start_with(&["server", "--event-ttl", "8s"]);
    let event = |name: &str| {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: {name}}}\n\
             involvedObject: {{kind: Pod, name: p, namespace: default}}\n\
             reason: Tested\nmessage: hello\ntype: Normal\n\
             firstTimestamp: {now}\nlastTimestamp: {now}\n"
        )
    };
    let create = |name: &str| {
        let out = c.kubectl_stdin(&["create", "-f", "-"], &event(name));
        assert!(out.status.success(), "{out:?}");
    };
    create("old");
    create("renewed");
    assert!(
        c.ok(&["get", "event", "old", "-o", "name"])
            .contains("event/old")
    );
    // Written again before its TTL ran out, "renewed" outlives "old".
    std::thread::sleep(Duration::from_secs(4));
    let out = c.kubectl_stdin(&["replace", "-f", "-"], &event("renewed"));
    assert!(out.status.success(), "{out:?}");
    common::eventually(Duration::from_secs(15), || {
        let out = c.kubectl(&["get", "event", "old"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("(NotFound)")
            .then_some(())
    });
    assert!(
        c.ok(&["get", "event", "renewed", "-o", "name"])
            .contains("event/renewed")
    );
    common::eventually(Duration::from_secs(15), || {
        let out = c.kubectl(&["get", "event", "renewed"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("(NotFound)")
            .then_some(())
    });
}

/// kubectl validates a `v1/List` on its side, against `/openapi/v2` (its v3 query-param
/// verifier never vouches for List): without that document no List could be created,
/// and with it an unknown field in any item stops the whole List before a request.
#[test]
fn list_validated_against_openapi_v2() {
    let c = Cluster::start();
    let list = |items: &[String]| {
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items.join(",")
        )
    };
    let cm = |name: &str, v: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"k":"{v}"}}}}"#
        )
    };
    let pod = |name: &str, extra: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"nginx"}}]{extra}}}}}"#
        )
    };
    let run = |verb: &str, input: &str| {
        let out = c.kubectl_stdin(&[verb, "-f", "-"], input);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), err)
    };

    let (ok, err) = run("create", &list(&[cm("l1", "a"), cm("l2", "b")]));
    assert!(ok, "create List: {err}\n{}", common::tail(&c.log(), 40));
    c.ok(&["get", "configmap", "l1", "l2"]);

    // apply of a List, then again with a change (the patch path).
    for v in ["a", "b"] {
        let (ok, err) = run("apply", &list(&[cm("l3", v), cm("l4", v)]));
        assert!(ok, "apply List: {err}");
    }
    let got = c.ok(&["get", "configmap", "l4", "-o", "jsonpath={.data.k}"]);
    assert_eq!(got, "b");

    // One bad item refuses the List on kubectl's side: nothing is created.
    let (ok, err) = run(
        "create",
        &list(&[pod("p1", ""), pod("p2", r#","bogus":1"#)]),
    );
    assert!(!ok, "a List with an unknown field was accepted");
    assert!(err.contains(r#"unknown field "bogus""#), "{err}");
    assert!(c.absent(&["get", "pod", "p1"]));
    assert!(c.absent(&["get", "pod", "p2"]));
    // The same List without the field goes through.
    let (ok, err) = run("create", &list(&[pod("p1", ""), pod("p2", "")]));
    assert!(ok, "create List of pods: {err}");
    c.ok(&["get", "pod", "p1", "p2"]);
}
