//! Secrets encrypted at rest, with real kubectl against a real `skiff server`: what
//! the data files hold without encryption and with it, `skiff secrets-encrypt`, and a
//! key rotation killed midway (kill -9) that loses no Secret.

mod common;

use common::Cluster;
use std::process::Command;
use std::time::Duration;

const MARKER: &str = "TOPSECRET-4c1f-MARKER";
const SECRETS: usize = 400;

/// Whether any of the store's files (database, WAL) holds `needle`.
fn on_disk(c: &Cluster, needle: &[u8]) -> bool {
    let db = c.data_dir().join("db");
    std::fs::read_dir(&db).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secrets_encrypt(c: &Cluster, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("secrets-encrypt")
        .args(args)
        .arg("--data-dir")
        .arg(c.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `SECRETS` Secrets in one kubectl call (a stream of documents), each holding the
/// marker.
fn create_secrets(c: &Cluster) {
    let docs: Vec<String> = (0..SECRETS)
        .map(|i| format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{i}\nstringData:\n  v: {MARKER}-{i}\n"))
        .collect();
    let out = c.kubectl_stdin(&["create", "-f", "-"], &docs.join("---\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn all_secrets_read_back(c: &Cluster) {
    let json = c.ok(&["get", "secrets", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut found = 0;
    for s in v["items"].as_array().unwrap() {
        let name = s["metadata"]["name"].as_str().unwrap();
        if let Some(i) = name.strip_prefix('s').and_then(|n| n.parse::<usize>().ok()) {
            assert_eq!(s["data"]["v"], b64(&format!("{MARKER}-{i}")), "{name}");
            found += 1;
        }
    }
    assert_eq!(found, SECRETS);
}

#[test]
fn secrets_are_unreadable_on_disk_and_survive_a_killed_rotation() {
    // Without encryption the data files hold the Secret (the check can see it).
    let plain = Cluster::start();
    plain.ok(&[
        "create",
        "secret",
        "generic",
        "p",
        &format!("--from-literal=v={MARKER}"),
    ]);
    assert!(on_disk(&plain, b64(MARKER).as_bytes()));
    drop(plain);

    let mut c = Cluster::start_with(&["server", "--secrets-encryption"]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "p",
        &format!("--from-literal=v={MARKER}"),
    ]);
    create_secrets(&c);
    all_secrets_read_back(&c);
    assert!(!on_disk(&c, &MARKER.as_bytes()[..12]));
    assert!(!on_disk(&c, &b64(MARKER).as_bytes()[..16]));
    let status = secrets_encrypt(&c, &["status"]);
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
    let key_lines: Vec<&str> = status.lines().filter(|l| l.contains("AES-CBC")).collect();
    assert_eq!(key_lines.len(), 1, "{status}");
    assert!(key_lines[0].trim_start().starts_with('*'), "{status}");
    assert!(!status.contains("identity (not encrypted)"), "{status}");

    // A rotation killed midway: the server dies while re-encrypting.
    let rotation = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["secrets-encrypt", "rotate", "--data-dir"])
        .arg(c.data_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the new key is in the configuration, while Secrets are re-sealed.
    let config = c.data_dir().join("cred/encryption-config.json");
    common::eventually(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&config).unwrap_or_default();
        (text.matches("aescbckey-").count() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(20));
    c.kill9();
    let mut rotation = rotation;
    let _ = rotation.wait();
    c.spawn();
    eprintln!("after the kill:\n{}", secrets_encrypt(&c, &["status"]));
    all_secrets_read_back(&c);

    // Rotating again finishes the job: one key, every Secret under it.
    let out = secrets_encrypt(&c, &["rotate"]);
    assert!(out.contains("Secrets re-encrypted"), "{out}");
    let status = secrets_encrypt(&c, &["status"]);
    let key_lines: Vec<&str> = status.lines().filter(|l| l.contains("AES-CBC")).collect();
    assert_eq!(key_lines.len(), 1, "{status}");
    let name = key_lines[0].split_whitespace().last().unwrap();
    assert!(
        status.contains(&format!("aescbc:{name}")) && !status.contains("identity"),
        "{status}"
    );
    all_secrets_read_back(&c);
    c.restart();
    all_secrets_read_back(&c);
    assert!(!on_disk(&c, &b64(MARKER).as_bytes()[..16]));
}
