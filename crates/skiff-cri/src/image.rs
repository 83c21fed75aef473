//! OCI image archives built in process (no registry, no internet): the sandbox image and
//! any test image are a busybox-static root plus a config; `ctr images import` loads them.

use crate::{Error, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;

/// One entry of a layer.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// An image: one layer and the config a runtime reads (entrypoint, cmd, env, …).
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// Full reference, e.g. `docker.io/library/nginx:latest`.
    pub name: String,
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub exposed_ports: Vec<String>,
}

fn sha256_hex(b: &[u8]) -> String {
    let d = Sha256::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}

/// A deterministic tar of `entries` (owner root, mtime 0).
fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match e {
            Entry::Dir { path, mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", path.trim_end_matches('/')), &[][..])?;
            }
            Entry::File { path, mode, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..])?;
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// An image's content: the manifest and the blobs it names (layer, config).
pub struct OciImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// Builds `spec`'s layer, config and manifest (the parts a registry push sends).
pub fn oci_image(spec: &ImageSpec) -> Result<OciImage> {
    let layer = layer_tar(&spec.entries)?;
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    let mut config = json!({
        "Env": spec.env,
    });
    if !spec.entrypoint.is_empty() {
        config["Entrypoint"] = json!(spec.entrypoint);
    }
    if !spec.cmd.is_empty() {
        config["Cmd"] = json!(spec.cmd);
    }
    if !spec.working_dir.is_empty() {
        config["WorkingDir"] = json!(spec.working_dir);
    }
    if !spec.user.is_empty() {
        config["User"] = json!(spec.user);
    }
    if !spec.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, serde_json::Value> = spec
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        config["ExposedPorts"] = json!(ports);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "skiff image build"}],
    }))
    .map_err(|e| Error::Other(e.to_string()))?;
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .map_err(|e| Error::Other(e.to_string()))?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    Ok(OciImage {
        manifest,
        manifest_digest,
        blobs: vec![(layer_digest, layer), (config_digest, config)],
    })
}

/// Writes `spec` as an OCI image-layout archive that `ctr images import` accepts, named by
/// the `io.containerd.image.name` annotation.
pub fn write_oci_archive(spec: &ImageSpec, out: &Path) -> Result<()> {
    let img = oci_image(spec)?;
    let (manifest, manifest_digest) = (&img.manifest, &img.manifest_digest);
    let tag = spec.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": tag},
        }],
    }))
    .map_err(|e| Error::Other(e.to_string()))?;

    let mut b = tar::Builder::new(std::fs::File::create(out)?);
    let mut add = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data)?;
        Ok(())
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for (digest, data) in img
        .blobs
        .iter()
        .map(|(d, b)| (d, b))
        .chain([(manifest_digest, manifest)])
    {
        add(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            data,
        )?;
    }
    b.into_inner()?;
    Ok(())
}

/// A root filesystem of Debian's busybox-static with every applet linked in /bin, a
/// passwd/group with root and nobody, and /tmp.
pub fn busybox_root(busybox: &Path) -> Result<Vec<Entry>> {
    let data = std::fs::read(busybox)?;
    let out = std::process::Command::new(busybox).arg("--list").output()?;
    if !out.status.success() {
        return Err(Error::Other(format!("{} --list failed", busybox.display())));
    }
    let mut entries = vec![
        Entry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data,
        },
    ];
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            entries.push(Entry::Symlink {
                path: format!("bin/{applet}"),
                target: "busybox".into(),
            });
        }
    }
    for (dir, mode) in [
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var", 0o755),
        ("var/www", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
    ] {
        entries.push(Entry::Dir {
            path: dir.into(),
            mode,
        });
    }
    entries.push(Entry::File {
        path: "etc/passwd".into(),
        mode: 0o644,
        data:
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
    });
    entries.push(Entry::File {
        path: "etc/group".into(),
        mode: 0o644,
        data: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    });
    Ok(entries)
}

/// The sandbox ("pause") image: a shell that sleeps until TERM or INT and exits 0, so
/// the pod's namespaces have a holder and StopPodSandbox ends it at once.
pub fn pause_image(name: &str, busybox: &Path) -> Result<ImageSpec> {
    Ok(ImageSpec {
        name: name.into(),
        entries: busybox_root(busybox)?,
        entrypoint: vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
        ],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    })
}

/// Imports an image archive (OCI layout or docker save) into containerd's `k8s.io`
/// namespace, where CRI sees it. containerd's import API is not part of CRI, so this
/// goes through `ctr`, which ships with the containerd package.
pub async fn import(address: &Path, archive: &Path) -> Result<()> {
    let out = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(address)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(archive)
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "ctr images import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
