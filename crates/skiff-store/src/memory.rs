//! In-memory store with the same semantics as the SQLite one, for unit tests.

use crate::{Error, Event, EventKind, KeyValue, RangeResult, Result, Revision, Store, prefix_end};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::Bound;
use tokio::sync::broadcast;

struct Inner {
    current: BTreeMap<String, KeyValue>,
    history: Vec<Event>,
    revision: Revision,
    compacted: Revision,
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Event>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(65536);
        MemoryStore {
            inner: Mutex::new(Inner {
                current: BTreeMap::new(),
                history: Vec::new(),
                revision: 0,
                compacted: 0,
            }),
            tx,
        }
    }

    fn commit(&self, inner: &mut Inner, ev: Event) {
        inner.history.push(ev.clone());
        let _ = self.tx.send(ev);
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.inner.lock().current.get(key).cloned())
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<RangeResult> {
        let inner = self.inner.lock();
        let start = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let end = Bound::Excluded(prefix_end(prefix));
        let mut kvs = Vec::new();
        let mut more = false;
        for (_, kv) in inner.current.range((start, end)) {
            if limit.is_some_and(|l| kvs.len() >= l) {
                more = true;
                break;
            }
            kvs.push(kv.clone());
        }
        Ok(RangeResult {
            kvs,
            more,
            revision: inner.revision,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let inner = self.inner.lock();
        Ok(inner
            .current
            .range(prefix.to_string()..prefix_end(prefix))
            .count() as i64)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let mut inner = self.inner.lock();
        if inner.current.contains_key(key) {
            return Err(Error::AlreadyExists);
        }
        inner.revision += 1;
        let rev = inner.revision;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        };
        inner.current.insert(key.to_string(), kv.clone());
        self.commit(
            &mut inner,
            Event {
                kind: EventKind::Put,
                kv,
                prev: None,
                revision: rev,
            },
        );
        Ok(rev)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let mut inner = self.inner.lock();
        let prev = inner.current.get(key).cloned().ok_or(Error::NotFound)?;
        if prev.mod_revision != expected {
            return Err(Error::Conflict {
                current: Some(prev),
            });
        }
        inner.revision += 1;
        let rev = inner.revision;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: rev,
        };
        inner.current.insert(key.to_string(), kv.clone());
        self.commit(
            &mut inner,
            Event {
                kind: EventKind::Put,
                kv,
                prev: Some(prev),
                revision: rev,
            },
        );
        Ok(rev)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let mut inner = self.inner.lock();
        let prev = inner.current.get(key).cloned().ok_or(Error::NotFound)?;
        if let Some(e) = expected
            && prev.mod_revision != e
        {
            return Err(Error::Conflict {
                current: Some(prev),
            });
        }
        inner.current.remove(key);
        inner.revision += 1;
        let rev = inner.revision;
        let kv = KeyValue {
            mod_revision: rev,
            ..prev.clone()
        };
        self.commit(
            &mut inner,
            Event {
                kind: EventKind::Delete,
                kv,
                prev: Some(prev.clone()),
                revision: rev,
            },
        );
        Ok((rev, prev))
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event>>> {
        let inner = self.inner.lock();
        if after < inner.compacted {
            return Err(Error::Compacted {
                compact_revision: inner.compacted,
            });
        }
        let rx = self.tx.subscribe();
        let replay: Vec<Event> = inner
            .history
            .iter()
            .filter(|e| e.revision > after && e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let last = inner.revision;
        drop(inner);
        let prefix = prefix.to_string();
        let live = tokio_stream_from(rx).filter_map(move |r| {
            let prefix = prefix.clone();
            async move {
                match r {
                    Ok(e) if e.revision > last && e.kv.key.starts_with(&prefix) => Some(Ok(e)),
                    Ok(_) => None,
                    Err(_) => Some(Err(Error::Engine("watcher fell behind".into()))),
                }
            }
        });
        Ok(futures::stream::iter(replay.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.lock().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut inner = self.inner.lock();
        if revision <= inner.compacted {
            return Ok(());
        }
        inner.history.retain(|e| e.revision > revision);
        inner.compacted = revision.min(inner.revision);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.lock().compacted)
    }
}

/// A broadcast receiver as a stream (lag reported as an error item).
pub(crate) fn tokio_stream_from<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
) -> BoxStream<'static, std::result::Result<T, ()>> {
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(v) => Some((Ok(v), rx)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some((Err(()), rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        crate::testing::conformance(std::sync::Arc::new(super::MemoryStore::new())).await;
    }
}
