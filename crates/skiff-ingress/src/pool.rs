//! HTTP/1.1 connections to endpoints, kept open between requests: a request takes an
//! idle one to its endpoint or opens one, and gives it back once the response's body has
//! been read to its end (an abandoned or failed exchange closes it instead).

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub type Sender = SendRequest<Incoming>;

/// Idle connections kept per endpoint at most; more are closed.
const IDLE_PER_ENDPOINT: usize = 256;
/// An idle connection older than this is closed rather than reused (endpoints close
/// idle connections of their own after a while; busybox httpd at once).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One worker's: used by its thread alone (its locks are never contended).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<(Sender, Instant)>>>,
    /// The worker's copy of the routing table and its version.
    pub(crate) table: Mutex<Option<(u64, Arc<crate::table::Table>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("connecting to {0}: timed out")]
    Timeout(SocketAddr),
    #[error("connecting to {0}: {1}")]
    Http(SocketAddr, hyper::Error),
}

impl Pool {
    /// A connection to `addr` ready for a request: an idle one, or a new one.
    pub async fn checkout(&self, addr: SocketAddr) -> Result<Sender, ConnectError> {
        while let Some(mut s) = self.pop(addr) {
            // Ready once the previous exchange is fully done; closed if the endpoint
            // hung up meanwhile.
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        connect(addr).await
    }

    fn pop(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(&addr)?;
        while let Some((s, since)) = list.pop() {
            if !s.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        let list = idle.entry(addr).or_default();
        if list.len() < IDLE_PER_ENDPOINT {
            list.push((s, Instant::now()));
        }
    }

    /// Forgets endpoints no longer in `live` (their connections close).
    pub fn retain(&self, live: impl Fn(&SocketAddr) -> bool) {
        self.idle.lock().retain(|a, _| live(a));
    }
}

async fn connect(addr: SocketAddr) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr))?
        .map_err(|e| ConnectError::Io(addr, e))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Http(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "endpoint connection ended");
        }
    });
    Ok(sender)
}

/// A response body that gives its connection back to the pool when read to its end.
pub struct Returning {
    body: Incoming,
    back: Option<(Arc<Pool>, SocketAddr, Sender)>,
}

impl Returning {
    pub fn new(body: Incoming, pool: Arc<Pool>, addr: SocketAddr, sender: Sender) -> Returning {
        let back = Some((pool, addr, sender));
        let mut r = Returning { body, back };
        if r.body.is_end_stream() {
            r.give_back();
        }
        r
    }

    fn give_back(&mut self) {
        if let Some((pool, addr, sender)) = self.back.take() {
            pool.put(addr, sender);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            // A failed exchange leaves the connection unusable: it closes with `back`.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
