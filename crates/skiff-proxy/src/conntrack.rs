//! Deleting stale UDP conntrack entries: UDP has no connection to end, so a flow DNATed
//! to an endpoint that went away keeps going there until conntrack forgets it. The
//! `Conntrack` seam, the real one running Debian's `conntrack` CLI, and a recorder.

use crate::Error;
use crate::config::Family;
use crate::rules::diff::Flush;
use parking_lot::Mutex;
use tokio::process::Command;

#[async_trait::async_trait]
pub trait Conntrack: Send + Sync {
    async fn flush(&self, flush: &Flush) -> Result<(), Error>;
}

/// The `conntrack` arguments for one cleanup.
pub fn args(flush: &Flush) -> Vec<String> {
    let fam = |f: Family| match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    let mut a: Vec<String> = vec!["-D".into()];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    match flush {
        Flush::ServiceEndpoint { ip, port, endpoint } => {
            let (ip, port, ep) = (ip.to_string(), port.to_string(), endpoint.to_string());
            push(&["-f", fam(Family::of(endpoint)), "-p", "udp"]);
            push(&[
                "--orig-dst",
                &ip,
                "--orig-port-dst",
                &port,
                "--dst-nat",
                &ep,
            ]);
        }
        Flush::NodePortEndpoint {
            family,
            node_port,
            endpoint,
        } => {
            let (np, ep) = (node_port.to_string(), endpoint.to_string());
            push(&["-f", fam(*family), "-p", "udp"]);
            push(&["--orig-port-dst", &np, "--dst-nat", &ep]);
        }
        Flush::ServiceIp { ip, port } => {
            let (f, ip, port) = (fam(Family::of(ip)), ip.to_string(), port.to_string());
            push(&[
                "-f",
                f,
                "-p",
                "udp",
                "--orig-dst",
                &ip,
                "--orig-port-dst",
                &port,
            ]);
        }
        Flush::NodePort { family, node_port } => {
            let np = node_port.to_string();
            push(&["-f", fam(*family), "-p", "udp", "--orig-port-dst", &np]);
        }
    }
    a
}

/// Runs `conntrack -D …`, optionally behind a prefix (`ip netns exec NAME`).
#[derive(Debug, Clone, Default)]
pub struct ConntrackCommand {
    prefix: Vec<String>,
}

impl ConntrackCommand {
    pub fn new() -> ConntrackCommand {
        ConntrackCommand::default()
    }

    pub fn with_prefix(prefix: &[&str]) -> ConntrackCommand {
        ConntrackCommand {
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn in_netns(name: &str) -> ConntrackCommand {
        ConntrackCommand::with_prefix(&["ip", "netns", "exec", name])
    }
}

#[async_trait::async_trait]
impl Conntrack for ConntrackCommand {
    async fn flush(&self, flush: &Flush) -> Result<(), Error> {
        let mut argv = self.prefix.clone();
        argv.push("conntrack".into());
        argv.extend(args(flush));
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::Spawn(argv[0].clone(), e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Nothing matched: `conntrack` says so and exits 1.
        let nothing = out.status.code() == Some(1) && stderr.contains(" 0 flow entries");
        if out.status.success() || nothing {
            return Ok(());
        }
        Err(Error::Conntrack {
            status: out.status.code(),
            stderr: stderr.trim().to_string(),
        })
    }
}

#[derive(Debug, Default)]
pub struct RecordingConntrack {
    flushes: Mutex<Vec<Flush>>,
}

impl RecordingConntrack {
    pub fn flushes(&self) -> Vec<Flush> {
        self.flushes.lock().clone()
    }
}

#[async_trait::async_trait]
impl Conntrack for RecordingConntrack {
    async fn flush(&self, flush: &Flush) -> Result<(), Error> {
        self.flushes.lock().push(flush.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_match_the_cli() {
        let f = Flush::ServiceEndpoint {
            ip: "10.43.0.10".parse().unwrap(),
            port: 53,
            endpoint: "10.42.0.5".parse().unwrap(),
        };
        assert_eq!(
            args(&f).join(" "),
            "-D -f ipv4 -p udp --orig-dst 10.43.0.10 --orig-port-dst 53 --dst-nat 10.42.0.5"
        );
        let f = Flush::NodePort {
            family: Family::V6,
            node_port: 30053,
        };
        assert_eq!(
            args(&f).join(" "),
            "-D -f ipv6 -p udp --orig-port-dst 30053"
        );
    }
}
