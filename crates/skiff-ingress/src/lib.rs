//! The built-in Ingress controller.
//!
//! - [`class`]: which Ingresses are skiff's (IngressClass `skiff`, the default class).

pub mod class;
pub mod feed;
pub mod paths;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod table;
pub mod tls;
