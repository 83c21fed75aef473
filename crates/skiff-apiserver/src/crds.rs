//! The CustomResourceDefinition controllers of kube's apiextensions-apiserver, in one
//! loop: names (NamesAccepted, `status.acceptedNames`, conflicts within a group),
//! establishing (Established), `status.storedVersions`, the served kinds in the
//! registry, and the `customresourcecleanup` finalizer that deletes a CRD's objects
//! before the CRD goes. Fed by a watch-cache observer; writes through the server's own
//! object pipeline like any controller.

use crate::cache::{EventType, Observer, Stored};
use crate::custom::CLEANUP_FINALIZER;
use crate::registry::{Resource, Served, builtin, is_builtin};
use crate::request::Target;
use crate::request::system_write_options;
use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_crd::{Definition, Names};
use skiff_types::{Subresource, meta};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

const GROUP: &str = "apiextensions.k8s.io";
const PLURAL: &str = "customresourcedefinitions";

/// Keeps the CRDs as the cache sees them and wakes the loop on every change.
#[derive(Default)]
pub struct Crds {
    defs: parking_lot::Mutex<BTreeMap<String, Value>>,
    changed: Notify,
    /// What each CRD's versions compiled to, kept while its spec, accepted names and
    /// deletion state stay the same: status writes wake the loop too, and a schema can
    /// be most of a megabyte.
    built: parking_lot::Mutex<BTreeMap<String, Built>>,
}

struct Built {
    def: Definition,
    names: Names,
    terminating: bool,
    served: Vec<Resource>,
}

impl Crds {
    pub fn prefixes(&self) -> Vec<String> {
        vec![builtin(GROUP, PLURAL).prefix(None)]
    }
}

impl Observer for Crds {
    fn observe(&self, kind: EventType, obj: &Stored) {
        let mut defs = self.defs.lock();
        match kind {
            EventType::Deleted => {
                defs.remove(&obj.key);
            }
            _ => match serde_json::from_slice::<Value>(&obj.value) {
                Ok(v) => {
                    defs.insert(obj.key.clone(), v);
                }
                Err(e) => tracing::warn!(key = %obj.key, error = %e, "undecodable CRD"),
            },
        }
        self.changed.notify_one();
    }
}

/// What one pass decided for one CRD.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub name: String,
    pub accepted: Option<Names>,
    /// (reason, message) of NamesAccepted=False, or None when accepted.
    pub conflict: Option<(&'static str, String)>,
    pub established: bool,
    /// Being deleted, its objects not all gone yet: no new ones.
    pub terminating: bool,
    /// Being deleted at all (the Terminating condition stays, False once done).
    pub deleting: bool,
}

/// kube's naming controller: a CRD's names are accepted unless another CRD of the group
/// has accepted one of them (or a built-in kind holds it). Names accepted before are
/// held against every newcomer; among newcomers the earlier CRD wins. A CRD that was
/// accepted once keeps its accepted names while a later change conflicts.
pub fn decide(defs: &[(Value, Definition)]) -> Vec<Decision> {
    let previous: Vec<Option<Names>> = defs.iter().map(|(o, _)| previous_names(o)).collect();
    // Names newcomers were given in this pass, by index.
    let mut fresh: Vec<(usize, String, Names)> = Vec::new();
    let mut out = Vec::new();
    for (i, (obj, def)) in defs.iter().enumerate() {
        let taken: Vec<(String, Names)> = defs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(j, (_, d))| previous[j].clone().map(|n| (d.group.clone(), n)))
            .chain(fresh.iter().map(|(_, g, n)| (g.clone(), n.clone())))
            .collect();
        let conflict = names_conflict(def, &taken);
        let accepted = match &conflict {
            None => Some(def.names.clone()),
            Some(_) => previous[i].clone(),
        };
        if previous[i].is_none()
            && let Some(a) = &accepted
        {
            fresh.push((i, def.group.clone(), a.clone()));
        }
        let was_established = condition_true(obj, "Established");
        out.push(Decision {
            name: def.name.clone(),
            established: was_established || (conflict.is_none() && accepted.is_some()),
            accepted,
            conflict,
            terminating: meta::deletion_timestamp(obj).is_some()
                && meta::finalizers(obj).iter().any(|f| f == CLEANUP_FINALIZER),
            deleting: meta::deletion_timestamp(obj).is_some(),
        });
    }
    out
}

fn previous_names(obj: &Value) -> Option<Names> {
    let n = obj.pointer("/status/acceptedNames")?;
    serde_json::from_value::<Names>(n.clone())
        .ok()
        .filter(|n| !n.plural.is_empty())
}

fn condition_true(obj: &Value, ty: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

fn names_conflict(def: &Definition, taken: &[(String, Names)]) -> Option<(&'static str, String)> {
    let n = &def.names;
    if is_builtin(&def.group, &n.plural) {
        return Some((
            "PluralConflict",
            format!("{:?} is already in use", n.plural),
        ));
    }
    for (g, t) in taken.iter().filter(|(g, _)| *g == def.group) {
        let _ = g;
        let used =
            |s: &str| s == t.plural || s == t.singular || t.short_names.iter().any(|x| x == s);
        if used(&n.plural) {
            return Some((
                "PluralConflict",
                format!("{:?} is already in use", n.plural),
            ));
        }
        if used(&n.singular) {
            return Some((
                "SingularConflict",
                format!("{:?} is already in use", n.singular),
            ));
        }
        if let Some(s) = n.short_names.iter().find(|s| used(s)) {
            return Some(("ShortNamesConflict", format!("{s:?} is already in use")));
        }
        if n.kind == t.kind || n.kind == t.list_kind {
            return Some(("KindConflict", format!("{:?} is already in use", n.kind)));
        }
        if n.list_kind == t.kind || n.list_kind == t.list_kind {
            return Some((
                "ListKindConflict",
                format!("{:?} is already in use", n.list_kind),
            ));
        }
    }
    None
}

/// The loop: on every change, decide, serve, then write what changed in statuses and
/// finish deletions.
pub fn spawn(api: Arc<ApiServer>, crds: Arc<Crds>) {
    tokio::spawn(async move {
        loop {
            let again = reconcile(&api, &crds).await;
            if again {
                // Objects still going (their own finalizers): look again shortly.
                tokio::select! {
                    _ = crds.changed.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            } else {
                crds.changed.notified().await;
            }
        }
    });
}

/// One pass; true when a deletion is still waiting on objects.
async fn reconcile(api: &Arc<ApiServer>, crds: &Crds) -> bool {
    let mut defs: Vec<(Value, Definition)> = crds
        .defs
        .lock()
        .values()
        .filter_map(|v| Definition::from_crd(v).ok().map(|d| (v.clone(), d)))
        .collect();
    defs.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                meta::name(v).unwrap_or("").to_string(),
            )
        };
        key(&a.0).cmp(&key(&b.0))
    });
    let decisions = decide(&defs);
    api.registry.set_custom(crds.serve(&defs, &decisions));
    let mut waiting = false;
    for ((obj, def), d) in defs.iter().zip(&decisions) {
        if let Err(e) = write_status(api, obj, def, d).await {
            tracing::warn!(crd = %d.name, error = %e, "CRD status not written");
        }
        if d.terminating {
            match cleanup(api, def, d).await {
                Ok(done) => waiting |= !done,
                Err(e) => {
                    tracing::warn!(crd = %d.name, error = %e, "CRD cleanup failed");
                    waiting = true;
                }
            }
        }
    }
    waiting
}

impl Crds {
    /// The registry entries of every established CRD's served versions.
    fn serve(&self, defs: &[(Value, Definition)], decisions: &[Decision]) -> Vec<Resource> {
        let mut built = self.built.lock();
        let mut next = BTreeMap::new();
        let mut out = Vec::new();
        for ((_, def), d) in defs.iter().zip(decisions) {
            let (true, Some(names)) = (d.established, &d.accepted) else {
                continue;
            };
            let b = match built.remove(&def.name) {
                Some(b) if b.def == *def && b.names == *names && b.terminating == d.terminating => {
                    b
                }
                _ => Built {
                    def: def.clone(),
                    names: names.clone(),
                    terminating: d.terminating,
                    served: versions(def, names, d.terminating),
                },
            };
            out.extend(b.served.iter().cloned());
            next.insert(def.name.clone(), b);
        }
        *built = next;
        out
    }
}

fn versions(def: &Definition, names: &Names, terminating: bool) -> Vec<Resource> {
    let mut out = Vec::new();
    for v in def.versions.iter().filter(|v| v.served) {
        match crate::custom::served_version(def, v, names, terminating) {
            Ok((info, custom)) => out.push(Arc::new(Served {
                info,
                custom: Some(Arc::new(custom)),
            })),
            Err(e) => {
                tracing::warn!(crd = %def.name, version = %v.name, error = %e, "version not served")
            }
        }
    }
    out
}

fn desired_status(obj: &Value, def: &Definition, d: &Decision) -> Value {
    let mut status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
    let (names_ok, reason, message) = match &d.conflict {
        None => ("True", "NoConflicts", "no conflicts found".to_string()),
        Some((r, m)) => ("False", *r, m.clone()),
    };
    let mut conds = vec![("NamesAccepted", names_ok, reason.to_string(), message)];
    if d.established {
        conds.push((
            "Established",
            "True",
            "InitialNamesAccepted".into(),
            "the initial names have been accepted".into(),
        ));
    } else {
        conds.push((
            "Established",
            "False",
            "NotAccepted".into(),
            "not all names are accepted".into(),
        ));
    }
    if d.terminating {
        conds.push((
            "Terminating",
            "True",
            "InstanceDeletionInProgress".into(),
            "CustomResource deletion is in progress".into(),
        ));
    } else if d.deleting {
        conds.push((
            "Terminating",
            "False",
            "InstanceDeletionCompleted".into(),
            "removed all instances".into(),
        ));
    }
    let old = status["conditions"].as_array().cloned().unwrap_or_default();
    let now = crate::request::now_rfc3339();
    let mut conditions: Vec<Value> = conds
        .into_iter()
        .map(|(ty, st, reason, message)| {
            let since = old
                .iter()
                .find(|c| c["type"] == ty && c["status"] == st)
                .and_then(|c| c["lastTransitionTime"].as_str())
                .unwrap_or(&now)
                .to_string();
            json!({"type": ty, "status": st, "lastTransitionTime": since, "reason": reason, "message": message})
        })
        .collect();
    // Conditions others set (none today) are kept after ours.
    conditions.extend(old.into_iter().filter(|c| {
        !["NamesAccepted", "Established", "Terminating"].contains(&c["type"].as_str().unwrap_or(""))
    }));
    status["conditions"] = Value::Array(conditions);
    status["acceptedNames"] = match &d.accepted {
        Some(n) => names_json(n),
        None => json!({"plural": "", "kind": ""}),
    };
    let mut stored: Vec<String> = status["storedVersions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(sv) = def.storage_version()
        && !stored.contains(&sv.name)
    {
        stored.push(sv.name.clone());
    }
    status["storedVersions"] = json!(stored);
    status
}

fn names_json(n: &Names) -> Value {
    let mut v = json!({"plural": n.plural, "singular": n.singular, "kind": n.kind, "listKind": n.list_kind});
    if !n.short_names.is_empty() {
        v["shortNames"] = json!(n.short_names);
    }
    if !n.categories.is_empty() {
        v["categories"] = json!(n.categories);
    }
    v
}

fn crd_target(name: &str, sub: Option<Subresource>) -> Target {
    Target {
        ri: builtin(GROUP, PLURAL),
        namespace: None,
        name: Some(name.to_string()),
        sub,
    }
}

async fn write_status(
    api: &ApiServer,
    obj: &Value,
    def: &Definition,
    d: &Decision,
) -> Result<(), skiff_types::ApiError> {
    let status = desired_status(obj, def, d);
    // Condition times are kept when nothing changed, so equal means nothing to write.
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    let t = crd_target(&d.name, Some(Subresource::Status));
    api.write_existing(&t, None, &system_write_options(), |cur| {
        let mut next = cur.clone();
        next["status"] = desired_status(cur, def, d);
        Ok(next)
    })
    .await
    .map(drop)
}

/// Deletes every object of the CRD; once none is left, drops the finalizer. True when
/// done.
async fn cleanup(
    api: &ApiServer,
    def: &Definition,
    d: &Decision,
) -> Result<bool, skiff_types::ApiError> {
    let served = api.registry.snapshot();
    let Some(names) = &d.accepted else {
        return remove_finalizer(api, &d.name).await.map(|_| true);
    };
    let Some(ri) = served
        .stored()
        .find(|r| r.group == def.group && r.plural == names.plural)
        .cloned()
    else {
        return remove_finalizer(api, &d.name).await.map(|_| true);
    };
    if crate::namespaces::delete_all(api, &ri, None).await? > 0 {
        return Ok(false);
    }
    remove_finalizer(api, &d.name).await.map(|_| true)
}

async fn remove_finalizer(api: &ApiServer, name: &str) -> Result<(), skiff_types::ApiError> {
    let t = crd_target(name, None);
    api.write_existing(&t, None, &system_write_options(), |cur| {
        let mut next = cur.clone();
        if let Some(fs) = next
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            fs.retain(|f| f != CLEANUP_FINALIZER);
        }
        Ok(next)
    })
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(plural: &str, kind: &str, short: &[&str], created: &str) -> (Value, Definition) {
        let v = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.example.com"), "creationTimestamp": created},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind, "shortNames": short},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        });
        let d = Definition::from_crd(&v).unwrap();
        (v, d)
    }

    #[test]
    fn first_crd_wins_names_and_later_conflicts() {
        let a = crd("widgets", "Widget", &["wd"], "2026-01-01T00:00:00Z");
        let b = crd("gadgets", "Gadget", &["wd"], "2026-01-02T00:00:00Z");
        let c = crd("gizmos", "Widget", &[], "2026-01-03T00:00:00Z");
        let ds = decide(&[a.clone(), b, c]);
        assert!(ds[0].conflict.is_none() && ds[0].established);
        assert_eq!(ds[1].conflict.as_ref().unwrap().0, "ShortNamesConflict");
        assert!(!ds[1].established && ds[1].accepted.is_none());
        // Same kind, so the defaulted singular (`widget`) is taken first.
        assert_eq!(ds[2].conflict.as_ref().unwrap().0, "SingularConflict");
        // Alone, the second is accepted: the conflict came from the first.
        let b2 = crd("gadgets", "Gadget", &["wd"], "2026-01-02T00:00:00Z");
        assert!(decide(&[b2])[0].conflict.is_none());
    }

    #[test]
    fn accepted_names_are_held_against_newcomers_of_the_same_second() {
        let (mut a, ad) = crd("crontabs", "CronTab", &["ct"], "2026-01-01T00:00:00Z");
        let dec = &decide(&[(a.clone(), ad.clone())])[0];
        a["status"] = desired_status(&a, &ad, dec);
        // Same timestamp, and its name sorts first.
        let b = crd("crontables", "CronTable", &["ct"], "2026-01-01T00:00:00Z");
        let ds = decide(&[b, (a, ad)]);
        assert_eq!(ds[0].conflict.as_ref().unwrap().0, "ShortNamesConflict");
        assert!(ds[1].conflict.is_none() && ds[1].established);
    }

    #[test]
    fn unchanged_crds_are_not_compiled_again() {
        let crds = Crds::default();
        let a = crd("widgets", "Widget", &[], "2026-01-01T00:00:00Z");
        let ds = decide(std::slice::from_ref(&a));
        let first = crds.serve(std::slice::from_ref(&a), &ds);
        let again = crds.serve(std::slice::from_ref(&a), &ds);
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        // A changed spec is built anew.
        let (mut v, _) = a.clone();
        v["spec"]["names"]["shortNames"] = json!(["wd"]);
        let b = (v.clone(), Definition::from_crd(&v).unwrap());
        let ds = decide(std::slice::from_ref(&b));
        let changed = crds.serve(std::slice::from_ref(&b), &ds);
        assert!(!Arc::ptr_eq(&first[0], &changed[0]));
    }

    #[test]
    fn status_carries_conditions_names_and_stored_versions() {
        let (v, d) = crd("widgets", "Widget", &[], "2026-01-01T00:00:00Z");
        let dec = &decide(&[(v.clone(), d.clone())])[0];
        let s = desired_status(&v, &d, dec);
        assert_eq!(s["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(s["storedVersions"], json!(["v1"]));
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["NamesAccepted", "Established"]);
        // Written once, the same status is not written again.
        let mut v2 = v.clone();
        v2["status"] = s.clone();
        assert_eq!(v2.get("status"), Some(&desired_status(&v2, &d, dec)));
    }
}
