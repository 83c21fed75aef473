//! The index answers are read from: every Service of the catalog filed under its
//! namespace and name, and every IP a PTR answers for. Pure (no IO, no clock: the SOA
//! serial is handed in).
//!
//! It holds the catalog's own `Arc`s of each Service and its EndpointSlices rather than
//! records built in advance, so 10,000 Services cost little beyond the catalog itself
//! (two small hash entries each); records are made per query, which is cheap. It is kept
//! current per changed Service key ([`Index::apply`]): a change costs the Service's own
//! entries, never a rebuild.

use crate::{Cidr, Config, Error};
use hickory_proto::rr::Name;
use skiff_catalog::{Catalog, Endpoint, Service, ServiceKey, ServiceType, Slice};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The namespace and name of the Service whose cluster IPs answer `ns.dns.<zone>`.
pub const NAMESERVER_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// The cluster's DNS names, as of the last catalog change applied.
#[derive(Debug, Clone)]
pub struct Index {
    zone: Name,
    ns_name: Name,
    hostmaster: Name,
    ttl: u32,
    reverse: Vec<Cidr>,
    namespaces: HashMap<Arc<str>, HashMap<Arc<str>, Entry>>,
    ptr: HashMap<IpAddr, Vec<PtrTarget>>,
    synced: bool,
    serial: u32,
}

/// One Service as DNS reads it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub service: Arc<Service>,
    pub slices: Box<[Arc<Slice>]>,
    /// An ExternalName Service's target, fully qualified; none when it is not a name
    /// (CoreDNS answers nothing for an IP there).
    pub external: Option<Box<Name>>,
}

/// What a PTR for one IP names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrTarget {
    /// A cluster IP: `<svc>.<ns>.svc.<zone>`.
    Service(ServiceKey),
    /// A ready endpoint with a hostname of a headless Service:
    /// `<hostname>.<svc>.<ns>.svc.<zone>`.
    Endpoint(ServiceKey, Box<str>),
}

impl PtrTarget {
    pub fn key(&self) -> &ServiceKey {
        match self {
            PtrTarget::Service(k) | PtrTarget::Endpoint(k, _) => k,
        }
    }
}

impl Entry {
    /// Ready endpoints with their slice and address (the first, as kube-proxy and the
    /// catalog take it), in slice order; not deduplicated across slices.
    pub fn ready(&self) -> impl Iterator<Item = (&Slice, &Endpoint, IpAddr)> {
        self.slices.iter().flat_map(|s| {
            s.endpoints
                .iter()
                .filter(|e| e.ready)
                .filter_map(move |e| Some((&**s, e, e.address?)))
        })
    }

    /// The IPs this entry puts in the PTR map, and what for.
    fn ptrs(&self) -> impl Iterator<Item = (IpAddr, PtrTarget)> {
        let key = &self.service.key;
        let cluster = self
            .service
            .cluster_ips
            .iter()
            .map(|ip| (*ip, PtrTarget::Service(key.clone())));
        let headless = self
            .ready()
            .filter(|_| self.service.headless)
            .filter_map(|(_, e, ip)| {
                let host = e.hostname.as_deref().filter(|h| !h.is_empty())?;
                Some((ip, PtrTarget::Endpoint(key.clone(), host.into())))
            });
        cluster.chain(headless)
    }
}

impl Index {
    /// An empty, unsynced index for `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str, ttl: u32, reverse: Vec<Cidr>) -> Result<Index, Error> {
        let bad = || Error::Domain(domain.to_string());
        let mut zone = Name::from_ascii(domain.trim_end_matches('.')).map_err(|_| bad())?;
        zone.set_fqdn(true);
        if zone.is_root() || zone.num_labels() == 0 {
            return Err(bad());
        }
        let zone = zone.to_lowercase();
        let ns_name = prepend(&zone, &[b"ns", b"dns"]).ok_or_else(bad)?;
        let hostmaster = prepend(&zone, &[b"hostmaster"]).ok_or_else(bad)?;
        Ok(Index {
            zone,
            ns_name,
            hostmaster,
            ttl,
            reverse,
            namespaces: HashMap::new(),
            ptr: HashMap::new(),
            synced: false,
            serial: 0,
        })
    }

    pub fn from_config(config: &Config) -> Result<Index, Error> {
        Index::new(&config.domain, config.ttl, config.reverse_cidrs.clone())
    }

    /// The same settings, no Services: what a rebuild starts from.
    pub fn empty_like(&self) -> Index {
        Index {
            zone: self.zone.clone(),
            ns_name: self.ns_name.clone(),
            hostmaster: self.hostmaster.clone(),
            ttl: self.ttl,
            reverse: self.reverse.clone(),
            namespaces: HashMap::new(),
            ptr: HashMap::new(),
            synced: false,
            serial: 0,
        }
    }

    /// Everything again from the catalog (a first list or a relist).
    pub fn rebuild(&mut self, catalog: &Catalog, serial: u32) {
        self.namespaces.clear();
        self.ptr.clear();
        for s in catalog.services() {
            self.insert(s, catalog.slices_of(&s.key).cloned().collect());
        }
        self.synced = catalog.synced();
        self.serial = serial;
    }

    /// These Services (or their slices) changed: only their entries are redone.
    pub fn apply(&mut self, catalog: &Catalog, keys: &[ServiceKey], serial: u32) {
        for key in keys {
            self.remove(key);
            if let Some(s) = catalog.service(key) {
                self.insert(s, catalog.slices_of(key).cloned().collect());
            }
        }
        self.synced = catalog.synced();
        self.serial = serial;
    }

    fn insert(&mut self, service: &Arc<Service>, slices: Box<[Arc<Slice>]>) {
        let external = match (&service.type_, &service.external_name) {
            (ServiceType::ExternalName, Some(target)) => external_target(target),
            _ => None,
        };
        let entry = Entry {
            service: service.clone(),
            slices,
            external,
        };
        for (ip, target) in entry.ptrs() {
            // Nearly every IP names one thing: no room kept for more.
            let targets = self.ptr.entry(ip).or_default();
            targets.reserve_exact(1);
            targets.push(target);
        }
        let key = &service.key;
        self.namespaces
            .entry(key.namespace.clone())
            .or_default()
            .insert(key.name.clone(), entry);
    }

    fn remove(&mut self, key: &ServiceKey) {
        let Some(names) = self.namespaces.get_mut(&*key.namespace) else {
            return;
        };
        let Some(old) = names.remove(&*key.name) else {
            return;
        };
        if names.is_empty() {
            self.namespaces.remove(&*key.namespace);
        }
        for (ip, _) in old.ptrs() {
            if let Some(targets) = self.ptr.get_mut(&ip) {
                targets.retain(|t| t.key() != key);
                if targets.is_empty() {
                    self.ptr.remove(&ip);
                }
            }
        }
    }

    /// The cluster domain, lower case and fully qualified.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// `ns.dns.<zone>.`: the SOA's primary and the zone's NS.
    pub fn ns_name(&self) -> &Name {
        &self.ns_name
    }

    /// `hostmaster.<zone>.`: the SOA's mailbox.
    pub fn hostmaster(&self) -> &Name {
        &self.hostmaster
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether the catalog had listed everything: before, a missing name may only be
    /// missing from this node's view, and is answered SERVFAIL, not NXDOMAIN.
    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn reverse_cidrs(&self) -> &[Cidr] {
        &self.reverse
    }

    /// `name` and `namespace` as Kubernetes spells them (lower case).
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Entry> {
        self.namespaces.get(namespace)?.get(name)
    }

    /// Whether any Service lives in `namespace`.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// What a PTR for `ip` names, in the order added.
    pub fn ptr(&self, ip: IpAddr) -> &[PtrTarget] {
        self.ptr.get(&ip).map_or(&[], |v| v.as_slice())
    }

    /// How many Services are indexed.
    pub fn len(&self) -> usize {
        self.namespaces.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// `labels` then `zone`, fully qualified; none if too long.
pub(crate) fn prepend(zone: &Name, labels: &[&[u8]]) -> Option<Name> {
    let mut name = Name::root();
    for l in labels.iter().copied().chain(zone.iter()) {
        name = name.append_label(l).ok()?;
    }
    Some(name)
}

fn external_target(target: &str) -> Option<Box<Name>> {
    let t = target.trim_end_matches('.');
    if t.is_empty() || t.parse::<IpAddr>().is_ok() {
        return None;
    }
    let mut name = Name::from_ascii(t).ok()?;
    name.set_fqdn(true);
    Some(Box::new(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_catalog::Shared;
    use skiff_kube::reflect::Change;

    fn svc(ns: &str, name: &str, ip: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "namespace": ns},
               "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}})
    }

    fn headless_slice(
        ns: &str,
        svc: &str,
        eps: &[(&str, Option<&str>, bool)],
    ) -> serde_json::Value {
        let endpoints: Vec<_> = eps
            .iter()
            .map(|(ip, host, ready)| {
                let mut e = json!({"addresses": [ip], "conditions": {"ready": ready}});
                if let Some(h) = host {
                    e["hostname"] = json!(h);
                }
                e
            })
            .collect();
        json!({"metadata": {"name": format!("{svc}-x"), "namespace": ns,
                            "labels": {"kubernetes.io/service-name": svc}},
               "addressType": "IPv4", "endpoints": endpoints,
               "ports": [{"name": "peer", "port": 2380}]})
    }

    #[test]
    fn changes_touch_only_their_service_and_keep_ptrs_exact() {
        let shared = Shared::default();
        let mut rx = shared.subscribe();
        shared.apply_services(Change::reset(vec![
            svc("a", "web", "10.43.0.10"),
            svc("b", "db", "None"),
        ]));
        shared.apply_slices(Change::reset(vec![headless_slice(
            "b",
            "db",
            &[
                ("10.42.0.5", Some("db-0"), true),
                ("10.42.0.6", Some("db-1"), false),
            ],
        )]));
        assert_eq!(rx.try_recv().unwrap(), skiff_catalog::Update::Reset);
        let mut index = Index::from_config(&Config::default()).unwrap();
        assert!(!index.synced());
        index.rebuild(&shared.read(), 7);
        assert!(index.synced() && index.len() == 2 && index.serial() == 7);
        let web = ServiceKey::new("a", "web");
        let db = ServiceKey::new("b", "db");
        assert_eq!(
            index.ptr("10.43.0.10".parse().unwrap()),
            [PtrTarget::Service(web.clone())]
        );
        assert_eq!(
            index.ptr("10.42.0.5".parse().unwrap()),
            [PtrTarget::Endpoint(db.clone(), "db-0".into())]
        );
        assert!(
            index.ptr("10.42.0.6".parse().unwrap()).is_empty(),
            "not ready"
        );

        // The cluster IP moves and the namespace empties: old PTRs go, the new one comes.
        shared.apply_services(Change::delete(svc("a", "web", "10.43.0.10")));
        shared.apply_services(Change::apply(svc("c", "web", "10.43.0.11")));
        let mut keys = Vec::new();
        while let Ok(skiff_catalog::Update::Changed(k)) = rx.try_recv() {
            keys.extend(k);
        }
        index.apply(&shared.read(), &keys, 8);
        assert!(index.ptr("10.43.0.10".parse().unwrap()).is_empty());
        assert!(!index.has_namespace("a") && index.has_namespace("c"));
        assert_eq!(
            index.service("c", "web").unwrap().service.cluster_ips.len(),
            1
        );

        // The endpoint turns ready: its PTR appears; the slice goes: both go.
        shared.apply_slices(Change::apply(headless_slice(
            "b",
            "db",
            &[
                ("10.42.0.5", Some("db-0"), true),
                ("10.42.0.6", Some("db-1"), true),
            ],
        )));
        index.apply(&shared.read(), std::slice::from_ref(&db), 9);
        assert_eq!(index.ptr("10.42.0.6".parse().unwrap()).len(), 1);
        assert_eq!(index.service("b", "db").unwrap().ready().count(), 2);
        shared.apply_slices(Change::delete(headless_slice("b", "db", &[])));
        index.apply(&shared.read(), std::slice::from_ref(&db), 10);
        assert!(index.ptr("10.42.0.5".parse().unwrap()).is_empty());
        assert_eq!(index.ptr.len(), 1, "only the cluster IP is left");
    }

    #[test]
    fn domains_are_checked_and_lower_cased() {
        let i = Index::new("Cluster.Local.", 5, vec![]).unwrap();
        assert_eq!(i.zone().to_string(), "cluster.local.");
        assert_eq!(i.ns_name().to_string(), "ns.dns.cluster.local.");
        assert!(Index::new("", 5, vec![]).is_err());
        assert!(Index::new(".", 5, vec![]).is_err());
        assert_eq!(
            external_target("db.example.org").unwrap().to_string(),
            "db.example.org."
        );
        assert!(external_target("192.0.2.1").is_none());
    }
}
