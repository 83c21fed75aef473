//! A list-then-watch reflector over JSON objects: the in-memory view controllers keep
//! instead of listing the API on every change. It delivers the full list as one `Reset`
//! (again after any relist: 410 Expired, a broken watch), then single changes.
//!
//! kube-rs' `watcher` does the same for typed objects; the controllers' pure cores take
//! JSON, and decoding each event once into a `Value` avoids a typed decode followed by a
//! conversion per event, which matters with thousands of nodes.

use futures::{StreamExt, TryStreamExt};
use kube::core::WatchEvent;
use serde_json::Value;
use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A change seen by a reflector. Objects are shared, never copied: every control loop
/// that holds a pod holds the same one, as client-go's shared informer cache does.
#[derive(Debug, Clone)]
pub enum Change {
    /// The complete current set (first list, or a relist): replace what you hold.
    Reset(Vec<Arc<Value>>),
    Apply(Arc<Value>),
    Delete(Arc<Value>),
}

impl Change {
    /// The changes of objects built by hand (tests drive loops with these).
    pub fn reset(items: Vec<Value>) -> Change {
        Change::Reset(items.into_iter().map(Arc::new).collect())
    }

    pub fn apply(o: Value) -> Change {
        Change::Apply(Arc::new(o))
    }

    pub fn delete(o: Value) -> Change {
        Change::Delete(Arc::new(o))
    }
}

/// Lists and watches `path` (a collection URL such as `/api/v1/pods`) with an optional
/// field selector, forever, sending changes until the receiver is dropped.
pub fn watch_values(
    client: kube::Client,
    path: &str,
    field_selector: Option<&str>,
) -> mpsc::Receiver<Change> {
    reflect(client, path, field_selector, None)
}

/// As [`watch_values`], with only each object's metadata (`PartialObjectMetadata`), as
/// Kubernetes' garbage collector watches every kind.
pub fn watch_metadata(client: kube::Client, path: &str) -> mpsc::Receiver<Change> {
    reflect(client, path, None, Some(METADATA_ONLY))
}

const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

fn reflect(
    client: kube::Client,
    path: &str,
    field_selector: Option<&str>,
    accept: Option<&'static str>,
) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(4096);
    let path = path.to_string();
    let fs = field_selector.map(str::to_string);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match list(&client, &path, fs.as_deref(), accept).await {
                Ok((items, rv)) => {
                    if tx.send(Change::Reset(items)).await.is_err() {
                        return;
                    }
                    backoff = Duration::from_millis(200);
                    match watch(&client, &path, fs.as_deref(), accept, rv, &tx).await {
                        Ok(Ended::ReceiverGone) => return,
                        Ok(Ended::Relist) => continue,
                        Err(e) => tracing::debug!(%path, error = %e, "watch broke; relisting"),
                    }
                }
                Err(e) => tracing::debug!(%path, error = %e, "list failed; retrying"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
    rx
}

fn query(fs: Option<&str>) -> String {
    fs.map(|f| format!("&fieldSelector={}", urlencode(f)))
        .unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A paginated consistent list; returns the items and the list's resourceVersion.
async fn list(
    client: &kube::Client,
    path: &str,
    fs: Option<&str>,
    accept: Option<&str>,
) -> kube::Result<(Vec<Arc<Value>>, String)> {
    let mut items = Vec::new();
    let mut cont = String::new();
    loop {
        let url = format!(
            "{path}?limit=1000{}{}",
            query(fs),
            if cont.is_empty() {
                String::new()
            } else {
                format!("&continue={}", urlencode(&cont))
            }
        );
        let req = get(url, accept);
        let mut page: Value = client.request(req).await?;
        if let Some(Value::Array(a)) = page.get_mut("items").map(Value::take) {
            items.extend(a.into_iter().map(slim).map(Arc::new));
        }
        let meta = &page["metadata"];
        match meta["continue"].as_str().filter(|c| !c.is_empty()) {
            Some(c) => cont = c.to_string(),
            None => {
                let rv = meta["resourceVersion"].as_str().unwrap_or("").to_string();
                return Ok((items, rv));
            }
        }
    }
}

enum Ended {
    ReceiverGone,
    Relist,
}

async fn watch(
    client: &kube::Client,
    path: &str,
    fs: Option<&str>,
    accept: Option<&str>,
    mut rv: String,
    tx: &mpsc::Sender<Change>,
) -> kube::Result<Ended> {
    loop {
        let url = format!(
            "{path}?watch=1&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}{}",
            query(fs)
        );
        let req = get(url, accept);
        let mut events = client.request_events::<Value>(req).await?.boxed();
        while let Some(ev) = events.try_next().await? {
            let change = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    remember_rv(&o, &mut rv);
                    Change::Apply(Arc::new(slim(o)))
                }
                WatchEvent::Deleted(o) => {
                    remember_rv(&o, &mut rv);
                    Change::Delete(Arc::new(slim(o)))
                }
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(e) => {
                    tracing::debug!(%path, code = e.code, message = %e.message, "watch error; relisting");
                    return Ok(Ended::Relist);
                }
            };
            if tx.send(change).await.is_err() {
                return Ok(Ended::ReceiverGone);
            }
        }
        // The server ended the watch (timeoutSeconds): resume where we were.
    }
}

fn get(url: String, accept: Option<&str>) -> http::Request<Vec<u8>> {
    let mut b = http::Request::get(url);
    if let Some(a) = accept {
        b = b.header(http::header::ACCEPT, a);
    }
    b.body(Vec::new()).expect("valid request")
}

/// Drops `metadata.managedFields`: no control loop reads them, they are often the
/// largest part of an object, and every view holds thousands of objects. (An update
/// that omits them keeps the stored ones.)
fn slim(mut o: Value) -> Value {
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

fn remember_rv(o: &Value, rv: &mut String) {
    if let Some(r) = o["metadata"]["resourceVersion"].as_str() {
        *rv = r.to_string();
    }
}

/// `namespace/name` (or `name` for cluster-scoped objects): the key reflectors use.
pub fn key<V: Borrow<Value> + ?Sized>(o: &V) -> String {
    match names(o) {
        (Some(ns), name) if !ns.is_empty() => format!("{ns}/{name}"),
        (_, name) => name.to_string(),
    }
}

/// An object's namespace (none when cluster-scoped) and name (empty when missing).
pub fn names<V: Borrow<Value> + ?Sized>(o: &V) -> (Option<&str>, &str) {
    let m = &o.borrow()["metadata"];
    (m["namespace"].as_str(), m["name"].as_str().unwrap_or(""))
}

/// Applies a change to a map of objects by key.
/// An object's `metadata.uid` ("" without one).
pub fn uid<V: Borrow<Value> + ?Sized>(o: &V) -> &str {
    o.borrow()["metadata"]["uid"].as_str().unwrap_or("")
}

pub fn apply_to(map: &mut std::collections::HashMap<String, Arc<Value>>, change: Change) {
    match change {
        Change::Reset(items) => {
            map.clear();
            for o in items {
                map.insert(key(&o), o);
            }
        }
        Change::Apply(o) => {
            map.insert(key(&o), o);
        }
        Change::Delete(o) => {
            map.remove(&key(&o));
        }
    }
}

/// Applies `c` to `map`, each object decoded as `T` and kept as `keep` makes it; the
/// keys deleted (one, or with a reset every key no longer there) are returned.
pub fn absorb<T: serde::de::DeserializeOwned, V>(
    c: Change,
    map: &mut std::collections::BTreeMap<String, V>,
    keep: impl Fn(&str, T) -> V,
) -> Vec<String> {
    let decode = |o: &Value| {
        let k = key(o);
        T::deserialize(o).ok().map(|t| {
            let v = keep(&k, t);
            (k, v)
        })
    };
    match c {
        Change::Reset(items) => {
            let new: std::collections::BTreeMap<String, V> =
                items.iter().filter_map(|o| decode(o)).collect();
            let gone = map
                .keys()
                .filter(|k| !new.contains_key(*k))
                .cloned()
                .collect();
            *map = new;
            gone
        }
        Change::Apply(o) => {
            map.extend(decode(&o));
            Vec::new()
        }
        Change::Delete(o) => {
            let k = key(&*o);
            map.remove(&k);
            vec![k]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slim_drops_managed_fields() {
        assert_eq!(
            slim(json!({"metadata": {"name": "a", "managedFields": [1]}})),
            json!({"metadata": {"name": "a"}})
        );
    }

    #[test]
    fn keys_and_map_updates() {
        let a = Arc::new(json!({"metadata": {"name": "a", "namespace": "ns"}}));
        let n = Arc::new(json!({"metadata": {"name": "n1"}}));
        assert_eq!(key(&a), "ns/a");
        assert_eq!(key(&n), "n1");
        let mut m = std::collections::HashMap::new();
        apply_to(&mut m, Change::Reset(vec![a.clone(), n.clone()]));
        assert_eq!(m.len(), 2);
        apply_to(&mut m, Change::Delete(a));
        assert_eq!(m.len(), 1);
        apply_to(&mut m, Change::Reset(vec![]));
        assert!(m.is_empty());
        assert_eq!(urlencode("spec.nodeName!="), "spec.nodeName%21%3D");
    }
}
