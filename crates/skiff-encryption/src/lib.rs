//! Secrets encrypted at rest, as kube-apiserver's `--encryption-provider-config` does
//! it: the configuration (`config`), the providers in kube-apiserver's stored format
//! (`providers`), and a `Store` that seals what it writes and opens what it reads under
//! the configured resources (`store`), so nothing above it sees ciphertext and nothing
//! below it sees plaintext.

pub mod config;
pub mod providers;
pub mod store;

pub use config::EncryptionConfiguration;
pub use store::{EncryptingStore, Status};

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("encryption configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Crypto(&'static str),
}
