//! What a node knows of the cluster's Services: every Service and EndpointSlice as small
//! typed views (`model`), kept by one list-watch of each (`feed`), read by the service
//! proxy and the cluster DNS, which are told which Services changed.

pub mod feed;
pub mod model;

pub use feed::{Shared, spawn};
pub use model::{
    AddressType, Endpoint, EndpointPort, Protocol, Service, ServiceKey, ServicePort, ServiceType,
    Slice,
};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// What changed in the catalog, as subscribers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Everything may have changed (a first list or a relist): rebuild.
    Reset,
    /// These Services, or their slices, changed (or went).
    Changed(Vec<ServiceKey>),
}

/// One endpoint of one Service port, merged across the Service's slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<Arc<str>>,
    pub hostname: Option<Box<str>>,
}

/// Services and their slices; pure (no IO), fed by [`feed`].
///
/// Tens of thousands of these are held on every node, so each is kept once: a Service's
/// slices are a `Vec` sorted by name (one, usually), and the namespaces and node names
/// that thousands of keys and endpoints repeat are shared ([`Interner`]).
#[derive(Debug, Default)]
pub struct Catalog {
    services: HashMap<ServiceKey, Arc<Service>>,
    /// By the Service they are filed under, sorted by slice name.
    slices: HashMap<ServiceKey, Vec<Arc<Slice>>>,
    /// `(namespace, slice name)` → the Service it was filed under.
    slice_owner: HashMap<(Arc<str>, Arc<str>), ServiceKey>,
    names: Interner,
    services_listed: bool,
    slices_listed: bool,
}

impl Catalog {
    /// Both collections have been listed once: the catalog is the cluster's, not a part.
    pub fn synced(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The slices filed under `key`, by name.
    pub fn slices_of(&self, key: &ServiceKey) -> impl Iterator<Item = &Arc<Slice>> {
        self.slices.get(key).into_iter().flatten()
    }

    pub fn reset_services(&mut self, items: Vec<Service>) -> Update {
        self.services.clear();
        for s in items {
            let s = self.shared_names(s);
            self.services.insert(s.key.clone(), Arc::new(s));
        }
        self.services.shrink_to_fit();
        self.names.sweep();
        self.services_listed = true;
        Update::Reset
    }

    /// The Service's key if this changed anything.
    pub fn apply_service(&mut self, s: Service) -> Option<ServiceKey> {
        if self.services.get(&s.key).is_some_and(|old| **old == s) {
            return None;
        }
        let s = self.shared_names(s);
        let key = s.key.clone();
        self.services.insert(key.clone(), Arc::new(s));
        Some(key)
    }

    pub fn delete_service(&mut self, key: &ServiceKey) -> Option<ServiceKey> {
        self.services.remove(key).map(|_| key.clone())
    }

    pub fn reset_slices(&mut self, items: Vec<Slice>) -> Update {
        self.slices.clear();
        self.slice_owner.clear();
        for s in items {
            self.insert_slice(s);
        }
        self.slices.shrink_to_fit();
        self.slice_owner.shrink_to_fit();
        self.names.sweep();
        self.slices_listed = true;
        Update::Reset
    }

    /// The Services this touched: the slice's, and the one it was filed under before if
    /// its label moved it.
    pub fn apply_slice(&mut self, s: Slice) -> Vec<ServiceKey> {
        let id = (s.service.namespace.clone(), s.name.clone());
        if let Some(old) = self.slice_owner.get(&id)
            && old == &s.service
            && self.find_slice(old, &id.1).is_some_and(|o| **o == s)
        {
            return Vec::new();
        }
        let mut touched = self
            .remove_slice(&id.0, &id.1)
            .into_iter()
            .collect::<Vec<_>>();
        if !touched.contains(&s.service) {
            touched.push(s.service.clone());
        }
        self.insert_slice(s);
        touched
    }

    /// A slice deleted, or no longer filed under any Service.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) -> Option<ServiceKey> {
        self.remove_slice(namespace, name)
    }

    fn find_slice(&self, key: &ServiceKey, name: &str) -> Option<&Arc<Slice>> {
        let v = self.slices.get(key)?;
        v.binary_search_by(|s| (*s.name).cmp(name))
            .ok()
            .map(|i| &v[i])
    }

    /// `s` with the namespace (and node names) shared with the rest of the catalog.
    fn shared_names(&mut self, mut s: Service) -> Service {
        s.key.namespace = self.names.get(&s.key.namespace);
        s
    }

    fn insert_slice(&mut self, mut s: Slice) {
        // Filed under a Service already known: its key's names are the ones kept.
        s.service = match self.services.get_key_value(&s.service) {
            Some((k, _)) => k.clone(),
            None => ServiceKey {
                namespace: self.names.get(&s.service.namespace),
                name: s.service.name,
            },
        };
        for e in &mut s.endpoints {
            if let Some(n) = &e.node_name {
                e.node_name = Some(self.names.get(n));
            }
        }
        self.slice_owner.insert(
            (s.service.namespace.clone(), s.name.clone()),
            s.service.clone(),
        );
        let v = self.slices.entry(s.service.clone()).or_default();
        match v.binary_search_by(|o| o.name.cmp(&s.name)) {
            Ok(i) => v[i] = Arc::new(s),
            Err(i) => {
                // Most Services have one slice: no room kept for more.
                v.reserve_exact(1);
                v.insert(i, Arc::new(s));
            }
        }
    }

    fn remove_slice(&mut self, namespace: &str, name: &str) -> Option<ServiceKey> {
        let owner = self
            .slice_owner
            .remove(&(Arc::from(namespace), Arc::from(name)))?;
        if let Some(v) = self.slices.get_mut(&owner) {
            v.retain(|s| &*s.name != name);
            if v.is_empty() {
                self.slices.remove(&owner);
            }
        }
        Some(owner)
    }

    /// The endpoints of one Service port (see [`endpoints_of`]).
    pub fn endpoints(&self, key: &ServiceKey, port: &ServicePort) -> Vec<ResolvedEndpoint> {
        endpoints_of(self.slices_of(key).map(|s| &**s), port)
    }
}

/// The endpoints of one Service port in `slices` (slice ports matched by name and
/// protocol), deduplicated by IP across slices (a ready copy wins, as kube-proxy's slice
/// cache prefers), sorted by IP then port.
pub fn endpoints_of<'a>(
    slices: impl IntoIterator<Item = &'a Slice>,
    port: &ServicePort,
) -> Vec<ResolvedEndpoint> {
    let mut by_ip: BTreeMap<(IpAddr, u16), ResolvedEndpoint> = BTreeMap::new();
    for slice in slices {
        let Some(p) = slice
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
        else {
            continue;
        };
        for e in &slice.endpoints {
            let Some(ip) = e.address else {
                continue;
            };
            let r = ResolvedEndpoint {
                ip,
                port: p.port,
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                node_name: e.node_name.clone(),
                hostname: e.hostname.clone(),
            };
            by_ip
                .entry((ip, p.port))
                .and_modify(|old| {
                    if !old.ready && r.ready {
                        *old = r.clone();
                    }
                })
                .or_insert(r);
        }
    }
    by_ip.into_values().collect()
}

/// One shared copy of each of the short strings thousands of objects repeat
/// (namespaces, node names). Copies no longer used elsewhere are let go at each relist
/// and whenever the set has doubled since the last sweep.
#[derive(Debug, Default)]
struct Interner {
    set: HashSet<Arc<str>>,
    /// Entries after the last sweep.
    swept: usize,
}

impl Interner {
    fn get(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        self.set.insert(s.clone());
        if self.set.len() > 2 * self.swept + 64 {
            self.sweep();
        }
        s.clone()
    }

    fn sweep(&mut self) {
        self.set.retain(|s| Arc::strong_count(s) > 1);
        self.swept = self.set.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> Service {
        Service {
            key: ServiceKey::new(ns, name),
            type_: ServiceType::ClusterIP,
            cluster_ips: vec!["10.43.0.9".parse().unwrap()],
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

    fn slice(name: &str, service: &str, ips: &[(&str, bool)]) -> Slice {
        Slice {
            name: name.into(),
            service: ServiceKey::new("d", service),
            address_type: AddressType::IPv4,
            ports: vec![EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
            endpoints: ips
                .iter()
                .map(|(ip, ready)| Endpoint {
                    address: Some(ip.parse().unwrap()),
                    ready: *ready,
                    serving: *ready,
                    terminating: false,
                    hostname: None,
                    node_name: Some("n".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn endpoints_merge_across_slices_and_follow_moves() {
        let mut c = Catalog::default();
        assert!(!c.synced());
        c.reset_services(vec![svc("d", "web")]);
        c.reset_slices(vec![slice("web-a", "web", &[("10.42.0.2", false)])]);
        assert!(c.synced());
        let key = ServiceKey::new("d", "web");
        let port = c.service(&key).unwrap().ports[0].clone();
        assert_eq!(
            c.apply_slice(slice(
                "web-b",
                "web",
                &[("10.42.0.2", true), ("10.42.0.1", true)]
            )),
            std::slice::from_ref(&key)
        );
        let eps = c.endpoints(&key, &port);
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].ip.to_string(), "10.42.0.1");
        assert!(eps[1].ready, "the ready copy wins");
        // The same slice again changes nothing; relabelled, it touches both Services.
        assert!(
            c.apply_slice(slice(
                "web-b",
                "web",
                &[("10.42.0.2", true), ("10.42.0.1", true)]
            ))
            .is_empty()
        );
        let other = ServiceKey::new("d", "api");
        assert_eq!(
            c.apply_slice(slice("web-b", "api", &[("10.42.0.3", true)])),
            [key.clone(), other.clone()]
        );
        assert_eq!(c.endpoints(&key, &port).len(), 1);
        assert_eq!(c.delete_slice("d", "web-b"), Some(other.clone()));
        assert_eq!(c.slices_of(&other).count(), 0);
        assert_eq!(c.apply_service(svc("d", "web")), None);
        assert_eq!(c.delete_service(&key), Some(key.clone()));
    }
}
