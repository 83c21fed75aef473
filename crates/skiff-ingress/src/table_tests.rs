use super::*;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::{Value, json};
use skiff_catalog::{Service, Slice};

/// Services `web` (port 80 "http" → pods .1 ready and .2 not), `api` (8080 unnamed → .3),
/// `old` (80 → .4 terminating but serving) and `none` (80, no endpoints) in `d`.
fn catalog() -> Catalog {
    let mut c = Catalog::default();
    let svc = |name: &str, port: u16, port_name: &str| {
        let s: core::Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d"},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"name": port_name, "port": port, "targetPort": 9000}]},
        }))
        .unwrap();
        Service::from_api(s).unwrap()
    };
    c.reset_services(vec![
        svc("web", 80, "http"),
        svc("api", 8080, ""),
        svc("old", 80, ""),
        svc("none", 80, ""),
    ]);
    let slice = |svc: &str, port_name: &str, endpoints: Value| {
        let s: discovery::EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": format!("{svc}-x"), "namespace": "d",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": 9000, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap();
        Slice::from_api(s).unwrap()
    };
    let ep = |ip: &str, ready: bool, terminating: bool| json!({"addresses": [ip], "conditions": {"ready": ready, "serving": true, "terminating": terminating}});
    c.reset_slices(vec![
        slice(
            "web",
            "http",
            json!([ep("10.42.0.1", true, false), ep("10.42.0.2", false, false)]),
        ),
        slice("api", "", json!([ep("10.42.0.3", true, false)])),
        slice("old", "", json!([ep("10.42.0.4", false, true)])),
    ]);
    c
}

fn ingress(name: &str, created: &str, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
        "spec": spec,
    }))
    .unwrap()
}

fn path(p: &str, kind: &str, svc: &str, port: Value) -> Value {
    let port = if port.is_string() {
        json!({"name": port})
    } else {
        json!({"number": port})
    };
    json!({"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": port}}})
}

fn rule(host: Option<&str>, paths: Vec<Value>) -> Value {
    json!({"host": host, "http": {"paths": paths}})
}

/// Where a request goes: the upstream's name, or "404".
fn route(t: &Table, host: &str, p: &str) -> String {
    t.lookup(host, p)
        .map_or("404".into(), |r| r.upstream.name.clone())
}

#[test]
fn hosts_exact_then_wildcard_then_none_each_by_path() {
    let a = ingress(
        "a",
        "2026-01-01T00:00:00Z",
        json!({"rules": [
            rule(Some("foo.example"), vec![path("/api", "Prefix", "api", json!(8080))]),
            rule(Some("*.example"), vec![path("/", "Prefix", "web", json!("http"))]),
            rule(None, vec![path("/exact", "Exact", "old", json!(80))]),
        ]}),
    );
    let c = catalog();
    let t = Table::build(&[&a], &c);
    assert_eq!(route(&t, "foo.example", "/api/v1"), "d/api:8080");
    assert_eq!(route(&t, "FOO.example:8443", "/api"), "d/api:8080");
    // No path of the exact host matches: the wildcard's rules are next.
    assert_eq!(route(&t, "foo.example", "/other"), "d/web:http");
    assert_eq!(route(&t, "bar.example", "/"), "d/web:http");
    // A wildcard covers exactly one label.
    assert_eq!(route(&t, "a.b.example", "/"), "404");
    assert_eq!(route(&t, "example", "/"), "404");
    assert_eq!(route(&t, "anything", "/exact"), "d/old:80");
    assert_eq!(route(&t, "anything", "/exact/"), "404");
}

#[test]
fn the_oldest_ingress_wins_a_conflict_and_gives_the_default_backend() {
    let newer = ingress(
        "newer",
        "2026-02-01T00:00:00Z",
        json!({
            "defaultBackend": {"service": {"name": "api", "port": {"number": 8080}}},
            "rules": [rule(Some("x.example"), vec![path("/", "Prefix", "api", json!(8080))])],
        }),
    );
    let older = ingress(
        "older",
        "2026-01-01T00:00:00Z",
        json!({
            "defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}},
            "rules": [rule(Some("x.example"), vec![path("/", "Prefix", "web", json!(80))])],
        }),
    );
    let c = catalog();
    let t = Table::build(&[&newer, &older], &c);
    let r = t.lookup("x.example", "/").unwrap();
    assert_eq!(&*r.ingress, "d/older");
    assert_eq!(route(&t, "y.example", "/"), "d/web:http");
}

#[test]
fn upstreams_resolve_ready_endpoints_or_say_why_not() {
    let a = ingress(
        "a",
        "2026-01-01T00:00:00Z",
        json!({"rules": [rule(None, vec![
            path("/web", "Prefix", "web", json!(80)),
            path("/byname", "Prefix", "web", json!("http")),
            path("/old", "Prefix", "old", json!(80)),
            path("/none", "Prefix", "none", json!(80)),
            path("/missing", "Prefix", "missing", json!(80)),
            path("/badport", "Prefix", "web", json!(81)),
        ])]}),
    );
    let c = catalog();
    let t = Table::build(&[&a], &c);
    let up = |p: &str| t.lookup("h", p).unwrap().upstream.clone();
    let ip = |s: &str| -> SocketAddr { s.parse().unwrap() };
    assert_eq!(
        up("/web").addrs,
        vec![ip("10.42.0.1:9000")],
        "the unready one is left out"
    );
    assert_eq!(up("/byname").addrs, vec![ip("10.42.0.1:9000")]);
    assert_eq!(
        up("/old").addrs,
        vec![ip("10.42.0.4:9000")],
        "serving terminating, none ready"
    );
    assert_eq!(
        up("/none").problem.as_deref(),
        Some("no ready endpoints for service \"d/none\"")
    );
    assert_eq!(
        up("/missing").problem.as_deref(),
        Some("service \"d/missing\" not found")
    );
    assert_eq!(
        up("/badport").problem.as_deref(),
        Some("service \"d/web\" has no TCP port 81")
    );
    // One upstream per backend, shared by the rules naming it.
    assert_eq!(t.upstreams().count(), 6);
}

#[test]
fn rotation_is_round_robin_over_every_endpoint() {
    let u = Upstream::new(
        "u".into(),
        vec!["10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap()],
        None,
    );
    let first: Vec<_> = u.rotation().collect();
    let second: Vec<_> = u.rotation().collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], second[1]);
    assert_eq!(first[1], second[0]);
}

#[test]
fn hosts_are_normalized() {
    assert_eq!(normalize_host("Foo.Example.:80"), "foo.example");
    assert_eq!(normalize_host("[::1]:443"), "::1");
    assert_eq!(normalize_host("foo"), "foo");
}
