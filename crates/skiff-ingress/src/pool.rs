//! HTTP/1.1 connections to endpoints, kept open between requests: a request takes an
//! idle one to its endpoint or opens one, and gives it back once the response's body has
//! been read to its end (an abandoned or failed exchange closes it instead).
//!
//! A connection has no task of its own: the request using it drives it (hyper's
//! connection future, polled beside the response and then its body), so the endpoint's
//! socket wakes the client's connection task directly. A task per endpoint connection
//! cost two more wake-ups and task switches per request, a sixth of the proxy's time.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What goes to an endpoint: the client's body as it streams in, or nothing for a
/// bodiless request sent again to another endpoint.
pub type UpBody = http_body_util::Either<Incoming, http_body_util::Empty<Bytes>>;

/// hyper's connection future (with upgrades; its type cannot be named).
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send + Sync>>;

/// One connection to an endpoint: the handle requests are sent with, and the future
/// that reads and writes its socket.
pub struct Upstream {
    sender: SendRequest<UpBody>,
    /// `None` once the connection has ended.
    conn: Option<Driver>,
}

impl Upstream {
    /// Polls the connection; false once it has ended (closed, failed or upgraded).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = &mut self.conn else {
            return false;
        };
        let Poll::Ready(ended) = conn.as_mut().poll(cx) else {
            return true;
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "endpoint connection ended");
        }
        self.conn = None;
        false
    }

    /// Whether it takes a request now (the previous exchange done), or has closed.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            if !self.drive(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Sends `req`, driving the connection until the response's head is in. A request
    /// the connection closed under before sending it comes back in the error.
    pub async fn send(
        &mut self,
        req: Request<UpBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpBody>>> {
        let mut sent = std::pin::pin!(self.sender.try_send_request(req));
        poll_fn(|cx| {
            if let Poll::Ready(r) = sent.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            if !self.drive(cx) {
                // Its dispatcher, dropped, has answered or given the request back.
                return sent.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }

    /// Drives the connection to its end on a task of its own, as an upgraded one needs
    /// (its socket is handed over when it ends); the handle lives as long.
    pub fn spawn(self) {
        let Upstream { sender, conn } = self;
        if let Some(conn) = conn {
            tokio::spawn(async move {
                let _ = conn.await;
                drop(sender);
            });
        }
    }
}

/// Idle connections kept per endpoint at most; more are closed.
const IDLE_PER_ENDPOINT: usize = 256;
/// An idle connection older than this is closed rather than reused (endpoints close
/// idle connections of their own after a while; busybox httpd at once).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Each endpoint's idle connections, with when each became idle.
type Idle = HashMap<SocketAddr, Vec<(Upstream, Instant)>, foldhash::fast::RandomState>;

/// One worker's: used by its thread alone (its locks are never contended).
#[derive(Default)]
pub struct Pool {
    // foldhash: SipHash's resistance to chosen keys buys nothing for addresses the
    // API chose, and was a visible share of a request's time.
    idle: Mutex<Idle>,
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
    pub async fn checkout(&self, addr: SocketAddr) -> Result<Upstream, ConnectError> {
        while let Some(mut up) = self.pop(addr) {
            // Ready once the previous exchange is fully done; closed if the endpoint
            // hung up meanwhile (nothing polled it while idle: this is where it shows).
            if up.ready().await {
                return Ok(up);
            }
        }
        connect(addr).await
    }

    fn pop(&self, addr: SocketAddr) -> Option<Upstream> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(&addr)?;
        while let Some((up, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(up);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, s: Upstream) {
        // The sender closes only with its connection, which `drive` drops when it ends.
        if s.conn.is_none() {
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

async fn connect(addr: SocketAddr) -> Result<Upstream, ConnectError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr))?
        .map_err(|e| ConnectError::Io(addr, e))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Http(addr, e))?;
    Ok(Upstream {
        sender,
        conn: Some(Box::pin(conn.with_upgrades())),
    })
}

/// A response body that gives its connection back to the pool when read to its end.
pub struct Returning {
    body: Incoming,
    back: Option<(Arc<Pool>, SocketAddr, Upstream)>,
}

impl Returning {
    pub fn new(body: Incoming, pool: Arc<Pool>, addr: SocketAddr, up: Upstream) -> Returning {
        let back = Some((pool, addr, up));
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
        // The connection reads the body into `body`; once it has ended, `body` ends.
        if let Some((_, _, up)) = &mut self.back {
            up.drive(cx);
        }
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
