//! The audit log file: JSON lines written by a thread of its own (requests only hand it
//! a line), flushed whenever it has caught up, rotated by size into
//! `<name>-<time>.<ext>` backups of which the newest `max_backups` are kept, as
//! kube-apiserver's log backend does with `--audit-log-maxsize` and `--audit-log-maxbackup`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `-` writes to standard output.
    pub path: PathBuf,
    /// Megabytes before the file is rotated; 0 never rotates.
    pub max_size_mb: u64,
    /// Rotated files kept; 0 keeps them all.
    pub max_backups: usize,
}

/// Lines in flight before requests wait for the writer (kube's blocking mode).
const QUEUE: usize = 8192;
/// How long the writer lets events gather after a flush: the most an event waits.
const BATCH: std::time::Duration = std::time::Duration::from_millis(5);

pub struct Sink {
    tx: mpsc::SyncSender<Vec<u8>>,
}

impl Sink {
    pub fn open(cfg: LogConfig) -> io::Result<Sink> {
        let mut out = Out::open(&cfg)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut next = Some(line);
                    while let Some(l) = next {
                        if let Err(e) = out.write(&cfg, &l) {
                            tracing::error!(error = %e, "audit log write failed");
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Err(e) = out.flush() {
                        tracing::error!(error = %e, "audit log flush failed");
                    }
                    // Under load, gather a few milliseconds of events into one write
                    // (and no wake-up per event) rather than a syscall each.
                    std::thread::sleep(BATCH);
                }
                let _ = out.flush();
            })?;
        Ok(Sink { tx })
    }

    /// Queues one line (without its newline); waits if the writer is behind.
    pub fn write(&self, line: Vec<u8>) {
        let _ = self.tx.send(line);
    }
}

enum Out {
    Stdout(io::Stdout),
    File { w: BufWriter<File>, size: u64 },
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Out {
    fn open(cfg: &LogConfig) -> io::Result<Out> {
        if cfg.path.as_os_str() == "-" {
            return Ok(Out::Stdout(io::stdout()));
        }
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = open_file(&cfg.path)?;
        let size = f.metadata()?.len();
        Ok(Out::File {
            w: BufWriter::with_capacity(256 * 1024, f),
            size,
        })
    }

    fn write(&mut self, cfg: &LogConfig, line: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(line)?;
                s.write_all(b"\n")
            }
            Out::File { w, size } => {
                let len = line.len() as u64 + 1;
                if cfg.max_size_mb > 0 && *size > 0 && *size + len > cfg.max_size_mb * 1024 * 1024 {
                    w.flush()?;
                    rotate(cfg)?;
                    *w = BufWriter::with_capacity(256 * 1024, open_file(&cfg.path)?);
                    *size = 0;
                }
                w.write_all(line)?;
                w.write_all(b"\n")?;
                *size += len;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Stdout(s) => s.flush(),
            Out::File { w, .. } => w.flush(),
        }
    }
}

/// `audit.log` → `audit-2026-12-05T12-30-00.123.log`, oldest backups beyond the limit
/// removed.
fn rotate(cfg: &LogConfig) -> io::Result<()> {
    let (dir, stem, ext) = parts(&cfg.path);
    let stamp = chrono::Utc::now().format("%Y-%m-%dT%H-%M-%S%.3f");
    std::fs::rename(&cfg.path, dir.join(format!("{stem}-{stamp}{ext}")))?;
    if cfg.max_backups == 0 {
        return Ok(());
    }
    let mut backups: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(&ext))
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(cfg.max_backups);
    for old in &backups[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

fn parts(path: &Path) -> (PathBuf, String, String) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("audit")
        .to_string();
    let ext = path
        .extension()
        .and_then(|s| s.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    (dir, stem, ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            path: dir.path().join("audit.log"),
            max_size_mb: 1,
            max_backups: 2,
        };
        let mut out = Out::open(&cfg).unwrap();
        let line = vec![b'x'; 300 * 1024];
        for _ in 0..14 {
            out.write(&cfg, &line).unwrap();
            // Backups are named to the millisecond.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        out.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[0].starts_with("audit-") && names[0].ends_with(".log"));
        assert_eq!(names[2], "audit.log");
        let size = std::fs::metadata(dir.path().join("audit.log"))
            .unwrap()
            .len();
        assert!(size <= 1024 * 1024, "{size}");
    }
}
