//! Registry credentials from a pod's `imagePullSecrets`, as kubelet's keyring finds them:
//! `kubernetes.io/dockerconfigjson` (`{"auths": {…}}`) and the older
//! `kubernetes.io/dockercfg` (the `auths` map alone), matched to the image's registry.

use base64::Engine;
use serde_json::Value;
use skiff_cri::cri;

/// The registry an image reference names: its first path component when that looks like
/// a host (has a dot or a port, or is `localhost`), else Docker Hub.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://127.0.0.1:5000/x` → `127.0.0.1:5000`.
fn normalize(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// The credentials in one secret's docker config that apply to `host`.
pub fn matching(secret_type: &str, data: &[u8], host: &str) -> Vec<cri::AuthConfig> {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let auths = if secret_type == "kubernetes.io/dockercfg" {
        v
    } else {
        v["auths"].clone()
    };
    let Some(auths) = auths.as_object() else {
        return Vec::new();
    };
    let want = normalize(host);
    auths
        .iter()
        .filter(|(server, _)| normalize(server) == want)
        .filter_map(|(_, a)| {
            let (mut user, mut pass) = (
                a["username"].as_str().unwrap_or("").to_string(),
                a["password"].as_str().unwrap_or("").to_string(),
            );
            if user.is_empty()
                && let Some(decoded) = a["auth"]
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                && let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':')
            {
                (user, pass) = (u.to_string(), p.to_string());
            }
            // No server_address: containerd parses it as a URL and drops credentials
            // whose host differs, and kubelet leaves it empty too.
            (!user.is_empty()).then(|| cri::AuthConfig {
                username: user,
                password: pass,
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_of_an_image() {
        assert_eq!(registry_host("nginx"), "docker.io");
        assert_eq!(registry_host("library/nginx:1"), "docker.io");
        assert_eq!(
            registry_host("127.0.0.1:5000/skiff/hello:1"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert_eq!(registry_host("ghcr.io/o/i@sha256:ab"), "ghcr.io");
    }

    #[test]
    fn credentials_match_the_registry() {
        let cfg = br#"{"auths": {
            "127.0.0.1:5000": {"username": "u", "password": "p", "auth": "dTpw"},
            "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
            "other.example": {"username": "x", "password": "y"}
        }}"#;
        let local = matching("kubernetes.io/dockerconfigjson", cfg, "127.0.0.1:5000");
        assert_eq!(local.len(), 1);
        assert_eq!(
            (local[0].username.as_str(), local[0].password.as_str()),
            ("u", "p")
        );
        let hub = matching("kubernetes.io/dockerconfigjson", cfg, "docker.io");
        assert_eq!(
            (hub[0].username.as_str(), hub[0].password.as_str()),
            ("hub", "secret")
        );
        assert!(matching("kubernetes.io/dockerconfigjson", cfg, "quay.io").is_empty());
        // The older format is the auths map alone.
        let old = br#"{"http://127.0.0.1:5000": {"username": "u", "password": "p"}}"#;
        assert_eq!(
            matching("kubernetes.io/dockercfg", old, "127.0.0.1:5000").len(),
            1
        );
        assert!(matching("kubernetes.io/dockerconfigjson", b"not json", "x").is_empty());
    }
}
