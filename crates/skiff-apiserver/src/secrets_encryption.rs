//! `skiff secrets-encrypt status|rotate|reencrypt`, served at
//! `/skiff/v1/secrets-encryption` (non-resource paths: cluster admins only). Rotation
//! of the generated configuration never leaves a stored value without its key: the new
//! key goes first in the file (new writes use it, old values still open), every value
//! is re-sealed with it, the watch cache catches up, and only then do the old keys go.
//! A crash at any step leaves a configuration that opens everything; rotating again
//! finishes the job.

use crate::cache::WatchCache;
use serde_json::{Value, json};
use skiff_encryption::config::{Keys, ProviderConfig, key_config, key_name};
use skiff_encryption::providers::{Kind, generate};
use skiff_encryption::{EncryptingStore, EncryptionConfiguration};
use skiff_types::ApiError;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Control {
    pub store: Arc<EncryptingStore>,
    /// The configuration file in use.
    pub path: PathBuf,
    /// Made by `--secrets-encryption` (skiff may rotate it), not the user's own.
    pub generated: bool,
    lock: tokio::sync::Mutex<()>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

impl Control {
    pub fn new(store: Arc<EncryptingStore>, path: PathBuf, generated: bool) -> Control {
        Control {
            store,
            path,
            generated,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn status(&self) -> Result<Value, ApiError> {
        let s = self.store.status().await.map_err(internal)?;
        let key = |(k, n): &(Kind, String)| json!({"type": k.label(), "name": n});
        Ok(json!({
            "enabled": true,
            "generated": self.generated,
            "config": self.path.display().to_string(),
            "writeKey": s.write_key.as_ref().map(key),
            "keys": s.keys.iter().map(key).collect::<Vec<_>>(),
            "storedByKey": s.stored_by_key,
        }))
    }

    /// Re-seals everything not sealed with the current write key.
    pub async fn reencrypt(&self, cache: &WatchCache) -> Result<Value, ApiError> {
        let _one = self.lock.lock().await;
        let n = self.store.rewrite_stale().await.map_err(internal)?;
        cache.catch_up(&*self.store).await?;
        Ok(json!({"rewritten": n}))
    }

    pub async fn rotate(&self, cache: &WatchCache) -> Result<Value, ApiError> {
        if !self.generated {
            return Err(ApiError::bad_request(
                "rotate changes the configuration skiff generated for --secrets-encryption; with \
                 --encryption-provider-config, put the new key first in your file, restart, and run \
                 `skiff secrets-encrypt reencrypt`",
            ));
        }
        let _one = self.lock.lock().await;
        let mut cfg = EncryptionConfiguration::load(&self.path).map_err(internal)?;
        let new = generate(Kind::AesCbc, &key_name());
        let keys = aescbc_keys(&mut cfg)?;
        keys.insert(0, key_config(&new));
        self.save(&cfg)?;
        let rewritten = self.store.rewrite_stale().await.map_err(internal)?;
        // The watch cache has read every value an old key sealed before that key goes.
        cache.catch_up(&*self.store).await?;
        aescbc_keys(&mut cfg)?.truncate(1);
        self.save(&cfg)?;
        tracing::info!(key = %new.name, rewritten, "secrets encryption key rotated");
        Ok(
            json!({"rewritten": rewritten, "writeKey": {"type": Kind::AesCbc.label(), "name": new.name}}),
        )
    }

    fn save(&self, cfg: &EncryptionConfiguration) -> Result<(), ApiError> {
        cfg.save(&self.path).map_err(internal)?;
        self.store.reload(cfg).map_err(internal)
    }
}

/// The generated configuration's key list (its first provider).
fn aescbc_keys(
    cfg: &mut EncryptionConfiguration,
) -> Result<&mut Vec<skiff_encryption::config::KeyConfig>, ApiError> {
    match cfg
        .resources
        .first_mut()
        .and_then(|r| r.providers.first_mut())
    {
        Some(ProviderConfig {
            aescbc: Some(Keys { keys }),
            ..
        }) => Ok(keys),
        _ => Err(ApiError::internal(
            "the generated encryption configuration lost its aescbc provider",
        )),
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "secrets encryption ({})", self.path.display())
    }
}

/// `/skiff/v1/secrets-encryption[/rotate|/reencrypt]`; None for other paths.
pub async fn serve(
    control: Option<&Control>,
    cache: &WatchCache,
    method: &hyper::Method,
    segs: &[&str],
) -> Option<Result<Value, ApiError>> {
    let ["skiff", "v1", "secrets-encryption", rest @ ..] = segs else {
        return None;
    };
    let Some(c) = control else {
        return Some(Err(ApiError::bad_request(
            "secrets encryption is off: start the server with --secrets-encryption or \
             --encryption-provider-config",
        )));
    };
    Some(match (method.as_str(), rest) {
        ("GET", []) => c.status().await,
        ("POST", ["rotate"]) => c.rotate(cache).await,
        ("POST", ["reencrypt"]) => c.reencrypt(cache).await,
        _ => Err(ApiError::path_not_found()),
    })
}
