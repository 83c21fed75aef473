//! Where container logs live on the node: kubelet's layout, so log collectors (fluentd,
//! Fluent Bit, Promtail… with a hostPath of /var/log) find them where they look.
//!
//! Under a root (`/var/log` by default as root, `--pod-log-dir` to move it):
//! `pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log`, written by the runtime (the
//! CRI log directory and path), and `containers/<pod>_<ns>_<container>-<id>.log`, a
//! symlink to the live file made once the container started. A dead container's link
//! goes when it is removed, a pod's directory and links when the pod is.
//!
//! Several agents may share one root (a lab's nodes on one machine), so this removes
//! only what it is told is gone: never another pod's files because it does not know
//! that pod.

use std::io;
use std::path::{Path, PathBuf};

/// ext4's (and most filesystems') longest file name; kubelet cuts link names to fit.
const MAX_FILE_NAME: usize = 255;

/// The log root an agent uses without `--pod-log-dir`: where collectors look when it
/// may write there (root), else its own directory.
pub fn default_root(agent_dir: &Path, is_root: bool) -> PathBuf {
    if is_root {
        PathBuf::from("/var/log")
    } else {
        agent_dir.to_path_buf()
    }
}

/// kubelet's `legacyLogSymlink` name: `<pod>_<ns>_<container>-<id>.log`, cut to the
/// longest file name (the `.log` kept).
pub fn link_name(namespace: &str, pod: &str, container: &str, id: &str) -> String {
    const SUFFIX: &str = ".log";
    let mut name = format!("{pod}_{namespace}_{container}-{id}");
    let mut cut = MAX_FILE_NAME - SUFFIX.len();
    if name.len() > cut {
        // Names are DNS labels and ids hex, so any cut is on a char boundary; stay safe.
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name + SUFFIX
}

/// A pod's log directory under `pods/` is `<ns>_<name>_<uid>`: names and uids have no
/// `_`, so the uid alone finds it.
fn is_pod_dir_of(file_name: &str, uid: &str) -> bool {
    !uid.is_empty()
        && file_name
            .strip_suffix(uid)
            .is_some_and(|rest| rest.ends_with('_') && rest.matches('_').count() == 2)
}

/// One log root: `pods/` for the runtime's files, `containers/` for the links.
#[derive(Debug, Clone)]
pub struct LogDirs {
    root: PathBuf,
}

impl LogDirs {
    pub fn new(root: impl Into<PathBuf>) -> LogDirs {
        LogDirs { root: root.into() }
    }

    /// The CRI log root: each sandbox's `log_directory` is a pod's directory in here.
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Links a started container's log file (`target`) under `containers/`, replacing a
    /// link of the same name left by an earlier run.
    pub fn link(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        id: &str,
        target: &Path,
    ) -> io::Result<()> {
        let link = self
            .containers()
            .join(link_name(namespace, pod, container, id));
        std::fs::create_dir_all(self.containers())?;
        match std::fs::remove_file(&link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(target, &link)
    }

    /// Removes a removed container's link.
    pub fn unlink(&self, namespace: &str, pod: &str, container: &str, id: &str) {
        let link = self
            .containers()
            .join(link_name(namespace, pod, container, id));
        remove_quietly(&link);
    }

    /// Removes the log directory of the pod with this uid and every link into it, once
    /// the runtime holds nothing of the pod.
    pub fn remove_pod(&self, uid: &str) {
        let dirs: Vec<PathBuf> = entries(&self.pods())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| is_pod_dir_of(n, uid))
            })
            .collect();
        if dirs.is_empty() {
            return;
        }
        self.remove_links(|target| dirs.iter().any(|d| target.starts_with(d)));
        for d in dirs {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                tracing::warn!(dir = %d.display(), error = %e, "removing a pod's logs");
            }
        }
    }

    /// Links into `pods/` whose pod directory is gone (a pod removed while the agent was
    /// away). A link whose file alone is missing may be mid-rotation: it stays.
    pub fn prune_dangling(&self) {
        let pods = self.pods();
        self.remove_links(|target| {
            let Ok(rest) = target.strip_prefix(&pods) else {
                return false;
            };
            rest.components()
                .next()
                .is_some_and(|pod| !pods.join(pod).exists())
        });
    }

    /// At a clean stop with no pods left: `pods/` and `containers/` go if empty (another
    /// agent's files keep them).
    pub fn remove_if_empty(&self) {
        for d in [self.containers(), self.pods()] {
            let _ = std::fs::remove_dir(d);
        }
    }

    fn remove_links(&self, doomed: impl Fn(&Path) -> bool) {
        for link in entries(&self.containers()) {
            if std::fs::read_link(&link).is_ok_and(|t| doomed(&t)) {
                remove_quietly(&link);
            }
        }
    }
}

fn entries(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "removing a log link");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn root_writes_where_collectors_look() {
        let agent = Path::new("/data/agent");
        assert_eq!(default_root(agent, true), Path::new("/var/log"));
        assert_eq!(default_root(agent, false), agent);
        let d = LogDirs::new(default_root(agent, true));
        assert_eq!(d.pods(), Path::new("/var/log/pods"));
        assert_eq!(d.containers(), Path::new("/var/log/containers"));
    }

    #[test]
    fn link_names_as_kubelet() {
        assert_eq!(
            link_name("default", "web", "nginx", ID),
            format!("web_default_nginx-{ID}.log")
        );
        // Too long for a file name: the id is cut, as kubelet cuts it.
        let long = "p".repeat(200);
        let name = link_name("ns", &long, "c", ID);
        assert_eq!(name.len(), MAX_FILE_NAME);
        assert_eq!(name, format!("{long}_ns_c-{}.log", &ID[..45]));
    }

    #[test]
    fn pod_dirs_found_by_uid() {
        assert!(is_pod_dir_of("ns_web_u-1", "u-1"));
        assert!(!is_pod_dir_of("ns_web_u-1", "1"));
        assert!(!is_pod_dir_of("ns_web_xu-1", "u-1"));
        assert!(!is_pod_dir_of("ns_web_u-1", ""));
    }

    /// A pod with a live and a dead container, and another pod beside it.
    fn layout(d: &LogDirs) -> (PathBuf, PathBuf) {
        let ours = d.pods().join("ns_web_u1");
        let theirs = d.pods().join("ns_db_u2");
        for (pod, c) in [(&ours, "c"), (&theirs, "d")] {
            std::fs::create_dir_all(pod.join(c)).unwrap();
            std::fs::write(pod.join(c).join("0.log"), "x\n").unwrap();
            std::fs::write(pod.join(c).join("1.log"), "y\n").unwrap();
        }
        d.link("ns", "web", "c", "a0", &ours.join("c/0.log"))
            .unwrap();
        d.link("ns", "web", "c", "a1", &ours.join("c/1.log"))
            .unwrap();
        d.link("ns", "db", "d", "b1", &theirs.join("d/1.log"))
            .unwrap();
        (ours, theirs)
    }

    fn links(d: &LogDirs) -> Vec<String> {
        let mut v: Vec<String> = entries(&d.containers())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn links_follow_containers_and_pods() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LogDirs::new(tmp.path());
        let (ours, theirs) = layout(&d);
        let read = std::fs::read_to_string(d.containers().join(link_name("ns", "web", "c", "a1")));
        assert_eq!(read.unwrap(), "y\n");
        // Linking again (a restarted agent) replaces the link.
        d.link("ns", "web", "c", "a1", &ours.join("c/1.log"))
            .unwrap();

        d.unlink("ns", "web", "c", "a0");
        assert_eq!(
            links(&d),
            ["db_ns_d-b1.log", "web_ns_c-a1.log"].map(String::from)
        );
        d.remove_pod("u1");
        assert!(!ours.exists() && theirs.exists());
        assert_eq!(links(&d), ["db_ns_d-b1.log"].map(String::from));
        // Not empty: another pod's files keep the directories.
        d.remove_if_empty();
        assert!(d.pods().exists() && d.containers().exists());
        d.remove_pod("u2");
        d.remove_if_empty();
        assert!(!d.pods().exists() && !d.containers().exists());
    }

    #[test]
    fn dangling_links_go_only_with_their_pod() {
        let tmp = tempfile::tempdir().unwrap();
        let d = LogDirs::new(tmp.path());
        let (ours, theirs) = layout(&d);
        // Mid-rotation: the live file is renamed before the runtime reopens it.
        std::fs::remove_file(theirs.join("d/1.log")).unwrap();
        std::fs::remove_dir_all(&ours).unwrap();
        // A link of someone else's, elsewhere.
        std::os::unix::fs::symlink("/nowhere/x.log", d.containers().join("other.log")).unwrap();
        d.prune_dangling();
        assert_eq!(links(&d), ["db_ns_d-b1.log", "other.log"].map(String::from));
    }
}
