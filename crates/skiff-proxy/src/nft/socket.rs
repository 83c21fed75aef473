//! A `NETLINK_NETFILTER` socket, opened in this process's network namespace or in a
//! named one (`ip netns` style), sending one batch and reading what the kernel
//! answers. Blocking: the executor runs it on tokio's blocking pool.
//!
//! The kernel handles a batch within the `send` call (checks, commit, the jump
//! graph's validation), so by the time `send` returns every answer is queued: the
//! acknowledgement the batch's last message asks for, and an error for each message
//! that failed (or for the batch, when its commit did).
//!
//! The socket is kept open from one transaction to the next: closing a
//! `NETLINK_NETFILTER` socket waits for nf_tables' clean-up of the last commit (an RCU
//! grace period, 4–16 ms here), which would otherwise be paid on every change.

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// How long to wait for the kernel's answer before giving up.
const ANSWER_TIMEOUT_SECS: i64 = 10;

/// The default socket buffers (`net.core.wmem_default`) are about 200 KiB; a larger
/// batch raises its socket's, which root may do past `wmem_max`.
const DEFAULT_SNDBUF: usize = 200 * 1024;

#[derive(Debug)]
pub struct Socket(OwnedFd);

impl Socket {
    /// A socket in the network namespace at `netns` (a `/run/netns/NAME` file), or in
    /// this process's when `None`.
    pub fn open(netns: Option<&Path>) -> io::Result<Socket> {
        let Some(path) = netns else {
            return Socket::here();
        };
        let ns = std::fs::File::open(path)?;
        // A thread of its own enters the namespace: sockets stay in the namespace
        // they were made in, and the thread ends with it.
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Socket::here()
        })
        .join()
        .map_err(|_| io::Error::other("the thread opening the socket panicked"))?
    }

    fn here() -> io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(ANSWER_TIMEOUT_SECS, 0),
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Socket(fd))
    }

    /// Reads and forgets whatever an earlier transaction left queued.
    pub fn drain(&self) {
        let mut buf = vec![0u8; 64 * 1024];
        while recv(self.0.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
    }

    /// Sends `batch` and returns the kernel's errors, `(sequence, errno)`, once the
    /// acknowledgement of `last` (the batch's last message) is in.
    pub fn transact(&self, batch: &[u8], last: u32) -> io::Result<Vec<(u32, i32)>> {
        if batch.len() + 4096 > DEFAULT_SNDBUF {
            setsockopt(&self.0, sockopt::SndBufForce, &(batch.len() + 4096))?;
        }
        send(self.0.as_raw_fd(), batch, MsgFlags::empty())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut errors = Vec::new();
        let mut done = false;
        while !done {
            // After an error, what else is queued is read without waiting: a batch
            // refused early may never acknowledge its last message.
            let flags = if errors.is_empty() {
                MsgFlags::empty()
            } else {
                MsgFlags::MSG_DONTWAIT
            };
            let n = match recv(self.0.as_raw_fd(), &mut buf, flags) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) if !errors.is_empty() => break,
                Err(e) => return Err(e.into()),
            };
            for (seq, errno) in super::wire::acks(&buf[..n]) {
                if errno != 0 {
                    errors.push((seq, errno));
                }
                done |= seq == last;
            }
        }
        Ok(errors)
    }
}
