//! The NodeRestriction admission plugin (kube's plugin/pkg/admission/noderestriction,
//! 1.33): what a kubelet may write, once the Node authorizer let the request through.
//! Objects are JSON after defaulting (the new one; the stored one for updates and
//! deletes).

mod nodes;
mod others;
mod pods;

use std::fmt;

use serde_json::Value;

use crate::identity::node_name;
use crate::refs::text;

/// Admission operations (kube's `admission.Operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        })
    }
}

/// A write as admission sees it (kube's `admission.Attributes`).
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub operation: Operation,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    /// The object's name; on create, empty means the new object's `metadata.name`.
    pub name: &'a str,
    /// The new object (create, update), or the request body of a subresource create
    /// (an Eviction, a TokenRequest).
    pub object: Option<&'a Value>,
    /// The stored object (update, delete).
    pub old_object: Option<&'a Value>,
}

impl Attributes<'_> {
    /// The name, or on create the new object's.
    pub fn effective_name(&self) -> &str {
        match (self.name, self.operation, self.object) {
            ("", Operation::Create, Some(obj)) => text(&obj["metadata"]["name"]),
            (name, ..) => name,
        }
    }
}

/// The stored state a check needs, from the API server's cache.
pub trait Cluster {
    /// A stored pod's `spec.nodeName` and `metadata.uid`; `None` when it does not exist.
    fn pod(&self, namespace: &str, name: &str) -> Option<PodBinding>;
    /// A stored node's `metadata.uid`; `None` when it does not exist.
    fn node_uid(&self, name: &str) -> Option<String>;
}

/// Where a stored pod runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodBinding {
    pub node_name: String,
    pub uid: String,
}

/// Why NodeRestriction refused a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 403 Forbidden with kube's reason; [`forbidden_message`] makes the full message.
    Forbidden(String),
    /// 404 NotFound: a pod or node the check needs does not exist (kube returns its
    /// cache's error, `pod "x" not found`, as is). `kind` is `pod` or `node`.
    NotFound { kind: &'static str, name: String },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Forbidden(reason) => f.write_str(reason),
            Rejection::NotFound { kind, name } => write!(f, "{kind} {name:?} not found"),
        }
    }
}

pub(crate) fn forbid<T>(reason: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::Forbidden(reason.into()))
}

pub(crate) fn not_found<T>(kind: &'static str, name: &str) -> Result<T, Rejection> {
    Err(Rejection::NotFound {
        kind,
        name: name.to_string(),
    })
}

/// Kube's `unexpected type %T` for a missing object.
pub(crate) fn require(obj: Option<&Value>) -> Result<&Value, Rejection> {
    obj.ok_or_else(|| Rejection::Forbidden("unexpected type <nil>".into()))
}

/// The 403 message kube builds around a reason (`admission.NewForbidden`):
/// `pods "p" is forbidden: <reason>`, `leases.coordination.k8s.io "n" is forbidden: …`.
pub fn forbidden_message(a: &Attributes<'_>, reason: &str) -> String {
    let resource = if a.api_group.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    match a.effective_name() {
        "" => format!("{resource} is forbidden: {reason}"),
        name => format!("{resource} {name:?} is forbidden: {reason}"),
    }
}

/// NodeRestriction's verdict on a write. Users that are not nodes pass; a node may only
/// write what concerns itself: mirror pods bound to it, status of its pods, evictions
/// of its pods, its Node (not its taints nor restricted labels), its Lease and CSINode,
/// tokens for pods on it, status of claims, CSRs for its own name.
pub fn admit(a: &Attributes<'_>, cluster: &impl Cluster) -> Result<(), Rejection> {
    let Some(node) = node_name(a.user, a.groups) else {
        return Ok(());
    };
    if a.operation == Operation::Connect {
        return Ok(());
    }
    if node.is_empty() {
        return forbid(format!("could not determine node from user {:?}", a.user));
    }
    match (a.api_group, a.resource) {
        ("", "pods") => pods::admit(node, a, cluster),
        ("", "nodes") => nodes::admit(node, a),
        ("", "persistentvolumeclaims") if a.subresource == "status" => {
            others::claim_status(node, a)
        }
        ("", "persistentvolumeclaims") => forbid("may only update PVC status"),
        ("", "serviceaccounts") => others::token(node, a, cluster),
        ("coordination.k8s.io", "leases") => others::lease(node, a),
        ("storage.k8s.io", "csinodes") => others::csi_node(node, a),
        ("resource.k8s.io", "resourceslices") => others::resource_slice(node, a),
        ("certificates.k8s.io", "certificatesigningrequests") => others::csr(node, a),
        _ => Ok(()),
    }
}
