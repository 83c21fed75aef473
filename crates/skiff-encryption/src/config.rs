//! `EncryptionConfiguration` (`apiserver.config.k8s.io/v1`) as kube-apiserver reads it
//! from `--encryption-provider-config`, and the one skiff generates for
//! `--secrets-encryption` (an `aescbc` key, then `identity` so data written before
//! encryption was turned on still reads).

use crate::Error;
use crate::providers::{Key, Kind, generate};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    pub api_version: String,
    pub kind: String,
    pub resources: Vec<ResourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceConfig {
    pub resources: Vec<String>,
    pub providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<Keys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<Keys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<Keys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    /// Base64 of the key bytes.
    pub secret: String,
}

/// One provider of a resource's list, ready to use.
#[derive(Debug, Clone)]
pub enum Provider {
    Keys(Vec<Key>),
    Identity,
}

/// What one resource's data is written with (the first key of the first provider)
/// and read with (any of them).
#[derive(Debug, Clone)]
pub struct Transformer {
    pub providers: Vec<Provider>,
}

impl Transformer {
    pub fn write_key(&self) -> Option<&Key> {
        match self.providers.first()? {
            Provider::Keys(k) => k.first(),
            Provider::Identity => None,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.providers.iter().flat_map(|p| match p {
            Provider::Keys(k) => k.as_slice(),
            Provider::Identity => &[],
        })
    }

    pub fn reads_plaintext(&self) -> bool {
        self.providers
            .iter()
            .any(|p| matches!(p, Provider::Identity))
    }
}

impl EncryptionConfiguration {
    pub fn parse(text: &str) -> Result<EncryptionConfiguration, Error> {
        let c: EncryptionConfiguration =
            serde_yaml_ng::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        if c.kind != "EncryptionConfiguration"
            || !c.api_version.starts_with("apiserver.config.k8s.io/")
        {
            return Err(Error::Config(format!(
                "expected kind EncryptionConfiguration of apiserver.config.k8s.io, got {} {}",
                c.api_version, c.kind
            )));
        }
        c.transformers()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<EncryptionConfiguration, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Written whole to a new file and renamed over the old one (0600): a crash leaves
    /// either the old configuration or the new, never a torn one.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |e: std::io::Error| Error::Config(format!("writing {}: {e}", path.display()));
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(self).expect("serializable");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// `--secrets-encryption`'s configuration: a new aescbc key for Secrets, then identity.
    pub fn generated() -> EncryptionConfiguration {
        let key = generate(Kind::AesCbc, &key_name());
        EncryptionConfiguration {
            api_version: "apiserver.config.k8s.io/v1".into(),
            kind: "EncryptionConfiguration".into(),
            resources: vec![ResourceConfig {
                resources: vec!["secrets".into()],
                providers: vec![
                    ProviderConfig {
                        aescbc: Some(Keys {
                            keys: vec![key_config(&key)],
                        }),
                        ..ProviderConfig::default()
                    },
                    ProviderConfig {
                        identity: Some(serde_json::json!({})),
                        ..ProviderConfig::default()
                    },
                ],
            }],
        }
    }

    /// Each listed resource (`secrets`, `configmaps`, `deployments.apps`) with its
    /// transformer.
    pub fn transformers(&self) -> Result<Vec<(String, Transformer)>, Error> {
        let mut out = Vec::new();
        for (i, rc) in self.resources.iter().enumerate() {
            let mut providers = Vec::new();
            for (j, p) in rc.providers.iter().enumerate() {
                providers.push(
                    provider(p).map_err(|e| {
                        Error::Config(format!("resources[{i}].providers[{j}]: {e}"))
                    })?,
                );
            }
            if providers.is_empty() {
                return Err(Error::Config(format!(
                    "resources[{i}].providers: Required value"
                )));
            }
            for r in &rc.resources {
                if r.contains('*') {
                    return Err(Error::Config(format!(
                        "resources[{i}].resources: wildcard {r:?} is not supported by skiff"
                    )));
                }
                out.push((
                    r.clone(),
                    Transformer {
                        providers: providers.clone(),
                    },
                ));
            }
        }
        Ok(out)
    }
}

/// `aescbckey-<unix seconds>-<random>`: unique, so two keys never share a prefix.
pub fn key_name() -> String {
    use rand::RngCore;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("aescbckey-{secs}-{:08x}", rand::rng().next_u32())
}

pub fn key_config(k: &Key) -> KeyConfig {
    KeyConfig {
        name: k.name.clone(),
        secret: base64::engine::general_purpose::STANDARD.encode(k.secret()),
    }
}

fn provider(p: &ProviderConfig) -> Result<Provider, String> {
    let set = [
        p.aescbc.is_some(),
        p.aesgcm.is_some(),
        p.secretbox.is_some(),
        p.identity.is_some(),
        p.kms.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err("exactly one provider must be set".into());
    }
    if p.kms.is_some() {
        return Err("the kms provider is not supported by skiff".into());
    }
    if p.identity.is_some() {
        return Ok(Provider::Identity);
    }
    let (kind, keys) = match (&p.aescbc, &p.aesgcm, &p.secretbox) {
        (Some(k), _, _) => (Kind::AesCbc, k),
        (_, Some(k), _) => (Kind::AesGcm, k),
        (_, _, Some(k)) => (Kind::Secretbox, k),
        _ => unreachable!("one is set"),
    };
    if keys.keys.is_empty() {
        return Err(format!("{}.keys: Required value", kind.name()));
    }
    let mut out = Vec::new();
    for (i, k) in keys.keys.iter().enumerate() {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(&k.secret)
            .map_err(|e| format!("{}.keys[{i}].secret: {e}", kind.name()))?;
        out.push(
            Key::new(kind, &k.name, secret)
                .map_err(|e| format!("{}.keys[{i}]: {e}", kind.name()))?,
        );
    }
    Ok(Provider::Keys(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubes_example_configuration_reads() {
        let text = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
      - configmaps
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZQ==
            - name: key2
              secret: dGhpcyBpcyBwYXNzd29yZA==
      - aescbc:
          keys:
            - name: key3
              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==
      - secretbox:
          keys:
            - name: key4
              secret: YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=
      - identity: {}
"#;
        // key3's secret is 32 bytes only with its trailing newline; kube's example has it.
        let c = EncryptionConfiguration::parse(&text.replace(
            "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ))
        .unwrap();
        let t = c.transformers().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].1.write_key().unwrap().name, "key1");
        assert_eq!(t[0].1.keys().count(), 4);
        assert!(t[0].1.reads_plaintext());
    }

    #[test]
    fn bad_configurations_are_refused_with_the_field_named() {
        let two = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n    aescbc: {keys: [{name: a, secret: YQ==}]}\n";
        let e = EncryptionConfiguration::parse(two).unwrap_err().to_string();
        assert!(
            e.contains("resources[0].providers[0]: exactly one provider"),
            "{e}"
        );
        let short = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc: {keys: [{name: a, secret: YQ==}]}\n";
        let e = EncryptionConfiguration::parse(short)
            .unwrap_err()
            .to_string();
        assert!(e.contains("aescbc.keys[0]"), "{e}");
        let kms = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - kms: {name: x}\n";
        assert!(
            EncryptionConfiguration::parse(kms)
                .unwrap_err()
                .to_string()
                .contains("kms")
        );
    }

    #[test]
    fn the_generated_configuration_saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("enc.json");
        let c = EncryptionConfiguration::generated();
        c.save(&p).unwrap();
        let back = EncryptionConfiguration::load(&p).unwrap();
        let t = back.transformers().unwrap();
        assert_eq!(t[0].0, "secrets");
        assert_eq!(t[0].1.write_key().unwrap().kind, Kind::AesCbc);
        assert!(t[0].1.reads_plaintext());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
