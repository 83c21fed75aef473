//! The proxy on loopback, against live and dead endpoints: a refused connection moves
//! on to the next endpoint with the request's body intact; no rule is a 404, no
//! endpoint a 503, every endpoint dead a 502; endpoint connections are kept and reused,
//! and one the endpoint closed meanwhile is replaced; a bodiless GET an endpoint took and
//! dropped goes to the next, a POST does not.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use skiff_catalog::{Catalog, Service, Slice};
use skiff_ingress::proxy::Proxy;
use skiff_ingress::server::{self, Ports};
use skiff_ingress::table::Table;
use skiff_ingress::tls::{self, CertResolver, Certs};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An endpoint that answers every request with its method and body.
fn live_endpoint() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0; 4096];
                let mut got = Vec::new();
                // Headers, then the Content-Length worth of body.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let mut line = head.split(' ');
                            let method = line.next().unwrap().to_string();
                            // An origin server takes `/path`, not a proxy's absolute form.
                            let status = if line.next().unwrap_or("").starts_with('/') {
                                "200 OK"
                            } else {
                                "400 Bad Request"
                            };
                            let reply = format!("{method} {body}");
                            let _ = write!(
                                s,
                                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                                reply.len()
                            );
                            break;
                        }
                    }
                }
            });
        }
    });
    port
}

/// Service `d/web` with one endpoint on each of `ports` (127.0.0.1), and `d/empty`.
fn catalog(ports: &[u16]) -> Catalog {
    let mut c = Catalog::default();
    let svc = |name: &str| {
        let s: core::Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d"},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 80}]},
        }))
        .unwrap();
        Service::from_api(s).unwrap()
    };
    c.reset_services(vec![svc("web"), svc("empty")]);
    let slices = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let s: discovery::EndpointSlice = serde_json::from_value(json!({
                "metadata": {"name": format!("web-{i}"), "namespace": "d",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "", "port": p, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            }))
            .unwrap();
            Slice::from_api(s).unwrap()
        })
        .collect();
    c.reset_slices(slices);
    c
}

fn ingress() -> Ingress {
    let backend = |svc: &str| json!({"service": {"name": svc, "port": {"number": 80}}});
    serde_json::from_value(json!({
        "metadata": {"name": "i", "namespace": "d"},
        "spec": {"rules": [{"host": "h", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend("web")},
            {"path": "/empty", "pathType": "Prefix", "backend": backend("empty")},
        ]}}]},
    }))
    .unwrap()
}

fn request(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Serves `table` on a fresh port until the runtime ends; its port.
fn serve(rt: &tokio::runtime::Runtime, table: Table) -> u16 {
    let proxy = Proxy::new();
    proxy.set_table(table);
    let certs = CertResolver::new(Certs::only(tls::default_certificate()));
    let port = free_port();
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rt.spawn(server::serve(
        proxy,
        certs,
        Ports {
            http: port,
            https: 0,
        },
        rx,
    ));
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return port;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the proxy never listened");
}

#[test]
fn a_refused_endpoint_passes_the_request_on_with_its_body() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dead, live) = (free_port(), live_endpoint());
    let c = catalog(&[dead, live]);
    let port = serve(&rt, Table::build(&[&ingress()], &c));
    // Round robin starts half the requests at the dead endpoint.
    for i in 0..6 {
        let out = request(port, "POST", "/", &format!("body-{i}"));
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with(&format!("POST body-{i}")), "{out}");
    }
    let out = request(port, "GET", "/empty", "");
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(
        out.contains("no ready endpoints for service \"d/empty\" (Ingress d/i)"),
        "{out}"
    );
    let out = request(port, "GET", "/", "").replace("Host: h", "");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn every_endpoint_dead_is_a_502_and_no_rule_a_404() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = catalog(&[free_port(), free_port()]);
    let port = serve(&rt, Table::build(&[&ingress()], &c));
    let out = request(port, "GET", "/", "");
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(out.contains("d/web:80"), "{out}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /x HTTP/1.1\r\nHost: nobody\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert!(
        out.contains("no Ingress rule for host \"nobody\" and path \"/x\""),
        "{out}"
    );
}

/// An endpoint answering `GET`s on kept-alive connections (no `Connection: close`),
/// hanging up after the first answer on each when `hang_up`; with the count of
/// connections it accepted.
fn keepalive_endpoint(hang_up: bool) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        if hang_up {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// `n` requests one after another on one kept-alive client connection, `pause` apart;
/// each answer's status line and body.
fn requests_on_one_connection(port: u16, n: usize, pause: Duration) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answers = Vec::new();
    for _ in 0..n {
        write!(s, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let mut text = String::new();
        let mut buf = [0; 4096];
        // Whole once the head and its Content-Length of body are in.
        let whole = |t: &str| {
            let (head, body) = t.split_once("\r\n\r\n")?;
            let len = head.lines().find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("content-length: ")?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })?;
            (body.len() >= len).then(|| format!("{} {body}", head.lines().next().unwrap()))
        };
        let answer = loop {
            if let Some(a) = whole(&text) {
                break a;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        };
        answers.push(answer);
        std::thread::sleep(pause);
    }
    answers
}

#[test]
fn endpoint_connections_are_reused_and_one_the_endpoint_closed_is_replaced() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (port_a, accepted_a) = keepalive_endpoint(false);
    let proxy = serve(&rt, Table::build(&[&ingress()], &catalog(&[port_a])));
    let answers = requests_on_one_connection(proxy, 20, Duration::ZERO);
    assert!(
        answers.iter().all(|a| a == "HTTP/1.1 200 OK ok"),
        "{answers:?}"
    );
    // One connection per proxy worker at most, however many requests.
    let workers = std::thread::available_parallelism().unwrap().get();
    let opened = accepted_a.load(Ordering::SeqCst);
    assert!(
        (1..=workers).contains(&opened),
        "{opened} connections for 20 requests"
    );

    // An endpoint that closes each connection after one answer: the pooled connection
    // is found closed when taken, and a new one carries the request.
    let (port_b, accepted_b) = keepalive_endpoint(true);
    let proxy = serve(&rt, Table::build(&[&ingress()], &catalog(&[port_b])));
    let answers = requests_on_one_connection(proxy, 5, Duration::from_millis(100));
    assert!(
        answers.iter().all(|a| a == "HTTP/1.1 200 OK ok"),
        "{answers:?}"
    );
    assert_eq!(accepted_b.load(Ordering::SeqCst), 5);
}

/// An endpoint that takes each request and hangs up without an answer, as one stopping
/// the moment a request reaches it.
fn dying_endpoint() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = vec![0; 4096];
            let _ = s.read(&mut buf);
        }
    });
    port
}

#[test]
fn a_bodiless_idempotent_request_an_endpoint_dropped_goes_to_the_next() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = catalog(&[dying_endpoint(), live_endpoint()]);
    let port = serve(&rt, Table::build(&[&ingress()], &c));
    // Round robin sends every other request to the dying endpoint first: a POST is not
    // sent twice (it may have done its work), a GET is.
    let posts: Vec<String> = (0..4).map(|_| request(port, "POST", "/", "b")).collect();
    assert!(
        posts.iter().any(|o| o.starts_with("HTTP/1.1 502")),
        "{posts:?}"
    );
    for _ in 0..4 {
        let out = request(port, "GET", "/", "");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("GET "), "{out}");
    }
}
