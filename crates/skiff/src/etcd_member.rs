//! `skiff etcd-member ls|remove`, on the machine of a server with an embedded etcd
//! member: the cluster's members, and removing the member of a server that leaves for
//! good (run it before or after that server stops; a running server whose member is
//! removed stops, saying so).

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct EtcdMemberArgs {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    beside: Beside,
}

/// Which server's member a command run beside it reaches: its data dir (the client
/// certificate) and its member's client port.
#[derive(Args)]
pub struct Beside {
    /// The server's data dir.
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The member's client port (the server's `--etcd-client-port`).
    #[arg(long, default_value_t = 2379, global = true)]
    etcd_client_port: u16,
}

impl Beside {
    /// The data dir, and the member as its clients reach it.
    pub fn member(&self, default_data_dir: PathBuf) -> (PathBuf, skiff_etcd::Member) {
        let data_dir = self.data_dir.clone().unwrap_or(default_data_dir);
        let member = skiff_etcd::Member::of_server(&data_dir, self.etcd_client_port);
        (data_dir, member)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the members, the leader marked.
    #[command(alias = "list")]
    Ls,
    /// Removes a member by name (as `ls` shows it), hex ID or peer URL.
    #[command(alias = "rm")]
    Remove { member: String },
}

pub async fn run(a: EtcdMemberArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let (_, me) = a.beside.member(default_data_dir);
    match a.cmd {
        Cmd::Ls => {
            println!(
                "{:<16} {:<24} {:<32} {:<32} STATUS",
                "ID", "NAME", "PEER URL", "CLIENT URL"
            );
            for m in skiff_etcd::members::list(&me).await? {
                let status = match (m.leader, m.learner, m.name.is_empty()) {
                    (true, _, _) => "leader",
                    (_, true, _) => "learner",
                    (_, _, true) => "unstarted",
                    _ => "follower",
                };
                println!(
                    "{:<16x} {:<24} {:<32} {:<32} {status}",
                    m.id,
                    m.name,
                    m.peer_urls.join(","),
                    m.client_urls.join(",")
                );
            }
        }
        Cmd::Remove { member } => {
            let gone = skiff_etcd::members::remove(&me, &member).await?;
            println!("Member {} ({:x}) removed.", gone.name, gone.id);
        }
    }
    Ok(())
}
