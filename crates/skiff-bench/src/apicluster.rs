//! `skiff bench api --datastore etcd --etcd-members N`: API creates/s through one server
//! of an embedded etcd cluster (`--cluster-init`, the others joined) against raw
//! `etcd-client` puts to that server's member of the same cluster, at the same
//! concurrency from this process; a one-member cluster first, on the same path (mutual
//! TLS and all), so only the member count differs between the rows.

use crate::cluster::Cluster;
use crate::{ApiBenchOptions, Throughput, cpu_seconds, create_pods_h2, h2_connections, ms, pod};
use anyhow::Context;
use std::sync::Arc;

struct Figures {
    api: Throughput,
    raw: skiff_store::BenchResult,
    /// CPU seconds per create of the server under test.
    server_cpu: f64,
    /// CPU seconds per create of every member, through the API and raw.
    etcd_cpu_api: f64,
    etcd_cpu_raw: f64,
}

pub(crate) async fn run(opts: &ApiBenchOptions) -> anyhow::Result<()> {
    println!(
        "skiff bench api: {} creates, {} concurrent requests over {} HTTP/2 connection(s), embedded etcd of 1 and {} members, the server under test the first; creates only (the rest of the bench is the same with any member count: run it without --etcd-members)",
        opts.creates, opts.concurrency, opts.connections, opts.etcd_members
    );
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>10}",
        "measure", "skiff API", "raw engine", "ratio"
    );
    for members in [1, opts.etcd_members] {
        let f = measure(opts, members).await?;
        print_rows(members, &f);
    }
    println!(
        "(raw: etcd-client puts to the first server's member, the one its API server uses, with its client certificate; servers ran with their controllers disabled)"
    );
    println!("target: API create throughput >= 50% of the raw engine's");
    Ok(())
}

async fn measure(opts: &ApiBenchOptions, members: usize) -> anyhow::Result<Figures> {
    // Controllers off, as in the one-member figure: the API server's own work only.
    let cluster = Cluster::start(&opts.skiff, members, &["--disable", "all"]).await?;
    let s = &cluster.servers[0];
    let pid = s.pid().context("the server under test")?;
    let etcd_pids: Vec<u32> = cluster
        .servers
        .iter()
        .filter_map(|s| s.etcd_pid())
        .collect();
    anyhow::ensure!(
        etcd_pids.len() == members,
        "found {} etcd members, not {members}",
        etcd_pids.len()
    );
    let etcd_cpu = || etcd_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let n = opts.creates as f64;

    let conns = h2_connections(&s.kubeconfig(), s.port, opts.connections.max(1)).await?;
    create_pods_h2(&conns, "warm", opts.concurrency * 2, opts.concurrency).await?;
    let (cpu0, etcd0) = (cpu_seconds(pid), etcd_cpu());
    let api = create_pods_h2(&conns, "bench", opts.creates, opts.concurrency).await?;
    let server_cpu = (cpu_seconds(pid) - cpu0) / n;
    let etcd_cpu_api = (etcd_cpu() - etcd0) / n;

    let store = skiff_store::EtcdStore::connect(&cluster.etcd_config(0)?).await?;
    let sample = serde_json::to_vec(&pod("raw-sample"))?.len() + 400;
    let etcd0 = etcd_cpu();
    let raw = skiff_store::bench_raw(Arc::new(store), opts.concurrency, opts.creates, sample).await;
    let etcd_cpu_raw = (etcd_cpu() - etcd0) / n;
    Ok(Figures {
        api,
        raw,
        server_cpu,
        etcd_cpu_api,
        etcd_cpu_raw,
    })
}

fn print_rows(members: usize, f: &Figures) {
    let of = if members == 1 {
        "1 member".to_string()
    } else {
        format!("{members} members")
    };
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>9.0}%",
        format!("creates/s (HTTP/2), etcd {of}"),
        f.api.per_sec,
        f.raw.ops_per_sec,
        100.0 * f.api.per_sec / f.raw.ops_per_sec.max(1e-9)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "create latency p50",
        ms(f.api.p50),
        ms(f.raw.p50)
    );
    println!(
        "{:<44} {:>14} {:>14}",
        "create latency p99",
        ms(f.api.p99),
        ms(f.raw.p99)
    );
    println!(
        "{:<44} {:>11.0} us {:>11.0} us   (all members)",
        "etcd CPU per create",
        f.etcd_cpu_api * 1e6,
        f.etcd_cpu_raw * 1e6
    );
    println!(
        "{:<44} {:>11.0} us",
        "server CPU per create",
        f.server_cpu * 1e6
    );
}
