//! The watch cache after its store watch is compacted away (etcd compacted by someone
//! else while the cache lagged): it relists, serves what the store holds, tells
//! watchers that were behind to relist, and follows the store again.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use skiff_apiserver::cache::WatchCache;
use skiff_store::{Error, Event, KeyValue, MemoryStore, RangeResult, Result, Revision, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A MemoryStore whose first watch ends with `Compacted` once told to.
struct Compacting {
    inner: MemoryStore,
    compact: Arc<tokio::sync::Notify>,
    first: AtomicBool,
}

#[async_trait::async_trait]
impl Store for Compacting {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn range(
        &self,
        p: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<RangeResult> {
        self.inner.range(p, after, limit).await
    }
    async fn count(&self, p: &str) -> Result<i64> {
        self.inner.count(p).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, rev: Revision) -> Result<Revision> {
        self.inner.update(key, value, rev).await
    }
    async fn delete(&self, key: &str, rev: Option<Revision>) -> Result<(Revision, KeyValue)> {
        self.inner.delete(key, rev).await
    }
    async fn watch(&self, p: &str, after: Revision) -> Result<BoxStream<'static, Result<Event>>> {
        let live = self.inner.watch(p, after).await?;
        if !self.first.swap(false, Ordering::SeqCst) {
            return Ok(live);
        }
        let told = self.compact.clone();
        // Events until told, then the compaction error (and nothing after it).
        let until = async move { told.notified().await };
        let cut = live.take_until(Box::pin(until));
        let end = futures::stream::once(async {
            Err(Error::Compacted {
                compact_revision: 1,
            })
        });
        Ok(cut.chain(end).boxed())
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn compact(&self, rev: Revision) -> Result<()> {
        self.inner.compact(rev).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
}

#[tokio::test]
async fn the_cache_relists_after_its_watch_is_compacted_away() {
    let compact = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(Compacting {
        inner: MemoryStore::new(),
        compact: compact.clone(),
        first: AtomicBool::new(true),
    });
    store
        .create("/registry/configmaps/d/a", Bytes::from("a1"))
        .await
        .unwrap();
    let cache = WatchCache::start(store.clone(), 100).await.unwrap();
    let r = store
        .create("/registry/configmaps/d/b", Bytes::from("b1"))
        .await
        .unwrap();
    assert!(cache.wait_for(r, std::time::Duration::from_secs(5)).await);
    let mut behind = cache.watch("/registry/", Some(r - 1)).unwrap();

    // The watch is cut; meanwhile `a` goes and `c` comes.
    compact.notify_one();
    tokio::task::yield_now().await;
    store
        .delete("/registry/configmaps/d/a", None)
        .await
        .unwrap();
    let last = store
        .create("/registry/configmaps/d/c", Bytes::from("c1"))
        .await
        .unwrap();
    assert!(
        cache
            .wait_for(last, std::time::Duration::from_secs(5))
            .await,
        "the cache did not catch up"
    );
    assert!(cache.get("/registry/configmaps/d/a").is_none());
    assert!(cache.get("/registry/configmaps/d/c").is_some());
    // A watcher from before the relist is told to relist.
    let mut told = false;
    for _ in 0..3 {
        match tokio::time::timeout(std::time::Duration::from_secs(2), behind.next_batch()).await {
            Ok(Err(_too_old)) => {
                told = true;
                break;
            }
            Ok(Ok(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(
        told,
        "a watcher from before the relist was not told it is too old"
    );
    // And the store is followed again.
    let after = store
        .create("/registry/configmaps/d/e", Bytes::from("e1"))
        .await
        .unwrap();
    assert!(
        cache
            .wait_for(after, std::time::Duration::from_secs(5))
            .await
    );
}
