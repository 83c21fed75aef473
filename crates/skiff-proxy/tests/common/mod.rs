//! Services, slices and a synced catalog for the integration tests.
#![allow(dead_code)]

use skiff_catalog::{
    AddressType, Endpoint, EndpointPort, Protocol, Service, ServiceKey, ServicePort, ServiceType,
    Shared, Slice, Update,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn service(name: &str, cluster_ip: &str, port: u16, protocol: Protocol) -> Service {
    Service {
        key: ServiceKey::new("default", name),
        type_: ServiceType::ClusterIP,
        cluster_ips: vec![cluster_ip.parse().unwrap()],
        headless: false,
        external_name: None,
        ports: vec![ServicePort {
            name: "p".into(),
            protocol,
            port,
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

/// A slice of ready endpoints `(ip, node)` serving `target` for `svc`'s first port.
pub fn slice(svc: &Service, target: u16, eps: &[(&str, &str)]) -> Slice {
    Slice {
        name: format!("{}-x", svc.key.name).into(),
        service: svc.key.clone(),
        address_type: AddressType::IPv4,
        ports: vec![EndpointPort {
            name: svc.ports[0].name.clone(),
            protocol: svc.ports[0].protocol,
            port: target,
        }],
        endpoints: eps
            .iter()
            .map(|(ip, node)| Endpoint {
                address: Some(ip.parse().unwrap()),
                ready: true,
                serving: true,
                terminating: false,
                hostname: None,
                node_name: Some((*node).into()),
            })
            .collect(),
    }
}

pub fn synced(services: Vec<Service>, slices: Vec<Slice>) -> Arc<Shared> {
    let shared = Arc::new(Shared::default());
    shared.update(|c| {
        c.reset_services(services);
        Some(c.reset_slices(slices))
    });
    shared
}

pub fn put_service(shared: &Shared, s: Service) {
    shared.update(|c| c.apply_service(s).map(|k| Update::Changed(vec![k])));
}

pub fn put_slice(shared: &Shared, s: Slice) {
    shared.update(|c| {
        let touched = c.apply_slice(s);
        (!touched.is_empty()).then_some(Update::Changed(touched))
    });
}

pub fn delete_service(shared: &Shared, key: &ServiceKey) {
    shared.update(|c| c.delete_service(key).map(|k| Update::Changed(vec![k])));
}

pub fn delete_slice(shared: &Shared, svc: &Service) {
    let name = format!("{}-x", svc.key.name);
    shared.update(|c| {
        c.delete_slice(&svc.key.namespace, &name)
            .map(|k| Update::Changed(vec![k]))
    });
}

/// Polls `cond` until true, failing after `secs`.
pub async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
