//! How long the real runner takes, as root, in network namespaces of its own (no
//! traffic at all, only rules): a full load of N Services (two endpoints each), then
//! single-Service changes, each timed from the catalog change to the end of the
//! transaction that applied it. The same run measures the executors and layouts side
//! by side: `nft -f` and netlink batches, all Services in one shard table and spread
//! over 16 (the default). Ignored by default (minutes at 10,000); run with
//! `SKPX_SERVICES=10000 cargo test --release -p skiff-proxy --test scale -- --ignored --nocapture`.

mod common;

use common::*;
use skiff_catalog::{Protocol, Service, Slice};
use skiff_proxy::{Config, Nft, NftCli, NftCommand, RecordingConntrack};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The executor, noting when each transaction ended (the test polls for them, but
/// times them from these).
struct Counted {
    inner: Box<dyn Nft>,
    done: AtomicUsize,
    ended: Mutex<Vec<Instant>>,
    /// How long each run took.
    took: Mutex<Vec<Duration>>,
}

#[async_trait::async_trait]
impl Nft for Counted {
    async fn run(&self, script: &str) -> skiff_proxy::Result<()> {
        let t = Instant::now();
        let r = self.inner.run(script).await;
        r.as_ref().expect("transaction applies");
        self.took.lock().unwrap().push(t.elapsed());
        self.ended.lock().unwrap().push(Instant::now());
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

/// An executor and a shard count.
struct Variant {
    name: &'static str,
    netlink: bool,
    shards: u16,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "nft -f, 1 shard (as before)",
        netlink: false,
        shards: 1,
    },
    Variant {
        name: "nft -f, 16 shards",
        netlink: false,
        shards: 16,
    },
    Variant {
        name: "netlink, 1 shard",
        netlink: true,
        shards: 1,
    },
    Variant {
        name: "netlink, 16 shards (default)",
        netlink: true,
        shards: 16,
    },
];

fn catalog(n: usize) -> (Vec<Service>, Vec<Slice>) {
    let services: Vec<_> = (0..n)
        .map(|i| service(&format!("s{i}"), &ip_of(i, 43), 80, Protocol::Tcp))
        .collect();
    let slices = services
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
    (services, slices)
}

/// What one variant measured.
struct Measured {
    full: Duration,
    /// From each change to the end of its transaction, sorted.
    latency: Vec<Duration>,
    /// The transactions alone, sorted.
    apply: Vec<Duration>,
}

/// Runs one variant in a namespace of its own.
async fn measure(n: usize, v: &Variant, tag: usize) -> Measured {
    let ns = Netns(format!("skpx-{}-scale-{tag}", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success()
    );
    let (services, slices) = catalog(n);
    let shared = synced(services.clone(), slices);
    let inner: Box<dyn Nft> = if v.netlink {
        Box::new(NftCommand::in_netns(&ns.0))
    } else {
        Box::new(NftCli::in_netns(&ns.0))
    };
    let nft = Arc::new(Counted {
        inner,
        done: AtomicUsize::new(0),
        ended: Mutex::new(Vec::new()),
        took: Mutex::new(Vec::new()),
    });
    let mut cfg = Config::new("node-a");
    cfg.healthz_address = None;
    cfg.shards = v.shards;
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
    let full = nft.ended.lock().unwrap()[0] - started;

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
        lat.push(nft.ended.lock().unwrap()[before] - t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat.sort();
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let mut apply = nft.took.lock().unwrap()[1..=100].to_vec();
    apply.sort();
    Measured {
        full,
        latency: lat,
        apply,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes, as root"]
async fn change_to_rules_latency() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let n: usize = std::env::var("SKPX_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (tag, v) in VARIANTS.iter().enumerate() {
        let m = measure(n, v, tag).await;
        let pct = |d: &[Duration], p: usize| ms(d[(d.len() * p / 100).min(d.len() - 1)]);
        println!(
            "{n} Services, {}: full load {:.2} s; change → applied p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms; transaction alone p50 {:.1} p99 {:.1} ms",
            v.name,
            m.full.as_secs_f64(),
            pct(&m.latency, 50),
            pct(&m.latency, 90),
            pct(&m.latency, 99),
            ms(m.latency[m.latency.len() - 1]),
            pct(&m.apply, 50),
            pct(&m.apply, 99),
        );
    }
}
