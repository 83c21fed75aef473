//! Extending the API end to end, with the real kubectl against a real `skiff server`:
//! admission webhooks (a webhook server in this test, HTTPS with its own CA, called by
//! URL and through an ExternalName Service), ValidatingAdmissionPolicies with params and
//! bindings, and an extension API server behind an APIService (reached with the
//! request-header proxy certificate, told the user in `X-Remote-User`).

mod common;

use base64::Engine;
use bytes::Bytes;
use common::{Cluster, tail};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// HTTPS servers of the test
// ---------------------------------------------------------------------------------

/// A request a test server received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: String,
    headers: http::HeaderMap,
    body: Bytes,
    /// The CN of the certificate the caller presented, if any.
    client_cn: Option<String>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A handler's answer: status and JSON body.
type Reply = (u16, Value);

/// An HTTPS server on 127.0.0.1 with a CA of its own (`ca_pem`), optionally requiring
/// client certificates from another CA, answering with a plain function and recording
/// every request. Runs on a runtime of its own, so the tests stay synchronous; `stop`
/// (or drop) closes the port and every connection.
struct TestServer {
    port: u16,
    ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// TLS connections accepted.
    conns: Arc<std::sync::atomic::AtomicUsize>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    fn start(sans: &[&str], client_ca: Option<&str>, handler: fn(&Seen) -> Reply) -> TestServer {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "skiff-extensions-test-ca");
        let ca_pem = p.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(p, ca_key);
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let conns: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        rt.spawn(serve(
            listener,
            acceptor,
            seen.clone(),
            conns.clone(),
            handler,
        ));
        TestServer {
            port,
            ca_pem,
            seen,
            conns,
            rt: Some(rt),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.conns.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<std::sync::atomic::AtomicUsize>,
    handler: fn(&Seen) -> Reply,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let (seen, conns) = (seen.clone(), conns.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let client_cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| common_name(c));
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let client_cn = client_cn.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let s = Seen {
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().unwrap_or_default().to_string(),
                            headers: parts.headers,
                            body,
                            client_cn,
                        };
                        let (status, reply) = handler(&s);
                        seen.lock().unwrap().push(s);
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(reply.to_string())))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

// ---------------------------------------------------------------------------------
// kubectl helpers
// ---------------------------------------------------------------------------------

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that kubectl succeeded; (stdout, stderr).
#[track_caller]
fn ok(c: &Cluster, out: Output) -> (String, String) {
    assert!(
        out.status.success(),
        "kubectl failed: {}{}\nserver log tail:\n{}",
        stdout(&out),
        stderr(&out),
        tail(&c.log(), 40)
    );
    (stdout(&out), stderr(&out))
}

/// Asserts that kubectl failed; its stderr.
#[track_caller]
fn refused(out: Output) -> String {
    assert!(
        !out.status.success(),
        "kubectl should have failed, printed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

/// Polls `f` every 200 ms until it gives Ok, or panics with its last Err after `timeout`.
#[track_caller]
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => {
                panic!("{what}: not within {timeout:?}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The admin's user name, as the API server sees it.
fn whoami(c: &Cluster) -> String {
    c.ok(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ])
}

/// An ExternalName Service `ns/name` for `localhost`.
fn external_name(ns: &str, name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ExternalName", "externalName": "localhost"},
    })
    .to_string()
}

// ---------------------------------------------------------------------------------
// 1. Admission webhooks
// ---------------------------------------------------------------------------------

const MUTATE: &str = "mutate.skiff.test";
const VALIDATE: &str = "validate.skiff.test";
const IMAGE: &str = "--image=registry.k8s.io/pause:3.10";

/// The webhook server: `/mutate` labels pods `mutated=yes`; `/validate` denies pods
/// named `bad-*` and pods annotated `test/deny`, and allows the rest with a warning.
fn webhook(seen: &Seen) -> Reply {
    let review = seen.json();
    let req = &review["request"];
    let obj = &req["object"];
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut resp = json!({"uid": req["uid"], "allowed": true});
    match seen.path.as_str() {
        "/mutate" => {
            let patch = if obj["metadata"]["labels"].is_object() {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            resp["patchType"] = json!("JSONPatch");
            resp["patch"] = json!(b64(&patch.to_string()));
        }
        "/validate" if name.starts_with("bad-") => {
            resp["allowed"] = json!(false);
            resp["status"] = json!({"message": "bad pods are not welcome"});
        }
        "/validate" if obj["metadata"]["annotations"]["test/deny"].is_string() => {
            resp["allowed"] = json!(false);
            resp["status"] = json!({"message": "pods annotated test/deny are refused"});
        }
        "/validate" => resp["warnings"] = json!([format!("pod {name} looked at by {VALIDATE}")]),
        _ => return (404, json!({})),
    }
    (
        200,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}),
    )
}

/// The two configurations: the mutating webhook through the ExternalName Service
/// `hooked/webhook`, the validating one by URL; both for pods in namespaces labelled
/// `webhooks=on`.
fn webhook_configs(port: u16, ca_pem: &str, mutate_policy: &str, validate_policy: &str) -> String {
    let rules = json!([{
        "operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
        "resources": ["pods"], "scope": "Namespaced",
    }]);
    let selector = json!({"matchLabels": {"webhooks": "on"}});
    let hook = |name: &str, client: Value, policy: &str| {
        json!({
            "name": name, "clientConfig": client, "rules": rules,
            "namespaceSelector": selector, "failurePolicy": policy, "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
        })
    };
    let mut mutate = hook(
        MUTATE,
        json!({
            "service": {"namespace": "hooked", "name": "webhook", "port": port, "path": "/mutate"},
            "caBundle": b64(ca_pem),
        }),
        mutate_policy,
    );
    mutate["objectSelector"] =
        json!({"matchExpressions": [{"key": "nomutate", "operator": "DoesNotExist"}]});
    let mut validate = hook(
        VALIDATE,
        json!({"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": b64(ca_pem)}),
        validate_policy,
    );
    validate["matchConditions"] = json!([{
        "name": "not-skipped",
        "expression": "!has(object.metadata.labels) || !('skip' in object.metadata.labels)",
    }]);
    let group = "admissionregistration.k8s.io/v1";
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": group, "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": "skiff-test-mutate"}, "webhooks": [mutate]},
        {"apiVersion": group, "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "skiff-test-validate"}, "webhooks": [validate]},
    ]})
    .to_string()
}

/// `kubectl run <name> -n <ns> …`.
fn run(c: &Cluster, ns: &str, name: &str, extra: &[&str]) -> Output {
    let mut args = vec!["run", name, "-n", ns, IMAGE];
    args.extend_from_slice(extra);
    c.kubectl(&args)
}

fn pod_label(c: &Cluster, ns: &str, pod: &str, key: &str) -> String {
    c.ok(&[
        "get",
        "pod",
        pod,
        "-n",
        ns,
        "-o",
        &format!("jsonpath={{.metadata.labels.{key}}}"),
    ])
}

/// The AdmissionReviews the webhook server got on `path` for pod `name`.
fn reviews(hook: &TestServer, path: &str, name: &str) -> Vec<Value> {
    hook.seen()
        .into_iter()
        .filter(|s| s.path == path)
        .map(|s| s.json())
        .filter(|r| {
            r["request"]["name"] == name || r["request"]["object"]["metadata"]["name"] == name
        })
        .collect()
}

/// A cluster with namespaces `hooked` (labelled `webhooks=on`, with the ExternalName
/// Service `webhook`) and `plain`, and a webhook server (not registered yet).
fn webhook_cluster() -> (Cluster, TestServer) {
    let c = Cluster::start();
    let hook = TestServer::start(
        &["webhook.hooked.svc", "localhost", "127.0.0.1"],
        None,
        webhook,
    );
    c.ok(&["create", "namespace", "hooked"]);
    c.ok(&["label", "namespace", "hooked", "webhooks=on"]);
    c.ok(&["create", "namespace", "plain"]);
    c.apply(&external_name("hooked", "webhook"));
    (c, hook)
}

/// Registers the configurations and waits until a server dry run comes back labelled.
fn register(c: &Cluster, hook: &TestServer) {
    c.apply(&webhook_configs(hook.port, &hook.ca_pem, "Fail", "Fail"));
    poll(
        "webhook configurations in effect",
        Duration::from_secs(15),
        || {
            let out = run(
                c,
                "hooked",
                "probe",
                &[
                    "--dry-run=server",
                    "-o",
                    "jsonpath={.metadata.labels.mutated}",
                ],
            );
            match (out.status.success(), stdout(&out).as_str()) {
                (true, "yes") => Ok(()),
                _ => Err(format!("{}{}", stdout(&out), stderr(&out))),
            }
        },
    );
}

#[test]
fn admission_webhooks() {
    let (c, mut hook) = webhook_cluster();
    let admin = whoami(&c);

    // Without configurations, what they will refuse is allowed and nothing is labelled.
    ok(&c, run(&c, "hooked", "bad-x", &[]));
    assert_eq!(pod_label(&c, "hooked", "bad-x", "mutated"), "");
    c.ok(&["delete", "pod", "bad-x", "-n", "hooked", "--timeout=30s"]);
    c.gone(&["get", "pod", "bad-x", "-n", "hooked"]);
    ok(&c, run(&c, "hooked", "upd", &[]));
    c.ok(&["annotate", "pod", "upd", "-n", "hooked", "test/deny=yes"]);
    c.ok(&["annotate", "pod", "upd", "-n", "hooked", "test/deny-"]);
    ok(
        &c,
        run(&c, "hooked", "flagged", &["--annotations=test/deny=yes"]),
    );
    assert!(hook.seen().is_empty(), "{:?}", hook.seen());

    // Configurations are validated on write, with kube's 422s.
    let bad = webhook_configs(hook.port, &hook.ca_pem, "Fail", "Fail")
        .replace("\"sideEffects\":\"None\"", "\"sideEffects\":\"Unknown\"");
    let err = refused(c.kubectl_stdin(&["apply", "-f", "-"], &bad));
    let invalid = |kind: &str, name: &str| {
        format!(
            "Error from server (Invalid): error when creating \"STDIN\": \
             {kind}.admissionregistration.k8s.io \"{name}\" is invalid: \
             webhooks[0].sideEffects: Unsupported value: \"Unknown\": supported values: \
             \"None\", \"NoneOnDryRun\"\n"
        )
    };
    assert_eq!(
        err,
        invalid("MutatingWebhookConfiguration", "skiff-test-mutate")
            + &invalid("ValidatingWebhookConfiguration", "skiff-test-validate")
    );
    c.gone(&["get", "mutatingwebhookconfiguration", "skiff-test-mutate"]);

    register(&c, &hook);
    let port = hook.port;

    // Created: labelled by the mutating webhook (beside kubectl run's own label), the
    // validating webhook's warning printed.
    let (out, err) = ok(&c, run(&c, "hooked", "web", &[]));
    assert_eq!(out, "pod/web created\n");
    assert_eq!(err, format!("Warning: pod web looked at by {VALIDATE}\n"));
    assert_eq!(pod_label(&c, "hooked", "web", "mutated"), "yes");
    assert_eq!(pod_label(&c, "hooked", "web", "run"), "web");
    // The mutating webhook was called through the Service (TLS name `<svc>.<ns>.svc`),
    // with kube's timeout parameter; the validating one saw the mutated object.
    let m = reviews(&hook, "/mutate", "web");
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(m[0]["kind"], "AdmissionReview");
    let r = &m[0]["request"];
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["namespace"], "hooked");
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(r["userInfo"]["username"], admin.as_str());
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(r["requestResource"], r["resource"]);
    assert_eq!(r["name"], "web");
    assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()), "{r}");
    assert!(
        r["userInfo"]["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("system:authenticated"))),
        "{r}"
    );
    assert_eq!(
        (&r["options"]["kind"], &r["options"]["apiVersion"]),
        (&json!("CreateOptions"), &json!("meta.k8s.io/v1")),
        "{r}"
    );
    assert!(r["object"]["metadata"]["labels"].get("mutated").is_none());
    let v = reviews(&hook, "/validate", "web");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        v[0]["request"]["object"]["metadata"]["labels"]["mutated"],
        "yes"
    );
    let queries: Vec<String> = hook
        .seen()
        .iter()
        .map(|s| format!("{}?{}", s.path, s.query))
        .collect();
    assert!(
        queries.contains(&"/mutate?timeout=5s".to_string()),
        "{queries:?}"
    );
    assert!(
        queries.contains(&"/validate?timeout=5s".to_string()),
        "{queries:?}"
    );

    // Refused, in kube's words (ToStatusErr: no code in the webhook's status → 403,
    // `<resource> "<name>" is forbidden: admission webhook "<w>" denied the request: …`).
    let err = refused(run(&c, "hooked", "bad-x", &[]));
    assert_eq!(
        err,
        format!(
            "Error from server (Forbidden): pods \"bad-x\" is forbidden: admission webhook \
             \"{VALIDATE}\" denied the request: bad pods are not welcome\n"
        )
    );
    c.gone(&["get", "pod", "bad-x", "-n", "hooked"]);
    let err = refused(run(
        &c,
        "hooked",
        "flagged2",
        &["--annotations=test/deny=yes"],
    ));
    assert!(
        err.contains(&format!(
            "admission webhook \"{VALIDATE}\" denied the request: pods annotated test/deny are refused"
        )),
        "{err}"
    );
    // Updates too: the annotation allowed before is refused now.
    let err = refused(c.kubectl(&["annotate", "pod", "upd", "-n", "hooked", "test/deny=yes"]));
    assert_eq!(
        err,
        format!(
            "Error from server (Forbidden): pods \"upd\" is forbidden: admission webhook \
             \"{VALIDATE}\" denied the request: pods annotated test/deny are refused\n"
        )
    );
    let upd: Value =
        serde_json::from_str(&c.ok(&["get", "pod", "upd", "-n", "hooked", "-o", "json"])).unwrap();
    assert!(
        upd["metadata"]["annotations"].get("test/deny").is_none(),
        "{upd}"
    );
    let u = reviews(&hook, "/validate", "upd");
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0]["request"]["operation"], "UPDATE");
    assert!(
        u[0]["request"]["oldObject"]["metadata"]["annotations"]
            .get("test/deny")
            .is_none()
    );
    assert_eq!(
        u[0]["request"]["object"]["metadata"]["labels"]["mutated"],
        "yes"
    );

    // objectSelector: a pod labelled nomutate is not sent to the mutating webhook (the
    // validating one still warns); matchConditions: one labelled skip is not sent to the
    // validating webhook, so even a bad-* name passes (and is mutated).
    let (_, err) = ok(&c, run(&c, "hooked", "unmutated", &["-l", "nomutate=1"]));
    assert_eq!(
        err,
        format!("Warning: pod unmutated looked at by {VALIDATE}\n")
    );
    assert_eq!(pod_label(&c, "hooked", "unmutated", "mutated"), "");
    assert!(reviews(&hook, "/mutate", "unmutated").is_empty());
    let (_, err) = ok(&c, run(&c, "hooked", "bad-skipped", &["-l", "skip=yes"]));
    assert_eq!(err, "");
    assert_eq!(pod_label(&c, "hooked", "bad-skipped", "mutated"), "yes");
    assert!(reviews(&hook, "/validate", "bad-skipped").is_empty());

    // A namespace the selector does not match: untouched, no webhook called.
    let before = hook.seen().len();
    let (out, err) = ok(&c, run(&c, "plain", "web", &[]));
    assert_eq!((out.as_str(), err.as_str()), ("pod/web created\n", ""));
    assert_eq!(pod_label(&c, "plain", "web", "mutated"), "");
    ok(&c, run(&c, "plain", "bad-x", &[]));
    assert_eq!(hook.seen().len(), before, "{:?}", &hook.seen()[before..]);

    // Dry run (sideEffects None): mutated and validated, told it is a dry run, not kept.
    let (out, err) = ok(
        &c,
        run(&c, "hooked", "dry", &["--dry-run=server", "-o", "json"]),
    );
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dry["metadata"]["labels"]["mutated"], "yes");
    assert_eq!(err, format!("Warning: pod dry looked at by {VALIDATE}\n"));
    let d = reviews(&hook, "/mutate", "dry");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["request"]["dryRun"], true);
    c.gone(&["get", "pod", "dry", "-n", "hooked"]);
    let err = refused(run(&c, "hooked", "bad-dry", &["--dry-run=server"]));
    assert!(err.contains("bad pods are not welcome"), "{err}");

    // The webhook server gone: failurePolicy Fail refuses, naming the webhook.
    hook.stop();
    let err = refused(run(&c, "hooked", "after", &[]));
    let prefix = format!(
        "Error from server (InternalError): Internal error occurred: failed calling webhook \
         \"{MUTATE}\": failed to call webhook: Post \"https://webhook.hooked.svc:{port}/mutate?timeout=5s\": "
    );
    assert!(err.starts_with(&prefix), "{err}");
    eprintln!("webhook down, failurePolicy Fail: {err}");
    c.gone(&["get", "pod", "after", "-n", "hooked"]);
    // The mutating one Ignore: the validating one (by URL) fails next.
    c.apply(&webhook_configs(port, &hook.ca_pem, "Ignore", "Fail"));
    let prefix = format!(
        "Error from server (InternalError): Internal error occurred: failed calling webhook \
         \"{VALIDATE}\": failed to call webhook: Post \"https://127.0.0.1:{port}/validate?timeout=5s\": "
    );
    poll("mutating webhook ignored", Duration::from_secs(15), || {
        let err = stderr(&run(&c, "hooked", "after", &["--dry-run=server"]));
        err.starts_with(&prefix).then_some(()).ok_or(err)
    });
    // Both Ignore: allowed, unlabelled.
    c.apply(&webhook_configs(port, &hook.ca_pem, "Ignore", "Ignore"));
    poll("both webhooks ignored", Duration::from_secs(15), || {
        let out = run(&c, "hooked", "after", &["--dry-run=server"]);
        out.status.success().then_some(()).ok_or(stderr(&out))
    });
    let (out, err) = ok(&c, run(&c, "hooked", "after", &[]));
    assert_eq!((out.as_str(), err.as_str()), ("pod/after created\n", ""));
    assert_eq!(pod_label(&c, "hooked", "after", "mutated"), "");
}

// ---------------------------------------------------------------------------------
// 2. ValidatingAdmissionPolicy
// ---------------------------------------------------------------------------------

const POLICY: &str = "max-replicas";
const BINDING: &str = "max-replicas-binding";

fn policy() -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
            }]},
            "validations": [{
                "expression": "object.spec.replicas <= int(params.data.maxReplicas)",
                "messageExpression": "'replicas ' + string(object.spec.replicas) + ' exceed the limit of ' + params.data.maxReplicas",
            }],
        },
    })
    .to_string()
}

fn binding(actions: &[&str]) -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": BINDING},
        "spec": {
            "policyName": POLICY,
            "validationActions": actions,
            "paramRef": {"name": "limits", "namespace": "capped", "parameterNotFoundAction": "Deny"},
            "matchResources": {"namespaceSelector": {"matchLabels": {"replicas": "capped"}}},
        },
    })
    .to_string()
}

fn deployment(c: &Cluster, ns: &str, name: &str, replicas: u32, extra: &[&str]) -> Output {
    let replicas = format!("--replicas={replicas}");
    let mut args = vec!["create", "deployment", name, "-n", ns, IMAGE, &replicas];
    args.extend_from_slice(extra);
    c.kubectl(&args)
}

fn scale_patch(c: &Cluster, name: &str, replicas: u32) -> Output {
    let patch = format!(r#"{{"spec":{{"replicas":{replicas}}}}}"#);
    c.kubectl(&["patch", "deployment", name, "-n", "capped", "-p", &patch])
}

/// Waits until a server dry run of a 5-replica Deployment in `capped` gives `want`
/// (Ok: stderr of the allowed request; Err: the refusal).
fn dry_run_until(c: &Cluster, what: &str, want: impl Fn(&Result<String, String>) -> bool) {
    poll(what, Duration::from_secs(15), || {
        let out = deployment(c, "capped", "probe", 5, &["--dry-run=server"]);
        let got = if out.status.success() {
            Ok(stderr(&out))
        } else {
            Err(stderr(&out))
        };
        if want(&got) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

#[test]
fn validating_admission_policy() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "capped"]);
    c.ok(&["label", "namespace", "capped", "replicas=capped"]);
    c.ok(&["create", "namespace", "free"]);
    c.ok(&[
        "create",
        "configmap",
        "limits",
        "-n",
        "capped",
        "--from-literal=maxReplicas=3",
    ]);
    c.apply(&policy());

    // The policy alone binds nothing: 5 replicas allowed, and scaling up to 5.
    let (out, err) = ok(&c, deployment(&c, "capped", "big", 5, &[]));
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("deployment.apps/big created\n", "")
    );
    c.ok(&["delete", "deployment", "big", "-n", "capped"]);
    c.gone(&["get", "deployment", "big", "-n", "capped"]);
    ok(&c, deployment(&c, "capped", "small", 2, &[]));
    ok(&c, scale_patch(&c, "small", 5));
    ok(&c, scale_patch(&c, "small", 2));

    c.apply(&binding(&["Deny"]));
    dry_run_until(&c, "binding in effect", |r| r.is_err());
    let denial = format!(
        "ValidatingAdmissionPolicy '{POLICY}' with binding '{BINDING}' denied request: \
         replicas 5 exceed the limit of 3"
    );
    // kube: NewForbidden's message, then reason Invalid (422) with the message as a
    // fieldless cause. `kubectl create deployment` prints the message…
    let err = refused(deployment(&c, "capped", "big", 5, &[]));
    assert_eq!(
        err,
        format!(
            "error: failed to create deployment: deployments.apps \"big\" is forbidden: {denial}\n"
        )
    );
    c.gone(&["get", "deployment", "big", "-n", "capped"]);
    let (out, err) = ok(&c, deployment(&c, "capped", "small2", 2, &[]));
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("deployment.apps/small2 created\n", "")
    );
    // …the other commands a 422's causes (one, without a field).
    let err = refused(scale_patch(&c, "small", 5));
    assert_eq!(
        err,
        format!("The deployments \"small\" is invalid: : {denial}\n")
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deployment",
            "small",
            "-n",
            "capped",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    // Outside the binding's namespaces: allowed.
    ok(&c, deployment(&c, "free", "big", 5, &[]));

    // Params are read when the request comes: a raised limit lets 5 through.
    c.ok(&[
        "patch",
        "configmap",
        "limits",
        "-n",
        "capped",
        "-p",
        r#"{"data":{"maxReplicas":"5"}}"#,
    ]);
    dry_run_until(&c, "raised limit", |r| r.is_ok());
    c.ok(&[
        "patch",
        "configmap",
        "limits",
        "-n",
        "capped",
        "-p",
        r#"{"data":{"maxReplicas":"3"}}"#,
    ]);
    dry_run_until(&c, "lowered limit", |r| r.is_err());

    // Warn instead of Deny: allowed, kubectl prints the warning.
    c.apply(&binding(&["Warn"]));
    dry_run_until(&c, "Warn in effect", |r| {
        r.as_ref().is_ok_and(|e| !e.is_empty())
    });
    let (out, err) = ok(&c, deployment(&c, "capped", "big", 5, &[]));
    assert_eq!(out, "deployment.apps/big created\n");
    assert_eq!(
        err,
        format!(
            "Warning: Validation failed for ValidatingAdmissionPolicy '{POLICY}' with binding \
             '{BINDING}': replicas 5 exceed the limit of 3\n"
        )
    );
}

// ---------------------------------------------------------------------------------
// 3. An extension API server behind an APIService
// ---------------------------------------------------------------------------------

const GV: &str = "stuff.example.com/v1";
const APISERVICE: &str = "v1.stuff.example.com";
const WIDGETS: [(&str, &str); 2] = [("gizmo", "small"), ("gadget", "large")];

fn widget(name: &str, size: &str) -> Value {
    json!({
        "apiVersion": GV, "kind": "Widget",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "7", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"size": size},
    })
}

/// The extension server: discovery for stuff.example.com/v1 and two widgets in
/// `default`, as a WidgetList or as a Table when asked.
fn extension(seen: &Seen) -> Reply {
    let base = format!("/apis/{GV}");
    let path = seen.path.as_str();
    if path == base {
        return (
            200,
            json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV,
                "resources": [{"name": "widgets", "singularName": "widget", "namespaced": true,
                               "kind": "Widget", "verbs": ["get", "list"]}],
            }),
        );
    }
    if path == format!("{base}/namespaces/default/widgets") {
        if seen
            .header("accept")
            .unwrap_or_default()
            .contains("as=Table")
        {
            let rows: Vec<Value> = WIDGETS
                .iter()
                .map(|(n, s)| {
                    json!({"cells": [n, s], "object": {
                        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": {"name": n, "namespace": "default"}}})
                })
                .collect();
            return (
                200,
                json!({
                    "kind": "Table", "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": "7"},
                    "columnDefinitions": [
                        {"name": "Name", "type": "string", "format": "name", "description": "Name of the widget", "priority": 0},
                        {"name": "Size", "type": "string", "format": "", "description": "How big it is", "priority": 0},
                    ],
                    "rows": rows,
                }),
            );
        }
        let items: Vec<Value> = WIDGETS.iter().map(|(n, s)| widget(n, s)).collect();
        return (
            200,
            json!({"apiVersion": GV, "kind": "WidgetList", "metadata": {"resourceVersion": "7"}, "items": items}),
        );
    }
    for (n, s) in WIDGETS {
        if path == format!("{base}/namespaces/default/widgets/{n}") {
            return (200, widget(n, s));
        }
    }
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
               "message": format!("{path} not found")}),
    )
}

fn apiservice(port: u16, ca_pem: &str) -> String {
    json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {
            "group": "stuff.example.com", "version": "v1",
            "service": {"namespace": "default", "name": "stuff-api", "port": port},
            "caBundle": b64(ca_pem),
            "groupPriorityMinimum": 1000, "versionPriority": 15,
        },
    })
    .to_string()
}

/// The APIService's Available condition: (status, reason, message).
fn available(c: &Cluster) -> (String, String, String) {
    let out = c.ok(&["get", "apiservice", APISERVICE, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let cond = v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
        .cloned()
        .unwrap_or(Value::Null);
    let s = |k: &str| cond[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

fn api_resources_row(c: &Cluster) -> Option<String> {
    c.ok(&["api-resources"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some("widgets"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The extension server, the ExternalName Service `default/stuff-api` for it and the
/// APIService, Available.
fn extension_cluster() -> (Cluster, TestServer) {
    let c = Cluster::start();
    let ca = c.ok(&[
        "get",
        "configmap",
        "-n",
        "kube-system",
        "extension-apiserver-authentication",
        "-o",
        "jsonpath={.data.requestheader-client-ca-file}",
    ]);
    let file = std::fs::read_to_string(c.data_dir().join("tls/request-header-ca.crt")).unwrap();
    assert_eq!(ca.trim(), file.trim());
    let cluster_ca = std::fs::read_to_string(c.data_dir().join("tls/ca.crt")).unwrap();
    assert_ne!(ca.trim(), cluster_ca.trim(), "a CA of its own");
    let ext = TestServer::start(&["stuff-api.default.svc"], Some(&ca), extension);
    c.apply(&external_name("default", "stuff-api"));
    // Not served before the APIService exists.
    let err = c.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    assert_eq!(api_resources_row(&c), None);

    c.apply(&apiservice(ext.port, &ext.ca_pem));
    poll("APIService available", Duration::from_secs(20), || {
        let a = available(&c);
        (a.0 == "True").then_some(()).ok_or(format!("{a:?}"))
    });
    (c, ext)
}

#[test]
fn extension_api_server() {
    let (c, mut ext) = extension_cluster();
    assert_eq!(
        available(&c),
        ("True".into(), "Passed".into(), "all checks passed".into())
    );
    let out = c.ok(&["get", "apiservices", APISERVICE]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{out}");
    assert_eq!(
        lines[1][..3],
        [APISERVICE, "default/stuff-api", "True"],
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    let all = c.ok(&["get", "apiservices"]);
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3] == ["v1.apps", "Local", "True"]),
        "{all}"
    );

    // Discovery: kubectl api-resources (aggregated discovery) and the legacy documents.
    assert_eq!(
        api_resources_row(&c).as_deref(),
        Some("widgets stuff.example.com/v1 true Widget")
    );
    let groups: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis"])).unwrap();
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "stuff.example.com")
        .unwrap_or_else(|| panic!("no stuff.example.com in /apis: {groups}"));
    assert_eq!(group["preferredVersion"]["groupVersion"], GV);
    let list: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/apis/stuff.example.com/v1"])).unwrap();
    assert_eq!(list["resources"][0]["name"], "widgets");
    // The group's APIGroup is the aggregator's own (the extension server has none).
    let g: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/apis/stuff.example.com"])).unwrap();
    assert_eq!(g["kind"], "APIGroup", "{g}");
    assert_eq!(g["name"], "stuff.example.com", "{g}");
    assert_eq!(
        g["versions"],
        json!([{"groupVersion": GV, "version": "v1"}]),
        "{g}"
    );

    // kubectl get: the extension server's table, as the admin.
    let admin = whoami(&c);
    let before = ext.seen().len();
    let out = c.ok(&["get", "widgets"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "SIZE"],
            vec!["gizmo", "small"],
            vec!["gadget", "large"]
        ],
        "{out}"
    );
    let got = c.ok(&["get", "widget", "gizmo", "-o", "jsonpath={.spec.size}"]);
    assert_eq!(got, "small");
    let seen: Vec<Seen> = ext.seen()[before..]
        .iter()
        .filter(|s| s.path.contains("/widgets"))
        .cloned()
        .collect();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for s in &seen {
        assert_eq!(s.header("x-remote-user"), Some(admin.as_str()), "{s:#?}");
        assert!(
            s.all("x-remote-group")
                .contains(&"system:masters".to_string()),
            "{s:#?}"
        );
        assert_eq!(s.header("authorization"), None, "{s:#?}");
        assert_eq!(s.client_cn.as_deref(), Some("system:auth-proxy"), "{s:#?}");
    }
    assert!(
        seen[0]
            .header("accept")
            .unwrap_or_default()
            .contains("as=Table"),
        "{:#?}",
        seen[0]
    );
    // The proxy's name is the one the ConfigMap allows; the discovery checks carry the
    // proxy certificate too.
    let allowed = c.ok(&[
        "get",
        "configmap",
        "-n",
        "kube-system",
        "extension-apiserver-authentication",
        "-o",
        "jsonpath={.data.requestheader-allowed-names}",
    ]);
    assert!(allowed.contains("\"system:auth-proxy\""), "{allowed}");
    let checks: Vec<Seen> = ext
        .seen()
        .into_iter()
        .filter(|s| s.path == format!("/apis/{GV}"))
        .collect();
    assert!(!checks.is_empty());
    assert!(
        checks
            .iter()
            .all(|s| s.client_cn.as_deref() == Some("system:auth-proxy"))
    );

    // Authorized here first: a service account without RBAC never reaches the server.
    let token = c.ok(&["create", "token", "default"]);
    let before = ext.seen().len();
    let out = c.kubectl_token(token.trim(), &["get", "widgets", "-n", "default"]);
    let err = refused(out);
    assert_eq!(
        err,
        "Error from server (Forbidden): widgets.stuff.example.com is forbidden: User \
         \"system:serviceaccount:default:default\" cannot list resource \"widgets\" in API \
         group \"stuff.example.com\" in the namespace \"default\"\n"
    );
    let after: Vec<Seen> = ext.seen()[before..]
        .iter()
        .filter(|s| s.path.contains("/widgets"))
        .cloned()
        .collect();
    assert!(after.is_empty(), "{after:#?}");

    // The extension server gone: Available False (FailedDiscoveryCheck) soon, the group
    // leaves discovery.
    ext.stop();
    let stopped = Instant::now();
    let (status, reason, message) = poll("APIService unavailable", Duration::from_secs(20), || {
        let a = available(&c);
        (a.0 == "False")
            .then_some(a.clone())
            .ok_or(format!("{a:?}"))
    });
    eprintln!(
        "unavailable after {:?}: {reason}: {message}",
        stopped.elapsed()
    );
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedDiscoveryCheck")
    );
    assert!(
        message.starts_with(&format!(
            "failing or missing response from https://localhost:{}/apis/{GV}: ",
            ext.port
        )),
        "{message}"
    );
    let out = c.ok(&["get", "apiservices", APISERVICE]);
    assert!(out.contains("False (FailedDiscoveryCheck)"), "{out}");
    let err = c.fails(&["get", "widgets"]);
    eprintln!("kubectl get widgets, extension server down: {err}");
}

/// Stops the extension server and waits for its APIService to be unavailable.
fn extension_gone(c: &Cluster, ext: &mut TestServer) {
    ext.stop();
    poll("APIService unavailable", Duration::from_secs(20), || {
        let a = available(c);
        (a.0 == "False").then_some(()).ok_or(format!("{a:?}"))
    });
}

/// Proxied requests and availability checks share one kept HTTP/2 connection to the
/// extension server, as kube-aggregator's pooled transport does: not a TLS handshake
/// per request.
#[test]
fn extension_requests_share_a_connection() {
    let (c, ext) = extension_cluster();
    let path = format!("/apis/{GV}/namespaces/default/widgets");
    let (conns, requests) = (ext.connections(), ext.seen().len());
    assert!(conns >= 1);
    for _ in 0..5 {
        let list: Value = serde_json::from_str(&c.ok(&["get", "--raw", &path])).unwrap();
        assert_eq!(list["kind"], "WidgetList");
    }
    let lists = ext.seen()[requests..]
        .iter()
        .filter(|s| s.path.ends_with("/widgets"))
        .count();
    assert_eq!(lists, 5);
    assert_eq!(ext.connections(), conns, "a connection per request");
}

/// kube-aggregator keeps routing an unavailable APIService's paths and answers them
/// `503 service unavailable` (handler_proxy.go).
#[test]
fn unavailable_apiservice_answers_503() {
    let (c, mut ext) = extension_cluster();
    let path = format!("/apis/{GV}/namespaces/default/widgets");
    let list: Value = serde_json::from_str(&c.ok(&["get", "--raw", &path])).unwrap();
    assert_eq!(list["kind"], "WidgetList");
    extension_gone(&c, &mut ext);
    let err = c.fails(&["get", "--raw", &path]);
    assert_eq!(
        err,
        "Error from server (ServiceUnavailable): the server is currently unable to handle \
         the request\n"
    );
}

/// `insecureSkipTLSVerify` (what metrics-server's own manifest uses): the extension
/// server's certificate is not checked. Without it and without a caBundle, the server's
/// unknown CA makes the APIService unavailable; with both set, kube's 422.
#[test]
fn insecure_apiservice_skips_the_certificate_check() {
    let (c, _ext) = extension_cluster();
    let port = _ext.port;
    let spec = |extra: Value| {
        let mut a: Value = serde_json::from_str(&apiservice(port, "")).unwrap();
        a["spec"].as_object_mut().unwrap().remove("caBundle");
        for (k, v) in extra.as_object().unwrap() {
            a["spec"][k] = v.clone();
        }
        a.to_string()
    };
    c.apply(&spec(json!({})));
    poll("unavailable without a CA", Duration::from_secs(20), || {
        let a = available(&c);
        (a.0 == "False"
            && a.2
                .contains("x509: certificate signed by unknown authority"))
        .then_some(())
        .ok_or(format!("{a:?}"))
    });
    c.apply(&spec(json!({"insecureSkipTLSVerify": true})));
    poll(
        "available without checking",
        Duration::from_secs(20),
        || {
            let a = available(&c);
            (a.0 == "True").then_some(()).ok_or(format!("{a:?}"))
        },
    );
    let list: Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        &format!("/apis/{GV}/namespaces/default/widgets"),
    ]))
    .unwrap();
    assert_eq!(list["kind"], "WidgetList");
    let both = spec(json!({"insecureSkipTLSVerify": true, "caBundle": b64("x")}));
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &both);
    let err = refused(out);
    assert!(
        err.contains("spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Divergences found on the way
// ---------------------------------------------------------------------------------

/// kube drops an emptied `metadata.annotations` (Go's `omitempty` on the map); skiff
/// keeps `{}` after `kubectl annotate … key-` removes the last annotation.
#[test]
fn emptied_annotations_are_dropped() {
    let c = Cluster::start();
    ok(&c, run(&c, "default", "p", &[]));
    c.ok(&["annotate", "pod", "p", "k=v"]);
    c.ok(&["annotate", "pod", "p", "k-"]);
    let p: Value = serde_json::from_str(&c.ok(&["get", "pod", "p", "-o", "json"])).unwrap();
    assert_eq!(p["metadata"].get("annotations"), None, "{}", p["metadata"]);
}

// ---------------------------------------------------------------------------------
// CRD conversion webhooks
// ---------------------------------------------------------------------------------

/// kube's example conversion: v1 `spec.hostPort: "host:port"` ⇄ v2 `spec.host` and
/// `spec.port`.
fn converter(seen: &Seen) -> Reply {
    let review = seen.json();
    let req = &review["request"];
    let desired = req["desiredAPIVersion"].as_str().unwrap_or("").to_string();
    let objects = req["objects"].as_array().cloned().unwrap_or_default();
    let converted: Vec<Value> = objects
        .into_iter()
        .map(|mut o| {
            let from = o["apiVersion"].as_str().unwrap_or("").to_string();
            if from.ends_with("/v1") && desired.ends_with("/v2") {
                let hp = o["spec"]["hostPort"].as_str().unwrap_or("").to_string();
                let (h, p) = hp.split_once(':').unwrap_or((hp.as_str(), ""));
                o["spec"] = json!({"host": h, "port": p});
            } else if from.ends_with("/v2") && desired.ends_with("/v1") {
                let (h, p) = (&o["spec"]["host"], &o["spec"]["port"]);
                let hp = format!("{}:{}", h.as_str().unwrap_or(""), p.as_str().unwrap_or(""));
                o["spec"] = json!({ "hostPort": hp });
            }
            o["apiVersion"] = json!(desired);
            o
        })
        .collect();
    let response =
        json!({"uid": req["uid"], "convertedObjects": converted, "result": {"status": "Success"}});
    (
        200,
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response}),
    )
}

fn remote_crd(port: u16, ca_pem: &str) -> String {
    let schema = |props: Value| json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}});
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "remotes.conv.example.com"},
        "spec": {
            "group": "conv.example.com", "scope": "Namespaced",
            "names": {"plural": "remotes", "singular": "remote", "kind": "Remote"},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": schema(json!({"hostPort": {"type": "string"}}))},
                {"name": "v2", "served": true, "storage": false,
                 "schema": schema(json!({"host": {"type": "string"}, "port": {"type": "string"}})),
                 "additionalPrinterColumns": [{"name": "Host", "type": "string", "jsonPath": ".spec.host"}]},
            ],
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"url": format!("https://localhost:{port}/convert"), "caBundle": b64(ca_pem)},
            }},
        },
    });
    crd.to_string()
}

/// What the conversion webhook was asked to convert into.
fn desired_versions(hook: &TestServer) -> Vec<String> {
    hook.seen()
        .iter()
        .filter(|s| s.path == "/convert")
        .map(|s| {
            s.json()["request"]["desiredAPIVersion"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn crd_conversion_webhook() {
    let c = Cluster::start();
    let mut hook = TestServer::start(&["localhost"], None, converter);
    c.apply(&remote_crd(hook.port, &hook.ca_pem));
    let (v1, v2) = ("remotes.v1.conv.example.com", "remotes.v2.conv.example.com");
    poll("the CRD established", Duration::from_secs(15), || {
        let out = c.kubectl(&["get", v2]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| stderr(&out))
    });
    assert!(desired_versions(&hook).is_empty(), "no object, no call");

    // Written in v2, stored in v1: the webhook converts on the way in.
    c.apply(r#"{"apiVersion": "conv.example.com/v2", "kind": "Remote", "metadata": {"name": "r1"}, "spec": {"host": "db.example", "port": "5432"}}"#);
    assert!(desired_versions(&hook).contains(&"conv.example.com/v1".to_string()));
    let stored = c.ok(&[
        "get",
        v1,
        "r1",
        "-o",
        "jsonpath={.apiVersion} {.spec.hostPort}",
    ]);
    assert_eq!(stored, "conv.example.com/v1 db.example:5432");

    // Read in v2 (one object, a list, a Table, a watch): converted on the way out.
    let calls = desired_versions(&hook).len();
    let one = c.ok(&[
        "get",
        v2,
        "r1",
        "-o",
        "jsonpath={.apiVersion} {.spec.host} {.spec.port}",
    ]);
    assert_eq!(one, "conv.example.com/v2 db.example 5432");
    assert!(desired_versions(&hook)[calls..].contains(&"conv.example.com/v2".to_string()));
    let list = c.ok(&["get", v2, "-o", "jsonpath={.items[*].spec.host}"]);
    assert_eq!(list, "db.example");
    let table = c.ok(&["get", v2]);
    assert!(
        table.contains("HOST") && table.contains("db.example"),
        "{table}"
    );
    let watch = c.ok(&[
        "get",
        "--raw",
        "/apis/conv.example.com/v2/namespaces/default/remotes?watch=1&timeoutSeconds=2",
    ]);
    assert!(watch.contains(r#""host":"db.example""#), "{watch}");

    // Patched in v2: the patch applies to the v2 shape, the result is stored in v1.
    c.ok(&[
        "patch",
        v2,
        "r1",
        "--type=merge",
        "-p",
        r#"{"spec":{"port":"6543"}}"#,
    ]);
    let stored = c.ok(&["get", v1, "r1", "-o", "jsonpath={.spec.hostPort}"]);
    assert_eq!(stored, "db.example:6543");

    // With the webhook gone, v2 fails as kube words it; v1 needs no conversion.
    hook.stop();
    let err = refused(c.kubectl(&["get", v2, "r1"]));
    assert!(
        err.contains("conversion webhook for conv.example.com/v1, Kind=Remote failed")
            && err.contains("connection refused"),
        "{err}"
    );
    c.ok(&["get", v1, "r1"]);
    c.ok(&["delete", v1, "r1"]);
}
