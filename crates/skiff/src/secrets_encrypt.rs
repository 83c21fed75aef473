//! `--secrets-encryption` / `--encryption-provider-config` wiring, and the
//! `skiff secrets-encrypt` client of the server's `/skiff/v1/secrets-encryption`.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use skiff_apiserver::secrets_encryption::Control;
use skiff_encryption::{EncryptingStore, EncryptionConfiguration};
use skiff_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct SecretsEncryptArgs {
    /// The server's data dir (its admin kubeconfig is used).
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Talk to the server with this kubeconfig instead (a cluster admin's).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Whether Secrets are encrypted, with which keys, and what each stored one uses.
    Status,
    /// A new key for the generated configuration; every Secret re-encrypted with it,
    /// then the old key dropped (safe to interrupt: run it again).
    Rotate,
    /// Every Secret re-encrypted with the configuration's current write key (after
    /// editing an --encryption-provider-config file and restarting).
    Reencrypt,
}

/// The store the server runs on, and the encryption it applies (if any).
type Wrapped = (Arc<dyn Store>, Option<Arc<Control>>);

/// The store the server runs on: `store` itself, or an encrypting one over it.
pub fn wrap_store(
    store: Arc<dyn Store>,
    data_dir: &Path,
    generated: bool,
    provider_config: Option<PathBuf>,
) -> anyhow::Result<Wrapped> {
    let (path, config) = match (generated, provider_config) {
        (false, None) => return Ok((store, None)),
        (_, Some(p)) => {
            let c = EncryptionConfiguration::load(&p)?;
            (p, c)
        }
        (true, None) => {
            let dir = data_dir.join("cred");
            skiff_pki::private::create_private_dir(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            let p = dir.join("encryption-config.json");
            if !p.exists() {
                EncryptionConfiguration::generated().save(&p)?;
                tracing::info!(path = %p.display(), "generated a secrets encryption key");
            }
            let c = EncryptionConfiguration::load(&p)?;
            (p, c)
        }
    };
    let enc = Arc::new(EncryptingStore::new(store, &config)?);
    let control = Arc::new(Control::new(enc.clone(), path, generated));
    Ok((enc, Some(control)))
}

pub async fn run(a: SecretsEncryptArgs, default_data_dir: PathBuf) -> anyhow::Result<()> {
    let kubeconfig = a.kubeconfig.unwrap_or_else(|| {
        a.data_dir
            .unwrap_or(default_data_dir)
            .join("kubeconfig.yaml")
    });
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    let (method, path) = match a.command {
        Sub::Status => (http::Method::GET, "/skiff/v1/secrets-encryption"),
        Sub::Rotate => (http::Method::POST, "/skiff/v1/secrets-encryption/rotate"),
        Sub::Reencrypt => (http::Method::POST, "/skiff/v1/secrets-encryption/reencrypt"),
    };
    let req = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Vec::new())?;
    let v: Value = client.request(req).await?;
    if method == http::Method::GET {
        print_status(&v);
    } else {
        println!("{} Secrets re-encrypted", v["rewritten"]);
        if let Some(k) = v.get("writeKey") {
            println!(
                "Current key: {} {}",
                k["type"].as_str().unwrap_or(""),
                k["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn print_status(v: &Value) {
    println!("Encryption Status: Enabled");
    let origin = if v["generated"] == true {
        "generated"
    } else {
        "--encryption-provider-config"
    };
    println!(
        "Configuration: {} ({origin})",
        v["config"].as_str().unwrap_or("")
    );
    println!();
    println!("{:<7} {:<10} Name", "Active", "Key Type");
    println!("{:<7} {:<10} ----", "------", "--------");
    for k in v["keys"].as_array().into_iter().flatten() {
        let active = if Some(k) == v.get("writeKey") {
            " *"
        } else {
            ""
        };
        println!(
            "{active:<7} {:<10} {}",
            k["type"].as_str().unwrap_or(""),
            k["name"].as_str().unwrap_or("")
        );
    }
    if v["writeKey"].is_null() {
        println!("(identity first: new Secrets are written unencrypted)");
    }
    println!();
    println!("Stored Secrets by key:");
    for (k, n) in v["storedByKey"].as_object().into_iter().flatten() {
        let k = if k == "identity" {
            "identity (not encrypted)"
        } else {
            k
        };
        println!("  {k:<48} {n}");
    }
}
