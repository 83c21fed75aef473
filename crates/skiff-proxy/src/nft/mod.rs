//! Running a transaction: the `Nft` seam, the real executors, and a recording fake.
//!
//! [`NftCommand`], the one the proxy runs with, sends a transaction to the kernel as
//! one netlink batch when all of it is in the subset `script` reads (every
//! incremental sync is), and otherwise pipes it to `nft -f -` ([`NftCli`]): full
//! loads and cleanups, which create hooks and delete tables. A batch skips what makes
//! every `nft` run slow on a large ruleset, the listing of every chain and set into
//! its cache first (see the crate doc for why and how much), and is as atomic: the
//! kernel commits all of it or nothing, and says which message it refused.

mod script;
mod socket;
mod wire;

use crate::Error;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs one nftables transaction (a script `nft -f` accepts) atomically.
#[async_trait::async_trait]
pub trait Nft: Send + Sync {
    async fn run(&self, script: &str) -> Result<(), Error>;
}

/// The real one: a netlink batch when the script allows, `nft -f -` otherwise.
#[derive(Debug, Clone)]
pub struct NftCommand {
    cli: NftCli,
    /// None for a command prefix, which may go anywhere: `nft` only.
    netlink: Option<Netlink>,
}

/// Where batches go, and the socket kept open for them (see [`socket`]).
#[derive(Debug, Clone)]
struct Netlink {
    /// A `/run/netns/NAME` file, or `None` for this process's namespace.
    netns: Option<PathBuf>,
    open: Arc<Mutex<Open>>,
}

/// The socket, and the next sequence number: they need only tell one batch's
/// messages apart, and keep counting so that a trace reads in order.
#[derive(Debug, Default)]
struct Open {
    socket: Option<socket::Socket>,
    seq: u32,
}

impl Netlink {
    fn new(netns: Option<PathBuf>) -> Netlink {
        Netlink {
            netns,
            open: Arc::default(),
        }
    }

    /// Sends `ops` as one batch (blocking): the first error the kernel gave, with the
    /// index of the operation it is about (`None` for the batch as a whole). A socket
    /// that failed is opened afresh next time.
    fn send(&self, ops: &[script::Op]) -> std::io::Result<Option<(Option<usize>, i32)>> {
        let mut open = self.open.lock();
        let batch = wire::batch(ops, open.seq);
        open.seq = batch.last().wrapping_add(2);
        let sock = match open.socket.take() {
            Some(s) => s,
            None => socket::Socket::open(self.netns.as_deref())?,
        };
        sock.drain();
        let errors = sock.transact(&batch.bytes, batch.last())?;
        open.socket = Some(sock);
        Ok(errors
            .first()
            .map(|&(seq, errno)| (batch.op_of(seq), errno)))
    }
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand::new()
    }
}

impl NftCommand {
    pub fn new() -> NftCommand {
        NftCommand {
            cli: NftCli::new(),
            netlink: Some(Netlink::new(None)),
        }
    }

    /// Always `nft -f -`, with `prefix` before `nft` (e.g. `["nsenter", ...]`).
    pub fn with_prefix(prefix: &[&str]) -> NftCommand {
        NftCommand {
            cli: NftCli::with_prefix(prefix),
            netlink: None,
        }
    }

    /// Inside network namespace `name` (as `ip netns` names it).
    pub fn in_netns(name: &str) -> NftCommand {
        NftCommand {
            cli: NftCli::in_netns(name),
            netlink: Some(Netlink::new(Some(PathBuf::from(format!(
                "/run/netns/{name}"
            ))))),
        }
    }

    /// Whether `script` goes as a netlink batch (else to `nft -f -`).
    pub fn batches(script: &str) -> bool {
        script::parse(script).is_some_and(|ops| !ops.is_empty())
    }

    async fn batch(
        &self,
        netlink: &Netlink,
        script: &str,
        ops: Vec<(usize, script::Op)>,
    ) -> Result<(), Error> {
        let (lines, ops): (Vec<usize>, Vec<script::Op>) = ops.into_iter().unzip();
        let netlink = netlink.clone();
        let answer = tokio::task::spawn_blocking(move || netlink.send(&ops))
            .await
            .map_err(|e| Error::Netlink(std::io::Error::other(e)))?
            .map_err(Error::Netlink)?;
        refused(script, &lines, answer)
    }
}

/// A refused batch as an error, with the line of the operation it is about.
fn refused(
    script: &str,
    lines: &[usize],
    error: Option<(Option<usize>, i32)>,
) -> Result<(), Error> {
    let Some((op, errno)) = error else {
        return Ok(());
    };
    let line = op
        .and_then(|i| script.lines().nth(lines[i]))
        .unwrap_or("(the batch)");
    Err(Error::Refused {
        line: line.chars().take(300).collect(),
        source: std::io::Error::from_raw_os_error(errno),
    })
}

#[async_trait::async_trait]
impl Nft for NftCommand {
    async fn run(&self, script: &str) -> Result<(), Error> {
        let Some(netlink) = &self.netlink else {
            return self.cli.run(script).await;
        };
        match script::parse(script) {
            Some(ops) if !ops.is_empty() => {
                tracing::debug!(
                    operations = ops.len(),
                    "nftables transaction as a netlink batch"
                );
                self.batch(netlink, script, ops).await
            }
            _ => {
                tracing::debug!(bytes = script.len(), "nftables transaction through nft -f");
                self.cli.run(script).await
            }
        }
    }
}

/// Pipes the script to `nft -f -`, optionally behind a command prefix such as
/// `ip netns exec NAME`: the reference the netlink batches are checked against.
#[derive(Debug, Clone)]
pub struct NftCli {
    argv: Vec<String>,
}

impl Default for NftCli {
    fn default() -> Self {
        NftCli::new()
    }
}

impl NftCli {
    pub fn new() -> NftCli {
        NftCli::with_prefix(&[])
    }

    /// `prefix` goes before `nft`, e.g. `["ip", "netns", "exec", "node1"]`.
    pub fn with_prefix(prefix: &[&str]) -> NftCli {
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.extend(["nft", "-f", "-"].map(String::from));
        NftCli { argv }
    }

    /// Inside network namespace `name` (as `ip netns` names it).
    pub fn in_netns(name: &str) -> NftCli {
        NftCli::with_prefix(&["ip", "netns", "exec", name])
    }
}

#[async_trait::async_trait]
impl Nft for NftCli {
    async fn run(&self, script: &str) -> Result<(), Error> {
        let spawn = |e: std::io::Error| Error::Spawn(self.argv[0].clone(), e);
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).await.map_err(spawn)?;
        }
        let out = child.wait_with_output().await.map_err(spawn)?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Nft {
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Records every script; fails the next runs when told to.
#[derive(Debug, Default)]
pub struct RecordingNft {
    scripts: Mutex<Vec<String>>,
    failures: Mutex<usize>,
}

impl RecordingNft {
    pub fn scripts(&self) -> Vec<String> {
        self.scripts.lock().clone()
    }

    /// The next `n` runs fail (after being recorded).
    pub fn fail_next(&self, n: usize) {
        *self.failures.lock() = n;
    }
}

#[async_trait::async_trait]
impl Nft for RecordingNft {
    async fn run(&self, script: &str) -> Result<(), Error> {
        self.scripts.lock().push(script.to_string());
        let mut f = self.failures.lock();
        if *f > 0 {
            *f -= 1;
            return Err(Error::Nft {
                status: Some(1),
                stderr: "injected failure".into(),
            });
        }
        Ok(())
    }
}
