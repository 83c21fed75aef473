//! Pure vocabulary shared by every skiff component: the table of resource kinds the API
//! serves, helpers to read object metadata out of JSON, and Kubernetes `Status` errors.
//!
//! Nothing here does IO; this crate knows nothing about HTTP, storage or time sources.

pub mod meta;
pub mod registry;
pub mod status;
pub mod volumes;

pub use registry::{RESOURCES, ResourceInfo, Scope, Subresource};
pub use status::{ApiError, FieldError, FieldErrorType, StatusReason};
