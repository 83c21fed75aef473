//! The skiff API server: Kubernetes' REST API over HTTPS on top of a [`skiff_store::Store`].
//!
//! One generic code path serves every kind, built-in or custom: the router hands a
//! request to its verb's endpoint, which goes through the generic store (`rest`),
//! which asks the kind's strategy and the admission plugins; ARCHITECTURE.md has the
//! layers, and `tests/layering.rs` keeps imports flowing down them.

pub mod agentproxy;
pub mod aggregator;
pub mod apiservers;
pub mod apiservices;
pub mod attributes;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod certificates;
pub mod codec;
pub mod conn;
pub mod conversion;
pub mod crds;
pub mod custom;
pub mod decode;
pub mod deletion;
pub mod discovery;
pub mod dynamic_admission;
pub mod endpoints;
pub mod eventttl;
pub mod extension_client;
pub mod flowcontrol;
pub mod hpa_versions;
pub mod httpconn;
pub mod identity;
pub mod ingressclass;
pub mod kinds;
pub mod metrics;
pub mod metricsapi;
pub mod metricsgroup;
pub mod namespace_defaults;
pub mod namespaces;
pub mod nodeauth;
pub mod nodeproxy;
pub mod nonresource;
pub mod openapi;
pub mod podsecurity;
pub mod portforward;
pub mod priority;
pub mod rbac;
pub mod rbac_bootstrap;
pub mod reconcile;
pub mod registry;
pub mod request;
pub mod request_info;
pub mod respond;
pub mod rest;
pub mod reviews;
pub mod router;
pub mod scale;
pub mod secrets_encryption;
pub mod server;
pub mod serverjoin;
pub mod service_alloc;
pub mod serviceaccount;
pub mod services;
pub mod state;
pub mod storage;
pub mod strategy;
pub mod views;
pub mod watch;

pub use server::RunningServer;
pub use state::{ApiServer, Config};

/// The Kubernetes version skiff speaks. kubectl's dispatcher on these machines picks its
/// real kubectl by `minor` (see shared/kubectl-contract.md §0).
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";
pub const KUBE_GIT_VERSION: &str = "v1.33.0+skiff";

/// Kubernetes caps request bodies at 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
