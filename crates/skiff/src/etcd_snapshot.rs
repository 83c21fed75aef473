//! `skiff etcd-snapshot save|ls|delete`, on the machine of a `--cluster-init` server:
//! through its member's client port, with its client certificate from the data dir.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct EtcdSnapshotArgs {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    beside: crate::etcd_member::Beside,
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
    let (data_dir, member) = a.beside.member(default_data_dir);
    let dir = a
        .dir
        .unwrap_or_else(|| data_dir.join("db").join("snapshots"));
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
