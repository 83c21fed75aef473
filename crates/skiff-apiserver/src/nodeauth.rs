//! Nodes in the API server: the `Node` authorization mode (a node reaches only what its
//! pods use, and the TLS Secrets Ingresses name) on a `skiff_nodeauth::Graph` kept by a
//! watch-cache observer of pods, PersistentVolumes and Ingresses, and the
//! NodeRestriction admission plugin (a node writes only its own Node, Lease, pods'
//! status and mirror pods).

use crate::auth::{Attributes, Authorizer, Decision};
use crate::cache::{EventType, Observer, Stored};
use crate::state::ApiServer;
use parking_lot::RwLock;
use serde_json::Value;
use skiff_types::ApiError;
use skiff_types::registry::lookup;

/// The graph of pods, volumes and Ingresses, and the authorizer that reads it.
pub struct NodeAuthorizer {
    graph: RwLock<skiff_nodeauth::Graph>,
    pods: String,
    pvs: String,
    ingresses: String,
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        let prefix = |group, plural| {
            lookup(group, plural)
                .expect("pods, persistentvolumes and ingresses are served")
                .prefix(None)
        };
        NodeAuthorizer {
            graph: RwLock::new(skiff_nodeauth::Graph::new()),
            pods: prefix("", "pods"),
            pvs: prefix("", "persistentvolumes"),
            ingresses: prefix("networking.k8s.io", "ingresses"),
        }
    }
}

impl NodeAuthorizer {
    pub fn prefixes(&self) -> Vec<String> {
        vec![self.pods.clone(), self.pvs.clone(), self.ingresses.clone()]
    }
}

/// The kinds the observer feeds the graph.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fed {
    Pod,
    Pv,
    Ingress,
}

impl Observer for NodeAuthorizer {
    fn observe(&self, kind: EventType, obj: &Stored) {
        let (fed, prefix) = if obj.key.starts_with(&self.pods) {
            (Fed::Pod, &self.pods)
        } else if obj.key.starts_with(&self.pvs) {
            (Fed::Pv, &self.pvs)
        } else if obj.key.starts_with(&self.ingresses) {
            (Fed::Ingress, &self.ingresses)
        } else {
            return;
        };
        // A pod not bound yet reaches nothing and was never in the graph (binding is
        // for good): most creates cost a scan of their bytes, not a parse.
        if fed == Fed::Pod && kind != EventType::Deleted && !mentions(&obj.value, b"\"nodeName\":")
        {
            return;
        }
        let rest = &obj.key[prefix.len()..];
        if kind == EventType::Deleted {
            let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
            let mut g = self.graph.write();
            match fed {
                Fed::Pod => g.remove_pod(ns, name),
                Fed::Pv => g.remove_pv(rest),
                Fed::Ingress => g.remove_ingress(ns, name),
            }
            return;
        }
        // Parsed before the lock: node requests wait on it.
        let Ok(v) = serde_json::from_slice::<Value>(&obj.value) else {
            return;
        };
        let mut g = self.graph.write();
        match fed {
            Fed::Pod => g.set_pod(&v),
            Fed::Pv => g.set_pv(&v),
            Fed::Ingress => g.set_ingress(&v),
        }
    }
}

fn mentions(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes) -> Decision {
        // Every request passes here: users that are not nodes never touch the lock the
        // cache takes for each pod event.
        let not_node = skiff_nodeauth::node_name(&a.user.username, &a.user.groups).is_none();
        if a.path.is_some() || not_node {
            return Decision::NoOpinion(String::new());
        }
        let req = skiff_nodeauth::Request {
            user: &a.user.username,
            groups: &a.user.groups,
            verb: &a.verb,
            api_group: &a.group,
            resource: &a.resource,
            subresource: &a.subresource,
            namespace: &a.namespace,
            name: &a.name,
            field_selector: a.field_selector.as_deref(),
        };
        match self.graph.read().authorize(&req) {
            skiff_nodeauth::Decision::Allow => Decision::Allow(String::new()),
            // Kube's node authorizer never denies: it says why it did not allow, and
            // the next authorizer (RBAC) may still allow.
            skiff_nodeauth::Decision::Deny(why) => Decision::NoOpinion(why),
            skiff_nodeauth::Decision::NoOpinion => Decision::NoOpinion(String::new()),
        }
    }
}

/// What NodeRestriction looks up: pods and Nodes, from the watch cache.
struct CacheLookup<'a>(&'a ApiServer);

impl CacheLookup<'_> {
    fn read(&self, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let ri = lookup("", plural)?;
        let s = self.0.cache.get(&ri.key(ns, name))?;
        serde_json::from_slice(&s.value).ok()
    }
}

impl skiff_nodeauth::Cluster for CacheLookup<'_> {
    fn pod(&self, ns: &str, name: &str) -> Option<skiff_nodeauth::PodBinding> {
        let p = self.read("pods", Some(ns), name)?;
        Some(skiff_nodeauth::PodBinding {
            node_name: p["spec"]["nodeName"].as_str().unwrap_or("").into(),
            uid: p["metadata"]["uid"].as_str().unwrap_or("").into(),
        })
    }

    fn node_uid(&self, name: &str) -> Option<String> {
        let n = self.read("nodes", None, name)?;
        n["metadata"]["uid"].as_str().map(str::to_string)
    }
}

/// The write a request makes, as admission sees it.
pub struct Write<'a> {
    pub operation: skiff_nodeauth::Operation,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old: Option<&'a Value>,
}

impl<'a> Write<'a> {
    /// A create of subresource `sub` (`pods/eviction`, `serviceaccounts/token`).
    pub fn create_sub(t: &'a crate::request::Target, sub: &'a str, body: &'a Value) -> Self {
        Write {
            operation: skiff_nodeauth::Operation::Create,
            group: &t.ri.group,
            resource: &t.ri.plural,
            subresource: sub,
            namespace: t.namespace.as_deref().unwrap_or(""),
            name: t.name(),
            object: Some(body),
            old: None,
        }
    }
}

/// NodeRestriction: writes by nodes (`system:node:<name>` in `system:nodes`) are
/// limited to what is theirs; others pass.
pub fn admit(api: &ApiServer, user: &crate::auth::UserInfo, w: &Write<'_>) -> Result<(), ApiError> {
    if skiff_nodeauth::node_name(&user.username, &user.groups).is_none() {
        return Ok(());
    }
    let attrs = skiff_nodeauth::Attributes {
        user: &user.username,
        groups: &user.groups,
        operation: w.operation,
        api_group: w.group,
        resource: w.resource,
        subresource: w.subresource,
        namespace: w.namespace,
        name: w.name,
        object: w.object,
        old_object: w.old,
    };
    match skiff_nodeauth::admit(&attrs, &CacheLookup(api)) {
        Ok(()) => Ok(()),
        Err(skiff_nodeauth::Rejection::NotFound { kind, name }) => {
            Err(ApiError::not_found(w.group, kind, &name))
        }
        Err(skiff_nodeauth::Rejection::Forbidden(why)) => {
            Err(ApiError::forbidden(w.group, w.resource, w.name, &why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use serde_json::json;

    fn node_reads_secret(a: &NodeAuthorizer, secret: &str) -> Decision {
        reads_secret(a, "system:node:n1", secret)
    }

    fn reads_secret(a: &NodeAuthorizer, user: &str, secret: &str) -> Decision {
        let attrs = Attributes {
            user: UserInfo {
                username: user.into(),
                uid: String::new(),
                groups: vec!["system:nodes".into(), "system:authenticated".into()],
            },
            verb: "get".into(),
            group: String::new(),
            resource: "secrets".into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: secret.into(),
            path: None,
            field_selector: None,
        };
        a.authorize(&attrs)
    }

    #[test]
    fn the_graph_follows_pods_as_the_cache_applies_them() {
        let a = NodeAuthorizer::default();
        let pod = |node: Option<&str>| {
            let mut p = json!({"metadata": {"namespace": "default", "name": "p"},
                "spec": {"volumes": [{"name": "v", "secret": {"secretName": "s"}}], "containers": []}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            let key = format!("{}default/p", a.pods);
            Stored::new(key, serde_json::to_vec(&p).unwrap().into(), 1)
        };
        a.observe(EventType::Added, &pod(None));
        assert!(
            matches!(node_reads_secret(&a, "s"), Decision::NoOpinion(r) if r.contains("no relationship"))
        );
        a.observe(EventType::Modified, &pod(Some("n1")));
        assert_eq!(node_reads_secret(&a, "s"), Decision::Allow(String::new()));
        // Not a node (no `system:node:` name): no opinion, no reason; RBAC decides.
        let other = reads_secret(&a, "jane", "s");
        assert_eq!(other, Decision::NoOpinion(String::new()));
        a.observe(EventType::Deleted, &pod(Some("n1")));
        assert!(matches!(node_reads_secret(&a, "s"), Decision::NoOpinion(_)));
    }

    #[test]
    fn tls_secrets_follow_ingresses_as_the_cache_applies_them() {
        let a = NodeAuthorizer::default();
        assert!(a.prefixes().contains(&"/registry/ingress/".to_string()));
        let ingress = |secret: Option<&str>| {
            let mut i = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"namespace": "default", "name": "web"}, "spec": {}});
            if let Some(s) = secret {
                i["spec"]["tls"] = json!([{"hosts": ["a.example"], "secretName": s}]);
            }
            let key = format!("{}default/web", a.ingresses);
            Stored::new(key, serde_json::to_vec(&i).unwrap().into(), 1)
        };
        let no_rel =
            |d: Decision| matches!(d, Decision::NoOpinion(r) if r.contains("no relationship"));
        assert!(no_rel(node_reads_secret(&a, "tls")));
        a.observe(EventType::Added, &ingress(Some("tls")));
        assert_eq!(node_reads_secret(&a, "tls"), Decision::Allow(String::new()));
        assert_eq!(
            reads_secret(&a, "system:node:n2", "tls"),
            Decision::Allow(String::new()),
            "every node"
        );
        a.observe(EventType::Modified, &ingress(None));
        assert!(no_rel(node_reads_secret(&a, "tls")), "no longer named");
        a.observe(EventType::Modified, &ingress(Some("tls")));
        assert_eq!(node_reads_secret(&a, "tls"), Decision::Allow(String::new()));
        a.observe(EventType::Deleted, &ingress(Some("tls")));
        assert!(no_rel(node_reads_secret(&a, "tls")), "deleted");
    }
}
