//! The Endpoints controller (kube-controller-manager's `endpoint`): one v1 Endpoints per
//! Service with a selector, of the same name, its subsets grouping addresses by the
//! ports they serve (ready pods in `addresses`, others in `notReadyAddresses`; pods
//! being deleted left out unless the Service publishes not-ready addresses), truncated
//! at 1000 addresses. The Endpoints of a Service without a selector are the user's and
//! left alone; the Endpoints of a deleted Service are deleted (they have no owner).
//!
//! [`desired`] is the pure decision: the object to write, or None when what is stored
//! already says it (subsets are packed and sorted canonically, so an unchanged set of
//! pods writes nothing).

use crate::control::{self, Backoff, Dirty, Keyed};
use crate::endpointutil::{self as eu, Members, PodInfo, TriggerTimes};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use skiff_kube::informer::Informers;
use skiff_kube::reflect::Change;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::watch;

/// Addresses an Endpoints holds at most (Kubernetes' maxCapacity).
pub const MAX_CAPACITY: usize = 1000;

/// Kubernetes' podToEndpointAddressForService: the pod's address of the Service's
/// (first) family.
fn address(svc: &Service, pod: &PodInfo) -> Option<EndpointAddress> {
    let v6 = match eu::ip_families(svc).first() {
        Some(f) => f == eu::IPV6,
        None if eu::is_service_ip_set(svc) => eu::family(eu::cluster_ip(svc)) == Some(eu::IPV6),
        None => pod.ips.first().and_then(|ip| eu::family(ip)) == Some(eu::IPV6),
    };
    let ip = pod
        .ips
        .iter()
        .find(|ip| (eu::family(ip) == Some(eu::IPV6)) == v6)?;
    Some(EndpointAddress {
        ip: ip.clone(),
        node_name: Some(pod.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectReference::default()
        }),
        hostname: eu::should_set_hostname(pod, svc).then(|| pod.hostname.clone()),
    })
}

/// An address with one port (None: a headless Service without ports) and readiness.
type Entry = (EndpointAddress, Option<EndpointPort>, bool);

/// The subsets the Service's pods make, packed and sorted (Kubernetes' RepackSubsets).
pub fn subsets(svc: &Service, pods: &[&PodInfo]) -> Vec<EndpointSubset> {
    let publish = eu::publish_not_ready(svc);
    let mut entries: Vec<Entry> = Vec::new();
    for pod in pods.iter().filter(|p| p.in_endpoints(publish)) {
        let Some(a) = address(svc, pod) else { continue };
        let ready = publish || pod.ready;
        if eu::ports(svc).is_empty() {
            if eu::cluster_ip(svc) == "None" {
                entries.push((a, None, ready));
            }
            continue;
        }
        for sp in eu::ports(svc) {
            let Some(port) = eu::find_port(pod, sp) else {
                continue;
            };
            let p = EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            };
            entries.push((a.clone(), Some(p), ready));
        }
    }
    repack(entries)
}

/// (ip, uid): addresses are the same address when both are.
type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    let uid = a.target_ref.as_ref().and_then(|r| r.uid.clone());
    (a.ip.clone(), uid.unwrap_or_default())
}

fn port_key(p: &Option<EndpointPort>) -> String {
    p.as_ref().map_or(String::new(), |p| {
        format!("{:?}", (&p.name, p.port, &p.protocol, &p.app_protocol))
    })
}

/// Groups ports by the exact set of addresses (with readiness) serving them; an address
/// not ready on any port of the set is not ready. Addresses sort by IP then uid.
fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    let mut addrs: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    type Serving = (Option<EndpointPort>, BTreeMap<AddrKey, bool>);
    let mut by_port: BTreeMap<String, Serving> = BTreeMap::new();
    for (a, port, ready) in entries {
        let k = addr_key(&a);
        addrs.entry(k.clone()).or_insert(a);
        let pk = port_key(&port);
        let set = &mut by_port
            .entry(pk)
            .or_insert_with(|| (port, BTreeMap::new()))
            .1;
        let r = set.entry(k).or_insert(ready);
        *r = *r && ready;
    }
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, set) in by_port.into_values() {
        let ports = groups.entry(set.into_iter().collect()).or_default();
        ports.extend(port);
    }
    let pick = |set: &[(AddrKey, bool)], ready: bool| {
        let v: Vec<EndpointAddress> = set
            .iter()
            .filter(|(_, r)| *r == ready)
            .filter_map(|(k, _)| addrs.get(k).cloned())
            .collect();
        (!v.is_empty()).then_some(v)
    };
    groups
        .into_iter()
        .map(|(set, ports)| EndpointSubset {
            addresses: pick(&set, true),
            not_ready_addresses: pick(&set, false),
            ports: (!ports.is_empty()).then_some(ports),
        })
        .collect()
}

/// Subsets as stored, in the form [`subsets`] builds (empty lists absent, no empty
/// hostname or port name, no target resourceVersion) for comparison.
fn normalized(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let addrs = |a: &Option<Vec<EndpointAddress>>| {
        a.clone().filter(|v| !v.is_empty()).map(|v| {
            v.into_iter()
                .map(|mut a| {
                    a.hostname = a.hostname.filter(|h| !h.is_empty());
                    if let Some(r) = a.target_ref.as_mut() {
                        r.resource_version = None;
                    }
                    a
                })
                .collect()
        })
    };
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: addrs(&s.addresses),
            not_ready_addresses: addrs(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|p| !p.is_empty()).map(|ps| {
                ps.into_iter()
                    .map(|mut p| {
                        p.name = p.name.filter(|n| !n.is_empty());
                        p
                    })
                    .collect()
            }),
        })
        .collect()
}

fn count(subsets: &[EndpointSubset]) -> usize {
    subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum()
}

/// Kubernetes' truncateEndpoints: over [`MAX_CAPACITY`], ready addresses are kept
/// before not-ready ones, each subset keeping its share (rounded up).
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let ready: usize = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let not_ready = count(subsets) - ready;
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = (n * max).div_ceil(total.max(1)).min(room);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
        }
        room -= list.as_ref().map_or(0, Vec::len);
        if truncate_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}

fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The Endpoints to write for `svc` (which has a selector) over the pods it selects,
/// from what is stored (`current`), or None if that already says it. `trigger` is the
/// last-change trigger time to note.
pub fn desired(
    svc: &Service,
    pods: &[&PodInfo],
    current: Option<&Endpoints>,
    trigger: Option<Timestamp>,
) -> Option<Endpoints> {
    let subsets = subsets(svc, pods);
    let svc_labels = labels_of(&svc.metadata);
    if let Some(cur) = current {
        let mut labels = labels_of(&cur.metadata);
        labels.remove(eu::LABEL_HEADLESS);
        let over = count(cur.subsets.as_deref().unwrap_or(&[])) > MAX_CAPACITY;
        let noted = cur
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(eu::ANNOTATION_OVER_CAPACITY));
        if normalized(cur.subsets.as_ref()) == subsets && labels == svc_labels && !over && !noted {
            return None;
        }
    }
    let mut new = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        ..Endpoints::default()
    });
    let mut subsets = subsets;
    let truncated = truncate(&mut subsets);
    new.subsets = (!subsets.is_empty()).then_some(subsets);
    eu::set_trigger_time(&mut new.metadata, trigger);
    let mut annotations = new.metadata.annotations.take().unwrap_or_default();
    if truncated {
        annotations.insert(eu::ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(eu::ANNOTATION_OVER_CAPACITY);
    }
    new.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let mut labels = svc_labels;
    if !eu::is_service_ip_set(svc) {
        labels.insert(eu::LABEL_HEADLESS.into(), String::new());
    }
    new.metadata.labels = (!labels.is_empty()).then_some(labels);
    Some(new)
}

const SERVICES: usize = 0;
const PODS: usize = 1;

struct Controller {
    client: kube::Client,
    members: Members,
    /// Endpoints by key, from the informer and this controller's writes.
    endpoints: HashMap<String, Endpoints>,
    triggers: TriggerTimes,
    backoff: Backoff,
}

impl Controller {
    fn observe_endpoints(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                let fresh: HashMap<String, Endpoints> = items
                    .into_iter()
                    .filter_map(eu::decode::<Endpoints>)
                    .map(|e| (eu::key_of(&e.metadata), e))
                    .collect();
                // Deleted while the watch was down: as a deletion.
                dirty.extend(
                    self.endpoints
                        .keys()
                        .filter(|k| !fresh.contains_key(*k))
                        .cloned(),
                );
                self.endpoints = fresh;
            }
            Change::Apply(v) => {
                if let Some(e) = eu::decode::<Endpoints>(v) {
                    self.hold(e);
                }
            }
            Change::Delete(v) => {
                if let Some(e) = eu::decode::<Endpoints>(v) {
                    let key = eu::key_of(&e.metadata);
                    self.endpoints.remove(&key);
                    // Put back if its Service wants it.
                    dirty.insert(key);
                }
            }
        }
    }

    fn hold(&mut self, e: Endpoints) {
        let key = eu::key_of(&e.metadata);
        let held = self
            .endpoints
            .get(&key)
            .and_then(|h| h.metadata.resource_version.as_deref());
        if eu::not_older(e.metadata.resource_version.as_deref(), held) {
            self.endpoints.insert(key, e);
        }
    }

    async fn write(&mut self, ns: &str, e: Endpoints, create: bool) -> crate::Result<()> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams::default();
        let stored = if create {
            api.create(&pp, &e).await?
        } else {
            let name = e.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &pp, &e).await?
        };
        self.hold(stored);
        Ok(())
    }

    /// The Service is gone: so are its Endpoints.
    async fn delete(&mut self, key: &str) -> crate::Result<()> {
        self.triggers.forget(key);
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(());
        };
        if !self.endpoints.contains_key(key) {
            return Ok(());
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.endpoints.remove(key);
        Ok(())
    }

    async fn sync_key(&mut self, key: &str) -> crate::Result<()> {
        let Some(svc) = self.members.services.get(key) else {
            return self.delete(key).await;
        };
        if !eu::wants_endpoints(svc) {
            return Ok(());
        }
        let pods = self.members.selected(svc);
        let trigger = self.triggers.compute(key, svc, &pods);
        let current = self.endpoints.get(key);
        let Some(new) = desired(svc, &pods, current, trigger) else {
            return Ok(());
        };
        let create = current.is_none();
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        self.write(&ns, new, create).await
    }
}

impl Keyed for Controller {
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty) {
        match source {
            SERVICES => self.members.observe_service(change, dirty),
            PODS => self.members.observe_pod(change, dirty),
            _ => self.observe_endpoints(change, dirty),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.members.services.keys().cloned().collect()
    }

    /// Kubernetes' checkLeftoverEndpoints: Endpoints whose Service went while the
    /// controller was not running (leader-election locks aside).
    fn listed(&mut self, dirty: &mut Dirty) {
        let leftover = self.endpoints.iter().filter(|(k, e)| {
            !self.members.services.contains_key(*k)
                && !e
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(eu::ANNOTATION_LEADER))
        });
        dirty.extend(leftover.map(|(k, _)| k.clone()));
    }

    async fn sync(&mut self, key: &str) -> Option<Duration> {
        let outcome = self.sync_key(key).await;
        self.backoff.settle(key, outcome, "endpoints not written")
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, informers: Informers, shutdown: watch::Receiver<bool>) {
    let sources = vec![
        informers.watch("/api/v1/services"),
        informers.watch("/api/v1/pods"),
        informers.watch("/api/v1/endpoints"),
    ];
    let c = Controller {
        client,
        members: Members::default(),
        endpoints: HashMap::new(),
        triggers: TriggerTimes::default(),
        backoff: Backoff::default(),
    };
    control::run_keyed(c, sources, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointutil::NamedPort;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn svc(ports: &[(&str, IntOrString)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some("10.43.0.10".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ports: Some(
                    ports
                        .iter()
                        .enumerate()
                        .map(|(i, (name, target))| ServicePort {
                            name: Some(name.to_string()),
                            port: 80 + i as i32,
                            protocol: Some("TCP".into()),
                            target_port: Some(target.clone()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn pod(i: usize, ready: bool) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: format!("web-{i}"),
            uid: format!("uid-{i}"),
            labels: [("app".to_string(), "web".to_string())].into(),
            node_name: "n1".into(),
            ips: vec![format!("10.42.0.{}", i + 1)],
            ready,
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 8080,
            }],
            ..PodInfo::default()
        }
    }

    /// Each subset as (ready ips, not-ready ips, ports).
    fn shape(subsets: &[EndpointSubset]) -> Vec<(Vec<String>, Vec<String>, Vec<i32>)> {
        let ips =
            |a: &Option<Vec<EndpointAddress>>| a.iter().flatten().map(|a| a.ip.clone()).collect();
        subsets
            .iter()
            .map(|s| {
                (
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                )
            })
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subsets_group_addresses_by_port_set() {
        let s = svc(&[
            ("http", IntOrString::String("http".into())),
            ("admin", IntOrString::Int(9000)),
        ]);
        let unnamed = PodInfo {
            ports: vec![],
            ..pod(3, true)
        };
        let pods = [pod(1, true), pod(0, false), unnamed];
        let refs: Vec<&PodInfo> = pods.iter().collect();
        // The unnamed pod serves only the numeric port: two port sets.
        assert_eq!(
            shape(&subsets(&s, &refs)),
            [
                (strs(&["10.42.0.2"]), strs(&["10.42.0.1"]), vec![8080]),
                (
                    strs(&["10.42.0.2", "10.42.0.4"]),
                    strs(&["10.42.0.1"]),
                    vec![9000]
                ),
            ]
        );
        // Without it, one subset with both ports.
        let got = shape(&subsets(&s, &refs[..2]));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2.len(), 2);
    }

    #[test]
    fn addresses_carry_node_target_and_hostname() {
        let s = svc(&[("", IntOrString::Int(8080))]);
        let p = PodInfo {
            hostname: "web-0".into(),
            subdomain: "web".into(),
            ..pod(0, true)
        };
        let sub = subsets(&s, &[&p]);
        let a = &sub[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.ip, "10.42.0.1");
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        assert_eq!(a.hostname.as_deref(), Some("web-0"));
        let t = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (t.kind.as_deref(), t.name.as_deref(), t.uid.as_deref()),
            (Some("Pod"), Some("web-0"), Some("uid-0"))
        );
        assert_eq!(sub[0].ports.as_ref().unwrap()[0].name, None);
    }

    #[test]
    fn terminating_pods_only_when_publishing_not_ready_addresses() {
        let mut s = svc(&[("", IntOrString::Int(8080))]);
        let gone = PodInfo {
            terminating: true,
            ..pod(0, true)
        };
        let unready = pod(1, false);
        assert_eq!(
            shape(&subsets(&s, &[&gone, &unready])),
            [(vec![], strs(&["10.42.0.2"]), vec![8080])]
        );
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        assert_eq!(
            shape(&subsets(&s, &[&gone, &unready])),
            [(strs(&["10.42.0.1", "10.42.0.2"]), vec![], vec![8080])]
        );
    }

    #[test]
    fn headless_services_without_ports_list_bare_addresses() {
        let mut s = svc(&[]);
        assert!(subsets(&s, &[&pod(0, true)]).is_empty());
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert_eq!(
            shape(&subsets(&s, &[&pod(0, true)])),
            [(strs(&["10.42.0.1"]), vec![], vec![])]
        );
        let e = desired(&s, &[&pod(0, true)], None, None).unwrap();
        assert_eq!(e.metadata.labels.unwrap()[eu::LABEL_HEADLESS], "");
    }

    #[test]
    fn an_unchanged_set_writes_nothing() {
        let s = svc(&[("", IntOrString::Int(8080))]);
        let pods = [pod(0, true), pod(1, true)];
        let refs: Vec<&PodInfo> = pods.iter().collect();
        let t = "2026-01-01T00:00:00Z".parse().ok();
        let first = desired(&s, &refs, None, t).unwrap();
        assert_eq!(first.metadata.name.as_deref(), Some("web"));
        assert_eq!(first.metadata.labels.as_ref().unwrap()["tier"], "front");
        let ann = first.metadata.annotations.clone().unwrap();
        assert_eq!(ann[eu::ANNOTATION_TRIGGER_TIME], "2026-01-01T00:00:00Z");
        // As stored, with the pods in another order: nothing to write.
        let mut stored = first.clone();
        stored.metadata.resource_version = Some("7".into());
        let reversed: Vec<&PodInfo> = pods.iter().rev().collect();
        assert_eq!(desired(&s, &reversed, Some(&stored), None), None);
        // A pod not ready any more: an update of the stored object.
        let changed = [pod(0, true), pod(1, false)];
        let refs: Vec<&PodInfo> = changed.iter().collect();
        let next = desired(&s, &refs, Some(&stored), None).unwrap();
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            shape(next.subsets.as_ref().unwrap()),
            [(strs(&["10.42.0.1"]), strs(&["10.42.0.2"]), vec![8080])]
        );
        assert!(next.metadata.annotations.is_none());
        // Labels follow the Service.
        let mut relabelled = s.clone();
        relabelled.metadata.labels = None;
        let e = desired(&relabelled, &refs, Some(&next), None).unwrap();
        assert_eq!(e.metadata.labels, None);
    }

    #[test]
    fn no_pods_no_subsets() {
        let s = svc(&[("", IntOrString::Int(8080))]);
        let e = desired(&s, &[], None, None).unwrap();
        assert_eq!(e.subsets, None);
        assert_eq!(desired(&s, &[], Some(&e), None), None);
    }

    #[test]
    fn over_a_thousand_addresses_are_truncated_ready_first() {
        let s = svc(&[("", IntOrString::Int(8080))]);
        let pods: Vec<PodInfo> = (0..1100)
            .map(|i| PodInfo {
                ips: vec![format!("10.42.{}.{}", i / 250, i % 250 + 1)],
                ..pod(i, i < 900)
            })
            .collect();
        let refs: Vec<&PodInfo> = pods.iter().collect();
        let e = desired(&s, &refs, None, None).unwrap();
        let sub = e.subsets.as_ref().unwrap();
        assert_eq!(sub[0].addresses.as_ref().unwrap().len(), 900);
        assert_eq!(sub[0].not_ready_addresses.as_ref().unwrap().len(), 100);
        assert_eq!(
            e.metadata.annotations.as_ref().unwrap()[eu::ANNOTATION_OVER_CAPACITY],
            "truncated"
        );
        // Stored truncated, the same pods: an update, as Kubernetes does every sync.
        assert!(desired(&s, &refs, Some(&e), None).is_some());
    }
}
