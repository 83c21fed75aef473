//! What the listener learns of a connection, carried on each request's extensions.

use crate::auth::UserInfo;
use std::net::SocketAddr;

/// The user a connection's client certificate authenticated, if any.
#[derive(Clone, Debug)]
pub struct ConnUser(pub Option<UserInfo>);

/// The remote address of a request.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);
