//! `persistentVolumeClaim` volumes on the node: the claim's bound volume is found through
//! the API (claim → `volumeName` → PersistentVolume), its directory (a local-path or
//! `hostPath` volume, or a `local` one) is linked at the pod's volume path so the CRI
//! mount reaches it, and a pod's `fsGroup` owns it as kubelet's SetVolumeOwnership makes
//! it: group set, group read/write (and execute where the owner has it), setgid on
//! directories; with `fsGroupChangePolicy: OnRootMismatch` only when the top differs.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

async fn get<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    path: String,
) -> Result<T, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("valid request");
    client.request::<T>(req).await.map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    })
}

/// The directory of the volume bound to claim `ns/claim`.
pub async fn volume_dir(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, String> {
    let c: PersistentVolumeClaim = get(
        client,
        format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}"),
    )
    .await?;
    let volume = c
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
    let pv: PersistentVolume = get(client, format!("/api/v1/persistentvolumes/{volume}")).await?;
    let spec = pv.spec.unwrap_or_default();
    match (spec.host_path, spec.local) {
        (Some(h), _) => {
            // local-path volumes are `hostPath` with DirectoryOrCreate, as rancher's.
            if h.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&h.path).map_err(|e| format!("{}: {e}", h.path))?;
            }
            Ok(PathBuf::from(h.path))
        }
        (None, Some(l)) if Path::new(&l.path).exists() => Ok(PathBuf::from(l.path)),
        (None, Some(l)) => Err(format!("path \"{}\" does not exist", l.path)),
        (None, None) => Err(format!(
            "volume \"{volume}\" is of a type this node cannot mount (hostPath and local are supported)"
        )),
    }
}

/// Makes `link` point at `target` (replacing a stale link).
pub fn link(link: &Path, target: &Path) -> std::io::Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
}

/// The pod's fsGroup and whether ownership is changed only when the top differs.
pub fn fs_group(pod: &Value) -> Option<(u32, bool)> {
    let sc = &pod["spec"]["securityContext"];
    let gid = sc["fsGroup"].as_u64()? as u32;
    Some((gid, sc["fsGroupChangePolicy"] == "OnRootMismatch"))
}

const RW: u32 = 0o060;
const SETGID: u32 = 0o2000;

fn wanted_mode(mode: u32, is_dir: bool) -> u32 {
    let mut m = mode | RW;
    if is_dir || mode & 0o100 != 0 {
        m |= 0o010;
    }
    if is_dir {
        m |= SETGID;
    }
    m
}

/// Gives `gid` the volume at `root` (symlinks are not followed).
pub fn set_ownership(root: &Path, gid: u32, only_on_mismatch: bool) -> std::io::Result<()> {
    let top = std::fs::metadata(root)?;
    let top_ok = top.gid() == gid && top.mode() & 0o7777 == wanted_mode(top.mode() & 0o7777, true);
    if only_on_mismatch && top_ok {
        return Ok(());
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)?;
        if md.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&p, None, Some(gid))?;
        let mode = md.mode() & 0o7777;
        std::fs::set_permissions(
            &p,
            std::fs::Permissions::from_mode(wanted_mode(mode, md.is_dir())),
        )?;
        if md.is_dir() {
            stack.extend(std::fs::read_dir(&p)?.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// Whether every claim the pod's volumes name is bound (simulated nodes "mount" this way).
pub async fn all_bound(client: &kube::Client, pod: &Value) -> Result<(), String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            let c: PersistentVolumeClaim = get(
                client,
                format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}"),
            )
            .await?;
            if c.spec
                .and_then(|s| s.volume_name)
                .is_none_or(|v| v.is_empty())
            {
                return Err(format!("persistentvolumeclaim \"{claim}\" is not bound"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_gives_the_group_read_write_and_setgid_directories() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        let f = sub.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let gid = std::fs::metadata(d.path()).unwrap().gid();
        set_ownership(d.path(), gid, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&sub), 0o2770);
        assert_eq!(mode(&f), 0o660);
        assert_eq!(std::fs::metadata(&f).unwrap().gid(), gid);
    }

    #[test]
    fn a_link_is_made_once_and_replaced_when_stale() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, l) = (
            d.path().join("a"),
            d.path().join("b"),
            d.path().join("pod/vol"),
        );
        link(&l, &a).unwrap();
        link(&l, &a).unwrap();
        assert_eq!(std::fs::read_link(&l).unwrap(), a);
        link(&l, &b).unwrap();
        assert_eq!(std::fs::read_link(&l).unwrap(), b);
    }
}
