//! The server on real sockets on 127.0.0.1: cluster names over UDP and TCP (a truncated
//! UDP answer retried over TCP), forwarding through a fake upstream (behind a silent
//! one) with its cache, an ExternalName completed upstream, the index following catalog
//! changes, FORMERR, `/metrics`, the TCP idle timeout and shutdown.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{Value, json};
use skiff_catalog::Shared;
use skiff_dns::Config;
use skiff_kube::reflect::Change;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn catalog() -> Arc<Shared> {
    let shared = Arc::new(Shared::default());
    let endpoints: Vec<Value> = (1..=60)
        .map(|i| json!({"addresses": [format!("10.42.0.{i}")], "hostname": format!("big-{i}")}))
        .collect();
    shared.apply_services(Change::reset(vec![
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"clusterIP": "10.43.0.11", "ports": [{"name": "http", "port": 80}]}}),
        json!({"metadata": {"name": "big", "namespace": "default"},
               "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
        json!({"metadata": {"name": "ext", "namespace": "default"},
               "spec": {"type": "ExternalName", "externalName": "www.example.com"}}),
    ]));
    shared.apply_slices(Change::reset(vec![json!({
        "metadata": {"name": "big-a", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 80}], "endpoints": endpoints})]));
    shared
}

/// An upstream resolver on 127.0.0.1 (UDP and TCP, one port) that counts what it is
/// asked: `www.example.com` has an address, `many.example.com` a hundred (truncated
/// over UDP), `nx.example.com` does not exist.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
}

async fn upstream() -> Upstream {
    // One port for both: a UDP port whose TCP twin someone else holds is tried again.
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (Arc::new(udp), tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            counter.fetch_add(1, Relaxed);
            let reply = upstream_reply(&buf[..n], false);
            udp.send_to(&reply, peer).await.unwrap();
        }
    });
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tcp.accept().await.unwrap();
            let len = s.read_u16().await.unwrap();
            let mut q = vec![0u8; usize::from(len)];
            s.read_exact(&mut q).await.unwrap();
            let reply = upstream_reply(&q, true);
            s.write_all(&(reply.len() as u16).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&reply).await.unwrap();
        }
    });
    Upstream { addr, asked }
}

fn upstream_reply(query: &[u8], tcp: bool) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::response(q.id, OpCode::Query);
    m.metadata.recursion_available = true;
    m.queries = q.queries.clone();
    let owner = q.queries[0].name().clone();
    match owner.to_ascii().to_ascii_lowercase().as_str() {
        "www.example.com." => {
            m.add_answer(Record::from_rdata(
                owner,
                300,
                RData::A(A::new(192, 0, 2, 80)),
            ));
        }
        "many.example.com." if !tcp => m.metadata.truncation = true,
        "many.example.com." => {
            for i in 0..100 {
                m.add_answer(Record::from_rdata(
                    owner.clone(),
                    300,
                    RData::A(A::new(192, 0, 2, i)),
                ));
            }
        }
        _ => {
            m.metadata.response_code = ResponseCode::NXDomain;
            let zone = Name::from_ascii("example.com.").unwrap();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 7200, 900, 86400, 60);
            m.add_authority(Record::from_rdata(zone, 600, RData::SOA(soa)));
        }
    }
    m.to_vec().unwrap()
}

fn query(name: &str, qtype: RecordType, payload: Option<u16>) -> Message {
    let mut q = Message::new(rand_id(name), MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        q.set_edns(e);
    }
    q
}

fn rand_id(name: &str) -> u16 {
    name.bytes()
        .fold(7u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)))
}

async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = timeout(WAIT, sock.recv(&mut buf))
        .await
        .expect("a UDP reply")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn udp(server: SocketAddr, q: &Message) -> Message {
    let m = udp_raw(server, &q.to_vec().unwrap()).await;
    assert_eq!(m.id, q.id);
    m
}

async fn tcp(stream: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = timeout(WAIT, stream.read_u16())
        .await
        .expect("a TCP reply")
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.id, q.id);
    m
}

fn ips(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_cluster_and_forwards_the_rest_over_real_sockets() {
    let up = upstream().await;
    // An upstream that never answers, asked first: the next one must take over.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let shared = catalog();
    let config = Config {
        listen_udp_tcp: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        metrics: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        upstreams: vec![silent.local_addr().unwrap(), up.addr],
        upstream_timeout: Duration::from_millis(300),
        tcp_idle: Duration::from_millis(300),
        ..Config::default()
    };
    let server = skiff_dns::bind(shared.clone(), config).await.unwrap();
    let dns = server.udp_addrs()[0];
    assert_eq!(server.tcp_addrs()[0], dns, "one port for UDP and TCP");
    let metrics = server.metrics_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(server.run(shutdown));

    // A cluster name over UDP, authoritative.
    let m = udp(
        dns,
        &query("web.default.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(
        (m.response_code, m.authoritative),
        (ResponseCode::NoError, true)
    );
    assert_eq!(ips(&m), ["10.43.0.11"]);
    let m = udp(
        dns,
        &query("nope.default.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1, "the SOA");

    // Sixty endpoints do not fit 512 bytes: TC, then the whole answer over TCP.
    let big = query("big.default.svc.cluster.local.", RecordType::A, None);
    let m = udp(dns, &big).await;
    assert!(m.truncation && m.answers.len() < 60);
    let mut conn = TcpStream::connect(dns).await.unwrap();
    let m = tcp(&mut conn, &big).await;
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 60);
    // Several queries on one connection; EDNS lets the UDP answer through whole.
    let m = tcp(
        &mut conn,
        &query("web.default.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(ips(&m), ["10.43.0.11"]);
    let m = udp(
        dns,
        &query("big.default.svc.cluster.local.", RecordType::A, Some(4096)),
    )
    .await;
    assert!(!m.truncation && m.answers.len() == 60 && m.edns.is_some());

    // Forwarded past the silent upstream, then from the cache.
    let www = query("www.example.com.", RecordType::A, None);
    let m = udp(dns, &www).await;
    assert_eq!(
        (m.response_code, ips(&m)),
        (ResponseCode::NoError, vec!["192.0.2.80".to_string()])
    );
    assert!(!m.authoritative);
    let asked = up.asked.load(Relaxed);
    let m = udp(dns, &query("WWW.example.com.", RecordType::A, None)).await;
    assert_eq!(ips(&m), ["192.0.2.80"]);
    assert_eq!(m.queries[0].name().to_ascii(), "WWW.example.com.");
    assert_eq!(up.asked.load(Relaxed), asked, "answered from the cache");
    let m = udp(dns, &query("nx.example.com.", RecordType::A, None)).await;
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    // The upstream truncates over UDP: fetched over TCP, then cut again for this client.
    let many = query("many.example.com.", RecordType::A, None);
    assert!(udp(dns, &many).await.truncation);
    // (The first connection has idled out meanwhile: the silent upstream took 300 ms.)
    let mut conn = TcpStream::connect(dns).await.unwrap();
    assert_eq!(tcp(&mut conn, &many).await.answers.len(), 100);

    // An ExternalName: its CNAME here, the target's address from upstream.
    let m = udp(
        dns,
        &query("ext.default.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(ips(&m), ["192.0.2.80"]);

    // Garbage with a header: FORMERR with its id.
    let m = udp_raw(
        dns,
        &[0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'x'],
    )
    .await;
    assert_eq!((m.id, m.response_code), (0xbeef, ResponseCode::FormErr));

    // A new Service shows up without a restart, though its name was asked (and the
    // NXDOMAIN kept) before; the kept reply is given each asker's ID.
    let fresh = query("new.fresh.svc.cluster.local.", RecordType::A, None);
    for id in [1, 2] {
        let mut q = fresh.clone();
        q.metadata.id = id;
        let m = udp(dns, &q).await;
        assert_eq!((m.id, m.response_code), (id, ResponseCode::NXDomain));
    }
    shared.apply_services(Change::apply(
        json!({"metadata": {"name": "new", "namespace": "fresh"},
        "spec": {"clusterIP": "10.43.0.99", "ports": [{"port": 80}]}}),
    ));
    assert!(
        answers_become(dns, &fresh, "10.43.0.99").await,
        "the index follows the catalog"
    );
    // A Service changed after its reply was kept is answered as it is now.
    assert_eq!(ips(&udp(dns, &fresh).await), ["10.43.0.99"]);
    shared.apply_services(Change::apply(
        json!({"metadata": {"name": "new", "namespace": "fresh"},
        "spec": {"clusterIP": "10.43.0.98", "ports": [{"port": 80}]}}),
    ));
    assert!(
        answers_become(dns, &fresh, "10.43.0.98").await,
        "a kept reply outlived its Service"
    );

    optional_nslookup(dns).await;

    // /metrics in CoreDNS's names.
    let text = scrape(metrics).await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    for want in [
        "coredns_dns_requests_total{server=\"dns://:",
        "coredns_dns_responses_total{",
        "rcode=\"NXDOMAIN\",plugin=\"kubernetes\"",
        "coredns_cache_hits_total{",
        "coredns_forward_requests_total{to=\"",
        "coredns_dns_request_duration_seconds_bucket{",
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }

    // An idle TCP connection is closed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut rest = Vec::new();
    let n = timeout(WAIT, conn.read_to_end(&mut rest))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);

    stop.send(true).unwrap();
    timeout(WAIT, running)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    drop(silent);
}

/// Whether `q` is answered with `ip` alone within five seconds.
async fn answers_become(dns: SocketAddr, q: &Message, ip: &str) -> bool {
    for _ in 0..250 {
        if ips(&udp(dns, q).await) == [ip] {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// As `nc` scrapes: the request, then its half of the connection closed at once.
async fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut body = String::new();
    timeout(WAIT, s.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    body
}

/// busybox's nslookup, if there is one (it takes `addr:port`): a real client's view of
/// an address, an SRV and a PTR.
async fn optional_nslookup(dns: SocketAddr) {
    let server = dns.to_string();
    let cases = [
        (vec!["web.default.svc.cluster.local"], "10.43.0.11"),
        (
            vec!["-type=srv", "_http._tcp.web.default.svc.cluster.local"],
            "0 100 80 web.default.svc.cluster.local",
        ),
        (vec!["10.43.0.11"], "web.default.svc.cluster.local"),
    ];
    for (args, want) in cases {
        let out = tokio::process::Command::new("busybox")
            .arg("nslookup")
            .args(&args)
            .arg(&server)
            .output();
        let Ok(Ok(out)) = timeout(WAIT, out).await else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains(&server) {
            assert!(text.contains(want), "{args:?}: {text}");
        }
    }
}

#[tokio::test]
async fn binding_a_taken_port_fails_early() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        listen_udp_tcp: vec![taken.local_addr().unwrap()],
        ..Config::default()
    };
    let err = skiff_dns::bind(Arc::new(Shared::default()), config)
        .await
        .err();
    assert!(
        matches!(err, Some(skiff_dns::Error::Bind { .. })),
        "{err:?}"
    );
    let none = skiff_dns::bind(Arc::new(Shared::default()), Config::default())
        .await
        .err();
    assert!(matches!(none, Some(skiff_dns::Error::NoListen)));
}
