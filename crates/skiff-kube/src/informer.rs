//! Shared reflectors: one list-watch per collection for every control loop of a process
//! that subscribes to it, as client-go's shared informers serve kube-controller-manager.
//! Each object is decoded once and shared (an `Arc`) by every subscriber that is shown
//! it, on its own unbounded queue, so a busy loop never holds the others back, and a
//! backlog costs a pointer per change, not a copy of the object.
//!
//! Subscribers that arrive once the first list has been handed out get a reflector of
//! their own (a late start costs one more list-watch, never a missed object).
//!
//! A collection may have a [`Transform`], applied to each object once before it is
//! shared, as client-go's `SetTransform`: the controller manager drops the pod and node
//! fields none of its loops read, which is most of a pod.

use crate::reflect::{self, Change};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Which objects a subscriber sees.
#[derive(Clone, Copy, Default)]
pub struct View {
    /// Only objects for which this holds (others are not sent at all).
    pub only: Option<fn(&Value) -> bool>,
}

impl View {
    pub fn only(only: fn(&Value) -> bool) -> View {
        View { only: Some(only) }
    }

    fn wants(&self, o: &Value) -> bool {
        self.only.is_none_or(|f| f(o))
    }

    fn apply(&self, c: &Change) -> Option<Change> {
        Some(match c {
            Change::Reset(items) => {
                Change::Reset(items.iter().filter(|o| self.wants(o)).cloned().collect())
            }
            Change::Apply(o) if self.wants(o) => Change::Apply(o.clone()),
            Change::Delete(o) if self.wants(o) => Change::Delete(o.clone()),
            _ => return None,
        })
    }
}

/// A subscriber's changes, in order.
pub struct Changes(mpsc::UnboundedReceiver<Change>);

impl Changes {
    /// Changes fed by hand (tests drive a loop with these).
    pub fn channel() -> (mpsc::UnboundedSender<Change>, Changes) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Changes(rx))
    }

    pub async fn recv(&mut self) -> Option<Change> {
        self.0.recv().await
    }

    pub fn try_recv(&mut self) -> Result<Change, mpsc::error::TryRecvError> {
        self.0.try_recv()
    }

    pub fn into_stream(self) -> tokio_stream::wrappers::UnboundedReceiverStream<Change> {
        tokio_stream::wrappers::UnboundedReceiverStream::new(self.0)
    }
}

struct Sub {
    view: View,
    tx: mpsc::UnboundedSender<Change>,
    /// For a filtered view, the uids it was shown: an object that stops passing the
    /// filter leaves the view as a Delete, so the subscriber drops its stale copy.
    held: Option<HashSet<String>>,
}

impl Sub {
    fn new(view: View, tx: mpsc::UnboundedSender<Change>) -> Sub {
        let held = view.only.map(|_| HashSet::new());
        Sub { view, tx, held }
    }

    fn shown(&mut self, c: &Change) -> Option<Change> {
        let mine = self.view.apply(c);
        let Some(held) = &mut self.held else {
            return mine;
        };
        let uid = |o: &Arc<Value>| o["metadata"]["uid"].as_str().unwrap_or("").to_string();
        match (c, &mine) {
            (_, Some(Change::Reset(items))) => *held = items.iter().map(uid).collect(),
            (_, Some(Change::Apply(o))) => {
                held.insert(uid(o));
            }
            (_, Some(Change::Delete(o))) => {
                held.remove(&uid(o));
            }
            (Change::Apply(o) | Change::Delete(o), None) if held.remove(&uid(o)) => {
                return Some(Change::Delete(o.clone()));
            }
            _ => {}
        }
        mine
    }
}

#[derive(Default)]
struct Hub {
    subs: Vec<Sub>,
    /// The first list went out: a new subscriber would miss it.
    listed: bool,
}

/// Rewrites an object in place before any subscriber sees it.
pub type Transform = fn(&mut Value);

/// The shared reflectors of one client, by collection path.
#[derive(Clone)]
pub struct Informers {
    client: kube::Client,
    hubs: Arc<Mutex<HashMap<String, Arc<Mutex<Hub>>>>>,
    transforms: HashMap<String, Transform>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Informers {
        Informers {
            client,
            hubs: Default::default(),
            transforms: HashMap::new(),
        }
    }

    /// Every object at `path` passes through `t` before it is shared (set before the
    /// first subscriber).
    pub fn with_transform(mut self, path: &str, t: Transform) -> Informers {
        self.transforms.insert(path.to_string(), t);
        self
    }

    /// Every object at `path` (a collection URL such as `/api/v1/pods`), whole.
    pub fn watch(&self, path: &str) -> Changes {
        self.watch_view(path, View::default())
    }

    /// The objects at `path` as `view` shows them.
    pub fn watch_view(&self, path: &str, view: View) -> Changes {
        let (tx, rx) = mpsc::unbounded_channel();
        let sub = Sub::new(view, tx);
        let transform = self.transforms.get(path).copied();
        let mut hubs = self.hubs.lock();
        let hub = hubs.entry(path.to_string()).or_insert_with(|| {
            let hub = Arc::new(Mutex::new(Hub::default()));
            spawn_hub(self.client.clone(), path, hub.clone(), transform);
            hub
        });
        let mut h = hub.lock();
        if h.listed {
            // Too late to share the first list: a reflector of its own.
            let own = Arc::new(Mutex::new(Hub {
                subs: vec![sub],
                listed: false,
            }));
            spawn_hub(self.client.clone(), path, own, transform);
        } else {
            h.subs.push(sub);
        }
        Changes(rx)
    }
}

/// `c` with `t` applied to its objects; they come straight from the decoder, so this
/// rewrites them in place rather than copying.
fn transformed(c: Change, t: Transform) -> Change {
    let one = |mut o: Arc<Value>| {
        t(Arc::make_mut(&mut o));
        o
    };
    match c {
        Change::Reset(items) => Change::Reset(items.into_iter().map(one).collect()),
        Change::Apply(o) => Change::Apply(one(o)),
        Change::Delete(o) => Change::Delete(one(o)),
    }
}

fn spawn_hub(client: kube::Client, path: &str, hub: Arc<Mutex<Hub>>, t: Option<Transform>) {
    let mut upstream = reflect::watch_values(client, path, None);
    tokio::spawn(async move {
        while let Some(c) = upstream.recv().await {
            let c = match t {
                Some(t) => transformed(c, t),
                None => c,
            };
            let mut h = hub.lock();
            h.listed = true;
            h.subs.retain_mut(|s| match s.shown(&c) {
                Some(mine) => s.tx.send(mine).is_ok(),
                None => !s.tx.is_closed(),
            });
            if h.subs.is_empty() {
                // Every subscriber is gone; the reflector ends with this task.
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owned(o: &Value) -> bool {
        o["metadata"]["ownerReferences"].is_array()
    }

    #[test]
    fn views_filter_and_share() {
        let mine = Arc::new(
            json!({"metadata": {"name": "a", "namespace": "n", "ownerReferences": [{}], "uid": "1"}}),
        );
        let other = Arc::new(json!({"metadata": {"name": "b", "namespace": "n"}}));
        let only = View::only(owned);
        match only.apply(&Change::Reset(vec![mine.clone(), other.clone()])) {
            Some(Change::Reset(items)) => {
                assert_eq!(items.len(), 1);
                assert!(Arc::ptr_eq(&items[0], &mine), "shown, not copied");
            }
            c => panic!("{c:?}"),
        }
        assert!(only.apply(&Change::Apply(other.clone())).is_none());
        assert!(only.apply(&Change::Delete(other)).is_none());
    }

    #[test]
    fn a_transform_rewrites_every_object_without_copying_it() {
        fn drop_status(o: &mut Value) {
            o.as_object_mut().map(|m| m.remove("status"));
        }
        let a = Arc::new(json!({"metadata": {"name": "a"}, "status": {"x": 1}}));
        let at = Arc::as_ptr(&a);
        let want = json!({"metadata": {"name": "a"}});
        match transformed(Change::Reset(vec![a]), drop_status) {
            Change::Reset(items) => {
                assert_eq!(*items[0], want);
                assert!(
                    std::ptr::eq(Arc::as_ptr(&items[0]), at),
                    "rewritten in place"
                );
            }
            c => panic!("{c:?}"),
        }
        for c in [
            Change::apply(json!({"metadata": {"name": "a"}, "status": {}})),
            Change::delete(json!({"metadata": {"name": "a"}, "status": {}})),
        ] {
            match transformed(c, drop_status) {
                Change::Apply(o) | Change::Delete(o) => assert_eq!(*o, want),
                c => panic!("{c:?}"),
            }
        }
    }

    #[test]
    fn an_object_that_stops_passing_the_filter_leaves_the_view() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sub = Sub::new(View::only(owned), tx);
        let mine =
            Arc::new(json!({"metadata": {"name": "a", "uid": "1", "ownerReferences": [{}]}}));
        let released = Arc::new(json!({"metadata": {"name": "a", "uid": "1"}}));
        let never = Arc::new(json!({"metadata": {"name": "b", "uid": "2"}}));
        for c in [
            Change::Reset(vec![mine.clone()]),
            Change::Apply(never.clone()),
            Change::Apply(released.clone()),
            Change::Apply(released.clone()),
            Change::Apply(mine.clone()),
            Change::Delete(mine.clone()),
            Change::Delete(never),
        ] {
            if let Some(m) = sub.shown(&c) {
                sub.tx.send(m).unwrap();
            }
        }
        drop(sub);
        let mut seen = Vec::new();
        while let Ok(c) = rx.try_recv() {
            seen.push(c);
        }
        let want = [
            Change::Reset(vec![mine.clone()]),
            Change::Delete(released),
            Change::Apply(mine.clone()),
            Change::Delete(mine),
        ];
        assert_eq!(format!("{seen:?}"), format!("{want:?}"));
    }
}
