//! Storage for the API server, shaped like etcd's data model so an etcd backend maps onto
//! it 1:1: one global revision incremented by every write, values addressed by key,
//! prefix range reads, create-if-absent, compare-and-swap on a key's mod revision,
//! watches from a revision, and compaction of history.
//!
//! Backends:
//! - [`SqliteStore`] (default): SQLite in WAL mode with `synchronous=FULL`. A single writer
//!   thread takes every queued write, applies the batch in one transaction and commits
//!   once (group commit), so many concurrent writers share one fsync. Why SQLite rather
//!   than redb: both are embedded and durable; SQLite's WAL gives concurrent readers
//!   while the writer commits, its file format and tooling (`sqlite3`) let users inspect
//!   and repair a cluster's state, and it is the store k3s users already know (kine).
//!   The numbers behind the choice are printed by `cargo run -p skiff-store --release
//!   --example bench` and recorded in the issue notes.
//! - [`EtcdStore`]: etcd v3, for clusters that outgrow one machine (several servers
//!   sharing an etcd cluster, or an etcd the user already runs).
//! - [`MemoryStore`]: the same semantics in memory, for unit tests of other crates.

mod etcd;
mod health;
pub mod history;
mod memory;
mod sqlite;
pub mod testing;

use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use etcd::{EtcdConfig, EtcdStore};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

pub type Revision = i64;

#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
    /// No change: every change under the watched prefix up to `revision` has been
    /// delivered (etcd's progress notification; `kv` is empty). A store whose revision
    /// moves with writes outside the prefix sends these so a reader waiting for a
    /// revision is not left waiting for an event that never comes.
    Progress,
}

/// One change. For a delete, `kv` is the deleted key with its last value and
/// `mod_revision` set to the delete's revision.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
    pub revision: Revision,
}

#[derive(Debug)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    /// Store revision the read saw.
    pub revision: Revision,
}

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The key does not exist (update, delete).
    #[error("key not found")]
    NotFound,
    /// Create of a key that exists.
    #[error("key already exists")]
    AlreadyExists,
    /// Compare-and-swap lost: the key's mod revision differs. Retryable after a re-read.
    #[error("revision conflict")]
    Conflict { current: Option<KeyValue> },
    /// History at or below `compact_revision` is gone; the caller must re-list.
    #[error("required revision has been compacted (compacted at {compact_revision})")]
    Compacted { compact_revision: Revision },
    /// The storage engine failed; not retryable by the caller.
    #[error("storage engine: {0}")]
    Engine(String),
    /// The storage cannot take writes now (its disk is full or read-only); reads still
    /// work, and writes will again once the cause is gone.
    #[error("storage cannot take writes: {0}")]
    Unavailable(String),
    /// The store is shutting down.
    #[error("store closed")]
    Closed,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DiskFull, ReadOnly, SystemIoFailure};
        match e.sqlite_error_code() {
            Some(DiskFull | ReadOnly | SystemIoFailure | CannotOpen) => {
                Error::Unavailable(e.to_string())
            }
            _ => Error::Engine(e.to_string()),
        }
    }
}

impl Error {
    /// The same failure again, for each caller of a failed batch.
    pub fn again(&self) -> Error {
        match self {
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            Error::Closed => Error::Closed,
            other => Error::Engine(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys starting with `prefix` in key order, strictly after `start_after`, at most `limit`.
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<RangeResult>;
    async fn count(&self, prefix: &str) -> Result<i64>;
    /// Create-if-absent; returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;
    /// Compare-and-swap on the key's mod revision.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<Revision>;
    /// Delete, optionally only at a given mod revision; returns the delete's revision and
    /// the deleted value.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)>;
    /// Every change under `prefix` after `after_revision`, then live changes, in order.
    async fn watch(
        &self,
        prefix: &str,
        after_revision: Revision,
    ) -> Result<BoxStream<'static, Result<Event>>>;
    async fn current_revision(&self) -> Result<Revision>;
    /// Drops history at or below `revision` (current values stay).
    async fn compact(&self, revision: Revision) -> Result<()>;
    async fn compacted_revision(&self) -> Result<Revision>;
    /// Why writes are failing, if one failed for want of storage and writes have not
    /// since succeeded for `health::HOLD`.
    fn write_failure(&self) -> Option<String> {
        None
    }
}

/// Copies every object under `/registry/` from one store to another (keys already in
/// `to` are kept); returns how many were copied. Revisions start afresh in `to`.
pub async fn copy_all(from: &dyn Store, to: &dyn Store) -> Result<usize> {
    let (mut after, mut n) = (None::<String>, 0);
    loop {
        let page = from
            .range("/registry/", after.as_deref(), Some(500))
            .await?;
        for kv in &page.kvs {
            match to.create(&kv.key, kv.value.clone()).await {
                Ok(_) => n += 1,
                Err(Error::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
        if !page.more {
            return Ok(n);
        }
        after = page.kvs.last().map(|k| k.key.clone());
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    // Empty prefix: every key. '\u{10FFFF}' sorts after any key we store.
    "\u{10FFFF}".to_string()
}

/// Result of [`bench_raw`].
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// `total` creates of `value_size`-byte values from `concurrency` tasks, straight on the
/// engine: the ceiling the API server's write path is compared against.
pub async fn bench_raw(
    store: Arc<dyn Store>,
    concurrency: usize,
    total: usize,
    value_size: usize,
) -> BenchResult {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let value = Bytes::from(vec![b'x'; value_size]);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let store = store.clone();
        let next = next.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let t = Instant::now();
                if store
                    .create(&format!("/bench/raw/{i:08}"), value.clone())
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed());
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = t0.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    BenchResult {
        ops_per_sec: all.len() as f64 / secs,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), "/registry/pods0");
        assert!(*"/registry/pods/zzz" < *prefix_end("/registry/pods/"));
        assert!(*"/registry/podsa" > *prefix_end("/registry/pods/"));
    }
}
