//! ControllerRevisions, the template history of DaemonSets and StatefulSets: one per
//! template, named `<owner>-<hash>`, numbered in order of use, holding the strategic
//! merge patch that puts the template back (what `kubectl rollout undo` applies), and
//! the owner's annotations when it was made (its `kubernetes.io/change-cause` is what
//! `kubectl rollout history` shows).

use crate::owner;
use serde_json::{Value, json};
use skiff_kube::reflect;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// The label Kubernetes puts the hash under on a revision: the DaemonSet controller
/// its pods' `controller-revision-hash`, the StatefulSet one (through the generic
/// history helper) `controller.kubernetes.io/hash`.
pub fn hash_label(kind: &str) -> &'static str {
    if kind == "DaemonSet" {
        "controller-revision-hash"
    } else {
        "controller.kubernetes.io/hash"
    }
}

/// The ControllerRevision holding `owner`'s template.
pub fn revision_for(owner: &Value, kind: &str, hash: &str, revision: i64) -> Value {
    let mut template = owner["spec"]["template"].clone();
    template["$patch"] = json!("replace");
    let mut labels = owner["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[hash_label(kind)] = json!(hash);
    let mut meta = json!({
        "name": format!("{}-{hash}", name(owner)),
        "namespace": owner["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner::controller_ref("apps/v1", kind, owner)],
    });
    // All of them, as Kubernetes copies them: the change-cause among them. A revision
    // renumbered by a rollback keeps those it was made with.
    if let Some(a) = owner["metadata"]["annotations"].as_object() {
        meta["annotations"] = json!(a);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": meta,
        "data": {"spec": {"template": template}},
        "revision": revision,
    })
}

/// The revisions past `revisionHistoryLimit` to delete, oldest first, never the current
/// one (`current`) or one pods still run (`in_use` names). Kubernetes counts
/// differently per kind: the StatefulSet controller counts only revisions nothing uses,
/// the DaemonSet one counts every old revision and skips the used ones while deleting.
pub fn past_limit(
    kind: &str,
    revisions: &[&Value],
    current: &str,
    in_use: &HashSet<String>,
    limit: usize,
) -> Vec<String> {
    let mut old: Vec<&Value> = revisions
        .iter()
        .copied()
        .filter(|r| name(r) != current)
        .collect();
    old.sort_by_key(|r| r["revision"].as_i64().unwrap_or(0));
    let unused = |r: &&Value| !in_use.contains(&name(r));
    let excess = if kind == "DaemonSet" {
        old.len()
    } else {
        old.iter().copied().filter(unused).count()
    }
    .saturating_sub(limit);
    old.into_iter()
        .filter(unused)
        .take(excess)
        .map(name)
        .collect()
}

/// Makes sure the current template (`hash`) has its revision, numbered last (a
/// rollback to an old template renumbers that one), and trims the history beyond
/// `revisionHistoryLimit`, keeping revisions pods still run (`in_use` hashes).
/// `revisions` is the caller's reflected view of ControllerRevisions.
pub async fn ensure(
    client: &kube::Client,
    revisions: &mut HashMap<String, Arc<Value>>,
    owner: &Value,
    kind: &str,
    hash: &str,
    in_use: &HashSet<String>,
) {
    let ns = owner["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let uid = owner["metadata"]["uid"].as_str().unwrap_or("");
    let mut mine: Vec<Arc<Value>> = revisions
        .values()
        .filter(|r| owner::controller_of(r).is_some_and(|c| c.kind == kind && c.uid == uid))
        .cloned()
        .collect();
    let max = mine
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .max()
        .unwrap_or(0);
    let cr_name = format!("{}-{hash}", name(owner));
    let base = format!("/apis/apps/v1/namespaces/{ns}/controllerrevisions");
    match mine.iter().find(|r| name(r) == cr_name) {
        Some(r) if r["revision"].as_i64() == Some(max) => {}
        Some(_) => {
            let body = json!({"revision": max + 1});
            if let Ok(u) = owner::send(
                client,
                http::Method::PATCH,
                format!("{base}/{cr_name}"),
                "application/merge-patch+json",
                &body,
            )
            .await
            {
                revisions.insert(reflect::key(&u), Arc::new(u));
            }
        }
        None => {
            let body = revision_for(owner, kind, hash, max + 1);
            if let Ok(c) = owner::send(
                client,
                http::Method::POST,
                base.clone(),
                "application/json",
                &body,
            )
            .await
            {
                let c = Arc::new(c);
                revisions.insert(reflect::key(&c), c.clone());
                mine.push(c);
            }
        }
    }
    let limit = owner["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let in_use: HashSet<String> = in_use
        .iter()
        .map(|h| format!("{}-{h}", name(owner)))
        .collect();
    let refs: Vec<&Value> = mine.iter().map(|r| &**r).collect();
    for r in past_limit(kind, &refs, &cr_name, &in_use, limit) {
        let path = format!("{base}/{r}");
        let _ = owner::send(
            client,
            http::Method::DELETE,
            path,
            "application/json",
            &json!({}),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
                "annotations": {"kubernetes.io/change-cause": "kubectl set image web c=nginx:2"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})
    }

    #[test]
    fn revisions_carry_the_owners_annotations_and_hash() {
        let ds = revision_for(&owner(), "DaemonSet", "h1", 3);
        assert_eq!(
            ds["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "kubectl set image web c=nginx:2"
        );
        assert_eq!(
            ds["metadata"]["labels"],
            json!({"app": "web", "controller-revision-hash": "h1"})
        );
        assert_eq!(ds["revision"], 3);
        let sts = revision_for(&owner(), "StatefulSet", "h1", 1);
        assert_eq!(
            sts["metadata"]["labels"]["controller.kubernetes.io/hash"],
            "h1"
        );
        let mut bare = owner();
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        assert!(revision_for(&bare, "DaemonSet", "h1", 1)["metadata"]["annotations"].is_null());
    }

    #[test]
    fn history_limits_count_as_each_controller_does() {
        let revs: Vec<Value> = (1..=4)
            .map(|n| json!({"metadata": {"name": format!("web-r{n}")}, "revision": n}))
            .collect();
        let refs: Vec<&Value> = revs.iter().collect();
        let in_use: HashSet<String> = ["web-r1".to_string()].into();
        // Old: r1 (in use), r2, r3; current r4; limit 1.
        assert_eq!(
            past_limit("StatefulSet", &refs, "web-r4", &in_use, 1),
            ["web-r2"]
        );
        assert_eq!(
            past_limit("DaemonSet", &refs, "web-r4", &in_use, 1),
            ["web-r2", "web-r3"]
        );
        assert!(past_limit("DaemonSet", &refs, "web-r4", &in_use, 3).is_empty());
    }
}
