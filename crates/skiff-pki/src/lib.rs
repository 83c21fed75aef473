//! The cluster's PKI and authentication building blocks: a CA generated on first start,
//! the API server's serving certificate, the admin client certificate, the agent join
//! token, the kubeconfig, and turning a verified client certificate or a bearer token
//! into a user.
//!
//! Keys are ECDSA P-256: accepted by Go's crypto/tls (kubectl, client-go) and rustls.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod csr;
mod jwt;
pub mod private;
pub use jwt::ServiceAccountKey;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// Reading or writing a file under the data dir failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate: {0}")]
    Cert(String),
    /// Building the TLS configuration failed.
    #[error("tls: {0}")]
    Tls(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn cert_err(e: impl std::fmt::Display) -> Error {
    Error::Cert(e.to_string())
}

/// Names and addresses the serving certificate must cover.
#[derive(Debug, Clone, Default)]
pub struct ServingSans {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingSans {
    /// Loopback, the in-cluster names of the API, the first service IP, the host name and
    /// the host's addresses, plus `extra` (names or IPs).
    pub fn default_for_host(extra: &[String]) -> Self {
        let mut dns: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut ips: Vec<IpAddr> = vec![
            IpAddr::from([127, 0, 0, 1]),
            "::1".parse().expect("ipv6 loopback"),
            IpAddr::from([10, 43, 0, 1]),
        ];
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim();
            if !h.is_empty() {
                dns.push(h.to_string());
            }
        }
        ips.extend(host_addresses());
        for e in extra {
            match e.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(e.clone()),
            }
        }
        dns.sort();
        dns.dedup();
        ips.sort();
        ips.dedup();
        ServingSans { dns, ips }
    }

    fn covered_by(&self, cert_pem: &str) -> bool {
        let Ok(der) = pem_to_der(cert_pem) else {
            return false;
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            return false;
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return false;
        };
        let mut have_dns = Vec::new();
        let mut have_ips = Vec::new();
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => have_dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        have_ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        have_ips.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
        self.dns.iter().all(|d| have_dns.contains(d))
            && self.ips.iter().all(|i| have_ips.contains(i))
    }
}

/// The host's non-loopback IPv4 addresses, from the kernel's routing table view
/// (`/proc/net/fib_trie`), so no extra crate or command is needed.
/// The machine's primary IPv4 address, as kube-apiserver and kubelet choose it: the
/// address of the default route's interface, else the first up, non-loopback interface
/// that is not one of skiff's own (the pod bridge, the VXLAN device, pods' veths).
pub fn primary_ipv4() -> Option<std::net::Ipv4Addr> {
    use nix::net::if_::InterfaceFlags;
    let default_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| {
            t.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
            })
        });
    let ours = |n: &str| n.starts_with("skiff") || n.starts_with("veth") || n.starts_with("cni");
    let candidates: Vec<(String, std::net::Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| {
            a.flags.contains(InterfaceFlags::IFF_UP)
                && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|a| {
            let ip = a.address.as_ref()?.as_sockaddr_in()?.ip();
            Some((a.interface_name, ip))
        })
        .collect();
    default_iface
        .and_then(|d| candidates.iter().find(|(n, _)| *n == d))
        .or_else(|| candidates.iter().find(|(n, _)| !ours(n)))
        .map(|(_, ip)| *ip)
}

pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let lines: Vec<&str> = trie.lines().collect();
    for w in lines.windows(2) {
        // "|-- 192.168.1.5" followed by "/32 host LOCAL" marks a local address.
        if w[1].contains("/32 host LOCAL")
            && let Some(ip) = w[0]
                .trim()
                .trim_start_matches("|--")
                .trim()
                .parse::<IpAddr>()
                .ok()
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

pub(crate) fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let mut rd = pem.as_bytes();
    match rustls_pemfile::certs(&mut rd).next() {
        Some(Ok(c)) => Ok(c.to_vec()),
        _ => Err(Error::Cert("no certificate in PEM".into())),
    }
}

/// Everything the control plane needs to speak TLS and mint identities.
pub struct ClusterPki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// The API server's identity towards node agents (logs, exec, port-forward).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
    pub join_token: String,
    /// Signs and verifies ServiceAccount tokens (`tls/service-account.key`).
    pub service_account_key: Arc<ServiceAccountKey>,
    /// The request-header CA (`tls/request-header-ca.*`, k3s' names): extension API
    /// servers trust requests proxied to them only with a client certificate it signed.
    /// A CA of its own, so no cluster client certificate can pose as the proxy.
    pub request_header_ca_pem: String,
    /// The API server's identity when it proxies to an extension API server.
    pub proxy_client_cert_pem: String,
    pub proxy_client_key_pem: String,
    pub dir: PathBuf,
}

/// The common name of the proxy's client certificate (`requestheader-allowed-names`).
pub const PROXY_CLIENT_CN: &str = "system:auth-proxy";

/// The common name of the API server's client certificate towards node agents; agents
/// serve their streaming endpoint to this identity only.
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    write_private(path, contents.as_bytes()).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // Back-date a little for clocks that disagree by a few minutes.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
}

pub(crate) fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d.push(DnType::CommonName, cn);
    d
}

fn client_cert(
    common_name: &str,
    organizations: &[&str],
    validity_days: u32,
    issuer: &Issuer<'static, KeyPair>,
) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(common_name, organizations);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut p, validity_days as i64);
    let cert = p.signed_by(&key, issuer).map_err(cert_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether `cert_pem` names `ca_pem`'s subject as its issuer (a joined server's
/// request-header CA replaces the one it made itself).
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let der = |pem: &str| {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .and_then(|c| c.ok())
    };
    let (Some(c), Some(ca)) = (der(cert_pem), der(ca_pem)) else {
        return false;
    };
    match (
        x509_parser::parse_x509_certificate(&c),
        x509_parser::parse_x509_certificate(&ca),
    ) {
        (Ok((_, c)), Ok((_, ca))) => c.issuer() == ca.subject(),
        _ => false,
    }
}

/// `<dir>/<name>.crt|.key`, made as a self-signed CA when missing.
fn load_or_create_ca(dir: &Path, name: &str, cn: &str) -> Result<(String, String)> {
    let (crt, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if let (Some(c), Some(k)) = (read(&crt)?, read(&key_path)?) {
        return Ok((c, k));
    }
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, &[]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, 3650);
    let cert = p.self_signed(&key).map_err(cert_err)?;
    let (c, k) = (cert.pem(), key.serialize_pem());
    write(&crt, &c)?;
    write(&key_path, &k)?;
    Ok((c, k))
}

impl ClusterPki {
    /// The request-header CA and the proxy's client certificate it signs.
    fn load_proxy_client(&mut self, dir: &Path) -> Result<()> {
        let (ca, ca_key) = load_or_create_ca(dir, "request-header-ca", "skiff-request-header-ca")?;
        let (crt, key) = (
            dir.join("client-auth-proxy.crt"),
            dir.join("client-auth-proxy.key"),
        );
        let (c, k) = match (read(&crt)?, read(&key)?) {
            (Some(c), Some(k)) if signed_by(&c, &ca) => (c, k),
            _ => {
                let issuer =
                    Issuer::from_ca_cert_pem(&ca, KeyPair::from_pem(&ca_key).map_err(cert_err)?)
                        .map_err(cert_err)?;
                let (c, k) = client_cert(PROXY_CLIENT_CN, &[], 3650, &issuer)?;
                write(&crt, &c)?;
                write(&key, &k)?;
                (c, k)
            }
        };
        self.request_header_ca_pem = ca;
        self.proxy_client_cert_pem = c;
        self.proxy_client_key_pem = k;
        Ok(())
    }

    /// Loads `<data_dir>/tls/*` and `<data_dir>/token`, generating what is missing. A serving
    /// certificate that lacks one of `sans` is re-issued (same CA).
    pub fn load_or_create(data_dir: &Path, sans: &ServingSans) -> Result<Self> {
        let dir = data_dir.join("tls");
        let (ca_cert_pem, ca_key_pem) = load_or_create_ca(&dir, "ca", "skiff-ca")?;
        let mut pki = ClusterPki {
            ca_cert_pem,
            ca_key_pem,
            serving_cert_pem: String::new(),
            serving_key_pem: String::new(),
            admin_cert_pem: String::new(),
            admin_key_pem: String::new(),
            kubelet_client_cert_pem: String::new(),
            kubelet_client_key_pem: String::new(),
            join_token: String::new(),
            service_account_key: Arc::new(ServiceAccountKey::load_or_create(
                &dir.join("service-account.key"),
            )?),
            request_header_ca_pem: String::new(),
            proxy_client_cert_pem: String::new(),
            proxy_client_key_pem: String::new(),
            dir: dir.clone(),
        };
        pki.load_proxy_client(&dir)?;
        match (
            read(&dir.join("serving.crt"))?,
            read(&dir.join("serving.key"))?,
        ) {
            (Some(c), Some(k)) if sans.covered_by(&c) => {
                pki.serving_cert_pem = c;
                pki.serving_key_pem = k;
            }
            _ => {
                let (c, k) = pki.issue_serving_cert(&sans.dns, &sans.ips)?;
                write(&dir.join("serving.crt"), &c)?;
                write(&dir.join("serving.key"), &k)?;
                pki.serving_cert_pem = c;
                pki.serving_key_pem = k;
            }
        }
        match (read(&dir.join("admin.crt"))?, read(&dir.join("admin.key"))?) {
            (Some(c), Some(k)) => {
                pki.admin_cert_pem = c;
                pki.admin_key_pem = k;
            }
            _ => {
                let (c, k) = pki.issue_client_cert("skiff-admin", &["system:masters"], 3650)?;
                write(&dir.join("admin.crt"), &c)?;
                write(&dir.join("admin.key"), &k)?;
                pki.admin_cert_pem = c;
                pki.admin_key_pem = k;
            }
        }
        match (
            read(&dir.join("kubelet-client.crt"))?,
            read(&dir.join("kubelet-client.key"))?,
        ) {
            (Some(c), Some(k)) => {
                pki.kubelet_client_cert_pem = c;
                pki.kubelet_client_key_pem = k;
            }
            _ => {
                let (c, k) = pki.issue_client_cert(KUBELET_CLIENT_CN, &["system:masters"], 3650)?;
                write(&dir.join("kubelet-client.crt"), &c)?;
                write(&dir.join("kubelet-client.key"), &k)?;
                pki.kubelet_client_cert_pem = c;
                pki.kubelet_client_key_pem = k;
            }
        }
        let token_path = data_dir.join("token");
        pki.join_token = match read(&token_path)? {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let bytes: [u8; 24] = rand::random();
                let t = format!(
                    "skiff-{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                );
                write(&token_path, &t)?;
                t
            }
        };
        Ok(pki)
    }

    pub(crate) fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.ca_key_pem).map_err(cert_err)?;
        Issuer::from_ca_cert_pem(&self.ca_cert_pem, key).map_err(cert_err)
    }

    /// A client certificate: CN = user name, O = groups.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
        validity_days: u32,
    ) -> Result<(String, String)> {
        client_cert(common_name, organizations, validity_days, &self.issuer()?)
    }

    /// A serving certificate signed by the cluster CA (the API server's, or an agent's).
    pub fn issue_serving_cert(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<(String, String)> {
        self.issue_for_names(dns_names, ips, &[ExtendedKeyUsagePurpose::ServerAuth], 825)
    }

    /// A certificate for both ends of a mutual-TLS link (an etcd member's peer port):
    /// server and client authentication, for these names and addresses.
    pub fn issue_peer_cert(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<(String, String)> {
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue_for_names(dns_names, ips, &both, 3650)
    }

    fn issue_for_names(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        usages: &[ExtendedKeyUsagePurpose],
        days: i64,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(
            dns_names.first().map(String::as_str).unwrap_or("skiff"),
            &[],
        );
        p.subject_alt_names = dns_names
            .iter()
            .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName))
            .chain(ips.iter().map(|i| SanType::IpAddress(*i)))
            .collect();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = usages.to_vec();
        validity(&mut p, days);
        let cert = p.signed_by(&key, &self.issuer()?).map_err(cert_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// TLS for the API: our chain, client certificates requested and verified against the
    /// CA when presented (anonymous TLS is allowed so bearer tokens work), h2 and http/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(pem_to_der(&self.ca_cert_pem)?.into())
            .map_err(|e| Error::Tls(e.to_string()))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;
        let mut chain = Vec::new();
        for pem in [&self.serving_cert_pem, &self.ca_cert_pem] {
            chain.push(pem_to_der(pem)?.into());
        }
        let mut rd = self.serving_key_pem.as_bytes();
        let key = rustls_pemfile::private_key(&mut rd)
            .map_err(|e| Error::Tls(e.to_string()))?
            .ok_or_else(|| Error::Tls("no private key in serving.key".into()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn private_key(pem: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>> {
    let mut rd = pem.as_bytes();
    rustls_pemfile::private_key(&mut rd)
        .map_err(|e| Error::Tls(e.to_string()))?
        .ok_or_else(|| Error::Tls("no private key in PEM".into()))
}

fn ca_roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pem_to_der(ca_pem)?.into())
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Arc::new(roots))
}

/// A serving certificate that can be replaced while serving (a node's, as it rotates):
/// new handshakes get the newest.
#[derive(Debug)]
pub struct RotatingCert(parking_lot::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl RotatingCert {
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<RotatingCert>> {
        Ok(Arc::new(RotatingCert(parking_lot::RwLock::new(
            certified_key(ca_pem, cert_pem, key_pem)?,
        ))))
    }

    pub fn set(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        *self.0.write() = certified_key(ca_pem, cert_pem, key_pem)?;
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for RotatingCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

fn certified_key(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let provider = rustls::crypto::ring::default_provider();
    let chain = vec![pem_to_der(cert_pem)?.into(), pem_to_der(ca_pem)?.into()];
    let key = provider
        .key_provider
        .load_private_key(private_key(key_pem)?)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, key)))
}

/// TLS for a node agent's endpoint: the serving certificate `cert` holds at each
/// handshake, and a client certificate from the cluster CA required of every connection
/// (checked for the API server's identity by the caller).
pub fn agent_server_config_rotating(
    ca_pem: &str,
    cert: Arc<RotatingCert>,
) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        ca_roots(ca_pem)?,
        provider.clone(),
    )
    .build()
    .map_err(|e| Error::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// TLS for the API server calling node agents: trusts the cluster CA only, presents the
/// kubelet-client certificate.
pub fn agent_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(ca_roots(ca_pem)?)
        .with_client_auth_cert(vec![pem_to_der(cert_pem)?.into()], private_key(key_pem)?)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// A client config that presents `cert_pem` but does not verify the server's
/// certificate (an APIService's `insecureSkipTLSVerify`, as kube-aggregator honours it;
/// the handshake's signatures are still checked, so the peer holds the key it shows).
pub fn insecure_client_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyServer(provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![pem_to_der(cert_pem)?.into()], private_key(key_pem)?)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate; checks only the handshake signatures.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A kubeconfig with everything embedded.
pub fn kubeconfig(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: skiff-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff-admin\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// Writes `contents` with mode 0600 via a temp file and rename, creating parent dirs.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Who a request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// From a client certificate already verified by rustls: CN is the user, O the groups.
pub fn user_from_client_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let username = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo {
        username,
        uid: String::new(),
        groups,
    })
}

/// Bearer-token authentication seam (ServiceAccount tokens plug in here later).
pub trait TokenAuthenticator: Send + Sync {
    fn authenticate(&self, token: &str) -> Option<UserInfo>;
}

/// The group a join (bootstrap) token authenticates into: it may only ask for a node
/// certificate, as kubeadm's bootstrap tokens.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// Bootstrap token users are `system:bootstrap:<token-id>`.
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";

/// The public half of a join token, as a bootstrap token's id: six characters that name
/// it in CSRs and audit logs without revealing it.
pub fn token_id(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref()[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// The agents' join token.
pub struct StaticTokenAuthenticator {
    token: String,
}

impl StaticTokenAuthenticator {
    pub fn new(token: &str) -> Self {
        StaticTokenAuthenticator {
            token: token.to_string(),
        }
    }
}

impl TokenAuthenticator for StaticTokenAuthenticator {
    fn authenticate(&self, token: &str) -> Option<UserInfo> {
        // Constant-time comparison: the token is a secret.
        let (a, b) = (self.token.as_bytes(), token.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        same.then(|| UserInfo {
            username: format!("{BOOTSTRAP_USER_PREFIX}{}", token_id(&self.token)),
            uid: String::new(),
            groups: vec![BOOTSTRAPPERS.into(), "system:authenticated".into()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn sans() -> ServingSans {
        ServingSans::default_for_host(&["skiff.test".into()])
    }

    #[test]
    fn creates_once_and_reloads() {
        let d = tempfile::tempdir().unwrap();
        let a = ClusterPki::load_or_create(d.path(), &sans()).unwrap();
        let b = ClusterPki::load_or_create(d.path(), &sans()).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        assert_eq!(a.join_token, b.join_token);
        for f in [
            "tls/ca.key",
            "tls/serving.key",
            "tls/admin.key",
            "tls/service-account.key",
            "token",
        ] {
            let mode = std::fs::metadata(d.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        // A new SAN re-issues the serving certificate only.
        let mut more = sans();
        more.dns.push("new.example".into());
        let c = ClusterPki::load_or_create(d.path(), &more).unwrap();
        assert_eq!(c.ca_cert_pem, a.ca_cert_pem);
        assert_ne!(c.serving_cert_pem, a.serving_cert_pem);
        assert!(more.covered_by(&c.serving_cert_pem));
    }

    #[test]
    fn admin_cert_maps_to_masters() {
        let d = tempfile::tempdir().unwrap();
        let p = ClusterPki::load_or_create(d.path(), &sans()).unwrap();
        let der = pem_to_der(&p.admin_cert_pem).unwrap();
        let u = user_from_client_cert(&der).unwrap();
        assert_eq!(u.username, "skiff-admin");
        assert_eq!(u.groups, ["system:masters", "system:authenticated"]);
    }

    #[test]
    fn kubeconfig_is_yaml_with_embedded_data() {
        let k = kubeconfig("https://127.0.0.1:6443", "CA", "CERT", "KEY");
        let v: serde_json::Value = serde_yaml_ng::from_str(&k).unwrap();
        assert_eq!(v["current-context"], "skiff");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            v["users"][0]["user"]["client-key-data"],
            base64::engine::general_purpose::STANDARD.encode("KEY")
        );
    }

    #[test]
    fn static_token() {
        let a = StaticTokenAuthenticator::new("skiff-abc");
        assert!(a.authenticate("skiff-abc").is_some());
        assert!(a.authenticate("skiff-abd").is_none());
        assert!(a.authenticate("").is_none());
    }

    async fn handshake(
        pki: &ClusterPki,
        client_cert: Option<(String, String)>,
    ) -> std::result::Result<Option<UserInfo>, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| user_from_client_cert(c.as_ref())),
            )
        });
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(pem_to_der(&pki.ca_cert_pem).unwrap().into())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let cfg = match client_cert {
            Some((c, k)) => {
                let key = rustls_pemfile::private_key(&mut k.as_bytes())
                    .unwrap()
                    .unwrap();
                b.with_client_auth_cert(vec![pem_to_der(&c).unwrap().into()], key)
                    .unwrap()
            }
            None => b.with_no_client_auth(),
        };
        let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let client = conn.connect(name, tcp).await;
        let res = server.await.unwrap();
        drop(client);
        res
    }

    #[tokio::test]
    async fn tls_with_and_without_client_certs() {
        let d = tempfile::tempdir().unwrap();
        let p = ClusterPki::load_or_create(d.path(), &sans()).unwrap();
        let admin = Some((p.admin_cert_pem.clone(), p.admin_key_pem.clone()));
        let u = handshake(&p, admin).await.unwrap().unwrap();
        assert_eq!(u.username, "skiff-admin");
        assert_eq!(handshake(&p, None).await.unwrap(), None);
        // A certificate from another CA is refused.
        let other_dir = tempfile::tempdir().unwrap();
        let other = ClusterPki::load_or_create(other_dir.path(), &sans()).unwrap();
        let foreign = Some((other.admin_cert_pem.clone(), other.admin_key_pem.clone()));
        assert!(handshake(&p, foreign).await.is_err());
    }
}
