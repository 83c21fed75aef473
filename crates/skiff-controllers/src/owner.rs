//! What the workload controllers share, as Kubernetes' `controller_utils` does:
//! controller references, adoption and release, expectations, slow-start creation,
//! deletion, and status writes.

use futures::future::join_all;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An object's managing controller (the ownerReference with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

pub fn controller_of(obj: &Value) -> Option<ControllerRef> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .map(|o| ControllerRef {
            kind: o["kind"].as_str().unwrap_or("").into(),
            name: o["name"].as_str().unwrap_or("").into(),
            uid: o["uid"].as_str().unwrap_or("").into(),
        })
}

/// The reference a controller puts on what it makes.
pub fn controller_ref(api_version: &str, kind: &str, owner: &Value) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// How long an expectation may stay unmet before the controller stops waiting for it
/// (Kubernetes' `ExpectationsTimeout`).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    adds: usize,
    dels: HashSet<String>,
    at: Instant,
}

/// Creations and deletions issued but not yet seen through the watch: a controller
/// does not sync an owner while its last actions are still on their way.
#[derive(Debug, Default)]
pub struct Expectations {
    by_key: HashMap<String, Expected>,
}

impl Expectations {
    fn entry(&mut self, key: &str) -> &mut Expected {
        self.by_key
            .entry(key.to_string())
            .or_insert_with(|| Expected {
                adds: 0,
                dels: HashSet::new(),
                at: Instant::now(),
            })
    }

    pub fn expect_creates(&mut self, key: &str, n: usize) {
        let e = self.entry(key);
        e.adds += n;
        e.at = Instant::now();
    }

    pub fn lower_creates(&mut self, key: &str, n: usize) {
        let e = self.entry(key);
        e.adds = e.adds.saturating_sub(n);
    }

    pub fn expect_deletes(&mut self, key: &str, uids: impl Iterator<Item = String>) {
        let e = self.entry(key);
        e.dels.extend(uids);
        e.at = Instant::now();
    }

    pub fn observed_create(&mut self, key: &str) {
        if let Some(e) = self.by_key.get_mut(key) {
            e.adds = e.adds.saturating_sub(1);
        }
    }

    pub fn observed_delete(&mut self, key: &str, uid: &str) {
        if let Some(e) = self.by_key.get_mut(key) {
            e.dels.remove(uid);
        }
    }

    pub fn satisfied(&self, key: &str) -> bool {
        self.by_key.get(key).is_none_or(|e| {
            (e.adds == 0 && e.dels.is_empty()) || e.at.elapsed() > EXPECTATIONS_TIMEOUT
        })
    }

    pub fn forget(&mut self, key: &str) {
        self.by_key.remove(key);
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

pub fn object_path(api_version: &str, plural: &str, obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    if ns.is_empty() {
        format!("{base}/{plural}/{name}")
    } else {
        format!("{base}/namespaces/{ns}/{plural}/{name}")
    }
}

/// Sends keys back to a controller's queue after a delay (minReadySeconds, deadlines,
/// back-off, the next schedule), at most one wait per key: asked again for a key already
/// due as soon, it changes nothing, as client-go's delaying queue keeps an item's
/// earliest ready time. Every sync of a Deployment in progress asks again, and one
/// sleeping task per ask piled up by the thousand in the soak.
#[derive(Clone)]
pub struct Requeue {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    due: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
}

impl Requeue {
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<String>) -> Requeue {
        Requeue {
            tx,
            due: Default::default(),
        }
    }

    pub fn after(&self, key: String, after: Duration) {
        let at = tokio::time::Instant::now() + after;
        {
            let mut due = self.due.lock().expect("not poisoned");
            if due.get(&key).is_some_and(|d| *d <= at) {
                return;
            }
            due.insert(key.clone(), at);
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            // A sooner wait for the key may have fired (and removed it) meanwhile.
            let mine = {
                let mut due = this.due.lock().expect("not poisoned");
                let mine = due.get(&key) == Some(&at);
                if mine {
                    due.remove(&key);
                }
                mine
            };
            if mine {
                let _ = this.tx.send(key);
            }
        });
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.due.lock().expect("not poisoned").len()
    }
}

/// The pods among `pods` named in `names`, in that order.
pub fn named(pods: &[Value], names: &[String]) -> Vec<Value> {
    names
        .iter()
        .filter_map(|n| {
            pods.iter()
                .find(|p| p["metadata"]["name"] == n.as_str())
                .cloned()
        })
        .collect()
}

/// A JSON request through the API client.
pub async fn send(
    client: &kube::Client,
    method: http::Method,
    path: String,
    content_type: &str,
    body: &Value,
) -> Result<Value, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(serde_json::to_vec(body).expect("json"))
        .expect("valid request");
    client.request::<Value>(req).await
}

/// Sets the owner references of `obj` (merge patch guarded by its resourceVersion, so a
/// concurrent change wins and the next sync decides again).
async fn set_owner_refs(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    obj: &Value,
    refs: Vec<Value>,
) -> Option<Value> {
    let body = json!({"metadata": {
        "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        "resourceVersion": obj["metadata"]["resourceVersion"],
        "uid": obj["metadata"]["uid"],
    }});
    send(
        client,
        http::Method::PATCH,
        object_path(api_version, plural, obj),
        "application/merge-patch+json",
        &body,
    )
    .await
    .inspect_err(|e| {
        tracing::debug!(error = %e, "owner reference change failed; the next sync retries");
    })
    .ok()
}

/// Makes `reference` the controller of `obj` (of collection `api_version`/`plural`);
/// the object as updated, or None if the change failed.
pub async fn adopt(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    obj: &Value,
    reference: Value,
) -> Option<Value> {
    let mut refs: Vec<Value> = obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    refs.retain(|r| r["uid"] != reference["uid"]);
    refs.push(reference);
    set_owner_refs(client, api_version, plural, obj, refs).await
}

/// Drops the reference to `owner_uid` from `obj`.
pub async fn release(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    obj: &Value,
    owner_uid: &str,
) -> Option<Value> {
    let refs: Vec<Value> = obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["uid"] != owner_uid)
        .cloned()
        .collect();
    set_owner_refs(client, api_version, plural, obj, refs).await
}

/// Creates `n` pods from `template` in batches of 1, 2, 4, … (Kubernetes' slow start:
/// a template that fails costs one request, not hundreds). Returns the names made and
/// the first error.
pub async fn create_in_batches(
    client: &kube::Client,
    ns: &str,
    template: &Value,
    n: usize,
) -> (Vec<String>, Option<String>) {
    let path = format!("/api/v1/namespaces/{ns}/pods");
    let mut made = Vec::new();
    let mut batch = 1;
    while made.len() < n {
        let size = batch.min(n - made.len());
        let results = join_all((0..size).map(|_| {
            send(
                client,
                http::Method::POST,
                path.clone(),
                "application/json",
                template,
            )
        }))
        .await;
        let mut err = None;
        for r in results {
            match r {
                Ok(p) => made.push(p["metadata"]["name"].as_str().unwrap_or("").to_string()),
                Err(e) => err = Some(api_message(&e)),
            }
        }
        if err.is_some() {
            return (made, err);
        }
        batch *= 2;
    }
    (made, None)
}

/// Deletes pods at once, each guarded by its uid.
pub async fn delete_pods(client: &kube::Client, pods: &[Value]) -> Vec<Result<(), String>> {
    delete_pods_with(client, pods, None).await
}

/// As [`delete_pods`], with a grace period (0 for pods whose node is gone: no kubelet
/// is left to finish them, as Kubernetes' pod GC knows).
pub async fn delete_pods_with(
    client: &kube::Client,
    pods: &[Value],
    grace: Option<i64>,
) -> Vec<Result<(), String>> {
    join_all(pods.iter().map(|p| async move {
        let mut body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": p["metadata"]["uid"]}});
        if let Some(g) = grace {
            body["gracePeriodSeconds"] = json!(g);
        }
        match send(client, http::Method::DELETE, object_path("v1", "pods", p), "application/json", &body).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_message(&e)),
        }
    }))
    .await
}

/// What a controller's sync acts through: the API, events on the owner, and the
/// owner's key for its expectations.
pub struct Act<'a> {
    pub client: &'a kube::Client,
    pub recorder: &'a skiff_kube::events::Recorder,
    /// The owner as the informers hold it (its events name it).
    pub owner: &'a Value,
    pub key: &'a str,
}

impl Act<'_> {
    pub fn event(&self, kind: &'static str, reason: &'static str, message: String) {
        self.recorder.record(self.owner, kind, reason, message);
    }

    /// Deletes the owner's `victims`, expecting their deletions, with Kubernetes'
    /// SuccessfulDelete and FailedDelete (`<failed>: <error>`) events; returns the last
    /// error.
    pub async fn delete_pods(
        &self,
        exp: &mut Expectations,
        victims: &[Value],
        failed: &str,
    ) -> Option<String> {
        if victims.is_empty() {
            return None;
        }
        let uids = victims
            .iter()
            .map(|p| skiff_kube::reflect::uid(p).to_string());
        exp.expect_deletes(self.key, uids);
        let mut last = None;
        for (p, r) in victims.iter().zip(delete_pods(self.client, victims).await) {
            let name = skiff_kube::reflect::names(p).1;
            match r {
                Ok(()) => self.event("Normal", "SuccessfulDelete", format!("Deleted pod: {name}")),
                Err(e) => {
                    exp.observed_delete(self.key, skiff_kube::reflect::uid(p));
                    self.event("Warning", "FailedDelete", format!("{failed}: {e}"));
                    last = Some(e);
                }
            }
        }
        last
    }
}

/// Whether `current` already says everything `want` does (and no conditions it drops).
pub fn status_matches(current: &Value, want: &Value) -> bool {
    let Some(w) = want.as_object() else {
        return false;
    };
    w.iter().all(|(k, v)| &current[k] == v)
        && (w.contains_key("conditions")
            || current["conditions"]
                .as_array()
                .is_none_or(|c| c.is_empty()))
}

/// Replaces the object's status through its `status` subresource, unless it already
/// says all of that.
pub async fn put_status(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    obj: &Value,
    status: Value,
) {
    if status_matches(&obj["status"], &status) {
        return;
    }
    let mut o = obj.clone();
    o["status"] = status;
    let path = format!("{}/status", object_path(api_version, plural, obj));
    if let Err(e) = send(client, http::Method::PUT, path, "application/json", &o).await {
        tracing::debug!(error = %e, "status write failed; the next sync retries");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_until_its_earliest_time() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let q = Requeue::new(tx);
        let ms = Duration::from_millis;
        q.after("k".into(), ms(300));
        q.after("k".into(), ms(600)); // later: nothing changes
        q.after("k".into(), ms(100)); // sooner: this one counts
        q.after("other".into(), ms(100));
        assert_eq!(q.waiting(), 2);
        let t0 = tokio::time::Instant::now();
        let mut got = Vec::new();
        while let Ok(Some(k)) = tokio::time::timeout(ms(900), rx.recv()).await {
            got.push(k);
        }
        got.sort();
        assert_eq!(got, ["k", "other"], "each key once");
        assert!(t0.elapsed() >= ms(900), "listened past every wait");
        assert_eq!(q.waiting(), 0);
    }

    #[test]
    fn expectations_hold_a_sync_until_seen() {
        let mut e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect_creates("ns/a", 2);
        e.expect_deletes("ns/a", ["u1".to_string()].into_iter());
        assert!(!e.satisfied("ns/a"));
        e.observed_create("ns/a");
        e.observed_create("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.observed_delete("ns/a", "u1");
        assert!(e.satisfied("ns/a"));
        e.expect_creates("ns/a", 3);
        e.lower_creates("ns/a", 3);
        assert!(e.satisfied("ns/a"));
    }

    #[test]
    fn a_status_with_conditions_it_would_drop_does_not_match() {
        let c = json!([{"type": "ReplicaFailure", "status": "True"}]);
        let st = json!({"replicas": 2, "conditions": c});
        assert!(!status_matches(&st, &json!({"replicas": 2})));
        assert!(status_matches(
            &json!({"replicas": 2, "x": 1}),
            &json!({"replicas": 2})
        ));
    }

    #[test]
    fn controller_refs() {
        let owner = json!({"metadata": {"name": "web", "uid": "u"}});
        let r = controller_ref("apps/v1", "ReplicaSet", &owner);
        let pod = json!({"metadata": {"ownerReferences": [{"kind": "Node", "name": "n", "uid": "x"}, r]}});
        assert_eq!(
            controller_of(&pod),
            Some(ControllerRef {
                kind: "ReplicaSet".into(),
                name: "web".into(),
                uid: "u".into()
            })
        );
        assert_eq!(
            object_path(
                "apps/v1",
                "replicasets",
                &json!({"metadata": {"name": "a", "namespace": "n"}})
            ),
            "/apis/apps/v1/namespaces/n/replicasets/a"
        );
    }
}
