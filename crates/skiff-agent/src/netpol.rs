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
    /// `policies` read once per change of theirs, not per pod event.
    compiled: Policies,
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
    fn policies_change(&mut self, c: Change) {
        reflect::absorb(c, &mut self.policies, |_, p: NetworkPolicy| p);
        self.compiled = Policies::new(self.policies.values());
    }

    fn pods_change(&mut self, c: Change) {
        let gone = reflect::absorb(c, &mut self.pods, |_, p: Pod| {
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            (node.unwrap_or_default(), view_of(&p))
        });
        // An admitted pod is dropped once the API shows it with its address, or gone.
        let pods = &self.pods;
        self.admitted
            .retain(|k, _| !gone.contains(k) && pods.get(k).is_none_or(|(_, p)| p.ips.is_empty()));
    }

    fn namespaces_change(&mut self, c: Change) {
        reflect::absorb(c, &mut self.namespaces, |name, n: Namespace| {
            skiff_netpol::Namespace {
                name: name.to_string(),
                labels: n.metadata.labels.unwrap_or_default(),
            }
        });
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
                let iso = skiff_netpol::evaluate(&self.compiled, p, &pods, &namespaces);
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
    let mut dirty = false;
    loop {
        // Biased: a burst of changes is taken whole before the one recompute it needs
        // (with a thousand policies a recompute is milliseconds, a change microseconds).
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(c) = policies.recv() => {
                st.listed[0] |= matches!(c, Change::Reset(_));
                st.policies_change(c);
                dirty = true;
            }
            Some(c) = pods.recv() => {
                st.listed[1] |= matches!(c, Change::Reset(_));
                st.pods_change(c);
                dirty = true;
            }
            Some(c) = namespaces.recv() => {
                st.listed[2] |= matches!(c, Change::Reset(_));
                st.namespaces_change(c);
                dirty = true;
            }
            Some((pod, done)) = admits.recv() => {
                st.admitted.insert(key(&pod.namespace, &pod.name), pod);
                waiting.push(done);
                dirty = true;
            }
            // An apply that failed is tried again.
            _ = retry.tick(), if applied.is_none() => dirty = true,
            _ = std::future::ready(()), if dirty && st.listed.iter().all(|l| *l) => {
                dirty = false;
                if sync(&st, &node, &mut applied).await {
                    for w in waiting.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
        }
    }
    if cleanup {
        remove().await;
    }
}

/// Brings the node's table to what `st` says; whether it now is.
async fn sync(st: &State, node: &str, applied: &mut Option<String>) -> bool {
    let t = std::time::Instant::now();
    let want = st.ruleset(node);
    if applied.as_ref() == Some(&want) {
        return true;
    }
    let computed = t.elapsed();
    match crate::iproute::nft(&want).await {
        Ok(()) => {
            tracing::info!(
                bytes = want.len(),
                compute_ms = computed.as_secs_f64() * 1e3,
                ms = t.elapsed().as_secs_f64() * 1e3,
                "network policies applied"
            );
            *applied = Some(want);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "network policy rules not applied; retrying");
            *applied = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, ip: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}, "status": {}});
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
        }
        p
    }

    fn listed() -> State {
        let mut st = State::default();
        let deny =
            json!({"metadata": {"name": "deny", "namespace": "ns"}, "spec": {"podSelector": {}}});
        st.policies_change(Change::reset(vec![deny]));
        st.namespaces_change(Change::reset(vec![json!({"metadata": {"name": "ns"}})]));
        st.pods_change(Change::reset(vec![pod(
            "elsewhere",
            "n2",
            Some("10.42.1.5"),
        )]));
        st
    }

    #[test]
    fn an_admitted_pod_is_isolated_before_the_api_has_its_address() {
        let mut st = listed();
        assert!(!st.ruleset("n1").contains("in-10.42.0.9"));
        // Each node's table holds its own pods only.
        assert!(st.ruleset("n2").contains("in-10.42.1.5"));
        assert!(!st.ruleset("n1").contains("in-10.42.1.5"));
        // The API knows the pod, not yet its address: the sandbox's is handed over.
        st.pods_change(Change::apply(pod("new", "n1", None)));
        let view = view(&pod("new", "n1", None), &["10.42.0.9".parse().unwrap()]).unwrap();
        st.admitted.insert(key("ns", "new"), view);
        assert!(st.ruleset("n1").contains("in-10.42.0.9"));
        // Once the API shows the address, the API's copy is what counts.
        st.pods_change(Change::apply(pod("new", "n1", Some("10.42.0.9"))));
        assert!(st.admitted.is_empty());
        assert!(st.ruleset("n1").contains("in-10.42.0.9"));
        // Deleted, it is gone from the table.
        st.pods_change(Change::delete(pod("new", "n1", Some("10.42.0.9"))));
        assert!(!st.ruleset("n1").contains("10.42.0.9"));
        // An admitted pod deleted before the API showed its address goes too.
        st.admitted.insert(
            key("ns", "gone"),
            view_of(&Pod::deserialize(&pod("gone", "n1", Some("10.42.0.7"))).unwrap()),
        );
        st.pods_change(Change::delete(pod("gone", "n1", None)));
        assert!(st.admitted.is_empty());
    }
}
