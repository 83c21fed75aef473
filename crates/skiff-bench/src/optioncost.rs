//! What a server option costs in `skiff bench api`: creates against a server with the
//! option and one without, alternated in one run (best of two each, so both share the
//! machine's noise), side by side. The audit log at `Metadata` level (pods), and
//! Secrets encrypted at rest (Secrets).

use crate::{ApiBenchOptions, create_pods_h2, h2_connections, requests_h2, start_server_with};

#[derive(Clone, Copy)]
enum Object {
    Pod,
    Secret,
}

const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

async fn creates(opts: &ApiBenchOptions, flags: &[String], what: Object) -> anyhow::Result<f64> {
    let mut extra = vec!["--disable", "all"];
    extra.extend(flags.iter().map(String::as_str));
    let (server, _) = start_server_with(&opts.skiff, &extra).await?;
    let conns = h2_connections(&server.kubeconfig, server.port, opts.connections.max(1)).await?;
    let conns = &conns;
    let run = |prefix: &'static str, total: usize| async move {
        match what {
            Object::Pod => create_pods_h2(conns, prefix, total, opts.concurrency).await,
            Object::Secret => {
                // A kilobyte of data, as a typical credential or certificate Secret.
                let data = "A".repeat(1024);
                requests_h2(conns, total, opts.concurrency, http::StatusCode::CREATED, move |i| {
                    let body = format!(
                        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"{prefix}-{i}"}},"data":{{"k":"{data}"}}}}"#
                    );
                    http::Request::post("https://127.0.0.1/api/v1/namespaces/default/secrets")
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                })
                .await
            }
        }
    };
    run("warm", opts.concurrency * 4).await?;
    Ok(run("timed", opts.creates).await?.per_sec)
}

async fn compare(
    opts: &ApiBenchOptions,
    label: &str,
    flags: &[String],
    what: Object,
    target: &str,
) -> anyhow::Result<()> {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        on.push(creates(opts, flags, what).await?);
        off.push(creates(opts, &[], what).await?);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let (on, off) = (best(&on), best(&off));
    println!(
        "{label:<44} {on:>14.0} {off:>14.0} {:>9.0}%   ({target})",
        100.0 * on / off.max(1e-9)
    );
    Ok(())
}

pub async fn run(opts: &ApiBenchOptions) -> anyhow::Result<()> {
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>10}",
        "what an option costs", "with", "without", "ratio"
    );
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let audit = [
        format!("--audit-policy-file={}", policy.display()),
        format!(
            "--audit-log-path={}",
            dir.path().join("audit.log").display()
        ),
    ];
    compare(
        opts,
        "pod creates/s, audit log at Metadata",
        &audit,
        Object::Pod,
        "target >= 90%",
    )
    .await?;
    let enc = ["--secrets-encryption".to_string()];
    compare(
        opts,
        "Secret creates/s, encrypted at rest (aescbc)",
        &enc,
        Object::Secret,
        "target >= 80%",
    )
    .await
}
