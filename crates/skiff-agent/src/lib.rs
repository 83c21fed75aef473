//! The node agent. Today: node registration, Lease heartbeats and node status (shared
//! with the real agent to come), and simulated nodes that run pods without containers,
//! in the manner of kwok, for scale tests and node-failure tests.

pub mod node;
pub mod sim;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The API answered with an error or could not be reached; callers retry.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// An object did not (de)serialize.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
