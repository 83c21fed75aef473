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

use std::collections::{BTreeMap, HashMap};
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
    pub node_name: Option<String>,
    pub hostname: Option<String>,
}

/// Services and their slices; pure (no IO), fed by [`feed`].
#[derive(Debug, Default)]
pub struct Catalog {
    services: HashMap<ServiceKey, Arc<Service>>,
    slices: HashMap<ServiceKey, BTreeMap<Arc<str>, Arc<Slice>>>,
    /// `(namespace, slice name)` → the Service it was filed under.
    slice_owner: HashMap<(Arc<str>, Arc<str>), ServiceKey>,
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

    pub fn slices_of(&self, key: &ServiceKey) -> impl Iterator<Item = &Arc<Slice>> {
        self.slices.get(key).into_iter().flat_map(|m| m.values())
    }

    pub fn reset_services(&mut self, items: Vec<Service>) -> Update {
        self.services = items
            .into_iter()
            .map(|s| (s.key.clone(), Arc::new(s)))
            .collect();
        self.services_listed = true;
        Update::Reset
    }

    /// The Service's key if this changed anything.
    pub fn apply_service(&mut self, s: Service) -> Option<ServiceKey> {
        if self.services.get(&s.key).is_some_and(|old| **old == s) {
            return None;
        }
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
        self.slices_listed = true;
        Update::Reset
    }

    /// The Services this touched: the slice's, and the one it was filed under before if
    /// its label moved it.
    pub fn apply_slice(&mut self, s: Slice) -> Vec<ServiceKey> {
        let id = (
            s.service.namespace.clone(),
            Arc::<str>::from(s.name.as_str()),
        );
        if let Some(old) = self.slice_owner.get(&id)
            && old == &s.service
            && self.slices[old].get(&id.1).is_some_and(|o| **o == s)
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

    fn insert_slice(&mut self, s: Slice) {
        let name: Arc<str> = s.name.as_str().into();
        self.slice_owner.insert(
            (s.service.namespace.clone(), name.clone()),
            s.service.clone(),
        );
        self.slices
            .entry(s.service.clone())
            .or_default()
            .insert(name, Arc::new(s));
    }

    fn remove_slice(&mut self, namespace: &str, name: &str) -> Option<ServiceKey> {
        let owner = self
            .slice_owner
            .remove(&(Arc::from(namespace), Arc::from(name)))?;
        if let Some(m) = self.slices.get_mut(&owner) {
            m.remove(name);
            if m.is_empty() {
                self.slices.remove(&owner);
            }
        }
        Some(owner)
    }

    /// The endpoints of one Service port (slice ports matched by name and protocol),
    /// deduplicated by IP across slices (a ready copy wins, as kube-proxy's slice cache
    /// prefers), sorted by IP then port.
    pub fn endpoints(&self, key: &ServiceKey, port: &ServicePort) -> Vec<ResolvedEndpoint> {
        let mut by_ip: BTreeMap<(IpAddr, u16), ResolvedEndpoint> = BTreeMap::new();
        for slice in self.slices_of(key) {
            let Some(p) = slice
                .ports
                .iter()
                .find(|p| p.name == port.name && p.protocol == port.protocol)
            else {
                continue;
            };
            for e in &slice.endpoints {
                let Some(ip) = e.addresses.first() else {
                    continue;
                };
                let r = ResolvedEndpoint {
                    ip: *ip,
                    port: p.port,
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                    node_name: e.node_name.clone(),
                    hostname: e.hostname.clone(),
                };
                by_ip
                    .entry((*ip, p.port))
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
                    addresses: vec![ip.parse().unwrap()],
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
