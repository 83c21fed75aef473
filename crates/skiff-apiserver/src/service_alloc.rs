//! Services' cluster IPs and node ports: the shared ranges, what each stored Service
//! holds of them, and picking free ones (random, as Kubernetes' allocators).

use crate::cache::WatchCache;
use rand::Rng;
use serde_json::{Value, json};
use skiff_types::{ApiError, FieldError, meta};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// What Services hold, and the lock that makes check-then-write allocations atomic.
#[derive(Default)]
pub struct ServiceAllocator {
    lock: tokio::sync::Mutex<()>,
    held: parking_lot::Mutex<HeldByKey>,
}

pub const SERVICE_CIDR_BASE: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 0);

pub const SERVICE_CIDR_PREFIX: u32 = 16;

pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 1);

/// The cluster DNS Service's address (kubelet's `--cluster-dns`).
pub const KUBE_DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

fn ip_in_cidr(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SERVICE_CIDR_PREFIX);
    (u32::from(ip) & mask) == u32::from(SERVICE_CIDR_BASE)
}

/// What a stored Service holds of the shared ranges, read once per stored version:
/// allocating walks every Service, and parsing each whole object on every create cost
/// tens of milliseconds at 10,000 Services.
#[derive(Debug, Clone, Default)]
struct Held {
    ip: Option<Ipv4Addr>,
    ports: Vec<u16>,
}

#[derive(serde::Deserialize, Default)]
struct HeldSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default)]
    ports: Vec<HeldPort>,
    #[serde(rename = "healthCheckNodePort")]
    health_check_node_port: Option<u16>,
}

#[derive(serde::Deserialize)]
struct HeldPort {
    #[serde(rename = "nodePort")]
    node_port: Option<u16>,
}

#[derive(serde::Deserialize)]
struct HeldService {
    #[serde(default)]
    spec: HeldSpec,
}

impl Held {
    fn of(value: &[u8]) -> Held {
        let spec = serde_json::from_slice::<HeldService>(value)
            .map(|s| s.spec)
            .unwrap_or_default();
        Held {
            ip: spec.cluster_ip.and_then(|s| s.parse().ok()),
            ports: spec
                .ports
                .iter()
                .filter_map(|p| p.node_port)
                .chain(spec.health_check_node_port)
                .collect(),
        }
    }
}

/// `Held` per Service key, with the revision it was read at.
type HeldByKey = std::collections::HashMap<String, (skiff_store::Revision, Held)>;

impl ServiceAllocator {
    /// Serialises allocations (held across the check and the store write).
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Allocates `spec.clusterIP(s)` and node ports of a new service, or checks the ones the
    /// user asked for. The caller holds [`ServiceAllocator::lock`] with `cache` caught up
    /// with storage.
    pub fn allocate(&self, cache: &WatchCache, svc: &mut Value) -> Result<(), ApiError> {
        let name = meta::name(svc).unwrap_or("").to_string();
        let svc_type = svc["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        // The object itself is excluded: if it exists, storage answers AlreadyExists.
        let self_key = (meta::namespace(svc).unwrap_or("").to_string(), name.clone());
        let (used_ips, used_ports) = self.held(cache, &self_key);
        let invalid = |errs: Vec<FieldError>| ApiError::invalid("", "Service", &name, &errs);
        if svc_type != "ExternalName" {
            let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
            match requested.as_str() {
                "None" => {
                    svc["spec"]["clusterIPs"] = json!(["None"]);
                }
                "" => {
                    let ip = pick_ip(&used_ips).ok_or_else(|| {
                        ApiError::internal("failed to allocate a serviceIP: range is full")
                    })?;
                    svc["spec"]["clusterIP"] = json!(ip.to_string());
                    svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
                }
                s => {
                    let ip: Ipv4Addr = s.parse().map_err(|_| {
                        invalid(vec![FieldError::invalid(
                            "spec.clusterIPs[0]",
                            json!(s),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )])
                    })?;
                    if !ip_in_cidr(ip) {
                        return Err(invalid(vec![FieldError::invalid(
                            "spec.clusterIPs",
                            json!([s]),
                            format!(
                                "failed to allocate IP {s}: the provided IP ({s}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR_BASE}/{SERVICE_CIDR_PREFIX}"
                            ),
                        )]));
                    }
                    if used_ips.contains(&ip) {
                        return Err(invalid(vec![FieldError::invalid(
                            "spec.clusterIPs",
                            json!([s]),
                            format!("failed to allocate IP {s}: provided IP is already allocated"),
                        )]));
                    }
                    svc["spec"]["clusterIPs"] = json!([s]);
                }
            }
        }
        if svc_type == "NodePort" || svc_type == "LoadBalancer" {
            let mut taken = used_ports.clone();
            // (Not `svc["spec"]["ports"]`: indexing would store `"ports": null` when absent.)
            let ports = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut);
            if let Some(ports) = ports {
                for (i, p) in ports.iter_mut().enumerate() {
                    match p
                        .get("nodePort")
                        .and_then(Value::as_i64)
                        .filter(|n| *n != 0)
                    {
                        Some(np) => {
                            let ok = u16::try_from(np)
                                .ok()
                                .filter(|n| NODE_PORT_RANGE.contains(n));
                            let Some(np16) = ok else {
                                return Err(invalid(vec![FieldError::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    json!(np),
                                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                                )]));
                            };
                            if !taken.insert(np16) {
                                return Err(invalid(vec![FieldError::invalid(
                                    format!("spec.ports[{i}].nodePort"),
                                    json!(np),
                                    "provided port is already allocated",
                                )]));
                            }
                        }
                        None => {
                            let np = pick_port(&taken).ok_or_else(|| {
                                ApiError::internal("failed to allocate a nodePort: range is full")
                            })?;
                            taken.insert(np);
                            p["nodePort"] = json!(np);
                        }
                    }
                }
            }
            // A LoadBalancer keeping client addresses gets the port its health is asked on.
            let local = svc["spec"]["externalTrafficPolicy"] == "Local";
            let hc = &svc["spec"]["healthCheckNodePort"];
            if svc_type == "LoadBalancer" && local && hc.as_i64().unwrap_or(0) == 0 {
                let np = pick_port(&taken).ok_or_else(|| {
                    ApiError::internal("failed to allocate a healthCheckNodePort: range is full")
                })?;
                svc["spec"]["healthCheckNodePort"] = json!(np);
            }
        }
        Ok(())
    }

    /// Node ports a Service updated to a type that has them (NodePort, LoadBalancer) lacks,
    /// allocated as on create. The caller holds `alloc_lock` with the cache caught up.
    pub fn allocate_on_update(&self, cache: &WatchCache, svc: &mut Value) -> Result<(), ApiError> {
        let ty = svc["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        if ty != "NodePort" && ty != "LoadBalancer" {
            return Ok(());
        }
        let me = (
            meta::namespace(svc).unwrap_or("").to_string(),
            meta::name(svc).unwrap_or("").to_string(),
        );
        let (_, mut taken) = self.held(cache, &me);
        let full = || ApiError::internal("failed to allocate a nodePort: range is full");
        let ports = svc
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten();
        for p in ports {
            if let Some(np) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                taken.insert(np);
            } else {
                let np = pick_port(&taken).ok_or_else(full)?;
                taken.insert(np);
                p["nodePort"] = json!(np);
            }
        }
        let local = svc["spec"]["externalTrafficPolicy"] == "Local";
        if ty == "LoadBalancer" && local && svc["spec"]["healthCheckNodePort"].as_u64().is_none() {
            svc["spec"]["healthCheckNodePort"] = json!(pick_port(&taken).ok_or_else(full)?);
        }
        Ok(())
    }

    /// The addresses and ports every stored Service but `except` holds.
    fn held(
        &self,
        cache: &WatchCache,
        except: &(String, String),
    ) -> (HashSet<Ipv4Addr>, HashSet<u16>) {
        let svc_ri = crate::registry::builtin("", "services");
        let except = svc_ri.key(Some(&except.0), &except.1);
        let (objs, _, _) = cache.list(&svc_ri.prefix(None), None, None, &|_| true);
        let mut memo = self.held.lock();
        let mut next = HeldByKey::with_capacity(objs.len());
        let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
        for s in objs {
            let held = match memo.remove(&s.key) {
                Some((rev, h)) if rev == s.rev => h,
                _ => Held::of(&s.value),
            };
            if s.key != except {
                ips.extend(held.ip);
                ports.extend(held.ports.iter().copied());
            }
            next.insert(s.key.clone(), (s.rev, held));
        }
        *memo = next;
        (ips, ports)
    }
}

fn pick_ip(used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(SERVICE_CIDR_BASE);
    let size = 1u32 << (32 - SERVICE_CIDR_PREFIX);
    let mut rng = rand::rng();
    // Random like Kubernetes' allocator, skipping network and broadcast addresses, from
    // the upper band first: the lower one (KEP-3070: size/16, 16 to 256 addresses) is
    // kept for Services that ask for a fixed address, such as kube-dns' 10.43.0.10.
    let reserved = (size / 16).clamp(16, 256).min(size / 2);
    for _ in 0..64 {
        let ip = Ipv4Addr::from(base + rng.random_range(reserved..size - 1));
        if !used.contains(&ip) {
            return Some(ip);
        }
    }
    (reserved..size - 1)
        .chain(2..reserved)
        .map(|o| Ipv4Addr::from(base + o))
        .find(|ip| !used.contains(ip))
}

fn pick_port(used: &HashSet<u16>) -> Option<u16> {
    let mut rng = rand::rng();
    for _ in 0..64 {
        let p = rng.random_range(NODE_PORT_RANGE);
        if !used.contains(&p) {
            return Some(p);
        }
    }
    NODE_PORT_RANGE.into_iter().find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_holds_its_cluster_ip_and_node_ports() {
        let h = Held::of(
            br#"{"metadata":{"name":"a"},"spec":{"clusterIP":"10.43.1.2","healthCheckNodePort":31000,
                 "ports":[{"port":80,"nodePort":30080},{"port":81}]}}"#,
        );
        assert_eq!(h.ip, Some(Ipv4Addr::new(10, 43, 1, 2)));
        assert_eq!(h.ports, [30080, 31000]);
        let none = Held::of(br#"{"spec":{"clusterIP":"None","type":"ClusterIP"}}"#);
        assert!(none.ip.is_none() && none.ports.is_empty());
        assert!(Held::of(b"garbage").ip.is_none());
    }
}
