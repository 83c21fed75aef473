//! The loop the workload controllers share, as client-go's work queue serves
//! Kubernetes' controllers: changes from their informers mark owner keys dirty, each
//! dirty key is synced once per burst (a de-duplicating queue), a sync may ask to look
//! again later, and every owner is looked at again on a resync period.

use crate::owner::Expectations;
use serde_json::Value;
use skiff_kube::informer::Changes;
use skiff_kube::reflect::{self, Change};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Keys to sync.
pub type Dirty = HashSet<String>;

/// A controller driven by [`run`]. Source 0 is the owners' collection (ReplicaSets for
/// the ReplicaSet controller): the loop keeps it in [`Reconcile::owners`] and marks an
/// owner dirty when it changes. Every other source goes to [`Reconcile::observe`].
pub(crate) trait Reconcile {
    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>>;

    /// A change from `sources[source]` (1 and up): update the view, mark owners dirty.
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty);

    /// Creations and deletions this controller waits to see before it syncs an owner
    /// again (so a burst does not overshoot), if it keeps any.
    fn expectations(&mut self) -> Option<&mut Expectations> {
        None
    }

    /// The owners were listed (again): their view is complete.
    fn owners_listed(&mut self) {}

    /// Once per round, before its syncs.
    async fn before_round(&mut self) {}

    /// Syncs the owner at `key` (None: it is gone), once its expectations are met.
    /// Some(d): look again after `d`.
    async fn sync(&mut self, key: &str, owner: Option<Arc<Value>>) -> Option<Duration>;
}

/// How often every owner is synced again, changed or not.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Runs `r` over `sources` until `shutdown` (or a source ends).
pub(crate) async fn run<R: Reconcile>(
    mut r: R,
    sources: Vec<Changes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut merged = futures::stream::select_all(
        sources
            .into_iter()
            .enumerate()
            .map(|(i, c)| futures::StreamExt::map(c.into_stream(), move |change| (i, change))),
    );
    let mut dirty = Dirty::new();
    let (requeue_tx, mut requeue_rx) = mpsc::unbounded_channel::<String>();
    let requeue = crate::owner::Requeue::new(requeue_tx);
    let mut resync = tokio::time::interval(RESYNC);
    let observe = |r: &mut R, dirty: &mut Dirty, (i, c): (usize, Change)| {
        if i > 0 {
            return r.observe(i, c, dirty);
        }
        match &c {
            Change::Reset(items) => {
                // Owners gone while the watch was down are synced (to forget them) too.
                dirty.extend(r.owners().keys().cloned());
                dirty.extend(items.iter().map(reflect::key));
                r.owners_listed();
            }
            Change::Apply(o) | Change::Delete(o) => {
                dirty.insert(reflect::key(o));
            }
        }
        reflect::apply_to(r.owners(), c);
    };
    loop {
        tokio::select! {
            next = futures::StreamExt::next(&mut merged) => {
                let Some(next) = next else { return };
                observe(&mut r, &mut dirty, next);
            }
            k = requeue_rx.recv() => { if let Some(k) = k { dirty.insert(k); } }
            _ = resync.tick() => dirty.extend(r.owners().keys().cloned()),
            _ = shutdown.changed() => return,
        }
        // Whatever else is queued first: one sync per key per burst.
        while let Some(Some(next)) =
            futures::FutureExt::now_or_never(futures::StreamExt::next(&mut merged))
        {
            observe(&mut r, &mut dirty, next);
        }
        r.before_round().await;
        for key in std::mem::take(&mut dirty) {
            let owner = r.owners().get(&key).cloned();
            if let Some(exp) = r.expectations() {
                if owner.is_none() {
                    exp.forget(&key);
                    continue;
                }
                if !exp.satisfied(&key) {
                    continue;
                }
            }
            if let Some(after) = r.sync(&key, owner).await {
                requeue.after(key, after);
            }
        }
    }
}

/// A controller whose keys are its own (a Service's, an Endpoints') and whose views it
/// keeps itself, typed: every change of every source goes to [`Keyed::observe`]. No key is
/// synced before each source has been listed once (client-go's `WaitForCacheSync`).
pub(crate) trait Keyed {
    /// A change from `sources[source]`: update the view, mark the keys it concerns.
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty);

    /// The keys every resync looks at.
    fn keys(&self) -> Vec<String>;

    /// Once, when every source has been listed, before the first syncs.
    fn listed(&mut self, _dirty: &mut Dirty) {}

    /// Syncs `key`. Some(d): look again after `d`.
    async fn sync(&mut self, key: &str) -> Option<Duration>;
}

/// Runs `k` over `sources` until `shutdown` (or a source ends): each dirty key once per
/// burst, requeues when a sync asks, every key again each [`RESYNC`].
pub(crate) async fn run_keyed<K: Keyed>(
    mut k: K,
    sources: Vec<Changes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listed = vec![false; sources.len()];
    let mut merged = futures::stream::select_all(
        sources
            .into_iter()
            .enumerate()
            .map(|(i, c)| futures::StreamExt::map(c.into_stream(), move |change| (i, change))),
    );
    let mut ready = false;
    let mut dirty = Dirty::new();
    let (requeue_tx, mut requeue_rx) = mpsc::unbounded_channel::<String>();
    let requeue = crate::owner::Requeue::new(requeue_tx);
    let mut resync = tokio::time::interval(RESYNC);
    let mut observe = |k: &mut K, dirty: &mut Dirty, (i, c): (usize, Change)| {
        if matches!(c, Change::Reset(_)) {
            listed[i] = true;
        }
        k.observe(i, c, dirty);
        listed.iter().all(|l| *l)
    };
    loop {
        let mut all_listed = false;
        tokio::select! {
            next = futures::StreamExt::next(&mut merged) => {
                let Some(next) = next else { return };
                all_listed = observe(&mut k, &mut dirty, next);
            }
            key = requeue_rx.recv() => { if let Some(key) = key { dirty.insert(key); } }
            _ = resync.tick() => dirty.extend(k.keys()),
            _ = shutdown.changed() => return,
        }
        while let Some(Some(next)) =
            futures::FutureExt::now_or_never(futures::StreamExt::next(&mut merged))
        {
            all_listed = observe(&mut k, &mut dirty, next);
        }
        if !ready {
            if !all_listed {
                continue;
            }
            ready = true;
            k.listed(&mut dirty);
        }
        for key in std::mem::take(&mut dirty) {
            if let Some(after) = k.sync(&key).await {
                requeue.after(key, after);
            }
        }
    }
}

/// Per-key retry delays after failed syncs: 200 ms, doubling, at most a minute (as the
/// work queue's rate limiter); a success starts over.
#[derive(Debug, Default)]
pub(crate) struct Backoff(HashMap<String, u32>);

impl Backoff {
    pub fn failed(&mut self, key: &str) -> Duration {
        let n = self.0.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        (Duration::from_millis(100) * 2u32.pow(*n)).min(Duration::from_secs(60))
    }

    pub fn succeeded(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// A sync's outcome: nothing more on success; on failure (logged with `what`), when
    /// to try again.
    pub fn settle<E: std::fmt::Display>(
        &mut self,
        key: &str,
        outcome: Result<(), E>,
        what: &str,
    ) -> Option<Duration> {
        match outcome {
            Ok(()) => {
                self.succeeded(key);
                None
            }
            Err(e) => {
                tracing::debug!(key, error = %e, "{what}; retrying");
                Some(self.failed(key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Counting {
        owners: HashMap<String, Arc<Value>>,
        exp: Expectations,
        synced: Arc<Mutex<Vec<(String, bool)>>>,
    }

    impl Reconcile for Counting {
        fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
            &mut self.owners
        }
        fn expectations(&mut self) -> Option<&mut Expectations> {
            Some(&mut self.exp)
        }
        fn observe(&mut self, _: usize, c: Change, dirty: &mut Dirty) {
            if let Change::Apply(o) = c {
                dirty.insert(o["owner"].as_str().unwrap().to_string());
            }
        }
        async fn sync(&mut self, key: &str, owner: Option<Arc<Value>>) -> Option<Duration> {
            self.synced
                .lock()
                .unwrap()
                .push((key.to_string(), owner.is_some()));
            // The first sync of `ns/a` waits for one creation.
            if key == "ns/a" && self.synced.lock().unwrap().len() == 1 {
                self.exp.expect_creates(key, 1);
            }
            None
        }
    }

    /// Waits (up to 5 s) for `n` syncs, then a moment more for any extra one.
    async fn settle(synced: &Arc<Mutex<Vec<(String, bool)>>>, n: usize) {
        for _ in 0..500 {
            if synced.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fn owner(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}})
    }

    #[tokio::test]
    async fn bursts_sync_each_owner_once_behind_expectations() {
        let (owners_tx, owners) = Changes::channel();
        let (pods_tx, pods) = Changes::channel();
        let c = Counting::default();
        let synced = c.synced.clone();
        let (stop_tx, stop) = watch::channel(false);
        owners_tx.send(Change::reset(vec![owner("a")])).unwrap();
        let task = tokio::spawn(run(c, vec![owners, pods], stop));
        settle(&synced, 1).await;
        assert_eq!(*synced.lock().unwrap(), [("ns/a".to_string(), true)]);
        // A burst of changes to `a` waits on its expectation; `b` is synced once.
        for _ in 0..3 {
            pods_tx
                .send(Change::apply(json!({"owner": "ns/a"})))
                .unwrap();
        }
        owners_tx.send(Change::apply(owner("b"))).unwrap();
        pods_tx
            .send(Change::apply(json!({"owner": "ns/b"})))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(synced.lock().unwrap().len(), 2);
        assert_eq!(synced.lock().unwrap()[1], ("ns/b".to_string(), true));
        // A deleted owner forgets its expectations without a sync.
        owners_tx.send(Change::delete(owner("a"))).unwrap();
        settle(&synced, 2).await;
        assert_eq!(synced.lock().unwrap().len(), 2);
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}

#[cfg(test)]
mod keyed_tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Recorder {
        synced: Arc<Mutex<Vec<String>>>,
        listed: Arc<Mutex<usize>>,
    }

    impl Keyed for Recorder {
        fn observe(&mut self, source: usize, c: Change, dirty: &mut Dirty) {
            if let Change::Apply(o) | Change::Delete(o) = c {
                dirty.insert(format!("{source}:{}", o["k"].as_str().unwrap_or("")));
            }
        }
        fn keys(&self) -> Vec<String> {
            Vec::new()
        }
        fn listed(&mut self, dirty: &mut Dirty) {
            *self.listed.lock().unwrap() += 1;
            dirty.insert("leftover".into());
        }
        async fn sync(&mut self, key: &str) -> Option<Duration> {
            self.synced.lock().unwrap().push(key.to_string());
            None
        }
    }

    #[tokio::test]
    async fn keys_wait_until_every_source_is_listed() {
        let (a_tx, a) = Changes::channel();
        let (b_tx, b) = Changes::channel();
        let r = Recorder::default();
        let (synced, listed) = (r.synced.clone(), r.listed.clone());
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run_keyed(r, vec![a, b], stop));
        a_tx.send(Change::reset(vec![])).unwrap();
        a_tx.send(Change::apply(json!({"k": "x"}))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(synced.lock().unwrap().is_empty());
        b_tx.send(Change::reset(vec![])).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut got = synced.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["0:x", "leftover"]);
        b_tx.send(Change::apply(json!({"k": "y"}))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            synced.lock().unwrap().last().map(String::as_str),
            Some("1:y")
        );
        assert_eq!(*listed.lock().unwrap(), 1);
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
