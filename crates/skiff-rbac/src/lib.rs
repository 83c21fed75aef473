//! Kubernetes RBAC (`rbac.authorization.k8s.io/v1`) as a pure core: whether a rule covers
//! a request (`rules`), and the cluster's roles and bindings indexed by subject with the
//! decision they make (`policy`). No IO: the API server feeds it from its watch cache.

pub mod policy;
pub mod rules;

pub use policy::{Decision, Policy};
pub use rules::{Request, Target, allows, forbidden_message};

#[cfg(test)]
mod tests;
