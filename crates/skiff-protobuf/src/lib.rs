//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded
//! into the JSON a JSON client would have sent.
pub mod wire;
pub use wire::{Error, decode};
