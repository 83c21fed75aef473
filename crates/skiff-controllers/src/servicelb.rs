//! The built-in load balancer (`service-lb`), like k3s' ServiceLB without its DaemonSet
//! pods: every Service of `type: LoadBalancer` without a `loadBalancerClass` shows the
//! addresses of the eligible nodes in `status.loadBalancer.ingress` at once (each
//! node's ExternalIPs if it has any, else its InternalIPs; of the Service's IP families;
//! sorted; `ipMode: VIP`). Eligible: Ready, not labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers`, and, once any node
//! carries the `svccontroller.k3s.cattle.io/enablelb` label, labelled `"true"` (k3s'
//! rule); with `externalTrafficPolicy: Local`, only nodes with a ready endpoint of the
//! Service. Kept current as nodes come, go or change; removed when the Service stops
//! being a LoadBalancer. Written through `services/status`, only when it differs.
//!
//! [`ingress`] is the pure decision.

use crate::control::{self, Backoff, Dirty, Keyed};
use crate::endpointutil::{self as eu, Members};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use skiff_kube::informer::Informers;
use skiff_kube::reflect::Change;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::watch;

pub const LABEL_EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
pub const LABEL_ENABLE: &str = "svccontroller.k3s.cattle.io/enablelb";

/// What the load balancer reads of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LbNode {
    pub ready: bool,
    /// Carries the exclude-from-external-load-balancers label.
    pub excluded: bool,
    /// The value of its enablelb label, if it has one.
    pub enable: Option<String>,
    pub external: Vec<String>,
    pub internal: Vec<String>,
}

impl LbNode {
    pub fn from_node(n: &Node) -> LbNode {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let status = n.status.as_ref();
        let addresses = |kind: &str| -> Vec<String> {
            status
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == kind)
                .map(|a| a.address.clone())
                .collect()
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        LbNode {
            ready,
            excluded: labels.contains_key(LABEL_EXCLUDE),
            enable: labels.get(LABEL_ENABLE).cloned(),
            external: addresses("ExternalIP"),
            internal: addresses("InternalIP"),
        }
    }
}

impl LbNode {
    /// The addresses a load balancer publishes for the node: its ExternalIPs if it has
    /// any, else its InternalIPs.
    pub fn public(&self) -> &[String] {
        if self.external.is_empty() {
            &self.internal
        } else {
            &self.external
        }
    }
}

/// Writes `status.loadBalancer.ingress` of the namespaced object at `key` (removed when
/// `want` is empty) with a merge patch of its status; the object as written.
pub(crate) async fn patch_load_balancer<K, T>(
    client: &kube::Client,
    key: &str,
    want: &[T],
) -> crate::Result<Option<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned,
    T: k8s_openapi::serde::Serialize,
{
    let Some((ns, name)) = key.split_once('/') else {
        return Ok(None);
    };
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let ingress = if want.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(want)?
    };
    let body = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    let written = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(Some(written))
}

fn spec_str(
    svc: &Service,
    f: impl Fn(&k8s_openapi::api::core::v1::ServiceSpec) -> Option<&String>,
) -> Option<&str> {
    svc.spec.as_ref().and_then(f).map(String::as_str)
}

/// The ingress `svc` should show: None when it is not this controller's to say (a
/// LoadBalancer of another `loadBalancerClass`), empty when it should show none.
/// `local`: the nodes with a ready endpoint of the Service.
pub fn ingress(
    svc: &Service,
    nodes: &BTreeMap<String, LbNode>,
    local: &BTreeSet<String>,
) -> Option<Vec<LoadBalancerIngress>> {
    if eu::service_type(svc) != "LoadBalancer" {
        return Some(Vec::new());
    }
    if spec_str(svc, |s| s.load_balancer_class.as_ref()).is_some() {
        return None;
    }
    let only_local = spec_str(svc, |s| s.external_traffic_policy.as_ref()) == Some("Local");
    let labelled = nodes.values().any(|n| n.enable.is_some());
    let families = eu::ip_families(svc);
    let ips: BTreeSet<&String> = nodes
        .iter()
        .filter(|(_, n)| n.ready && !n.excluded)
        .filter(|(_, n)| !labelled || n.enable.as_deref() == Some("true"))
        .filter(|(name, _)| !only_local || local.contains(*name))
        .flat_map(|(_, n)| n.public())
        .filter(|ip| eu::family(ip).is_some_and(|f| families.iter().any(|x| x == f)))
        .collect();
    let out = ips
        .into_iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.clone()),
            ip_mode: Some("VIP".into()),
            ..LoadBalancerIngress::default()
        })
        .collect();
    Some(out)
}

fn current(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

/// The nodes with a ready pod endpoint, per EndpointSlice: (Service key, nodes).
fn ready_nodes(s: &EndpointSlice) -> Option<(String, BTreeSet<String>)> {
    let svc = s.metadata.labels.as_ref()?.get(eu::LABEL_SERVICE_NAME)?;
    let ns = s.metadata.namespace.as_deref().unwrap_or("");
    let nodes = s
        .endpoints
        .iter()
        .filter(|e| e.target_ref.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod"))
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.node_name.clone())
        .collect();
    Some((format!("{ns}/{svc}"), nodes))
}

const SERVICES: usize = 0;
const NODES: usize = 1;

struct Controller {
    client: kube::Client,
    /// Services (only; no pods are watched).
    members: Members,
    nodes: BTreeMap<String, LbNode>,
    /// EndpointSlice `namespace/name` → (Service key, nodes with a ready endpoint).
    local: HashMap<String, (String, BTreeSet<String>)>,
    backoff: Backoff,
}

impl Controller {
    fn load_balancers(&self) -> impl Iterator<Item = &String> {
        self.members
            .services
            .iter()
            .filter(|(_, s)| eu::service_type(s) == "LoadBalancer")
            .map(|(k, _)| k)
    }

    fn observe_node(&mut self, c: Change, dirty: &mut Dirty) {
        let changed = match c {
            Change::Reset(items) => {
                let fresh: BTreeMap<String, LbNode> = items
                    .into_iter()
                    .filter_map(eu::decode::<Node>)
                    .map(|n| {
                        (
                            n.metadata.name.clone().unwrap_or_default(),
                            LbNode::from_node(&n),
                        )
                    })
                    .collect();
                let changed = fresh != self.nodes;
                self.nodes = fresh;
                changed
            }
            Change::Apply(v) => eu::decode::<Node>(v).is_some_and(|n| {
                let name = n.metadata.name.clone().unwrap_or_default();
                let lb = LbNode::from_node(&n);
                self.nodes.insert(name, lb.clone()) != Some(lb)
            }),
            Change::Delete(v) => eu::decode::<Node>(v)
                .and_then(|n| self.nodes.remove(n.metadata.name.as_deref().unwrap_or("")))
                .is_some(),
        };
        if changed {
            let keys: Vec<String> = self.load_balancers().cloned().collect();
            dirty.extend(keys);
        }
    }

    /// Records the ready-endpoint nodes of one slice; marks its Service if they changed.
    fn set_local(
        &mut self,
        key: String,
        entry: Option<(String, BTreeSet<String>)>,
        dirty: &mut Dirty,
    ) {
        let old = match entry.clone() {
            Some(e) => self.local.insert(key, e),
            None => self.local.remove(&key),
        };
        if old != entry {
            dirty.extend(old.map(|(s, _)| s).into_iter().chain(entry.map(|(s, _)| s)));
        }
    }

    fn observe_slice(&mut self, c: Change, dirty: &mut Dirty) {
        match c {
            Change::Reset(items) => {
                let keys: Vec<String> = self.local.keys().cloned().collect();
                for k in keys {
                    self.set_local(k, None, dirty);
                }
                for s in items.into_iter().filter_map(eu::decode::<EndpointSlice>) {
                    self.set_local(eu::key_of(&s.metadata), ready_nodes(&s), dirty);
                }
            }
            Change::Apply(v) => {
                if let Some(s) = eu::decode::<EndpointSlice>(v) {
                    self.set_local(eu::key_of(&s.metadata), ready_nodes(&s), dirty);
                }
            }
            Change::Delete(v) => {
                if let Some(s) = eu::decode::<EndpointSlice>(v) {
                    self.set_local(eu::key_of(&s.metadata), None, dirty);
                }
            }
        }
    }

    fn local_nodes(&self, key: &str) -> BTreeSet<String> {
        self.local
            .values()
            .filter(|(svc, _)| svc == key)
            .flat_map(|(_, nodes)| nodes.iter().cloned())
            .collect()
    }

    async fn write(&mut self, key: &str, want: Vec<LoadBalancerIngress>) -> crate::Result<()> {
        if let Some(svc) = patch_load_balancer::<Service, _>(&self.client, key, &want).await? {
            self.members.wrote_service(svc);
        }
        Ok(())
    }
}

impl Keyed for Controller {
    fn observe(&mut self, source: usize, change: Change, dirty: &mut Dirty) {
        match source {
            SERVICES => self.members.observe_service(change, dirty),
            NODES => self.observe_node(change, dirty),
            _ => self.observe_slice(change, dirty),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.members.services.keys().cloned().collect()
    }

    async fn sync(&mut self, key: &str) -> Option<Duration> {
        let svc = self.members.services.get(key)?;
        let want = ingress(svc, &self.nodes, &self.local_nodes(key))?;
        if want == current(svc) {
            self.backoff.succeeded(key);
            return None;
        }
        let outcome = self.write(key, want).await;
        self.backoff
            .settle(key, outcome, "load balancer status not written")
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, informers: Informers, shutdown: watch::Receiver<bool>) {
    let sources = vec![
        informers.watch("/api/v1/services"),
        informers.watch("/api/v1/nodes"),
        informers.watch("/apis/discovery.k8s.io/v1/endpointslices"),
    ];
    let c = Controller {
        client,
        members: Members::default(),
        nodes: BTreeMap::new(),
        local: HashMap::new(),
        backoff: Backoff::default(),
    };
    control::run_keyed(c, sources, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn lb(policy: Option<&str>, class: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ip_families: Some(vec!["IPv4".into()]),
                external_traffic_policy: policy.map(Into::into),
                load_balancer_class: class.map(Into::into),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn node(internal: &str, external: Option<&str>) -> LbNode {
        LbNode {
            ready: true,
            internal: vec![internal.into(), "fd00::1".into()],
            external: external.into_iter().map(Into::into).collect(),
            ..LbNode::default()
        }
    }

    fn ips(v: Option<Vec<LoadBalancerIngress>>) -> Option<Vec<String>> {
        v.map(|v| {
            v.into_iter()
                .inspect(|i| assert_eq!(i.ip_mode.as_deref(), Some("VIP")))
                .filter_map(|i| i.ip)
                .collect()
        })
    }

    #[test]
    fn eligible_nodes_give_their_addresses() {
        let base: BTreeMap<String, LbNode> = [
            ("a".to_string(), node("10.0.0.2", None)),
            ("b".to_string(), node("10.0.0.3", Some("203.0.113.9"))),
            ("c".to_string(), node("10.0.0.1", None)),
        ]
        .into();
        let with = |f: &dyn Fn(&mut BTreeMap<String, LbNode>)| {
            let mut n = base.clone();
            f(&mut n);
            n
        };
        let none = BTreeSet::new();
        type Case<'a> = (
            &'a str,
            BTreeMap<String, LbNode>,
            Service,
            Option<Vec<&'a str>>,
        );
        let cases: Vec<Case> = vec![
            (
                "all ready, sorted",
                base.clone(),
                lb(None, None),
                Some(vec!["10.0.0.1", "10.0.0.2", "203.0.113.9"]),
            ),
            (
                "not ready",
                with(&|n| n.get_mut("a").unwrap().ready = false),
                lb(None, None),
                Some(vec!["10.0.0.1", "203.0.113.9"]),
            ),
            (
                "excluded",
                with(&|n| n.get_mut("c").unwrap().excluded = true),
                lb(None, None),
                Some(vec!["10.0.0.2", "203.0.113.9"]),
            ),
            (
                "enablelb",
                with(&|n| n.get_mut("a").unwrap().enable = Some("true".into())),
                lb(None, None),
                Some(vec!["10.0.0.2"]),
            ),
            (
                "enablelb=false only",
                with(&|n| n.get_mut("a").unwrap().enable = Some("false".into())),
                lb(None, None),
                Some(vec![]),
            ),
            (
                "another class",
                base.clone(),
                lb(None, Some("example.com/lb")),
                None,
            ),
            (
                "local, no endpoints",
                base.clone(),
                lb(Some("Local"), None),
                Some(vec![]),
            ),
            ("no nodes", BTreeMap::new(), lb(None, None), Some(vec![])),
        ];
        for (name, nodes, svc, want) in cases {
            let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(ips(ingress(&svc, &nodes, &none)), want, "{name}");
        }
        let local: BTreeSet<String> = ["b".to_string()].into();
        assert_eq!(
            ips(ingress(&lb(Some("Local"), None), &base, &local)),
            Some(vec!["203.0.113.9".to_string()])
        );
        // Dual-stack Services get both families.
        let mut dual = lb(None, None);
        dual.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
        assert_eq!(ips(ingress(&dual, &base, &none)).unwrap().len(), 4);
        // Not a LoadBalancer (any more): none.
        let mut cluster_ip = lb(None, None);
        cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        assert_eq!(ips(ingress(&cluster_ip, &base, &none)), Some(vec![]));
    }

    #[test]
    fn nodes_are_read_from_their_typed_form() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "a", "labels": {LABEL_EXCLUDE: "", LABEL_ENABLE: "true"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "a"}],
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let lb = LbNode::from_node(&n);
        assert!(lb.ready && lb.excluded);
        assert_eq!(lb.enable.as_deref(), Some("true"));
        assert_eq!(lb.internal, ["10.0.0.2"]);
        assert!(lb.external.is_empty());
    }
}
