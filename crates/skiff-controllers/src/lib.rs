//! Control loops that act through the API like any client (kube-rs): today the
//! scheduler. Each loop is level-triggered: a watch only wakes it, and every round looks
//! at the whole current state.

pub mod events;
pub mod ipam;
pub mod nodelifecycle;
pub mod scheduler;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The API answered with an error or could not be reached; the loop retries.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// An object did not (de)serialize; a bug or an incompatible server.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
