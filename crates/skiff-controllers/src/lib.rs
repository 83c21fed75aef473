//! Control loops that act through the API like any client (kube-rs): the scheduler,
//! node IPAM, node lifecycle, the garbage collector, the workload controllers and those that connect Services to Pods. Each keeps an in-memory view from reflectors
//! (`skiff_kube::reflect`) and acts level-triggered on the whole of it, never listing per change.

pub mod certificates;
pub mod claim;
pub mod clusterroleaggregation;
pub mod control;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod directbind;
pub mod discovered;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod endpointutil;
pub mod gc;
pub mod hpa;
pub mod ingressstatus;
pub mod ipam;
pub mod job;
pub mod leader;
pub mod nodelifecycle;
pub mod owner;
pub mod persistentvolume;
pub mod podfacts;
pub mod podgc;
pub mod replicaset;
pub mod revisions;
pub mod scheduler;
pub mod servicelb;
pub mod statefulset;
pub mod trim;
pub mod volumebind;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The API answered with an error or could not be reached; the loop retries.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// An object did not (de)serialize; a bug or an incompatible server.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The shared reflectors every controller of the manager subscribes through.
pub use skiff_kube::informer::Informers;

/// A time as the API holds it (whole seconds).
pub(crate) fn api_time(
    t: chrono::DateTime<chrono::Utc>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let secs = k8s_openapi::jiff::Timestamp::from_second(t.timestamp());
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(secs.unwrap_or_default())
}

pub(crate) fn chrono_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}

/// A count as the API's int32 fields hold it (saturating).
pub(crate) fn int32(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// An object from the informers as its type (the API server validated it, so this
/// fails only on a bug, which is logged).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
    T::deserialize(v)
        .inspect_err(|e| {
            let key = skiff_kube::reflect::key(v);
            tracing::warn!(error = %e, %key, "unreadable object")
        })
        .ok()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
