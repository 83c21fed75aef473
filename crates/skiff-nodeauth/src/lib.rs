//! What a kubelet may do, decided as Kubernetes (1.33) decides it, as a pure core: no
//! IO, no clocks. The API server feeds the [`Graph`] from its watch cache and asks it;
//! admission asks [`admit`].
//!
//! # Node authorizer
//! Kube's `Node` authorization mode (plugin/pkg/auth/authorizer/node), for users
//! `system:node:<name>` in group `system:nodes`; everyone else gets `NoOpinion`.
//! - Secrets, ConfigMaps (`get`, and `list`/`watch` of one object by
//!   `metadata.name=` field selector), claims and PersistentVolumes (`get`), claim
//!   `status` (`update`/`patch`), VolumeAttachments (`get`), ServiceAccount `token`
//!   (`create`): only objects the node reaches in the graph (node ← pod ← secret,
//!   ConfigMap, claim, ServiceAccount; claim ← PV ← PV secret), and, for every node (each
//!   runs skiff's Ingress controller), the Secrets Ingresses name in `spec.tls`.
//!   Otherwise `Deny` with kube's reason, e.g. `no relationship found between node 'n1'
//!   and this object`.
//! - Pods: `get` of a pod bound to the node; `list`/`watch` of any (as before 1.32's
//!   AuthorizeNodeWithSelectors, which allows only `spec.nodeName=<node>`: see
//!   `authorizer::pod` for why); create, delete, `status` and `eviction` allowed, left
//!   to NodeRestriction.
//! - Nodes: create/update/patch (and `status`) allowed, left to NodeRestriction; `get`,
//!   `list`, `watch` of its own Node only.
//! - Leases in `kube-node-lease` and CSINodes: the node's own name only.
//! - Anything else: the `system:node` ClusterRole's rules ([`node_rules`]); allowed, or
//!   `NoOpinion` for RBAC to decide.
//!
//! # NodeRestriction
//! Kube's admission plugin (plugin/pkg/admission/noderestriction): a node may create only
//! mirror pods bound to and owned by itself that reference no other object, delete and
//! evict only its pods, update status only of its pods (not their labels), write only
//! its own Node (no `configSource`, no taint changes, no `node-restriction.kubernetes.io/`
//! labels nor `kubernetes.io`/`k8s.io` labels kubelets do not own), its own Lease and
//! CSINode, only the status fields of claims, tokens only for pods (by UID) on itself,
//! and node CSRs only for its own CN. The reasons are kube's, word for word.
//!
//! # Left out
//! - ResourceClaims and ResourceSlices in the graph (DRA): `get resourceclaims` and
//!   resourceslice reads fall to the node rules (no grant).
//! - PodCertificateRequests (newer than 1.33) and feature-gated node rules (DRA,
//!   ClusterTrustBundle projection; off by default in 1.33).
//! - Feature gates: behaviour is 1.33's defaults (AuthorizeNodeWithSelectors except
//!   for pod lists, RecoverVolumeExpansionFailure on;
//!   AllowInsecureKubeletCertificateSigningRequests off).
//! - The claim-status denial ends with the changed field paths, not Go's `cmp.Diff`.
//! - Semantic equality treats missing, `null`, `[]` and `{}` alike, but does not
//!   normalise quantities (`1Gi` vs `1073741824`).
//!
//! Objects are JSON (`serde_json::Value`) as stored, after defaulting.

mod admission;
mod authorizer;
mod graph;
mod identity;
mod refs;
mod selector;
mod semantic;

pub use admission::{
    Attributes, Cluster, Operation, PodBinding, Rejection, admit, forbidden_message,
};
pub use authorizer::{Decision, NODE_LEASE_NAMESPACE, Request, node_rules};
pub use graph::Graph;
pub use identity::{NODE_USER_PREFIX, NODES_GROUP, node_name};
pub use refs::{
    MIRROR_POD_ANNOTATION, is_mirror_pod, pod_claim_names, pod_configmap_names, pod_secret_names,
    pv_kubelet_secrets,
};

#[cfg(test)]
mod tests_admission;
#[cfg(test)]
mod tests_authorizer;
#[cfg(test)]
mod tests_graph;
