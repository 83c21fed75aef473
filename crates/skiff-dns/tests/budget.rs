//! Rough figures for the budgets (run with `--release -- --ignored --nocapture`): the
//! answer path's rate on one core, and what the index adds to the catalog's memory at
//! 10,000 Services. Not assertions of speed: the benchmark proper lives elsewhere.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use skiff_catalog::Shared;
use skiff_dns::wire::{self, Request};
use skiff_dns::{Config, Index, Outcome, answer};
use skiff_kube::reflect::Change;
use std::time::Instant;

fn cluster(n: usize) -> Shared {
    let shared = Shared::default();
    let services = (0..n)
        .map(|i| {
            json!({"metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 100)},
                   "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 1),
                            "ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}})
        })
        .collect();
    let slices = (0..n)
        .map(|i| {
            json!({"metadata": {"name": format!("svc-{i}-a"), "namespace": format!("ns-{}", i % 100),
                                "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                   "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                   "endpoints": [{"addresses": [format!("10.42.{}.{}", i / 250, i % 250 + 1)]},
                                 {"addresses": [format!("10.42.{}.{}", 100 + i / 250, i % 250 + 1)]}]})
        })
        .collect();
    shared.apply_services(Change::reset(services));
    shared.apply_slices(Change::reset(slices));
    shared
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

#[test]
#[ignore = "figures, not a check: run in release with --ignored --nocapture"]
fn answer_rate_and_index_memory() {
    let shared = cluster(10_000);
    let before = rss_kib();
    let mut index = Index::from_config(&Config::default()).unwrap();
    index.rebuild(&shared.read(), 1);
    let after = rss_kib();
    println!(
        "index of {} Services: ~{} KiB RSS over the catalog",
        index.len(),
        after - before
    );

    let names: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            let mut q = Message::new(i as u16, MessageType::Query, OpCode::Query);
            let name = format!("svc-{i}.ns-{}.svc.cluster.local.", i % 100);
            q.add_query(Query::query(
                Name::from_ascii(&name).unwrap(),
                RecordType::A,
            ));
            q.to_vec().unwrap()
        })
        .collect();
    let mut out = Vec::new();
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        for packet in &names {
            let Request::Query(q) = wire::decode(packet) else {
                panic!()
            };
            let Outcome::Reply(m) = answer(&index, &q) else {
                panic!()
            };
            assert!(wire::encode(&m, 512, &mut out));
        }
    }
    let per_sec = (rounds * names.len()) as f64 / start.elapsed().as_secs_f64();
    println!("decode + answer + encode: {per_sec:.0} queries/s on one core");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures, not a check: run in release with --ignored --nocapture"]
async fn udp_rate_over_loopback() {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    let shared = Arc::new(cluster(10_000));
    let config = Config {
        listen_udp_tcp: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        ..Config::default()
    };
    let server = skiff_dns::bind(shared, config).await.unwrap();
    let dns = server.udp_addrs()[0];
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(shutdown));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns).await.unwrap();
    let packets: Vec<Vec<u8>> = (0..1000u16)
        .map(|i| {
            let mut q = Message::new(i, MessageType::Query, OpCode::Query);
            let name = format!("svc-{i}.ns-{}.svc.cluster.local.", i % 100);
            q.add_query(Query::query(
                Name::from_ascii(&name).unwrap(),
                RecordType::A,
            ));
            q.to_vec().unwrap()
        })
        .collect();
    let (total, window) = (100_000usize, 64usize);
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    for p in packets.iter().take(window) {
        sock.send(p).await.unwrap();
    }
    let (mut sent, mut got) = (window, 0);
    while got < total {
        match tokio::time::timeout(std::time::Duration::from_millis(200), sock.recv(&mut buf)).await
        {
            Ok(r) => {
                r.unwrap();
                got += 1;
            }
            Err(_) => got += 1, // a lost datagram: count it and move on
        }
        if sent < total {
            sock.send(&packets[sent % packets.len()]).await.unwrap();
            sent += 1;
        }
    }
    let per_sec = total as f64 / start.elapsed().as_secs_f64();
    println!("UDP over loopback (client on the same 2 cores): {per_sec:.0} queries/s");
}
