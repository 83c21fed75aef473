//! The garbage collector: the ownerReferences graph over every kind, kept from metadata
//! watches, and Kubernetes' three propagation policies.
//!
//! - Background: a dependent whose owners are all gone is deleted (its own dependents
//!   follow the same way); dangling references beside a live owner are removed.
//! - Foreground: an owner marked `foregroundDeletion` has its dependents deleted
//!   (in the foreground too); once no dependent with `blockOwnerDeletion` is left, the
//!   finalizer goes and the owner with it.
//! - Orphan: an owner marked `orphan` has its reference removed from every dependent,
//!   then the finalizer.
//!
//! `plan` is the pure decision over a snapshot of the graph; `run` keeps the graph,
//! confirms absent owners with a live read (the graph may lag a fresh owner), and acts.

use crate::discovered::Kinds;
use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use skiff_types::registry::ResourceInfo;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub block: bool,
    pub controller: bool,
}

/// One object of the graph: what the collector needs of its metadata.
#[derive(Debug, Clone)]
pub struct Node {
    pub resource: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub owners: Vec<OwnerRef>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn from_metadata(resource: Arc<ResourceInfo>, obj: &Value) -> Option<Node> {
        let m = &obj["metadata"];
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let uid = s(&m["uid"]);
        if uid.is_empty() {
            return None;
        }
        Some(Node {
            resource,
            namespace: m["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            name: s(&m["name"]),
            uid,
            resource_version: s(&m["resourceVersion"]),
            owners: m["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| OwnerRef {
                    api_version: s(&o["apiVersion"]),
                    kind: s(&o["kind"]),
                    name: s(&o["name"]),
                    uid: s(&o["uid"]),
                    block: o["blockOwnerDeletion"].as_bool().unwrap_or(false),
                    controller: o["controller"].as_bool().unwrap_or(false),
                })
                .collect(),
            deleting: !m["deletionTimestamp"].is_null(),
            finalizers: m["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// What the collector does next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Delete a dependent (after confirming, for `Absent`, that its owners are gone).
    Delete {
        uid: String,
        foreground: bool,
        reason: Reason,
    },
    /// Drop references to these owners from a dependent.
    RemoveOwners { uid: String, owners: Vec<String> },
    /// Drop a finalizer the collector handles from an owner that is done.
    RemoveFinalizer {
        uid: String,
        finalizer: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Every owner is gone (to be confirmed against the API).
    OwnersAbsent(Vec<String>),
    /// Its owner is being deleted in the foreground.
    ForegroundOwner,
}

/// The decisions for the whole graph, keyed by uid.
pub fn plan(graph: &HashMap<String, Node>) -> Vec<Action> {
    let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in graph.values() {
        for o in &n.owners {
            dependents.entry(o.uid.as_str()).or_default().push(n);
        }
    }
    let mut out = Vec::new();
    let mut deleting_now: HashSet<&str> = HashSet::new();
    for owner in graph.values().filter(|n| n.deleting) {
        let deps = dependents
            .get(owner.uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if owner.has_finalizer(ORPHAN) {
            for d in deps {
                out.push(Action::RemoveOwners {
                    uid: d.uid.clone(),
                    owners: vec![owner.uid.clone()],
                });
            }
            if deps.is_empty() {
                out.push(Action::RemoveFinalizer {
                    uid: owner.uid.clone(),
                    finalizer: ORPHAN,
                });
            }
        } else if owner.has_finalizer(FOREGROUND) {
            for d in deps.iter().filter(|d| !d.deleting) {
                deleting_now.insert(&d.uid);
                out.push(Action::Delete {
                    uid: d.uid.clone(),
                    foreground: true,
                    reason: Reason::ForegroundOwner,
                });
            }
            let blocked = deps
                .iter()
                .any(|d| d.owners.iter().any(|o| o.uid == owner.uid && o.block));
            if !blocked {
                out.push(Action::RemoveFinalizer {
                    uid: owner.uid.clone(),
                    finalizer: FOREGROUND,
                });
            }
        }
    }
    for d in graph.values().filter(|n| !n.owners.is_empty()) {
        if deleting_now.contains(d.uid.as_str()) {
            continue;
        }
        let absent: Vec<String> = d
            .owners
            .iter()
            .filter(|o| !graph.contains_key(&o.uid))
            .map(|o| o.uid.clone())
            .collect();
        if absent.is_empty() {
            continue;
        }
        if absent.len() == d.owners.len() {
            if !d.deleting {
                out.push(Action::Delete {
                    uid: d.uid.clone(),
                    foreground: false,
                    reason: Reason::OwnersAbsent(absent),
                });
            }
        } else {
            out.push(Action::RemoveOwners {
                uid: d.uid.clone(),
                owners: absent,
            });
        }
    }
    out
}

/// Whether the collector watches a kind: every one that can be listed, watched and
/// deleted, but Events (too many, and never owners).
pub fn watched(r: &ResourceInfo) -> bool {
    !r.virtual_create_only
        && !r.is_storage_alias()
        && ["list", "watch", "delete"]
            .iter()
            .all(|v| r.verbs.contains(v))
        && r.plural != "events"
}

fn collection_path(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("/api/{}/{}", r.version, r.plural)
    } else {
        format!("/apis/{}/{}/{}", r.group, r.version, r.plural)
    }
}

pub(crate) fn object_path(r: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    match (r.namespaced(), namespace) {
        (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}/{name}", r.plural),
        _ => format!("{base}/{}/{name}", r.plural),
    }
}

/// Runs the collector until `shutdown`.
pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::channel::<(Arc<ResourceInfo>, Change)>(4096);
    let kinds = Kinds::default();
    for r in kinds.all().into_iter().filter(|r| watched(r)) {
        watch_kind(&client, r, tx.clone());
    }
    follow_discovery(client.clone(), kinds.clone(), tx);
    let mut graph: HashMap<String, Node> = HashMap::new();
    // What was last tried per action, so a failing one waits before the next attempt.
    let mut tried: HashMap<Action, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            c = rx.recv() => {
                let Some((r, change)) = c else { return };
                let mut relevant = absorb(&mut graph, r, change);
                // Take what else is queued before deciding: one pass per burst.
                while let Ok((r, change)) = rx.try_recv() {
                    relevant |= absorb(&mut graph, r, change);
                }
                if !relevant {
                    continue;
                }
            }
            // Retries, and owners confirmed absent only after a while.
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let actions = plan(&graph);
        let now = Instant::now();
        tried.retain(|a, at| actions.contains(a) && now.duration_since(*at) < RETRY);
        for a in actions {
            if tried.contains_key(&a) {
                continue;
            }
            tried.insert(a.clone(), now);
            if let Err(e) = act(&client, &kinds, &graph, &a).await {
                tracing::debug!(action = ?a, error = %e, "garbage collector action failed; will retry");
            }
        }
    }
}

const RETRY: Duration = Duration::from_secs(10);

/// How often discovery is asked for kinds CRDs added (kube's collector resyncs its
/// monitors from discovery every 30 s).
const DISCOVERY_RESYNC: Duration = Duration::from_secs(10);

/// Feeds a kind's metadata changes into the collector.
fn watch_kind(
    client: &kube::Client,
    r: Arc<ResourceInfo>,
    tx: mpsc::Sender<(Arc<ResourceInfo>, Change)>,
) {
    let mut changes = reflect::watch_metadata(client.clone(), &collection_path(&r));
    tokio::spawn(async move {
        while let Some(c) = changes.recv().await {
            if tx.send((r.clone(), c)).await.is_err() {
                return;
            }
        }
    });
}

/// Starts watching kinds as discovery reports them.
fn follow_discovery(
    client: kube::Client,
    kinds: Kinds,
    tx: mpsc::Sender<(Arc<ResourceInfo>, Change)>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DISCOVERY_RESYNC);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            match kinds.refresh(&client).await {
                Ok(added) => {
                    for r in added.into_iter().filter(|r| watched(r)) {
                        tracing::info!(group = %r.group, resource = %r.plural, "garbage collector watching");
                        watch_kind(&client, r, tx.clone());
                    }
                }
                Err(e) => tracing::debug!(error = %e, "garbage collector discovery failed"),
            }
        }
    });
}

/// Applies a change to the graph; true when it can change what the collector does (a
/// new or gone object, or other owners, deletion state or finalizers), false for the
/// status churn that makes up most events.
fn absorb(graph: &mut HashMap<String, Node>, r: Arc<ResourceInfo>, change: Change) -> bool {
    match change {
        Change::Reset(items) => {
            graph.retain(|_, n| !Arc::ptr_eq(&n.resource, &r));
            for o in items {
                if let Some(n) = Node::from_metadata(r.clone(), &o) {
                    graph.insert(n.uid.clone(), n);
                }
            }
            true
        }
        Change::Apply(o) => {
            let Some(n) = Node::from_metadata(r, &o) else {
                return false;
            };
            let same = graph.get(&n.uid).is_some_and(|old| {
                old.owners == n.owners
                    && old.deleting == n.deleting
                    && old.finalizers == n.finalizers
            });
            graph.insert(n.uid.clone(), n);
            !same
        }
        Change::Delete(o) => {
            if let Some(uid) = o["metadata"]["uid"].as_str() {
                graph.remove(uid);
            }
            true
        }
    }
}

/// `d`'s owner references without `drop`, as written back: every other reference
/// keeps its `controller` and `blockOwnerDeletion` flags.
fn refs_without(d: &Node, drop: &[String]) -> Value {
    let keep: Vec<Value> = d
        .owners
        .iter()
        .filter(|o| !drop.contains(&o.uid))
        .map(|o| {
            let mut v =
                json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid});
            if o.controller {
                v["controller"] = json!(true);
            }
            if o.block {
                v["blockOwnerDeletion"] = json!(true);
            }
            v
        })
        .collect();
    if keep.is_empty() {
        Value::Null
    } else {
        json!(keep)
    }
}

#[derive(Debug, thiserror::Error)]
enum ActError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

async fn request(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    content_type: &str,
    body: Value,
) -> Result<(), ActError> {
    match crate::owner::send(client, method, path.to_string(), content_type, &body).await {
        Ok(_) => Ok(()),
        // Gone already, or changed under us (the next pass sees the new state).
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the owner `o` of `dep` really is gone: no object by that name, or another one.
async fn owner_absent(
    client: &kube::Client,
    kinds: &Kinds,
    dep: &Node,
    o: &OwnerRef,
) -> Result<bool, ActError> {
    let Some(r) = kinds.get(&o.api_version, &o.kind) else {
        // A kind discovery does not know (yet): kube's collector cannot map it either,
        // and waits rather than deleting the dependent.
        return Err(ActError::Other(format!(
            "owner kind {} {} is not served",
            o.api_version, o.kind
        )));
    };
    let ns = r.namespaced().then_some(dep.namespace.as_deref()).flatten();
    let req = http::Request::get(object_path(&r, ns, &o.name))
        .header(
            http::header::ACCEPT,
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .map_err(|e| ActError::Other(e.to_string()))?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(v["metadata"]["uid"] != o.uid.as_str()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

async fn act(
    client: &kube::Client,
    kinds: &Kinds,
    graph: &HashMap<String, Node>,
    a: &Action,
) -> Result<(), ActError> {
    match a {
        Action::Delete {
            uid,
            foreground,
            reason,
        } => {
            let Some(d) = graph.get(uid) else {
                return Ok(());
            };
            if let Reason::OwnersAbsent(absent) = reason {
                for o in d.owners.iter().filter(|o| absent.contains(&o.uid)) {
                    if !owner_absent(client, kinds, d, o).await? {
                        return Ok(());
                    }
                }
            }
            tracing::info!(kind = %d.resource.kind, namespace = ?d.namespace, name = %d.name, ?reason, "garbage collector deleting");
            let policy = if *foreground {
                "Foreground"
            } else {
                "Background"
            };
            request(
                client,
                http::Method::DELETE,
                &object_path(&d.resource, d.namespace.as_deref(), &d.name),
                "application/json",
                json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy, "preconditions": {"uid": d.uid}}),
            )
            .await
        }
        Action::RemoveOwners { uid, owners } => {
            let Some(d) = graph.get(uid) else {
                return Ok(());
            };
            let keep = refs_without(d, owners);
            // resourceVersion makes a concurrent change a 409 (the next pass decides again).
            request(
                client,
                http::Method::PATCH,
                &object_path(&d.resource, d.namespace.as_deref(), &d.name),
                "application/merge-patch+json",
                json!({"metadata": {"ownerReferences": keep, "resourceVersion": d.resource_version, "uid": d.uid}}),
            )
            .await
        }
        Action::RemoveFinalizer { uid, finalizer } => {
            let Some(n) = graph.get(uid) else {
                return Ok(());
            };
            let keep: Vec<&String> = n.finalizers.iter().filter(|f| f != finalizer).collect();
            let keep = if keep.is_empty() {
                Value::Null
            } else {
                json!(keep)
            };
            request(
                client,
                http::Method::PATCH,
                &object_path(&n.resource, n.namespace.as_deref(), &n.name),
                "application/merge-patch+json",
                json!({"metadata": {"finalizers": keep, "resourceVersion": n.resource_version}}),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(plural: &str) -> Arc<ResourceInfo> {
        Kinds::default()
            .all()
            .into_iter()
            .find(|r| r.plural == plural)
            .unwrap()
    }

    fn node(
        plural: &str,
        uid: &str,
        owners: &[(&str, bool)],
        deleting: bool,
        fins: &[&str],
    ) -> Node {
        Node {
            resource: res(plural),
            namespace: Some("default".into()),
            name: uid.into(),
            uid: uid.into(),
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|(u, block)| OwnerRef {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: u.to_string(),
                    uid: u.to_string(),
                    block: *block,
                    controller: false,
                })
                .collect(),
            deleting,
            finalizers: fins.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn graph(nodes: Vec<Node>) -> HashMap<String, Node> {
        nodes.into_iter().map(|n| (n.uid.clone(), n)).collect()
    }

    #[test]
    fn background_deletes_orphans_and_trims_dangling_references() {
        let g = graph(vec![
            node("replicasets", "rs", &[], false, &[]),
            node("pods", "kept", &[("rs", true)], false, &[]),
            node("pods", "orphaned", &[("gone", true)], false, &[]),
            node(
                "pods",
                "half",
                &[("rs", false), ("gone", false)],
                false,
                &[],
            ),
            node("pods", "already", &[("gone", true)], true, &[]),
        ]);
        let mut p = plan(&g);
        p.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            p,
            vec![
                Action::Delete {
                    uid: "orphaned".into(),
                    foreground: false,
                    reason: Reason::OwnersAbsent(vec!["gone".into()]),
                },
                Action::RemoveOwners {
                    uid: "half".into(),
                    owners: vec!["gone".into()],
                },
            ]
        );
    }

    #[test]
    fn orphan_releases_dependents_then_the_owner() {
        let g = graph(vec![
            node("replicasets", "rs", &[], true, &[ORPHAN]),
            node("pods", "p", &[("rs", true)], false, &[]),
        ]);
        assert_eq!(
            plan(&g),
            vec![Action::RemoveOwners {
                uid: "p".into(),
                owners: vec!["rs".into()],
            }]
        );
        let g = graph(vec![node("replicasets", "rs", &[], true, &[ORPHAN])]);
        assert_eq!(
            plan(&g),
            vec![Action::RemoveFinalizer {
                uid: "rs".into(),
                finalizer: ORPHAN,
            }]
        );
    }

    #[test]
    fn foreground_waits_for_blocking_dependents() {
        let g = graph(vec![
            node("replicasets", "rs", &[], true, &[FOREGROUND]),
            node("pods", "blocks", &[("rs", true)], false, &[]),
            node("pods", "does-not", &[("rs", false)], false, &[]),
        ]);
        let mut p = plan(&g);
        p.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            p,
            vec![
                Action::Delete {
                    uid: "blocks".into(),
                    foreground: true,
                    reason: Reason::ForegroundOwner,
                },
                Action::Delete {
                    uid: "does-not".into(),
                    foreground: true,
                    reason: Reason::ForegroundOwner,
                },
            ]
        );
        // The blocking one is terminating: still no finalizer removal.
        let g = graph(vec![
            node("replicasets", "rs", &[], true, &[FOREGROUND]),
            node("pods", "blocks", &[("rs", true)], true, &[]),
        ]);
        assert!(plan(&g).is_empty());
        // Only non-blocking dependents left: the owner may go.
        let g = graph(vec![
            node("replicasets", "rs", &[], true, &[FOREGROUND]),
            node("pods", "does-not", &[("rs", false)], true, &[]),
        ]);
        assert_eq!(
            plan(&g),
            vec![Action::RemoveFinalizer {
                uid: "rs".into(),
                finalizer: FOREGROUND,
            }]
        );
    }

    #[test]
    fn trimmed_references_keep_their_flags() {
        let obj = json!({"metadata": {"uid": "p", "name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs", "controller": true, "blockOwnerDeletion": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "ghost"},
        ]}});
        let n = Node::from_metadata(res("pods"), &obj).unwrap();
        assert_eq!(
            refs_without(&n, &["ghost".to_string()]),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(
            refs_without(&n, &["ghost".to_string(), "rs".to_string()]),
            Value::Null
        );
    }

    #[test]
    fn owner_kinds_resolve_to_served_resources() {
        assert_eq!(
            Kinds::default()
                .get("apps/v1", "ReplicaSet")
                .unwrap()
                .plural,
            "replicasets"
        );
        assert_eq!(Kinds::default().get("v1", "Node").unwrap().plural, "nodes");
        assert!(Kinds::default().get("example.com/v1", "Widget").is_none());
        let all = Kinds::default().all();
        let watched: Vec<&str> = all
            .iter()
            .filter(|r| watched(r))
            .map(|r| &*r.plural)
            .collect();
        for p in ["pods", "replicasets", "deployments", "jobs", "configmaps"] {
            assert!(watched.contains(&p), "{p} not watched");
        }
        assert!(!watched.contains(&"events"));
        assert_eq!(
            object_path(&res("replicasets"), Some("ns"), "x"),
            "/apis/apps/v1/namespaces/ns/replicasets/x"
        );
        assert_eq!(object_path(&res("nodes"), None, "n"), "/api/v1/nodes/n");
    }
}
