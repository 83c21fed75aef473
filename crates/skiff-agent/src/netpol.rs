//! NetworkPolicy enforcement on this node: reflectors on policies, pods and namespaces
//! feed `skiff_netpol`, whose table for this node's pods is applied whole with `nft -f`
//! whenever what it would contain changes.
//!
//! A pod is isolated before its containers start: the kubelet hands over a new sandbox's
//! address ([`Enforcer::admit`]) before the API has heard of it, and waits until a table
//! that accounts for the pod is in place. Until the first lists arrive nothing is
//! admitted (fail closed).

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::serde::Deserialize;
use serde_json::Value;
use skiff_kube::reflect::{self, Change};
use skiff_netpol::{NamedPort, Policies, Protocol};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long the kubelet waits for a new pod's rules before trying again later.
const ADMIT_WAIT: Duration = Duration::from_secs(10);

/// The kubelet's handle on the node's enforcement.
#[derive(Clone)]
pub struct Enforcer {
    tx: mpsc::UnboundedSender<(skiff_netpol::Pod, oneshot::Sender<()>)>,
}

impl Enforcer {
    /// Waits until the table in place accounts for `pod` (on its sandbox's address);
    /// false if that did not happen in time.
    pub async fn admit(&self, pod: skiff_netpol::Pod) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send((pod, done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(ADMIT_WAIT, wait).await, Ok(Ok(())))
    }
}

/// What the policies read of `pod`, on `ips` (its sandbox's, before its status has them).
pub fn view(pod: &Value, ips: &[IpAddr]) -> Option<skiff_netpol::Pod> {
    let p = Pod::deserialize(pod).ok()?;
    let mut v = view_of(&p);
    if v.ips.is_empty() {
        v.ips = ips.to_vec();
    }
    Some(v)
}

fn view_of(p: &Pod) -> skiff_netpol::Pod {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(status.and_then(|s| s.pod_ip.as_ref()?.parse::<IpAddr>().ok()));
    }
    let ports = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone()?,
                protocol: Protocol::parse(p.protocol.as_deref())?,
                port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    skiff_netpol::Pod {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        ips,
        ports,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
    }
}

/// The enforcement loop's state: the cluster as the policies see it.
#[derive(Default)]
struct State {
    policies: BTreeMap<String, NetworkPolicy>,
    /// Every pod, with the node it is on.
    pods: BTreeMap<String, (String, skiff_netpol::Pod)>,
    namespaces: BTreeMap<String, skiff_netpol::Namespace>,
    /// Pods of this node the kubelet admitted, by key, until the API shows their address.
    admitted: BTreeMap<String, skiff_netpol::Pod>,
    /// Which of the three reflectors have listed.
    listed: [bool; 3],
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl State {
    fn apply<T: k8s_openapi::serde::de::DeserializeOwned>(
        c: Change,
        map: &mut BTreeMap<String, T>,
    ) {
        let decode = |o: &Value| T::deserialize(o).ok().map(|t| (reflect::key(o), t));
        match c {
            Change::Reset(items) => *map = items.iter().filter_map(|o| decode(o)).collect(),
            Change::Apply(o) => map.extend(decode(&o)),
            Change::Delete(o) => {
                map.remove(&reflect::key(&*o));
            }
        }
    }

    fn pods_change(&mut self, c: Change) {
        let mut typed = BTreeMap::new();
        let reset = matches!(c, Change::Reset(_));
        let deleted = match &c {
            Change::Delete(o) => Some(reflect::key(&**o)),
            _ => None,
        };
        State::apply::<Pod>(c, &mut typed);
        if reset {
            self.pods.clear();
        }
        if let Some(k) = deleted {
            self.pods.remove(&k);
            self.admitted.remove(&k);
        }
        for (k, p) in typed {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let v = view_of(&p);
            if !v.ips.is_empty() {
                self.admitted.remove(&k);
            }
            self.pods.insert(k, (node, v));
        }
    }

    fn namespaces_change(&mut self, c: Change) {
        let mut typed = BTreeMap::new();
        let reset = matches!(c, Change::Reset(_));
        let deleted = match &c {
            Change::Delete(o) => Some(reflect::key(&**o)),
            _ => None,
        };
        State::apply::<Namespace>(c, &mut typed);
        if reset {
            self.namespaces.clear();
        }
        if let Some(k) = deleted {
            self.namespaces.remove(&k);
        }
        for (k, n) in typed {
            self.namespaces.insert(
                k.clone(),
                skiff_netpol::Namespace {
                    name: k,
                    labels: n.metadata.labels.unwrap_or_default(),
                },
            );
        }
    }

    /// The table for `node`'s pods.
    fn ruleset(&self, node: &str) -> String {
        let mut all: BTreeMap<&str, &skiff_netpol::Pod> = self
            .pods
            .iter()
            .map(|(k, (_, p))| (k.as_str(), p))
            .collect();
        for (k, p) in &self.admitted {
            all.insert(k, p);
        }
        let pods: Vec<skiff_netpol::Pod> = all.values().map(|p| (*p).clone()).collect();
        let namespaces: Vec<_> = self.namespaces.values().cloned().collect();
        let compiled = Policies::new(self.policies.values());
        let mine = self
            .pods
            .iter()
            .filter(|(_, (n, _))| n == node)
            .map(|(k, (_, p))| (k.as_str(), p))
            .chain(self.admitted.iter().map(|(k, p)| (k.as_str(), p)));
        let mut local: BTreeMap<&str, &skiff_netpol::Pod> = BTreeMap::new();
        local.extend(mine);
        let isolations: Vec<(IpAddr, skiff_netpol::Isolation)> = local
            .values()
            .filter(|p| !p.host_network)
            .flat_map(|p| {
                let iso = skiff_netpol::evaluate(&compiled, p, &pods, &namespaces);
                p.ips.iter().map(move |ip| (*ip, iso.clone()))
            })
            .filter(|(_, iso)| iso.ingress.is_some() || iso.egress.is_some())
            .collect();
        let refs: Vec<(IpAddr, &skiff_netpol::Isolation)> =
            isolations.iter().map(|(ip, iso)| (*ip, iso)).collect();
        skiff_netpol::nft::ruleset(&refs)
    }
}

/// Starts enforcement for `node`; with `cleanup`, the table goes when it stops.
pub fn spawn(
    client: kube::Client,
    node: String,
    cleanup: bool,
    shutdown: watch::Receiver<bool>,
) -> Enforcer {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(client, node, cleanup, rx, shutdown));
    Enforcer { tx }
}

/// Removes what an earlier run left, for a node where enforcement is turned off.
pub async fn remove() {
    if let Err(e) = crate::iproute::nft(&skiff_netpol::nft::cleanup()).await {
        tracing::warn!(error = %e, "could not remove the network policy table");
    }
}

async fn run(
    client: kube::Client,
    node: String,
    cleanup: bool,
    mut admits: mpsc::UnboundedReceiver<(skiff_netpol::Pod, oneshot::Sender<()>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut policies = reflect::watch_values(
        client.clone(),
        "/apis/networking.k8s.io/v1/networkpolicies",
        None,
    );
    let mut pods = reflect::watch_values(client.clone(), "/api/v1/pods", None);
    let mut namespaces = reflect::watch_values(client, "/api/v1/namespaces", None);
    let mut st = State::default();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut applied: Option<String> = None;
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            Some(c) = policies.recv() => {
                st.listed[0] |= matches!(c, Change::Reset(_));
                State::apply(c, &mut st.policies);
            }
            Some(c) = pods.recv() => {
                st.listed[1] |= matches!(c, Change::Reset(_));
                st.pods_change(c);
            }
            Some(c) = namespaces.recv() => {
                st.listed[2] |= matches!(c, Change::Reset(_));
                st.namespaces_change(c);
            }
            Some((pod, done)) = admits.recv() => {
                st.admitted.insert(key(&pod.namespace, &pod.name), pod);
                waiting.push(done);
            }
            // An apply that failed is tried again.
            _ = retry.tick(), if applied.is_none() => {}
            _ = shutdown.changed() => break,
        }
        if !st.listed.iter().all(|l| *l) {
            continue;
        }
        let want = st.ruleset(&node);
        if applied.as_ref() != Some(&want) {
            match crate::iproute::nft(&want).await {
                Ok(()) => applied = Some(want),
                Err(e) => {
                    tracing::warn!(error = %e, "network policy rules not applied; retrying");
                    continue;
                }
            }
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
    if cleanup {
        remove().await;
    }
}
