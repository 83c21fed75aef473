//! Storage faults (root: a loop-mounted filesystem the test makes): with the data dir's
//! disk full, writes fail with a Kubernetes Status and `/readyz` says why, reads keep
//! working, the server stays up; once space is back everything recovers on its own, and
//! no acknowledged write is lost, across kill -9 too. A disk that turns read-only (ext4
//! remounts itself so on an error) is the same for writes and reads; it stays read-only
//! until it is repaired and mounted again, and then the server starts with everything
//! it acknowledged.

mod common;

use common::Cluster;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A 96 MiB ext4 filesystem on a loop device, mounted at `at`; unmounted when dropped.
struct LoopFs {
    at: PathBuf,
    image: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

impl LoopFs {
    fn new(image: PathBuf, at: PathBuf) -> LoopFs {
        run(Command::new("truncate").args(["-s", "96M"]).arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        std::fs::create_dir_all(&at).unwrap();
        let fs = LoopFs { at, image };
        fs.mount();
        fs
    }

    /// As a disk in service is: remounted read-only by the kernel on an error.
    fn mount(&self) {
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.at));
    }

    /// The loop device backing the mount.
    fn device(&self) -> String {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let at = self.at.to_str().unwrap();
        mounts
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let (dev, mnt) = (f.next()?, f.next()?);
                (mnt == at).then(|| dev.trim_start_matches("/dev/").to_string())
            })
            .expect("mounted")
    }

    /// An ext4 error (what a failing disk raises): the kernel aborts the journal and
    /// turns the filesystem read-only under the running server.
    fn fail(&self) {
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device());
        std::fs::write(&trigger, "skiff storage test").unwrap();
        let probe = self.at.join("probe");
        let err = std::fs::write(&probe, "x").expect_err("still writable");
        assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{err}");
    }

    /// What an operator does: unmount, check and repair, mount again.
    fn repair(&self) {
        run(Command::new("umount").arg(&self.at));
        // e2fsck exits 1 when it fixed something, as it does after an error.
        let out = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .output()
            .unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
        self.mount();
    }

    /// Fills the filesystem up with one file (and a small one, `free_slack`'s);
    /// returns the big one's path.
    fn fill(&self) -> PathBuf {
        std::fs::write(self.slack(), vec![0u8; 256 << 10]).unwrap();
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

impl LoopFs {
    fn slack(&self) -> PathBuf {
        self.at.join("slack")
    }

    /// Gives back room for small writes, not for `big_write_refused`'s.
    fn free_slack(&self) {
        std::fs::remove_file(self.slack()).unwrap();
        let _ = Command::new("sync").status();
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

/// A server whose data dir is a fresh loop-mounted disk, with the ConfigMaps it
/// acknowledged while the disk was healthy (the first value holds the disk's image).
fn server_on_loop_disk() -> (tempfile::TempDir, LoopFs, Cluster, Vec<String>) {
    let images = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs = LoopFs::new(images.path().join("disk.img"), dir.path().join("data"));
    let c = Cluster::start_in(dir, &["server"]);
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("cm-{i}");
        create_configmap(&c, &name).unwrap();
        acked.push(name);
    }
    assert!(readyz(&c).0);
    (images, fs, c, acked)
}

/// Writes until the store refuses one (a failing disk may take a few more first, into
/// space SQLite already holds), every acknowledged one counted in `acked`; the refusal
/// names `cause` and is a 503 Status; `/readyz` says why (and keeps saying it while a
/// small write, such as a Lease renewal, still fits); reads still work.
fn writes_refused_reads_served(c: &Cluster, acked: &mut Vec<String>, cause: &str) {
    let mut refused = None;
    for i in acked.len()..3000 {
        let name = format!("cm-{i}");
        match create_configmap(c, &name) {
            Ok(()) => acked.push(name),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused =
        refused.unwrap_or_else(|| panic!("every write succeeded: {}", c.log_besides_requests(40)));
    assert!(
        refused.contains("storage is not taking writes") && refused.contains(cause),
        "{refused}"
    );
    big_write_refused(c);
    not_ready(c);
    // Lists from the cache, a GET from the store.
    let mut listed = names(c);
    listed.sort();
    let mut expected = acked.clone();
    expected.sort();
    assert_eq!(listed, expected);
    c.ok(&["get", "configmap", "cm-0"]);
}

/// A write larger than the pages a rolled-back transaction may leave free (which a
/// small write can still fill) is refused with 503.
fn big_write_refused(c: &Cluster) {
    let big = "x".repeat(256 << 10);
    let status = c.kubectl_stdin(
        &["create", "-f", "-", "-o", "name"],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-status}}\ndata: {{big: {big}}}\n"
        ),
    );
    let said = String::from_utf8_lossy(&status.stderr);
    assert!(
        said.contains("Error from server (ServiceUnavailable)"),
        "{said}"
    );
}

fn not_ready(c: &Cluster) {
    let (ready, why) = readyz(c);
    assert!(
        !ready && why.contains("[-]storage failed"),
        "{why}\n{}",
        c.log_besides_requests(60)
    );
}

#[test]
fn full_disk_fails_writes_keeps_reads_and_recovers() {
    let (_images, fs, mut c, mut acked) = server_on_loop_disk();

    // The disk fills up: writes keep being tried until the store refuses one (SQLite
    // reuses the space its log already holds first), and every one acknowledged
    // counts.
    let filler = fs.fill();
    assert!(free_bytes(&fs.at) < 1 << 20, "the disk is not full");
    writes_refused_reads_served(&c, &mut acked, "disk is full");
    // Past the leader's renew deadline (10 s from the last renewal, which may come
    // after the refused write above): its controllers stop, the server stays up.
    c.eventually(Duration::from_secs(45), "the leases lost", || {
        c.log().contains("campaigning again").then_some(())
    });
    assert!(c.child.as_mut().unwrap().try_wait().unwrap().is_none());

    // A little space comes back: small writes fit while big ones are still refused,
    // and readiness does not flap back on the small ones.
    fs.free_slack();
    big_write_refused(&c);
    let name = format!("cm-{}", acked.len() + 4000);
    create_configmap(&c, &name).unwrap();
    acked.push(name);
    not_ready(&c);

    // Space is back: writes, readiness (once writes have gone 10 s without a failure)
    // and the controllers come back on their own.
    std::fs::remove_file(&filler).unwrap();
    c.eventually(Duration::from_secs(30), "ready again", || {
        readyz(&c).0.then_some(())
    });
    let name = format!("cm-{}", acked.len() + 5000);
    create_configmap(&c, &name).unwrap();
    acked.push(name);
    c.ok(&["create", "deployment", "after", "--image=busybox"]);
    c.eventually(Duration::from_secs(60), "the controllers back", || {
        let rs = c.ok(&["get", "replicasets", "-l", "app=after", "-o", "name"]);
        (!rs.is_empty()).then_some(())
    });

    // Nothing acknowledged is lost, across kill -9 too.
    c.kill9();
    c.spawn();
    let mut listed = names(&c);
    listed.sort();
    acked.sort();
    assert_eq!(listed, acked, "{}", c.log_besides_requests(60));
    c.stop();
    drop(fs); // unmounted before the cluster's directory goes
}

#[test]
fn read_only_disk_fails_writes_keeps_reads_and_restarts_whole() {
    let (_images, fs, mut c, mut acked) = server_on_loop_disk();

    fs.fail();
    writes_refused_reads_served(
        &c,
        &mut acked,
        "the data directory's filesystem is read-only",
    );
    assert!(c.child.as_mut().unwrap().try_wait().unwrap().is_none());

    // Repaired and mounted again, the server starts with all it acknowledged.
    c.kill9();
    fs.repair();
    c.spawn();
    let mut listed = names(&c);
    listed.sort();
    acked.sort();
    assert_eq!(listed, acked);
    create_configmap(&c, "cm-after").unwrap();
    assert!(readyz(&c).0);
    c.stop();
    drop(fs);
}
