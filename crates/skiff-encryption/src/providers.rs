//! kube-apiserver's envelope-less providers, byte for byte: a stored value is
//! `k8s:enc:<provider>:v1:<key name>:` followed by the provider's output, so data written
//! by one reads back with the same EncryptionConfiguration anywhere.
//! - `aescbc`: AES-CBC with PKCS#7 padding, a random 16-byte IV before the ciphertext;
//! - `aesgcm`: AES-GCM, a random 12-byte nonce before the sealed data, the storage key as
//!   additional authenticated data (a value copied to another key does not open);
//! - `secretbox`: XSalsa20-Poly1305, a random 24-byte nonce before the sealed data;
//! - `identity`: the value as it is (and what reads data no other prefix matches).

use crate::Error;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use rand::RngCore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AesCbc,
    AesGcm,
    Secretbox,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::AesCbc => "aescbc",
            Kind::AesGcm => "aesgcm",
            Kind::Secretbox => "secretbox",
        }
    }

    /// As `skiff secrets-encrypt status` shows it (k3s' words).
    pub fn label(self) -> &'static str {
        match self {
            Kind::AesCbc => "AES-CBC",
            Kind::AesGcm => "AES-GCM",
            Kind::Secretbox => "SecretBox",
        }
    }

    fn key_lengths(self) -> &'static [usize] {
        match self {
            Kind::AesCbc | Kind::AesGcm => &[16, 24, 32],
            Kind::Secretbox => &[32],
        }
    }
}

/// One named key of one provider.
#[derive(Clone)]
pub struct Key {
    pub kind: Kind,
    pub name: String,
    secret: Vec<u8>,
    prefix: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} (secret hidden)", self.kind.name(), self.name)
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

impl Key {
    pub fn new(kind: Kind, name: &str, secret: Vec<u8>) -> Result<Key, Error> {
        if !kind.key_lengths().contains(&secret.len()) {
            return Err(Error::Config(format!(
                "{} key {name:?}: {} bytes, want {:?}",
                kind.name(),
                secret.len(),
                kind.key_lengths()
            )));
        }
        let prefix = format!("k8s:enc:{}:v1:{name}:", kind.name()).into_bytes();
        Ok(Key {
            kind,
            name: name.into(),
            secret,
            prefix,
        })
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// `plain` sealed for the storage key `ctx`, with this key's prefix.
    pub fn seal(&self, plain: &[u8], ctx: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = self.prefix.clone();
        match self.kind {
            Kind::AesCbc => {
                let iv = random::<16>();
                out.extend_from_slice(&iv);
                out.extend(cbc_encrypt(&self.secret, &iv, plain));
            }
            Kind::AesGcm => {
                let nonce = random::<12>();
                out.extend_from_slice(&nonce);
                out.extend(gcm(&self.secret, &nonce, plain, ctx, true)?);
            }
            Kind::Secretbox => {
                let nonce = random::<24>();
                out.extend_from_slice(&nonce);
                let b = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&self.secret)
                    .map_err(|_| Error::Crypto("secretbox key"))?;
                let sealed = b
                    .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plain)
                    .map_err(|_| Error::Crypto("secretbox seal"))?;
                out.extend(sealed);
            }
        }
        Ok(out)
    }

    /// The plaintext of `data` (which starts with this key's prefix).
    pub fn open(&self, data: &[u8], ctx: &[u8]) -> Result<Vec<u8>, Error> {
        let body = &data[self.prefix.len()..];
        match self.kind {
            Kind::AesCbc => {
                if body.len() < 32 || !body.len().is_multiple_of(16) {
                    return Err(Error::Crypto(
                        "aescbc: data is not a whole number of blocks",
                    ));
                }
                let (iv, ct) = body.split_at(16);
                cbc_decrypt(&self.secret, iv, ct)
            }
            Kind::AesGcm => {
                if body.len() < 12 + 16 {
                    return Err(Error::Crypto("aesgcm: data too short"));
                }
                let (nonce, ct) = body.split_at(12);
                gcm(&self.secret, nonce, ct, ctx, false)
            }
            Kind::Secretbox => {
                if body.len() < 24 + 16 {
                    return Err(Error::Crypto("secretbox: data too short"));
                }
                let (nonce, ct) = body.split_at(24);
                let b = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&self.secret)
                    .map_err(|_| Error::Crypto("secretbox key"))?;
                b.decrypt(crypto_secretbox::Nonce::from_slice(nonce), ct)
                    .map_err(|_| Error::Crypto("secretbox: the data does not open with this key"))
            }
        }
    }
}

fn cbc_encrypt(key: &[u8], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    macro_rules! enc {
        ($aes:ty) => {
            cbc::Encryptor::<$aes>::new_from_slices(key, iv)
                .expect("key length checked")
                .encrypt_padded_vec_mut::<Pkcs7>(plain)
        };
    }
    match key.len() {
        16 => enc!(aes::Aes128),
        24 => enc!(aes::Aes192),
        _ => enc!(aes::Aes256),
    }
}

fn cbc_decrypt(key: &[u8], iv: &[u8], ct: &[u8]) -> Result<Vec<u8>, Error> {
    macro_rules! dec {
        ($aes:ty) => {
            cbc::Decryptor::<$aes>::new_from_slices(key, iv)
                .expect("key length checked")
                .decrypt_padded_vec_mut::<Pkcs7>(ct)
        };
    }
    let r = match key.len() {
        16 => dec!(aes::Aes128),
        24 => dec!(aes::Aes192),
        _ => dec!(aes::Aes256),
    };
    r.map_err(|_| Error::Crypto("aescbc: bad padding (wrong key?)"))
}

fn gcm(key: &[u8], nonce: &[u8], msg: &[u8], aad: &[u8], seal: bool) -> Result<Vec<u8>, Error> {
    use aes_gcm::{AesGcm, aead::consts::U12};
    macro_rules! run {
        ($aes:ty) => {{
            let c = AesGcm::<$aes, U12>::new_from_slice(key)
                .map_err(|_| Error::Crypto("aesgcm key"))?;
            let n = aes_gcm::Nonce::<U12>::from_slice(nonce);
            let p = Payload { msg, aad };
            if seal {
                c.encrypt(n, p)
            } else {
                c.decrypt(n, p)
            }
        }};
    }
    let r = match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        _ => run!(aes::Aes256),
    };
    r.map_err(|_| Error::Crypto("aesgcm: the data does not open with this key"))
}

/// A new random key for `kind`.
pub fn generate(kind: Kind, name: &str) -> Key {
    let secret = random::<32>().to_vec();
    Key::new(kind, name, secret).expect("32 bytes fit every provider")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_round_trips_with_kubes_prefix() {
        for (kind, len) in [
            (Kind::AesCbc, 16),
            (Kind::AesCbc, 24),
            (Kind::AesCbc, 32),
            (Kind::AesGcm, 16),
            (Kind::AesGcm, 32),
            (Kind::Secretbox, 32),
        ] {
            let k = Key::new(kind, "k1", vec![7; len]).unwrap();
            for plain in [&b""[..], b"x", &[9u8; 16][..], &[1u8; 1000][..]] {
                let sealed = k.seal(plain, b"/registry/secrets/ns/a").unwrap();
                let want = format!("k8s:enc:{}:v1:k1:", kind.name());
                assert!(sealed.starts_with(want.as_bytes()));
                assert!(!sealed.windows(plain.len().max(1)).any(|w| w == plain) || plain.len() < 2);
                assert_eq!(k.open(&sealed, b"/registry/secrets/ns/a").unwrap(), plain);
            }
        }
    }

    #[test]
    fn wrong_keys_and_moved_values_do_not_open() {
        let a = Key::new(Kind::AesGcm, "k", vec![1; 32]).unwrap();
        let b = Key::new(Kind::AesGcm, "k", vec![2; 32]).unwrap();
        let sealed = a.seal(b"secret", b"/registry/secrets/ns/a").unwrap();
        assert!(b.open(&sealed, b"/registry/secrets/ns/a").is_err());
        // GCM binds the value to its storage key.
        assert!(a.open(&sealed, b"/registry/secrets/ns/b").is_err());
        let c = Key::new(Kind::AesCbc, "k", vec![1; 32]).unwrap();
        let d = Key::new(Kind::AesCbc, "k", vec![3; 32]).unwrap();
        let sealed = c.seal(b"secret value", b"").unwrap();
        assert_ne!(
            d.open(&sealed, b"").ok().as_deref(),
            Some(&b"secret value"[..])
        );
        assert!(Key::new(Kind::Secretbox, "k", vec![0; 16]).is_err());
        assert!(Key::new(Kind::AesCbc, "k", vec![0; 20]).is_err());
    }
}
