//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into
//! the JSON a JSON client would have sent, so the rest of the API server sees one format.
//!
//! Why a table-driven decoder: `k8s-pb` gives prost structs with no reflection and no
//! serde, and camelCase JSON names cannot be derived from its snake_case fields (podIP,
//! hostIPs). `gen/gen_table.py` reads tags and wire kinds from k8s-pb's source and JSON
//! names from k8s-openapi's, into `src/table.json`; a test keeps that file current.

mod wire;
pub use wire::{Error, decode, is_known_kind};

#[cfg(test)]
mod tests;
