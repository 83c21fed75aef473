//! Pod volumes on the node: emptyDir (on disk, or tmpfs for `medium: Memory` with its
//! `sizeLimit`), hostPath, configMap, secret, downwardAPI and projected (with the
//! ServiceAccount token; files written from the API and refreshed while the pod runs), and the CRI mounts for a container's volumeMounts
//! (readOnly, subPath). Directories live under `<agent>/volumes/<pod uid>/<volume>`.

use crate::tokens::{TokenManager, Want};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;
use skiff_cri::cri;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join(uid)
}

/// A volume's directory on the host (a hostPath is its own path).
pub fn host_path(root: &Path, uid: &str, vol: &Value) -> Option<PathBuf> {
    if let Some(p) = vol["hostPath"]["path"].as_str() {
        return Some(PathBuf::from(p));
    }
    Some(pod_dir(root, uid).join(vol["name"].as_str()?))
}

/// The CRI mounts of container `c`. A mount of an unknown volume is an error, as the
/// API would have refused it.
pub fn mounts(root: &Path, pod: &Value, c: &Value) -> Result<Vec<cri::Mount>, String> {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let vols = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("");
        let vol = vols
            .iter()
            .find(|v| v["name"] == name)
            .ok_or_else(|| format!("volume {name:?} not found in the pod"))?;
        let mut host = host_path(root, uid, vol).ok_or("volume without a name")?;
        if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                return Err(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                ));
            }
            host = host.join(sub);
            if !host.exists() {
                std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
            }
        }
        // configMap, secret and downwardAPI volumes are read-only, as in Kubernetes.
        let forced_ro = ["configMap", "secret", "downwardAPI", "projected"]
            .iter()
            .any(|k| vol[*k].is_object())
            || vol["persistentVolumeClaim"]["readOnly"] == true;
        out.push(cri::Mount {
            container_path: m["mountPath"].as_str().unwrap_or("").to_string(),
            host_path: host.display().to_string(),
            readonly: m["readOnly"].as_bool().unwrap_or(false) || forced_ro,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Parses a quantity like `64Mi` to bytes for tmpfs' `size=`.
fn size_bytes(q: &str) -> Option<i64> {
    crate::criconv::bytes(q)
}

async fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_mountpoint(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        let want = p.display().to_string();
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
    })
}

type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Kubernetes' atomic writer: the files live in a timestamped directory that the
/// `..data` symlink names, and each top-level name is a symlink through `..data`. An
/// update writes a new directory and swaps `..data` with one rename, so a reader (or an
/// inotify watcher on `..data`) sees the old set or the new one, never a mix.
fn write_files(dir: &Path, files: &Files) -> Result<(), String> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    for rel in files.keys() {
        if rel.is_empty()
            || rel.starts_with('/')
            || rel.split('/').any(|p| p == ".." || p.is_empty())
        {
            return Err(format!("path {rel:?} must be relative without '..'"));
        }
        if rel.starts_with("..") {
            return Err(format!("path {rel:?} must not start with '..'"));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let data_link = dir.join("..data");
    let old = std::fs::read_link(&data_link).ok();
    if old.is_none() || !same_files(&dir.join("..data"), files) {
        let stamp = chrono::Utc::now()
            .format("..%Y_%m_%d_%H_%M_%S.%9f")
            .to_string();
        let ts = dir.join(&stamp);
        std::fs::create_dir(&ts).map_err(|e| io("creating", &ts, e))?;
        let _ = std::fs::set_permissions(&ts, std::fs::Permissions::from_mode(0o755));
        for (rel, (data, mode)) in files {
            let path = ts.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
            }
            std::fs::write(&path, data).map_err(|e| io("writing", &path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| io("chmod", &path, e))?;
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&stamp, &tmp).map_err(|e| io("linking", &tmp, e))?;
        std::fs::rename(&tmp, &data_link).map_err(|e| io("swapping", &data_link, e))?;
        if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    // Top-level names point through ..data; names no longer in the set go.
    let top: std::collections::BTreeSet<&str> = files
        .keys()
        .filter_map(|rel| rel.split('/').next())
        .collect();
    for name in &top {
        let link = dir.join(name);
        let target = Path::new("..data").join(name);
        match std::fs::read_link(&link) {
            Ok(t) if t == target => continue,
            Ok(_) => std::fs::remove_file(&link).map_err(|e| io("removing", &link, e))?,
            // A file or directory of an earlier layout.
            Err(_) if link.is_dir() => {
                std::fs::remove_dir_all(&link).map_err(|e| io("removing", &link, e))?
            }
            Err(_) if link.exists() => {
                std::fs::remove_file(&link).map_err(|e| io("removing", &link, e))?
            }
            Err(_) => {}
        }
        symlink(&target, &link).map_err(|e| io("linking", &link, e))?;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") || top.contains(name.as_str()) {
                continue;
            }
            let p = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    Ok(())
}

/// Whether `root` holds exactly `files`, with their contents and modes.
fn same_files(root: &Path, files: &Files) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fn count(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => count(&e.path()),
                    _ => 1,
                })
                .sum()
        })
    }
    files.iter().all(|(rel, (data, mode))| {
        let p = root.join(rel);
        std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
            && std::fs::read(&p).is_ok_and(|d| d == *data)
    }) && count(root) == files.len()
}

/// The files of a configMap/secret volume: every key, or only `items` (key → path).
fn project(
    data: BTreeMap<String, Vec<u8>>,
    src: &Value,
    default_mode: u32,
) -> Result<Files, String> {
    let mut out = BTreeMap::new();
    match src["items"].as_array() {
        Some(items) => {
            for it in items {
                let key = it["key"].as_str().unwrap_or("");
                let path = it["path"].as_str().unwrap_or(key);
                let mode = it["mode"].as_u64().map_or(default_mode, |m| m as u32);
                match data.get(key) {
                    Some(v) => {
                        out.insert(path.to_string(), (v.clone(), mode));
                    }
                    None if src["optional"].as_bool().unwrap_or(false) => {}
                    None => return Err(format!("configuration key {key:?} not found")),
                }
            }
        }
        None => {
            for (k, v) in data {
                out.insert(k, (v, default_mode));
            }
        }
    }
    Ok(out)
}

/// Field values for downwardAPI volume items.
fn downward(pod: &Value, src: &Value) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mode = src["defaultMode"].as_u64().map_or(0o644, |m| m as u32);
    let mut out = BTreeMap::new();
    for it in src["items"].as_array().into_iter().flatten() {
        let Some(path) = it["path"].as_str() else {
            continue;
        };
        let Some(field) = it["fieldRef"]["fieldPath"].as_str() else {
            continue;
        };
        let m = &pod["metadata"];
        let text = match field {
            "metadata.labels" | "metadata.annotations" => {
                let key = field.trim_start_matches("metadata.");
                m[key]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}=\"{}\"\n", v.as_str().unwrap_or("")))
                    .collect::<String>()
            }
            f => crate::criconv::field_ref(pod, f, "").unwrap_or_default(),
        };
        out.insert(
            path.to_string(),
            (
                text.into_bytes(),
                it["mode"].as_u64().map_or(mode, |m| m as u32),
            ),
        );
    }
    out
}

/// Where env and volumes take values from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    /// As Kubernetes names it in "not found" messages (`configmap "x" not found`).
    pub fn lower(self) -> &'static str {
        match self {
            Source::ConfigMap => "configmap",
            Source::Secret => "secret",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "ConfigMap",
            Source::Secret => "Secret",
        }
    }
}

/// The keys and values of a ConfigMap or Secret; None when it does not exist. A
/// ConfigMap's binaryData counts only where asked (volumes do, env does not, as in
/// Kubernetes).
pub async fn fetch(
    client: &kube::Client,
    ns: &str,
    source: Source,
    name: &str,
    with_binary: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    match source {
        Source::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            Ok(api
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .map(|cm| {
                    let mut d: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    if with_binary {
                        for (k, v) in cm.binary_data.unwrap_or_default() {
                            d.insert(k, v.0);
                        }
                    }
                    d
                }))
        }
        Source::Secret => {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            Ok(api
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .map(|s| {
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect()
                }))
        }
    }
}

/// Creates or refreshes every volume of the pod. Errors are kubelet's FailedMount
/// messages.
pub async fn ensure(
    client: &kube::Client,
    tokens: &TokenManager,
    root: &Path,
    pod: &Value,
) -> Result<(), String> {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    for vol in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = vol["name"].as_str().unwrap_or("");
        let fail = |e: String| format!("MountVolume.SetUp failed for volume \"{name}\" : {e}");
        let Some(dir) = host_path(root, uid, vol) else {
            continue;
        };
        if let Some(claim) = vol["persistentVolumeClaim"]["claimName"].as_str() {
            let target = crate::claims::volume_dir(client, ns, claim)
                .await
                .map_err(fail)?;
            crate::claims::link(&dir, &target).map_err(|e| fail(e.to_string()))?;
            if let Some((gid, on_mismatch)) = crate::claims::fs_group(pod) {
                crate::claims::set_ownership(&target, gid, on_mismatch)
                    .map_err(|e| fail(e.to_string()))?;
            }
        } else if vol["hostPath"].is_object() {
            match vol["hostPath"]["type"].as_str().unwrap_or("") {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?
                }
                "Directory" if !dir.is_dir() => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a directory",
                        dir.display()
                    )));
                }
                "File" if !dir.is_file() => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a file",
                        dir.display()
                    )));
                }
                "FileOrCreate" if !dir.exists() => {
                    std::fs::write(&dir, b"").map_err(|e| fail(e.to_string()))?
                }
                _ => {}
            }
        } else if vol["emptyDir"].is_object() {
            std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
            if vol["emptyDir"]["medium"] == "Memory" && !is_mountpoint(&dir) {
                let mut opts = "mode=0777".to_string();
                if let Some(b) = vol["emptyDir"]["sizeLimit"].as_str().and_then(size_bytes) {
                    opts.push_str(&format!(",size={b}"));
                }
                run(
                    "mount",
                    &[
                        "-t",
                        "tmpfs",
                        "-o",
                        &opts,
                        "tmpfs",
                        &dir.display().to_string(),
                    ],
                )
                .await
                .map_err(fail)?;
            } else {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
            }
        } else if let Some((source, src, field)) = [
            (Source::ConfigMap, &vol["configMap"], "name"),
            (Source::Secret, &vol["secret"], "secretName"),
        ]
        .into_iter()
        .find(|(_, v, _)| v.is_object())
        {
            let obj = src[field].as_str().unwrap_or("");
            let mode = src["defaultMode"].as_u64().map_or(0o644, |m| m as u32);
            let data = match fetch(client, ns, source, obj, true).await.map_err(fail)? {
                Some(d) => d,
                None if src["optional"].as_bool().unwrap_or(false) => BTreeMap::new(),
                None => return Err(fail(format!("{} \"{obj}\" not found", source.lower()))),
            };
            write_files(&dir, &project(data, src, mode).map_err(fail)?).map_err(fail)?;
        } else if let Some(src) = vol.get("downwardAPI").filter(|v| v.is_object()) {
            write_files(&dir, &downward(pod, src)).map_err(fail)?;
        } else if let Some(src) = vol.get("projected").filter(|v| v.is_object()) {
            let files = projected(client, tokens, ns, pod, src)
                .await
                .map_err(fail)?;
            write_files(&dir, &files).map_err(fail)?;
        }
    }
    Ok(())
}

/// A projected volume's files: its sources' files in one directory, the volume's
/// defaultMode for items without their own.
async fn projected(
    client: &kube::Client,
    tokens: &TokenManager,
    ns: &str,
    pod: &Value,
    vol: &Value,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, String> {
    let mode = vol["defaultMode"].as_u64().map_or(0o644, |m| m as u32);
    let mut out = BTreeMap::new();
    for src in vol["sources"].as_array().into_iter().flatten() {
        let files = if let Some((source, s)) = [
            (Source::ConfigMap, &src["configMap"]),
            (Source::Secret, &src["secret"]),
        ]
        .into_iter()
        .find(|(_, v)| v.is_object())
        {
            let obj = s["name"].as_str().unwrap_or("");
            let data = match fetch(client, ns, source, obj, true).await? {
                Some(d) => d,
                None if s["optional"].as_bool().unwrap_or(false) => BTreeMap::new(),
                None => return Err(format!("{} \"{obj}\" not found", source.lower())),
            };
            project(data, s, mode)?
        } else if src["downwardAPI"].is_object() {
            let mut d = src["downwardAPI"].clone();
            d["defaultMode"] = mode.into();
            downward(pod, &d)
        } else if let Some(s) = src.get("serviceAccountToken").filter(|v| v.is_object()) {
            let m = &pod["metadata"];
            let token = tokens
                .get(
                    client,
                    &Want {
                        namespace: ns,
                        service_account: pod["spec"]["serviceAccountName"]
                            .as_str()
                            .unwrap_or("default"),
                        pod_name: m["name"].as_str().unwrap_or(""),
                        pod_uid: m["uid"].as_str().unwrap_or(""),
                        audience: s["audience"].as_str().unwrap_or(""),
                        expiration: s["expirationSeconds"].as_i64().unwrap_or(3600),
                    },
                )
                .await?;
            let path = s["path"].as_str().unwrap_or("token").to_string();
            BTreeMap::from([(path, (token.into_bytes(), mode))])
        } else {
            BTreeMap::new()
        };
        out.extend(files);
    }
    Ok(out)
}

/// Unmounts and removes the pod's volume directories (hostPaths are left alone).
pub async fn remove(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if is_mountpoint(&p) {
            let _ = run("umount", &[&p.display().to_string()]).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mounts_resolve_volumes_subpaths_and_read_only() {
        let root = tempfile::tempdir().unwrap();
        let pod = json!({"metadata": {"uid": "u1"}, "spec": {"volumes": [
            {"name": "shared", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "host", "hostPath": {"path": "/var/log"}},
        ]}});
        let c = json!({"volumeMounts": [
            {"name": "shared", "mountPath": "/data"},
            {"name": "shared", "mountPath": "/logs", "subPath": "logs"},
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "host", "mountPath": "/host", "readOnly": true},
        ]});
        let m = mounts(root.path(), &pod, &c).unwrap();
        assert_eq!(
            m[0].host_path,
            root.path().join("u1/shared").display().to_string()
        );
        assert!(!m[0].readonly);
        assert_eq!(
            m[1].host_path,
            root.path().join("u1/shared/logs").display().to_string()
        );
        assert!(root.path().join("u1/shared/logs").is_dir());
        assert!(m[2].readonly, "configMap volumes are read-only");
        assert_eq!(m[3].host_path, "/var/log");
        assert!(m[3].readonly);
        let bad =
            json!({"volumeMounts": [{"name": "shared", "mountPath": "/x", "subPath": "../etc"}]});
        assert!(mounts(root.path(), &pod, &bad).is_err());
        let missing = json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]});
        assert!(mounts(root.path(), &pod, &missing).is_err());
    }

    #[test]
    fn atomic_writer_swaps_data_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let files = |pairs: &[(&str, &str)]| -> Files {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644)))
                .collect()
        };
        // An earlier layout's plain file is replaced by the link.
        std::fs::write(d.join("A"), b"stale").unwrap();
        write_files(d, &files(&[("A", "1"), ("B", "2")])).unwrap();
        let first = std::fs::read_link(d.join("..data")).unwrap();
        assert!(first.to_string_lossy().starts_with("..20"));
        assert_eq!(std::fs::read_to_string(d.join("A")).unwrap(), "1");
        // Unchanged: nothing is rewritten.
        write_files(d, &files(&[("A", "1"), ("B", "2")])).unwrap();
        assert_eq!(std::fs::read_link(d.join("..data")).unwrap(), first);
        // Changed: a new directory, the old one gone, B's link gone with B.
        write_files(d, &files(&[("A", "3")])).unwrap();
        let second = std::fs::read_link(d.join("..data")).unwrap();
        assert_ne!(second, first);
        assert!(!d.join(&first).exists());
        assert_eq!(std::fs::read_to_string(d.join("A")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(d.join("B")).is_err());
        assert!(write_files(d, &files(&[("..x", "no")])).is_err());
        assert!(write_files(d, &files(&[("a/../../x", "no")])).is_err());
    }

    #[test]
    fn projection_of_keys_items_and_files() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let all = project(data.clone(), &json!({}), 0o644).unwrap();
        assert_eq!(all.len(), 2);
        let some = project(
            data.clone(),
            &json!({"items": [{"key": "b", "path": "sub/b.txt", "mode": 0o600}]}),
            0o644,
        )
        .unwrap();
        assert_eq!(some["sub/b.txt"], (b"2".to_vec(), 0o600));
        assert!(project(data, &json!({"items": [{"key": "zz", "path": "z"}]}), 0o644).is_err());

        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &some).unwrap();
        assert_eq!(std::fs::read(dir.path().join("sub/b.txt")).unwrap(), b"2");
        assert_eq!(
            std::fs::read_link(dir.path().join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}}});
        let d = downward(
            &pod,
            &json!({"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}, {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}),
        );
        assert_eq!(d["labels"].0, b"app=\"x\"\n");
        assert_eq!(d["name"].0, b"p");
    }
}
