//! The resource metrics API (`metrics.k8s.io/v1beta1`) as data, as metrics-server
//! computes it: each node's `/metrics/resource` scrape parsed ([`prom`]), the last two
//! cumulative CPU readings of the node and of every container kept ([`store`]), CPU
//! usage as the rate between them over their window, memory as the last working set,
//! written as NodeMetrics and PodMetrics with canonical quantities ([`api`]). Pure: the
//! API server scrapes and serves.

pub mod api;
pub mod prom;
pub mod simulated;
pub mod store;

pub use store::{Store, Usage};
