//! A `Store` wrapper that encrypts the values of the configured resources on the way
//! in and decrypts them on the way out (get, range, watch, conflicts, deletes), and
//! rewrites what an older key sealed (`rewrite_stale`) after a rotation.

use crate::Error;
use crate::config::{EncryptionConfiguration, Transformer};
use crate::providers::{Key, Kind};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::RwLock;
use skiff_store::{Error as StoreError, Event, KeyValue, RangeResult, Result, Revision, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

const ENCRYPTED: &[u8] = b"k8s:enc:";

/// Storage prefix → its transformer; shared, so a write clones no keys.
type Table = Arc<Vec<(String, Arc<Transformer>)>>;

pub struct EncryptingStore {
    inner: Arc<dyn Store>,
    /// Shared with watch streams, which outlive any one configuration (a rotation
    /// reloads it under a running watch).
    table: Arc<RwLock<Table>>,
}

/// The storage prefix of `secrets` or `deployments.apps`.
fn storage_prefix(resource: &str) -> std::result::Result<String, Error> {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    skiff_types::registry::lookup(group, plural)
        .map(|ri| ri.prefix(None))
        .ok_or_else(|| Error::Config(format!("resources: unknown resource {resource:?}")))
}

fn table(config: &EncryptionConfiguration) -> std::result::Result<Table, Error> {
    let mut out = Vec::new();
    for (resource, t) in config.transformers()? {
        out.push((storage_prefix(&resource)?, Arc::new(t)));
    }
    Ok(Arc::new(out))
}

/// The plaintext of `value` stored at `key`: opened with the key whose prefix it
/// carries, as is when unencrypted and identity is a provider.
fn open_with(table: &Table, key: &str, value: Bytes) -> Result<Bytes> {
    let Some((_, t)) = table.iter().find(|(p, _)| key.starts_with(p.as_str())) else {
        return Ok(value);
    };
    if let Some(k) = t.keys().find(|k| value.starts_with(k.prefix())) {
        return k
            .open(&value, key.as_bytes())
            .map(Bytes::from)
            .map_err(|e| engine(e, key));
    }
    if value.starts_with(ENCRYPTED) {
        return Err(engine(
            Error::Crypto("no key of the configuration opens this value"),
            key,
        ));
    }
    if t.reads_plaintext() {
        Ok(value)
    } else {
        Err(engine(
            Error::Crypto("stored unencrypted, and identity is not a provider"),
            key,
        ))
    }
}

fn engine(e: Error, key: &str) -> StoreError {
    StoreError::Engine(format!("{key}: {e}"))
}

impl EncryptingStore {
    pub fn new(
        inner: Arc<dyn Store>,
        config: &EncryptionConfiguration,
    ) -> std::result::Result<Self, Error> {
        Ok(EncryptingStore {
            inner,
            table: Arc::new(RwLock::new(table(config)?)),
        })
    }

    /// Takes a new configuration into use (a rotation's steps).
    pub fn reload(&self, config: &EncryptionConfiguration) -> std::result::Result<(), Error> {
        *self.table.write() = table(config)?;
        Ok(())
    }

    fn transformer(&self, key: &str) -> Option<Arc<Transformer>> {
        let t = self.table.read();
        t.iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, t)| t.clone())
    }

    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes> {
        match self.transformer(key).as_ref().and_then(|t| t.write_key()) {
            Some(k) => k
                .seal(&value, key.as_bytes())
                .map(Bytes::from)
                .map_err(|e| engine(e, key)),
            None => Ok(value),
        }
    }

    fn open(&self, key: &str, value: Bytes) -> Result<Bytes> {
        open_with(&self.table.read(), key, value)
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.open(&kv.key, kv.value)?;
        Ok(kv)
    }

    fn open_err(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Conflict { current: Some(kv) } => match self.open_kv(kv) {
                Ok(kv) => StoreError::Conflict { current: Some(kv) },
                Err(e) => e,
            },
            e => e,
        }
    }

    /// Whether `value` at `key` is sealed with anything but the current write key.
    fn stale(&self, key: &str, value: &[u8]) -> bool {
        let Some(t) = self.transformer(key) else {
            return false;
        };
        match t.write_key() {
            Some(k) => !value.starts_with(k.prefix()),
            None => value.starts_with(ENCRYPTED),
        }
    }

    /// Every value of the configured resources re-sealed with the current write key
    /// (compare-and-swap, so a concurrent write, already sealed with it, wins). Returns
    /// how many were rewritten.
    pub async fn rewrite_stale(&self) -> Result<usize> {
        let prefixes: Vec<String> = self.table.read().iter().map(|(p, _)| p.clone()).collect();
        let mut rewritten = 0;
        for p in prefixes {
            let mut after: Option<String> = None;
            loop {
                let page = self.inner.range(&p, after.as_deref(), Some(500)).await?;
                for kv in &page.kvs {
                    if !self.stale(&kv.key, &kv.value) {
                        continue;
                    }
                    let plain = self.open(&kv.key, kv.value.clone())?;
                    let sealed = self.seal(&kv.key, plain)?;
                    match self.inner.update(&kv.key, sealed, kv.mod_revision).await {
                        Ok(_) => rewritten += 1,
                        Err(StoreError::Conflict { .. } | StoreError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                after = page.kvs.last().map(|kv| kv.key.clone());
                if !page.more {
                    break;
                }
            }
        }
        Ok(rewritten)
    }

    /// What the configured resources are sealed with now.
    pub async fn status(&self) -> Result<Status> {
        let table = self.table.read().clone();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (p, t) in table.iter() {
            let mut after: Option<String> = None;
            loop {
                let page = self.inner.range(p, after.as_deref(), Some(500)).await?;
                for kv in &page.kvs {
                    let label = t
                        .keys()
                        .find(|k| kv.value.starts_with(k.prefix()))
                        .map(|k| format!("{}:{}", k.kind.name(), k.name))
                        .unwrap_or_else(|| "identity".into());
                    *counts.entry(label).or_default() += 1;
                }
                after = page.kvs.last().map(|kv| kv.key.clone());
                if !page.more {
                    break;
                }
            }
        }
        let first = table.first().map(|(_, t)| t);
        Ok(Status {
            write_key: first
                .and_then(|t| t.write_key())
                .map(|k| (k.kind, k.name.clone())),
            keys: first
                .map(|t| t.keys().map(|k: &Key| (k.kind, k.name.clone())).collect())
                .unwrap_or_default(),
            stored_by_key: counts,
        })
    }
}

/// `skiff secrets-encrypt status`'s facts.
#[derive(Debug, Clone)]
pub struct Status {
    /// The key new writes are sealed with (None: identity first, i.e. plaintext).
    pub write_key: Option<(Kind, String)>,
    /// Every key that can open data, in the configuration's order.
    pub keys: Vec<(Kind, String)>,
    /// Stored values by `<provider>:<key name>`, or `identity` for plaintext.
    pub stored_by_key: BTreeMap<String, usize>,
}

#[async_trait::async_trait]
impl Store for EncryptingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.open_kv(kv))
            .transpose()
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<RangeResult> {
        let mut r = self.inner.range(prefix, start_after, limit).await?;
        r.kvs = r
            .kvs
            .into_iter()
            .map(|kv| self.open_kv(kv))
            .collect::<Result<_>>()?;
        Ok(r)
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let v = self.seal(key, value)?;
        self.inner.create(key, v).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let v = self.seal(key, value)?;
        self.inner
            .update(key, v, expected)
            .await
            .map_err(|e| self.open_err(e))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let (rev, kv) = self
            .inner
            .delete(key, expected)
            .await
            .map_err(|e| self.open_err(e))?;
        Ok((rev, self.open_kv(kv)?))
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event>>> {
        let stream = self.inner.watch(prefix, after).await?;
        let table = self.table.clone();
        Ok(stream
            .map(move |ev| {
                let mut ev = ev?;
                let t = table.read().clone();
                ev.kv.value = open_with(&t, &ev.kv.key, ev.kv.value)?;
                if let Some(p) = ev.prev.as_mut() {
                    p.value = open_with(&t, &p.key, std::mem::take(&mut p.value))?;
                }
                Ok(ev)
            })
            .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    fn write_failure(&self) -> Option<String> {
        self.inner.write_failure()
    }
}
