//! The cost of the audit log in `skiff bench api`: pod creates against a server writing
//! every request at `Metadata` level and one without an audit log, alternated in one
//! run, side by side.

use crate::{ApiBenchOptions, create_pods_h2, h2_connections, start_server_with};

const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

async fn creates(opts: &ApiBenchOptions, audit: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let log = dir.path().join("audit.log");
    let flags = [
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log.display()),
    ];
    let mut extra = vec!["--disable", "all"];
    if audit {
        extra.extend(flags.iter().map(String::as_str));
    }
    let (server, _) = start_server_with(&opts.skiff, &extra).await?;
    let conns = h2_connections(&server.kubeconfig, server.port, opts.connections.max(1)).await?;
    create_pods_h2(&conns, "warm", opts.concurrency * 4, opts.concurrency).await?;
    let tp = create_pods_h2(&conns, "audited", opts.creates, opts.concurrency).await?;
    if audit {
        let lines = std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        anyhow::ensure!(lines >= opts.creates, "the audit log holds {lines} events");
    }
    Ok(tp.per_sec)
}

pub async fn run(opts: &ApiBenchOptions) -> anyhow::Result<()> {
    println!();
    println!("audit log at Metadata level (every request, two stages each)");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    // Alternated, best of two each: the two servers share the machine's noise.
    for _ in 0..2 {
        on.push(creates(opts, true).await?);
        off.push(creates(opts, false).await?);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let (on, off) = (best(&on), best(&off));
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>9.0}%   (target >= 90%)",
        "creates/s: audited | not audited",
        on,
        off,
        100.0 * on / off.max(1e-9)
    );
    Ok(())
}
