//! ControllerRevisions, the template history of DaemonSets and StatefulSets: one per
//! template, named `<owner>-<hash>`, numbered in order of use, holding the strategic
//! merge patch that puts the template back (what `kubectl rollout undo` applies).

use crate::owner;
use serde_json::{Value, json};
use skiff_kube::reflect;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// The ControllerRevision holding `owner`'s template.
pub fn revision_for(owner: &Value, kind: &str, hash: &str, revision: i64) -> Value {
    let mut template = owner["spec"]["template"].clone();
    template["$patch"] = json!("replace");
    json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {
            "name": format!("{}-{hash}", name(owner)),
            "namespace": owner["metadata"]["namespace"],
            "labels": owner["spec"]["template"]["metadata"]["labels"].clone(),
            "ownerReferences": [owner::controller_ref("apps/v1", kind, owner)],
        },
        "data": {"spec": {"template": template}},
        "revision": revision,
    })
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
    let mut old: Vec<&Value> = mine
        .iter()
        .filter(|r| {
            name(r) != cr_name && !in_use.iter().any(|h| name(r).ends_with(&format!("-{h}")))
        })
        .map(|v| &**v)
        .collect();
    if old.len() > limit {
        old.sort_by_key(|r| r["revision"].as_i64().unwrap_or(0));
        for r in old.iter().take(old.len() - limit) {
            let path = format!("{base}/{}", name(r));
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
}
