//! Helpers for tests on a real node: test images built offline, pod phases.

use super::{Cluster, eventually, tail};
use serde_json::Value;
use skiff_cri::image;
use std::time::Duration;

/// An nginx stand-in (busybox httpd on :80) and busybox, as `nginx` and `busybox`.
pub fn write_test_images(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut root = image::busybox_root("/bin/busybox".as_ref()).unwrap();
    root.push(image::Entry::File {
        path: "var/www/index.html".into(),
        mode: 0o644,
        data: b"hello from skiff\n".to_vec(),
    });
    let nginx = image::ImageSpec {
        name: "docker.io/library/nginx:latest".into(),
        entries: root.clone(),
        cmd: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
            .map(String::from)
            .to_vec(),
        env: vec!["PATH=/bin".into()],
        exposed_ports: vec!["80/tcp".into()],
        ..Default::default()
    };
    image::write_oci_archive(&nginx, &dir.join("nginx.tar")).unwrap();
    // busybox has no TLS client that checks certificates: Debian's openssl, with the
    // libraries it links, goes in beside it.
    root.extend(host_program("/usr/bin/openssl"));
    let busybox = image::ImageSpec {
        name: "docker.io/library/busybox:latest".into(),
        entries: root,
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin:/usr/bin".into()],
        ..Default::default()
    };
    image::write_oci_archive(&busybox, &dir.join("busybox.tar")).unwrap();
}

/// A host program and the shared libraries `ldd` says it loads, as image entries at the
/// same paths (with their parent directories).
fn host_program(path: &str) -> Vec<image::Entry> {
    let ldd = std::process::Command::new("ldd")
        .arg(path)
        .output()
        .unwrap();
    let mut files = vec![path.to_string()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x…)" or "/lib64/ld-linux… (0x…)"
        let lib = line
            .split("=>")
            .last()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
            files.push(lib.to_string());
        }
    }
    let mut dirs = std::collections::BTreeSet::new();
    for f in &files {
        let mut p = std::path::Path::new(f).parent();
        while let Some(d) = p.filter(|d| d != &std::path::Path::new("/")) {
            dirs.insert(d.to_string_lossy().trim_start_matches('/').to_string());
            p = d.parent();
        }
    }
    let mut entries: Vec<image::Entry> = dirs
        .into_iter()
        .filter(|d| d != "bin")
        .map(|path| image::Entry::Dir { path, mode: 0o755 })
        .collect();
    for f in files {
        entries.push(image::Entry::File {
            path: f.trim_start_matches('/').to_string(),
            mode: 0o755,
            data: std::fs::read(&f).unwrap(),
        });
    }
    entries
}

pub fn pod_json(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

pub fn wait_phase(c: &Cluster, name: &str, phase: &str) -> Value {
    let mut last = Value::Null;
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(Duration::from_secs(60), || {
            let p = pod_json(c, name)?;
            last = p.clone();
            (p["status"]["phase"] == phase).then_some(p)
        })
    }));
    found.unwrap_or_else(|_| {
        panic!(
            "pod {name} not {phase}: {}\nlog:\n{}",
            last["status"],
            tail(&c.log(), 40)
        )
    })
}

/// PIDs of the containerds running with the config under `agent_dir` (not zombies).
pub fn containerds(agent_dir: &std::path::Path) -> Vec<u32> {
    let config = agent_dir.join("containerd/config.toml");
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            args.first()
                .is_some_and(|a| a.ends_with(b"/containerd") || *a == b"containerd")
                && args.contains(&config.as_os_str().as_encoded_bytes())
                && !stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, s)| s.starts_with('Z'))
        })
        .collect();
    pids.sort();
    pids
}

/// The PID of a CRI container's main process, from its shim's state.
pub fn container_pid(agent_dir: &std::path::Path, container_id: &str) -> u32 {
    let id = container_id.trim_start_matches("containerd://");
    let path = agent_dir
        .join("containerd/state/io.containerd.runtime.v2.task/k8s.io")
        .join(id)
        .join("init.pid");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// `GET /` over HTTP/1.0 to `ip:port`: the whole response, headers and body.
pub fn http_get(ip: &str, port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}
