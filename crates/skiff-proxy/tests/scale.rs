//! How long the real runner takes, as root, in a network namespace of its own (no
//! traffic at all, only rules): a full load of N Services (two endpoints each), then
//! single-Service changes, each timed from the catalog change to the end of the `nft`
//! run that applied it. Ignored by default (minutes at 10,000); run with
//! `SKPX_SERVICES=10000 cargo test --release -p skiff-proxy --test scale -- --ignored --nocapture`.

mod common;

use common::*;
use skiff_catalog::Protocol;
use skiff_proxy::{Config, Nft, NftCommand, RecordingConntrack};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Counted {
    inner: NftCommand,
    done: AtomicUsize,
}

#[async_trait::async_trait]
impl Nft for Counted {
    async fn run(&self, script: &str) -> skiff_proxy::Result<()> {
        let r = self.inner.run(script).await;
        r.as_ref().expect("transaction applies");
        self.done.fetch_add(1, Ordering::SeqCst);
        r
    }
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip_of(i: usize, base: u8) -> String {
    format!("10.{base}.{}.{}", i / 250, i % 250 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes, as root"]
async fn change_to_rules_latency() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let n: usize = std::env::var("SKPX_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ns = Netns(format!("skpx-{}-scale", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success()
    );
    let services: Vec<_> = (0..n)
        .map(|i| service(&format!("s{i}"), &ip_of(i, 43), 80, Protocol::Tcp))
        .collect();
    let slices: Vec<_> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            slice(
                s,
                8080,
                &[
                    (&ip_of(2 * i, 42), "node-a"),
                    (&ip_of(2 * i + 1, 42), "node-b"),
                ],
            )
        })
        .collect();
    let shared = synced(services.clone(), slices);
    let nft = Arc::new(Counted {
        inner: NftCommand::in_netns(&ns.0),
        done: AtomicUsize::new(0),
    });
    let mut cfg = Config::new("node-a");
    cfg.healthz_address = None;
    let (stop, rx) = watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(skiff_proxy::run(
        shared.clone(),
        cfg,
        nft.clone(),
        Arc::new(RecordingConntrack::default()),
        rx,
    ));
    wait_for("the full load", 600, || {
        nft.done.load(Ordering::SeqCst) >= 1
    })
    .await;
    println!("{n} Services: full load {:?}", started.elapsed());

    let mut lat = Vec::new();
    for k in 0..100 {
        let i = (k * 7919) % n;
        let s = &services[i];
        let eps = [
            (ip_of(2 * i, 42), "node-a"),
            (format!("10.42.250.{}", k + 1), "node-b"),
        ];
        let eps: Vec<(&str, &str)> = eps.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        let before = nft.done.load(Ordering::SeqCst);
        let t = Instant::now();
        put_slice(&shared, slice(s, 8080, &eps));
        wait_for("a change", 30, || nft.done.load(Ordering::SeqCst) > before).await;
        lat.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "{n} Services: change → applied p50 {:?} p90 {:?} p99 {:?} max {:?}",
        pct(50),
        pct(90),
        pct(99),
        lat[lat.len() - 1]
    );
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
