//! The watch cache: every stored object in memory (as its JSON bytes) plus a ring of
//! recent events, fed by one store watch on `/registry/`. Lists with
//! `resourceVersion=0`, consistent lists (after waiting for the store's current
//! revision) and every watch are served from here without touching disk.
//!
//! Objects are kept serialized, not as `serde_json::Value` trees: a tree costs several
//! times the bytes, and the memory target (30,000 pods in < 150 MB) rules that out.

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::RwLock;
use skiff_store::{EventKind, Revision, Store};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One object as stored: JSON without `metadata.resourceVersion` (the revision is
/// carried beside it, as etcd carries mod_revision beside the value).
#[derive(Debug)]
pub struct Stored {
    pub key: String,
    pub value: Bytes,
    pub rev: Revision,
    /// What selectors read of the object, computed the first time a filtered list or
    /// watch needs it and shared by every later one and every event carrying this version.
    pub attrs: std::sync::OnceLock<Option<Attrs>>,
}

impl Stored {
    pub fn new(key: String, value: Bytes, rev: Revision) -> Stored {
        Stored {
            key,
            value,
            rev,
            attrs: std::sync::OnceLock::new(),
        }
    }

    pub fn attrs(&self, group: &str, plural: &str) -> Option<&Attrs> {
        self.attrs
            .get_or_init(|| {
                serde_json::from_slice::<serde_json::Value>(&self.value)
                    .ok()
                    .map(|v| Attrs::of(group, plural, &v))
            })
            .as_ref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    /// The object after the change; for deletes, its last state.
    pub obj: Arc<Stored>,
    /// The object before the change (for selector transitions).
    pub prev: Option<Arc<Stored>>,
    pub rev: Revision,
}

/// The labels and selectable fields of one object (Kubernetes' watch cache keeps the
/// same per event).
#[derive(Debug)]
pub struct Attrs {
    pub labels: BTreeMap<String, String>,
    pub fields: Vec<(&'static str, Option<String>)>,
}

impl Attrs {
    pub fn of(group: &str, plural: &str, obj: &serde_json::Value) -> Attrs {
        let names = ["metadata.name", "metadata.namespace"].into_iter().chain(
            skiff_validation::fields::kind_fields(group, plural)
                .iter()
                .copied(),
        );
        Attrs {
            labels: skiff_types::meta::string_map(
                obj.get("metadata").and_then(|m| m.get("labels")),
            ),
            fields: names
                .map(|f| {
                    (
                        f,
                        skiff_validation::fields::field_value(group, plural, obj, f),
                    )
                })
                .collect(),
        }
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .and_then(|(_, v)| v.clone())
    }
}

struct Inner {
    objects: BTreeMap<String, Arc<Stored>>,
    events: VecDeque<Arc<CacheEvent>>,
    revision: Revision,
    /// Oldest revision a watch may resume from: events after it are all in `events`.
    oldest: Revision,
}

/// Told of every change under its prefixes while the cache applies it, in revision
/// order, so what it derives (the RBAC policy) never lags the cache. Must be quick: it
/// runs under the cache's write lock.
pub trait Observer: Send + Sync {
    fn observe(&self, kind: EventType, obj: &Stored);
}

type Observers = Vec<(Vec<String>, Arc<dyn Observer>)>;

pub struct WatchCache {
    inner: RwLock<Inner>,
    observers: RwLock<Observers>,
    rev_tx: watch::Sender<Revision>,
    capacity: usize,
}

/// Objects (count, bytes) by storage prefix, and the ring's own share.
#[derive(Debug, Default)]
pub struct Footprint {
    pub objects: BTreeMap<String, (usize, usize)>,
    pub ring_events: usize,
    pub ring_only_bytes: usize,
}

impl Footprint {
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP skiff_watch_cache_objects Objects held by the watch cache, by storage prefix.\n# TYPE skiff_watch_cache_objects gauge\n",
        );
        for (p, (n, _)) in &self.objects {
            let _ = writeln!(out, "skiff_watch_cache_objects{{prefix=\"{p}\"}} {n}");
        }
        out.push_str("# HELP skiff_watch_cache_object_bytes Bytes of the objects held (JSON and key), by storage prefix.\n# TYPE skiff_watch_cache_object_bytes gauge\n");
        for (p, (_, b)) in &self.objects {
            let _ = writeln!(out, "skiff_watch_cache_object_bytes{{prefix=\"{p}\"}} {b}");
        }
        let _ = writeln!(
            out,
            "# HELP skiff_watch_cache_history_events Events in the watch cache's ring.\n# TYPE skiff_watch_cache_history_events gauge\nskiff_watch_cache_history_events {}",
            self.ring_events
        );
        let _ = writeln!(
            out,
            "# HELP skiff_watch_cache_history_bytes Bytes of past versions only the ring holds.\n# TYPE skiff_watch_cache_history_bytes gauge\nskiff_watch_cache_history_bytes {}",
            self.ring_only_bytes
        );
        out
    }
}

/// Feeds the cache from the store's watch; relists when the store says the watch's
/// history is compacted, and watches again from there.
async fn follow(
    cache: std::sync::Weak<WatchCache>,
    store: Arc<dyn Store>,
    mut stream: futures::stream::BoxStream<'static, skiff_store::Result<skiff_store::Event>>,
) {
    loop {
        while let Some(ev) = stream.next().await {
            let Some(c) = cache.upgrade() else { return };
            match ev {
                Ok(ev) => c.apply(ev),
                Err(skiff_store::Error::Compacted { compact_revision }) => {
                    tracing::warn!(
                        compact_revision,
                        "the store compacted past the watch cache; relisting"
                    );
                    break;
                }
                Err(e) => {
                    // Shutdown, most likely: nothing sane to serve after that.
                    tracing::error!(error = %e, "watch cache lost its store watch");
                    return;
                }
            }
        }
        loop {
            let Some(c) = cache.upgrade() else { return };
            let relisted = async {
                let snap = store.range("/registry/", None, None).await?;
                let s = store.watch("/registry/", snap.revision).await?;
                Ok::<_, skiff_store::Error>((snap, s))
            };
            match relisted.await {
                Ok((snap, s)) => {
                    c.replace_all(snap.kvs, snap.revision);
                    stream = s;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache relist failed; retrying");
                    drop(c);
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Returned when a watch or a list asks for history the cache no longer holds.
#[derive(Debug)]
pub struct TooOld {
    pub requested: Revision,
    pub oldest: Revision,
}

impl WatchCache {
    /// Loads every object under `/registry/` and follows the store from there.
    pub async fn start(store: Arc<dyn Store>, capacity: usize) -> anyhow::Result<Arc<Self>> {
        let snapshot = store.range("/registry/", None, None).await?;
        let mut objects = BTreeMap::new();
        for kv in snapshot.kvs {
            objects.insert(
                kv.key.clone(),
                Arc::new(Stored::new(kv.key, kv.value, kv.mod_revision)),
            );
        }
        let rev = snapshot.revision;
        let (rev_tx, _) = watch::channel(rev);
        let cache = Arc::new(WatchCache {
            inner: RwLock::new(Inner {
                objects,
                events: VecDeque::new(),
                revision: rev,
                oldest: rev,
            }),
            rev_tx,
            capacity,
            observers: RwLock::new(Vec::new()),
        });
        let stream = store.watch("/registry/", rev).await?;
        tokio::spawn(follow(Arc::downgrade(&cache), store, stream));
        Ok(cache)
    }

    /// After the store compacted past the cache's watch (etcd compacted by someone
    /// else, say): the objects are listed afresh and replace the old ones, observers
    /// are told what changed, and the event ring starts again at the new revision, so
    /// a watcher that was behind gets "too old" and relists, as kube-apiserver's cacher
    /// does after a relist.
    fn replace_all(&self, kvs: Vec<skiff_store::KeyValue>, rev: Revision) {
        let fresh: BTreeMap<String, Arc<Stored>> = kvs
            .into_iter()
            .map(|kv| {
                let k = kv.key.clone();
                (k, Arc::new(Stored::new(kv.key, kv.value, kv.mod_revision)))
            })
            .collect();
        let mut inner = self.inner.write();
        for (k, old) in &inner.objects {
            if !fresh.contains_key(k) {
                self.notify(EventType::Deleted, old);
            }
        }
        for (k, new) in &fresh {
            match inner.objects.get(k) {
                None => self.notify(EventType::Added, new),
                Some(old) if old.value != new.value => self.notify(EventType::Modified, new),
                Some(_) => {}
            }
        }
        inner.objects = fresh;
        inner.events.clear();
        inner.oldest = rev;
        inner.revision = rev;
        self.rev_tx.send_replace(rev);
    }

    fn apply(&self, ev: skiff_store::Event) {
        let mut inner = self.inner.write();
        let rev = ev.revision;
        if rev <= inner.revision {
            return;
        }
        if ev.kind == EventKind::Progress {
            inner.revision = rev;
            self.rev_tx.send_replace(rev);
            return;
        }
        let key = ev.kv.key.clone();
        let stored = Arc::new(Stored::new(key.clone(), ev.kv.value.clone(), rev));
        let (kind, prev) = match ev.kind {
            EventKind::Progress => unreachable!("handled above"),
            EventKind::Put => {
                let prev = inner.objects.insert(key, stored.clone());
                (
                    if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    prev,
                )
            }
            EventKind::Delete => {
                let prev = inner.objects.remove(&key);
                // The deleted object's last state, at the delete's revision.
                let last = prev
                    .as_ref()
                    .map(|p| Arc::new(Stored::new(p.key.clone(), p.value.clone(), rev)))
                    .unwrap_or(stored);
                self.notify(EventType::Deleted, &last);
                let ev = Arc::new(CacheEvent {
                    kind: EventType::Deleted,
                    obj: last,
                    prev,
                    rev,
                });
                inner.events.push_back(ev);
                self.finish(&mut inner, rev);
                return;
            }
        };
        self.notify(kind, &stored);
        inner.events.push_back(Arc::new(CacheEvent {
            kind,
            obj: stored,
            prev,
            rev,
        }));
        self.finish(&mut inner, rev);
    }

    fn notify(&self, kind: EventType, obj: &Stored) {
        for (prefixes, o) in self.observers.read().iter() {
            if prefixes.iter().any(|p| obj.key.starts_with(p.as_str())) {
                o.observe(kind, obj);
            }
        }
    }

    /// Adds `o`, first telling it of every object already under `prefixes` (as added);
    /// no change slips between the two.
    pub fn add_observer(&self, prefixes: Vec<String>, o: Arc<dyn Observer>) {
        let inner = self.inner.write();
        for p in &prefixes {
            for (_, obj) in inner
                .objects
                .range::<str, _>((Bound::Included(p.as_str()), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(p.as_str()))
            {
                o.observe(EventType::Added, obj);
            }
        }
        self.observers.write().push((prefixes, o));
    }

    fn finish(&self, inner: &mut Inner, rev: Revision) {
        inner.revision = rev;
        while inner.events.len() > self.capacity {
            if let Some(old) = inner.events.pop_front() {
                inner.oldest = old.rev;
            }
        }
        self.rev_tx.send_replace(rev);
    }

    pub fn revision(&self) -> Revision {
        self.inner.read().revision
    }
    /// Waits until the cache has everything `store` acknowledged so far (a read after
    /// this sees every write answered before it).
    pub async fn catch_up(&self, store: &dyn Store) -> Result<Revision, skiff_types::ApiError> {
        let rev = store
            .current_revision()
            .await
            .map_err(|e| skiff_types::ApiError::internal(e.to_string()))?;
        if !self.wait_for(rev, Duration::from_secs(5)).await {
            return Err(skiff_types::ApiError::timeout(
                "Timeout: the watch cache did not catch up with storage",
            ));
        }
        Ok(rev)
    }

    /// Waits until the cache has seen `rev` (a write acknowledged by the store).
    pub async fn wait_for(&self, rev: Revision, timeout: Duration) -> bool {
        let mut rx = self.rev_tx.subscribe();
        let fut = rx.wait_for(|r| *r >= rev);
        matches!(tokio::time::timeout(timeout, fut).await, Ok(Ok(_)))
    }

    pub fn get(&self, key: &str) -> Option<Arc<Stored>> {
        self.inner.read().objects.get(key).cloned()
    }

    /// Objects under `prefix` with key > `start_after`, at most `limit`; returns the
    /// cache revision and whether more remain.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        filter: &dyn Fn(&Stored) -> bool,
    ) -> (Vec<Arc<Stored>>, Revision, bool) {
        let inner = self.inner.read();
        let start = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut out = Vec::new();
        let mut more = false;
        for (k, v) in inner.objects.range::<String, _>((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if !filter(v) {
                continue;
            }
            if let Some(l) = limit
                && out.len() >= l
            {
                more = true;
                break;
            }
            out.push(v.clone());
        }
        (out, inner.revision, more)
    }

    /// What the cache holds, for `/metrics`: objects and their bytes by storage prefix,
    /// and the versions only the event ring keeps alive.
    pub fn footprint(&self) -> Footprint {
        let inner = self.inner.read();
        let mut f = Footprint {
            ring_events: inner.events.len(),
            ..Default::default()
        };
        for (key, s) in &inner.objects {
            let prefix = key
                .strip_prefix("/registry/")
                .and_then(|k| k.split('/').next())
                .unwrap_or("other");
            let e = f.objects.entry(prefix.to_string()).or_default();
            e.0 += 1;
            e.1 += s.value.len() + key.len();
        }
        let current =
            |s: &Arc<Stored>| inner.objects.get(&s.key).is_some_and(|c| Arc::ptr_eq(c, s));
        let mut seen = std::collections::HashSet::new();
        for ev in &inner.events {
            for s in std::iter::once(&ev.obj).chain(ev.prev.as_ref()) {
                if !current(s) && seen.insert(Arc::as_ptr(s)) {
                    f.ring_only_bytes += s.value.len() + s.key.len();
                }
            }
        }
        f
    }

    pub fn count(&self, prefix: &str) -> usize {
        let inner = self.inner.read();
        inner
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Starts a watch on `prefix`. `from` = None: the current objects first (as ADDED),
    /// then changes. `from` = Some(rv): only changes after rv; `TooOld` if they are gone.
    pub fn watch(
        self: &Arc<Self>,
        prefix: &str,
        from: Option<Revision>,
    ) -> Result<CacheWatcher, TooOld> {
        let inner = self.inner.read();
        let (initial, next) = match from {
            None => {
                let objs: Vec<Arc<Stored>> = inner
                    .objects
                    .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect();
                (objs, inner.revision)
            }
            Some(rv) => {
                if rv < inner.oldest {
                    return Err(TooOld {
                        requested: rv,
                        oldest: inner.oldest,
                    });
                }
                (Vec::new(), rv)
            }
        };
        let initial_rev = inner.revision;
        drop(inner);
        Ok(CacheWatcher {
            cache: self.clone(),
            prefix: prefix.to_string(),
            initial,
            initial_rev,
            last: next,
            rx: self.rev_tx.subscribe(),
        })
    }
}

pub struct CacheWatcher {
    cache: Arc<WatchCache>,
    prefix: String,
    /// Synthetic ADDED objects to send first.
    pub initial: Vec<Arc<Stored>>,
    /// Revision the initial state was taken at.
    pub initial_rev: Revision,
    last: Revision,
    rx: watch::Receiver<Revision>,
}

impl CacheWatcher {
    /// The next batch of events after the last one returned; waits for one.
    /// Err(TooOld) when this watcher fell behind the ring (the client must relist).
    pub async fn next_batch(&mut self) -> Result<Vec<Arc<CacheEvent>>, TooOld> {
        loop {
            {
                let inner = self.cache.inner.read();
                if inner.revision > self.last {
                    if self.last < inner.oldest {
                        return Err(TooOld {
                            requested: self.last,
                            oldest: inner.oldest,
                        });
                    }
                    // Events are in revision order: find the first one after `last`.
                    let start = inner.events.partition_point(|e| e.rev <= self.last);
                    let batch: Vec<Arc<CacheEvent>> = inner
                        .events
                        .range(start..)
                        .filter(|e| e.obj.key.starts_with(&self.prefix))
                        .cloned()
                        .collect();
                    self.last = inner.revision;
                    if !batch.is_empty() {
                        return Ok(batch);
                    }
                }
            }
            if self.rx.changed().await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    pub fn last_revision(&self) -> Revision {
        self.last
    }
}
