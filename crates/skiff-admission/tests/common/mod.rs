//! A webhook server for tests: HTTPS on 127.0.0.1 with its own CA, answering
//! AdmissionReviews (or whatever an [`Answer`] says) by path, recording what it was
//! sent.

#![allow(dead_code)]

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use skiff_admission::{Attributes, Gvk, Gvr, Operation, Resolver, UserInfo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

pub type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// How the server answers a request: from its path and JSON body, the HTTP status and
/// JSON body sent back. Requests to `/sleep` wait 3 s first.
pub type Answer = fn(&str, &Value) -> (u16, Value);

pub struct Server {
    pub addr: SocketAddr,
    pub ca: Ca,
    pub calls: Calls,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// A server answering AdmissionReviews.
    pub async fn start() -> Server {
        Server::start_with(admission_answer).await
    }

    pub async fn start_with(answer: Answer) -> Server {
        let ca = ca("webhook-test-ca");
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["webhook.ns.svc".to_string(), "localhost".to_string()])
            .unwrap();
        let cert = p.signed_by(&key, &ca.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Calls = Arc::default();
        let c = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let calls = c.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| handle(req, calls.clone(), answer));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Server {
            addr,
            ca,
            calls,
            task,
        }
    }

    /// Paths called, in order.
    pub fn paths(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    calls: Calls,
    answer: Answer,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap();
    calls
        .lock()
        .unwrap()
        .push((format!("{path}?{query}"), review.clone()));
    if path == "/sleep" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let (status, out) = answer(&path, &review);
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap())
}

/// AdmissionReview answers: allowed, with a patch, a denial or warnings by path.
fn admission_answer(path: &str, review: &Value) -> (u16, Value) {
    let uid = review["request"]["uid"].clone();
    let mut resp = json!({"uid": uid, "allowed": true});
    match path {
        "/label" => {
            let patch = json!([{"op": "add", "path": "/metadata/labels/added", "value": "yes"}]);
            resp["patchType"] = json!("JSONPatch");
            resp["patch"] =
                json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        }
        "/deny" => {
            resp["allowed"] = json!(false);
            resp["status"] = json!({"message": "no pods today"});
        }
        "/deny-bare" => resp["allowed"] = json!(false),
        "/warn" => {
            resp["warnings"] = json!(["careful now"]);
            resp["auditAnnotations"] = json!({"checked": "yes"});
        }
        _ => {}
    }
    let out =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp});
    (200, out)
}

/// Resolves every Service to one address.
pub struct To(pub SocketAddr);

#[async_trait::async_trait]
impl Resolver for To {
    async fn resolve(&self, _: &str, _: &str, _: u16) -> Result<SocketAddr, String> {
        Ok(self.0)
    }
}

/// A port nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// One webhook of a configuration, calling `path` on the test server's Service.
pub fn hook(name: &str, path: &str, ca_pem: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {
            "service": {"namespace": "ns", "name": "webhook", "path": path, "port": 443},
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        },
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 10,
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

pub fn config(name: &str, hooks: Vec<Value>) -> Value {
    json!({"metadata": {"name": name}, "webhooks": hooks})
}

/// Creating pod `web` in `default`, labelled app=web.
pub fn pod_create() -> Attributes {
    Attributes {
        kind: Gvk::new("", "v1", "Pod"),
        resource: Gvr::new("", "v1", "pods"),
        sub_resource: String::new(),
        name: "web".into(),
        namespace: "default".into(),
        operation: Operation::Create,
        object: Some(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        })),
        old_object: None,
        options: Some(json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"})),
        dry_run: false,
        user: UserInfo {
            username: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        },
    }
}
