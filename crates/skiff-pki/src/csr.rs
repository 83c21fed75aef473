//! Certificate signing requests, as `certificates.k8s.io/v1` carries them: making one
//! (a node's agent asking for its client or serving certificate), reading one (what
//! validation, approvers and signers look at), and signing one with the cluster CA.

use crate::{ClusterPki, Error, Result, cert_err, dn};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;

/// What a CSR asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// A new ECDSA P-256 key and a PEM CSR for `CN=common_name, O=organizations` with the
/// given subject alternative names. Returns (key PEM, CSR PEM).
pub fn new_request(
    common_name: &str,
    organizations: &[&str],
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(common_name, organizations);
    p.subject_alt_names = dns_names
        .iter()
        .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName))
        .chain(ips.iter().map(|i| SanType::IpAddress(*i)))
        .collect();
    let csr = p.serialize_request(&key).map_err(cert_err)?;
    Ok((key.serialize_pem(), csr.pem().map_err(cert_err)?))
}

/// The DER of the first `CERTIFICATE REQUEST` PEM block, or why there is none (worded
/// as Kubernetes' CSR validation words it).
fn request_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let mut rd = pem;
    loop {
        match rustls_pemfile::read_one(&mut rd) {
            Ok(Some(rustls_pemfile::Item::Csr(der))) => return Ok(der.to_vec()),
            Ok(Some(_)) => continue,
            Ok(None) => return Err("PEM block type must be CERTIFICATE REQUEST".into()),
            Err(_) => return Err("PEM block type must be CERTIFICATE REQUEST".into()),
        }
    }
}

/// Parses a PEM CSR and checks its signature; the error is a sentence for a 422.
pub fn parse_request(pem: &[u8]) -> Result<CsrInfo, String> {
    use x509_parser::prelude::FromDer;
    let der = request_der(pem)?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: ECDSA verification failure".to_string())?;
    let subject = &csr.certification_request_info.subject;
    let text = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let mut info = CsrInfo {
        common_name: text(&mut subject.iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default(),
        organizations: text(&mut subject.iter_organization()),
        ..CsrInfo::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            use x509_parser::extensions::GeneralName as G;
            for n in &san.general_names {
                match n {
                    G::DNSName(d) => info.dns_names.push(d.to_string()),
                    G::RFC822Name(e) => info.emails.push(e.to_string()),
                    G::URI(u) => info.uris.push(u.to_string()),
                    G::IPAddress(b) => match b.len() {
                        4 => info
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("four bytes"))),
                        16 => info.ip_addresses.push(IpAddr::from(
                            <[u8; 16]>::try_from(*b).expect("sixteen bytes"),
                        )),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    Ok(info)
}

/// Key usages a CSR may ask for, by their `certificates.k8s.io` names.
fn key_usage(name: &str) -> Option<KeyUsagePurpose> {
    Some(match name {
        "digital signature" => KeyUsagePurpose::DigitalSignature,
        "content commitment" => KeyUsagePurpose::ContentCommitment,
        "key encipherment" => KeyUsagePurpose::KeyEncipherment,
        "data encipherment" => KeyUsagePurpose::DataEncipherment,
        "key agreement" => KeyUsagePurpose::KeyAgreement,
        "cert sign" => KeyUsagePurpose::KeyCertSign,
        "crl sign" => KeyUsagePurpose::CrlSign,
        "encipher only" => KeyUsagePurpose::EncipherOnly,
        "decipher only" => KeyUsagePurpose::DecipherOnly,
        _ => return None,
    })
}

fn ext_key_usage(name: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match name {
        "any" => ExtendedKeyUsagePurpose::Any,
        "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
        "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
        "code signing" => ExtendedKeyUsagePurpose::CodeSigning,
        "email protection" => ExtendedKeyUsagePurpose::EmailProtection,
        "timestamping" => ExtendedKeyUsagePurpose::TimeStamping,
        "ocsp signing" => ExtendedKeyUsagePurpose::OcspSigning,
        _ => return None,
    })
}

/// The usages `certificates.k8s.io/v1` knows (validation refuses others).
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

impl ClusterPki {
    /// Signs a CSR with the cluster CA: the subject and SANs it asks for, the given
    /// usages, valid from `not_before` to `not_after` (never a CA). Returns the PEM.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        usages: &[String],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<String> {
        let mut req = CertificateSigningRequestParams::from_pem(csr_pem).map_err(cert_err)?;
        let info = parse_request(csr_pem.as_bytes()).map_err(Error::Cert)?;
        let orgs: Vec<&str> = info.organizations.iter().map(String::as_str).collect();
        let p = &mut req.params;
        p.distinguished_name = dn(&info.common_name, &orgs);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = usages.iter().filter_map(|u| key_usage(u)).collect();
        if usages.iter().any(|u| u == "signing") {
            p.key_usages.push(KeyUsagePurpose::DigitalSignature);
        }
        p.extended_key_usages = usages.iter().filter_map(|u| ext_key_usage(u)).collect();
        p.not_before = not_before;
        p.not_after = not_after;
        p.use_authority_key_identifier_extension = true;
        let cert = req.signed_by(&self.issuer()?).map_err(cert_err)?;
        Ok(cert.pem())
    }
}

/// Whether a PEM certificate was signed by the CA `ca_pem` (a node's stored
/// certificate is worthless once the cluster has a new CA).
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(der), Ok(ca_der)) = (crate::pem_to_der(cert_pem), crate::pem_to_der(ca_pem)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&der),
        x509_parser::parse_x509_certificate(&ca_der),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Validity of a PEM certificate (the first in the bundle) as unix seconds.
pub fn validity_of(cert_pem: &str) -> Option<(i64, i64)> {
    let der = crate::pem_to_der(cert_pem).ok()?;
    let (_, c) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_is_signed_as_asked() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let (_key, csr) =
            new_request("system:node:n1", &["system:nodes"], &["n1".into()], &[ip]).unwrap();
        let info = parse_request(csr.as_bytes()).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, vec!["system:nodes"]);
        assert_eq!(info.dns_names, vec!["n1"]);
        assert_eq!(info.ip_addresses, vec![ip]);

        let d = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(d.path(), &crate::tests::sans()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let cert = pki
            .sign_request(
                &csr,
                &["digital signature".into(), "client auth".into()],
                now,
                now + time::Duration::hours(1),
            )
            .unwrap();
        let der = crate::pem_to_der(&cert).unwrap();
        let user = crate::user_from_client_cert(&der).unwrap();
        assert_eq!(user.username, "system:node:n1");
        assert!(user.groups.contains(&"system:nodes".to_string()));
        let (nb, na) = validity_of(&cert).unwrap();
        assert_eq!(na - nb, 3600);
        assert!(signed_by(&cert, &pki.ca_cert_pem));
        let other = tempfile::tempdir().unwrap();
        let other = ClusterPki::load_or_create(other.path(), &crate::tests::sans()).unwrap();
        assert!(!signed_by(&cert, &other.ca_cert_pem));
    }

    #[test]
    fn garbage_and_other_pem_blocks_are_refused() {
        assert_eq!(
            parse_request(b"hello").unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        let d = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(d.path(), &crate::tests::sans()).unwrap();
        assert!(parse_request(pki.ca_cert_pem.as_bytes()).is_err());
    }
}
