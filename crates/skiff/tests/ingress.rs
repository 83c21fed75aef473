//! The built-in Ingress controller on a real node (root; containerd, CNI plugins,
//! busybox-static, curl and openssl): an Ingress with two hosts, a TLS section and path
//! rules, reached from outside the cluster with `curl --resolve` on the node's address
//! over HTTP/1.1, HTTP/2 and TLS with SNI; `X-Forwarded-*`; an upgraded connection that
//! outlives a rule change; 404 and 503 answers; a rolling update of a backend that loses
//! no request; the Ingress' status. Every "routed" is first shown unrouted.

mod common;

use common::Cluster;
use common::eventually;
use common::lab::Lab;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Backends: `web` (two replicas, each page naming its pod, Service port named `http`),
/// `api` (a page under /v1 and a CGI script printing its environment, port 8080), and
/// `echo` (answers an upgrade with 101, then echoes every byte).
fn backends(c: &Cluster) {
    c.apply(&deployment(
        "web",
        2,
        // Gone the moment it is told to stop, as many servers are: a rolling update then
        // refuses connections that were routed to it.
        "mkdir -p /www && echo web $(hostname) > /www/index.html && httpd -f -p 8080 -h /www & trap 'exit 0' TERM; wait",
    ));
    c.apply(&deployment(
        "api",
        1,
        "mkdir -p /www/v1 /www/cgi-bin && echo api > /www/v1/index.html && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nenv\\n' > /www/cgi-bin/env && chmod +x /www/cgi-bin/env && exec httpd -f -p 8080 -h /www",
    ));
    let echo = "printf '#!/bin/sh\\nwhile read -r l; do [ ${#l} -le 1 ] && break; done\\nprintf \"HTTP/1.1 101 Switching Protocols\\\\r\\\\nUpgrade: websocket\\\\r\\\\nConnection: Upgrade\\\\r\\\\n\\\\r\\\\n\"\\nexec cat\\n' > /echo.sh && chmod +x /echo.sh && exec nc -ll -p 8080 -e /echo.sh";
    c.apply(&deployment("echo", 1, echo));
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  selector:\n    app: api\n  ports:\n  - port: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  selector:\n    app: echo\n  ports:\n  - port: 9000\n    targetPort: 8080\n",
    );
    for d in ["web", "api", "echo"] {
        c.ok(&[
            "rollout",
            "status",
            &format!("deployment/{d}"),
            "--timeout=120s",
        ]);
    }
}

fn deployment(name: &str, replicas: u32, script: &str) -> String {
    let script = script.replace('\'', "''");
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, '{script}']\n        ports:\n        - containerPort: 8080\n"
    )
}

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: demo\nspec:\n  tls:\n  - hosts: [secure.example]\n    secretName: demo-tls\n  rules:\n  - host: secure.example\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              name: http\n  - host: api.example\n    http:\n      paths:\n      - path: /v1\n        pathType: Prefix\n        backend:\n          service:\n            name: api\n            port:\n              number: 8080\n      - path: /cgi-bin/env\n        pathType: Exact\n        backend:\n          service:\n            name: api\n            port:\n              number: 8080\n      - path: /ws\n        pathType: Exact\n        backend:\n          service:\n            name: echo\n            port:\n              number: 9000\n";

/// A self-signed certificate for `secure.example`, as the Secret `demo-tls`; its PEM.
fn tls_secret(c: &Cluster, dir: &std::path::Path) -> std::path::PathBuf {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=secure.example"])
        .args(["-addext", "subjectAltName=DNS:secure.example"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl req");
    c.ok(&[
        "create",
        "secret",
        "tls",
        "demo-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ]);
    crt
}

/// curl from outside the cluster with `host` resolved to the node; (status, body).
fn curl(lab: &Lab, url: &str, extra: &[&str]) -> (String, String) {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let port = if url.starts_with("https") { 443 } else { 80 };
    let out = lab
        .outside("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(["--resolve", &format!("{host}:{port}:{}", lab.ip(0))])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), format!("{body}{stderr}"))
}

fn settles(lab: &Lab, url: &str, extra: &[&str], want_status: &str, want_body: &str) -> String {
    let mut last = (String::new(), String::new());
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(20), || {
            last = curl(lab, url, extra);
            (last.0.starts_with(want_status) && last.1.contains(want_body)).then(|| last.1.clone())
        })
    }));
    found.unwrap_or_else(|_| {
        panic!(
            "{url}: wanted {want_status} with {want_body:?}, last got {} {:?}",
            last.0, last.1
        )
    })
}

#[test]
fn an_ingress_routes_hosts_paths_and_tls_to_its_backends() {
    let lab = Lab::new(1);
    let c = lab.start_server(&[]);
    lab.wait_ready(&c);
    backends(&c);
    let dir = tempfile::tempdir().unwrap();
    let crt = tls_secret(&c, dir.path());
    let ca = crt.display().to_string();
    let cacert = ["--cacert", ca.as_str()];

    // No Ingress yet: the controller answers, and says why it has nowhere to go.
    let body = settles(
        &lab,
        "http://api.example/v1/",
        &[],
        "404",
        "no Ingress rule",
    );
    assert!(body.contains("\"api.example\""), "{body}");
    assert_eq!(
        c.ok(&[
            "get",
            "ingressclass",
            "skiff",
            "-o",
            "jsonpath={.spec.controller}"
        ]),
        "skiff.io/ingress"
    );

    c.apply(INGRESS);
    assert_eq!(
        c.ok(&[
            "get",
            "ingress",
            "demo",
            "-o",
            "jsonpath={.spec.ingressClassName}"
        ]),
        "skiff",
        "the default class was given"
    );
    settles(&lab, "http://api.example/v1/", &[], "200", "api");
    assert_eq!(curl(&lab, "http://api.example/v2/", &[]).0, "404 1.1");
    assert_eq!(curl(&lab, "http://other.example/v1/", &[]).0, "404 1.1");
    // HTTP/2 without TLS (prior knowledge) and over TLS (ALPN), the certificate picked
    // by SNI: curl checks it names secure.example against the Secret's certificate.
    let (status, _) = curl(&lab, "http://api.example/v1/", &["--http2-prior-knowledge"]);
    assert_eq!(status, "200 2");
    let (status, body) = curl(&lab, "https://secure.example/", &cacert);
    assert_eq!(status, "200 2", "{body}");
    assert!(body.starts_with("web web-"), "{body}");
    let (status, body) = curl(
        &lab,
        "https://secure.example/",
        &[cacert[0], cacert[1], "--http1.1"],
    );
    assert_eq!(status, "200 1.1", "{body}");
    // Another name gets the default certificate, which the Secret's CA does not sign.
    let (status, body) = curl(&lab, "https://api.example/v1/", &cacert);
    assert_eq!(status, "000 0", "{body}");
    let (status, _) = curl(&lab, "https://api.example/v1/", &["-k"]);
    assert_eq!(status, "200 2");

    // The endpoint learns who asked, and how.
    let (_, env) = curl(&lab, "http://api.example/cgi-bin/env", &[]);
    for want in [
        format!("HTTP_X_FORWARDED_FOR={}", common::lab::OUTSIDE),
        "HTTP_X_FORWARDED_PROTO=http".into(),
        "HTTP_X_FORWARDED_HOST=api.example".into(),
        "HTTP_HOST=api.example".into(),
    ] {
        assert!(env.contains(&want), "{want} not in {env}");
    }
    let (_, env) = curl(&lab, "https://api.example/cgi-bin/env", &["-k"]);
    assert!(env.contains("HTTP_X_FORWARDED_PROTO=https"), "{env}");

    balanced_over_both_replicas(&lab, &cacert);
    upgraded_connection_outlives_a_rule_change(&lab, &c);
    status_shows_the_node(&lab, &c);
    rolling_update_loses_no_request(&lab, &c);

    // No ready endpoint: 503, naming the Service.
    c.ok(&["scale", "deployment", "api", "--replicas=0"]);
    let body = settles(
        &lab,
        "http://api.example/v1/",
        &[],
        "503",
        "no ready endpoints",
    );
    assert!(body.contains("default/api"), "{body}");
}

fn balanced_over_both_replicas(lab: &Lab, cacert: &[&str]) {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (_, body) = curl(lab, "https://secure.example/", cacert);
        seen.insert(body.trim().to_string());
    }
    assert_eq!(seen.len(), 2, "both web pods answer: {seen:?}");
}

/// An upgraded connection (the echo backend's 101) keeps flowing while the Ingress'
/// rules change under it.
fn upgraded_connection_outlives_a_rule_change(lab: &Lab, c: &Cluster) {
    let script = format!(
        "(printf 'GET /ws HTTP/1.1\\r\\nHost: api.example\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n\\r\\n'; sleep 1; echo before; sleep 4; echo after; sleep 1) | busybox nc -w 3 {} 80",
        lab.ip(0)
    );
    let child = lab
        .outside("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let changed = INGRESS.replace("path: /v1\n", "path: /v1\n      - path: /v2\n        pathType: Prefix\n        backend:\n          service:\n            name: api\n            port:\n              number: 8080\n      - path: /v1-also\n");
    c.apply(&changed);
    settles(lab, "http://api.example/v2/", &[], "404", "");
    let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(out.contains("before") && out.contains("after"), "{out}");
    c.apply(INGRESS);
}

fn status_shows_the_node(lab: &Lab, c: &Cluster) {
    let ip = eventually(Duration::from_secs(20), || {
        let ip = c.ok(&[
            "get",
            "ingress",
            "demo",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]);
        (!ip.is_empty()).then_some(ip)
    });
    assert_eq!(ip, lab.ip(0));
    let wide = c.ok(&["get", "ingress", "demo"]);
    assert!(wide.contains(&lab.ip(0)), "{wide}");
}

/// Requests keep coming, from before the rollout starts until after it ends, while
/// `web` rolls to a new template: none may fail.
fn rolling_update_loses_no_request(lab: &Lab, c: &Cluster) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let (codes, errors) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let (mut codes, mut errors) = (Vec::new(), String::new());
            // Batches of 20 requests in one curl; bounded by the flag or 3 minutes.
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(180) {
                let mut cmd = lab.outside("curl");
                cmd.args(["-sS", "--max-time", "5", "-w", "%{http_code}\\n"])
                    .args(["--resolve", &format!("secure.example:80:{}", lab.ip(0))]);
                for _ in 0..20 {
                    cmd.args(["-o", "/dev/null", "http://secure.example/"]);
                }
                let out = cmd.output().unwrap();
                errors.push_str(&String::from_utf8_lossy(&out.stderr));
                codes.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(str::to_string),
                );
            }
            (codes, errors)
        });
        std::thread::sleep(Duration::from_secs(1));
        c.ok(&["set", "env", "deployment/web", "ROLL=1"]);
        c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
        // The old pods' endpoints are gone once the rollout is done; a moment more
        // catches a straggler.
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    let failed: Vec<_> = codes.iter().filter(|c| *c != "200").collect();
    if !failed.is_empty() {
        let _ = std::fs::write("/tmp/skiff-ingress-failure.log", c.log());
    }
    assert!(
        failed.is_empty() && codes.len() >= 40,
        "{} of {} requests failed: {failed:?}\n{errors}\n{}",
        failed.len(),
        codes.len(),
        unusual_requests(&c.log())
    );
    eprintln!("rolling update: {} requests, none failed", codes.len());
}

/// Access log lines of requests that failed or were slow, with the proxy's notes on
/// endpoints it skipped: what explains a request the client saw fail.
fn unusual_requests(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            let access = l.contains("skiff_ingress::access");
            let slow = l
                .split(" ms=")
                .nth(1)
                .and_then(|ms| ms.trim().parse::<f64>().ok())
                .is_some_and(|ms| ms > 500.0);
            (access && (!l.contains("status=200") || slow))
                || l.contains("endpoint refused")
                || l.contains("endpoint connection ended")
                || l.contains("ingress connection ended")
                || l.contains(" WARN ")
                || l.contains(" ERROR ")
        })
        .collect();
    let skip = lines.len().saturating_sub(40);
    lines[skip..].join("\n")
}
