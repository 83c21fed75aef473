//! Storage faults (root: a loop-mounted filesystem the test makes): with the data dir's
//! disk full, writes fail with a Kubernetes Status and `/readyz` says why, reads keep
//! working, the server stays up; once space is back everything recovers on its own, and
//! no acknowledged write is lost, across kill -9 too.

mod common;

use common::{Cluster, eventually};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A 96 MiB ext4 filesystem on a loop device, mounted at `at`; unmounted when dropped.
struct LoopFs {
    at: PathBuf,
    image: PathBuf,
}

impl LoopFs {
    fn new(image: PathBuf, at: PathBuf) -> LoopFs {
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        run(Command::new("truncate").args(["-s", "96M"]).arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        std::fs::create_dir_all(&at).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&at));
        LoopFs { at, image }
    }

    /// Fills the filesystem up with one file; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.at.join("filler");
        // dd stops with "No space left on device"; that is the point.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "status=none"])
            .arg(format!("of={}", filler.display()))
            .output()
            .unwrap();
        let _ = Command::new("sync").status();
        filler
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn create_configmap(c: &Cluster, name: &str) -> Result<(), String> {
    let out = c.kubectl(&["create", "configmap", name, "--from-literal=k=v"]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn names(c: &Cluster) -> Vec<String> {
    c.ok(&["get", "configmaps", "-o", "name"])
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .filter(|n| n.starts_with("cm-"))
        .map(String::from)
        .collect()
}

fn readyz(c: &Cluster) -> (bool, String) {
    let out = c.kubectl(&["get", "--raw", "/readyz"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn full_disk_fails_writes_keeps_reads_and_recovers() {
    let images = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs = LoopFs::new(images.path().join("disk.img"), dir.path().join("data"));
    let mut c = Cluster::start_in(dir, &["server"]);

    // Writes are acknowledged while there is room.
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("cm-{i}");
        create_configmap(&c, &name).unwrap();
        acked.push(name);
    }
    assert!(readyz(&c).0);

    // The disk fills up: writes keep being tried until the store refuses one (SQLite
    // reuses the space its log already holds first), and every one acknowledged
    // counts.
    let filler = fs.fill();
    assert!(free_bytes(&fs.at) < 1 << 20, "the disk is not full");
    let mut refused = None;
    for i in 20..3000 {
        let name = format!("cm-{i}");
        match create_configmap(&c, &name) {
            Ok(()) => acked.push(name),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("every write succeeded on a full disk");
    assert!(
        refused.contains("storage is not taking writes") && refused.contains("disk is full"),
        "{refused}"
    );
    // As a Status: 503 ServiceUnavailable.
    let status = c.kubectl_stdin(
        &["create", "-f", "-", "-o", "name"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-status}\n",
    );
    let said = String::from_utf8_lossy(&status.stderr);
    assert!(
        said.contains("Error from server (ServiceUnavailable)"),
        "{said}"
    );
    let (ready, why) = readyz(&c);
    assert!(!ready && why.contains("[-]storage failed"), "{why}");
    // Reads work: lists from the cache, a GET from the store.
    let mut listed = names(&c);
    listed.sort();
    let mut expected = acked.clone();
    expected.sort();
    assert_eq!(listed, expected);
    c.ok(&["get", "configmap", "cm-0"]);
    // Past the leader's renew deadline: its controllers stop, the server stays up.
    std::thread::sleep(Duration::from_secs(15));
    assert!(c.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(
        c.log().contains("campaigning again"),
        "the leases were kept"
    );

    // Space is back: writes, readiness and the controllers come back on their own.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(30), || readyz(&c).0.then_some(()));
    let name = format!("cm-{}", acked.len() + 5000);
    create_configmap(&c, &name).unwrap();
    acked.push(name);
    c.ok(&["create", "deployment", "after", "--image=busybox"]);
    eventually(Duration::from_secs(60), || {
        let rs = c.ok(&["get", "replicasets", "-l", "app=after", "-o", "name"]);
        (!rs.is_empty()).then_some(())
    });

    // Nothing acknowledged is lost, across kill -9 too.
    c.kill9();
    c.spawn();
    let mut listed = names(&c);
    listed.sort();
    acked.sort();
    assert_eq!(listed, acked);
    c.stop();
    drop(fs); // unmounted before the cluster's directory goes
}
