//! API-client helpers shared by the controllers and the agent: a reflector over JSON
//! objects, Kubernetes-style event recording, and an HTTP/2 client.

pub mod events;
pub mod h2;
pub mod informer;
pub mod keep;
pub mod reflect;
