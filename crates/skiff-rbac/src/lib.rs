//! Kubernetes RBAC (`rbac.authorization.k8s.io/v1`) as a pure core: whether a rule covers
//! a request (`rules`), the cluster's roles and bindings indexed by subject with the
//! decision they make (`policy`), whether a grant escalates (`escalation`), the default
//! roles and bindings (`bootstrap`) and how stored ones are brought up to them
//! (`reconcile`). No IO: the API server feeds it from its watch cache.

pub mod bootstrap;
pub mod escalation;
pub mod policy;
pub mod reconcile;
pub mod rules;

pub use policy::{Decision, Policy};
pub use rules::{Request, Target, allows, forbidden_message};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bootstrap;
