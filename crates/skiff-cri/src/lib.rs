//! The container runtime edge of the node agent: a CRI v1 client over containerd's unix
//! socket, a supervisor that runs containerd as a child with a generated config, and
//! offline image building and import (the pause image, airgap archives).

pub mod containerd;
pub mod image;

pub use k8s_cri::v1 as cri;

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("CRI {call}: {status}")]
    Rpc {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// CRI clients sharing one HTTP/2 connection to the runtime's socket.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to a CRI endpoint: a unix socket path, with or without `unix://`.
    pub async fn connect(endpoint: &str) -> Result<Cri> {
        let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
        let p = path.clone();
        // The URI is a placeholder: every connection goes to the socket.
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = p.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .map_err(|source| Error::Connect { path, source })?;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
        })
    }

    /// Waits until `endpoint` answers `Version`, for up to `timeout`.
    pub async fn wait_ready(endpoint: &str, timeout: std::time::Duration) -> Result<Cri> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match Cri::connect(endpoint).await {
                Ok(mut c) => match c.version().await {
                    Ok(_) => return Ok(c),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn version(&mut self) -> Result<cri::VersionResponse> {
        rpc(
            "Version",
            self.runtime.version(cri::VersionRequest::default()),
        )
        .await
    }
}

/// Awaits a CRI call, naming it in the error.
pub async fn rpc<T>(
    call: &'static str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    fut.await
        .map(tonic::Response::into_inner)
        .map_err(|status| Error::Rpc { call, status })
}

/// True when `path` is a socket something listens on.
pub fn socket_exists(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
