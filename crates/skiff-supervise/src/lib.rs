//! The daemons a skiff process runs beside itself (containerd for an agent, an etcd
//! member for a server): restarted with back-off when they exit (1 s doubling to 30 s,
//! back to 1 s after a minute up), stopped with SIGTERM and then SIGKILL, and ones an
//! earlier run left behind found by their command line and stopped before a new one
//! starts.

use std::path::Path;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Up this long, a daemon that exits is restarted at once again.
const STEADY: Duration = Duration::from_secs(60);

/// Runs `command()`'s daemon, its output appended to `log`, until `shutdown`, then stops
/// it (SIGTERM, SIGKILL after `grace`). After each exit `exited` reads what that run
/// printed and says whether to restart (`Ok`) or give up with its error.
pub async fn supervise<E: From<std::io::Error>>(
    name: &str,
    log: &Path,
    mut command: impl FnMut() -> Command,
    mut exited: impl FnMut(&str) -> Result<(), E>,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), E> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        // Where this run's output begins: only it says why this run ended.
        let from = out.metadata()?.len();
        let mut child = command()
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        tracing::info!(pid = child.id(), daemon = name, "started");
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                exited(&output_since(log, from))?;
                tracing::warn!(?status, daemon = name, log = %log.display(), "exited; restarting");
                if started.elapsed() > STEADY {
                    backoff = FIRST_BACKOFF;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ = shutdown.changed() => {
                stop(&mut child, grace).await;
                tracing::info!(daemon = name, "stopped");
                return Ok(());
            }
        }
    }
}

fn output_since(path: &Path, from: u64) -> String {
    use std::io::{Read, Seek};
    let mut out = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(std::io::SeekFrom::Start(from));
        let _ = f.read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGTERM to a child we started, SIGKILL if it is still there after `grace`.
pub async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        signal(pid as i32, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Live processes running `program` (by the name of its executable) whose arguments
/// `matches` accepts.
pub fn running(program: &str, matches: impl Fn(&[&[u8]]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| runs(&c, program, &matches))
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// Whether a `/proc/<pid>/cmdline` runs `program` with arguments `matches` accepts.
pub fn runs(cmdline: &[u8], program: &str, matches: impl Fn(&[&[u8]]) -> bool) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_program = args
        .first()
        .is_some_and(|a| a.rsplit(|&b| b == b'/').next() == Some(program.as_bytes()));
    is_program && matches(&args[1..])
}

/// Stops `pid`, a daemon an earlier run left (SIGTERM, SIGKILL after `grace`), and
/// returns once it is gone.
pub async fn stop_leftover(name: &str, pid: i32, grace: Duration) {
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while alive(pid) {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!(pid, daemon = name, "ignored SIGTERM; killing it");
            signal(pid, nix::sys::signal::Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Running, not a zombie (an orphan's new parent may never reap it).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_is_known_by_its_executable_and_arguments() {
        let with = |want: &'static [u8]| move |args: &[&[u8]]| args.contains(&want);
        let line = b"/usr/bin/etcd\0--name=s1\0--data-dir=/d/db/etcd\0";
        assert!(runs(line, "etcd", with(b"--data-dir=/d/db/etcd")));
        assert!(!runs(line, "etcd", with(b"--data-dir=/e/db/etcd")));
        assert!(!runs(line, "containerd", with(b"--data-dir=/d/db/etcd")));
        assert!(!runs(
            b"/usr/bin/etcdctl\0--data-dir=/d/db/etcd\0",
            "etcd",
            with(b"--data-dir=/d/db/etcd")
        ));
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id() as i32));
    }

    #[tokio::test]
    async fn an_exit_the_caller_gives_up_on_ends_supervision_with_its_error() {
        let dir = std::env::temp_dir().join(format!("skiff-supervise-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("d.log");
        let (_tx, rx) = watch::channel(false);
        let mut runs = 0;
        let got = supervise(
            "sh",
            &log,
            || {
                let mut c = Command::new("sh");
                c.args(["-c", "echo run; echo removed >&2"]);
                c
            },
            |out| {
                runs += 1;
                // The first run's output, not the whole log, each time.
                assert_eq!(out, "run\nremoved\n");
                if runs == 2 {
                    Err(std::io::Error::other("gave up"))
                } else {
                    Ok(())
                }
            },
            Duration::from_secs(1),
            rx,
        )
        .await;
        assert_eq!(got.unwrap_err().to_string(), "gave up");
        assert_eq!(runs, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
