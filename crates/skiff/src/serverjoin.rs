//! The joining side of `skiff server --server URL --token T`: the cluster CA is fetched
//! and checked against the hash the server token carries before the token is sent
//! (k3s' way), then the CA's key, the ServiceAccount key and the agents' join token are
//! fetched with it and kept as this server's own, so both servers are one cluster.

use anyhow::Context;
use serde_json::Value;
use skiff_apiserver::serverjoin::{BOOTSTRAP, CACERTS, ca_hash, server_token, token_ca_hash};
use std::path::Path;

async fn get(
    server: &str,
    ca: Option<&str>,
    token: Option<&str>,
    path: &str,
) -> anyhow::Result<Value> {
    use base64::Engine;
    let trust = match ca {
        Some(pem) => format!(
            "certificate-authority-data: {}",
            base64::engine::general_purpose::STANDARD.encode(pem)
        ),
        // Only for the CA itself, which is then checked against the token's hash.
        None => "insecure-skip-tls-verify: true".to_string(),
    };
    let user = token.map(|t| format!("token: {t}")).unwrap_or_default();
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    {trust}\nusers:\n- name: u\n  user: {{{user}}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
    );
    let kc = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    let req = http::Request::get(path).body(Vec::new())?;
    client.request::<Value>(req).await.map_err(|e| match e {
        kube::Error::Api(s) => anyhow::anyhow!("{server}: {}", s.message),
        e => anyhow::anyhow!("{server}: {e}"),
    })
}

/// Fetches what makes this server part of `server`'s cluster into `data_dir` and returns
/// the etcd client URL of that server's member.
pub async fn fetch(server: &str, token: &str, data_dir: &Path) -> anyhow::Result<String> {
    let want = token_ca_hash(token).context(
        "--token is not a server token (K10<CA hash>::server:<secret>, as in the first server's <data-dir>/server-token)",
    )?;
    let ca = get(server, None, None, CACERTS).await?;
    let ca = ca["ca.crt"]
        .as_str()
        .context("no CA in the answer")?
        .to_string();
    anyhow::ensure!(
        ca_hash(&ca) == want,
        "the server at {server} does not hold the cluster CA the token names; not joining it"
    );
    let b = get(server, Some(&ca), Some(token), BOOTSTRAP)
        .await
        .context("joining refused")?;
    let tls = data_dir.join("tls");
    skiff_pki::private::create_private_dir(&tls)?;
    for (file, path) in [
        ("ca.crt", tls.join("ca.crt")),
        ("ca.key", tls.join("ca.key")),
        ("service-account.key", tls.join("service-account.key")),
        ("request-header-ca.crt", tls.join("request-header-ca.crt")),
        ("request-header-ca.key", tls.join("request-header-ca.key")),
        ("token", data_dir.join("token")),
    ] {
        let v = b[file]
            .as_str()
            .with_context(|| format!("no {file} in the answer"))?;
        skiff_pki::write_private(&path, v.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(server, "joined the cluster's CA and keys");
    b["etcd"]
        .as_str()
        .map(str::to_string)
        .context("no etcd URL in the answer")
}

/// `<data-dir>/server-token`: made on a first `--cluster-init` start, or the token this
/// server joined with, so any server can let the next one in.
pub fn ensure_server_token(
    data_dir: &Path,
    ca_pem: &str,
    join: Option<&(String, String)>,
) -> anyhow::Result<()> {
    let path = data_dir.join("server-token");
    if path.exists() {
        return Ok(());
    }
    let token = match join {
        Some((_, t)) => t.clone(),
        None => server_token(
            ca_pem,
            &format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
        ),
    };
    skiff_pki::write_private(&path, token.as_bytes())?;
    Ok(())
}
