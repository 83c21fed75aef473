//! The answers, as a table: question name and type → rcode, answer, authority and
//! additional sections, for every kind of name the specification and CoreDNS define.

use super::*;
use crate::Config;
use hickory_proto::op::MessageType;
use serde_json::{Value, json};
use skiff_catalog::Shared;
use skiff_kube::reflect::Change;

fn svc(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn slice(ns: &str, service: &str, name: &str, family: &str, ports: Value, eps: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns,
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": family, "ports": ports, "endpoints": eps})
}

/// The cluster every case asks about.
fn catalog() -> Shared {
    let shared = Shared::default();
    shared.apply_services(Change::reset(vec![
        svc(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.43.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
        ),
        svc(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.11", "ports": [
            {"name": "http", "port": 80}, {"name": "https", "port": 443},
            {"name": "syslog", "port": 514, "protocol": "UDP"}]}),
        ),
        svc(
            "default",
            "one",
            json!({"clusterIP": "10.43.0.12", "ports": [{"port": 8080}]}),
        ),
        svc("default", "bare", json!({"clusterIP": "10.43.0.13"})),
        svc(
            "default",
            "dual",
            json!({"clusterIP": "10.43.0.14",
            "clusterIPs": ["10.43.0.14", "fd00:43::14"], "ports": [{"name": "http", "port": 80}]}),
        ),
        svc(
            "default",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ),
        svc(
            "default",
            "idle",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ),
        svc(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "db.example.org"}),
        ),
        svc(
            "default",
            "alias",
            json!({"type": "ExternalName",
                                       "externalName": "web.default.svc.cluster.local."}),
        ),
        svc(
            "default",
            "extip",
            json!({"type": "ExternalName", "externalName": "192.0.2.1"}),
        ),
        svc(
            "other",
            "web",
            json!({"clusterIP": "10.43.1.11", "ports": [{"name": "http", "port": 80}]}),
        ),
    ]));
    shared.apply_slices(Change::reset(vec![
        slice(
            "default",
            "db",
            "db-a",
            "IPv4",
            json!([{"name": "pg", "port": 5432}]),
            json!([
            {"addresses": ["10.42.0.5"], "hostname": "db-0"},
            {"addresses": ["10.42.1.6"], "hostname": "db-1"},
            {"addresses": ["10.42.2.7"]},
            {"addresses": ["10.42.3.8"], "hostname": "db-3", "conditions": {"ready": false}}]),
        ),
        slice(
            "default",
            "db",
            "db-b",
            "IPv6",
            json!([{"name": "pg", "port": 5432}]),
            json!([
            {"addresses": ["fd00:42::9"]}]),
        ),
        slice(
            "default",
            "idle",
            "idle-a",
            "IPv4",
            json!([{"name": "pg", "port": 5432}]),
            json!([
            {"addresses": ["10.42.0.40"], "conditions": {"ready": false}}]),
        ),
        slice(
            "default",
            "web",
            "web-a",
            "IPv4",
            json!([{"name": "http", "port": 8080}]),
            json!([
            {"addresses": ["10.42.0.9"]}]),
        ),
    ]));
    shared
}

fn index() -> Index {
    let mut index = Index::from_config(&Config::default()).unwrap();
    index.rebuild(&catalog().read(), 42);
    index
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    q
}

const SOA_CL: &str =
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5";
const SOA_REV: &str = "43.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5";

use RecordType::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};

/// name, type → rcode, answers, authority, additionals.
type Case = (
    &'static str,
    RecordType,
    ResponseCode,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const NOERROR: ResponseCode = ResponseCode::NoError;
const NXDOMAIN: ResponseCode = ResponseCode::NXDomain;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // The schema version, the apex, the NS and the empty non-terminals.
    ("dns-version.cluster.local.", TXT, NOERROR, &["dns-version.cluster.local. 28800 IN TXT 1.1.0"], &[], &[]),
    ("dns-version.cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("cluster.local.", SOA, NOERROR, &[SOA_CL], &[], &[]),
    ("cluster.local.", NS, NOERROR, &["cluster.local. 5 IN NS ns.dns.cluster.local."], &[],
        &["ns.dns.cluster.local. 5 IN A 10.43.0.10"]),
    ("cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("ns.dns.cluster.local.", A, NOERROR, &["ns.dns.cluster.local. 5 IN A 10.43.0.10"], &[], &[]),
    ("dns.cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("svc.cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("default.svc.cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("nope.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("pod.cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("anything.pod.cluster.local.", A, NOERROR, &[], &[SOA_CL], &[]),
    ("foo.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("a.b.c.d.e.f.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),

    // ClusterIP Services: addresses by family, NODATA for the other, SRV per named port.
    ("web.default.svc.cluster.local.", A, NOERROR, &["web.default.svc.cluster.local. 5 IN A 10.43.0.11"], &[], &[]),
    ("web.default.svc.cluster.local.", AAAA, NOERROR, &[], &[SOA_CL], &[]),
    ("web.default.svc.cluster.local.", TXT, NOERROR, &[], &[SOA_CL], &[]),
    ("web.default.svc.cluster.local.", MX, NOERROR, &[], &[SOA_CL], &[]),
    ("web.default.svc.cluster.local.", CNAME, NOERROR, &[], &[SOA_CL], &[]),
    ("web.other.svc.cluster.local.", A, NOERROR, &["web.other.svc.cluster.local. 5 IN A 10.43.1.11"], &[], &[]),
    ("missing.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("_http._tcp.web.default.svc.cluster.local.", SRV, NOERROR,
        &["_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."], &[],
        &["web.default.svc.cluster.local. 5 IN A 10.43.0.11"]),
    ("_syslog._udp.web.default.svc.cluster.local.", SRV, NOERROR,
        &["_syslog._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 514 web.default.svc.cluster.local."], &[],
        &["web.default.svc.cluster.local. 5 IN A 10.43.0.11"]),
    ("_http._tcp.web.default.svc.cluster.local.", A, NOERROR,
        &["_http._tcp.web.default.svc.cluster.local. 5 IN A 10.43.0.11"], &[], &[]),
    ("_http._udp.web.default.svc.cluster.local.", SRV, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("_nope._tcp.web.default.svc.cluster.local.", SRV, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("_tcp.web.default.svc.cluster.local.", SRV, NOERROR, &[], &[SOA_CL], &[]),
    ("_sctp.web.default.svc.cluster.local.", SRV, NXDOMAIN, &[], &[SOA_CL], &[]),
    // Every port, weights shared as CoreDNS does.
    ("web.default.svc.cluster.local.", SRV, NOERROR, &[
        "web.default.svc.cluster.local. 5 IN SRV 0 33 80 web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN SRV 0 33 443 web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN SRV 0 33 514 web.default.svc.cluster.local."], &[],
        &["web.default.svc.cluster.local. 5 IN A 10.43.0.11"]),
    // An unnamed port answers the bare name's SRV only; no ports, addresses only.
    ("one.default.svc.cluster.local.", SRV, NOERROR,
        &["one.default.svc.cluster.local. 5 IN SRV 0 100 8080 one.default.svc.cluster.local."], &[],
        &["one.default.svc.cluster.local. 5 IN A 10.43.0.12"]),
    ("bare.default.svc.cluster.local.", A, NOERROR, &["bare.default.svc.cluster.local. 5 IN A 10.43.0.13"], &[], &[]),
    ("bare.default.svc.cluster.local.", SRV, NOERROR, &[], &[SOA_CL], &[]),
    ("_http._tcp.bare.default.svc.cluster.local.", SRV, NXDOMAIN, &[], &[SOA_CL], &[]),
    // Dual stack: each family its own; one SRV whose target has both.
    ("dual.default.svc.cluster.local.", AAAA, NOERROR, &["dual.default.svc.cluster.local. 5 IN AAAA fd00:43::14"], &[], &[]),
    ("dual.default.svc.cluster.local.", A, NOERROR, &["dual.default.svc.cluster.local. 5 IN A 10.43.0.14"], &[], &[]),
    ("_http._tcp.dual.default.svc.cluster.local.", SRV, NOERROR,
        &["_http._tcp.dual.default.svc.cluster.local. 5 IN SRV 0 50 80 dual.default.svc.cluster.local."], &[],
        &["dual.default.svc.cluster.local. 5 IN A 10.43.0.14", "dual.default.svc.cluster.local. 5 IN AAAA fd00:43::14"]),
    // CoreDNS answers endpoint names of ClusterIP Services too.
    ("10-42-0-9.web.default.svc.cluster.local.", A, NOERROR,
        &["10-42-0-9.web.default.svc.cluster.local. 5 IN A 10.42.0.9"], &[], &[]),
    ("10-42-0-8.web.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),

    // Headless: one address per ready endpoint, hostnames, dashed IPs, SRV per endpoint.
    ("db.default.svc.cluster.local.", A, NOERROR, &[
        "db.default.svc.cluster.local. 5 IN A 10.42.0.5",
        "db.default.svc.cluster.local. 5 IN A 10.42.1.6",
        "db.default.svc.cluster.local. 5 IN A 10.42.2.7"], &[], &[]),
    ("db.default.svc.cluster.local.", AAAA, NOERROR, &["db.default.svc.cluster.local. 5 IN AAAA fd00:42::9"], &[], &[]),
    ("db-0.db.default.svc.cluster.local.", A, NOERROR, &["db-0.db.default.svc.cluster.local. 5 IN A 10.42.0.5"], &[], &[]),
    ("db-0.db.default.svc.cluster.local.", AAAA, NOERROR, &[], &[SOA_CL], &[]),
    ("db-3.db.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("10-42-2-7.db.default.svc.cluster.local.", A, NOERROR, &["10-42-2-7.db.default.svc.cluster.local. 5 IN A 10.42.2.7"], &[], &[]),
    ("10-42-0-5.db.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("fd00-42--9.db.default.svc.cluster.local.", AAAA, NOERROR, &["fd00-42--9.db.default.svc.cluster.local. 5 IN AAAA fd00:42::9"], &[], &[]),
    ("_pg._tcp.db.default.svc.cluster.local.", SRV, NOERROR, &[
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 5432 db-0.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 5432 db-1.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 5432 10-42-2-7.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 25 5432 fd00-42--9.db.default.svc.cluster.local."], &[], &[
        "db-0.db.default.svc.cluster.local. 5 IN A 10.42.0.5",
        "db-1.db.default.svc.cluster.local. 5 IN A 10.42.1.6",
        "10-42-2-7.db.default.svc.cluster.local. 5 IN A 10.42.2.7",
        "fd00-42--9.db.default.svc.cluster.local. 5 IN AAAA fd00:42::9"]),
    ("db-1.db.default.svc.cluster.local.", SRV, NOERROR,
        &["db-1.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 db-1.db.default.svc.cluster.local."], &[],
        &["db-1.db.default.svc.cluster.local. 5 IN A 10.42.1.6"]),
    ("_pg._udp.db.default.svc.cluster.local.", SRV, NXDOMAIN, &[], &[SOA_CL], &[]),
    // No ready endpoint: the name is gone.
    ("idle.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),

    // ExternalName: a CNAME; inside the zone it is followed here.
    ("ext.default.svc.cluster.local.", CNAME, NOERROR, &["ext.default.svc.cluster.local. 5 IN CNAME db.example.org."], &[], &[]),
    ("ext.default.svc.cluster.local.", SRV, NOERROR, &[], &[SOA_CL], &[]),
    ("ext.default.svc.cluster.local.", MX, NOERROR, &[], &[SOA_CL], &[]),
    ("alias.default.svc.cluster.local.", A, NOERROR, &[
        "alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN A 10.43.0.11"], &[], &[]),
    ("alias.default.svc.cluster.local.", AAAA, NOERROR, &[], &[SOA_CL], &[]),
    ("extip.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("x.ext.default.svc.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),

    // Pods, insecure: any well-formed dashed IP.
    ("10-42-7-9.anyns.pod.cluster.local.", A, NOERROR, &["10-42-7-9.anyns.pod.cluster.local. 5 IN A 10.42.7.9"], &[], &[]),
    ("10-42-7-9.anyns.pod.cluster.local.", AAAA, NOERROR, &[], &[SOA_CL], &[]),
    ("fd00-42--7.anyns.pod.cluster.local.", AAAA, NOERROR, &["fd00-42--7.anyns.pod.cluster.local. 5 IN AAAA fd00:42::7"], &[], &[]),
    ("10-42-7.anyns.pod.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("10-42-7-999.anyns.pod.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),
    ("x.10-42-7-9.anyns.pod.cluster.local.", A, NXDOMAIN, &[], &[SOA_CL], &[]),

    // Reverse zones of the Service and pod CIDRs.
    ("11.0.43.10.in-addr.arpa.", PTR, NOERROR, &["11.0.43.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."], &[], &[]),
    ("11.0.43.10.in-addr.arpa.", A, NOERROR, &[], &[SOA_REV], &[]),
    ("99.0.43.10.in-addr.arpa.", PTR, NXDOMAIN, &[], &[SOA_REV], &[]),
    ("0.43.10.in-addr.arpa.", PTR, NOERROR, &[], &[SOA_REV], &[]),
    ("43.10.in-addr.arpa.", SOA, NOERROR, &[SOA_REV], &[], &[]),
    ("5.0.42.10.in-addr.arpa.", PTR, NOERROR, &["5.0.42.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."], &[], &[]),
    ("7.2.42.10.in-addr.arpa.", PTR, NXDOMAIN, &[], &["42.10.in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"], &[]),
];

fn show(records: &[Record]) -> Vec<String> {
    records.iter().map(ToString::to_string).collect()
}

#[test]
fn the_table() {
    let index = index();
    for &(name, qtype, rcode, answers, authority, additional) in CASES {
        let q = query(name, qtype);
        let Outcome::Reply(m) = answer(&index, &q) else {
            panic!("{name} {qtype}: not answered here");
        };
        let what = format!("{name} {qtype}");
        assert_eq!(m.response_code, rcode, "{what}\n{m}");
        assert_eq!(show(&m.answers), answers, "{what}");
        assert_eq!(show(&m.authorities), authority, "{what}");
        assert_eq!(show(&m.additionals), additional, "{what}");
        assert!(
            m.authoritative && m.recursion_available && m.recursion_desired,
            "{what}"
        );
        assert_eq!((m.id, m.message_type), (0x1234, MessageType::Response));
        assert_eq!(m.queries, q.queries, "{what}");
    }
}

#[test]
fn case_is_ignored_and_echoed() {
    let index = index();
    let m = reply_of(&index, "WeB.DeFault.SVC.Cluster.LOCAL.", A);
    assert_eq!(
        show(&m.answers),
        ["WeB.DeFault.SVC.Cluster.LOCAL. 5 IN A 10.43.0.11"]
    );
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "WeB.DeFault.SVC.Cluster.LOCAL."
    );
    let m = reply_of(&index, "Missing.Default.Svc.Cluster.Local.", A);
    assert_eq!(m.response_code, NXDOMAIN);
    assert_eq!(
        m.authorities[0].name.to_ascii(),
        "Cluster.Local.",
        "the SOA owner as asked"
    );
    let m = reply_of(&index, "_HTTP._TCP.web.default.svc.cluster.local.", SRV);
    assert_eq!(m.answers.len(), 1);
}

fn reply_of(index: &Index, name: &str, qtype: RecordType) -> Message {
    match answer(index, &query(name, qtype)) {
        Outcome::Reply(m) => m,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn outside_names_are_forwarded_and_external_chains_chased() {
    let index = index();
    for name in [
        "example.com.",
        "local.",
        "8.8.8.8.in-addr.arpa.",
        "10.in-addr.arpa.",
        "cluster.local.example.",
    ] {
        assert_eq!(answer(&index, &query(name, A)), Outcome::Forward, "{name}");
    }
    match answer(&index, &query("ext.default.svc.cluster.local.", AAAA)) {
        Outcome::Chase {
            reply,
            target,
            qtype,
        } => {
            assert_eq!(
                show(&reply.answers),
                ["ext.default.svc.cluster.local. 5 IN CNAME db.example.org."]
            );
            assert_eq!(
                (target.to_ascii().as_str(), qtype),
                ("db.example.org.", AAAA)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_and_unsupported_queries_get_error_codes() {
    let index = index();
    let mut two = query("web.default.svc.cluster.local.", A);
    two.add_query(Query::query(Name::from_ascii("x.").unwrap(), A));
    let mut notify = query("web.default.svc.cluster.local.", A);
    notify.metadata.op_code = OpCode::Notify;
    let mut v1 = query("web.default.svc.cluster.local.", A);
    let mut e = Edns::new();
    e.set_version(1);
    v1.set_edns(e);
    let mut chaos = query("web.default.svc.cluster.local.", A);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let axfr = query("cluster.local.", RecordType::AXFR);
    let none = Message::new(9, MessageType::Query, OpCode::Query);
    for (q, rcode) in [
        (two, ResponseCode::FormErr),
        (none, ResponseCode::FormErr),
        (notify, ResponseCode::NotImp),
        (v1, ResponseCode::BADVERS),
        (chaos, ResponseCode::Refused),
        (axfr, ResponseCode::Refused),
    ] {
        match answer(&index, &q) {
            Outcome::Reply(m) => assert_eq!(m.response_code, rcode),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn edns_is_echoed_and_unsynced_misses_are_servfail() {
    let index = index();
    let mut q = query("web.default.svc.cluster.local.", A);
    let mut e = Edns::new();
    e.set_max_payload(4096).set_dnssec_ok(true);
    q.set_edns(e);
    let m = reply_of_msg(&index, &q);
    let e = m.edns.expect("OPT echoed");
    assert_eq!((e.max_payload(), e.flags().dnssec_ok), (EDNS_PAYLOAD, true));

    let empty = Index::from_config(&Config::default()).unwrap();
    let m = reply_of(&empty, "web.default.svc.cluster.local.", A);
    assert_eq!(m.response_code, ResponseCode::ServFail);
    assert_eq!(show(&m.authorities).len(), 1);
    let m = reply_of(&empty, "svc.cluster.local.", A);
    assert_eq!(
        m.response_code, NOERROR,
        "what exists regardless is still NODATA"
    );
}

fn reply_of_msg(index: &Index, q: &Message) -> Message {
    match answer(index, q) {
        Outcome::Reply(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_domains_and_weights() {
    let mut index = Index::new("k8s.test", 30, vec!["fd00:43::/112".parse().unwrap()]).unwrap();
    index.rebuild(&catalog().read(), 1);
    let m = reply_of(&index, "web.default.svc.k8s.test.", A);
    assert_eq!(
        show(&m.answers),
        ["web.default.svc.k8s.test. 30 IN A 10.43.0.11"]
    );
    let rev = Name::from("fd00:43::14".parse::<IpAddr>().unwrap());
    let m = reply_of(&index, &rev.to_ascii(), PTR);
    assert_eq!(
        show(&m.answers)[0].split(' ').nth(4),
        Some("dual.default.svc.k8s.test.")
    );
    assert_eq!(
        answer(&index, &query("web.default.svc.cluster.local.", A)),
        Outcome::Forward
    );
    let weights: Vec<u16> = (1..=8).map(srv_weight).collect();
    assert_eq!(weights, [100, 50, 33, 25, 20, 16, 14, 12]);
    assert_eq!(srv_weight(1000), 1);
}
