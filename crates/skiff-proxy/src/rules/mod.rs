//! The pure core: from the catalog and the [`Config`], what one Service should have in
//! one family's table (`desired`), and from what was applied before, the transaction
//! that gets there (`diff`). No IO: the runner feeds it and runs what it says.
//!
//! The layout is kube-proxy's nftables mode (`pkg/proxy/nftables`): a
//! `daddr . l4proto . dport` verdict map sends a Service address to its port's chain,
//! which picks an endpoint at random (`numgen random mod N`) and jumps to the
//! endpoint's chain, which DNATs. Services with no usable endpoint get an element in
//! a `no-endpoint-*` map instead, looked up from filter hooks, which rejects.
//!
//! One difference, measured on this project's machines (kernel 6.18, nft 1.0.6, 2
//! cores, 10,000 Services of two endpoints): kube-proxy writes the random choice as an
//! anonymous verdict map in each Service's chain (`numgen random mod N vmap { 0 : goto
//! a, … }`). The kernel names and binds each anonymous set by scanning all the table's
//! sets and the open transaction, so loading the whole table took 74 s. One named map
//! per chain takes 11.6 s (set lookups by name are list scans too), and one shared map
//! keyed by `numgen … offset` loads fast but makes every later commit validate each
//! chain against the whole map (1.25 s per change at 3,000 Services). Here the choice
//! is iptables mode's cascade, `numgen random mod K == 0 goto endpoint` for K = N … 2
//! then `goto` the last: the same uniform choice with no sets, a full load of 3.2 s and
//! a change in one transaction; the cost is N rules walked on a connection's first
//! packet (NAT chains never see the others).
//!
//! # Shards
//!
//! The per-Service chains and the maps that jump to them (`service-ips`,
//! `service-nodeports`) are not in the base table but in shard tables of their own
//! (`skiff-proxy-0` …, 16 by default, [`Config::shards`]), each Service in the one its
//! key hashes to, each shard with its own NAT hooks. At every commit that adds a
//! jump, a `dnat` or a verdict element, the kernel validates the whole jump graph of
//! each table the commit touched, from every base chain through every map element:
//! about 50 ms for one table of 10,000 Services, whatever the change. A change touches
//! one shard; measured at 10,000 Services, a one-endpoint change's commit takes 50 ms
//! with 1 shard, 16 ms with 4, 5 ms with 16, 3.5 ms with 32.
//!
//! The cost is on a connection's first packet (NAT chains see no other): it crosses
//! every shard's NAT chain, one map lookup each (and a `fib` lookup for node ports),
//! until the shard whose map has its address sets up the DNAT; `nf_nat_inet_fn` skips
//! the rest after the first binding. What must stay whole stays in the base table: the
//! filter hooks and their maps (a key rejected or dropped there has one owner,
//! whatever its shard), the cluster-IP check and the masquerade; those maps only jump
//! to `reject-chain`, so validating the base table is cheap.

pub mod diff;
pub mod names;

use crate::config::{Config, Family};
use skiff_catalog::{
    Catalog, Protocol, ResolvedEndpoint, Service, ServiceKey, ServicePort, Slice, endpoints_of,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The base table's name, in both families; shard tables are `skiff-proxy-N`.
pub const TABLE: &str = "skiff-proxy";

/// The most shard tables there may be: a full load and a cleanup delete this many,
/// whatever the count was before.
pub const MAX_SHARDS: u16 = 64;

/// Which table of a family something is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// Filter hooks, their maps, the cluster-IP check, masquerading.
    Base,
    /// NAT hooks, the maps to Service chains, and the chains of the Services whose key
    /// hashes here.
    Shard(u16),
}

impl Place {
    /// The shard (of `shards`) holding `key`'s chains.
    pub fn of(key: &ServiceKey, shards: u16) -> Place {
        Place::Shard(names::shard(key, shards))
    }

    /// The base table, then `shards` shards.
    pub fn all(shards: u16) -> impl Iterator<Item = Place> {
        std::iter::once(Place::Base).chain((0..shards).map(Place::Shard))
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Base => f.write_str(TABLE),
            Place::Shard(i) => write!(f, "{TABLE}-{i}"),
        }
    }
}

/// The mark bit that asks the postrouting chain to masquerade (kube-proxy's 0x4000).
pub const MASQ_MARK: &str = "0x4000";

/// A table-wide map or set that Services put elements in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Map {
    /// Set of cluster IPs: other ports of them are rejected.
    ClusterIps,
    /// `addr . proto . port` → the Service port's chain.
    ServiceIps,
    /// `addr . proto . port` → reject or drop, for ports with no usable endpoint.
    NoEndpointServices,
    /// `proto . nodePort` → the external chain.
    ServiceNodePorts,
    /// `proto . nodePort` → reject or drop.
    NoEndpointNodePorts,
}

impl Map {
    pub fn name(self) -> &'static str {
        match self {
            Map::ClusterIps => "cluster-ips",
            Map::ServiceIps => "service-ips",
            Map::NoEndpointServices => "no-endpoint-services",
            Map::ServiceNodePorts => "service-nodeports",
            Map::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }

    /// The table holding this map's element for a key `owner` has: maps that jump to
    /// a Service's chains are in its shard.
    pub fn place(self, owner: &ServiceKey, shards: u16) -> Place {
        match self {
            Map::ServiceIps | Map::ServiceNodePorts => Place::of(owner, shards),
            Map::ClusterIps | Map::NoEndpointServices | Map::NoEndpointNodePorts => Place::Base,
        }
    }
}

/// What traffic a key catches: two Services may claim the same one (an external or
/// load-balancer IP and port), and then only one gets it (see `diff`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub space: Space,
    /// The element key as nft writes it (`10.43.0.1 . tcp . 80`, `tcp . 30080`).
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    ClusterIp,
    Address,
    NodePort,
}

/// One chain a Service owns: its rules, then (if any) a random jump to one of
/// `dispatch` (endpoint chains; see `diff::choice`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub rules: Vec<String>,
    pub dispatch: Vec<String>,
}

/// A UDP Service port as conntrack cleanup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPort {
    /// Cluster, external and load-balancer IPs.
    pub ips: Vec<IpAddr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Endpoints that are serving (whatever the traffic policies).
    pub serving: BTreeSet<IpAddr>,
}

/// Everything one Service has in one family's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRules {
    pub chains: BTreeMap<String, Chain>,
    /// Affinity sets and their timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// Map elements by what they catch: `(map, value)` pairs (value empty in a set).
    pub frontends: BTreeMap<Frontend, Vec<(Map, String)>>,
    /// UDP ports by `name/port`, for conntrack cleanup.
    pub udp: BTreeMap<String, UdpPort>,
}

/// The tables' fixed part: hooks, top-level chains, maps, in the base table and every
/// shard. Loaded by a full sync after deleting whatever tables were there (shards of a
/// larger count too), in the same transaction.
pub fn base(family: Family, cfg: &Config) -> String {
    let shards = cfg.shard_count();
    let mut s = base_table(family, cfg);
    for i in 0..shards {
        s += &shard_table(family, Place::Shard(i));
    }
    for i in shards..MAX_SHARDS {
        s += &remove_table(family, Place::Shard(i));
    }
    s
}

/// Deletes every table of `family` (base and any shard), without error for those not
/// there.
pub fn remove_tables(family: Family) -> String {
    Place::all(MAX_SHARDS)
        .map(|p| remove_table(family, p))
        .collect()
}

/// Adding first makes deleting a missing table no error.
fn remove_table(family: Family, place: Place) -> String {
    let f = family.nft();
    format!("add table {f} {place}\ndelete table {f} {place}\n")
}

/// `place` deleted if there and created empty.
fn fresh_table(family: Family, place: Place) -> String {
    let f = family.nft();
    format!("add table {f} {place}\ndelete table {f} {place}\nadd table {f} {place}\n")
}

fn base_table(family: Family, cfg: &Config) -> String {
    let f = family.nft();
    let addr = family.addr_type();
    let lo = family.loopback();
    let mut s = fresh_table(family, Place::Base);
    // Filters run before DNAT (-110) to see Service addresses; the cluster-IP check
    // runs after it (-90), when only packets no Service took still have one.
    for (name, kind, hook, prio) in [
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output-post-dnat", "filter", "output", -90),
        ("nat-postrouting", "nat", "postrouting", 100),
    ] {
        s += &format!(
            "add chain {f} {TABLE} {name} {{ type {kind} hook {hook} priority {prio} ; policy accept ; }}\n"
        );
    }
    for name in [
        "masquerading",
        "reject-chain",
        "service-endpoints-check",
        "nodeport-endpoints-check",
        "cluster-ips-check",
    ] {
        s += &format!("add chain {f} {TABLE} {name}\n");
    }
    s += &format!("add set {f} {TABLE} cluster-ips {{ type {addr} ; }}\n");
    s += &format!(
        "add map {f} {TABLE} no-endpoint-services {{ type {addr} . inet_proto . inet_service : verdict ; }}\n"
    );
    s += &format!(
        "add map {f} {TABLE} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; }}\n"
    );
    let mut rules = vec![
        (
            "filter-input",
            "ct state new jump nodeport-endpoints-check".to_string(),
        ),
        (
            "filter-input",
            "ct state new jump service-endpoints-check".into(),
        ),
        (
            "filter-forward",
            "ct state new jump service-endpoints-check".into(),
        ),
        (
            "filter-forward",
            "ct state new jump cluster-ips-check".into(),
        ),
        // After DNAT, so the node's own traffic that an external chain short-circuits
        // is not dropped before it is.
        (
            "filter-output-post-dnat",
            "ct state new jump service-endpoints-check".into(),
        ),
        (
            "filter-output-post-dnat",
            "ct state new jump cluster-ips-check".into(),
        ),
        ("nat-postrouting", "jump masquerading".into()),
        ("masquerading", format!("mark and {MASQ_MARK} == 0 return")),
        ("masquerading", format!("mark set mark xor {MASQ_MARK}")),
        ("masquerading", "masquerade fully-random".into()),
        // TCP gets a reset: an ICMP error sent from the forward hook does not reach a
        // pod behind a bridge with br_netfilter on (checked here), a reset does.
        (
            "reject-chain",
            "meta l4proto tcp reject with tcp reset".into(),
        ),
        ("reject-chain", "reject".into()),
        (
            "service-endpoints-check",
            format!("{f} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
        ),
        (
            "nodeport-endpoints-check",
            format!(
                "fib daddr type local {f} daddr != {lo} meta l4proto . th dport vmap @no-endpoint-nodeports"
            ),
        ),
        (
            "cluster-ips-check",
            format!("{f} daddr @cluster-ips goto reject-chain"),
        ),
    ];
    for c in cfg.service_cidrs(family) {
        rules.push(("cluster-ips-check", format!("{f} daddr {c} drop")));
    }
    for (chain, rule) in rules {
        s += &format!("add rule {f} {TABLE} {chain} {rule}\n");
    }
    s
}

/// One shard's fixed part: its NAT hooks, the maps from Service addresses and node
/// ports to its Services' chains, and its own `mark-for-masquerade` (a jump cannot
/// leave its table); the base table's postrouting chain masquerades what it marks.
fn shard_table(family: Family, place: Place) -> String {
    let f = family.nft();
    let t = format!("{f} {place}");
    let addr = family.addr_type();
    let lo = family.loopback();
    let mut s = fresh_table(family, place);
    for (name, hook) in [("nat-prerouting", "prerouting"), ("nat-output", "output")] {
        s += &format!(
            "add chain {t} {name} {{ type nat hook {hook} priority -100 ; policy accept ; }}\n"
        );
    }
    s += &format!("add chain {t} services\nadd chain {t} mark-for-masquerade\n");
    s += &format!(
        "add map {t} service-ips {{ type {addr} . inet_proto . inet_service : verdict ; }}\n"
    );
    s += &format!(
        "add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; }}\n"
    );
    for (chain, rule) in [
        ("nat-prerouting", "jump services".to_string()),
        ("nat-output", "jump services".into()),
        (
            "mark-for-masquerade",
            format!("mark set mark or {MASQ_MARK}"),
        ),
        (
            "services",
            format!("{f} daddr . meta l4proto . th dport vmap @service-ips"),
        ),
        (
            "services",
            format!(
                "fib daddr type local {f} daddr != {lo} meta l4proto . th dport vmap @service-nodeports"
            ),
        ),
    ] {
        s += &format!("add rule {t} {chain} {rule}\n");
    }
    s
}

/// What one Service's rules are made of: the Service and its slices, as the catalog
/// had them (its own `Arc`s, so shared with it).
///
/// A table keeps these rather than the rules they render to, and renders again what it
/// needs to compare: at 10,000 Services of a few endpoints the rules as text took
/// ~55 MB, their sources take a few bytes each beyond the catalog.
#[derive(Debug, Clone)]
pub struct Source {
    pub service: Arc<Service>,
    pub slices: Box<[Arc<Slice>]>,
}

impl Source {
    /// `service` with its slices as `catalog` has them now.
    pub fn new(catalog: &Catalog, service: &Arc<Service>) -> Source {
        Source {
            service: service.clone(),
            slices: catalog.slices_of(&service.key).cloned().collect(),
        }
    }

    /// The Service at `key`, if the catalog has it.
    pub fn of(catalog: &Catalog, key: &ServiceKey) -> Option<Source> {
        catalog.service(key).map(|s| Source::new(catalog, s))
    }

    /// What it should have in `family`'s table (see [`desired`]).
    pub fn render(&self, family: Family, cfg: &Config) -> Option<ServiceRules> {
        rules_for(&self.service, self.slices.iter().map(|s| &**s), family, cfg)
    }
}

/// What `svc` should have in `family`'s table; `None` when nothing (headless,
/// ExternalName, or no cluster IP of that family).
pub fn desired(
    catalog: &Catalog,
    svc: &Service,
    family: Family,
    cfg: &Config,
) -> Option<ServiceRules> {
    let slices: Vec<&Slice> = catalog.slices_of(&svc.key).map(|s| &**s).collect();
    rules_for(svc, slices.iter().copied(), family, cfg)
}

/// The rules of `svc` with the endpoints of `slices`.
fn rules_for<'a>(
    svc: &Service,
    slices: impl IntoIterator<Item = &'a Slice> + Clone,
    family: Family,
    cfg: &Config,
) -> Option<ServiceRules> {
    if svc.headless || svc.external_name.is_some() {
        return None;
    }
    let cluster_ip = *svc.cluster_ips.iter().find(|ip| Family::of(ip) == family)?;
    let mut out = ServiceRules::default();
    for port in &svc.ports {
        let eps: Vec<ResolvedEndpoint> = endpoints_of(slices.clone(), port)
            .into_iter()
            .filter(|e| Family::of(&e.ip) == family)
            .collect();
        let view = PortView::new(svc, port, family, cluster_ip, cfg);
        view.write(&eps, &mut out);
    }
    Some(out)
}

/// `healthCheckNodePort` and the number of this node's ready endpoints (over all the
/// Service's ports and families), for an `externalTrafficPolicy: Local` Service.
pub fn health_check(catalog: &Catalog, svc: &Service, node: &str) -> Option<(u16, usize)> {
    let port = svc.health_check_node_port.filter(|_| svc.external_local)?;
    let local: BTreeSet<IpAddr> = svc
        .ports
        .iter()
        .flat_map(|p| catalog.endpoints(&svc.key, p))
        .filter(|e| e.ready && e.node_name.as_deref() == Some(node))
        .map(|e| e.ip)
        .collect();
    Some((port, local.len()))
}

/// Endpoints sorted by the traffic policies, as kube-proxy's `CategorizeEndpoints`.
#[derive(Debug, Default, PartialEq)]
pub struct Categorized<'a> {
    /// For `Cluster` policy: ready ones, or if none, serving-and-terminating ones.
    pub cluster: Vec<&'a ResolvedEndpoint>,
    /// For `Local` policy: this node's, by the same fallback.
    pub local: Vec<&'a ResolvedEndpoint>,
    /// Any usable endpoint anywhere.
    pub any: bool,
}

pub fn categorize<'a>(
    eps: &'a [ResolvedEndpoint],
    uses_cluster: bool,
    uses_local: bool,
    node: &str,
) -> Categorized<'a> {
    let usable = |set: Vec<&'a ResolvedEndpoint>| {
        let ready: Vec<_> = set.iter().copied().filter(|e| e.ready).collect();
        if ready.is_empty() {
            // KEP-1669: with none ready, terminating endpoints still serving take it.
            set.into_iter()
                .filter(|e| e.serving && e.terminating)
                .collect()
        } else {
            ready
        }
    };
    let mut out = Categorized::default();
    if uses_cluster {
        out.cluster = usable(eps.iter().collect());
    }
    if uses_local {
        out.local = usable(
            eps.iter()
                .filter(|e| e.node_name.as_deref() == Some(node))
                .collect(),
        );
    }
    out.any = !out.cluster.is_empty()
        || (uses_local && eps.iter().any(|e| e.ready || (e.serving && e.terminating)));
    out
}

/// One Service port in one family, with the names and facts its rules are made of.
struct PortView<'a> {
    svc: &'a Service,
    port: &'a ServicePort,
    family: Family,
    cluster_ip: IpAddr,
    /// External and load-balancer IPs of this family.
    external_ips: Vec<IpAddr>,
    base: String,
    cfg: &'a Config,
}

/// The verdicts of the filter maps for traffic with nowhere to go.
const REJECT: &str = "goto reject-chain";
const DROP: &str = "drop";

/// Where one port's traffic goes.
struct Routes {
    /// Cluster-IP traffic: a `goto` the policy chain, or the filter verdict.
    internal: Result<String, &'static str>,
    /// External traffic (if any endpoint at all): `goto` the external chain.
    external: Option<String>,
    /// External traffic no chain takes: the filter verdict.
    external_filter: Option<&'static str>,
}

impl<'a> PortView<'a> {
    fn new(
        svc: &'a Service,
        port: &'a ServicePort,
        family: Family,
        cluster_ip: IpAddr,
        cfg: &'a Config,
    ) -> Self {
        let mut external_ips: Vec<IpAddr> = svc
            .external_ips
            .iter()
            .chain(&svc.load_balancer_ips)
            .copied()
            .filter(|ip| Family::of(ip) == family)
            .collect();
        external_ips.dedup();
        PortView {
            svc,
            port,
            family,
            cluster_ip,
            external_ips,
            base: names::port_base(&svc.key, port.protocol, &port.name),
            cfg,
        }
    }

    fn externally_accessible(&self) -> bool {
        self.port.node_port.is_some() || !self.external_ips.is_empty()
    }

    /// kube-proxy's `UsesClusterEndpoints`: even `externalTrafficPolicy: Local` needs
    /// the cluster chain, for the short-circuit of the node's and pods' own traffic.
    fn uses_cluster(&self) -> bool {
        !self.svc.internal_local || self.externally_accessible()
    }

    fn uses_local(&self) -> bool {
        self.svc.internal_local || (self.svc.external_local && self.externally_accessible())
    }

    fn proto(&self) -> &'static str {
        self.port.protocol.lower()
    }

    fn write(&self, eps: &[ResolvedEndpoint], out: &mut ServiceRules) {
        let cat = categorize(
            eps,
            self.uses_cluster(),
            self.uses_local(),
            &self.cfg.node_name,
        );
        let cluster_chain = names::service_chain(&self.base);
        let local_chain = names::local_chain(&self.base);
        let external_chain = names::external_chain(&self.base);
        let uses_cluster_chain = !cat.cluster.is_empty() && self.uses_cluster();
        let uses_local_chain = !cat.local.is_empty() && self.uses_local();
        let (internal_chain, has_internal) = if self.svc.internal_local {
            (&local_chain, cat.any && !cat.local.is_empty())
        } else {
            (&cluster_chain, cat.any)
        };
        let (external_policy, has_external) = if self.svc.external_local {
            (&local_chain, cat.any && !cat.local.is_empty())
        } else {
            (&cluster_chain, cat.any)
        };
        let uses_external_chain = cat.any && self.externally_accessible();
        // No endpoint at all: reject; only none for this policy: drop (kube-proxy's).
        let nowhere = if cat.any { DROP } else { REJECT };
        let routes = Routes {
            internal: if has_internal {
                Ok(format!("goto {internal_chain}"))
            } else {
                Err(nowhere)
            },
            external: cat.any.then(|| format!("goto {external_chain}")),
            external_filter: (!has_external).then_some(nowhere),
        };
        self.frontends(out, &routes);
        if uses_cluster_chain {
            self.policy_chain(out, &cluster_chain, &cat.cluster);
        }
        if uses_local_chain {
            self.policy_chain(out, &local_chain, &cat.local);
        }
        if has_internal {
            self.masquerade_outsiders(out, internal_chain);
        }
        if uses_external_chain {
            let to = has_external.then_some(external_policy.as_str());
            self.external(out, &external_chain, &cluster_chain, to);
        }
        let mut reachable: Vec<&ResolvedEndpoint> = Vec::new();
        if uses_cluster_chain {
            reachable.extend(&cat.cluster);
        }
        if uses_local_chain {
            reachable.extend(&cat.local);
        }
        reachable.sort_by_key(|e| (e.ip, e.port));
        reachable.dedup();
        for e in reachable {
            self.endpoint(out, e);
        }
        self.udp(out, eps);
    }

    /// The map elements: where each address and node port of this port goes.
    fn frontends(&self, out: &mut ServiceRules, routes: &Routes) {
        let proto = self.proto();
        let port = self.port.port;
        let mut claim = |space: Space, key: String, map: Map, value: String| {
            let v = out.frontends.entry(Frontend { space, key }).or_default();
            if !v.iter().any(|(m, _)| *m == map) {
                v.push((map, value));
            }
        };
        claim(
            Space::ClusterIp,
            self.cluster_ip.to_string(),
            Map::ClusterIps,
            String::new(),
        );
        let key = format!("{} . {proto} . {port}", self.cluster_ip);
        match &routes.internal {
            Ok(goto) => claim(Space::Address, key, Map::ServiceIps, goto.clone()),
            Err(v) => claim(Space::Address, key, Map::NoEndpointServices, v.to_string()),
        }
        let mut external = |space: Space, key: String, to: Map, filter: Map| {
            if let Some(goto) = &routes.external {
                claim(space, key.clone(), to, goto.clone());
            }
            if let Some(v) = routes.external_filter {
                claim(space, key, filter, v.to_string());
            }
        };
        for ip in &self.external_ips {
            let key = format!("{ip} . {proto} . {port}");
            external(
                Space::Address,
                key,
                Map::ServiceIps,
                Map::NoEndpointServices,
            );
        }
        if let Some(np) = self.port.node_port {
            let key = format!("{proto} . {np}");
            external(
                Space::NodePort,
                key,
                Map::ServiceNodePorts,
                Map::NoEndpointNodePorts,
            );
        }
    }

    /// A policy chain: sticky clients first, then a random endpoint.
    fn policy_chain(&self, out: &mut ServiceRules, name: &str, eps: &[&ResolvedEndpoint]) {
        let f = self.family.nft();
        let mut chain = Chain::default();
        for e in eps {
            let eb = self.endpoint_base(e);
            if self.svc.affinity_timeout.is_some() {
                chain.rules.push(format!(
                    "{f} saddr @{} goto {}",
                    names::affinity_set(&eb),
                    names::endpoint_chain(&eb)
                ));
            }
            chain.dispatch.push(names::endpoint_chain(&eb));
        }
        out.chains.insert(name.to_string(), chain);
    }

    /// Traffic to the cluster IP from outside the pod network is masqueraded, so that
    /// replies come back through this node (first rule of the internal chain).
    fn masquerade_outsiders(&self, out: &mut ServiceRules, chain: &str) {
        let Some(cidr) = self.cfg.cluster_cidr(self.family) else {
            return;
        };
        let f = self.family.nft();
        let rule = format!(
            "{f} daddr {} {} dport {} {f} saddr != {cidr} jump mark-for-masquerade",
            self.cluster_ip,
            self.proto(),
            self.port.port
        );
        if let Some(c) = out.chains.get_mut(chain) {
            c.rules.insert(0, rule);
        }
    }

    /// The chain NodePort, external and load-balancer traffic goes through.
    fn external(&self, out: &mut ServiceRules, name: &str, cluster: &str, to: Option<&str>) {
        let f = self.family.nft();
        let mut rules = Vec::new();
        if self.svc.external_local {
            // Pods and the node itself reaching an external address are not external
            // clients: they go cluster-wide (as if out to the load balancer and back).
            if let Some(cidr) = self.cfg.cluster_cidr(self.family) {
                rules.push(format!("{f} saddr {cidr} goto {cluster}"));
            }
            // The node's source address would be the external one: masquerade.
            rules.push("fib saddr type local jump mark-for-masquerade".to_string());
            rules.push(format!("fib saddr type local goto {cluster}"));
        } else {
            // Endpoints may be on other nodes: replies must come back through here.
            rules.push("jump mark-for-masquerade".to_string());
        }
        if let Some(policy) = to {
            rules.push(format!("goto {policy}"));
        }
        out.chains.insert(
            name.to_string(),
            Chain {
                rules,
                dispatch: Vec::new(),
            },
        );
    }

    fn endpoint_base(&self, e: &ResolvedEndpoint) -> String {
        names::endpoint_base(
            &self.svc.key,
            self.port.protocol,
            &self.port.name,
            e.ip,
            e.port,
        )
    }

    /// An endpoint's chain: hairpin masquerade, affinity, DNAT.
    fn endpoint(&self, out: &mut ServiceRules, e: &ResolvedEndpoint) {
        let f = self.family.nft();
        let eb = self.endpoint_base(e);
        // A pod reaching itself through the Service: without masquerade its reply
        // would go straight back to itself, un-DNATed.
        let mut rules = vec![format!("{f} saddr {} jump mark-for-masquerade", e.ip)];
        if let Some(timeout) = self.svc.affinity_timeout {
            let set = names::affinity_set(&eb);
            rules.push(format!("update @{set} {{ {f} saddr }}"));
            out.sets.insert(set, timeout);
        }
        let target = match e.ip {
            IpAddr::V4(ip) => format!("{ip}:{}", e.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", e.port),
        };
        rules.push(format!("meta l4proto {} dnat to {target}", self.proto()));
        out.chains.insert(
            names::endpoint_chain(&eb),
            Chain {
                rules,
                dispatch: Vec::new(),
            },
        );
    }

    fn udp(&self, out: &mut ServiceRules, eps: &[ResolvedEndpoint]) {
        if self.port.protocol != Protocol::Udp {
            return;
        }
        let mut ips = vec![self.cluster_ip];
        ips.extend(&self.external_ips);
        out.udp.insert(
            format!("{}/{}", self.port.name, self.port.port),
            UdpPort {
                ips,
                port: self.port.port,
                node_port: self.port.node_port,
                serving: eps.iter().filter(|e| e.serving).map(|e| e.ip).collect(),
            },
        );
    }
}

/// Services that changed and what they are now made of (`None`: gone).
pub type Changes = Vec<(ServiceKey, Option<Source>)>;

#[cfg(test)]
mod tests;
