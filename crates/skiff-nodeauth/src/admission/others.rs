//! Claims' status, ServiceAccount tokens, Leases, CSINodes, ResourceSlices and CSRs.

use base64::Engine as _;
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use super::{Attributes, Cluster, Operation, Rejection, forbid, not_found, require};
use crate::authorizer::NODE_LEASE_NAMESPACE;
use crate::identity::NODE_USER_PREFIX;
use crate::refs::text;
use crate::semantic;

/// Fields of a claim a node may change through `status` (RecoverVolumeExpansionFailure
/// on, as by default in 1.33), and metadata it need not resend.
const CLAIM_STATUS_FIELDS: [&[&str]; 6] = [
    &["metadata", "resourceVersion"],
    &["metadata", "managedFields"],
    &["status", "capacity"],
    &["status", "conditions"],
    &["status", "allocatedResourceStatuses"],
    &["status", "allocatedResources"],
];

/// A node may change a claim's capacity, conditions and allocated resources only.
/// Kube ends the message with a Go diff of the two objects; here, the changed paths.
pub(super) fn claim_status(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    if a.operation != Operation::Update {
        return forbid(format!(
            "unexpected operation {:?}",
            a.operation.to_string()
        ));
    }
    let old = semantic::without(require(a.old_object)?, &CLAIM_STATUS_FIELDS);
    let new = semantic::without(require(a.object)?, &CLAIM_STATUS_FIELDS);
    if semantic::equal(&old, &new) {
        return Ok(());
    }
    forbid(format!(
        "node {node:?} is not allowed to update fields other than status.quantity and status.conditions: {}",
        semantic::differences(&old, &new).join(", ")
    ))
}

/// A token a node requests must be bound to a pod (by name and UID) running on it.
pub(super) fn token(
    node: &str,
    a: &Attributes<'_>,
    cluster: &impl Cluster,
) -> Result<(), Rejection> {
    if a.operation != Operation::Create || a.subresource != "token" {
        return Ok(());
    }
    let r = &require(a.object)?["spec"]["boundObjectRef"];
    let pod_name = text(&r["name"]);
    if r.is_null()
        || text(&r["apiVersion"]) != "v1"
        || text(&r["kind"]) != "Pod"
        || pod_name.is_empty()
    {
        return forbid("node requested token not bound to a pod");
    }
    let uid = text(&r["uid"]);
    if uid.is_empty() {
        return forbid("node requested token with a pod binding without a uid");
    }
    let Some(pod) = cluster.pod(a.namespace, pod_name) else {
        return not_found("pod", pod_name);
    };
    if pod.uid != uid {
        return forbid(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if pod.node_name != node {
        return forbid("node requested token bound to a pod scheduled on a different node");
    }
    Ok(())
}

/// The name a create gives its object, or the name a request is about.
fn target_name<'a>(a: &'a Attributes<'_>) -> Result<&'a str, Rejection> {
    match a.operation {
        Operation::Create => Ok(text(&require(a.object)?["metadata"]["name"])),
        _ => Ok(a.name),
    }
}

/// Only the node's own Lease, in `kube-node-lease`.
pub(super) fn lease(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    if a.namespace != NODE_LEASE_NAMESPACE {
        return forbid(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    if target_name(a)? != node {
        return forbid("can only access node lease with the same name as the requesting node");
    }
    Ok(())
}

/// Only the node's own CSINode.
pub(super) fn csi_node(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    let name = match (a.operation, a.object) {
        (Operation::Create, None) => return forbid("unable to access the object name"),
        _ => target_name(a)?,
    };
    if name != node {
        return forbid("can only access CSINode with the same name as the requesting node");
    }
    Ok(())
}

/// ResourceSlices a node creates or deletes must name it in `spec.nodeName`.
pub(super) fn resource_slice(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    let (slice, verb) = match a.operation {
        Operation::Create => (require(a.object)?, "create"),
        Operation::Delete => (require(a.old_object)?, "delete"),
        _ => return Ok(()),
    };
    if text(&slice["spec"]["nodeName"]) != node {
        return forbid(format!(
            "can only {verb} ResourceSlice with the same NodeName as the requesting node"
        ));
    }
    Ok(())
}

/// Signers whose certificates name a node: a CSR a node makes for them must be for
/// `CN=system:node:<itself>` (AllowInsecureKubeletCertificateSigningRequests off).
const NODE_SIGNERS: [&str; 2] = [
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/kube-apiserver-client-kubelet",
];

pub(super) fn csr(node: &str, a: &Attributes<'_>) -> Result<(), Rejection> {
    if a.operation != Operation::Create {
        return Ok(());
    }
    let spec = &require(a.object)?["spec"];
    if !NODE_SIGNERS.contains(&text(&spec["signerName"])) {
        return Ok(());
    }
    let cn = common_name(text(&spec["request"]))
        .map_err(|e| Rejection::Forbidden(format!("unable to parse csr: {e}")))?;
    if cn != format!("{NODE_USER_PREFIX}{node}") {
        return forbid(format!(
            "can only create a node CSR with CN={NODE_USER_PREFIX}{node}"
        ));
    }
    Ok(())
}

/// The subject CN of a PEM CSR, given base64-encoded as in `spec.request`.
fn common_name(request_b64: &str) -> Result<String, String> {
    const PEM_TYPE: &str = "PEM block type must be CERTIFICATE REQUEST";
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request_b64)
        .map_err(|e| e.to_string())?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| PEM_TYPE.to_string())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(PEM_TYPE.into());
    }
    let (_, csr) =
        X509CertificationRequest::from_der(&block.contents).map_err(|e| format!("x509: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let last = subject.iter_common_name().last();
    Ok(last
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string())
}
