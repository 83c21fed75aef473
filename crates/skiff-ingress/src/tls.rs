//! The certificates the HTTPS listener presents: by SNI from the `tls` sections of skiff's
//! Ingresses (the Secrets they name, `kubernetes.io/tls`), wildcards covering one label as
//! for routing, and a self-signed default for any other name (as Traefik and
//! ingress-nginx answer). Swapped whole on every change; handshakes in flight keep theirs.

use crate::table::normalize_host;
use k8s_openapi::api::networking::v1::Ingress;
use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A Secret's `tls.crt` and `tls.key`, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// `namespace/name` → the pair, for every TLS Secret the node can read.
pub type Secrets = BTreeMap<String, KeyPair>;

#[derive(Debug)]
pub struct Certs {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Certs {
    pub fn only(default: Arc<CertifiedKey>) -> Certs {
        Certs {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// The certificates of `ingresses` (oldest first wins a host), and what could not be
    /// used, worded for an Event or a log line.
    pub fn build(
        ingresses: &[&Ingress],
        secrets: &Secrets,
        default: Arc<CertifiedKey>,
    ) -> (Certs, Vec<String>) {
        let mut certs = Certs::only(default);
        let mut problems = Vec::new();
        let mut parsed: HashMap<String, Option<Arc<CertifiedKey>>> = HashMap::new();
        for ingress in ingresses {
            let ns = ingress.metadata.namespace.clone().unwrap_or_default();
            let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
            for entry in tls.into_iter().flatten() {
                let Some(secret) = entry.secret_name.clone() else {
                    continue;
                };
                let id = format!("{ns}/{secret}");
                let key = parsed
                    .entry(id.clone())
                    .or_insert_with(|| match secrets.get(&id) {
                        None => {
                            problems.push(format!("secret \"{id}\" not found"));
                            None
                        }
                        Some(pair) => certified_key(pair)
                            .map_err(|e| problems.push(format!("secret \"{id}\": {e}")))
                            .ok(),
                    })
                    .clone();
                let Some(key) = key else { continue };
                for host in entry.hosts.iter().flatten() {
                    certs.insert(host, key.clone());
                }
            }
        }
        (certs, problems)
    }

    fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(domain) => self.wildcard.entry(domain.to_string()).or_insert(key),
            None => self.exact.entry(host).or_insert(key),
        };
    }

    /// The certificate for a TLS server name (none: the default).
    pub fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(normalize_host) else {
            return self.default.clone();
        };
        let wildcard = || {
            name.split_once('.')
                .and_then(|(_, domain)| self.wildcard.get(domain))
        };
        self.exact
            .get(name.as_ref())
            .or_else(wildcard)
            .unwrap_or(&self.default)
            .clone()
    }
}

/// The listener's resolver; [`CertResolver::set`] swaps the whole set.
#[derive(Debug)]
pub struct CertResolver(RwLock<Arc<Certs>>);

impl CertResolver {
    pub fn new(certs: Certs) -> Arc<CertResolver> {
        Arc::new(CertResolver(RwLock::new(Arc::new(certs))))
    }

    pub fn set(&self, certs: Certs) {
        *self.0.write() = Arc::new(certs);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.0.read().clone();
        Some(certs.for_name(hello.server_name()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.crt holds no certificate")]
    NoCertificate,
    #[error("tls.key holds no private key")]
    NoKey,
    #[error("{0}")]
    Invalid(String),
}

/// A Secret's pair as rustls serves it (the whole chain in `tls.crt`).
pub fn certified_key(pair: &KeyPair) -> Result<Arc<CertifiedKey>, TlsError> {
    let bad = |e: &dyn std::fmt::Display| TlsError::Invalid(e.to_string());
    let chain = rustls_pemfile::certs(&mut pair.cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut pair.key_pem.as_slice())
        .map_err(|e| bad(&e))?
        .ok_or(TlsError::NoKey)?;
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&e))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| bad(&e))?;
    Ok(Arc::new(ck))
}

/// A fresh self-signed certificate for names no Ingress covers.
pub fn default_certificate() -> Arc<CertifiedKey> {
    let generated = rcgen::generate_simple_self_signed(vec!["skiff-ingress.invalid".into()])
        .expect("rcgen makes a self-signed certificate");
    let pair = KeyPair {
        cert_pem: generated.cert.pem().into_bytes(),
        key_pem: generated.signing_key.serialize_pem().into_bytes(),
    };
    certified_key(&pair).expect("rcgen's certificate loads")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pair(names: &[&str]) -> KeyPair {
        let names = names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let g = rcgen::generate_simple_self_signed(names).unwrap();
        KeyPair {
            cert_pem: g.cert.pem().into_bytes(),
            key_pem: g.signing_key.serialize_pem().into_bytes(),
        }
    }

    fn ingress(tls: serde_json::Value) -> Ingress {
        serde_json::from_value(
            json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {"tls": tls}}),
        )
        .unwrap()
    }

    fn same(a: &Arc<CertifiedKey>, b: &Arc<CertifiedKey>) -> bool {
        a.cert[0] == b.cert[0]
    }

    #[test]
    fn names_pick_their_secret_and_others_the_default() {
        let mut secrets = Secrets::new();
        secrets.insert("d/a".into(), pair(&["a.example"]));
        secrets.insert("d/w".into(), pair(&["*.w.example"]));
        secrets.insert(
            "d/broken".into(),
            KeyPair {
                cert_pem: b"nope".to_vec(),
                key_pem: b"nope".to_vec(),
            },
        );
        let i = ingress(json!([
            {"hosts": ["a.example"], "secretName": "a"},
            {"hosts": ["*.w.example"], "secretName": "w"},
            {"hosts": ["b.example"], "secretName": "broken"},
            {"hosts": ["c.example"], "secretName": "missing"},
        ]));
        let default = default_certificate();
        let (certs, problems) = Certs::build(&[&i], &secrets, default.clone());
        let a = certified_key(&secrets["d/a"]).unwrap();
        let w = certified_key(&secrets["d/w"]).unwrap();
        assert!(same(&certs.for_name(Some("A.example")), &a));
        assert!(same(&certs.for_name(Some("x.w.example")), &w));
        assert!(same(&certs.for_name(Some("x.y.w.example")), &default));
        assert!(same(&certs.for_name(Some("b.example")), &default));
        assert!(same(&certs.for_name(None), &default));
        assert_eq!(
            problems,
            vec![
                "secret \"d/broken\": tls.crt holds no certificate".to_string(),
                "secret \"d/missing\" not found".to_string(),
            ]
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let a = pair(&["a"]);
        let b = pair(&["b"]);
        let mixed = KeyPair {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(matches!(certified_key(&mixed), Err(TlsError::Invalid(_))));
    }
}
