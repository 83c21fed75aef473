//! The answer to one query from the index, as CoreDNS's `kubernetes` plugin (`pods
//! insecure`) gives it: which names exist (NXDOMAIN versus NODATA, empty non-terminals
//! included), the records of each, SRV weights and additional addresses, ExternalName
//! CNAMEs, PTRs, pod names, the SOA and NS. Pure: no IO, no clock.
//!
//! A name is first split into labels below the zone (`_http._tcp.web.default.svc`), those
//! resolve to a [`Node`], and the node gives the records of the asked type. Names outside
//! the cluster's zones are left to the forwarder ([`Outcome::Forward`]); an ExternalName
//! pointing outside them is answered with its CNAME and the rest is looked up upstream
//! ([`Outcome::Chase`]), as CoreDNS completes such a chain.

use crate::reverse::{self, Located, Spot};
use crate::zone::{Entry, Index, NAMESERVER_SERVICE, PtrTarget, prepend};
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use skiff_catalog::{Protocol, ServiceType};
use std::collections::HashSet;
use std::net::IpAddr;

/// `dns-version.<zone>` TXT: the schema version of the specification.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// CoreDNS's TTL for the schema version.
const VERSION_TTL: u32 = 28800;
/// CNAMEs followed inside the zone, at most (CoreDNS's limit).
const MAX_CHAIN: usize = 8;
/// `_port._proto.svc.ns.svc` is the longest name the zone has.
const MAX_LABELS: usize = 5;
/// The UDP payload advertised in replies (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

/// What to do with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The whole reply.
    Reply(Message),
    /// Not a name of the cluster's zones: ask the upstream resolvers.
    Forward,
    /// An ExternalName's CNAME to a name outside the zones: `reply` holds the chain so
    /// far; the upstream answer for `target`/`qtype` is to be appended.
    Chase {
        reply: Message,
        target: Name,
        qtype: RecordType,
    },
}

/// Answers `query` from `index`.
pub fn answer(index: &Index, query: &Message) -> Outcome {
    if query.op_code != OpCode::Query {
        return Outcome::Reply(reply(query, ResponseCode::NotImp, false));
    }
    let [q] = query.queries.as_slice() else {
        return Outcome::Reply(reply(query, ResponseCode::FormErr, false));
    };
    if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Outcome::Reply(reply(query, ResponseCode::BADVERS, false));
    }
    if let Some(rel) = relative(q.name(), index.zone()) {
        return in_zone(index, query, q, rel);
    }
    match reverse::locate(index.reverse_cidrs(), q.name()) {
        Some(located) => Outcome::Reply(in_reverse(index, query, q, located)),
        None => Outcome::Forward,
    }
}

/// A reply to `query` with its question, flags and OPT, and no records yet.
pub fn reply(query: &Message, rcode: ResponseCode, authoritative: bool) -> Message {
    let mut m = Message::response(query.id, query.op_code);
    m.metadata.authoritative = authoritative;
    m.metadata.recursion_desired = query.recursion_desired;
    // Recursion is offered: every other name is forwarded.
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = query.checking_disabled;
    m.metadata.response_code = rcode;
    m.queries = query.queries.clone();
    m.edns = query.edns.as_ref().map(reply_edns);
    m
}

/// The OPT a reply carries when the query had one (RFC 6891: DO copied, RFC 3225).
pub fn reply_edns(query: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    e.set_dnssec_ok(query.flags().dnssec_ok);
    e
}

/// Labels of `name` below `zone`, if `name` is `zone` or under it.
fn relative(name: &Name, zone: &Name) -> Option<usize> {
    let (n, z) = (name.num_labels() as usize, zone.num_labels() as usize);
    let under = n >= z
        && name
            .iter()
            .rev()
            .zip(zone.iter().rev())
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
    under.then(|| n - z)
}

/// Other classes, and zone transfers (which CoreDNS serves only when configured to),
/// are refused in the cluster's zones.
fn refused(q: &Query) -> bool {
    q.query_class() != DNSClass::IN || matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)
}

fn in_zone(index: &Index, query: &Message, q: &Query, rel: usize) -> Outcome {
    if refused(q) {
        return Outcome::Reply(reply(query, ResponseCode::Refused, false));
    }
    let name = q.name();
    let apex = || name.trim_to(index.zone().num_labels() as usize);
    let node = node_of(index, name, rel);
    if matches!(node, Node::Missing) {
        return Outcome::Reply(negative(index, query, apex(), true));
    }
    let mut out = Out::default();
    fill(index, &node, name, q.query_type(), &mut out, 0);
    if out.answers.is_empty() {
        return Outcome::Reply(negative(index, query, apex(), false));
    }
    let mut m = reply(query, ResponseCode::NoError, true);
    m.answers = out.answers;
    m.additionals = out.additionals;
    match out.chase {
        Some((target, qtype)) => Outcome::Chase {
            reply: m,
            target,
            qtype,
        },
        None => Outcome::Reply(m),
    }
}

/// NXDOMAIN (`missing`; SERVFAIL while the catalog is not synced, as CoreDNS) or
/// NODATA, with the zone's SOA in the authority section.
fn negative(index: &Index, query: &Message, apex: Name, missing: bool) -> Message {
    let rcode = match (missing, index.synced()) {
        (false, _) => ResponseCode::NoError,
        (true, true) => ResponseCode::NXDomain,
        (true, false) => ResponseCode::ServFail,
    };
    let mut m = reply(query, rcode, true);
    m.authorities.push(soa(index, apex));
    m
}

/// The SOA CoreDNS gives: `ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400
/// <ttl>`, itself cached no longer than 300 s.
fn soa(index: &Index, apex: Name) -> Record {
    let rdata = SOA::new(
        index.ns_name().clone(),
        index.hostmaster().clone(),
        index.serial(),
        7200,
        1800,
        86400,
        index.ttl(),
    );
    Record::from_rdata(apex, index.ttl().min(300), RData::SOA(rdata))
}

/// What a name of the zone is.
#[derive(Debug)]
enum Node<'a> {
    /// NXDOMAIN.
    Missing,
    /// Exists with no records of its own (an empty non-terminal).
    Empty,
    Apex,
    /// `dns-version.<zone>`.
    Version,
    /// `ns.dns.<zone>`: the kube-dns Service's cluster IPs.
    Nameserver,
    /// `a-b-c-d.<ns>.pod.<zone>`.
    Pod(IpAddr),
    /// A Service's (or its endpoints') records, as CoreDNS's `msg.Service` list.
    Items(Vec<Item<'a>>),
}

/// One address (or CNAME target) with one port, and the name it goes under.
#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    host: Host<'a>,
    /// None for a Service or slice without ports (CoreDNS's port -1): addresses only.
    port: Option<u16>,
    target: Target<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Host<'a> {
    Ip(IpAddr),
    Cname(&'a Name),
}

/// `[<endpoint>.]<svc>.<ns>.svc.<zone>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Target<'a> {
    endpoint: Option<EndpointLabel<'a>>,
    svc: &'a str,
    ns: &'a str,
}

/// An endpoint's hostname, or its IP dashed (`10-42-0-5`) when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EndpointLabel<'a> {
    Hostname(&'a str),
    Dashed(IpAddr),
}

/// A label lower-cased on the stack (names are matched without allocating).
#[derive(Clone, Copy)]
struct Lower {
    buf: [u8; 63],
    len: usize,
}

impl Lower {
    const EMPTY: Lower = Lower {
        buf: [0; 63],
        len: 0,
    };

    fn new(label: &[u8]) -> Lower {
        let mut l = Lower::EMPTY;
        for (d, s) in l.buf.iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        l.len = label.len().min(63);
        l
    }

    /// Not UTF-8 matches nothing Kubernetes names (a NUL never appears in them).
    fn str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("\0")
    }
}

fn node_of<'a>(index: &'a Index, name: &Name, rel: usize) -> Node<'a> {
    if rel > MAX_LABELS {
        return Node::Missing;
    }
    let mut labels = [Lower::EMPTY; MAX_LABELS];
    for (l, label) in labels.iter_mut().zip(name.iter().take(rel)) {
        *l = Lower::new(label);
    }
    classify(index, &labels[..rel])
}

fn classify<'a>(index: &'a Index, labels: &[Lower]) -> Node<'a> {
    let Some((last, rest)) = labels.split_last() else {
        return Node::Apex;
    };
    match (last.str(), rest) {
        ("svc", _) => service_node(index, rest),
        ("pod", _) => pod_node(rest),
        ("dns-version", []) => Node::Version,
        ("dns", []) => Node::Empty,
        ("dns", [ns]) if ns.str() == "ns" => Node::Nameserver,
        _ => Node::Missing,
    }
}

fn service_node<'a>(index: &'a Index, rest: &[Lower]) -> Node<'a> {
    match rest {
        [] => Node::Empty,
        [ns] if index.has_namespace(ns.str()) => Node::Empty,
        [_] => Node::Missing,
        [extra @ .., svc, ns] => match index.service(ns.str(), svc.str()) {
            Some(entry) => entry_node(entry, extra),
            None => Node::Missing,
        },
    }
}

fn entry_node<'a>(entry: &'a Entry, extra: &[Lower]) -> Node<'a> {
    let filter = match extra {
        [] => Filter::ANY,
        // `_tcp.<svc>…` is the empty non-terminal above `_http._tcp.<svc>…` (CoreDNS
        // takes it for an endpoint and says NXDOMAIN, which would deny the SRV below).
        [proto] if proto.str().starts_with('_') => {
            return match has_protocol(entry, strip(proto.str())) {
                true => Node::Empty,
                false => Node::Missing,
            };
        }
        [endpoint] => Filter {
            endpoint: Some(endpoint.str()),
            ..Filter::ANY
        },
        [port, proto] => Filter {
            port: strip(port.str()),
            protocol: strip(proto.str()),
            endpoint: None,
        },
        _ => return Node::Missing,
    };
    items(entry, &filter)
}

fn pod_node<'a>(rest: &[Lower]) -> Node<'a> {
    match rest {
        // Insecure pod records: every namespace may have pods.
        [] | [_] => Node::Empty,
        [pod, _ns] => dashed_ip(pod.str()).map_or(Node::Missing, Node::Pod),
        _ => Node::Missing,
    }
}

/// CoreDNS's reading of a dashed IP: three dashes and no `--` is IPv4, else IPv6.
fn dashed_ip(label: &str) -> Option<IpAddr> {
    let v4 = label.matches('-').count() == 3 && !label.contains("--");
    label.replace('-', if v4 { "." } else { ":" }).parse().ok()
}

fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// `_http` → `http`, as CoreDNS strips one leading underscore.
fn strip(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

/// Which ports or endpoints a name selects; empty means any.
struct Filter<'f> {
    port: &'f str,
    protocol: &'f str,
    endpoint: Option<&'f str>,
}

impl Filter<'_> {
    const ANY: Filter<'static> = Filter {
        port: "",
        protocol: "",
        endpoint: None,
    };

    /// CoreDNS's `matchPortAndProtocol`; a port-less Service matches only no filter.
    fn port(&self, name: &str, protocol: Option<Protocol>) -> bool {
        (self.port.is_empty() || self.port.eq_ignore_ascii_case(name))
            && (self.protocol.is_empty() || protocol.is_some_and(|p| p.lower() == self.protocol))
    }

    fn any_port(&self) -> bool {
        self.port.is_empty() && self.protocol.is_empty()
    }
}

fn has_protocol(entry: &Entry, protocol: &str) -> bool {
    let svc = entry.service.ports.iter().map(|p| p.protocol);
    let eps = entry
        .slices
        .iter()
        .flat_map(|s| s.ports.iter().map(|p| p.protocol));
    svc.chain(eps).any(|p| p.lower() == protocol)
}

/// CoreDNS's `findServices` for one Service.
fn items<'a>(entry: &'a Entry, f: &Filter) -> Node<'a> {
    if entry.service.type_ == ServiceType::ExternalName {
        return match (&entry.external, f.endpoint) {
            (Some(target), None) => Node::Items(vec![Item {
                host: Host::Cname(target),
                port: None,
                target: target_of(entry, None),
            }]),
            _ => Node::Missing,
        };
    }
    if entry.service.headless || f.endpoint.is_some() {
        return endpoint_items(entry, f);
    }
    cluster_items(entry, f)
}

/// Each cluster IP per matching port; the name exists if any port matches.
fn cluster_items<'a>(entry: &'a Entry, f: &Filter) -> Node<'a> {
    let svc = &entry.service;
    let target = target_of(entry, None);
    let mut out = Vec::new();
    let mut matched = false;
    let ports = svc
        .ports
        .iter()
        .map(|p| (Some(p.port), p.name.as_str(), Some(p.protocol)));
    let sentinel = svc.ports.is_empty().then_some((None, "", None));
    for (port, name, protocol) in ports.chain(sentinel) {
        if !f.port(name, protocol) {
            continue;
        }
        matched = true;
        out.extend(svc.cluster_ips.iter().map(|ip| Item {
            host: Host::Ip(*ip),
            port,
            target,
        }));
    }
    if matched {
        Node::Items(out)
    } else {
        Node::Missing
    }
}

fn target_of<'a>(entry: &'a Entry, endpoint: Option<EndpointLabel<'a>>) -> Target<'a> {
    Target {
        endpoint,
        svc: &entry.service.key.name,
        ns: &entry.service.key.namespace,
    }
}

/// Ready endpoints (all for a headless Service, or the one a name picks), per port.
fn endpoint_items<'a>(entry: &'a Entry, f: &Filter) -> Node<'a> {
    let wanted_ip = f.endpoint.and_then(dashed_ip);
    let mut out = Vec::new();
    for (slice, ep, ip) in entry.ready() {
        let hostname = ep.hostname.as_deref().filter(|h| !h.is_empty());
        let label = match hostname {
            Some(h) => EndpointLabel::Hostname(h),
            None => EndpointLabel::Dashed(ip),
        };
        let picked = match (f.endpoint, label) {
            (None, _) => true,
            (Some(want), EndpointLabel::Hostname(h)) => h.eq_ignore_ascii_case(want),
            (Some(_), EndpointLabel::Dashed(ip)) => wanted_ip == Some(ip),
        };
        if !picked {
            continue;
        }
        let target = target_of(entry, Some(label));
        if slice.ports.is_empty() && f.any_port() {
            out.push(Item {
                host: Host::Ip(ip),
                port: None,
                target,
            });
        }
        for p in slice
            .ports
            .iter()
            .filter(|p| f.port(&p.name, Some(p.protocol)))
        {
            out.push(Item {
                host: Host::Ip(ip),
                port: Some(p.port),
                target,
            });
        }
    }
    if out.is_empty() {
        Node::Missing
    } else {
        Node::Items(out)
    }
}

/// Records collected for one name.
#[derive(Default)]
struct Out {
    answers: Vec<Record>,
    additionals: Vec<Record>,
    chase: Option<(Name, RecordType)>,
}

fn fill(index: &Index, node: &Node, owner: &Name, qtype: RecordType, out: &mut Out, depth: usize) {
    let ttl = index.ttl();
    match node {
        Node::Missing | Node::Empty => {}
        Node::Apex => apex(index, owner, qtype, out),
        Node::Version if qtype == RecordType::TXT => {
            let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
            let r = Record::from_rdata(owner.clone(), VERSION_TTL, RData::TXT(txt));
            out.answers.push(r);
        }
        Node::Version => {}
        Node::Nameserver => addresses(owner, nameservers(index), qtype, ttl, &mut out.answers),
        Node::Pod(ip) => addresses(owner, [*ip], qtype, ttl, &mut out.answers),
        Node::Items(items) => match qtype {
            RecordType::A | RecordType::AAAA | RecordType::TXT => {
                address_items(index, items, owner, qtype, out, depth)
            }
            RecordType::SRV => srv(index, items, owner, out),
            RecordType::CNAME => {
                if let Some(target) = items.iter().find_map(|i| match i.host {
                    Host::Cname(t) => Some(t),
                    Host::Ip(_) => None,
                }) {
                    out.answers.push(cname(owner, target, ttl));
                }
            }
            _ => {}
        },
    }
}

fn apex(index: &Index, owner: &Name, qtype: RecordType, out: &mut Out) {
    match qtype {
        RecordType::SOA => out.answers.push(soa(index, owner.clone())),
        RecordType::NS => {
            let ns = index.ns_name().clone();
            let ttl = index.ttl();
            out.answers.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::NS(NS(ns.clone())),
            ));
            for qt in [RecordType::A, RecordType::AAAA] {
                addresses(&ns, nameservers(index), qt, ttl, &mut out.additionals);
            }
        }
        _ => {}
    }
}

/// The kube-dns Service's cluster IPs: where pods send their queries.
fn nameservers(index: &Index) -> Vec<IpAddr> {
    let (ns, name) = NAMESERVER_SERVICE;
    index
        .service(ns, name)
        .map(|e| e.service.cluster_ips.clone())
        .unwrap_or_default()
}

/// A or AAAA records (as `qtype` asks) for the IPs of that family, each once.
fn addresses(
    owner: &Name,
    ips: impl IntoIterator<Item = IpAddr>,
    qtype: RecordType,
    ttl: u32,
    out: &mut Vec<Record>,
) {
    let mut seen = HashSet::new();
    for ip in ips {
        if family_is(ip, qtype) && seen.insert(ip) {
            out.push(address(owner.clone(), ip, ttl));
        }
    }
}

fn family_is(ip: IpAddr, qtype: RecordType) -> bool {
    matches!(
        (ip, qtype),
        (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA)
    )
}

fn address(owner: Name, ip: IpAddr, ttl: u32) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, rdata)
}

fn cname(owner: &Name, target: &Name, ttl: u32) -> Record {
    Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target.clone())))
}

/// A/AAAA (and TXT, which only an ExternalName's chain can give) of a Service's items.
fn address_items(
    index: &Index,
    items: &[Item],
    owner: &Name,
    qtype: RecordType,
    out: &mut Out,
    depth: usize,
) {
    let mut seen = HashSet::new();
    for item in items {
        match item.host {
            Host::Ip(ip) if family_is(ip, qtype) && seen.insert(ip) => {
                out.answers.push(address(owner.clone(), ip, index.ttl()));
            }
            Host::Ip(_) => {}
            Host::Cname(target) => follow(index, owner, target, qtype, out, depth),
        }
    }
}

/// An ExternalName's CNAME: followed here inside the zone (kept only if it leads
/// somewhere, as CoreDNS), handed to the upstreams outside it.
fn follow(
    index: &Index,
    owner: &Name,
    target: &Name,
    qtype: RecordType,
    out: &mut Out,
    depth: usize,
) {
    if target == owner || depth >= MAX_CHAIN {
        return;
    }
    let link = cname(owner, target, index.ttl());
    let Some(rel) = relative(target, index.zone()) else {
        out.answers.push(link);
        out.chase = Some((target.clone(), qtype));
        return;
    };
    let mut next = Out::default();
    fill(
        index,
        &node_of(index, target, rel),
        target,
        qtype,
        &mut next,
        depth + 1,
    );
    if !next.answers.is_empty() {
        out.answers.push(link);
        out.answers.append(&mut next.answers);
        out.additionals.append(&mut next.additionals);
        out.chase = next.chase.or(out.chase.take());
    }
}

/// SRV records, one per (target, port), with the targets' addresses as additionals.
fn srv(index: &Index, items: &[Item], owner: &Name, out: &mut Out) {
    let weight = srv_weight(items.len());
    let ttl = index.ttl();
    let (mut srvs, mut addrs) = (HashSet::new(), HashSet::new());
    let mut last: Option<(Target, Name)> = None;
    for item in items {
        let (Host::Ip(ip), Some(port)) = (item.host, item.port) else {
            continue;
        };
        let target = match &last {
            Some((t, name)) if *t == item.target => name.clone(),
            _ => match target_name(index, &item.target) {
                Some(name) => {
                    last = Some((item.target, name.clone()));
                    name
                }
                None => continue,
            },
        };
        if srvs.insert((target.clone(), port)) {
            let rdata = SRV::new(0, weight, port, target.clone());
            out.answers
                .push(Record::from_rdata(owner.clone(), ttl, RData::SRV(rdata)));
        }
        if addrs.insert((target.clone(), ip)) {
            out.additionals.push(address(target, ip, ttl));
        }
    }
}

/// CoreDNS's weight for `n` records of one priority: `floor(100 / (100 n) × 100)`,
/// at least 1.
fn srv_weight(n: usize) -> u16 {
    let w = (100.0 / (100.0 * n.max(1) as f64) * 100.0).floor();
    (w as u16).max(1)
}

fn target_name(index: &Index, t: &Target) -> Option<Name> {
    let tail = [t.svc.as_bytes(), t.ns.as_bytes(), b"svc"];
    match t.endpoint {
        None => prepend(index.zone(), &tail),
        Some(EndpointLabel::Hostname(h)) => {
            prepend(index.zone(), &[h.as_bytes(), tail[0], tail[1], tail[2]])
        }
        Some(EndpointLabel::Dashed(ip)) => {
            let d = dashed(ip);
            prepend(index.zone(), &[d.as_bytes(), tail[0], tail[1], tail[2]])
        }
    }
}

/// Reverse zones of the Service and pod CIDRs: PTRs for cluster IPs and for headless
/// endpoints with hostnames.
fn in_reverse(index: &Index, query: &Message, q: &Query, at: Located) -> Message {
    if refused(q) {
        return reply(query, ResponseCode::Refused, false);
    }
    let name = q.name();
    let apex = || name.trim_to(at.apex_labels);
    let mut out = Out::default();
    match at.spot {
        Spot::Address(ip) => {
            let targets = index.ptr(ip);
            if targets.is_empty() {
                return negative(index, query, apex(), true);
            }
            if q.query_type() == RecordType::PTR {
                ptrs(index, name, targets, &mut out.answers);
            }
        }
        Spot::Invalid => return negative(index, query, apex(), true),
        Spot::Apex => apex_of_reverse(index, name, q.query_type(), &mut out),
        // Part of an address: an empty non-terminal for all this index knows, and an
        // NXDOMAIN here would deny every PTR below it to resolvers (RFC 8020).
        Spot::Inner => {}
    }
    if out.answers.is_empty() {
        return negative(index, query, apex(), false);
    }
    let mut m = reply(query, ResponseCode::NoError, true);
    m.answers = out.answers;
    m.additionals = out.additionals;
    m
}

fn apex_of_reverse(index: &Index, name: &Name, qtype: RecordType, out: &mut Out) {
    match qtype {
        RecordType::SOA | RecordType::NS => apex(index, name, qtype, out),
        _ => {}
    }
}

/// A cluster IP names its Service (the first, as CoreDNS); otherwise every headless
/// Service that has the endpoint names it.
fn ptrs(index: &Index, owner: &Name, targets: &[PtrTarget], out: &mut Vec<Record>) {
    let service = targets.iter().find(|t| matches!(t, PtrTarget::Service(_)));
    let chosen: &[PtrTarget] = match service {
        Some(t) => std::slice::from_ref(t),
        None => targets,
    };
    for t in chosen {
        let key = t.key();
        let endpoint = match t {
            PtrTarget::Endpoint(_, h) => Some(EndpointLabel::Hostname(h)),
            PtrTarget::Service(_) => None,
        };
        let target = Target {
            endpoint,
            svc: &key.name,
            ns: &key.namespace,
        };
        if let Some(name) = target_name(index, &target) {
            out.push(Record::from_rdata(
                owner.clone(),
                index.ttl(),
                RData::PTR(PTR(name)),
            ));
        }
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
