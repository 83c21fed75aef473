//! The node agent: node registration, Lease heartbeats and node status; the real agent
//! (`kubelet`) running pods on containerd over CRI; and simulated nodes that run pods
//! without containers, in the manner of kwok, for scale tests and node-failure tests.

pub mod apilb;
pub mod certificates;
pub mod claims;
pub mod credentials;
pub mod criconv;
pub mod dnsendpoint;
pub mod exec;
pub mod fake;
pub mod hooks;
pub mod host;
pub mod ingress;
pub mod iproute;
pub mod kubelet;
pub mod localpath;
pub mod logs;
pub mod netpol;
pub mod network;
pub mod node;
pub mod pod;
pub mod podlogs;
pub mod podnet;
pub mod probe;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod spdyexec;
pub mod staticpods;
pub mod stats;
pub mod tokens;
pub mod volumes;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The API answered with an error or could not be reached; callers retry.
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    /// An object did not (de)serialize.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The container runtime refused or could not be reached.
    #[error("container runtime: {0}")]
    Runtime(#[from] skiff_cri::Error),
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
