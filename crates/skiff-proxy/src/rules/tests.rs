//! The rules as data: given Services and slices, the chains, elements and transaction
//! text each behaviour should produce, and what incremental changes touch.

use super::diff::{Flush, Table};
use super::names::{self, endpoint_base, port_base};
use super::*;
use crate::config::{Config, Family};
use skiff_catalog::{AddressType, Endpoint, EndpointPort, ServiceType, Slice};

const NODE: &str = "node-a";

fn cfg() -> Config {
    let mut c = Config::new(NODE);
    c.healthz_address = None;
    c
}

fn svc(name: &str, cluster_ip: &str) -> Service {
    Service {
        key: ServiceKey::new("default", name),
        type_: ServiceType::ClusterIP,
        cluster_ips: vec![cluster_ip.parse().unwrap()],
        headless: false,
        external_name: None,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        external_ips: vec![],
        load_balancer_ips: vec![],
        affinity_timeout: None,
        external_local: false,
        internal_local: false,
        health_check_node_port: None,
        publish_not_ready: false,
    }
}

/// An endpoint: `(ip, node, ready, serving, terminating)`.
type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

fn ready(ip: &str, node: &str) -> Ep<'static> {
    // Leaked: tests only, tiny.
    let ip: &'static str = Box::leak(ip.to_string().into_boxed_str());
    let node: &'static str = Box::leak(node.to_string().into_boxed_str());
    (ip, node, true, true, false)
}

fn slice(service: &Service, eps: &[Ep]) -> Slice {
    let p = &service.ports[0];
    Slice {
        name: format!("{}-abc", service.key.name).into(),
        service: service.key.clone(),
        address_type: AddressType::IPv4,
        ports: vec![EndpointPort {
            name: p.name.clone(),
            protocol: p.protocol,
            port: 8080,
        }],
        endpoints: eps
            .iter()
            .map(|(ip, node, ready, serving, terminating)| Endpoint {
                address: Some(ip.parse().unwrap()),
                ready: *ready,
                serving: *serving,
                terminating: *terminating,
                hostname: None,
                node_name: Some((*node).into()),
            })
            .collect(),
    }
}

fn catalog(services: Vec<Service>, slices: Vec<Slice>) -> Catalog {
    let mut c = Catalog::default();
    c.reset_services(services);
    c.reset_slices(slices);
    c
}

/// What Service `name` is made of in `c`, as a table is given it.
fn src(c: &Catalog, name: &str) -> Option<Source> {
    Source::of(c, &ServiceKey::new("default", name))
}

fn want(c: &Catalog, name: &str) -> ServiceRules {
    let key = ServiceKey::new("default", name);
    desired(c, c.service(&key).unwrap(), Family::V4, &cfg()).unwrap()
}

/// The transaction that adds `name` to an empty table (without the fixed part).
fn script_of(c: &Catalog, name: &str) -> String {
    let key = ServiceKey::new("default", name);
    Table::new(Family::V4, &cfg())
        .update(vec![(key, src(c, name))])
        .script
}

/// `ip TABLE` of the shard holding Service `name`'s chains.
fn shard(name: &str) -> String {
    format!("ip {}", Place::of(&ServiceKey::new("default", name), 16))
}

fn port(name: &str) -> String {
    port_base(&ServiceKey::new("default", name), Protocol::Tcp, "http")
}

fn ep(name: &str, ip: &str) -> String {
    endpoint_base(
        &ServiceKey::new("default", name),
        Protocol::Tcp,
        "http",
        ip.parse().unwrap(),
        8080,
    )
}

/// `(map, key, value)` of every element the Service claims.
fn elements(r: &ServiceRules) -> Vec<(&'static str, String, String)> {
    r.frontends
        .iter()
        .flat_map(|(f, v)| {
            v.iter()
                .map(|(m, val)| (m.name(), f.key.clone(), val.clone()))
        })
        .collect()
}

#[test]
fn cluster_ip_with_one_endpoint_is_the_whole_path() {
    let web = svc("web", "10.43.0.10");
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[ready("10.42.0.5", NODE)])],
    );
    let (s, e) = (
        names::service_chain(&port("web")),
        names::endpoint_chain(&ep("web", "10.42.0.5")),
    );
    // Chains and the map to them in the Service's shard, the cluster IP in the base.
    let t = shard("web");
    let expected = format!(
        "add chain {t} {e}\n\
         add chain {t} {s}\n\
         add rule {t} {e} ip saddr 10.42.0.5 jump mark-for-masquerade\n\
         add rule {t} {e} meta l4proto tcp dnat to 10.42.0.5:8080\n\
         add rule {t} {s} ip daddr 10.43.0.10 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n\
         add rule {t} {s} goto {e}\n\
         add element ip skiff-proxy cluster-ips {{ 10.43.0.10 }}\n\
         add element {t} service-ips {{ 10.43.0.10 . tcp . 80 : goto {s} }}\n"
    );
    // A fresh table has nothing to flush; on a live one chains are flushed first.
    let fresh = Table::new(Family::V4, &cfg())
        .update(vec![(web.key.clone(), src(&c, "web"))])
        .tx
        .render(Family::V4, true);
    assert_eq!(fresh, expected);
}

#[test]
fn several_endpoints_are_chosen_at_random_with_hairpin_each() {
    let web = svc("web", "10.43.0.10");
    let eps = [
        ready("10.42.0.5", NODE),
        ready("10.42.1.7", "node-b"),
        ready("10.42.0.6", NODE),
    ];
    let c = catalog(vec![web.clone()], vec![slice(&web, &eps)]);
    let r = want(&c, "web");
    let s = &r.chains[&names::service_chain(&port("web"))];
    // Sorted by IP, as the catalog gives them.
    let order: Vec<String> = ["10.42.0.5", "10.42.0.6", "10.42.1.7"]
        .iter()
        .map(|ip| names::endpoint_chain(&ep("web", ip)))
        .collect();
    assert_eq!(s.dispatch, order);
    for ip in ["10.42.0.5", "10.42.0.6", "10.42.1.7"] {
        let chain = &r.chains[&names::endpoint_chain(&ep("web", ip))];
        assert_eq!(
            chain.rules,
            [
                format!("ip saddr {ip} jump mark-for-masquerade"),
                format!("meta l4proto tcp dnat to {ip}:8080"),
            ]
        );
    }
    // Uniform: 1/3, then 1/2 of the remaining 2/3, then the rest.
    let text = script_of(&c, "web");
    let sc = names::service_chain(&port("web"));
    let t = shard("web");
    let tail = format!(
        "add rule {t} {sc} numgen random mod 3 == 0 goto {}\n\
         add rule {t} {sc} numgen random mod 2 == 0 goto {}\n\
         add rule {t} {sc} goto {}\n",
        order[0], order[1], order[2]
    );
    assert!(text.contains(&tail), "{text}");
}

#[test]
fn no_endpoints_means_a_reject_element_and_no_chains() {
    let web = svc("web", "10.43.0.10");
    let c = catalog(vec![web.clone()], vec![]);
    let r = want(&c, "web");
    assert!(r.chains.is_empty());
    assert_eq!(
        elements(&r),
        [
            ("cluster-ips", "10.43.0.10".into(), String::new()),
            (
                "no-endpoint-services",
                "10.43.0.10 . tcp . 80".into(),
                "goto reject-chain".into()
            ),
        ]
    );
    // Not ready and not terminating is no endpoint either.
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[("10.42.0.5", NODE, false, false, false)])],
    );
    assert!(want(&c, "web").chains.is_empty());
}

#[test]
fn the_fixed_part_rejects_from_filter_hooks_and_masquerades_marked_only() {
    let b = base(Family::V4, &cfg());
    let lines: Vec<&str> = b.lines().collect();
    for line in [
        "add chain ip skiff-proxy filter-forward { type filter hook forward priority -110 ; policy accept ; }",
        "add rule ip skiff-proxy filter-forward ct state new jump service-endpoints-check",
        "add rule ip skiff-proxy filter-input ct state new jump nodeport-endpoints-check",
        "add rule ip skiff-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        "add rule ip skiff-proxy nodeport-endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
        "add rule ip skiff-proxy reject-chain meta l4proto tcp reject with tcp reset",
        "add rule ip skiff-proxy masquerading mark and 0x4000 == 0 return",
        "add rule ip skiff-proxy masquerading masquerade fully-random",
        "add rule ip skiff-proxy cluster-ips-check ip daddr 10.43.0.0/16 drop",
    ] {
        assert!(lines.contains(&line), "missing {line}");
    }
    assert!(b.starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n"));
    // Every shard: NAT hooks to its own map, its own mark chain; the base has neither.
    assert_eq!(cfg().shards, 16);
    for i in 0..16 {
        let t = format!("ip skiff-proxy-{i}");
        for line in [
            format!("add table {t}\ndelete table {t}\nadd table {t}\n"),
            format!(
                "add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; policy accept ; }}\n"
            ),
            format!(
                "add chain {t} nat-output {{ type nat hook output priority -100 ; policy accept ; }}\n"
            ),
            format!("add rule {t} nat-prerouting jump services\n"),
            format!("add rule {t} mark-for-masquerade mark set mark or 0x4000\n"),
            format!("add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips\n"),
            format!(
                "add rule {t} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n"
            ),
        ] {
            assert!(b.contains(&line), "missing {line}");
        }
    }
    assert!(!b.contains("ip skiff-proxy services") && !b.contains("ip skiff-proxy nat-output"));
    // Shards of a larger count, from before, go.
    assert!(b.ends_with("add table ip skiff-proxy-63\ndelete table ip skiff-proxy-63\n"));
    assert!(!b.contains("add chain ip skiff-proxy-16 "));
}

#[test]
fn node_port_goes_through_the_external_chain_with_masquerade() {
    let mut web = svc("web", "10.43.0.10");
    web.type_ = ServiceType::NodePort;
    web.ports[0].node_port = Some(30080);
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[ready("10.42.1.7", "node-b")])],
    );
    let r = want(&c, "web");
    let (s, x) = (
        names::service_chain(&port("web")),
        names::external_chain(&port("web")),
    );
    assert_eq!(
        r.chains[&x].rules,
        ["jump mark-for-masquerade".to_string(), format!("goto {s}")]
    );
    assert!(elements(&r).contains(&(
        "service-nodeports",
        "tcp . 30080".into(),
        format!("goto {x}")
    )));
    // No endpoints: the node port is rejected too.
    let c = catalog(vec![web.clone()], vec![]);
    assert!(elements(&want(&c, "web")).contains(&(
        "no-endpoint-nodeports",
        "tcp . 30080".into(),
        "goto reject-chain".into()
    )));
}

#[test]
fn load_balancer_and_external_ips_are_matched_like_cluster_ips() {
    let mut web = svc("web", "10.43.0.10");
    web.type_ = ServiceType::LoadBalancer;
    web.ports[0].node_port = Some(30080);
    web.load_balancer_ips = vec!["192.168.5.10".parse().unwrap()];
    web.external_ips = vec!["192.168.5.20".parse().unwrap()];
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[ready("10.42.0.5", NODE)])],
    );
    let x = names::external_chain(&port("web"));
    let els = elements(&want(&c, "web"));
    for ip in ["192.168.5.10", "192.168.5.20"] {
        assert!(els.contains(&(
            "service-ips",
            format!("{ip} . tcp . 80"),
            format!("goto {x}")
        )));
    }
}

#[test]
fn two_services_on_one_address_and_port_never_clash_the_first_wins() {
    let mut a = svc("a", "10.43.0.10");
    let mut b = svc("b", "10.43.0.11");
    for s in [&mut a, &mut b] {
        s.type_ = ServiceType::LoadBalancer;
        s.load_balancer_ips = vec!["192.168.5.10".parse().unwrap()];
    }
    let c = catalog(
        vec![a.clone(), b.clone()],
        vec![
            slice(&a, &[ready("10.42.0.5", NODE)]),
            slice(&b, &[ready("10.42.0.6", NODE)]),
        ],
    );
    let mut t = Table::new(Family::V4, &cfg());
    // b first: it holds the key until a (earlier by key) claims it.
    let p = t.update(vec![(b.key.clone(), src(&c, "b"))]);
    let xb = names::external_chain(&port("b"));
    assert!(
        p.script
            .contains(&format!("192.168.5.10 . tcp . 80 : goto {xb}"))
    );
    let p = t.update(vec![(a.key.clone(), src(&c, "a"))]);
    let xa = names::external_chain(&port("a"));
    // The element leaves b's shard for a's (the same shard or not).
    let (sa, sb) = (shard("a"), shard("b"));
    assert!(p.script.contains(&format!(
        "delete element {sb} service-ips {{ 192.168.5.10 . tcp . 80 }}"
    )));
    let added = format!("192.168.5.10 . tcp . 80 : goto {xa}");
    let line = p.script.lines().find(|l| l.contains(&added)).unwrap();
    assert!(line.starts_with(&format!("add element {sa} service-ips {{")));
    assert!(
        p.script
            .contains(&format!("192.168.5.10 . tcp . 80 : goto {xa}"))
    );
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].winner, a.key);
    assert_eq!(p.conflicts[0].losers, [b.key.clone()]);
    // Both in one batch: one element, no duplicate in the transaction.
    let (_, full) = Table::full(
        Family::V4,
        &cfg(),
        vec![(a.key.clone(), src(&c, "a")), (b.key.clone(), src(&c, "b"))],
    );
    assert_eq!(full.script.matches("192.168.5.10 . tcp . 80").count(), 1);
    // a goes: b gets it back.
    let p = t.update(vec![(a.key.clone(), None)]);
    assert!(
        p.script
            .contains(&format!("192.168.5.10 . tcp . 80 : goto {xb}"))
    );
    assert!(p.conflicts.is_empty());
}

fn local_service(local_eps: bool) -> (Catalog, Service) {
    let mut web = svc("web", "10.43.0.10");
    web.type_ = ServiceType::NodePort;
    web.ports[0].node_port = Some(30080);
    web.external_local = true;
    web.health_check_node_port = Some(32000);
    let mut eps = vec![ready("10.42.1.7", "node-b")];
    if local_eps {
        eps.push(ready("10.42.0.5", NODE));
    }
    let c = catalog(vec![web.clone()], vec![slice(&web, &eps)]);
    (c, web)
}

#[test]
fn external_traffic_policy_local_keeps_the_source_and_short_circuits() {
    let (c, web) = local_service(true);
    let r = want(&c, "web");
    let (s, l, x) = (
        names::service_chain(&port("web")),
        names::local_chain(&port("web")),
        names::external_chain(&port("web")),
    );
    assert_eq!(
        r.chains[&x].rules,
        [
            format!("ip saddr 10.42.0.0/16 goto {s}"),
            "fib saddr type local jump mark-for-masquerade".into(),
            format!("fib saddr type local goto {s}"),
            format!("goto {l}"),
        ]
    );
    // Only the local endpoint behind the local chain; both behind the cluster one.
    assert_eq!(
        r.chains[&l].dispatch,
        [names::endpoint_chain(&ep("web", "10.42.0.5"))]
    );
    assert_eq!(r.chains[&s].dispatch.len(), 2);
    assert_eq!(health_check(&c, &web, NODE), Some((32000, 1)));
    assert!(
        !elements(&r)
            .iter()
            .any(|(m, ..)| m.starts_with("no-endpoint"))
    );
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_outsiders() {
    let (c, web) = local_service(false);
    let r = want(&c, "web");
    let (s, x) = (
        names::service_chain(&port("web")),
        names::external_chain(&port("web")),
    );
    // Short-circuits stay; nothing for outsiders, who fall through to the drop.
    assert_eq!(
        r.chains[&x].rules.last().unwrap(),
        &format!("fib saddr type local goto {s}")
    );
    let els = elements(&r);
    assert!(els.contains(&(
        "service-nodeports",
        "tcp . 30080".into(),
        format!("goto {x}")
    )));
    assert!(els.contains(&("no-endpoint-nodeports", "tcp . 30080".into(), "drop".into())));
    assert_eq!(health_check(&c, &web, NODE), Some((32000, 0)));
}

#[test]
fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
    let mut web = svc("web", "10.43.0.10");
    web.internal_local = true;
    let c = catalog(
        vec![web.clone()],
        vec![slice(
            &web,
            &[ready("10.42.0.5", NODE), ready("10.42.1.7", "node-b")],
        )],
    );
    let r = want(&c, "web");
    let l = names::local_chain(&port("web"));
    assert_eq!(
        r.chains[&l].dispatch,
        [names::endpoint_chain(&ep("web", "10.42.0.5"))]
    );
    assert!(!r.chains.contains_key(&names::service_chain(&port("web"))));
    assert!(elements(&r).contains(&(
        "service-ips",
        "10.43.0.10 . tcp . 80".into(),
        format!("goto {l}")
    )));
    // Endpoints only elsewhere: cluster traffic is dropped, not rejected.
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[ready("10.42.1.7", "node-b")])],
    );
    let r = want(&c, "web");
    assert!(r.chains.is_empty());
    assert!(elements(&r).contains(&(
        "no-endpoint-services",
        "10.43.0.10 . tcp . 80".into(),
        "drop".into()
    )));
}

#[test]
fn client_ip_affinity_is_checked_before_the_random_choice() {
    let mut web = svc("web", "10.43.0.10");
    web.affinity_timeout = Some(600);
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[ready("10.42.0.5", NODE)])],
    );
    let r = want(&c, "web");
    let (e, a) = (
        names::endpoint_chain(&ep("web", "10.42.0.5")),
        names::affinity_set(&ep("web", "10.42.0.5")),
    );
    let s = &r.chains[&names::service_chain(&port("web"))];
    assert_eq!(s.rules[1], format!("ip saddr @{a} goto {e}"));
    assert_eq!(r.chains[&e].rules[1], format!("update @{a} {{ ip saddr }}"));
    assert_eq!(r.sets[&a], 600);
    let text = script_of(&c, "web");
    assert!(text.contains(&format!(
        "add set {} {a} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }}",
        shard("web")
    )));
    // The set comes before the rules that use it.
    assert!(text.find("add set").unwrap() < text.find("update @").unwrap());
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let web = svc("web", "10.43.0.10");
    let draining = ("10.42.0.5", NODE, false, true, true);
    let c = catalog(
        vec![web.clone()],
        vec![slice(
            &web,
            &[draining, ("10.42.0.6", NODE, false, false, true)],
        )],
    );
    let r = want(&c, "web");
    let s = &r.chains[&names::service_chain(&port("web"))];
    assert_eq!(s.dispatch, [names::endpoint_chain(&ep("web", "10.42.0.5"))]);
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[draining, ready("10.42.0.7", NODE)])],
    );
    let r = want(&c, "web");
    let s = &r.chains[&names::service_chain(&port("web"))];
    assert_eq!(s.dispatch, [names::endpoint_chain(&ep("web", "10.42.0.7"))]);
}

#[test]
fn headless_and_other_family_services_have_nothing() {
    let mut h = svc("h", "10.43.0.10");
    h.headless = true;
    h.cluster_ips.clear();
    let c = catalog(vec![h.clone()], vec![]);
    assert!(desired(&c, &h, Family::V4, &cfg()).is_none());
    let v4 = svc("v4", "10.43.0.11");
    assert!(desired(&c, &v4, Family::V6, &cfg()).is_none());
}

fn udp(name: &str) -> Service {
    let mut s = svc(name, "10.43.0.53");
    s.ports[0].protocol = Protocol::Udp;
    s.ports[0].node_port = Some(30053);
    s
}

#[test]
fn udp_endpoints_that_go_away_have_their_flows_deleted() {
    let dns = udp("dns");
    let mut t = Table::new(Family::V4, &cfg());
    let c = catalog(vec![dns.clone()], vec![]);
    let p = t.update(vec![(dns.key.clone(), Source::of(&c, &dns.key))]);
    assert!(p.flushes.is_empty(), "no endpoints: nothing to flush");
    // First endpoints: flows that met the reject are flushed.
    let c = catalog(
        vec![dns.clone()],
        vec![slice(
            &dns,
            &[ready("10.42.0.5", NODE), ready("10.42.0.6", NODE)],
        )],
    );
    let p = t.update(vec![(dns.key.clone(), Source::of(&c, &dns.key))]);
    let ip = "10.43.0.53".parse().unwrap();
    assert_eq!(
        p.flushes,
        [
            Flush::ServiceIp { ip, port: 80 },
            Flush::NodePort {
                family: Family::V4,
                node_port: 30053
            }
        ]
    );
    // One goes: its flows go with it; the other's stay.
    let c = catalog(
        vec![dns.clone()],
        vec![slice(&dns, &[ready("10.42.0.6", NODE)])],
    );
    let p = t.update(vec![(dns.key.clone(), Source::of(&c, &dns.key))]);
    let gone = "10.42.0.5".parse().unwrap();
    assert_eq!(
        p.flushes,
        [
            Flush::ServiceEndpoint {
                ip,
                port: 80,
                endpoint: gone
            },
            Flush::NodePortEndpoint {
                family: Family::V4,
                node_port: 30053,
                endpoint: gone
            },
        ]
    );
    // TCP Services never flush.
    let web = svc("web", "10.43.0.10");
    let c = catalog(
        vec![web.clone()],
        vec![slice(&web, &[ready("10.42.0.5", NODE)])],
    );
    let p = t.update(vec![(web.key.clone(), src(&c, "web"))]);
    assert!(p.flushes.is_empty());
}

#[test]
fn changing_one_service_touches_only_its_chains_and_elements() {
    let (a, b) = (svc("a", "10.43.0.10"), svc("b", "10.43.0.11"));
    let slices = |a_eps: &[Ep]| vec![slice(&a, a_eps), slice(&b, &[ready("10.42.0.9", NODE)])];
    let c = catalog(
        vec![a.clone(), b.clone()],
        slices(&[ready("10.42.0.5", NODE)]),
    );
    let (mut t, _) = Table::full(
        Family::V4,
        &cfg(),
        vec![(a.key.clone(), src(&c, "a")), (b.key.clone(), src(&c, "b"))],
    );
    // a gains an endpoint: its service chain is rewritten (the choice changes), the
    // new endpoint chain is added; the old endpoint chain stays as it was, no map
    // element changes and b is not mentioned.
    let c = catalog(
        vec![a.clone(), b.clone()],
        slices(&[ready("10.42.0.5", NODE), ready("10.42.0.6", NODE)]),
    );
    let p = t.update(vec![(a.key.clone(), src(&c, "a"))]);
    let (sa, e5, e6) = (
        names::service_chain(&port("a")),
        names::endpoint_chain(&ep("a", "10.42.0.5")),
        names::endpoint_chain(&ep("a", "10.42.0.6")),
    );
    let written: Vec<&str> =
        p.tx.write_chains
            .iter()
            .map(|(place, n, _)| {
                assert_eq!(*place, Place::of(&a.key, 16));
                n.as_str()
            })
            .collect();
    assert_eq!(written, [e6.as_str(), sa.as_str()]);
    assert!(p.tx.delete_chains.is_empty() && p.tx.delete_elements.is_empty());
    assert!(p.tx.add_elements.is_empty());
    assert_eq!(
        p.tx.write_chains[1].2.last().unwrap(),
        &format!("goto {e6}")
    );
    assert!(!p.script.contains("/b/"), "b untouched:\n{}", p.script);
    assert!(!p.script.contains(&format!("add chain {} {e5}", shard("a"))));
    // The same state again: an empty transaction.
    let p = t.update(vec![(a.key.clone(), src(&c, "a"))]);
    assert!(p.tx.is_empty() && p.script.is_empty());
}

#[test]
fn deleting_a_service_removes_elements_before_its_chains() {
    let mut a = svc("a", "10.43.0.10");
    a.affinity_timeout = Some(60);
    let c = catalog(
        vec![a.clone()],
        vec![slice(&a, &[ready("10.42.0.5", NODE)])],
    );
    let (mut t, _) = Table::full(Family::V4, &cfg(), vec![(a.key.clone(), src(&c, "a"))]);
    let p = t.update(vec![(a.key.clone(), None)]);
    let (s, e, aff) = (
        names::service_chain(&port("a")),
        names::endpoint_chain(&ep("a", "10.42.0.5")),
        names::affinity_set(&ep("a", "10.42.0.5")),
    );
    let sh = shard("a");
    let expected = format!(
        "delete element ip skiff-proxy cluster-ips {{ 10.43.0.10 }}\n\
         delete element {sh} service-ips {{ 10.43.0.10 . tcp . 80 }}\n\
         flush chain {sh} {e}\n\
         flush chain {sh} {s}\n\
         delete set {sh} {aff}\n\
         delete chain {sh} {e}\n\
         delete chain {sh} {s}\n"
    );
    assert_eq!(p.script, expected);
    assert_eq!(t.service_count(), 0);
}

#[test]
fn endpoints_going_to_none_turn_the_service_into_a_reject_element() {
    let a = svc("a", "10.43.0.10");
    let c = catalog(
        vec![a.clone()],
        vec![slice(&a, &[ready("10.42.0.5", NODE)])],
    );
    let (mut t, _) = Table::full(Family::V4, &cfg(), vec![(a.key.clone(), src(&c, "a"))]);
    let c = catalog(vec![a.clone()], vec![]);
    let p = t.update(vec![(a.key.clone(), src(&c, "a"))]);
    assert_eq!(
        p.tx.delete_elements[&(Place::of(&a.key, 16), "service-ips")],
        ["10.43.0.10 . tcp . 80".to_string()]
    );
    assert_eq!(
        p.tx.add_elements[&(Place::Base, "no-endpoint-services")],
        [(
            "10.43.0.10 . tcp . 80".to_string(),
            "goto reject-chain".to_string()
        )]
    );
    assert_eq!(p.tx.delete_chains.len(), 2);
    assert!(
        !p.tx
            .delete_elements
            .contains_key(&(Place::Base, "cluster-ips")),
        "the cluster IP stays"
    );
}

#[test]
fn a_changed_affinity_timeout_recreates_the_set_and_rewrites_its_users() {
    let mut a = svc("a", "10.43.0.10");
    a.affinity_timeout = Some(60);
    let c = catalog(
        vec![a.clone()],
        vec![slice(&a, &[ready("10.42.0.5", NODE)])],
    );
    let (mut t, _) = Table::full(Family::V4, &cfg(), vec![(a.key.clone(), src(&c, "a"))]);
    a.affinity_timeout = Some(120);
    let c = catalog(
        vec![a.clone()],
        vec![slice(&a, &[ready("10.42.0.5", NODE)])],
    );
    let p = t.update(vec![(a.key.clone(), src(&c, "a"))]);
    assert_eq!(p.tx.delete_sets.len(), 1);
    assert_eq!(p.tx.add_sets[0].2, 120);
    assert_eq!(
        p.tx.write_chains.len(),
        2,
        "both chains using the set are flushed first"
    );
}

#[test]
fn ipv6_services_write_ip6_rules() {
    let mut v6 = svc("v6", "fd00:43::10");
    v6.ports[0].node_port = Some(30080);
    let sl = Slice {
        address_type: AddressType::IPv6,
        ..slice(&v6, &[ready("fd00:42::5", NODE)])
    };
    let c = catalog(vec![v6.clone()], vec![sl]);
    let r = desired(&c, &v6, Family::V6, &cfg()).unwrap();
    let e = names::endpoint_chain(&endpoint_base(
        &v6.key,
        Protocol::Tcp,
        "http",
        "fd00:42::5".parse().unwrap(),
        8080,
    ));
    assert_eq!(
        r.chains[&e].rules[1],
        "meta l4proto tcp dnat to [fd00:42::5]:8080"
    );
    assert_eq!(
        r.chains[&e].rules[0],
        "ip6 saddr fd00:42::5 jump mark-for-masquerade"
    );
    let b = base(Family::V6, &cfg());
    assert!(b.contains("add table ip6 skiff-proxy"));
    assert!(b.contains("ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports"));
}
