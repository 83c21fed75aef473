//! The runner against recording fakes: when it syncs, what it batches, how it recovers,
//! what it cleans up, and its health check servers.

mod common;

use common::*;
use skiff_catalog::{Protocol, ServiceType};
use skiff_proxy::rules::remove_tables;
use skiff_proxy::{Config, Family, Flush, NftCommand, RecordingConntrack, RecordingNft};
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

fn config() -> Config {
    let mut c = Config::new("node-a");
    c.healthz_address = None;
    c.health_check_ip = [127, 0, 0, 1].into();
    c
}

struct Running {
    nft: Arc<RecordingNft>,
    conntrack: Arc<RecordingConntrack>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<skiff_proxy::Result<()>>,
}

fn start(shared: Arc<skiff_catalog::Shared>, config: Config) -> Running {
    let nft = Arc::new(RecordingNft::default());
    let conntrack = Arc::new(RecordingConntrack::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(skiff_proxy::run(
        shared,
        config,
        nft.clone(),
        conntrack.clone(),
        rx,
    ));
    Running {
        nft,
        conntrack,
        stop,
        task,
    }
}

impl Running {
    async fn scripts(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} transactions"), 5, || {
            self.nft.scripts().len() >= n
        })
        .await;
        self.nft.scripts()
    }

    async fn stop(self) -> Vec<String> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
        self.nft.scripts()
    }
}

#[tokio::test]
async fn waits_for_the_catalog_then_syncs_fully_then_in_batches() {
    let shared = Arc::new(skiff_catalog::Shared::default());
    let r = start(shared.clone(), config());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        r.nft.scripts().is_empty(),
        "nothing before the first full list"
    );

    let a = service("a", "10.43.0.10", 80, Protocol::Tcp);
    shared.update(|c| {
        c.reset_services(vec![a.clone()]);
        Some(c.reset_slices(vec![slice(&a, 8080, &[("10.42.0.5", "node-a")])]))
    });
    let s = r.scripts(1).await;
    assert!(s[0].starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n"));
    assert!(
        s[0].contains("add table ip6 skiff-proxy\ndelete table ip6 skiff-proxy\n"),
        "no IPv6: no ip6 table"
    );
    assert!(s[0].contains("10.43.0.10 . tcp . 80 : goto service-"));

    // A burst: three changes, one transaction, with no table rebuilt.
    let b = service("b", "10.43.0.11", 80, Protocol::Tcp);
    let c = service("c", "10.43.0.12", 80, Protocol::Tcp);
    put_service(&shared, b);
    put_service(&shared, c);
    put_slice(
        &shared,
        slice(
            &a,
            8080,
            &[("10.42.0.5", "node-a"), ("10.42.0.6", "node-b")],
        ),
    );
    let s = r.scripts(2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.nft.scripts().len(), 2, "one transaction for the burst");
    assert!(!s[1].contains("delete table"));
    assert!(s[1].contains("10.43.0.11 . tcp . 80 : goto reject-chain"));
    assert!(s[1].contains("10.43.0.12 . tcp . 80 : goto reject-chain"));
    assert!(s[1].contains("numgen random mod 2"));

    // Full loads go to nft, incremental syncs as netlink batches.
    assert!(!NftCommand::batches(&s[0]) && NftCommand::batches(&s[1]));

    // Stopping removes every table: base and shards, both families.
    let s = r.stop().await;
    let every: String = Family::ALL.into_iter().map(remove_tables).collect();
    assert_eq!(s.last().unwrap(), &every);
    assert!(every.starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n"));
    assert!(every.ends_with("add table ip6 skiff-proxy-63\ndelete table ip6 skiff-proxy-63\n"));
}

#[tokio::test]
async fn a_failed_transaction_is_followed_by_a_full_sync() {
    let a = service("a", "10.43.0.10", 80, Protocol::Tcp);
    let shared = synced(vec![a.clone()], vec![]);
    let r = start(shared.clone(), config());
    r.scripts(1).await;
    r.nft.fail_next(1);
    put_slice(&shared, slice(&a, 8080, &[("10.42.0.5", "node-a")]));
    let s = r.scripts(2).await;
    assert!(
        !s[1].contains("delete table ip skiff-proxy"),
        "incremental, and it fails"
    );
    // The retry (after a second) rebuilds the whole table from the catalog.
    let s = r.scripts(3).await;
    assert!(s[2].starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n"));
    assert!(s[2].contains("10.43.0.10 . tcp . 80 : goto service-"));
    r.stop().await;
}

#[tokio::test]
async fn udp_endpoints_that_go_away_are_flushed_from_conntrack() {
    let dns = service("dns", "10.43.0.53", 53, Protocol::Udp);
    let shared = synced(
        vec![dns.clone()],
        vec![slice(
            &dns,
            53,
            &[("10.42.0.5", "node-a"), ("10.42.0.6", "node-b")],
        )],
    );
    let r = start(shared.clone(), config());
    r.scripts(1).await;
    assert!(
        r.conntrack.flushes().is_empty(),
        "nothing known from before a full sync"
    );
    put_slice(&shared, slice(&dns, 53, &[("10.42.0.6", "node-b")]));
    r.scripts(2).await;
    wait_for("a flush", 5, || !r.conntrack.flushes().is_empty()).await;
    assert_eq!(
        r.conntrack.flushes(),
        [Flush::ServiceEndpoint {
            ip: "10.43.0.53".parse().unwrap(),
            port: 53,
            endpoint: "10.42.0.5".parse().unwrap(),
        }]
    );
    r.stop().await;
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the status code and body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn health_check_node_ports_answer_as_kube_proxy() {
    let hc = free_port();
    let healthz = free_port();
    let mut web = service("web", "10.43.0.10", 80, Protocol::Tcp);
    web.type_ = ServiceType::NodePort;
    web.ports[0].node_port = Some(30080);
    web.external_local = true;
    web.health_check_node_port = Some(hc);
    let shared = synced(
        vec![web.clone()],
        vec![slice(&web, 8080, &[("10.42.0.5", "node-a")])],
    );
    let mut cfg = config();
    cfg.healthz_address = Some(([127, 0, 0, 1], healthz).into());
    let r = start(shared.clone(), cfg);
    r.scripts(1).await;
    let (status, body) = get(hc, "/").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"service": {"namespace": "default", "name": "web"},
                           "localEndpoints": 1, "serviceProxyHealthy": true})
    );
    // The only endpoint moves to another node: this node is no place for it.
    put_slice(&shared, slice(&web, 8080, &[("10.42.1.5", "node-b")]));
    r.scripts(2).await;
    let (status, body) = get(hc, "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"localEndpoints\":0"));
    let (status, body) = get(healthz, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("lastUpdated"));
    // The Service goes: so does its server.
    delete_service(&shared, &web.key);
    r.scripts(3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", hc))
            .await
            .is_err()
    );
    r.stop().await;
}
