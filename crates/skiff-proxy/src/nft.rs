//! Running a transaction: the `Nft` seam, the real executor (`nft -f -`, optionally
//! behind a command prefix such as `ip netns exec NAME`), and a recording fake.

use crate::Error;
use parking_lot::Mutex;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs one nftables transaction (a script `nft -f` accepts) atomically.
#[async_trait::async_trait]
pub trait Nft: Send + Sync {
    async fn run(&self, script: &str) -> Result<(), Error>;
}

/// The real one: pipes the script to `nft -f -`.
#[derive(Debug, Clone)]
pub struct NftCommand {
    argv: Vec<String>,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand::new()
    }
}

impl NftCommand {
    pub fn new() -> NftCommand {
        NftCommand::with_prefix(&[])
    }

    /// `prefix` goes before `nft`, e.g. `["ip", "netns", "exec", "node1"]`.
    pub fn with_prefix(prefix: &[&str]) -> NftCommand {
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.extend(["nft", "-f", "-"].map(String::from));
        NftCommand { argv }
    }

    /// Inside network namespace `name` (as `ip netns` names it).
    pub fn in_netns(name: &str) -> NftCommand {
        NftCommand::with_prefix(&["ip", "netns", "exec", name])
    }
}

#[async_trait::async_trait]
impl Nft for NftCommand {
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
