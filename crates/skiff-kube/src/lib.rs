//! API-client helpers shared by the controllers and the agent: a reflector over JSON
//! objects and Kubernetes-style event recording.

pub mod events;
pub mod informer;
pub mod reflect;
