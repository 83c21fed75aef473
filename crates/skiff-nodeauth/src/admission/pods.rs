//! Pods a node may write: mirror pods bound to it, the status of its pods, evictions of
//! its pods.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Attributes, Cluster, Operation, Rejection, forbid, not_found, require};
use crate::refs::{
    MIRROR_POD_ANNOTATION, is_mirror_pod, list, pod_configmap_names, pod_secret_names, text,
};

pub(super) fn admit(
    node: &str,
    a: &Attributes<'_>,
    cluster: &impl Cluster,
) -> Result<(), Rejection> {
    match a.subresource {
        "" => pod(node, a, cluster),
        "status" => status(node, a),
        "eviction" => eviction(node, a, cluster),
        sub => forbid(format!(
            "unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"
        )),
    }
}

fn pod(node: &str, a: &Attributes<'_>, cluster: &impl Cluster) -> Result<(), Rejection> {
    match a.operation {
        Operation::Create => create(node, require(a.object)?, cluster),
        Operation::Delete => {
            let Some(existing) = cluster.pod(a.namespace, a.name) else {
                return not_found("pod", a.name);
            };
            if existing.node_name != node {
                return forbid(format!(
                    "node {node:?} can only delete pods with spec.nodeName set to itself"
                ));
            }
            Ok(())
        }
        op => forbid(format!(
            "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
            op.to_string()
        )),
    }
}

fn create(node: &str, pod: &Value, cluster: &impl Cluster) -> Result<(), Rejection> {
    if !is_mirror_pod(pod) {
        return forbid(format!(
            "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if text(&pod["spec"]["nodeName"]) != node {
        return forbid(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    owned_by_node(node, list(&pod["metadata"]["ownerReferences"]), cluster)?;
    references_nothing(node, pod)
}

/// A mirror pod's one owner reference: its node, as controller, without
/// blockOwnerDeletion, with the node's current UID.
fn owned_by_node(node: &str, owners: &[Value], cluster: &impl Cluster) -> Result<(), Rejection> {
    let owner = match owners {
        [owner] => owner,
        [] => {
            return forbid(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        _ => {
            return forbid(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ));
        }
    };
    let is_node = text(&owner["apiVersion"]) == "v1"
        && text(&owner["kind"]) == "Node"
        && text(&owner["name"]) == node;
    if !is_node {
        return forbid(format!(
            "node {node:?} can only create pods with an owner reference set to itself"
        ));
    }
    if owner["controller"] != Value::Bool(true) {
        return forbid(format!(
            "node {node:?} can only create pods with a controller owner reference set to itself"
        ));
    }
    if owner["blockOwnerDeletion"] == Value::Bool(true) {
        return forbid(format!(
            "node {node:?} must not set blockOwnerDeletion on an owner reference"
        ));
    }
    let Some(node_uid) = cluster.node_uid(node) else {
        return not_found("node", node);
    };
    let owner_uid = text(&owner["uid"]);
    if owner_uid != node_uid {
        return forbid(format!(
            "node {node} UID mismatch: expected {owner_uid} got {node_uid}"
        ));
    }
    Ok(())
}

/// A mirror pod must not grant its node anything: no ServiceAccount, secret, ConfigMap,
/// ClusterTrustBundle or claim.
fn references_nothing(node: &str, pod: &Value) -> Result<(), Rejection> {
    let refuse = |what: &str| {
        forbid(format!(
            "node {node:?} can not create pods that reference {what}"
        ))
    };
    if !text(&pod["spec"]["serviceAccountName"]).is_empty() {
        return refuse("a service account");
    }
    if !pod_secret_names(pod).is_empty() {
        return refuse("secrets");
    }
    if !pod_configmap_names(pod).is_empty() {
        return refuse("configmaps");
    }
    let volumes = list(&pod["spec"]["volumes"]);
    let bundles = volumes
        .iter()
        .flat_map(|v| list(&v["projected"]["sources"]))
        .any(|s| !s["clusterTrustBundle"].is_null());
    if bundles {
        return refuse("clustertrustbundles");
    }
    if volumes
        .iter()
        .any(|v| !v["persistentVolumeClaim"].is_null())
    {
        return refuse("persistentvolumeclaims");
    }
    Ok(())
}

fn labels(obj: &Value) -> BTreeMap<&str, &Value> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

/// `(name, resourceClaimName)` of each `status.resourceClaimStatuses` entry.
fn claim_statuses(pod: &Value) -> Vec<(&str, &Value)> {
    list(&pod["status"]["resourceClaimStatuses"])
        .iter()
        .map(|s| (text(&s["name"]), &s["resourceClaimName"]))
        .collect()
}

fn status(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    if a.operation != Operation::Update {
        return forbid(format!(
            "unexpected operation {:?}",
            a.operation.to_string()
        ));
    }
    let old = require(a.old_object)?;
    if text(&old["spec"]["nodeName"]) != node {
        return forbid(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        ));
    }
    let new = require(a.object)?;
    if labels(old) != labels(new) {
        return forbid(format!(
            "node {node:?} cannot update labels through pod status"
        ));
    }
    if claim_statuses(old) != claim_statuses(new) {
        return forbid(format!(
            "node {node:?} cannot update resource claim statues"
        ));
    }
    Ok(())
}

fn eviction(node: &str, a: &Attributes<'_>, cluster: &impl Cluster) -> Result<(), Rejection> {
    if a.operation != Operation::Create {
        return forbid(format!("unexpected operation {}", a.operation));
    }
    require(a.object)?;
    let pod_name = a.effective_name();
    if pod_name.is_empty() {
        return forbid("could not determine pod from request data");
    }
    let Some(existing) = cluster.pod(a.namespace, pod_name) else {
        return not_found("pod", pod_name);
    };
    if existing.node_name != node {
        return forbid(format!(
            "node {node} can only evict pods with spec.nodeName set to itself"
        ));
    }
    Ok(())
}
