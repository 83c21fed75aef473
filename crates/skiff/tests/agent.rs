//! End to end on a real node (root; containerd, runc, CNI plugins and busybox-static,
//! which scripts/deps.sh installs): `skiff up --offline` runs pods on containerd through
//! CRI, driven by the real kubectl. One test, because the node is the machine: its
//! bridge, routes and name cannot be shared by two clusters at once.

mod common;

use common::node::{http_get, pod_json, wait_phase, write_test_images};
use common::{Cluster, eventually, free_port, tail};
use skiff_cri::image;
use std::io::{Read, Write};
use std::time::Duration;

/// `kubectl port-forward TARGET LOCAL:REMOTE`, once it says it is forwarding.
fn port_forward(c: &Cluster, target: &str, remote: u16) -> (KillOnDrop, u16) {
    use std::io::BufRead;
    let local = free_port();
    let mut child = c
        .kubectl_cmd(&["port-forward", target, &format!("{local}:{remote}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("Forwarding from 127.0.0.1:"), "{line:?}");
    // kubectl reports each connection on stdout: keep reading, or it dies of SIGPIPE.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (KillOnDrop(child), local)
}

/// A helper process that must not outlive the test, even one that fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request (Connection: close): status, headers (lower-case names), body.
fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status.parse().unwrap(), headers, resp[split + 4..].to_vec())
}

/// Pushes an image to a registry by the distribution API (blob uploads, then the
/// manifest), with basic auth.
fn push(registry: &str, repo: &str, tag: &str, spec: &image::ImageSpec, basic: &str) {
    let img = image::oci_image(spec).unwrap();
    let auth = format!("Basic {basic}");
    for (digest, data) in &img.blobs {
        let (code, headers, _) = http(
            "POST",
            &format!("http://{registry}/v2/{repo}/blobs/uploads/"),
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(code, 202, "starting an upload");
        let loc = &headers.iter().find(|(k, _)| k == "location").unwrap().1;
        let loc = if loc.starts_with("http") {
            loc.clone()
        } else {
            format!("http://{registry}{loc}")
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let (code, _, body) = http(
            "PUT",
            &format!("{loc}{sep}digest={digest}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
            ],
            data,
        );
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    }
    let (code, _, body) = http(
        "PUT",
        &format!("http://{registry}/v2/{repo}/manifests/{tag}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        ],
        &img.manifest,
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
}

/// While the node runs, the pod network is there: the bridge and the egress table (so
/// that [`nothing_left_of_the_network`] after a stop shows they were removed).
fn the_network_is_up() {
    let link = std::process::Command::new("ip")
        .args(["link", "show", "skiff0"])
        .output()
        .unwrap();
    assert!(
        link.status.success(),
        "no bridge skiff0 while the node runs: {}",
        String::from_utf8_lossy(&link.stderr)
    );
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(
        tables.contains("table ip skiff-egress"),
        "no egress table while the node runs: {tables}"
    );
}

/// A clean stop removed the bridge and every nftables table of the node's.
fn nothing_left_of_the_network() {
    let link = std::process::Command::new("ip")
        .args(["link", "show", "skiff0"])
        .output()
        .unwrap();
    assert!(!link.status.success(), "bridge skiff0 left behind");
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(
        !tables.contains("skiff"),
        "nft tables left behind: {tables}"
    );
}

#[test]
fn pods_run_on_containerd() {
    let dir = tempfile::tempdir().unwrap();
    // Images are placed before start, as k3s' airgap images are.
    let data = dir.path().join("data");
    write_test_images(&data.join("agent/images"));
    let mut c = Cluster::start_in(dir, &["up", "--offline", "--container-log-max-size=16Ki"]);
    eventually(Duration::from_secs(60), || {
        let out = c.ok(&["get", "nodes"]);
        out.lines()
            .nth(1)
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .map(|_| ())
    });
    let node = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.nodeInfo.containerRuntimeVersion}",
    ]);
    assert!(node.starts_with("containerd://"), "{node}");
    // The host's identities, as kubelet reads them.
    let boot_id = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.nodeInfo.bootID}",
    ]);
    let host_boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(boot_id, host_boot_id.trim());
    // The node's identities: a client certificate asked for with the join token, and
    // its serving certificate asked for as the node; both approved and issued, and kept
    // privately in the agent's directory.
    let name = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let csrs = c.ok(&[
        "get",
        "csr",
        "-o",
        "jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}",
    ]);
    assert!(
        csrs.lines().any(|l| l
            .starts_with("kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:")
            && l.ends_with(" Approved")),
        "{csrs}"
    );
    assert!(
        csrs.contains(&format!(
            "kubernetes.io/kubelet-serving system:node:{name} Approved"
        )),
        "{csrs}"
    );
    for f in ["kubelet-client-current.pem", "kubelet-server-current.pem"] {
        let path = c.data_dir().join("agent/pki").join(f);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600, "{}", path.display());
    }

    // skiff image: the airgap archives are there; import, list and remove one more.
    let skiff_image = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("image")
            .args(args)
            .arg("--data-dir")
            .arg(c.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skiff image {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ls = skiff_image(&["ls"]);
    assert!(ls.contains("docker.io/library/nginx:latest"), "{ls}");
    assert!(ls.contains("registry.skiff.local/pause:1"), "{ls}");
    let extra = c.dir.path().join("extra.tar");
    let mut spec = image::ImageSpec {
        name: "docker.io/library/extra:1".into(),
        entries: image::busybox_root("/bin/busybox".as_ref()).unwrap(),
        cmd: vec!["sh".into()],
        ..Default::default()
    };
    spec.env.push("PATH=/bin".into());
    image::write_oci_archive(&spec, &extra).unwrap();
    skiff_image(&["import", extra.to_str().unwrap()]);
    assert!(skiff_image(&["ls"]).contains("docker.io/library/extra:1"));
    skiff_image(&["rm", "docker.io/library/extra:1"]);
    assert!(!skiff_image(&["ls"]).contains("docker.io/library/extra:1"));

    // The guide's first command: Running, with an IP and a NODE in -o wide.
    c.ok(&["run", "my-pod", "--image=nginx"]);
    let p = wait_phase(&c, "my-pod", "Running");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.42."), "{ip}");
    let wide = c.ok(&["get", "pod", "my-pod", "-o", "wide"]);
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..3], &["1/1", "Running"], "{wide}");
    assert_eq!(row[5], ip, "{wide}");
    assert_eq!(row[6], p["spec"]["nodeName"].as_str().unwrap(), "{wide}");
    assert!(http_get(&ip, 80).contains("hello from skiff"));
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=my-pod",
    ]);
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "no {reason} event:\n{events}");
    }

    // exec: exit codes and streams, stdin, and an interactive shell through a pty.
    let out = c.kubectl(&[
        "exec",
        "my-pod",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    let out = c.kubectl_stdin(&["exec", "-i", "my-pod", "--", "head", "-1"], "piped\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    // stdin's end reaches the command (v5's close frame, carried to containerd over SPDY).
    let out = c.kubectl_stdin(&["exec", "-i", "my-pod", "--", "wc", "-l"], "a\nb\nc\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let out = c.kubectl_stdin(
        &["exec", "-i", "my-pod", "--", "sh", "-c", "cat; exit 4"],
        "echoed\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echoed\n");
    assert_eq!(out.status.code(), Some(4));
    let kubectl = format!(
        "kubectl --kubeconfig {} --cache-dir {}/kcache exec -it my-pod -- /bin/sh",
        c.kubeconfig().display(),
        c.dir.path().display()
    );
    let tty = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(sleep 2; printf 'echo inside-$((6*7))\\r'; sleep 1; printf 'exit 5\\r'; sleep 1) | timeout 30 script -qec '{kubectl}' /dev/null"
        ))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("inside-42"), "{shown}");
    assert_eq!(tty.status.code(), Some(5), "{shown}");

    // The pod's ServiceAccount: token, CA and namespace where client libraries look, and
    // the token is an identity the API server accepts, until its pod is gone.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let cat = |f: &str| c.ok(&["exec", "my-pod", "--", "cat", &format!("{sa}/{f}")]);
    assert_eq!(cat("namespace"), "default");
    let ca = std::fs::read_to_string(c.data_dir().join("tls/ca.crt")).unwrap();
    assert_eq!(cat("ca.crt"), ca);
    let pod_token = cat("token");
    assert_eq!(
        c.whoami(&pod_token).as_deref(),
        Some("system:serviceaccount:default:default")
    );
    let made = c.ok(&["create", "token", "default", "--duration=15m"]);
    assert_eq!(
        c.whoami(made.trim()).as_deref(),
        Some("system:serviceaccount:default:default")
    );
    assert!(c.whoami(&format!("{pod_token}x")).is_none());

    // A Service on the single node: by name from a pod (the node's DNS, then its proxy,
    // here back to the pod itself), and from the node through the cluster IP.
    c.ok(&["expose", "pod", "my-pod", "--name=my-svc", "--port=80"]);
    let ip = c.ok(&["get", "svc", "my-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    let through_name = eventually(Duration::from_secs(20), || {
        let out = c.kubectl(&[
            "exec",
            "my-pod",
            "--",
            "sh",
            "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 my-svc 80",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("hello from skiff").then_some(text)
    });
    assert!(through_name.contains("200 OK"), "{through_name}");
    assert!(http_get(&ip, 80).contains("hello from skiff"));
    c.ok(&["delete", "svc", "my-svc"]);

    // port-forward as the guide does it (pod/NAME LOCAL:80), several connections in turn.
    let (mut pf, local) = port_forward(&c, "pod/my-pod", 80);
    for _ in 0..3 {
        let got = http_get("127.0.0.1", local);
        if !got.contains("hello from skiff") {
            pf.0.kill().unwrap();
            let mut err = String::new();
            pf.0.stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("{got:?}\nkubectl: {err}\nlog:\n{}", tail(&c.log(), 300));
        }
    }
    drop(pf);
    // A port nothing listens on: the pod side's error reaches kubectl, which gives up.
    let (mut pf, local) = port_forward(&c, "pod/my-pod", 81);
    let _ = std::net::TcpStream::connect(("127.0.0.1", local)).map(|mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.read(&mut [0u8; 16]);
    });
    let status = eventually(Duration::from_secs(20), || pf.0.try_wait().unwrap());
    let mut err = String::new();
    pf.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("error forwarding port 81"), "{err}");

    // attach: the main process's output, as `kubectl attach` streams it.
    c.ok(&[
        "run",
        "ticker",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "while true; do echo tick; sleep 1; done",
    ]);
    wait_phase(&c, "ticker", "Running");
    let mut att = c
        .kubectl_cmd(&["attach", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = att.stdout.as_mut().unwrap().read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("tick"));
    att.kill().unwrap();
    att.wait().unwrap();
    c.ok(&["delete", "pod", "ticker", "--grace-period=1"]);

    // Containers of one pod share localhost: the sidecar reaches the web server.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: shared}
spec:
  restartPolicy: Never
  containers:
  - {name: web, image: nginx}
  - name: probe
    image: busybox
    command: [sh, -c, 'echo probing; for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://localhost/ | grep -q hello && exit 0; sleep 0.5; done; exit 1']
"#,
    );
    eventually(Duration::from_secs(60), || {
        let p = pod_json(&c, "shared")?;
        let probe = p["status"]["containerStatuses"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "probe")?
            .clone();
        let code = probe["state"]["terminated"]["exitCode"].as_i64()?;
        assert_eq!(code, 0, "sidecar could not reach localhost: {probe}");
        Some(())
    });
    // Logs of one container of several (kubectl → API server → agent → CRI log file).
    assert_eq!(c.ok(&["logs", "shared", "-c", "probe"]), "probing\n");

    // Exit codes, restart policies and CrashLoopBackOff as kubectl shows them.
    c.ok(&[
        "run",
        "fails",
        "--restart=Never",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    let p = wait_phase(&c, "fails", "Failed");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert!(c.ok(&["get", "pod", "fails"]).contains("Error"));
    // A command that cannot start: terminated with StartError and exit code 128, its
    // times real timestamps (typed clients cannot read an empty one), as kubelet says.
    c.ok(&[
        "run",
        "nostart",
        "--restart=Never",
        "--image=busybox",
        "--command",
        "--",
        "/nonexistent",
    ]);
    let p = wait_phase(&c, "nostart", "Failed");
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (&t["reason"], &t["exitCode"]),
        (&serde_json::json!("StartError"), &serde_json::json!(128)),
        "{t}"
    );
    assert_eq!(t["startedAt"], "1970-01-01T00:00:00Z", "{t}");
    assert!(
        t["finishedAt"]
            .as_str()
            .is_some_and(|f| f.starts_with("20")),
        "{t}"
    );
    assert!(
        t["message"]
            .as_str()
            .is_some_and(|m| m.contains("/nonexistent")),
        "{t}"
    );
    // The official Python client: typed reads of that pod, and exec streams as its
    // users write them (text frames, a shell fed line by line, stdin closed).
    c.ok(&["run", "pyexec", "--image=busybox", "--", "sleep", "3600"]);
    wait_phase(&c, "pyexec", "Running");
    common::python_client(&c, &["pyexec", "nostart"]);
    c.ok(&[
        "run",
        "crashes",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo crashing; exit 1",
    ]);
    eventually(Duration::from_secs(60), || {
        let out = c.ok(&["get", "pod", "crashes"]);
        out.contains("CrashLoopBackOff").then_some(())
    });
    let p = pod_json(&c, "crashes").unwrap();
    let st = &p["status"]["containerStatuses"][0];
    assert!(st["restartCount"].as_i64().unwrap() >= 1, "{st}");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c.ok(&["logs", "crashes", "--previous"]), "crashing\n");
    let err = c.fails(&["logs", "fails", "--previous"]);
    assert!(
        err.contains("previous terminated container \"fails\" in pod \"fails\" not found"),
        "{err}"
    );

    // logs: follow until the container ends, tail, timestamps.
    c.ok(&[
        "run",
        "talker",
        "--restart=Never",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo one; echo two; sleep 2; echo three",
    ]);
    eventually(Duration::from_secs(30), || {
        pod_json(&c, "talker")
            .filter(|p| p["status"]["phase"] != "Pending")
            .map(|_| ())
    });
    assert_eq!(c.ok(&["logs", "-f", "talker"]), "one\ntwo\nthree\n");
    assert_eq!(c.ok(&["logs", "talker", "--tail=1"]), "three\n");
    let ts = c.ok(&["logs", "talker", "--timestamps", "--tail=1"]);
    let (t, line) = ts.trim_end().split_once(' ').unwrap();
    assert!(t.ends_with('Z') && t.contains('T'), "{ts}");
    assert_eq!(line, "three");

    // env from a ConfigMap and a Secret, values and fieldRefs.
    c.ok(&["create", "configmap", "cfg", "--from-literal=A=from-cm"]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=B=s3cret",
    ]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: envs}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'test "$A" = from-cm && test "$B" = s3cret && test "$ME" = envs && test "$X" = "x-from-cm"']
    envFrom: [{configMapRef: {name: cfg}}]
    env:
    - {name: B, valueFrom: {secretKeyRef: {name: sec, key: B}}}
    - {name: ME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: X, value: "x-$(A)"}
"#,
    );
    let p = wait_phase(&c, "envs", "Succeeded");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );

    // Volumes: a writer and a log-reading sidecar share an emptyDir; ConfigMap, Secret,
    // downwardAPI and memory-backed emptyDir volumes; ConfigMap updates reach the files.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: vols, labels: {app: vols}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo "entry $i" >> /logs/app.log; i=$((i+1)); sleep 1; done']
    volumeMounts: [{name: logs, mountPath: /logs}]
  - name: sidecar
    image: busybox
    command: [sh, -c, 'tail -F /var/log/app/app.log']
    volumeMounts:
    - {name: logs, mountPath: /var/log/app, readOnly: true}
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec}
    - {name: mem, mountPath: /cache}
    - {name: info, mountPath: /etc/podinfo}
    - {name: proj, mountPath: /etc/proj}
  volumes:
  - {name: logs, emptyDir: {}}
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
  - name: proj
    projected:
      sources:
      - configMap: {name: cfg, items: [{key: A, path: cm/a}]}
      - secret: {name: sec}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
"#,
    );
    wait_phase(&c, "vols", "Running");
    eventually(Duration::from_secs(30), || {
        c.ok(&["logs", "vols", "-c", "sidecar"])
            .contains("entry 1")
            .then_some(())
    });
    let exec = |cmd: &str| c.ok(&["exec", "vols", "-c", "sidecar", "--", "sh", "-c", cmd]);
    assert_eq!(exec("cat /etc/cfg/A"), "from-cm");
    assert_eq!(exec("cat /etc/sec/B"), "s3cret");
    assert!(exec("cat /etc/podinfo/labels").contains("app=\"vols\""));
    assert!(exec("grep ' /cache ' /proc/mounts").starts_with("tmpfs"));
    assert_eq!(
        exec("cat /etc/proj/cm/a /etc/proj/B /etc/proj/name"),
        "from-cms3cretvols"
    );
    let ro = c.kubectl(&[
        "exec",
        "vols",
        "-c",
        "sidecar",
        "--",
        "touch",
        "/var/log/app/x",
    ]);
    // Refused by the mount, not failing for another reason (busybox's words).
    let why = String::from_utf8_lossy(&ro.stderr);
    assert!(!ro.status.success(), "a readOnly mount was writable");
    assert!(why.contains("Read-only file system"), "{why}");
    c.ok(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"A":"changed"}}"#,
    ]);
    eventually(Duration::from_secs(40), || {
        (exec("cat /etc/cfg/A") == "changed").then_some(())
    });
    // Swapped as Kubernetes' atomic writer does: names point through `..data`.
    assert_eq!(exec("readlink /etc/cfg/A"), "..data/A\n");
    assert!(exec("readlink /etc/cfg/..data").starts_with("..20"));
    c.ok(&["delete", "pod", "vols"]);

    // A missing ConfigMap is CreateContainerConfigError, as kubelet reports it.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: nocfg}
spec:
  containers:
  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: missing}}]
"#,
    );
    eventually(Duration::from_secs(30), || {
        c.ok(&["get", "pod", "nocfg"])
            .contains("CreateContainerConfigError")
            .then_some(())
    });

    // runAsNonRoot: refused for an image that runs as root, allowed with a runAsUser.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: nonroot}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: asuser}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 1000}
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'test "$(id -u)" = 1000']}
"#,
    );
    let refused = eventually(Duration::from_secs(30), || {
        let p = pod_json(&c, "nonroot")?;
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert!(
        refused["message"].as_str().unwrap().starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot_default("
        ),
        "{refused}"
    );
    wait_phase(&c, "asuser", "Succeeded");
    c.ok(&["delete", "pod", "nonroot", "--grace-period=1"]);

    // A memory limit is enforced: the container is OOMKilled, as kubectl shows it.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [tail, /dev/zero]
    resources: {limits: {memory: 16Mi}}
"#,
    );
    let p = wait_phase(&c, "hungry", "Failed");
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");
    assert!(c.ok(&["get", "pod", "hungry"]).contains("OOMKilled"));

    // Probes: readiness drives READY, a failing liveness probe restarts the container.
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: nginx
    readinessProbe:
      exec: {command: [test, -f, /tmp/ready]}
      periodSeconds: 1
    livenessProbe:
      httpGet: {path: /, port: 80}
      periodSeconds: 1
  - name: dies
    image: busybox
    command: [sh, -c, 'touch /tmp/alive; sleep 4; rm /tmp/alive; sleep 3600']
    livenessProbe:
      exec: {command: [test, -f, /tmp/alive]}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    let ready_of = |c: &Cluster| -> Option<(bool, i64)> {
        let p = pod_json(c, "probed")?;
        let st = p["status"]["containerStatuses"].as_array()?;
        let web = st.iter().find(|s| s["name"] == "web")?;
        let dies = st.iter().find(|s| s["name"] == "dies")?;
        Some((web["ready"].as_bool()?, dies["restartCount"].as_i64()?))
    };
    wait_phase(&c, "probed", "Running");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ready_of(&c).map(|r| r.0),
        Some(false),
        "ready before the probe passed"
    );
    c.ok(&["exec", "probed", "-c", "web", "--", "touch", "/tmp/ready"]);
    eventually(Duration::from_secs(20), || {
        ready_of(&c).filter(|r| r.0).map(|_| ())
    });
    c.ok(&["exec", "probed", "-c", "web", "--", "rm", "/tmp/ready"]);
    eventually(Duration::from_secs(20), || {
        ready_of(&c).filter(|r| !r.0).map(|_| ())
    });
    eventually(Duration::from_secs(40), || {
        ready_of(&c).filter(|r| r.1 >= 1).map(|_| ())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
    assert!(
        !events.contains("Liveness probe failed: Get"),
        "the httpGet liveness probe failed:\n{events}"
    );

    // Lifecycle hooks: postStart runs as the container starts, preStop before it stops
    // (both leave a file on a hostPath); a failing postStart kills the container.
    let hookdir = c.dir.path().join("hooks");
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: shared, hostPath: {{path: {}, type: DirectoryOrCreate}}}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo started > /shared/poststart']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo stopping > /shared/prestop']}}}}
  - name: bad
    image: busybox
    command: [sleep, "3600"]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'exit 7']}}}}
"#,
        hookdir.display()
    ));
    eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(hookdir.join("poststart"))
            .ok()
            .filter(|s| s == "started\n")
    });
    eventually(Duration::from_secs(40), || {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hooked",
        ]);
        (events.contains("FailedPostStartHook") && events.contains("exited with 7")).then_some(())
    });
    assert!(!hookdir.join("prestop").exists());
    c.ok(&["delete", "pod", "hooked"]);
    assert_eq!(
        std::fs::read_to_string(hookdir.join("prestop")).unwrap(),
        "stopping\n"
    );

    // Static pods: a manifest in the folder runs without the API; its mirror shows it,
    // comes back when deleted, and follows edits and the file's removal.
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let mirror = format!("static-web-{node}");
    let manifest = c.data_dir().join("agent/pod-manifests/static-web.yaml");
    let web = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  labels: {role: web}\nspec:\n  containers:\n  - name: web\n    image: nginx\n    imagePullPolicy: IfNotPresent\n";
    std::fs::write(&manifest, web).unwrap();
    let first = wait_phase(&c, &mirror, "Running");
    let ann = &first["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file", "{ann}");
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Node");
    let sip = first["status"]["podIP"].as_str().unwrap().to_string();
    assert!(http_get(&sip, 80).contains("hello from skiff"));
    let cid = first["status"]["containerStatuses"][0]["containerID"].clone();
    let out = c.kubectl(&["delete", "pod", &mirror, "--timeout=20s"]);
    if !out.status.success() {
        let log = c.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("static") || l.contains("mirror") || l.contains("DELETE"))
            .collect();
        panic!(
            "delete mirror: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            lines.join("\n")
        );
    }
    let back = eventually(Duration::from_secs(30), || {
        pod_json(&c, &mirror).filter(|p| {
            p["metadata"]["uid"] != first["metadata"]["uid"]
                && p["status"]["containerStatuses"][0]["containerID"] == cid
        })
    });
    assert_eq!(back["status"]["containerStatuses"][0]["restartCount"], 0);
    std::fs::write(&manifest, web.replace("role: web", "role: edited")).unwrap();
    let edited = eventually(Duration::from_secs(60), || {
        pod_json(&c, &mirror).filter(|p| {
            p["metadata"]["labels"]["role"] == "edited" && p["status"]["phase"] == "Running"
        })
    });
    assert_ne!(edited["status"]["containerStatuses"][0]["containerID"], cid);
    std::fs::remove_file(&manifest).unwrap();
    eventually(Duration::from_secs(30), || {
        pod_json(&c, &mirror).is_none().then_some(())
    });

    // Pulls through CRI from a registry: Debian's docker-registry on 127.0.0.1:5000 with
    // htpasswd auth. Without credentials the pull fails and backs off; the pod's
    // imagePullSecrets make it work.
    let reg = c.dir.path().join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    let htpasswd = std::process::Command::new("htpasswd")
        .args(["-Bbn", "skiff", "s3cret"])
        .output()
        .unwrap();
    assert!(htpasswd.status.success());
    std::fs::write(reg.join("htpasswd"), &htpasswd.stdout).unwrap();
    std::fs::write(
        reg.join("config.yml"),
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\nauth:\n  htpasswd:\n    realm: skiff\n    path: {}\n",
            reg.join("data").display(),
            reg.join("htpasswd").display()
        ),
    )
    .unwrap();
    let registry = KillOnDrop(
        std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(reg.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(reg.join("log")).unwrap())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect("127.0.0.1:5000")
            .ok()
            .map(|_| ())
    });
    assert_eq!(http("GET", "http://127.0.0.1:5000/v2/", &[], b"").0, 401);
    let mut hello = image::ImageSpec {
        name: "127.0.0.1:5000/skiff/hello:1".into(),
        entries: image::busybox_root("/bin/busybox".as_ref()).unwrap(),
        cmd: ["sh", "-c", "echo pulled; sleep 3600"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    hello.env.push("PATH=/bin".into());
    push(
        "127.0.0.1:5000",
        "skiff/hello",
        "1",
        &hello,
        "c2tpZmY6czNjcmV0",
    );
    c.ok(&["run", "anon", "--image=127.0.0.1:5000/skiff/hello:1"]);
    eventually(Duration::from_secs(40), || {
        c.ok(&["get", "pod", "anon"])
            .contains("ImagePullBackOff")
            .then_some(())
    });
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server=127.0.0.1:5000",
        "--docker-username=skiff",
        "--docker-password=s3cret",
    ]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: pulled}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{name: regcred}]
  containers:
  - {name: c, image: "127.0.0.1:5000/skiff/hello:1"}
"#,
    );
    wait_phase(&c, "pulled", "Running");
    eventually(Duration::from_secs(20), || {
        (c.ok(&["logs", "pulled"]) == "pulled\n").then_some(())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pulled",
    ]);
    assert!(
        events.contains("Successfully pulled image \"127.0.0.1:5000/skiff/hello:1\""),
        "{events}"
    );
    c.ok(&["delete", "pod", "anon", "pulled", "--grace-period=1"]);
    drop(registry);

    // Log rotation: past --container-log-max-size the file is renamed and containerd
    // reopens it; at most 5 files stay (the live one and 4 rotated).
    c.ok(&[
        "run",
        "chatty",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "i=0; while true; do echo \"line $i of a chatty container\"; i=$((i+1)); usleep 2000; done",
    ]);
    let chatty = wait_phase(&c, "chatty", "Running");
    // As root, logs go where collectors look: kubelet's /var/log layout.
    let pod_dir = std::path::Path::new("/var/log/pods").join(format!(
        "default_chatty_{}",
        chatty["metadata"]["uid"].as_str().unwrap()
    ));
    let link = format!(
        "/var/log/containers/chatty_default_chatty-{}.log",
        chatty["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .trim_start_matches("containerd://")
    );
    let rotated = || -> Vec<String> {
        std::fs::read_dir(pod_dir.join("chatty"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("0.log."))
            .collect()
    };
    eventually(Duration::from_secs(40), || {
        (rotated().len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(25));
    assert!(rotated().len() <= 4, "{:?}", rotated());
    assert!(
        c.ok(&["logs", "chatty", "--tail=1"])
            .contains("of a chatty container")
    );
    // Rotation leaves the link on the live file; the pod takes both with it.
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        pod_dir.join("chatty/0.log")
    );
    c.ok(&["delete", "pod", "chatty", "--grace-period=1"]);
    eventually(Duration::from_secs(30), || {
        (!pod_dir.exists() && std::fs::symlink_metadata(&link).is_err()).then_some(())
    });

    // containerd dies: the agent restarts it, running pods are untouched and new ones run.
    let ctd = |c: &Cluster| -> Option<u32> {
        let out = std::process::Command::new("pgrep")
            .args([
                "-f",
                &format!("containerd --config {}", c.data_dir().display()),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    };
    let old = ctd(&c).expect("containerd runs");
    let before = pod_json(&c, "my-pod").unwrap();
    std::process::Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap();
    eventually(Duration::from_secs(30), || ctd(&c).filter(|p| *p != old));
    eventually(Duration::from_secs(30), || {
        c.kubectl(&["exec", "my-pod", "--", "true"])
            .status
            .success()
            .then_some(())
    });
    let after = pod_json(&c, "my-pod").unwrap();
    assert_eq!(
        after["status"]["containerStatuses"][0]["containerID"],
        before["status"]["containerStatuses"][0]["containerID"]
    );
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    c.ok(&[
        "run",
        "afterwards",
        "--image=busybox",
        "--",
        "sleep",
        "3600",
    ]);
    wait_phase(&c, "afterwards", "Running");
    c.ok(&["delete", "pod", "afterwards", "--grace-period=1"]);

    // Workload controllers drive the real node: a Deployment's pod that is deleted comes
    // back, a Job runs its completions to Complete and one that fails stops at its
    // backoffLimit, a DaemonSet runs one pod here; deleting the owners takes the pods.
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let web_pods = || {
        let out = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ]);
        out.lines()
            .filter(|l| l.split_whitespace().count() == 1)
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    let first = web_pods()[0].clone();
    c.ok(&["delete", "pod", &first, "--wait=false"]);
    eventually(Duration::from_secs(60), || {
        let now = web_pods();
        (now.len() == 2 && !now.contains(&first)).then_some(())
    });
    c.apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: twice}\nspec:\n  completions: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox, command: [sh, -c, echo done]}]\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: never}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox, command: [sh, -c, exit 3]}]\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agentd}\nspec:\n  selector: {matchLabels: {app: agentd}}\n  template:\n    metadata: {labels: {app: agentd}}\n    spec:\n      containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n",
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/twice",
        "--timeout=90s",
    ]);
    assert_eq!(
        c.ok(&["get", "job", "twice", "-o", "jsonpath={.status.succeeded}"]),
        "2"
    );
    assert_eq!(c.ok(&["logs", "job/twice"]).trim(), "done");
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/never",
        "--timeout=90s",
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "job",
            "never",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}"
        ]),
        "BackoffLimitExceeded"
    );
    c.ok(&["rollout", "status", "ds/agentd", "--timeout=90s"]);
    c.ok(&["delete", "deployment", "web"]);
    c.ok(&["delete", "daemonset", "agentd"]);
    c.ok(&["delete", "job", "twice", "never"]);
    eventually(Duration::from_secs(90), || {
        c.ok(&["get", "pods", "-l", "app in (web,agentd)", "-o", "name"])
            .is_empty()
            .then_some(())
    });
    assert_eq!(
        c.ok(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name",
            "-o",
            "name"
        ]),
        ""
    );

    // Graceful deletion: kubectl waits until the agent has stopped it and it is gone.
    c.ok(&["delete", "pod", "my-pod"]);
    assert!(c.fails(&["get", "pod", "my-pod"]).contains("NotFound"));
    assert!(
        c.whoami(&pod_token).is_none(),
        "a deleted pod's token still authenticates"
    );

    // Stopping the cluster stops its pods and containerd and removes the pod network.
    the_network_is_up();
    c.stop();
    let ps = std::process::Command::new("pgrep")
        .args(["-f", &c.data_dir().display().to_string()])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    nothing_left_of_the_network();

    // Restarting with --leave-pods-running: the pod keeps running and the new agent (and
    // containerd) adopt its container instead of starting another.
    let dir = tempfile::tempdir().unwrap();
    write_test_images(&dir.path().join("data/agent/images"));
    let mut c = Cluster::start_in(dir, &["up", "--offline", "--leave-pods-running"]);
    c.ok(&["run", "kept", "--image=nginx"]);
    let before = wait_phase(&c, "kept", "Running");
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();
    let ip = before["status"]["podIP"].as_str().unwrap().to_string();
    c.restart();
    std::thread::sleep(Duration::from_secs(5));
    let after = wait_phase(&c, "kept", "Running");
    assert_eq!(
        after["status"]["containerStatuses"][0]["containerID"], id,
        "container was replaced"
    );
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(http_get(&ip, 80).contains("hello from skiff"));
    c.ok(&["delete", "pod", "kept"]);
    // Once empty, a run without the flag stops everything it set up.
    c.args.retain(|a| a != "--leave-pods-running");
    c.restart();
    c.stop();
    nothing_left_of_the_network();
}
