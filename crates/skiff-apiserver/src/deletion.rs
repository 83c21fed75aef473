//! What deleting an object does, by kind: refused (the immortal namespaces), at once,
//! or marked (graceful pods, namespaces terminating, finalizers, orphaning or
//! foreground deletion); and which objects the node agent finalizes.

use crate::request::DeleteOptions;
use serde_json::{Value, json};
use skiff_types::{ApiError, ResourceInfo, meta};

pub enum DeletionPlan {
    /// Remove from storage now.
    Immediate,
    /// Store this object (deletionTimestamp set); something else finishes the deletion.
    Mark(Value),
    /// Deletion already under way; nothing to change.
    AlreadyPending,
}

/// Namespaces the cluster cannot do without (kube-apiserver's NamespaceLifecycle keeps
/// the same three).
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Whether `name` of this kind may be deleted at all, as admission decides before any
/// precondition is looked at.
pub fn admit_delete(ri: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    if ri.is("", "namespaces") && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            &ri.group,
            &ri.plural,
            name,
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}

/// How a DELETE proceeds: graceful pod termination, namespace finalization, finalizers.
pub fn deletion_plan(ri: &ResourceInfo, current: &Value, opts: &DeleteOptions) -> DeletionPlan {
    let finalizers = meta::finalizers(current);
    let now = chrono::Utc::now();
    if ri.is("", "pods") {
        let bound = current["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            current["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let default_grace = current["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let mut grace = opts.grace_period_seconds.unwrap_or(default_grace).max(0);
        if !bound || terminal {
            grace = 0;
        }
        if meta::deletion_timestamp(current).is_some() {
            let current_grace = current["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if grace == 0 && finalizers.is_empty() {
                return DeletionPlan::Immediate;
            }
            if grace < current_grace {
                return DeletionPlan::Mark(mark(
                    current,
                    now + chrono::Duration::seconds(grace),
                    grace,
                    None,
                ));
            }
            return DeletionPlan::AlreadyPending;
        }
        if grace == 0 && finalizers.is_empty() {
            return DeletionPlan::Immediate;
        }
        return DeletionPlan::Mark(mark(
            current,
            now + chrono::Duration::seconds(grace),
            grace,
            None,
        ));
    }
    if ri.is("", "namespaces") {
        if meta::deletion_timestamp(current).is_some() {
            return DeletionPlan::AlreadyPending;
        }
        let mut m = mark(current, now, 0, None);
        m["status"]["phase"] = json!("Terminating");
        return DeletionPlan::Mark(m);
    }
    if meta::deletion_timestamp(current).is_some() {
        return if finalizers.is_empty() {
            DeletionPlan::Immediate
        } else {
            DeletionPlan::AlreadyPending
        };
    }
    if ri.is("apiextensions.k8s.io", "customresourcedefinitions") {
        // Its objects go first: the CRD controller deletes them, then the finalizer.
        let m = mark(current, now, 0, Some(crate::custom::CLEANUP_FINALIZER));
        return DeletionPlan::Mark(m);
    }
    // Orphan and Foreground leave the owner in place, marked, for the garbage collector:
    // it releases or deletes the dependents, then removes the finalizer. Background
    // (kubectl's default) deletes the owner now; the collector follows.
    match opts.propagation_policy.as_deref() {
        Some("Orphan") => return DeletionPlan::Mark(mark(current, now, 0, Some("orphan"))),
        Some("Foreground") => {
            return DeletionPlan::Mark(mark(current, now, 0, Some("foregroundDeletion")));
        }
        _ => {}
    }
    if !finalizers.is_empty() {
        return DeletionPlan::Mark(mark(current, now, 0, None));
    }
    DeletionPlan::Immediate
}

fn mark(
    current: &Value,
    at: chrono::DateTime<chrono::Utc>,
    grace: i64,
    add_finalizer: Option<&str>,
) -> Value {
    let mut m = current.clone();
    meta::set(
        &mut m,
        "deletionTimestamp",
        json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    meta::set(&mut m, "deletionGracePeriodSeconds", json!(grace));
    if let Some(f) = add_finalizer {
        let mut fs = meta::finalizers(&m);
        if !fs.iter().any(|x| x == f) {
            fs.push(f.to_string());
        }
        meta::set(&mut m, "finalizers", json!(fs));
    }
    if meta::generation(&m) > 0 {
        let g = meta::generation(&m) + 1;
        meta::set(&mut m, "generation", json!(g));
    }
    m
}

/// A pod being deleted with a grace period is removed by its node's agent, not by the
/// last finalizer going away.
pub fn waits_for_kubelet(ri: &ResourceInfo, obj: &Value) -> bool {
    ri.is("", "pods")
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0
        && obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DeletionOptionsExt;
    impl DeletionOptionsExt {
        fn grace(g: Option<i64>) -> DeleteOptions {
            DeleteOptions {
                grace_period_seconds: g,
                ..Default::default()
            }
        }
    }

    #[test]
    fn graceful_pod_deletion() {
        let ri = crate::registry::builtin("", "pods");
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(matches!(
            deletion_plan(&ri, &unbound, &DeleteOptions::default()),
            DeletionPlan::Immediate
        ));
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}});
        let DeletionPlan::Mark(m) = deletion_plan(&ri, &bound, &DeletionOptionsExt::grace(None))
        else {
            panic!()
        };
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(matches!(
            deletion_plan(&ri, &m, &DeletionOptionsExt::grace(Some(0))),
            DeletionPlan::Immediate
        ));
    }
}
