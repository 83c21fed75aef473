//! What a controller owns, as Kubernetes' `ControllerRefManager` decides: an object
//! (a pod, or a Deployment's ReplicaSet) whose controller reference names the owner is
//! its own while the owner still claims it (selector, and for StatefulSets the name);
//! an orphan it claims is adopted; an owned object it no longer claims is released. A
//! deleting owner adopts and releases nothing.
//!
//! [`Pods`] is the view a controller kind keeps of the pods it may claim (its own and
//! orphans, by namespace) and tells which owners each change concerns.

use crate::control::Dirty;
use crate::owner::{self, Expectations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;
use skiff_kube::reflect::Change;
use skiff_validation::labels::Selector;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// An owner's pods after one claim.
#[derive(Debug, Default)]
pub struct Claim<'a> {
    /// Its pods, adopted ones included.
    pub mine: Vec<&'a Value>,
    pub adopt: Vec<&'a Value>,
    pub release: Vec<&'a Value>,
}

/// Claims `pods` (of the owner's namespace) for `owner`; `claims` says whether the
/// owner would have the pod as it is now.
pub fn claim<'a>(owner: &Value, pods: &[&'a Value], claims: impl Fn(&Value) -> bool) -> Claim<'a> {
    let uid = owner["metadata"]["uid"].as_str().unwrap_or("");
    let deleting = !owner["metadata"]["deletionTimestamp"].is_null();
    let mut out = Claim::default();
    for &p in pods {
        match owner::controller_of(p) {
            Some(c) if c.uid == uid => {
                if claims(p) {
                    out.mine.push(p);
                } else if !deleting {
                    out.release.push(p);
                }
            }
            Some(_) => {}
            None => {
                if !deleting && p["metadata"]["deletionTimestamp"].is_null() && claims(p) {
                    out.adopt.push(p);
                    out.mine.push(p);
                }
            }
        }
    }
    out
}

/// When to sync again an owner that could not adopt (its deletion is on the way, or
/// the API could not be read).
pub const ADOPTION_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A kind of owner: what its controller references say, and where it is read.
pub struct OwnerKind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl OwnerKind {
    /// The controller reference to an owner of this kind.
    pub fn controller_ref(&self, owner: &ObjectMeta) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            name: owner.name.clone().unwrap_or_default(),
            uid: owner.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// Whether `owner` may adopt: read afresh, it is the same object and is not being
/// deleted (the watch may lag a deletion; Kubernetes rechecks the same way before it
/// adopts, so that a deleted owner's garbage collection does not take what it adopted).
pub async fn can_adopt(client: &kube::Client, owner: &Value, kind: &OwnerKind) -> bool {
    let path = owner::object_path(kind.api_version, kind.plural, owner);
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("valid request");
    match client.request::<Value>(req).await {
        Ok(fresh) => {
            fresh["metadata"]["uid"] == owner["metadata"]["uid"]
                && fresh["metadata"]["deletionTimestamp"].is_null()
        }
        Err(e) => {
            tracing::debug!(error = %e, "could not recheck an owner before adopting");
            false
        }
    }
}

/// Carries out a claim's adoptions and releases of objects of collection
/// `api_version`/`plural` (each guarded by the object's resourceVersion; a lost race
/// is settled by the next sync). Returns the objects as updated, or None if the claim
/// must not be acted on: it adopts, and the owner fails [`can_adopt`].
pub async fn settle(
    client: &kube::Client,
    (api_version, plural): (&str, &str),
    claimed: &Claim<'_>,
    owner: &Value,
    kind: &OwnerKind,
) -> Option<Vec<Value>> {
    if !claimed.adopt.is_empty() && !can_adopt(client, owner, kind).await {
        return None;
    }
    let uid = owner["metadata"]["uid"].as_str().unwrap_or("");
    let reference = owner::controller_ref(kind.api_version, kind.kind, owner);
    let mut updated = Vec::new();
    for o in &claimed.adopt {
        updated.extend(owner::adopt(client, api_version, plural, o, reference.clone()).await);
    }
    for o in &claimed.release {
        updated.extend(owner::release(client, api_version, plural, o, uid).await);
    }
    Some(updated)
}

/// An owner's `spec.selector`, parsed once for a sync over many pods. An empty or
/// invalid selector selects nothing, as for the workload kinds.
pub struct OwnerSelector(Option<Selector>);

impl OwnerSelector {
    pub fn of(owner: &Value) -> OwnerSelector {
        OwnerSelector(
            Selector::from_label_selector(&owner["spec"]["selector"])
                .ok()
                .filter(|s| !s.is_empty()),
        )
    }

    pub fn selects(&self, pod: &Value) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.matches(&labels(&pod["metadata"]["labels"])))
    }
}

/// Whether the owner's `spec.selector` selects the pod.
pub fn selects(owner: &Value, pod: &Value) -> bool {
    OwnerSelector::of(owner).selects(pod)
}

/// A label map as the selector matches it.
pub fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Whether a pod is one a controller of `kind` could hold: it names one as its
/// controller, or no controller at all.
pub fn owned_by_or_orphan(pod: &Value, kind: &str) -> bool {
    owner::controller_of(pod).is_none_or(|c| c.kind == kind)
}

/// The pods a controller kind may claim, by namespace and name.
#[derive(Default)]
pub struct Pods {
    by_ns: HashMap<String, HashMap<String, Arc<Value>>>,
}

fn ns_name(p: &Value) -> (String, String) {
    let m = &p["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_string(),
        m["name"].as_str().unwrap_or("").to_string(),
    )
}

impl Pods {
    pub fn in_namespace(&self, ns: &str) -> Vec<&Value> {
        self.by_ns
            .get(ns)
            .map(|m| m.values().map(|p| &**p).collect())
            .unwrap_or_default()
    }

    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.by_ns.values().flat_map(|m| m.values().map(|p| &**p))
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<&Value> {
        self.by_ns.get(ns)?.get(name).map(|p| &**p)
    }

    /// Claims the pods of `owner`'s namespace as `claims` says, carries out the
    /// adoptions and releases, and returns the owner's pods; None if the claim must
    /// not be acted on ([`settle`]).
    pub async fn claim_for(
        &self,
        client: &kube::Client,
        owner: &Value,
        kind: &OwnerKind,
        claims: impl Fn(&Value) -> bool,
    ) -> Option<Vec<Value>> {
        let ns = owner["metadata"]["namespace"].as_str().unwrap_or("");
        let claimed = claim(owner, &self.in_namespace(ns), claims);
        settle(client, ("v1", "pods"), &claimed, owner, kind).await?;
        Some(claimed.mine.into_iter().cloned().collect())
    }

    /// Takes in `c`. The owners it concerns (of `owners`, keyed `ns/name`) are marked
    /// dirty: the pod's controller if it is of `kind`, or for an orphan each owner whose
    /// `claims` holds, for the pod as it was and as it is. `exp` learns of creations
    /// and deletions seen, a relist's too (as client-go's Replace delivers them): a
    /// pod first seen in a relist, or missing from one, must not leave its owner
    /// waiting out the expectations' timeout.
    pub fn apply(
        &mut self,
        c: Change,
        kind: &str,
        owners: &HashMap<String, Arc<Value>>,
        claims: impl Fn(&Value, &Value) -> bool,
        dirty: &mut Dirty,
        mut exp: Option<&mut Expectations>,
    ) {
        let concerned = |p: &Value| -> Vec<String> {
            let (ns, _) = ns_name(p);
            match owner::controller_of(p) {
                Some(c) if c.kind == kind => vec![format!("{ns}/{}", c.name)],
                Some(_) => Vec::new(),
                None => owners
                    .iter()
                    .filter(|(k, o)| {
                        k.strip_prefix(&ns).is_some_and(|r| r.starts_with('/')) && claims(o, p)
                    })
                    .map(|(k, _)| k.clone())
                    .collect(),
            }
        };
        match c {
            Change::Reset(items) => {
                let listed: HashSet<(String, String)> = items.iter().map(|p| ns_name(p)).collect();
                let gone: Vec<Arc<Value>> = self
                    .by_ns
                    .values()
                    .flat_map(|m| m.values())
                    .filter(|p| !listed.contains(&ns_name(p)))
                    .cloned()
                    .collect();
                for p in gone {
                    self.remove(p, &concerned, dirty, exp.as_deref_mut());
                }
                for p in items {
                    self.upsert(p, &concerned, dirty, exp.as_deref_mut());
                }
                dirty.extend(owners.keys().cloned());
            }
            Change::Apply(p) => self.upsert(p, &concerned, dirty, exp),
            Change::Delete(p) => self.remove(p, &concerned, dirty, exp),
        }
    }

    fn upsert(
        &mut self,
        p: Arc<Value>,
        concerned: &dyn Fn(&Value) -> Vec<String>,
        dirty: &mut Dirty,
        mut exp: Option<&mut Expectations>,
    ) {
        let (ns, name) = ns_name(&p);
        let uid = p["metadata"]["uid"].as_str().unwrap_or("");
        // The same name with another uid: the pod held was deleted and this one made.
        let replaced = self
            .by_ns
            .get(&ns)
            .and_then(|m| m.get(&name))
            .filter(|o| o["metadata"]["uid"] != p["metadata"]["uid"])
            .cloned();
        if let Some(gone) = replaced {
            self.remove(gone, concerned, dirty, exp.as_deref_mut());
        }
        let now = concerned(&p);
        let old = self.get(&ns, &name);
        if let Some(exp) = exp {
            for o in &now {
                if old.is_none() {
                    exp.observed_create(o);
                }
                if !p["metadata"]["deletionTimestamp"].is_null() {
                    exp.observed_delete(o, uid);
                }
            }
        }
        // A pod whose labels or references changed may leave one owner for another.
        if let Some(old) = old {
            dirty.extend(concerned(old));
        }
        dirty.extend(now);
        self.by_ns.entry(ns).or_default().insert(name, p);
    }

    fn remove(
        &mut self,
        p: Arc<Value>,
        concerned: &dyn Fn(&Value) -> Vec<String>,
        dirty: &mut Dirty,
        mut exp: Option<&mut Expectations>,
    ) {
        let (ns, name) = ns_name(&p);
        let mut was = concerned(&p);
        if let Some(old) = self.get(&ns, &name) {
            was.extend(concerned(old));
        }
        for o in &was {
            if let Some(exp) = exp.as_deref_mut() {
                exp.observed_delete(o, p["metadata"]["uid"].as_str().unwrap_or(""));
            }
        }
        dirty.extend(was);
        if let Some(m) = self.by_ns.get_mut(&ns) {
            m.remove(&name);
            if m.is_empty() {
                self.by_ns.remove(&ns);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner(deleting: bool) -> Value {
        let mut o = json!({"metadata": {"name": "ds", "namespace": "n", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}}});
        if deleting {
            o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        o
    }

    fn pod(name: &str, app: &str, controller: Option<(&str, &str)>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "n", "uid": format!("{name}-uid"),
            "labels": {"app": app}}});
        if let Some((kind, uid)) = controller {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "ds", "uid": uid, "controller": true}]);
        }
        p
    }

    fn names(v: &[&Value]) -> Vec<String> {
        v.iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn claims_adopts_and_releases_as_kubernetes() {
        let own = pod("own", "a", Some(("DaemonSet", "u1")));
        let moved = pod("moved", "b", Some(("DaemonSet", "u1")));
        let orphan = pod("orphan", "a", None);
        let stranger = pod("stranger", "b", None);
        let foreign = pod("foreign", "a", Some(("ReplicaSet", "u2")));
        let mut dying = pod("dying", "a", None);
        dying["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let all = [&own, &moved, &orphan, &stranger, &foreign, &dying];
        let c = claim(&owner(false), &all, |p| selects(&owner(false), p));
        assert_eq!(names(&c.mine), ["own", "orphan"]);
        assert_eq!(names(&c.adopt), ["orphan"]);
        assert_eq!(names(&c.release), ["moved"]);
        // A deleting owner keeps what it has and takes nothing.
        let c = claim(&owner(true), &all, |p| selects(&owner(true), p));
        assert_eq!(names(&c.mine), ["own"]);
        assert!(c.adopt.is_empty() && c.release.is_empty());
    }

    #[test]
    fn a_change_concerns_the_owners_of_the_pod_as_it_was_and_is() {
        let owners: HashMap<String, Arc<Value>> = [
            ("n/ds".to_string(), Arc::new(owner(false))),
            ("other/ds".to_string(), Arc::new(owner(false))),
        ]
        .into();
        let mut pods = Pods::default();
        let mut exp = Expectations::default();
        let mut dirty = Dirty::new();
        let apply = |pods: &mut Pods, exp: &mut Expectations, c: Change| {
            let mut dirty = Dirty::new();
            pods.apply(c, "DaemonSet", &owners, selects, &mut dirty, Some(exp));
            let mut d: Vec<String> = dirty.into_iter().collect();
            d.sort();
            d
        };
        pods.apply(
            Change::reset(vec![]),
            "DaemonSet",
            &owners,
            selects,
            &mut dirty,
            None,
        );
        assert_eq!(dirty.len(), 2);
        exp.expect_creates("n/ds", 1);
        let own = pod("p", "a", Some(("DaemonSet", "u1")));
        assert_eq!(
            apply(&mut pods, &mut exp, Change::apply(own.clone())),
            ["n/ds"]
        );
        assert!(exp.satisfied("n/ds"), "the creation was seen");
        // The reference removed by hand: still the set's business (to adopt again).
        let orphan = pod("p", "a", None);
        assert_eq!(apply(&mut pods, &mut exp, Change::apply(orphan)), ["n/ds"]);
        // Taken by another kind's controller: leaves the view, the set looks again.
        let foreign = pod("p", "a", Some(("ReplicaSet", "u2")));
        assert_eq!(
            apply(&mut pods, &mut exp, Change::delete(foreign)),
            ["n/ds"]
        );
        assert!(pods.in_namespace("n").is_empty());
        // An orphan no owner selects concerns nobody.
        let stray = pod("s", "z", None);
        assert!(apply(&mut pods, &mut exp, Change::apply(stray)).is_empty());
        assert_eq!(pods.get("n", "s").map(|_| ()), Some(()));
    }

    #[test]
    fn a_relist_settles_expectations_as_the_events_it_replaces() {
        let owners: HashMap<String, Arc<Value>> =
            [("n/ds".to_string(), Arc::new(owner(false)))].into();
        let mut pods = Pods::default();
        let mut exp = Expectations::default();
        let mut dirty = Dirty::new();
        let mut apply = |pods: &mut Pods, exp: &mut Expectations, c: Change| {
            pods.apply(c, "DaemonSet", &owners, selects, &mut dirty, Some(exp));
        };
        let old = pod("old", "a", Some(("DaemonSet", "u1")));
        let same_name = pod("same", "a", Some(("DaemonSet", "u1")));
        apply(&mut pods, &mut exp, Change::reset(vec![old, same_name]));
        // A creation and two deletions were issued; their events were lost with the
        // watch, and the relist shows their outcome.
        exp.expect_creates("n/ds", 2);
        exp.expect_deletes(
            "n/ds",
            ["old-uid".to_string(), "same-uid".to_string()].into_iter(),
        );
        assert!(!exp.satisfied("n/ds"));
        let made = pod("made", "a", Some(("DaemonSet", "u1")));
        let mut remade = pod("same", "a", Some(("DaemonSet", "u1")));
        remade["metadata"]["uid"] = json!("same-uid-2");
        apply(&mut pods, &mut exp, Change::reset(vec![made, remade]));
        assert!(exp.satisfied("n/ds"), "{exp:?}");
        assert!(pods.get("n", "old").is_none());
        assert_eq!(
            pods.get("n", "same").unwrap()["metadata"]["uid"],
            "same-uid-2"
        );
    }

    /// A client whose API answers a GET with `owner` and counts every other request.
    fn api(owner: Value) -> (kube::Client, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let writes = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = writes.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let body = if req.method() == http::Method::GET {
                owner.clone()
            } else {
                seen.fetch_add(1, Ordering::SeqCst);
                json!({"metadata": {"name": "orphan", "namespace": "n"}})
            };
            async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    serde_json::to_vec(&body).unwrap(),
                )))
            }
        });
        (kube::Client::new(svc, "default"), writes)
    }

    #[tokio::test]
    async fn an_owner_read_afresh_as_deleting_adopts_nothing() {
        const KIND: OwnerKind = OwnerKind {
            api_version: "apps/v1",
            kind: "DaemonSet",
            plural: "daemonsets",
        };
        let orphan = pod("orphan", "a", None);
        let seen = owner(false);
        let c = claim(&seen, &[&orphan], |p| selects(&seen, p));
        assert_eq!(names(&c.adopt), ["orphan"]);
        // The watch lags: the API already has the owner deleting.
        let (client, writes) = api(owner(true));
        assert!(
            settle(&client, ("v1", "pods"), &c, &seen, &KIND)
                .await
                .is_none()
        );
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 0);
        // A different object of the same name (recreated) may not adopt either.
        let mut other = owner(false);
        other["metadata"]["uid"] = json!("u9");
        let (client, writes) = api(other);
        assert!(
            settle(&client, ("v1", "pods"), &c, &seen, &KIND)
                .await
                .is_none()
        );
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 0);
        // As the watch shows it: the orphan is adopted.
        let (client, writes) = api(owner(false));
        let updated = settle(&client, ("v1", "pods"), &c, &seen, &KIND).await;
        assert_eq!(updated.map(|u| u.len()), Some(1));
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
