//! The EndpointSlice mirroring controller (kube-controller-manager's
//! `endpointslicemirroring`): the Endpoints users write for a Service without a
//! selector are mirrored into EndpointSlices managed by
//! `endpointslicemirroring-controller.k8s.io`, one per subset port set and address
//! type, at most 1000 addresses per subset (`addresses` ready, `notReadyAddresses` not),
//! owned by the Endpoints. Endpoints labelled `endpointslice.kubernetes.io/skip-mirror:
//! "true"` (as the API server's own `kubernetes` Endpoints) or used as leader-election
//! locks are not mirrored; mirrored slices go when their Endpoints or Service does or
//! the Service gains a selector.
//!
//! [`plan`] is the pure decision (Kubernetes' mirroring reconciler).

use crate::control::{self, Backoff, Dirty, Keyed};
use crate::endpointslice::apply_plan;
use crate::endpointutil::{self as eu, Plan, SliceStore};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use skiff_kube::informer::Informers;
use skiff_kube::reflect::Change;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::watch;

/// The `endpointslice.kubernetes.io/managed-by` value of mirrored slices.
pub const CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Kubernetes' default `--mirroring-max-endpoints-per-subset`.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether Endpoints may be mirrored at all: not skip-mirror, not a leader lock.
pub fn should_mirror(ep: &Endpoints) -> bool {
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(eu::LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let lock = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(eu::ANNOTATION_LEADER));
    !skip && !lock
}

/// The changes that bring the mirrored slices of one Endpoints (`existing`) to what it
/// says. `selector`: whether its Service has a selector (None: no Service).
pub fn plan(ep: Option<&Endpoints>, selector: Option<bool>, existing: &[&EndpointSlice]) -> Plan {
    match (ep, selector) {
        (Some(ep), Some(false)) if should_mirror(ep) => {
            reconcile(ep, existing, MAX_ENDPOINTS_PER_SUBSET)
        }
        _ => Plan::deleting(existing),
    }
}

/// Slices are kept per (address type, port set).
type Key = (&'static str, String);

#[derive(Debug, Default)]
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<String, Endpoint>,
}

fn slice_ports(ports: Option<&Vec<k8s_openapi::api::core::v1::EndpointPort>>) -> Vec<EndpointPort> {
    ports
        .into_iter()
        .flatten()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// Kubernetes' addressToEndpoint; None for an address that is not an IP.
fn to_endpoint(a: &EndpointAddress, ready: bool) -> Option<(&'static str, Endpoint)> {
    let family = eu::family(&a.ip)?;
    let e = Endpoint {
        addresses: vec![eu::canonical_ip(&a.ip)?],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..EndpointConditions::default()
        }),
        target_ref: a.target_ref.clone(),
        node_name: a.node_name.clone(),
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        ..Endpoint::default()
    };
    Some((family, e))
}

fn desired(ep: &Endpoints, max: usize) -> BTreeMap<Key, Group> {
    let mut out: BTreeMap<Key, Group> = BTreeMap::new();
    for subset in ep.subsets.iter().flatten() {
        let ports = slice_ports(subset.ports.as_ref());
        let pk = eu::port_key(&ports);
        for t in [eu::IPV4, eu::IPV6] {
            out.entry((t, pk.clone())).or_default().ports = ports.clone();
        }
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let mut added = 0;
        for (a, r) in ready.chain(not_ready) {
            if added >= max {
                break;
            }
            let Some((t, e)) = to_endpoint(a, r) else {
                continue;
            };
            if let Some(g) = out.get_mut(&(t, pk.clone())) {
                g.endpoints.insert(eu::endpoint_key(&e), e);
                added += 1;
            }
        }
    }
    out
}

/// The mirrored slice for one group (`name`: the slice it replaces, if any).
fn new_slice(
    ep: &Endpoints,
    ports: Vec<EndpointPort>,
    address_type: &str,
    name: Option<&EndpointSlice>,
) -> EndpointSlice {
    let ep_name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(eu::LABEL_SERVICE_NAME.into(), ep_name.clone());
    labels.insert(eu::LABEL_MANAGED_BY.into(), CONTROLLER.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Endpoints".into(),
        name: ep_name.clone(),
        uid: ep.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let annotations = mirrored_annotations(ep);
    EndpointSlice {
        metadata: ObjectMeta {
            name: name.and_then(|s| s.metadata.name.clone()),
            resource_version: name.and_then(|s| s.metadata.resource_version.clone()),
            generate_name: name.is_none().then(|| format!("{ep_name}-")),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// The Endpoints' annotations but its trigger time and kubectl's last-applied copy.
fn mirrored_annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut a = ep.metadata.annotations.clone().unwrap_or_default();
    a.remove(eu::ANNOTATION_TRIGGER_TIME);
    a.remove(LAST_APPLIED);
    a
}

/// Whether a mirrored slice already says what `want` and the Endpoints' labels and
/// annotations do.
fn unchanged(ep: &Endpoints, s: &EndpointSlice, want: &BTreeMap<String, Endpoint>) -> bool {
    let mut matches = 0;
    for e in &s.endpoints {
        match want.get(&eu::endpoint_key(e)) {
            Some(w) if eu::endpoints_equal_beyond_key(w, e) => matches += 1,
            _ => return false,
        }
    }
    let mut labels = s.metadata.labels.clone().unwrap_or_default();
    labels.remove(eu::LABEL_MANAGED_BY);
    labels.remove(eu::LABEL_SERVICE_NAME);
    matches == want.len()
        && labels == ep.metadata.labels.clone().unwrap_or_default()
        && s.metadata.annotations.clone().unwrap_or_default() == mirrored_annotations(ep)
}

/// Kubernetes' mirroring reconcile: one slice per group (the first existing one kept,
/// rewritten if it differs), groups no longer there deleted, new slices reusing deleted
/// ones of their address type.
pub fn reconcile(ep: &Endpoints, existing: &[&EndpointSlice], max: usize) -> Plan {
    let mut plan = Plan::default();
    let mut by_key: BTreeMap<Key, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        let t = if s.address_type == eu::IPV6 {
            eu::IPV6
        } else {
            eu::IPV4
        };
        let pk = eu::port_key(s.ports.as_deref().unwrap_or(&[]));
        by_key.entry((t, pk)).or_default().push(s);
    }
    let desired = desired(ep, max);
    for (key, slices) in &by_key {
        if !desired.contains_key(key) {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    for (key, group) in desired {
        let slices = by_key.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        if group.endpoints.is_empty() {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
            continue;
        }
        let first = slices.first().copied();
        plan.delete
            .extend(slices.iter().skip(1).map(|s| (*s).clone()));
        if first.is_some_and(|s| unchanged(ep, s, &group.endpoints)) {
            continue;
        }
        let mut s = new_slice(ep, group.ports, key.0, first);
        s.endpoints = group.endpoints.into_values().take(max).collect();
        if first.is_some() {
            plan.update.push(s);
        } else {
            plan.create.push(s);
        }
    }
    recycle(&mut plan);
    plan
}

/// Kubernetes' recycleSlices: per address type, creations take over slices to delete.
fn recycle(plan: &mut Plan) {
    for t in [eu::IPV4, eu::IPV6] {
        loop {
            let c = plan.create.iter().position(|s| s.address_type == t);
            let d = plan.delete.iter().position(|s| s.address_type == t);
            let (Some(c), Some(d)) = (c, d) else { break };
            let mut s = plan.create.remove(c);
            let old = plan.delete.remove(d);
            s.metadata.name = old.metadata.name;
            s.metadata.resource_version = old.metadata.resource_version;
            s.metadata.generate_name = None;
            plan.update.push(s);
        }
    }
}

const ENDPOINTS: usize = 0;
const SERVICES: usize = 1;

struct Controller {
    client: kube::Client,
    endpoints: HashMap<String, Endpoints>,
    /// Service key → whether it has a selector.
    services: HashMap<String, bool>,
    slices: SliceStore,
    backoff: Backoff,
}

fn service_entry(s: &Service) -> (String, bool) {
    (eu::key_of(&s.metadata), eu::selector(s).is_some())
}

impl Controller {
    fn observe_endpoints(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                dirty.extend(self.endpoints.keys().cloned());
                self.endpoints = items
                    .into_iter()
                    .filter_map(eu::decode::<Endpoints>)
                    .map(|e| (eu::key_of(&e.metadata), e))
                    .collect();
                dirty.extend(self.endpoints.keys().cloned());
            }
            Change::Apply(v) => {
                if let Some(e) = eu::decode::<Endpoints>(v) {
                    let key = eu::key_of(&e.metadata);
                    dirty.insert(key.clone());
                    self.endpoints.insert(key, e);
                }
            }
            Change::Delete(v) => {
                if let Some(e) = eu::decode::<Endpoints>(v) {
                    let key = eu::key_of(&e.metadata);
                    self.endpoints.remove(&key);
                    dirty.insert(key);
                }
            }
        }
    }

    /// A Service concerns its Endpoints when it comes, goes, or gains or loses a selector.
    fn observe_service(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                let fresh: HashMap<String, bool> = items
                    .into_iter()
                    .filter_map(eu::decode::<Service>)
                    .map(|s| service_entry(&s))
                    .collect();
                let changed = |a: &HashMap<String, bool>, b: &HashMap<String, bool>| {
                    a.iter()
                        .filter(|(k, v)| b.get(*k) != Some(*v))
                        .map(|(k, _)| k.clone())
                        .collect::<Vec<_>>()
                };
                dirty.extend(changed(&self.services, &fresh));
                dirty.extend(changed(&fresh, &self.services));
                self.services = fresh;
            }
            Change::Apply(v) => {
                if let Some((key, sel)) = eu::decode::<Service>(v).map(|s| service_entry(&s))
                    && self.services.insert(key.clone(), sel) != Some(sel)
                {
                    dirty.insert(key);
                }
            }
            Change::Delete(v) => {
                if let Some((key, _)) = eu::decode::<Service>(v).map(|s| service_entry(&s)) {
                    self.services.remove(&key);
                    dirty.insert(key);
                }
            }
        }
    }
}

impl Keyed for Controller {
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty) {
        match source {
            ENDPOINTS => self.observe_endpoints(change, dirty),
            SERVICES => self.observe_service(change, dirty),
            _ => self.slices.observe(change, dirty),
        }
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.endpoints.keys().cloned().collect();
        keys.extend(self.slices.owners().cloned());
        keys
    }

    async fn sync(&mut self, key: &str) -> Option<Duration> {
        let existing = self.slices.of(key);
        let plan = plan(
            self.endpoints.get(key),
            self.services.get(key).copied(),
            &existing,
        );
        if plan.is_empty() {
            self.backoff.succeeded(key);
            return None;
        }
        let ns = key.split_once('/').map_or("", |(ns, _)| ns);
        let outcome = apply_plan(&self.client, ns, plan, &mut self.slices).await;
        self.backoff
            .settle(key, outcome, "mirrored slices not written")
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, informers: Informers, shutdown: watch::Receiver<bool>) {
    let sources = vec![
        informers.watch("/api/v1/endpoints"),
        informers.watch("/api/v1/services"),
        informers.watch("/apis/discovery.k8s.io/v1/endpointslices"),
    ];
    let c = Controller {
        client,
        endpoints: HashMap::new(),
        services: HashMap::new(),
        slices: SliceStore::new(CONTROLLER),
        backoff: Backoff::default(),
    };
    control::run_keyed(c, sources, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "ns", "uid": "ep-uid",
                "labels": {"team": "a"},
                "annotations": {"note": "x", LAST_APPLIED: "{}", eu::ANNOTATION_TRIGGER_TIME: "t"}},
            "subsets": v,
        }))
        .unwrap()
    }

    fn stored(plan: &Plan) -> Vec<EndpointSlice> {
        plan.create
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name = Some(format!("ext-{i}"));
                s.metadata.resource_version = Some("1".into());
                s
            })
            .chain(plan.update.iter().cloned())
            .collect()
    }

    fn run(ep: &Endpoints, existing: &[EndpointSlice]) -> Plan {
        let refs: Vec<&EndpointSlice> = existing.iter().collect();
        plan(Some(ep), Some(false), &refs)
    }

    #[test]
    fn user_endpoints_are_mirrored() {
        let ep = endpoints(json!([{
            "addresses": [{"ip": "192.0.2.10", "nodeName": "n1"}, {"ip": "2001:db8::1"}],
            "notReadyAddresses": [{"ip": "192.0.2.11", "hostname": "b"}, {"ip": "not-an-ip"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }]));
        let p = run(&ep, &[]);
        type Shown = (String, Vec<(String, Option<bool>)>);
        let mut by_type: Vec<Shown> = p
            .create
            .iter()
            .map(|s| {
                let eps = s
                    .endpoints
                    .iter()
                    .map(|e| {
                        (
                            e.addresses[0].clone(),
                            e.conditions.as_ref().and_then(|c| c.ready),
                        )
                    })
                    .collect();
                (s.address_type.clone(), eps)
            })
            .collect();
        by_type.sort();
        assert_eq!(
            by_type,
            [
                (
                    "IPv4".to_string(),
                    vec![
                        ("192.0.2.10".to_string(), Some(true)),
                        ("192.0.2.11".to_string(), Some(false))
                    ]
                ),
                (
                    "IPv6".to_string(),
                    vec![("2001:db8::1".to_string(), Some(true))]
                ),
            ]
        );
        let s = &p.create[0];
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[eu::LABEL_MANAGED_BY], CONTROLLER);
        assert_eq!(labels[eu::LABEL_SERVICE_NAME], "ext");
        assert_eq!(labels["team"], "a");
        let ann = s.metadata.annotations.clone().unwrap();
        assert_eq!(ann.keys().collect::<Vec<_>>(), ["note"]);
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Endpoints", "ep-uid")
        );
        assert_eq!(s.metadata.generate_name.as_deref(), Some("ext-"));
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port),
            (Some("http"), Some(8080))
        );
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
        // Stored: nothing to write.
        assert!(run(&ep, &stored(&p)).is_empty());
    }

    #[test]
    fn changes_rewrite_the_slice_and_vanished_groups_go() {
        let ep = endpoints(json!([{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}]));
        let slices = stored(&run(&ep, &[]));
        let more = endpoints(
            json!([{"addresses": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.12"}], "ports": [{"port": 80}]}]),
        );
        let p = run(&more, &slices);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("ext-0"));
        assert_eq!(p.update[0].endpoints.len(), 2);
        // Another port: the slice is reused for it.
        let moved =
            endpoints(json!([{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 81}]}]));
        let p = run(&moved, &slices);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].ports.as_ref().unwrap()[0].port, Some(81));
        // No addresses: no slices.
        let empty = endpoints(json!([]));
        assert_eq!(run(&empty, &slices).delete.len(), 1);
    }

    #[test]
    fn a_thousand_addresses_per_subset() {
        let addrs: Vec<_> = (0..1200)
            .map(|i| json!({"ip": format!("10.1.{}.{}", i / 200, i % 200)}))
            .collect();
        let ep = endpoints(json!([{"addresses": addrs, "ports": [{"port": 80}]}]));
        let p = run(&ep, &[]);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].endpoints.len(), 1000);
    }

    #[test]
    fn not_mirrored_when_skipped_selected_or_alone() {
        let mut ep = endpoints(json!([{"addresses": [{"ip": "192.0.2.10"}]}]));
        let slices = stored(&run(&ep, &[]));
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        assert_eq!(plan(Some(&ep), Some(true), &refs).delete.len(), 1);
        assert_eq!(plan(Some(&ep), None, &refs).delete.len(), 1);
        assert_eq!(plan(None, Some(false), &refs).delete.len(), 1);
        ep.metadata.labels = Some([(eu::LABEL_SKIP_MIRROR.to_string(), "true".to_string())].into());
        assert!(!should_mirror(&ep));
        assert_eq!(plan(Some(&ep), Some(false), &refs).delete.len(), 1);
        assert!(plan(Some(&ep), Some(false), &[]).is_empty());
    }
}
