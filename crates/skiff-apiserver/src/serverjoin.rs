//! What a server joining an HA cluster fetches from one already in it, answered before
//! authentication (the caller has no identity yet), as k3s' `/cacerts` and
//! server-bootstrap endpoints:
//! - `GET /skiff/v1/cacerts`: the cluster CA certificate, to anyone. The joiner checks
//!   it against the hash its server token carries before it trusts this server.
//! - `GET /skiff/v1/server-bootstrap` with `Authorization: Bearer <server token>`: the
//!   CA's key, the ServiceAccount signing key, the agents' join token and this server's
//!   etcd client URL — everything that makes another server the same cluster.

use serde_json::json;
use skiff_types::{ApiError, StatusReason};

pub const CACERTS: &str = "/skiff/v1/cacerts";
pub const BOOTSTRAP: &str = "/skiff/v1/server-bootstrap";

/// What this server can hand to a joining server (only servers running an embedded
/// etcd member can be joined).
#[derive(Clone, Debug)]
pub struct Joinable {
    pub server_token: String,
    pub etcd_client_url: String,
}

/// The token's CA hash: sha256 of the CA certificate's PEM, hex.
pub fn ca_hash(ca_pem: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(ca_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A server token: `K10<CA hash>::server:<secret>`, k3s' format, so a joiner can tell
/// the cluster's CA from an impostor's before it sends the secret.
pub fn server_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", ca_hash(ca_pem))
}

/// The CA hash a token names, if it is a server token.
pub fn token_ca_hash(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("K10")?;
    let (hash, secret) = rest.split_once("::server:")?;
    (hash.len() == 64 && !secret.is_empty()).then_some(hash)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers the two paths; None for every other request.
pub fn serve(
    data_dir: &std::path::Path,
    joinable: Option<&Joinable>,
    path: &str,
    authorization: Option<&str>,
) -> Option<Result<serde_json::Value, ApiError>> {
    let tls = |f: &str| std::fs::read_to_string(data_dir.join("tls").join(f));
    match path {
        CACERTS => Some(
            tls("ca.crt")
                .map(|ca| json!({"ca.crt": ca}))
                .map_err(|e| ApiError::internal(e.to_string())),
        ),
        BOOTSTRAP => Some(bootstrap(data_dir, joinable, authorization, &tls)),
        _ => None,
    }
}

fn bootstrap(
    data_dir: &std::path::Path,
    joinable: Option<&Joinable>,
    authorization: Option<&str>,
    tls: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<serde_json::Value, ApiError> {
    let Some(j) = joinable else {
        return Err(ApiError::new(
            404,
            StatusReason::NotFound,
            "this server runs no etcd member of its own (--cluster-init): there is no cluster to join here",
        ));
    };
    let given = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), j.server_token.as_bytes()) {
        return Err(ApiError::new(
            401,
            StatusReason::Unauthorized,
            "server token rejected: use the token in the first server's <data-dir>/server-token",
        ));
    }
    let read = |f: &str| tls(f).map_err(|e| ApiError::internal(format!("{f}: {e}")));
    let token = std::fs::read_to_string(data_dir.join("token"))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json!({
        "ca.crt": read("ca.crt")?,
        "ca.key": read("ca.key")?,
        "service-account.key": read("service-account.key")?,
        "request-header-ca.crt": read("request-header-ca.crt")?,
        "request-header-ca.key": read("request-header-ca.key")?,
        "token": token.trim(),
        "etcd": j.etcd_client_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_tokens_carry_the_ca_hash() {
        let t = server_token("PEM", "s3cret");
        assert_eq!(token_ca_hash(&t), Some(ca_hash("PEM").as_str()));
        assert_eq!(token_ca_hash("skiff-abc"), None);
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
