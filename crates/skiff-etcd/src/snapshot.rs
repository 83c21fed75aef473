//! Snapshots of the embedded member, as k3s' `etcd-snapshot` keeps them: files named
//! `<name>-<member>-<unix time>` under `<data-dir>/db/snapshots`, taken through etcd's
//! Maintenance API (written beside, then renamed, so a partial file never looks whole),
//! listed, deleted, pruned to a retention count; and the two ways back: a restore of a
//! snapshot into a fresh data dir, or a reset of the member to a cluster of one.

use crate::{Error, Member, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A snapshot file and what `ls` prints of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Seconds since the epoch, from the name.
    pub created: u64,
}

fn etcd_err(e: etcd_client::Error) -> Error {
    Error::Etcd(e.to_string())
}

/// Streams a snapshot of `member` to `dir/<name>-<member>-<now>`.
pub async fn save(member: &Member, dir: &Path, name: &str) -> Result<Snapshot> {
    std::fs::create_dir_all(dir)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let file = format!("{name}-{}-{now}", member.name);
    let path = dir.join(&file);
    let partial = dir.join(format!(".{file}.part"));
    let mut client = crate::connect(member).await?;
    let mut stream = client.snapshot().await.map_err(etcd_err)?;
    let mut out = std::fs::File::create(&partial)?;
    while let Some(chunk) = stream.message().await.map_err(etcd_err)? {
        std::io::Write::write_all(&mut out, chunk.blob())?;
    }
    out.sync_all()?;
    std::fs::rename(&partial, &path)?;
    let size = std::fs::metadata(&path)?.len();
    Ok(Snapshot {
        name: file,
        path,
        size,
        created: now,
    })
}

/// The snapshots in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Snapshot>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Snapshot> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let created = name.rsplit('-').next()?.parse().ok()?;
            (!name.starts_with('.')).then_some(Snapshot {
                size: e.metadata().ok()?.len(),
                path: e.path(),
                name,
                created,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

pub fn delete(dir: &Path, name: &str) -> Result<()> {
    if name.contains('/') || name.starts_with('.') {
        return Err(Error::Etcd(format!("{name:?} is not a snapshot name")));
    }
    Ok(std::fs::remove_file(dir.join(name))?)
}

/// Keeps the newest `keep` snapshots whose name starts with `prefix`; returns the rest,
/// deleted.
pub fn prune(dir: &Path, prefix: &str, keep: usize) -> Result<Vec<String>> {
    let mine: Vec<Snapshot> = list(dir)?
        .into_iter()
        .filter(|s| s.name.starts_with(prefix))
        .collect();
    let drop = mine.len().saturating_sub(keep);
    let mut gone = Vec::new();
    for s in mine.into_iter().take(drop) {
        std::fs::remove_file(&s.path)?;
        gone.push(s.name);
    }
    Ok(gone)
}

/// Replaces the member's data with the snapshot at `file`, as a new cluster of one (the
/// old data kept beside it). Needs `etcdctl`.
pub async fn restore(member: &Member, file: &Path) -> Result<PathBuf> {
    let kept = set_aside(&member.data_dir)?;
    let out = tokio::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(file)
        .arg(format!("--data-dir={}", member.data_dir.display()))
        .arg(format!("--name={}", member.name))
        .arg(format!(
            "--initial-cluster={}={}",
            member.name,
            member.peer_url()
        ))
        .arg(format!(
            "--initial-advertise-peer-urls={}",
            member.peer_url()
        ))
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::Etcd(format!(
            "etcdctl snapshot restore {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(kept)
}

/// Moves a data dir aside (`<dir>-old-<unix time>`), returning where it went.
fn set_aside(dir: &Path) -> Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let kept = dir.with_file_name(format!(
        "{}-old-{now}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("etcd")
    ));
    if dir.exists() {
        std::fs::rename(dir, &kept)?;
    }
    Ok(kept)
}

/// Makes the member the only one of its cluster, keeping its data (`--force-new-cluster`
/// for one start, until it answers).
pub async fn reset(member: &Member) -> Result<()> {
    let mut args = member.args();
    args.push("--force-new-cluster".into());
    let log = std::fs::File::create(member.data_dir.with_extension("reset.log"))?;
    let mut child = crate::etcd_command()
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let mut answered = false;
    for _ in 0..300 {
        if let Ok(mut c) = crate::connect(member).await
            && c.member_list().await.is_ok_and(|l| l.members().len() == 1)
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    skiff_supervise::stop(&mut child, crate::STOP_GRACE).await;
    if answered {
        Ok(())
    } else {
        Err(Error::Etcd(
            "the member did not come up as a cluster of one".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_oldest_first_and_prunes_to_retention() {
        let d = tempfile::tempdir().unwrap();
        for (n, t) in [
            ("etcd-snapshot-s1-2379", 30),
            ("etcd-snapshot-s1-2379", 10),
            ("manual-s1-2379", 5),
            ("etcd-snapshot-s1-2379", 20),
        ] {
            std::fs::write(d.path().join(format!("{n}-{t}")), b"x").unwrap();
        }
        std::fs::write(d.path().join(".partial-9.part"), b"x").unwrap();
        let names: Vec<String> = list(d.path())
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "manual-s1-2379-5",
                "etcd-snapshot-s1-2379-10",
                "etcd-snapshot-s1-2379-20",
                "etcd-snapshot-s1-2379-30"
            ]
        );
        assert_eq!(
            prune(d.path(), "etcd-snapshot-", 2).unwrap(),
            ["etcd-snapshot-s1-2379-10"]
        );
        assert_eq!(list(d.path()).unwrap().len(), 3);
        assert!(delete(d.path(), "../x").is_err());
        delete(d.path(), "manual-s1-2379-5").unwrap();
        assert_eq!(list(d.path()).unwrap().len(), 2);
    }
}
