//! `skiff etcd-snapshot save|ls|delete`, on the machine of a `--cluster-init` server:
//! through its member's client port, with its client certificate from the data dir.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct EtcdSnapshotArgs {
    #[command(subcommand)]
    cmd: Cmd,
    /// The server's data dir.
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The member's client port (the server's `--etcd-client-port`).
    #[arg(long, default_value_t = 2379, global = true)]
    etcd_client_port: u16,
    /// Where snapshots are (default `<data-dir>/db/snapshots`).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Takes a snapshot now.
    Save {
        #[arg(long, default_value = "on-demand")]
        name: String,
    },
    /// Lists the snapshots.
    #[command(alias = "list")]
    Ls,
    /// Deletes snapshots by name.
    #[command(alias = "rm")]
    Delete { names: Vec<String> },
}

pub async fn run(a: EtcdSnapshotArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let data_dir = a.data_dir.unwrap_or(default_data_dir);
    let dir = a
        .dir
        .unwrap_or_else(|| data_dir.join("db").join("snapshots"));
    let member = skiff_etcd::Member::of_server(&data_dir, a.etcd_client_port);
    match a.cmd {
        Cmd::Save { name } => {
            let s = skiff_etcd::snapshot::save(&member, &dir, &name).await?;
            println!("Snapshot {} saved ({} bytes).", s.path.display(), s.size);
        }
        Cmd::Ls => {
            println!("{:<48} {:<56} {:>10} CREATED", "NAME", "LOCATION", "SIZE");
            for s in skiff_etcd::snapshot::list(&dir)? {
                let created = chrono::DateTime::from_timestamp(s.created as i64, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                let location = format!("file://{}", s.path.display());
                println!("{:<48} {:<56} {:>10} {created}", s.name, location, s.size);
            }
        }
        Cmd::Delete { names } => {
            for n in names {
                skiff_etcd::snapshot::delete(&dir, &n)?;
                println!("Snapshot {n} deleted.");
            }
        }
    }
    Ok(())
}
