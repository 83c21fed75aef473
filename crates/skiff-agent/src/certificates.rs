//! The node's identities, as kubelet's TLS bootstrapping and certificate manager keep
//! them: with no valid client certificate the agent makes a key and asks for
//! `CN=system:node:<name>, O=system:nodes` through a CertificateSigningRequest to
//! `kubernetes.io/kube-apiserver-client-kubelet`, authenticated by the join token (the
//! controller manager approves and signs it); from then on it is `system:node:<name>`,
//! and at a random point between 70 % and 90 % of the certificate's life it asks again,
//! as itself, for the next one. Its serving certificate (the endpoint the API server
//! calls for logs and exec) comes the same way from `kubernetes.io/kubelet-serving`,
//! for the node's name and InternalIP.
//!
//! The node's [`kube::Client`] is handed out at once: its requests wait until the first
//! certificate is there, and go out with the newest one after each rotation.

use crate::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, PostParams};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Where the API server is and how to trust it.
#[derive(Clone, Debug)]
pub struct Server {
    pub url: String,
    pub ca_pem: String,
}

/// How a client authenticates.
pub enum Auth<'a> {
    Token(&'a str),
    Cert { cert_pem: &'a str, key_pem: &'a str },
}

/// A client of `server` with the given credentials, over one HTTP/2 connection.
pub async fn client(server: &Server, auth: Auth<'_>) -> Result<kube::Client> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let user = match auth {
        Auth::Token(t) => format!("token: {t}"),
        Auth::Cert { cert_pem, key_pem } => format!(
            "client-certificate-data: {}\n    client-key-data: {}",
            b64(cert_pem),
            b64(key_pem)
        ),
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n    {user}\ncontexts:\n- name: skiff\n  context: {{cluster: skiff, user: node}}\ncurrent-context: skiff\n",
        server.url,
        b64(&server.ca_pem),
    );
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).map_err(other)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(other)?;
    Ok(skiff_kube::h2::client(cfg)?)
}

fn other(e: impl std::fmt::Display) -> crate::Error {
    std::io::Error::other(e.to_string()).into()
}

/// A certificate and its key, as kubelet keeps them: one PEM file, certificate first.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pair {
    /// The stored pair, if still valid and issued by the cluster's CA.
    fn load(path: &std::path::Path, ca_pem: &str) -> Option<Pair> {
        let text = std::fs::read_to_string(path).ok()?;
        let at = text.find("-----BEGIN PRIVATE KEY-----")?;
        let pair = Pair {
            cert_pem: text[..at].to_string(),
            key_pem: text[at..].to_string(),
        };
        let (_, not_after) = skiff_pki::csr::validity_of(&pair.cert_pem)?;
        let valid = not_after > chrono::Utc::now().timestamp()
            && skiff_pki::csr::signed_by(&pair.cert_pem, ca_pem);
        valid.then_some(pair)
    }

    fn save(&self, path: &std::path::Path) {
        let body = format!("{}{}", self.cert_pem, self.key_pem);
        if let Err(e) = skiff_pki::write_private(path, body.as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the node certificate");
        }
    }
}

/// What to ask a signer for.
#[derive(Clone, Debug)]
pub struct Ask {
    pub signer: &'static str,
    pub node: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usages: &'static [&'static str],
}

impl Ask {
    pub fn client(node: &str) -> Ask {
        Ask {
            signer: CLIENT_SIGNER,
            node: node.into(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usages: &["digital signature", "client auth"],
        }
    }

    pub fn serving(node: &str, ips: Vec<IpAddr>) -> Ask {
        Ask {
            signer: SERVING_SIGNER,
            node: node.into(),
            dns_names: vec![node.into()],
            ips,
            usages: &["digital signature", "server auth"],
        }
    }
}

/// Creates a CSR for `ask` and waits until it is issued, denied or failed.
pub async fn request(client: &kube::Client, ask: &Ask) -> Result<Pair> {
    let cn = format!("system:node:{}", ask.node);
    let (key_pem, csr_pem) =
        skiff_pki::csr::new_request(&cn, &["system:nodes"], &ask.dns_names, &ask.ips)
            .map_err(other)?;
    // Named after the request, as kubelet names its bootstrap CSR: thousands of nodes
    // asking at once never collide, as five random characters of `csr-` might.
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(csr_pem.as_bytes());
        d[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("csr-{digest}")),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr_pem.into_bytes()),
            signer_name: ask.signer.into(),
            usages: Some(ask.usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    api.create(&PostParams::default(), &csr).await?;
    let name = format!("csr-{digest}");
    tracing::info!(csr = %name, signer = ask.signer, "certificate requested");
    let mut wait = Duration::from_millis(50);
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
        let c = api.get(&name).await?;
        let status = c.status.unwrap_or_default();
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert_pem = String::from_utf8_lossy(&cert.0).to_string();
            return Ok(Pair { cert_pem, key_pem });
        }
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Denied" || c.type_ == "Failed")
        {
            return Err(other(format!(
                "certificate request {name} {}: {}",
                c.type_.to_lowercase(),
                c.message.clone().unwrap_or_default()
            )));
        }
    }
}

/// When to renew: a random point between 70 % and 90 % of the certificate's life, as
/// kubelet's certificate manager picks it (so a fleet does not renew at once).
pub fn renewal_at(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let life = (not_after - not_before) as f64;
    not_before + (life * (0.7 + 0.2 * jitter.clamp(0.0, 1.0))).round() as i64
}

fn sleep_until(unix: i64) -> Duration {
    let now = chrono::Utc::now().timestamp_millis();
    Duration::from_millis((unix * 1000 - now).max(0) as u64)
}

type Installer = Box<dyn Fn(Pair) -> BoxFuture<'static, ()> + Send + Sync>;

/// Which client asks for a certificate, told whether the one in use is still valid.
type Asker = Box<dyn Fn(bool) -> kube::Client + Send + Sync>;

/// Keeps a certificate: the stored one while valid, else a new one asked for through
/// `asker`, then a renewal at each deadline, handing each to `install`.
async fn keep(
    ask: Ask,
    ca_pem: String,
    store: Option<PathBuf>,
    asker: Asker,
    install: Installer,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut current = store.as_deref().and_then(|p| Pair::load(p, &ca_pem));
    let mut valid_until = None;
    loop {
        let pair = match current.take() {
            Some(p) => p,
            None => match obtain(&ask, &asker, valid_until, &mut shutdown).await {
                Some(p) => {
                    if let Some(path) = &store {
                        p.save(path);
                    }
                    p
                }
                None => return,
            },
        };
        let Some((nb, na)) = skiff_pki::csr::validity_of(&pair.cert_pem) else {
            return;
        };
        valid_until = Some(na);
        install(pair).await;
        let at = renewal_at(nb, na, rand::random::<f64>());
        tracing::info!(
            signer = ask.signer,
            renew_in_s = sleep_until(at).as_secs(),
            "certificate in use"
        );
        tokio::select! {
            _ = tokio::time::sleep(sleep_until(at)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Asks until issued (or shutdown), backing off between failures; `valid_until` is
/// when the certificate in use (if any) ends.
async fn obtain(
    ask: &Ask,
    asker: &Asker,
    valid_until: Option<i64>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Pair> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let valid = valid_until.is_some_and(|na| na > chrono::Utc::now().timestamp());
        match request(&asker(valid), ask).await {
            Ok(p) => return Some(p),
            Err(e) => {
                tracing::warn!(signer = ask.signer, error = %e, "no certificate yet; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The node's client, authenticated as `system:node:<node>`: bootstrapped with
/// `bootstrap` (the join token's client) unless `store` holds a valid certificate,
/// and renewed as itself.
pub fn node_client(
    server: Server,
    bootstrap: kube::Client,
    node: &str,
    store: Option<PathBuf>,
    shutdown: watch::Receiver<bool>,
) -> kube::Client {
    let (tx, rx) = watch::channel::<Option<kube::Client>>(None);
    let tx = Arc::new(tx);
    // Renewals as the node; the first certificate, or one after the node's has
    // expired (an agent long offline), with the join token, as kubelet falls back to
    // its bootstrap kubeconfig.
    let asker: Asker = {
        let rx = rx.clone();
        Box::new(move |valid| match rx.borrow().clone() {
            Some(node) if valid => node,
            _ => bootstrap.clone(),
        })
    };
    let ca_pem = server.ca_pem.clone();
    let install: Installer = Box::new(move |pair: Pair| {
        let (server, tx) = (server.clone(), tx.clone());
        Box::pin(async move {
            let auth = Auth::Cert {
                cert_pem: &pair.cert_pem,
                key_pem: &pair.key_pem,
            };
            match client(&server, auth).await {
                Ok(c) => {
                    tx.send_replace(Some(c));
                }
                Err(e) => tracing::error!(error = %e, "the node certificate cannot be used"),
            }
        })
    });
    tokio::spawn(keep(
        Ask::client(node),
        ca_pem,
        store,
        asker,
        install,
        shutdown,
    ));
    kube::Client::new(Current(rx), "default")
}

/// The node's serving certificate for its endpoint, once issued; renewed in place.
pub async fn serving(
    client: kube::Client,
    ca_pem: String,
    ask: Ask,
    store: Option<PathBuf>,
    shutdown: watch::Receiver<bool>,
) -> Option<Arc<skiff_pki::RotatingCert>> {
    let (tx, mut rx) = watch::channel::<Option<Arc<skiff_pki::RotatingCert>>>(None);
    let asker: Asker = Box::new(move |_| client.clone());
    let ca = ca_pem.clone();
    let install: Installer = Box::new(move |pair: Pair| {
        let current = tx.borrow().clone();
        let installed = match current {
            Some(rc) => rc.set(&ca_pem, &pair.cert_pem, &pair.key_pem).map(|()| rc),
            None => skiff_pki::RotatingCert::new(&ca_pem, &pair.cert_pem, &pair.key_pem),
        };
        match installed {
            Ok(rc) => {
                tx.send_replace(Some(rc));
            }
            Err(e) => tracing::error!(error = %e, "the serving certificate cannot be used"),
        }
        Box::pin(async {})
    });
    tokio::spawn(keep(ask, ca, store, asker, install, shutdown));
    rx.wait_for(Option::is_some).await.ok()?.clone()
}

/// Sends each request with the newest node client, once there is one.
#[derive(Clone)]
struct Current(watch::Receiver<Option<kube::Client>>);

impl tower::Service<http::Request<kube::client::Body>> for Current {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, kube::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), kube::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let mut rx = self.0.clone();
        Box::pin(async move {
            let client = match rx.wait_for(Option::is_some).await {
                Ok(c) => c.clone().expect("waited for a client"),
                Err(_) => {
                    return Err(kube::Error::Service(
                        "the node's credentials are gone".into(),
                    ));
                }
            };
            client.send(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_seventy_and_ninety_percent() {
        assert_eq!(renewal_at(0, 1000, 0.0), 700);
        assert_eq!(renewal_at(0, 1000, 1.0), 900);
        assert_eq!(renewal_at(100, 1100, 0.5), 900);
    }

    #[test]
    fn a_stored_pair_is_used_only_while_valid() {
        let d = tempfile::tempdir().unwrap();
        let pki = skiff_pki::ClusterPki::load_or_create(
            d.path(),
            &skiff_pki::ServingSans::default_for_host(&[]),
        )
        .unwrap();
        let (key, csr) =
            skiff_pki::csr::new_request("system:node:n", &["system:nodes"], &[], &[]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let sign = |nb, na| {
            pki.sign_request(&csr, &["client auth".into()], nb, na)
                .unwrap()
        };
        let path = d.path().join("pki/kubelet-client-current.pem");
        let valid = Pair {
            cert_pem: sign(now, now + time::Duration::hours(1)),
            key_pem: key.clone(),
        };
        valid.save(&path);
        assert!(Pair::load(&path, &pki.ca_cert_pem).is_some());
        let other = tempfile::tempdir().unwrap();
        let other = skiff_pki::ClusterPki::load_or_create(
            other.path(),
            &skiff_pki::ServingSans::default_for_host(&[]),
        )
        .unwrap();
        assert!(
            Pair::load(&path, &other.ca_cert_pem).is_none(),
            "another cluster's CA"
        );
        let expired = Pair {
            cert_pem: sign(
                now - time::Duration::hours(2),
                now - time::Duration::hours(1),
            ),
            key_pem: key,
        };
        expired.save(&path);
        assert!(Pair::load(&path, &pki.ca_cert_pem).is_none());
    }
}
