//! NetworkPolicy semantics as data (networking.k8s.io/v1), with no IO: given the
//! policies, the pods and the namespaces a node knows, what each of its pods may
//! receive and send. The agent turns the result into nftables sets and rules.
//!
//! As Kubernetes defines it:
//! - a pod is isolated for ingress (egress) when any policy of its namespace selects it
//!   with that policy type; `policyTypes` left out means Ingress, plus Egress when the
//!   policy has egress rules. A pod no policy isolates is open.
//! - what an isolated pod allows is the union of the rules of every policy selecting it;
//!   a rule allows traffic from (to) any of its peers on any of its ports, an empty peer
//!   list meaning every address and an empty port list every port and protocol.
//! - a peer is pods (a `podSelector` in the policy's namespace, a `namespaceSelector`
//!   across namespaces, or both at once: pods matching the one in namespaces matching the
//!   other) or an `ipBlock` (a CIDR less its `except` holes).
//! - a named port is a container port of the pod at the far end of the traffic: the
//!   selected pod for ingress, each peer pod for egress. It matches nothing on an
//!   `ipBlock` peer, and nothing on a pod that has no such port.
//! - host-network pods are neither selected nor peers: their address is the node's.
//!
//! [`upstream`] is Kubernetes' e2e model of all this as data (three namespaces of three
//! pods, 81-cell tables of who reaches whom per case), which `tests/model.rs` evaluates
//! and `skiff`'s `tests/netpol_model.rs` measures on real pods.

mod evaluate;
mod model;
pub mod nft;
pub mod upstream;

pub use evaluate::{Policies, evaluate};
pub use model::{Allow, Isolation, NamedPort, Namespace, Peers, Pod, PortRange, Protocol};
