//! SQLite backend. Layout: `current` holds the live value of every key; `history` is the
//! revision log (one row per write, with the value; deletes carry the last value) that
//! watches replay and compaction trims; `meta` holds the compacted revision and the
//! revision counter as of the last compaction. The counter is not written per commit:
//! every write leaves its revision in `history`, so on open the revision is the larger
//! of the newest history row and the counter saved when compaction last trimmed it
//! (one B-tree page less per commit).
//!
//! One writer thread owns the write connection and commits queued writes in batches
//! (group commit): every caller's write is fsync'd (WAL, `synchronous=FULL`) before it is
//! answered, but a burst of N writers costs one fsync, not N. Readers use their own
//! connections, which WAL lets run beside the writer.

use crate::health::WriteHealth;
use crate::memory::tokio_stream_from;
use crate::{Error, Event, EventKind, KeyValue, RangeResult, Result, Revision, Store, prefix_end};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;
use tokio::sync::{broadcast, oneshot};

const MAX_BATCH: usize = 1024;

/// A read snapshot's revision: its newest history row, or the counter compaction saved
/// when it trimmed history.
const SNAPSHOT_REVISION: &str = "SELECT MAX(COALESCE((SELECT value FROM meta WHERE name = 'revision'), 0), COALESCE((SELECT MAX(rev) FROM history), 0))";

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

enum Done {
    Rev(Revision),
    Deleted(Revision, KeyValue),
    Unit,
}

struct Req {
    op: Op,
    resp: oneshot::Sender<Result<Done>>,
}

struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    revision: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Event>>,
    /// Whether writes fail for want of storage, held against flapping.
    write_health: Mutex<WriteHealth>,
}

pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<mpsc::Sender<Req>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn open_conn(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    // A small page cache per connection: the watch cache above us holds the hot data.
    c.pragma_update(None, "cache_size", -1024)?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Engine(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        // auto_vacuum must be chosen before the first table exists.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        drop(conn);
        let conn = open_conn(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS current (key TEXT PRIMARY KEY, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS history (rev INTEGER PRIMARY KEY, key TEXT NOT NULL, deleted INTEGER NOT NULL, create_rev INTEGER NOT NULL, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        let meta = |name: &str| -> Result<Option<i64>> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?)
        };
        let max_hist: Option<i64> =
            conn.query_row("SELECT MAX(rev) FROM history", [], |r| r.get(0))?;
        let revision = meta("revision")?.unwrap_or(0).max(max_hist.unwrap_or(0));
        let compacted = meta("compacted")?.unwrap_or(0);
        let (events, _) = broadcast::channel(1 << 16);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events,
            write_health: Mutex::new(WriteHealth::default()),
        });
        let (tx, rx) = mpsc::channel::<Req>();
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer_loop(conn, rx, s2))
            .map_err(|e| Error::Engine(format!("spawning writer: {e}")))?;
        Ok(SqliteStore {
            shared,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    async fn write(&self, op: Op) -> Result<Done> {
        let (resp, rx) = oneshot::channel();
        {
            let w = self.writer.lock();
            let w = w.as_ref().ok_or(Error::Closed)?;
            w.send(Req { op, resp }).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match shared.readers.lock().pop() {
                Some(c) => c,
                None => open_conn(&shared.path)?,
            };
            let out = f(&conn);
            shared.readers.lock().push(conn);
            out
        })
        .await
        .map_err(|e| Error::Engine(format!("reader task: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it drains what is queued.
        self.writer.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// SQLite reports a read-only filesystem as a bare "disk I/O error": say so when the
/// database's directory no longer takes a new file.
fn with_cause(e: Error, db: Option<&str>) -> Error {
    let Error::Unavailable(msg) = e else {
        return e;
    };
    let dir = db.and_then(|p| std::path::Path::new(p).parent());
    let read_only = dir.is_some_and(|d| {
        let probe = d.join(".write-probe");
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                false
            }
            Err(e) => e.kind() == std::io::ErrorKind::ReadOnlyFilesystem,
        }
    });
    Error::Unavailable(if read_only {
        format!("{msg} (the data directory's filesystem is read-only)")
    } else {
        msg
    })
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Req>, shared: Arc<Shared>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut rev = shared.revision.load(Ordering::SeqCst);
        let mut results: Vec<Result<Done>> = Vec::with_capacity(batch.len());
        let mut events: Vec<Event> = Vec::new();
        let mut compacted_to = None;
        let outcome = (|| -> Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for req in &batch {
                let r = apply(&tx, &mut rev, &req.op, &mut events);
                // A disk or engine failure may have rolled the whole transaction back
                // (SQLite does on SQLITE_FULL or IOERR as it sees fit), and what
                // followed would run outside it: the batch ends here, unwritten.
                if let Err(e @ (Error::Unavailable(_) | Error::Engine(_))) = r {
                    return Err(e);
                }
                if let (Ok(_), Op::Compact { revision }) = (&r, &req.op) {
                    compacted_to = Some(*revision);
                }
                results.push(r);
            }
            tx.commit()?;
            Ok(())
        })();
        let outcome = outcome.map_err(|e| with_cause(e, conn.path()));
        match &outcome {
            Err(e @ Error::Unavailable(_)) => shared
                .write_health
                .lock()
                .failed(e.to_string(), Instant::now()),
            Ok(()) => shared.write_health.lock().succeeded(Instant::now()),
            Err(_) => {}
        }
        match outcome {
            Ok(()) => {
                shared.revision.store(rev, Ordering::SeqCst);
                if let Some(c) = compacted_to {
                    shared.compacted.fetch_max(c, Ordering::SeqCst);
                    let _ = conn.execute_batch("PRAGMA incremental_vacuum;");
                }
                for ev in events {
                    let _ = shared.events.send(Arc::new(ev));
                }
                for (req, r) in batch.into_iter().zip(results) {
                    let _ = req.resp.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store batch failed; nothing in it was written");
                for req in batch {
                    let _ = req.resp.send(Err(e.again()));
                }
            }
        }
    }
}

fn load(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<Option<KeyValue>> {
    Ok(tx
        .prepare_cached("SELECT create_rev, mod_rev, value FROM current WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(KeyValue {
                key: key.to_string(),
                create_revision: r.get(0)?,
                mod_revision: r.get(1)?,
                value: Bytes::from(r.get::<_, Vec<u8>>(2)?),
            })
        })
        .optional()?)
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    rev: &mut Revision,
    op: &Op,
    events: &mut Vec<Event>,
) -> Result<Done> {
    match op {
        Op::Create { key, value } => {
            if tx
                .prepare_cached("SELECT 1 FROM current WHERE key = ?1")?
                .exists([key])?
            {
                return Err(Error::AlreadyExists);
            }
            let r = *rev + 1;
            tx.prepare_cached(
                "INSERT INTO current(key, create_rev, mod_rev, value) VALUES (?1, ?2, ?2, ?3)",
            )?
            .execute(params![key, r, &value[..]])?;
            tx.prepare_cached("INSERT INTO history(rev, key, deleted, create_rev, value) VALUES (?1, ?2, 0, ?1, ?3)")?.execute(params![r, key, &value[..]])?;
            *rev = r;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: r,
                mod_revision: r,
            };
            events.push(Event {
                kind: EventKind::Put,
                kv,
                prev: None,
                revision: r,
            });
            Ok(Done::Rev(r))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let prev = load(tx, key)?.ok_or(Error::NotFound)?;
            if prev.mod_revision != *expected {
                return Err(Error::Conflict {
                    current: Some(prev),
                });
            }
            let r = *rev + 1;
            tx.prepare_cached("UPDATE current SET mod_rev = ?2, value = ?3 WHERE key = ?1")?
                .execute(params![key, r, &value[..]])?;
            tx.prepare_cached("INSERT INTO history(rev, key, deleted, create_rev, value) VALUES (?1, ?2, 0, ?3, ?4)")?.execute(params![r, key, prev.create_revision, &value[..]])?;
            *rev = r;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: r,
            };
            events.push(Event {
                kind: EventKind::Put,
                kv,
                prev: Some(prev),
                revision: r,
            });
            Ok(Done::Rev(r))
        }
        Op::Delete { key, expected } => {
            let prev = load(tx, key)?.ok_or(Error::NotFound)?;
            if let Some(e) = expected
                && prev.mod_revision != *e
            {
                return Err(Error::Conflict {
                    current: Some(prev),
                });
            }
            let r = *rev + 1;
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")?
                .execute([key])?;
            tx.prepare_cached("INSERT INTO history(rev, key, deleted, create_rev, value) VALUES (?1, ?2, 1, ?3, ?4)")?.execute(params![r, key, prev.create_revision, &prev.value[..]])?;
            *rev = r;
            let kv = KeyValue {
                mod_revision: r,
                ..prev.clone()
            };
            events.push(Event {
                kind: EventKind::Delete,
                kv,
                prev: Some(prev.clone()),
                revision: r,
            });
            Ok(Done::Deleted(r, prev))
        }
        Op::Compact { revision } => {
            let target = (*revision).min(*rev);
            tx.prepare_cached("DELETE FROM history WHERE rev <= ?1")?
                .execute([target])?;
            tx.execute("INSERT INTO meta(name, value) VALUES ('compacted', ?1) ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)", [target])?;
            // The history rows that held the counter may be gone now.
            tx.execute("INSERT INTO meta(name, value) VALUES ('revision', ?1) ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)", [*rev])?;
            Ok(Done::Unit)
        }
    }
}

fn row_kv(key: String, create: i64, modr: i64, value: Vec<u8>) -> KeyValue {
    KeyValue {
        key,
        value: Bytes::from(value),
        create_revision: create,
        mod_revision: modr,
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT create_rev, mod_rev, value FROM current WHERE key = ?1")?
                    .query_row([&key], |r| {
                        Ok(row_kv(key.clone(), r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?,
            )
        })
        .await
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<RangeResult> {
        let (prefix, end) = (prefix.to_string(), prefix_end(prefix));
        let start_after = start_after.map(str::to_string);
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let revision: i64 = tx.query_row(SNAPSHOT_REVISION, [], |r| r.get(0))?;
            let lim = limit.map(|l| l as i64 + 1).unwrap_or(-1);
            let mut kvs = Vec::new();
            {
                let (sql, lower) = match &start_after {
                    Some(s) if *s >= prefix => ("SELECT key, create_rev, mod_rev, value FROM current WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3", s.clone()),
                    _ => ("SELECT key, create_rev, mod_rev, value FROM current WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3", prefix.clone()),
                };
                let mut st = tx.prepare_cached(sql)?;
                let rows = st.query_map(params![lower, end, lim], |r| Ok(row_kv(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                for r in rows {
                    kvs.push(r?);
                }
            }
            tx.finish()?;
            let more = limit.is_some_and(|l| kvs.len() > l);
            if more {
                kvs.pop();
            }
            Ok(RangeResult { kvs, more, revision })
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let (prefix, end) = (prefix.to_string(), prefix_end(prefix));
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM current WHERE key >= ?1 AND key < ?2",
                params![prefix, end],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        match self
            .write(Op::Create {
                key: key.to_string(),
                value,
            })
            .await?
        {
            Done::Rev(r) => Ok(r),
            _ => Err(Error::Engine("unexpected writer answer".into())),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        match self
            .write(Op::Update {
                key: key.to_string(),
                value,
                expected,
            })
            .await?
        {
            Done::Rev(r) => Ok(r),
            _ => Err(Error::Engine("unexpected writer answer".into())),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self
            .write(Op::Delete {
                key: key.to_string(),
                expected,
            })
            .await?
        {
            Done::Deleted(r, kv) => Ok((r, kv)),
            _ => Err(Error::Engine("unexpected writer answer".into())),
        }
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event>>> {
        // Subscribe before reading history: anything committed in between shows up in
        // both, and the revision filter below drops the copies.
        let rx = self.shared.events.subscribe();
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(Error::Compacted {
                compact_revision: compacted,
            });
        }
        let (p, end) = (prefix.to_string(), prefix_end(prefix));
        let (replay, snapshot) = self
            .read(move |c| {
                let tx = c.unchecked_transaction()?;
                let snapshot: i64 = tx.query_row(SNAPSHOT_REVISION, [], |r| r.get(0))?;
                let mut out = Vec::new();
                {
                    let mut st = tx.prepare_cached("SELECT rev, key, deleted, create_rev, value FROM history WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND key < ?4 ORDER BY rev")?;
                    let rows = st.query_map(params![after, snapshot, p, end], |r| {
                        let rev: i64 = r.get(0)?;
                        let deleted: bool = r.get::<_, i64>(2)? != 0;
                        let kv = row_kv(r.get(1)?, r.get(3)?, rev, r.get(4)?);
                        Ok(Event { kind: if deleted { EventKind::Delete } else { EventKind::Put }, kv, prev: None, revision: rev })
                    })?;
                    for r in rows {
                        out.push(r?);
                    }
                }
                tx.finish()?;
                Ok((out, snapshot))
            })
            .await?;
        let prefix = prefix.to_string();
        let live = tokio_stream_from(rx).filter_map(move |r| {
            let prefix = prefix.clone();
            async move {
                match r {
                    Ok(e) if e.revision > snapshot && e.kv.key.starts_with(&prefix) => {
                        Some(Ok((*e).clone()))
                    }
                    Ok(_) => None,
                    Err(()) => Some(Err(Error::Engine(
                        "watcher fell behind the store's event buffer".into(),
                    ))),
                }
            }
        });
        Ok(futures::stream::iter(replay.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= self.shared.compacted.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }

    fn write_failure(&self) -> Option<String> {
        self.shared.write_health.lock().failure(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::testing::conformance(Arc::new(
            SqliteStore::open(&dir.path().join("s.db")).unwrap(),
        ))
        .await;
    }

    #[tokio::test]
    async fn reopen_keeps_data_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.create("/a", Bytes::from_static(b"1")).await.unwrap();
            let (r, _) = s.delete("/a", None).await.unwrap();
            assert_eq!(r, 2);
            s.create("/b", Bytes::from_static(b"2")).await.unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), 3);
        assert_eq!(
            s.get("/b").await.unwrap().unwrap().value,
            Bytes::from_static(b"2")
        );
        assert_eq!(s.create("/c", Bytes::new()).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn compaction_bounds_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = SqliteStore::open(&path).unwrap();
        s.create("/k", Bytes::from(vec![1u8; 4096])).await.unwrap();
        for i in 0..200 {
            s.update("/k", Bytes::from(vec![i as u8; 4096]), i + 1)
                .await
                .unwrap();
        }
        let rev = s.current_revision().await.unwrap();
        s.compact(rev - 5).await.unwrap();
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 5);
        assert!(matches!(
            s.watch("/", rev - 10).await.err(),
            Some(Error::Compacted { .. })
        ));
        assert_eq!(s.get("/k").await.unwrap().unwrap().mod_revision, rev);
    }

    #[tokio::test]
    async fn revision_survives_compacting_all_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.create("/a", Bytes::new()).await.unwrap();
            s.create("/b", Bytes::new()).await.unwrap();
            s.delete("/b", None).await.unwrap();
            s.compact(3).await.unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), 3);
        assert_eq!(s.create("/c", Bytes::new()).await.unwrap(), 4);
        assert!(matches!(
            s.create("/a", Bytes::new()).await,
            Err(Error::AlreadyExists)
        ));
    }
}
