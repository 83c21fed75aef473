//! The key that signs ServiceAccount tokens, and the tokens' JWS compact form.
//!
//! ES256 (ECDSA P-256), one of the algorithms Kubernetes accepts for
//! `--service-account-key-file`, signed and verified with `ring`, which rustls already
//! brings: `jsonwebtoken` would add a second crypto backend for three base64 segments.
//! The key id is Kubernetes' own: base64url of the SHA-256 of the public key's PKIX DER.

use crate::{Error, Result, read, write};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};
use std::path::Path;

/// SubjectPublicKeyInfo header of an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub struct ServiceAccountKey {
    pair: EcdsaKeyPair,
    public: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_err(e: impl std::fmt::Display) -> Error {
    Error::Cert(format!("service account key: {e}"))
}

impl ServiceAccountKey {
    /// `path` (PKCS#8 PEM), generated on first use.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if let Some(pem) = read(path)? {
            return Self::from_pem(&pem);
        }
        let key = rcgen::KeyPair::generate().map_err(key_err)?;
        let pem = key.serialize_pem();
        write(path, &pem)?;
        Self::from_pem(&pem)
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(key_err)?
            .ok_or_else(|| key_err("no private key in PEM"))?;
        let rng = SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der(), &rng)
                .map_err(|e| key_err(format!("not a PKCS#8 P-256 key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&public);
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(ServiceAccountKey {
            pair,
            public,
            kid,
            rng,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed token carrying `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(key_err)?;
        Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of a token this key signed, or None: any other algorithm, key id,
    /// shape or signature. Checking the claims themselves is the caller's.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header["alg"] != "ES256" || header.get("kid").is_some_and(|k| k != self.kid.as_str()) {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        let signing_input = &token[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(signing_input.as_bytes(), &sig)
            .ok()?;
        let claims: Value = serde_json::from_slice(&B64.decode(c).ok()?).ok()?;
        claims.is_object().then_some(claims)
    }

    /// The public key as a JSON Web Key Set, as `/openid/v1/jwks` serves it.
    pub fn jwks(&self) -> Value {
        // Uncompressed point: 0x04 || x (32) || y (32).
        let (x, y) = self.public[1..].split_at(32);
        json!({"keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": B64.encode(x), "y": B64.encode(y),
        }]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_rejects_tampering() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sa.key");
        let k = ServiceAccountKey::load_or_create(&path).unwrap();
        let again = ServiceAccountKey::load_or_create(&path).unwrap();
        assert_eq!(k.kid(), again.kid());
        let t = k
            .sign(&json!({"sub": "system:serviceaccount:default:default"}))
            .unwrap();
        assert_eq!(t.split('.').count(), 3);
        assert_eq!(
            again.verify(&t).unwrap()["sub"],
            "system:serviceaccount:default:default"
        );
        // Another claim set under the same signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged =
            B64.encode(json!({"sub": "system:serviceaccount:kube-system:admin"}).to_string());
        parts[1] = &forged;
        assert!(k.verify(&parts.join(".")).is_none());
        // A different key's token.
        let other = ServiceAccountKey::load_or_create(&d.path().join("other.key")).unwrap();
        assert_ne!(other.kid(), k.kid());
        assert!(
            k.verify(&other.sign(&json!({"sub": "x"})).unwrap())
                .is_none()
        );
        // alg none and garbage.
        let none = format!(
            "{}.{}.",
            B64.encode(json!({"alg": "none"}).to_string()),
            B64.encode("{}")
        );
        assert!(k.verify(&none).is_none());
        assert!(k.verify("a.b").is_none());
        assert!(k.verify("").is_none());
        let jwks = k.jwks();
        assert_eq!(jwks["keys"][0]["kid"], k.kid());
        assert_eq!(
            B64.decode(jwks["keys"][0]["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}
