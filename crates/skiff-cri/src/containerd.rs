//! containerd as a supervised child: a config generated under the agent's data dir (CRI
//! plugin, `restrict_oom_score_adj`, CNI dirs, overlayfs, runc plus crun as a second
//! handler), restarted with back-off when it dies, stopped with SIGTERM on shutdown.
//!
//! A containerd left running by an agent that was killed (or that left pods running) is
//! stopped before ours starts, never adopted: two containerds must not share a root, and
//! only a child of ours runs our current config, logs where we look and can be waited
//! for. Its containers live on in their shims, and the new containerd picks them up.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Config {
    /// Holds root, state, the socket and the config file.
    pub dir: PathBuf,
    pub sandbox_image: String,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
}

impl Config {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// containerd 1.6+ version-2 TOML.
    pub fn render(&self) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let cri = r#"[plugins."io.containerd.grpc.v1.cri"]"#;
        format!(
            r#"version = 2
root = {root}
state = {state}
# Plugins a node agent has no use for, and which fail on hosts without their backing.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

{cri}
  sandbox_image = "{sandbox}"
  # Root here lacks CAP_SYS_RESOURCE: containers must not ask for a lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
        BinaryName = "/usr/bin/crun"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin}
    conf_dir = {conf}
"#,
            root = q(&self.dir.join("root")),
            state = q(&self.dir.join("state")),
            sock = q(&self.socket()),
            ttrpc = q(&self.dir.join("containerd.ttrpc.sock")),
            sandbox = self.sandbox_image,
            bin = q(&self.cni_bin_dir),
            conf = q(&self.cni_conf_dir),
        )
    }
}

/// Runs containerd until `shutdown` turns true, restarting it when it exits (1 s doubling
/// to 30 s, reset after a minute up). Returns once containerd has stopped. Callers await
/// [`stop_leftovers`] first, before they connect, or they may reach a leftover as it goes.
pub async fn supervise(cfg: Config, shutdown: watch::Receiver<bool>) -> crate::Result<()> {
    std::fs::create_dir_all(&cfg.dir)?;
    std::fs::create_dir_all(&cfg.cni_conf_dir)?;
    std::fs::write(cfg.config_path(), cfg.render())?;
    tracing::info!(socket = %cfg.socket().display(), "starting containerd");
    let command = || {
        let mut cmd = tokio::process::Command::new("containerd");
        cmd.arg("--config").arg(cfg.config_path());
        cmd
    };
    let log = cfg.dir.join("containerd.log");
    let grace = Duration::from_secs(10);
    skiff_supervise::supervise("containerd", &log, command, |_| Ok(()), grace, shutdown).await
}

/// Stops every containerd running with `cfg`'s config file (SIGTERM, then SIGKILL after
/// 15 s) and returns once they are gone.
pub async fn stop_leftovers(cfg: &Config) {
    for pid in running_with_config(&cfg.config_path()) {
        tracing::warn!(
            pid,
            "containerd left running by an earlier agent; stopping it (its containers keep running)"
        );
        skiff_supervise::stop_leftover("containerd", pid, Duration::from_secs(15)).await;
    }
}

/// Processes whose command line is `containerd … --config <config> …`.
fn running_with_config(config: &Path) -> Vec<i32> {
    let config = config.as_os_str().as_encoded_bytes();
    skiff_supervise::running("containerd", |args| with_config(args, config))
}

fn with_config(args: &[&[u8]], config: &[u8]) -> bool {
    args.windows(2)
        .any(|w| w[0] == b"--config" && w[1] == config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `running_with_config` asks of each process's command line.
    fn is_containerd_with(cmdline: &[u8], config: &[u8]) -> bool {
        skiff_supervise::runs(cmdline, "containerd", |args| with_config(args, config))
    }

    #[test]
    fn recognizes_our_containerd_only() {
        let cfg = b"/d/agent/containerd/config.toml";
        let ours = b"/usr/bin/containerd\0--config\0/d/agent/containerd/config.toml\0";
        assert!(is_containerd_with(ours, cfg));
        let other = b"containerd\0--config\0/e/agent/containerd/config.toml\0";
        assert!(!is_containerd_with(other, cfg));
        let shim = b"/usr/bin/containerd-shim-runc-v2\0--config\0/d/agent/containerd/config.toml\0";
        assert!(!is_containerd_with(shim, cfg));
        let editor = b"vi\0/d/agent/containerd/config.toml\0";
        assert!(!is_containerd_with(editor, cfg));
    }

    #[test]
    fn no_process_runs_with_a_config_that_is_not_there() {
        assert!(!running_with_config(Path::new("/nonexistent/config.toml")).contains(&1));
    }
}
