//! What the controllers that connect Services to Pods share, as Kubernetes'
//! `k8s.io/endpointslice/util` does: the few fields of a pod they read ([`PodInfo`]),
//! which pods belong in endpoints, named target ports resolved per pod, hostnames,
//! address families, which Services a pod change concerns ([`Members`]), the
//! last-change trigger time ([`TriggerTimes`]), and a write-through view of the
//! EndpointSlices a controller manages ([`SliceStore`]). Pure: no IO, no clock.

use crate::control::Dirty;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodSpec, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use skiff_kube::reflect::Change;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints used as leader-election locks carry it; no controller touches those.
pub const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
pub const IPV4: &str = "IPv4";
pub const IPV6: &str = "IPv6";

/// A container port a Service's named `targetPort` may refer to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedPort {
    pub name: String,
    pub protocol: String,
    pub port: i32,
}

/// What the endpoint controllers read of a Pod (thousands are held: only this).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub node_name: String,
    pub hostname: String,
    pub subdomain: String,
    /// `status.podIPs` (or `status.podIP`), in order.
    pub ips: Vec<String>,
    /// The Ready condition is True.
    pub ready: bool,
    /// When the Ready condition last changed (the trigger time of an endpoint change).
    pub ready_since: Option<Timestamp>,
    /// Succeeded or Failed.
    pub terminal: bool,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Named ports of its containers, then of its sidecars (restartable init containers).
    pub ports: Vec<NamedPort>,
}

fn named_ports(spec: &PodSpec) -> Vec<NamedPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty())?;
            Some(NamedPort {
                name: name.to_string(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.container_port,
            })
        })
        .collect()
}

impl PodInfo {
    pub fn from_pod(p: &Pod) -> PodInfo {
        let m = &p.metadata;
        let spec = p.spec.as_ref();
        let status = p.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let mut ips: Vec<String> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .map(|i| i.ip.clone())
            .filter(|i| !i.is_empty())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .and_then(|s| s.pod_ip.clone())
                    .filter(|i| !i.is_empty()),
            );
        }
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        let text = |s: Option<&String>| s.cloned().unwrap_or_default();
        PodInfo {
            namespace: text(m.namespace.as_ref()),
            name: text(m.name.as_ref()),
            uid: text(m.uid.as_ref()),
            labels: m.labels.clone().unwrap_or_default(),
            node_name: text(spec.and_then(|s| s.node_name.as_ref())),
            hostname: text(spec.and_then(|s| s.hostname.as_ref())),
            subdomain: text(spec.and_then(|s| s.subdomain.as_ref())),
            ips,
            ready: ready.is_some_and(|c| c.status == "True"),
            ready_since: ready.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0)),
            terminal: matches!(phase, "Succeeded" | "Failed"),
            terminating: m.deletion_timestamp.is_some(),
            ports: spec.map(named_ports).unwrap_or_default(),
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Kubernetes' ShouldPodBeInEndpoints: not terminal, has an IP, and (unless
    /// `include_terminating`) not being deleted.
    pub fn in_endpoints(&self, include_terminating: bool) -> bool {
        !self.terminal && !self.ips.is_empty() && (include_terminating || !self.terminating)
    }

    /// Kubernetes' podEndpointsChanged from `self` to `new`: (whether its endpoints may
    /// change, whether the Services it belongs to may change).
    pub fn changes(&self, new: &PodInfo) -> (bool, bool) {
        let membership = self.labels != new.labels
            || self.hostname != new.hostname
            || self.subdomain != new.subdomain;
        let endpoint = self.terminating != new.terminating
            || self.ready != new.ready
            || self.ready_since != new.ready_since
            || self.ips != new.ips
            || self.terminal != new.terminal;
        (endpoint, membership)
    }
}

/// `namespace/name` of a Service (or any namespaced object).
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

fn name_of(svc: &Service) -> &str {
    svc.metadata.name.as_deref().unwrap_or("")
}

fn namespace_of(svc: &Service) -> &str {
    svc.metadata.namespace.as_deref().unwrap_or("")
}

/// The Service's selector; None when it has none, which selects nothing (an empty
/// selector is none too: Kubernetes stores it so).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether the endpoint controllers keep this Service's endpoints: it has a selector
/// and is not an ExternalName.
pub fn wants_endpoints(svc: &Service) -> bool {
    selector(svc).is_some() && service_type(svc) != "ExternalName"
}

pub fn service_type(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn cluster_ip(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("")
}

/// Kubernetes' IsServiceIPSet: neither headless nor without an address.
pub fn is_service_ip_set(svc: &Service) -> bool {
    !matches!(cluster_ip(svc), "" | "None")
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

pub fn ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

pub fn ip_families(svc: &Service) -> &[String] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ip_families.as_deref())
        .unwrap_or(&[])
}

/// Kubernetes' ShouldSetHostname: the pod names a hostname and this Service as its
/// subdomain (StatefulSet pods behind their headless Service).
pub fn should_set_hostname(pod: &PodInfo, svc: &Service) -> bool {
    !pod.hostname.is_empty() && pod.subdomain == name_of(svc) && pod.namespace == namespace_of(svc)
}

/// Kubernetes' FindPort: the container port a service port reaches on this pod (a
/// named `targetPort` is looked up in the pod's containers, then its sidecars).
pub fn find_port(pod: &PodInfo, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        Some(IntOrString::String(name)) => pod
            .ports
            .iter()
            .find(|p| &p.name == name && p.protocol == protocol)
            .map(|p| p.port),
        Some(IntOrString::Int(n)) => Some(*n),
        None => Some(sp.port),
    }
}

/// The family ("IPv4"/"IPv6") of an address, None if it is not one.
pub fn family(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(IPV4),
        IpAddr::V6(_) => Some(IPV6),
    }
}

/// An address in canonical form, None if it is not one.
pub fn canonical_ip(ip: &str) -> Option<String> {
    ip.parse::<IpAddr>().ok().map(|a| a.to_string())
}

/// The pod's addresses of one family, canonical.
pub fn pod_addresses(pod: &PodInfo, address_type: &str) -> Vec<String> {
    pod.ips
        .iter()
        .filter(|ip| family(ip) == Some(address_type))
        .filter_map(|ip| canonical_ip(ip))
        .collect()
}

/// Kubernetes' getAddressTypesForService: the Service's `ipFamilies`; without them, the
/// family of its cluster IP, or both for a headless one.
pub fn address_types(svc: &Service) -> BTreeSet<&'static str> {
    let mut out: BTreeSet<&'static str> = ip_families(svc)
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(IPV4),
            "IPv6" => Some(IPV6),
            _ => None,
        })
        .collect();
    if out.is_empty() {
        match family(cluster_ip(svc)) {
            Some(f) if is_service_ip_set(svc) => {
                out.insert(f);
            }
            _ => out.extend([IPV4, IPV6]),
        }
    }
    out
}

/// A canonical key for a set of slice ports (order does not matter), as NewPortMapKey.
pub fn port_key(ports: &[EndpointPort]) -> String {
    let mut each: Vec<String> = ports
        .iter()
        .map(|p| format!("{:?}", (&p.name, &p.protocol, p.port, &p.app_protocol)))
        .collect();
    each.sort();
    each.join("|")
}

/// What identifies an endpoint across slices (Kubernetes' endpoint hash: its
/// addresses, hostname and target): the pod's namespace/name first, so endpoints
/// keyed by it sort by pod.
pub fn endpoint_key(e: &Endpoint) -> String {
    let mut addresses = e.addresses.clone();
    addresses.sort();
    let (ns, name) = e
        .target_ref
        .as_ref()
        .map(|r| {
            (
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    format!(
        "{ns}/{name}\u{0}{}\u{0}{}",
        e.hostname.as_deref().unwrap_or(""),
        addresses.join(",")
    )
}

fn without_rv(r: &Option<ObjectReference>) -> Option<ObjectReference> {
    r.clone().map(|mut r| {
        r.resource_version = None;
        r
    })
}

/// Kubernetes' EndpointsEqualBeyondHash: node, zone, conditions and target (its
/// resourceVersion aside) are the same.
pub fn endpoints_equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && without_rv(&a.target_ref) == without_rv(&b.target_ref)
}

/// A Service's (or Endpoints') slices: what to create, update (whole objects, with
/// their names and resourceVersions) and delete.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    pub fn deleting(slices: &[&EndpointSlice]) -> Plan {
        Plan {
            delete: slices.iter().map(|s| (*s).clone()).collect(),
            ..Plan::default()
        }
    }
}

/// Sets (Some) or clears (None) the last-change trigger time annotation.
pub fn set_trigger_time(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    at: Option<Timestamp>,
) {
    let mut ann = meta.annotations.take().unwrap_or_default();
    match at {
        Some(t) => {
            ann.insert(ANNOTATION_TRIGGER_TIME.into(), format_time(t));
        }
        None => {
            ann.remove(ANNOTATION_TRIGGER_TIME);
        }
    }
    meta.annotations = (!ann.is_empty()).then_some(ann);
}

/// RFC 3339 in UTC with as many fractional digits as needed (Go's RFC3339Nano).
pub fn format_time(t: Timestamp) -> String {
    t.to_string()
}

/// Kubernetes' TriggerTimeTracker: the time of the change an endpoints write stems
/// from (the earliest Ready transition or Service creation seen since the last sync;
/// the Service's creation for a Service not synced before), None if there is none.
#[derive(Debug, Default)]
pub struct TriggerTimes {
    states: HashMap<String, TriggerState>,
}

#[derive(Debug, Default)]
struct TriggerState {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

impl TriggerTimes {
    pub fn compute(&mut self, key: &str, svc: &Service, pods: &[&PodInfo]) -> Option<Timestamp> {
        let known = self.states.contains_key(key);
        let state = self.states.entry(key.to_string()).or_default();
        let mut earliest: Option<Timestamp> = None;
        let mut take = |t: Timestamp| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        let mut pod_times = HashMap::new();
        for p in pods {
            let Some(t) = p.ready_since else { continue };
            if state.pods.get(&p.name).is_none_or(|old| t > *old) {
                take(t);
            }
            pod_times.insert(p.name.clone(), t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(c) = created.filter(|c| state.service.is_none_or(|old| *c > old)) {
            take(c);
        }
        state.pods = pod_times;
        state.service = created;
        if known { earliest } else { created }
    }

    pub fn forget(&mut self, key: &str) {
        self.states.remove(key);
    }
}

/// Decodes an informer's object into its type (None, logged, if it does not fit).
pub fn decode<T: k8s_openapi::serde::de::DeserializeOwned>(
    v: impl std::ops::Deref<Target = Value>,
) -> Option<T> {
    T::deserialize(&*v)
        .inspect_err(|e| tracing::debug!(error = %e, "undecodable object skipped"))
        .ok()
}

/// Whether a copy at resourceVersion `incoming` may replace one held at `held`: an
/// informer event older than what this controller wrote itself is ignored.
pub fn not_older(incoming: Option<&str>, held: Option<&str>) -> bool {
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
    match (num(incoming), num(held)) {
        (Some(a), Some(b)) => a >= b,
        _ => true,
    }
}

/// Services and the pods they may select, kept from the informers; says which Service
/// keys a change concerns, as the endpoint controllers' event handlers do.
#[derive(Debug, Default)]
pub struct Members {
    pub services: BTreeMap<String, Service>,
    /// namespace → name → pod.
    pods: HashMap<String, BTreeMap<String, PodInfo>>,
}

impl Members {
    /// The Services of `namespace`.
    fn in_namespace<'a>(&'a self, ns: &str) -> impl Iterator<Item = (&'a String, &'a Service)> {
        let prefix = format!("{ns}/");
        self.services
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }

    /// Keys of the Services of `ns` whose selector matches `labels`.
    pub fn selecting(&self, ns: &str, labels: &BTreeMap<String, String>) -> BTreeSet<String> {
        self.in_namespace(ns)
            .filter(|(_, s)| selector(s).is_some_and(|sel| selects(sel, labels)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The pods `svc` selects, by name.
    pub fn selected(&self, svc: &Service) -> Vec<&PodInfo> {
        let Some(sel) = selector(svc) else {
            return Vec::new();
        };
        self.pods
            .get(namespace_of(svc))
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|p| selects(sel, &p.labels))
            .collect()
    }

    /// Keys of the Services selecting a pod bound to `node`.
    pub fn on_node(&self, node: &str) -> BTreeSet<String> {
        self.pods
            .values()
            .flat_map(|m| m.values())
            .filter(|p| p.node_name == node)
            .flat_map(|p| self.selecting(&p.namespace, &p.labels))
            .collect()
    }

    pub fn observe_service(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                dirty.extend(self.services.keys().cloned());
                self.services = items
                    .into_iter()
                    .filter_map(decode::<Service>)
                    .map(|s| (key_of(&s.metadata), s))
                    .collect();
                dirty.extend(self.services.keys().cloned());
            }
            Change::Apply(v) => {
                if let Some(s) = decode::<Service>(v) {
                    let key = key_of(&s.metadata);
                    dirty.insert(key.clone());
                    self.services.insert(key, s);
                }
            }
            Change::Delete(v) => {
                if let Some(s) = decode::<Service>(v) {
                    let key = key_of(&s.metadata);
                    self.services.remove(&key);
                    dirty.insert(key);
                }
            }
        }
    }

    /// Replaces the copy of a Service with what a write returned.
    pub fn wrote_service(&mut self, s: Service) {
        let key = key_of(&s.metadata);
        let held = self
            .services
            .get(&key)
            .and_then(|h| h.metadata.resource_version.as_deref());
        if not_older(s.metadata.resource_version.as_deref(), held) {
            self.services.insert(key, s);
        }
    }

    pub fn observe_pod(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                self.pods.clear();
                for p in items.into_iter().filter_map(decode::<Pod>) {
                    let p = PodInfo::from_pod(&p);
                    self.pods
                        .entry(p.namespace.clone())
                        .or_default()
                        .insert(p.name.clone(), p);
                }
                dirty.extend(self.services.keys().cloned());
            }
            Change::Apply(v) => {
                let Some(new) = decode::<Pod>(v).map(|p| PodInfo::from_pod(&p)) else {
                    return;
                };
                let pods = self.pods.entry(new.namespace.clone()).or_default();
                let old = pods.insert(new.name.clone(), new.clone());
                let keys = self.concerned(old.as_ref(), Some(&new));
                dirty.extend(keys);
            }
            Change::Delete(v) => {
                let Some(gone) = decode::<Pod>(v).map(|p| PodInfo::from_pod(&p)) else {
                    return;
                };
                let old = self
                    .pods
                    .get_mut(&gone.namespace)
                    .and_then(|m| m.remove(&gone.name));
                dirty.extend(self.concerned(None, Some(old.as_ref().unwrap_or(&gone))));
            }
        }
    }

    /// Kubernetes' GetServicesToUpdateOnPodChange: a new or deleted pod concerns the
    /// Services selecting it; a changed one those of its old and new labels when its
    /// endpoint changed, only those it joined or left when just its labels did.
    pub fn concerned(&self, old: Option<&PodInfo>, new: Option<&PodInfo>) -> BTreeSet<String> {
        let (old, new) = match (old, new) {
            (Some(o), Some(n)) => (o, n),
            (Some(p), None) | (None, Some(p)) => return self.selecting(&p.namespace, &p.labels),
            (None, None) => return BTreeSet::new(),
        };
        let (endpoint, membership) = old.changes(new);
        if !membership {
            return if endpoint {
                self.selecting(&new.namespace, &new.labels)
            } else {
                BTreeSet::new()
            };
        }
        let was = self.selecting(&old.namespace, &old.labels);
        let is = self.selecting(&new.namespace, &new.labels);
        if endpoint {
            was.union(&is).cloned().collect()
        } else {
            was.symmetric_difference(&is).cloned().collect()
        }
    }
}

/// The EndpointSlices one controller manages, by the key of the object they stand for
/// (`namespace/<kubernetes.io/service-name>`), kept from the informer and from this
/// controller's own writes (so a sync never acts on a view older than its last write).
#[derive(Debug)]
pub struct SliceStore {
    managed_by: &'static str,
    by_owner: HashMap<String, BTreeMap<String, EndpointSlice>>,
    /// `namespace/slice name` → owner key.
    owner_of: HashMap<String, String>,
    /// Slices this controller deleted whose deletion it has not seen yet.
    gone: HashSet<String>,
}

fn slice_key(s: &EndpointSlice) -> String {
    key_of(&s.metadata)
}

fn slice_name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

impl SliceStore {
    /// Slices labelled `endpointslice.kubernetes.io/managed-by: <managed_by>`.
    pub fn new(managed_by: &'static str) -> SliceStore {
        SliceStore {
            managed_by,
            by_owner: HashMap::new(),
            owner_of: HashMap::new(),
            gone: HashSet::new(),
        }
    }

    /// The owner key of a slice this store keeps, None for others.
    pub fn owner(&self, s: &EndpointSlice) -> Option<String> {
        let labels = s.metadata.labels.as_ref()?;
        if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(self.managed_by) {
            return None;
        }
        let svc = labels.get(LABEL_SERVICE_NAME).filter(|n| !n.is_empty())?;
        Some(format!(
            "{}/{svc}",
            s.metadata.namespace.as_deref().unwrap_or("")
        ))
    }

    /// The slices of `owner` that are not being deleted, by name.
    pub fn of(&self, owner: &str) -> Vec<&EndpointSlice> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect()
    }

    pub fn owners(&self) -> impl Iterator<Item = &String> {
        self.by_owner.keys()
    }

    fn remove(&mut self, key: &str) -> Option<(String, EndpointSlice)> {
        let owner = self.owner_of.remove(key)?;
        let name = key.split_once('/').map(|(_, n)| n).unwrap_or(key);
        let slices = self.by_owner.get_mut(&owner)?;
        let s = slices.remove(name);
        if slices.is_empty() {
            self.by_owner.remove(&owner);
        }
        s.map(|s| (owner, s))
    }

    fn insert(&mut self, owner: String, s: EndpointSlice) {
        self.owner_of.insert(slice_key(&s), owner.clone());
        self.by_owner
            .entry(owner)
            .or_default()
            .insert(slice_name(&s), s);
    }

    /// An informer change; marks the owners it concerns unless it only echoes this
    /// controller's own write.
    pub fn observe(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                dirty.extend(self.by_owner.keys().cloned());
                self.by_owner.clear();
                self.owner_of.clear();
                self.gone.clear();
                for s in items.into_iter().filter_map(decode::<EndpointSlice>) {
                    if let Some(owner) = self.owner(&s) {
                        dirty.insert(owner.clone());
                        self.insert(owner, s);
                    }
                }
            }
            Change::Apply(v) => {
                if let Some(s) = decode::<EndpointSlice>(v) {
                    self.apply(s, dirty);
                }
            }
            Change::Delete(v) => {
                let Some(s) = decode::<EndpointSlice>(v) else {
                    return;
                };
                let key = slice_key(&s);
                let ours = self.gone.remove(&key);
                if let Some((owner, _)) = self.remove(&key).filter(|_| !ours) {
                    dirty.insert(owner);
                }
            }
        }
    }

    fn apply(&mut self, s: EndpointSlice, dirty: &mut Dirty) {
        let key = slice_key(&s);
        if self.gone.contains(&key) {
            return;
        }
        let held = self.owner_of.get(&key).and_then(|o| {
            self.by_owner
                .get(o)
                .and_then(|m| m.get(&slice_name(&s)))
                .map(|h| (o.clone(), h.metadata.resource_version.clone()))
        });
        let incoming = s.metadata.resource_version.clone();
        if let Some((_, rv)) = &held
            && !not_older(incoming.as_deref(), rv.as_deref())
        {
            return;
        }
        let echo = held
            .as_ref()
            .is_some_and(|(_, rv)| rv.is_some() && *rv == incoming);
        let old_owner = self.remove(&key).map(|(o, _)| o);
        let owner = self.owner(&s);
        if !echo {
            dirty.extend(old_owner.into_iter().chain(owner.clone()));
        }
        if let Some(owner) = owner {
            self.insert(owner, s);
        }
    }

    /// A slice as a create or update returned it.
    pub fn wrote(&mut self, s: EndpointSlice) {
        let key = slice_key(&s);
        let held = self.owner_of.get(&key).and_then(|o| {
            self.by_owner
                .get(o)
                .and_then(|m| m.get(&slice_name(&s)))
                .and_then(|h| h.metadata.resource_version.clone())
        });
        if !not_older(s.metadata.resource_version.as_deref(), held.as_deref()) {
            return;
        }
        self.remove(&key);
        if let Some(owner) = self.owner(&s) {
            self.insert(owner, s);
        }
    }

    /// A slice this controller deleted.
    pub fn deleted(&mut self, s: &EndpointSlice) {
        let key = slice_key(s);
        if self.remove(&key).is_some() {
            self.gone.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    pub fn svc(name: &str, selector: &[(&str, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                cluster_ip: Some("10.43.0.10".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, app: &str) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: [("app".to_string(), app.to_string())].into(),
            node_name: "n1".into(),
            ips: vec!["10.42.0.5".into()],
            ready: true,
            ..Default::default()
        }
    }

    #[test]
    fn pods_are_read_from_their_typed_form() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "ns", "uid": "u", "labels": {"app": "web"}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "hostname": "web-0", "subdomain": "web",
                "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9}]}],
                "initContainers": [
                    {"name": "side", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "UDP"}]},
                    {"name": "init", "ports": [{"name": "init", "containerPort": 1}]}]},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}]},
        }))
        .unwrap();
        let p = PodInfo::from_pod(&p);
        assert_eq!(p.key(), "ns/web-0");
        assert_eq!(p.ips, ["10.42.0.5", "fd00::5"]);
        assert!(p.ready && p.terminating && !p.terminal);
        assert_eq!(p.ready_since.unwrap().to_string(), "2026-01-01T00:00:01Z");
        let names: Vec<_> = p.ports.iter().map(|p| (p.name.as_str(), p.port)).collect();
        assert_eq!(names, [("http", 8080), ("metrics", 9090)]);
        assert!(p.in_endpoints(true) && !p.in_endpoints(false));
        assert_eq!(pod_addresses(&p, IPV6), ["fd00::5"]);
    }

    #[test]
    fn which_pods_belong_in_endpoints() {
        let ok = pod("a", "web");
        let cases = [
            (PodInfo { ..ok.clone() }, true),
            (
                PodInfo {
                    ips: vec![],
                    ..ok.clone()
                },
                false,
            ),
            (
                PodInfo {
                    terminal: true,
                    ..ok.clone()
                },
                false,
            ),
            (
                PodInfo {
                    ready: false,
                    ..ok.clone()
                },
                true,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(p.in_endpoints(false), want, "{p:?}");
        }
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let mut p = pod("a", "web");
        p.ports = vec![
            NamedPort {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 8080,
            },
            NamedPort {
                name: "dns".into(),
                protocol: "UDP".into(),
                port: 53,
            },
        ];
        let port = |target: IntOrString, protocol: &str| ServicePort {
            port: 80,
            protocol: Some(protocol.into()),
            target_port: Some(target),
            ..Default::default()
        };
        assert_eq!(
            find_port(&p, &port(IntOrString::String("http".into()), "TCP")),
            Some(8080)
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::String("dns".into()), "TCP")),
            None
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::String("dns".into()), "UDP")),
            Some(53)
        );
        assert_eq!(
            find_port(&p, &port(IntOrString::Int(9000), "TCP")),
            Some(9000)
        );
    }

    #[test]
    fn address_types_follow_ip_families() {
        let mut s = svc("a", &[]);
        assert_eq!(address_types(&s), [IPV4].into());
        s.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        assert_eq!(address_types(&s), [IPV4, IPV6].into());
        s.spec.as_mut().unwrap().ip_families = None;
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert_eq!(address_types(&s), [IPV4, IPV6].into());
    }

    #[test]
    fn pod_changes_concern_the_services_selecting_it() {
        let mut m = Members::default();
        let mut d = Dirty::new();
        for s in [
            svc("web", &[("app", "web")]),
            svc("api", &[("app", "api")]),
            svc("none", &[]),
        ] {
            m.observe_service(Change::apply(serde_json::to_value(&s).unwrap()), &mut d);
        }
        let a = pod("a", "web");
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(m.concerned(None, Some(&a)), set(&["ns/web"]));
        // Nothing an endpoint shows changed: no Service.
        assert_eq!(m.concerned(Some(&a), Some(&a.clone())), set(&[]));
        // Readiness: the Services it is in.
        let unready = PodInfo {
            ready: false,
            ..a.clone()
        };
        assert_eq!(m.concerned(Some(&a), Some(&unready)), set(&["ns/web"]));
        // Labels only: the Services it left and joined.
        let moved = PodInfo {
            labels: [("app".into(), "api".into())].into(),
            ..a.clone()
        };
        assert_eq!(
            m.concerned(Some(&a), Some(&moved)),
            set(&["ns/api", "ns/web"])
        );
        let other_ns = PodInfo {
            namespace: "other".into(),
            ..a.clone()
        };
        assert_eq!(m.concerned(None, Some(&other_ns)), set(&[]));
    }

    #[test]
    fn trigger_times_report_the_earliest_new_change() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let mut s = svc("web", &[("app", "web")]);
        s.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            t("2026-01-01T00:00:00Z"),
        ));
        let mut tt = TriggerTimes::default();
        let a = PodInfo {
            ready_since: Some(t("2026-01-01T00:00:05Z")),
            ..pod("a", "web")
        };
        // A Service seen for the first time: its creation.
        assert_eq!(
            tt.compute("ns/web", &s, &[&a]),
            Some(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(tt.compute("ns/web", &s, &[&a]), None);
        let b = PodInfo {
            ready_since: Some(t("2026-01-01T00:00:09Z")),
            ..pod("b", "web")
        };
        let a2 = PodInfo {
            ready_since: Some(t("2026-01-01T00:00:07Z")),
            ..a.clone()
        };
        assert_eq!(
            tt.compute("ns/web", &s, &[&a2, &b]),
            Some(t("2026-01-01T00:00:07Z"))
        );
        assert_eq!(
            format_time(t("2026-01-01T00:00:07.5Z")),
            "2026-01-01T00:00:07.5Z"
        );
    }

    fn slice(name: &str, svc: &str, rv: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
            "labels": {LABEL_SERVICE_NAME: svc, LABEL_MANAGED_BY: "me"}}, "addressType": "IPv4", "endpoints": []})
    }

    #[test]
    fn slice_store_ignores_echoes_and_stale_events() {
        let mut st = SliceStore::new("me");
        let mut d = Dirty::new();
        st.observe(Change::reset(vec![slice("web-1", "web", "5")]), &mut d);
        assert_eq!(d, ["ns/web".to_string()].into());
        d.clear();
        // Our own update, then its echo and an older event: nothing to look at.
        st.wrote(serde_json::from_value(slice("web-1", "web", "7")).unwrap());
        st.observe(Change::apply(slice("web-1", "web", "6")), &mut d);
        st.observe(Change::apply(slice("web-1", "web", "7")), &mut d);
        assert!(d.is_empty());
        assert_eq!(
            st.of("ns/web")[0].metadata.resource_version.as_deref(),
            Some("7")
        );
        // Someone else's change: the Service is looked at again.
        st.observe(Change::apply(slice("web-1", "web", "8")), &mut d);
        assert_eq!(d, ["ns/web".to_string()].into());
        d.clear();
        // Our delete: a late update and the deletion itself change nothing.
        let held = st.of("ns/web")[0].clone();
        st.deleted(&held);
        st.observe(Change::apply(slice("web-1", "web", "9")), &mut d);
        st.observe(Change::delete(slice("web-1", "web", "9")), &mut d);
        assert!(d.is_empty() && st.of("ns/web").is_empty());
        // Not ours: never held.
        let mut other = slice("x", "web", "10");
        other["metadata"]["labels"][LABEL_MANAGED_BY] = json!("someone-else");
        st.observe(Change::apply(other), &mut d);
        assert!(st.of("ns/web").is_empty());
    }
}
