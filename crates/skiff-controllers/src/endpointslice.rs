//! The EndpointSlice controller (kube-controller-manager's `endpointslice`): every
//! Service with a selector gets `discovery.k8s.io/v1` EndpointSlices listing the pods it
//! selects, at most 100 endpoints each, one address type each, grouped by the ports
//! each pod resolves, owned by the Service (the garbage collector removes them with it).
//!
//! [`reconcile`] is Kubernetes' reconciler as a pure function: endpoints stay in the
//! slices they are in and are updated in place, slices that changed are filled before
//! slices that did not, new slices only for what is left, emptied slices deleted (or
//! reused for a slice that would be created), a placeholder slice when there is nothing,
//! and a slice that did not change is never written.

use crate::control::{self, Backoff, Dirty, Keyed};
use crate::endpointutil::{self as eu, Members, Plan, PodInfo, SliceStore, TriggerTimes};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use skiff_kube::informer::Informers;
use skiff_kube::reflect::Change;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::watch;

/// The `endpointslice.kubernetes.io/managed-by` value of the slices made here.
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// Node name → its zone label, if any. A node missing here is not known (yet).
pub type Zones = HashMap<String, Option<String>>;

/// The changes that bring a Service's slices (`existing`: those this controller manages
/// for it, not being deleted) to what its pods say. A Service gone leaves its slices to
/// the garbage collector; one without a selector (or an ExternalName) keeps none
/// (kube-controller-manager leaves the slices such a Service had; here they go).
pub fn plan(
    svc: Option<&Service>,
    pods: &[&PodInfo],
    zones: &Zones,
    existing: &[&EndpointSlice],
    max: usize,
) -> Plan {
    match svc {
        None => Plan::default(),
        Some(s) if !eu::wants_endpoints(s) => Plan::deleting(existing),
        Some(s) => reconcile(s, pods, zones, existing, max),
    }
}

/// Kubernetes' Reconcile: slices of address types the Service no longer has go, each
/// of the others is reconciled on its own.
pub fn reconcile(
    svc: &Service,
    pods: &[&PodInfo],
    zones: &Zones,
    existing: &[&EndpointSlice],
    max: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = eu::address_types(svc)
        .into_iter()
        .map(|t| (t, Vec::new()))
        .collect();
    for s in existing {
        match by_type.get_mut(s.address_type.as_str()) {
            Some(v) => v.push(s),
            None => plan.delete.push((*s).clone()),
        }
    }
    for (t, slices) in by_type {
        let p = reconcile_type(svc, pods, zones, &slices, t, max);
        plan.create.extend(p.create);
        plan.update.extend(p.update);
        plan.delete.extend(p.delete);
    }
    plan
}

/// The endpoints wanted for one set of ports.
#[derive(Debug, Default)]
struct Group {
    ports: Vec<EndpointPort>,
    /// By [`eu::endpoint_key`].
    endpoints: BTreeMap<String, Endpoint>,
}

fn reconcile_type(
    svc: &Service,
    pods: &[&PodInfo],
    zones: &Zones,
    existing: &[&EndpointSlice],
    address_type: &str,
    max: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if owned_by(s, svc) {
            let ports = s.ports.as_deref().unwrap_or(&[]);
            by_ports.entry(eu::port_key(ports)).or_default().push(s);
        } else {
            plan.delete.push((*s).clone());
        }
    }
    let desired = desired(svc, pods, zones, address_type);
    for (key, slices) in &by_ports {
        if !desired.contains_key(key) {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    for (key, group) in desired {
        let slices = by_ports.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let p = reconcile_ports(svc, slices, group, address_type, max);
        plan.create.extend(p.create);
        plan.update.extend(p.update);
        plan.delete.extend(p.delete);
    }
    // Nothing would be left: a placeholder slice (kept if it is there already).
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(svc, Vec::new(), address_type);
        if plan.delete.len() == 1 && placeholder_equal(&plan.delete[0], &placeholder) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    recycle(svc, &mut plan);
    if svc.metadata.deletion_timestamp.is_some() {
        // The garbage collector is at work: nothing new.
        plan.create.clear();
    }
    plan
}

/// Kubernetes' reconcileByPortMapping for the slices of one set of ports.
fn reconcile_ports(
    svc: &Service,
    existing: &[&EndpointSlice],
    group: Group,
    address_type: &str,
    max: usize,
) -> Plan {
    let Group {
        ports,
        endpoints: mut want,
    } = group;
    let mut w = Working::default();
    for s in existing {
        w.keep(svc, s, &mut want);
    }
    w.fill_changed(&mut want, max);
    w.place_rest(svc, &ports, address_type, &mut want, max);
    w.plan.update = w
        .changed
        .iter()
        .filter_map(|n| w.by_name.remove(n))
        .collect();
    w.plan
}

/// The slices of one port set while they are reconciled, by name.
#[derive(Debug, Default)]
struct Working {
    by_name: BTreeMap<String, EndpointSlice>,
    unchanged: BTreeSet<String>,
    changed: BTreeSet<String>,
    plan: Plan,
}

impl Working {
    /// Step 1: keeps in slice `s` the endpoints still wanted (taken from `want`,
    /// updated in place) and drops the rest; an emptied slice is deleted.
    fn keep(&mut self, svc: &Service, s: &EndpointSlice, want: &mut BTreeMap<String, Endpoint>) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut updated = false;
        for e in &s.endpoints {
            if let Some(w) = want.remove(&eu::endpoint_key(e)) {
                updated |= !eu::endpoints_equal_beyond_key(&w, e);
                kept.push(w);
            }
        }
        let (labels, labels_changed) = slice_labels(s.metadata.labels.as_ref(), svc);
        let mut copy = s.clone();
        if updated || kept.len() != s.endpoints.len() {
            if kept.is_empty() {
                self.plan.delete.push(copy);
                return;
            }
            copy.endpoints = kept;
            copy.metadata.labels = Some(labels);
            self.changed.insert(name.clone());
        } else if labels_changed {
            copy.metadata.labels = Some(labels);
            self.changed.insert(name.clone());
        } else {
            self.unchanged.insert(name.clone());
        }
        self.by_name.insert(name, copy);
    }

    /// Step 2: fills the slices being written anyway, fullest first.
    fn fill_changed(&mut self, want: &mut BTreeMap<String, Endpoint>, max: usize) {
        let mut fullest: Vec<(usize, String)> = self
            .changed
            .iter()
            .map(|n| {
                (
                    self.by_name.get(n).map_or(0, |s| s.endpoints.len()),
                    n.clone(),
                )
            })
            .collect();
        fullest.sort_by_key(|(len, _)| Reverse(*len));
        for (_, name) in fullest {
            if let Some(s) = self.by_name.get_mut(&name) {
                fill(s, want, max);
            }
        }
    }

    /// Step 3: puts what is left into the unchanged slice it fills best, or new slices.
    fn place_rest(
        &mut self,
        svc: &Service,
        ports: &[EndpointPort],
        address_type: &str,
        want: &mut BTreeMap<String, Endpoint>,
        max: usize,
    ) {
        while !want.is_empty() {
            let best = if want.len() < max {
                slice_to_fill(&self.unchanged, &self.by_name, want.len(), max)
            } else {
                None
            };
            match best.and_then(|n| self.by_name.get_mut(&n).map(|s| (n, s))) {
                Some((name, s)) => {
                    fill(s, want, max);
                    self.unchanged.remove(&name);
                    self.changed.insert(name);
                }
                None => {
                    let mut s = new_slice(svc, ports.to_vec(), address_type);
                    fill(&mut s, want, max);
                    self.plan.create.push(s);
                }
            }
        }
    }
}

fn fill(s: &mut EndpointSlice, want: &mut BTreeMap<String, Endpoint>, max: usize) {
    while s.endpoints.len() < max {
        let Some((_, e)) = want.pop_first() else {
            return;
        };
        s.endpoints.push(e);
    }
}

/// Kubernetes' getSliceToFill: the unchanged slice closest to full once `n` more are in.
fn slice_to_fill(
    unchanged: &BTreeSet<String>,
    by_name: &BTreeMap<String, EndpointSlice>,
    n: usize,
    max: usize,
) -> Option<String> {
    let mut closest = max;
    let mut best = None;
    for name in unchanged {
        let len = by_name.get(name).map_or(max, |s| s.endpoints.len());
        let Some(diff) = max.checked_sub(n + len) else {
            continue;
        };
        if diff < closest {
            closest = diff;
            best = Some(name.clone());
            if diff == 0 {
                break;
            }
        }
    }
    best
}

/// Slices about to be created take the place of slices about to be deleted (same
/// address type, owned by this Service) instead.
fn recycle(svc: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let d = &plan.delete[i];
        let same_type = plan
            .create
            .last()
            .is_some_and(|c| c.address_type == d.address_type);
        if !(same_type && owned_by(d, svc)) {
            i += 1;
            continue;
        }
        let d = plan.delete.remove(i);
        if let Some(mut c) = plan.create.pop() {
            c.metadata.name = d.metadata.name;
            c.metadata.resource_version = d.metadata.resource_version;
            plan.update.push(c);
        }
    }
}

/// Kubernetes' placeholderSliceCompare: same namespace, labels, owners, address type,
/// and neither has ports or endpoints.
fn placeholder_equal(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let labels = |s: &EndpointSlice| s.metadata.labels.clone().unwrap_or_default();
    let owners = |s: &EndpointSlice| s.metadata.owner_references.clone().unwrap_or_default();
    let empty =
        |s: &EndpointSlice| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(|p| p.is_empty());
    a.metadata.namespace == b.metadata.namespace
        && labels(a) == labels(b)
        && owners(a) == owners(b)
        && a.address_type == b.address_type
        && empty(a)
        && empty(b)
}

fn owned_by(s: &EndpointSlice, svc: &Service) -> bool {
    s.metadata.owner_references.iter().flatten().any(|o| {
        Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1"
    })
}

fn reserved(label: &str) -> bool {
    matches!(
        label,
        eu::LABEL_SERVICE_NAME | eu::LABEL_MANAGED_BY | eu::LABEL_HEADLESS
    )
}

/// Kubernetes' setEndpointSliceLabels: the Service's labels (reserved ones aside), the
/// headless label for a Service without a cluster IP, the service name and manager;
/// and whether the copied labels differ from the slice's.
fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    svc: &Service,
) -> (BTreeMap<String, String>, bool) {
    let unreserved = |m: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        m.into_iter()
            .flatten()
            .filter(|(k, _)| !reserved(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = unreserved(svc.metadata.labels.as_ref());
    let changed = unreserved(current) != labels;
    if !eu::is_service_ip_set(svc) {
        labels.insert(eu::LABEL_HEADLESS.into(), String::new());
    }
    let name = svc.metadata.name.clone().unwrap_or_default();
    labels.insert(eu::LABEL_SERVICE_NAME.into(), name);
    labels.insert(eu::LABEL_MANAGED_BY.into(), CONTROLLER.into());
    (labels, changed)
}

/// A new slice of the Service, named by the API server from `<service>-`.
fn new_slice(svc: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            owner_references: Some(vec![owner]),
            labels: Some(slice_labels(None, svc).0),
            ..ObjectMeta::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Kubernetes' getEndpointPorts: each service port this pod resolves.
fn endpoint_ports(svc: &Service, pod: &PodInfo) -> Vec<EndpointPort> {
    eu::ports(svc)
        .iter()
        .filter_map(|sp| {
            let port = eu::find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Kubernetes' podToEndpoint: serving is the pod's readiness, terminating its deletion,
/// ready is serving and not terminating (or `publishNotReadyAddresses`).
fn pod_to_endpoint(
    pod: &PodInfo,
    zone: Option<String>,
    svc: &Service,
    address_type: &str,
) -> Endpoint {
    let serving = pod.ready;
    let terminating = pod.terminating;
    let ready = eu::publish_not_ready(svc) || (serving && !terminating);
    Endpoint {
        addresses: eu::pod_addresses(pod, address_type),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectReference::default()
        }),
        node_name: (!pod.node_name.is_empty()).then(|| pod.node_name.clone()),
        zone,
        hostname: eu::should_set_hostname(pod, svc).then(|| pod.hostname.clone()),
        ..Endpoint::default()
    }
}

/// The endpoints wanted per set of ports. A pod on a node not known is left out
/// (unless the Service publishes not-ready addresses); its node's arrival brings it in.
fn desired(
    svc: &Service,
    pods: &[&PodInfo],
    zones: &Zones,
    address_type: &str,
) -> BTreeMap<String, Group> {
    let mut out: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.in_endpoints(true)) {
        let ports = endpoint_ports(svc, pod);
        let group = out.entry(eu::port_key(&ports)).or_default();
        if group.ports.is_empty() {
            group.ports = ports;
        }
        let zone = match zones.get(&pod.node_name) {
            Some(z) => z.clone(),
            None if eu::publish_not_ready(svc) => None,
            None => continue,
        };
        let e = pod_to_endpoint(pod, zone, svc, address_type);
        if !e.addresses.is_empty() {
            group.endpoints.insert(eu::endpoint_key(&e), e);
        }
    }
    out
}

/// Applies a plan to the slices of namespace `ns`: creations, then updates, then
/// deletions (a slice already gone is fine), each recorded in `store` as written.
pub(crate) async fn apply_plan(
    client: &kube::Client,
    ns: &str,
    plan: Plan,
    store: &mut SliceStore,
) -> crate::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    for s in plan.create {
        store.wrote(api.create(&pp, &s).await?);
    }
    for s in plan.update {
        let name = s.metadata.name.clone().unwrap_or_default();
        store.wrote(api.replace(&name, &pp, &s).await?);
    }
    for s in plan.delete {
        let name = s.metadata.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: s.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        store.deleted(&s);
    }
    Ok(())
}

const SERVICES: usize = 0;
const PODS: usize = 1;
const NODES: usize = 2;

struct Controller {
    client: kube::Client,
    members: Members,
    zones: Zones,
    slices: SliceStore,
    triggers: TriggerTimes,
    backoff: Backoff,
}

fn zone_of(n: &Node) -> (String, Option<String>) {
    let zone = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ZONE))
        .filter(|z| !z.is_empty())
        .cloned();
    (n.metadata.name.clone().unwrap_or_default(), zone)
}

impl Controller {
    /// A node that comes, goes or changes zone concerns the Services of its pods.
    fn observe_node(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                let zones: Zones = items
                    .into_iter()
                    .filter_map(eu::decode::<Node>)
                    .map(|n| zone_of(&n))
                    .collect();
                if zones != self.zones {
                    dirty.extend(self.members.services.keys().cloned());
                }
                self.zones = zones;
            }
            Change::Apply(v) => {
                let Some((name, zone)) = eu::decode::<Node>(v).map(|n| zone_of(&n)) else {
                    return;
                };
                if self.zones.get(&name) != Some(&zone) {
                    dirty.extend(self.members.on_node(&name));
                    self.zones.insert(name, zone);
                }
            }
            Change::Delete(v) => {
                let Some((name, _)) = eu::decode::<Node>(v).map(|n| zone_of(&n)) else {
                    return;
                };
                if self.zones.remove(&name).is_some() {
                    dirty.extend(self.members.on_node(&name));
                }
            }
        }
    }
}

impl Keyed for Controller {
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty) {
        match source {
            SERVICES => self.members.observe_service(change, dirty),
            PODS => self.members.observe_pod(change, dirty),
            NODES => self.observe_node(change, dirty),
            _ => self.slices.observe(change, dirty),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.members.services.keys().cloned().collect()
    }

    async fn sync(&mut self, key: &str) -> Option<Duration> {
        let svc = self.members.services.get(key);
        let pods = svc.map(|s| self.members.selected(s)).unwrap_or_default();
        let trigger = match svc {
            Some(s) if eu::wants_endpoints(s) => self.triggers.compute(key, s, &pods),
            Some(_) => None,
            None => {
                self.triggers.forget(key);
                None
            }
        };
        let existing = self.slices.of(key);
        let mut plan = plan(svc, &pods, &self.zones, &existing, MAX_ENDPOINTS_PER_SLICE);
        if plan.is_empty() {
            self.backoff.succeeded(key);
            return None;
        }
        for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
            eu::set_trigger_time(&mut s.metadata, trigger);
        }
        let ns = key.split_once('/').map_or("", |(ns, _)| ns);
        let outcome = apply_plan(&self.client, ns, plan, &mut self.slices).await;
        self.backoff
            .settle(key, outcome, "endpoint slices not written")
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, informers: Informers, shutdown: watch::Receiver<bool>) {
    let sources = vec![
        informers.watch("/api/v1/services"),
        informers.watch("/api/v1/pods"),
        informers.watch("/api/v1/nodes"),
        informers.watch("/apis/discovery.k8s.io/v1/endpointslices"),
    ];
    let c = Controller {
        client,
        members: Members::default(),
        zones: Zones::new(),
        slices: SliceStore::new(CONTROLLER),
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

    fn svc(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some("10.43.0.10".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ports: Some(vec![ServicePort {
                    port: 80,
                    protocol: Some("TCP".into()),
                    target_port: Some(target),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn pod(i: usize) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: format!("web-{i:03}"),
            uid: format!("uid-{i}"),
            labels: [("app".to_string(), "web".to_string())].into(),
            node_name: format!("n{}", i % 2),
            ips: vec![format!("10.42.{}.{}", i / 200, i % 200 + 1)],
            ready: true,
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 8080,
            }],
            ..PodInfo::default()
        }
    }

    fn zones() -> Zones {
        [
            ("n0".to_string(), Some("z-a".to_string())),
            ("n1".to_string(), None),
        ]
        .into()
    }

    fn run(svc: &Service, pods: &[PodInfo], existing: &[EndpointSlice]) -> Plan {
        let pods: Vec<&PodInfo> = pods.iter().collect();
        let existing: Vec<&EndpointSlice> = existing.iter().collect();
        plan(
            Some(svc),
            &pods,
            &zones(),
            &existing,
            MAX_ENDPOINTS_PER_SLICE,
        )
    }

    /// The plan's creations as the API server would store them (named, versioned), with
    /// its updates.
    fn stored(plan: &Plan, existing: &[EndpointSlice]) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = existing
            .iter()
            .filter(|e| {
                !plan
                    .delete
                    .iter()
                    .any(|d| d.metadata.name == e.metadata.name)
            })
            .filter(|e| {
                !plan
                    .update
                    .iter()
                    .any(|u| u.metadata.name == e.metadata.name)
            })
            .cloned()
            .collect();
        out.extend(plan.update.iter().cloned());
        for (i, c) in plan.create.iter().enumerate() {
            let mut c = c.clone();
            c.metadata.name = Some(format!("web-new{}-{i}", existing.len()));
            c.metadata.resource_version = Some("1".into());
            out.push(c);
        }
        out
    }

    fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
        slices.iter().map(|s| s.endpoints.len()).collect()
    }

    #[test]
    fn one_slice_for_a_few_ready_pods() {
        let s = svc(IntOrString::Int(8080));
        let p = run(&s, &[pod(0), pod(1), pod(2)], &[]);
        assert!(p.update.is_empty() && p.delete.is_empty());
        let [slice] = p.create.as_slice() else {
            panic!("{p:?}")
        };
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.metadata.labels.clone().unwrap();
        assert_eq!(labels[eu::LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[eu::LABEL_MANAGED_BY], CONTROLLER);
        assert_eq!(labels["tier"], "front");
        assert!(!labels.contains_key(eu::LABEL_HEADLESS));
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let port = &slice.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some(""), Some(8080), Some("TCP"))
        );
        let e = &slice.endpoints[0];
        assert_eq!(e.addresses, ["10.42.0.1"]);
        assert_eq!(e.node_name.as_deref(), Some("n0"));
        assert_eq!(e.zone.as_deref(), Some("z-a"));
        assert_eq!(slice.endpoints[1].zone, None);
        let t = e.target_ref.as_ref().unwrap();
        assert_eq!(
            (t.kind.as_deref(), t.name.as_deref(), t.uid.as_deref()),
            (Some("Pod"), Some("web-000"), Some("uid-0"))
        );
        let c = e.conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        // Stored, nothing changes: nothing to write.
        assert!(run(&s, &[pod(0), pod(1), pod(2)], &stored(&p, &[])).is_empty());
    }

    #[test]
    fn conditions_as_kubernetes_computes_them() {
        let s = svc(IntOrString::Int(8080));
        let mut publishing = s.clone();
        publishing
            .spec
            .as_mut()
            .unwrap()
            .publish_not_ready_addresses = Some(true);
        let ready = pod(0);
        let unready = PodInfo {
            ready: false,
            ..pod(0)
        };
        let terminating = PodInfo {
            terminating: true,
            ..pod(0)
        };
        let done = PodInfo {
            terminal: true,
            ..pod(0)
        };
        // (service, pod) → (ready, serving, terminating), or None: not listed.
        let cases = [
            (&s, &ready, Some((true, true, false))),
            (&s, &unready, Some((false, false, false))),
            (&s, &terminating, Some((false, true, true))),
            (&publishing, &unready, Some((true, false, false))),
            (&publishing, &terminating, Some((true, true, true))),
            (&s, &done, None),
        ];
        for (svc, p, want) in cases {
            let plan = run(svc, std::slice::from_ref(p), &[]);
            let got = plan.create[0].endpoints.first().map(|e| {
                let c = e.conditions.clone().unwrap();
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            });
            assert_eq!(got, want, "{p:?}");
        }
    }

    #[test]
    fn a_hundred_per_slice_and_endpoints_stay_where_they_are() {
        let s = svc(IntOrString::Int(8080));
        let pods: Vec<PodInfo> = (0..250).map(pod).collect();
        let first = run(&s, &pods, &[]);
        assert_eq!(sizes(&first.create), [100, 100, 50]);
        let slices = stored(&first, &[]);
        assert!(run(&s, &pods, &slices).is_empty());
        // One pod goes, two come: the slice that lost one takes one back, the other
        // goes to the slice with room; no slice is created and full ones are left alone.
        let mut changed: Vec<PodInfo> = pods
            .iter()
            .filter(|p| p.name != "web-010")
            .cloned()
            .collect();
        changed.extend([pod(250), pod(251)]);
        let p = run(&s, &changed, &slices);
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        let mut updated: Vec<(String, usize)> = p
            .update
            .iter()
            .map(|u| (u.metadata.name.clone().unwrap(), u.endpoints.len()))
            .collect();
        updated.sort();
        assert_eq!(
            updated,
            [
                ("web-new0-0".to_string(), 100),
                ("web-new0-2".to_string(), 51)
            ]
        );
        let first_slice = &p.update.iter().find(|u| u.endpoints.len() == 100).unwrap();
        assert!(
            first_slice
                .endpoints
                .iter()
                .all(|e| e.target_ref.as_ref().unwrap().name.as_deref() != Some("web-010"))
        );
        // Every pod placed once.
        let after = stored(&p, &slices);
        let placed: BTreeSet<String> = after
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .map(|e| e.target_ref.clone().unwrap().name.unwrap())
            .collect();
        assert_eq!(placed.len(), 251);
        assert!(run(&s, &changed, &after).is_empty());
    }

    #[test]
    fn named_ports_resolve_per_pod_into_slices_per_port_set() {
        let s = svc(IntOrString::String("http".into()));
        let other = PodInfo {
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 9090,
            }],
            ..pod(1)
        };
        let none = PodInfo {
            ports: vec![],
            ..pod(2)
        };
        let p = run(&s, &[pod(0), other, none], &[]);
        let mut got: Vec<(Vec<Option<i32>>, Vec<String>)> = p
            .create
            .iter()
            .map(|c| {
                (
                    c.ports.iter().flatten().map(|p| p.port).collect(),
                    c.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (vec![], vec!["10.42.0.3".to_string()]),
                (vec![Some(8080)], vec!["10.42.0.1".to_string()]),
                (vec![Some(9090)], vec!["10.42.0.2".to_string()]),
            ]
        );
    }

    #[test]
    fn nothing_selected_leaves_one_placeholder() {
        let s = svc(IntOrString::Int(8080));
        let p = run(&s, &[], &[]);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        assert_eq!(p.create[0].ports.as_deref(), Some(&[][..]));
        let placeholder = stored(&p, &[]);
        assert!(run(&s, &[], &placeholder).is_empty());
        // Pods come: the placeholder is reused for them, not deleted and created.
        let p = run(&s, &[pod(0)], &placeholder);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name, placeholder[0].metadata.name);
        assert_eq!(p.update[0].endpoints.len(), 1);
        // And they go: the emptied slice becomes the placeholder again.
        let with_pod = stored(&p, &placeholder);
        let p = run(&s, &[], &with_pod);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update[0].ports.as_deref(), Some(&[][..]));
    }

    #[test]
    fn labels_follow_the_service_and_headless_services_are_marked() {
        let mut s = svc(IntOrString::Int(8080));
        let slices = stored(&run(&s, &[pod(0)], &[]), &[]);
        s.metadata.labels = Some([("tier".to_string(), "back".to_string())].into());
        let p = run(&s, &[pod(0)], &slices);
        assert_eq!(p.update.len(), 1);
        assert_eq!(
            p.update[0].metadata.labels.as_ref().unwrap()["tier"],
            "back"
        );
        assert_eq!(p.update[0].endpoints, slices[0].endpoints);
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let p = run(&s, &[pod(0)], &[]);
        assert_eq!(
            p.create[0].metadata.labels.as_ref().unwrap()[eu::LABEL_HEADLESS],
            ""
        );
    }

    #[test]
    fn hostnames_for_pods_naming_the_service_as_subdomain() {
        let s = svc(IntOrString::Int(8080));
        let named = PodInfo {
            hostname: "web-0".into(),
            subdomain: "web".into(),
            ..pod(0)
        };
        let elsewhere = PodInfo {
            hostname: "x".into(),
            subdomain: "other".into(),
            ..pod(1)
        };
        let p = run(&s, &[named, elsewhere], &[]);
        let hosts: Vec<Option<&str>> = p.create[0]
            .endpoints
            .iter()
            .map(|e| e.hostname.as_deref())
            .collect();
        assert_eq!(hosts, [Some("web-0"), None]);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_them() {
        let s = svc(IntOrString::Int(8080));
        let lost = PodInfo {
            node_name: "gone".into(),
            ..pod(1)
        };
        let p = run(&s, &[pod(0), lost.clone()], &[]);
        assert_eq!(p.create[0].endpoints.len(), 1);
        let mut publishing = s.clone();
        publishing
            .spec
            .as_mut()
            .unwrap()
            .publish_not_ready_addresses = Some(true);
        assert_eq!(
            run(&publishing, &[pod(0), lost], &[]).create[0]
                .endpoints
                .len(),
            2
        );
    }

    #[test]
    fn services_without_selectors_keep_no_slices_and_deleted_ones_are_left_to_gc() {
        let s = svc(IntOrString::Int(8080));
        let slices = stored(&run(&s, &[pod(0)], &[]), &[]);
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let mut selectorless = s.clone();
        selectorless.spec.as_mut().unwrap().selector = None;
        let p = plan(Some(&selectorless), &[], &zones(), &refs, 100);
        assert_eq!(p.delete.len(), 1);
        assert!(plan(None, &[], &zones(), &refs, 100).is_empty());
        // A slice of a former Service of the same name is replaced, not reused.
        let mut renewed = s.clone();
        renewed.metadata.uid = Some("new-uid".into());
        let p = run(&renewed, &[pod(0)], &slices);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
    }

    #[test]
    fn dual_stack_services_get_a_slice_per_family() {
        let mut s = svc(IntOrString::Int(8080));
        s.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
        let p = run(
            &s,
            &[PodInfo {
                ips: vec!["10.42.0.1".into(), "fd00::1".into()],
                ..pod(0)
            }],
            &[],
        );
        let mut got: Vec<(String, Vec<String>)> = p
            .create
            .iter()
            .map(|c| (c.address_type.clone(), c.endpoints[0].addresses.clone()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("IPv4".into(), vec!["10.42.0.1".into()]),
                ("IPv6".into(), vec!["fd00::1".into()])
            ]
        );
        // The family dropped: its slices go.
        let slices = stored(&p, &[]);
        let p = run(
            &svc(IntOrString::Int(8080)),
            &[PodInfo {
                ips: vec!["10.42.0.1".into(), "fd00::1".into()],
                ..pod(0)
            }],
            &slices,
        );
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.delete[0].address_type, "IPv6");
    }
}
