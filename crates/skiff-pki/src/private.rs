//! The server's state and credentials are readable by their owner only: the store holds
//! every Secret, `tls/` the CA's key, `token` joins nodes. Directories are 0700 and files
//! 0600; what an earlier version (or a hand) left open is closed again at start.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) as 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Takes group and other permissions off `path` (a directory becomes 0700 at most, a
/// file 0600 at most); true if it had any. A missing path is no error.
pub fn close(path: &Path) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // Links are left alone: their target is someone else's to guard.
    if meta.file_type().is_symlink() {
        return Ok(false);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
    Ok(true)
}

/// Closes each of `paths`, and the files directly inside those that are directories;
/// returns what had been open.
pub fn close_all(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut opened = Vec::new();
    for p in paths {
        if close(p)? {
            opened.push(p.clone());
        }
        if p.is_dir() && !p.is_symlink() {
            for entry in fs::read_dir(p)? {
                let f = entry?.path();
                if f.is_file() && close(&f)? {
                    opened.push(f);
                }
            }
        }
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_state_is_closed_and_said() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        create_private_dir(&db).unwrap();
        assert_eq!(mode(&db), 0o700);
        let file = db.join("state.db");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o755)).unwrap();
        let kept = db.join("private");
        fs::write(&kept, b"x").unwrap();
        fs::set_permissions(&kept, fs::Permissions::from_mode(0o600)).unwrap();
        let opened = close_all(&[db.clone(), tmp.path().join("missing")]).unwrap();
        assert_eq!(opened, [db.clone(), file.clone()]);
        assert_eq!((mode(&db), mode(&file), mode(&kept)), (0o700, 0o600, 0o600));
        assert!(close_all(&[db]).unwrap().is_empty(), "nothing left open");
    }
}
