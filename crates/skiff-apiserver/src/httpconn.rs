//! One client connection served as HTTP/2 or HTTP/1.1, told apart by the HTTP/2 client
//! preface, as hyper-util's `auto` builder does. HTTP/2 is served by hyper's own builder
//! because `auto` does not expose the HPACK table size, which at thousands of node
//! connections is a good part of what a connection costs.

use bytes::{Buf, Bytes};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Kube-apiserver's `ReadHeaderTimeout`: also how long the first bytes may take.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);

/// The HPACK table a client may fill on each connection is 1 KiB rather than the usual
/// 4 KiB: a node's requests repeat a few short headers (those stay indexed) and
/// otherwise differ in their paths, which only churn the table. At 4 KiB the table and
/// the strings it holds cost ~13 KB per connection (heaptrack), 65 MB at 5,000 nodes.
const HPACK_TABLE: u32 = 1024;

/// HTTP/1.1 and HTTP/2 with bounds like kube-apiserver's: request headers read within
/// 32 s and at most hyper's ~400 KiB buffer on HTTP/1.1 (which also bounds what a
/// connection queues for a slow reader) or 256 KiB on HTTP/2 (Go's `MaxHeaderBytes` is
/// 1 MiB), 250 streams per HTTP/2 connection, and HTTP/2 connections that stop
/// answering pings closed.
pub struct Protocols {
    h1: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub fn new() -> Protocols {
        let mut h1 =
            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(256 << 10)
            .header_table_size(HPACK_TABLE)
            .max_concurrent_streams(250)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        Protocols { h1, h2 }
    }

    /// Serves `io` until the client is done or `shutdown` turns, then lets requests in
    /// flight finish for up to 3 s.
    pub async fn serve<I, S>(&self, io: I, svc: S, mut shutdown: watch::Receiver<bool>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::Service<
                hyper::Request<Incoming>,
                Response = hyper::Response<axum::body::Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let (is_h2, io) = match tokio::time::timeout(HEADER_READ_TIMEOUT, sniff(io)).await {
            Ok(Ok(x)) => x,
            _ => return,
        };
        let io = TokioIo::new(io);
        macro_rules! drive {
            ($conn:expr) => {{
                let conn = $conn;
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with error");
                    },
                    _ = shutdown.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(3), conn).await;
                    }
                }
            }};
        }
        if is_h2 {
            drive!(self.h2.serve_connection(io, svc))
        } else {
            drive!(self.h1.serve_connection_with_upgrades(io, svc))
        }
    }
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols::new()
    }
}

/// Reads until the bytes are or cannot be the HTTP/2 preface; returns the verdict and
/// the stream with those bytes put back in front.
async fn sniff<I: AsyncRead + Unpin>(mut io: I) -> std::io::Result<(bool, Replayed<I>)> {
    let mut buf = vec![0u8; PREFACE.len()];
    let mut n = 0;
    while n < PREFACE.len() && buf[..n] == PREFACE[..n] {
        let got = io.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    buf.truncate(n);
    let is_h2 = buf == PREFACE;
    Ok((
        is_h2,
        Replayed {
            front: Bytes::from(buf),
            inner: io,
        },
    ))
}

/// A stream whose first bytes were already read and are served again.
pub struct Replayed<I> {
    front: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Replayed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.front.has_remaining() {
            let n = self.front.len().min(out.remaining());
            out.put_slice(&self.front[..n]);
            self.front.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replayed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(first: &[u8]) -> (bool, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(first).await.unwrap();
        client.write_all(b"REST").await.unwrap();
        drop(client);
        let (h2, mut io) = sniff(server).await.unwrap();
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        (h2, all)
    }

    #[tokio::test]
    async fn the_preface_picks_http2_and_every_byte_is_read_again() {
        assert_eq!(sniffed(PREFACE).await, (true, [PREFACE, b"REST"].concat()));
        let get = b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(sniffed(get).await, (false, [&get[..], b"REST"].concat()));
        // Starts like the preface ("P"), then differs.
        let put = b"PUT /api HTTP/1.1\r\n\r\n";
        assert_eq!(sniffed(put).await, (false, [&put[..], b"REST"].concat()));
        assert_eq!(sniffed(b"").await, (false, b"REST".to_vec()));
    }
}
