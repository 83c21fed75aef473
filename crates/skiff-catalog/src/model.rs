//! Small typed views of a Service and an EndpointSlice: only what the service proxy and
//! the cluster DNS read, parsed once from the API's objects (thousands are held).
//!
//! Built from the decoded objects by reference, never by collecting their `Vec`s in
//! place: an in-place `collect` keeps the source's allocation, sized for k8s-openapi's
//! much larger structs (an `Endpoint` kept that way took ~400 bytes instead of ~56).

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use std::net::IpAddr;
use std::sync::Arc;

/// `namespace/name` of a Service (an EndpointSlice is filed under its Service's key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's spelling; absent means TCP.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower case, as nftables and DNS SRV names (`_tcp`) spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Empty for a Service's single unnamed port.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub type_: ServiceType,
    /// `spec.clusterIPs`; empty for headless (`None`) and ExternalName Services.
    pub cluster_ips: Vec<IpAddr>,
    pub headless: bool,
    /// `spec.externalName` of an ExternalName Service.
    pub external_name: Option<String>,
    pub ports: Vec<ServicePort>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (ipMode VIP or unset).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `sessionAffinity: ClientIP`: its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local` (NodePort and LoadBalancer only).
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    pub health_check_node_port: Option<u16>,
    pub publish_not_ready: bool,
}

/// kube-apiserver's default ClientIP affinity timeout (three hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// The addresses that parse, in an allocation of their exact size.
fn ips<'a>(v: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = v.into_iter().filter_map(|s| s.parse().ok()).collect();
    out.shrink_to_fit();
    out
}

fn port16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p > 0)
}

impl Service {
    /// None for an object without a namespace or name (never from a real API).
    pub fn from_api(s: core::Service) -> Option<Service> {
        let key = ServiceKey::new(
            s.metadata.namespace.as_deref()?,
            s.metadata.name.as_deref()?,
        );
        let spec = s.spec.unwrap_or_default();
        let type_ = match spec.type_.as_deref() {
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            _ => ServiceType::ClusterIP,
        };
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let cluster_ips = match (type_, headless) {
            (ServiceType::ExternalName, _) | (_, true) => Vec::new(),
            _ => match spec.cluster_ips {
                Some(v) if !v.is_empty() => ips(&v),
                _ => ips(&spec.cluster_ip),
            },
        };
        let mut ports: Vec<ServicePort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(ServicePort {
                    name: p.name.as_deref().unwrap_or_default().to_string(),
                    protocol: Protocol::parse(p.protocol.as_deref())?,
                    port: port16(p.port)?,
                    node_port: p.node_port.and_then(port16),
                })
            })
            .collect();
        ports.shrink_to_fit();
        let external = matches!(type_, ServiceType::NodePort | ServiceType::LoadBalancer);
        let load_balancer_ips = ips(s
            .status
            .iter()
            .filter_map(|st| st.load_balancer.as_ref()?.ingress.as_ref())
            .flatten()
            .filter(|i| i.ip_mode.as_deref().is_none_or(|m| m == "VIP"))
            .filter_map(|i| i.ip.as_ref()));
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        Some(Service {
            key,
            type_,
            cluster_ips,
            headless,
            external_name: spec
                .external_name
                .filter(|_| type_ == ServiceType::ExternalName),
            ports,
            external_ips: ips(spec.external_ips.iter().flatten()),
            load_balancer_ips: if type_ == ServiceType::LoadBalancer {
                load_balancer_ips
            } else {
                Vec::new()
            },
            affinity_timeout,
            external_local: external && spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            health_check_node_port: spec.health_check_node_port.and_then(port16),
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    IPv4,
    IPv6,
    Fqdn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint of a slice: tens of thousands are held, so it keeps one address and
/// shares its node's name (see [`crate::Catalog`]'s interning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The first address that parses: the API calls an endpoint's addresses fungible
    /// and consumers (kube-proxy too) take the first. None in an FQDN slice.
    pub address: Option<IpAddr>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub hostname: Option<Box<str>>,
    pub node_name: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub name: Arc<str>,
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: ServiceKey,
    pub address_type: AddressType,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// The label that files a slice under its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl Slice {
    /// None for a slice of no Service (no `kubernetes.io/service-name` label).
    pub fn from_api(s: discovery::EndpointSlice) -> Option<Slice> {
        let namespace = s.metadata.namespace.as_deref()?;
        let service = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        let address_type = match s.address_type.as_str() {
            "IPv4" => AddressType::IPv4,
            "IPv6" => AddressType::IPv6,
            _ => AddressType::Fqdn,
        };
        let mut ports: Vec<EndpointPort> = s
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(EndpointPort {
                    name: p.name.as_deref().unwrap_or_default().to_string(),
                    protocol: Protocol::parse(p.protocol.as_deref())?,
                    port: port16(p.port?)?,
                })
            })
            .collect();
        ports.shrink_to_fit();
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                // Unset `ready` means unknown, which consumers take as ready; unset
                // `serving` follows `ready`.
                let ready = c.ready.unwrap_or(true);
                Endpoint {
                    address: if address_type == AddressType::Fqdn {
                        None
                    } else {
                        e.addresses.iter().find_map(|a| a.parse().ok())
                    },
                    ready,
                    serving: c.serving.unwrap_or(ready),
                    terminating: c.terminating.unwrap_or(false),
                    hostname: e.hostname.as_deref().map(Box::from),
                    node_name: e.node_name.as_deref().map(Arc::from),
                }
            })
            .collect();
        Some(Slice {
            name: s.metadata.name.as_deref()?.into(),
            service: ServiceKey::new(namespace, service),
            address_type,
            ports,
            endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        Service::from_api(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn services_parse_as_the_api_means_them() {
        let s = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
                     "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local",
                     "healthCheckNodePort": 31000},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"},
                                                     {"ip": "192.0.2.2", "ipMode": "Proxy"},
                                                     {"hostname": "lb.example"}]}}
        }));
        assert_eq!(s.key.to_string(), "default/web");
        assert_eq!(s.type_, ServiceType::LoadBalancer);
        assert_eq!(s.cluster_ips, ["10.43.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.ports[1].protocol, Protocol::Udp);
        assert_eq!(s.ports[0].node_port, Some(30080));
        assert_eq!(s.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert!(s.external_local && !s.internal_local);
        assert_eq!(
            s.load_balancer_ips,
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(s.health_check_node_port, Some(31000));

        let h = service(json!({"metadata": {"name": "db", "namespace": "x"},
                               "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}],
                                        "externalTrafficPolicy": "Local"}}));
        assert!(h.headless && h.cluster_ips.is_empty() && !h.external_local);
        let e = service(json!({"metadata": {"name": "ext", "namespace": "x"},
                               "spec": {"type": "ExternalName", "externalName": "db.example.org"}}));
        assert_eq!(e.external_name.as_deref(), Some("db.example.org"));
    }

    #[test]
    fn slices_parse_with_unset_conditions_as_ready() {
        let s = Slice::from_api(
            serde_json::from_value(json!({
                "metadata": {"name": "web-abc", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.42.0.5"], "nodeName": "a"},
                    {"addresses": ["10.42.1.5"], "conditions": {"ready": false, "serving": true, "terminating": true}, "hostname": "web-1"}
                ]
            }))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(s.service, ServiceKey::new("default", "web"));
        assert!(s.endpoints[0].ready && s.endpoints[0].serving && !s.endpoints[0].terminating);
        assert!(!s.endpoints[1].ready && s.endpoints[1].serving && s.endpoints[1].terminating);
        assert_eq!(s.endpoints[1].hostname.as_deref(), Some("web-1"));
        assert_eq!(s.ports[0].port, 8080);
        let orphan = serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "d"},
                                                    "addressType": "IPv4", "endpoints": []}))
        .unwrap();
        assert!(Slice::from_api(orphan).is_none());
    }
}
