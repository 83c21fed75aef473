//! The skiff API server: Kubernetes' REST API over HTTPS on top of a [`skiff_store::Store`].
//!
//! One generic code path serves every kind listed in `skiff_types::registry`; the
//! kind-specific parts (defaulting, validation, printing, patch metadata) live in pure
//! crates and are looked up by (group, resource).

pub mod agentproxy;
pub mod aggregator;
pub mod apiservers;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod certificates;
pub mod crds;
pub mod custom;
pub mod decode;
pub mod discovery;
pub mod dynamic_admission;
pub mod eventttl;
pub mod flowcontrol;
pub mod handlers;
pub mod httpconn;
pub mod identity;
pub mod ingressclass;
pub mod kinds;
pub mod metrics;
pub mod metricsapi;
pub mod nodeauth;
pub mod nodeproxy;
pub mod object;
pub mod openapi;
pub mod patching;
pub mod podsecurity;
pub mod portforward;
pub mod rbac;
pub mod rbac_bootstrap;
pub mod registry;
pub mod request_info;
pub mod reviews;
pub mod scale;
pub mod secrets_encryption;
pub mod server;
pub mod serverjoin;
pub mod serviceaccount;
pub mod services;
pub mod storage;
pub mod strategy;
pub mod watch;

pub use server::{ApiServer, Config, RunningServer};

/// The Kubernetes version skiff speaks. kubectl's dispatcher on these machines picks its
/// real kubectl by `minor` (see shared/kubectl-contract.md §0).
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";
pub const KUBE_GIT_VERSION: &str = "v1.33.0+skiff";

/// Kubernetes caps request bodies at 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
