//! The Node authorizer's decision (kube's plugin/pkg/auth/authorizer/node/
//! node_authorizer.go, 1.33 with AuthorizeNodeWithSelectors on).

use std::borrow::Cow;
use std::sync::LazyLock;

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::graph::{Graph, RefKind};
use crate::identity::node_name;
use crate::selector;

/// The namespace of node leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// A request as an authorizer sees it (kube's `authorizer.Attributes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    pub api_group: &'a str,
    /// Empty for a non-resource request (a URL path): nodes are granted none.
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    /// Empty for lists, watches and creates. For a list or watch with a
    /// `metadata.name=<x>` field selector the authorizer takes `<x>`, as kube's
    /// RequestInfo does.
    pub name: &'a str,
    /// The `fieldSelector` query parameter of a list or watch.
    pub field_selector: Option<&'a str>,
}

/// What the Node authorizer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A node asked for what nodes may not have. Kube returns `NoOpinion` with this
    /// reason, so the next authorizer (RBAC) is still asked, and the reason ends the 403
    /// message if none allows; a chain matching kube exactly does the same.
    Deny(String),
    /// Not a node, or nothing the node rules say about the request.
    NoOpinion,
}

/// The rules of the `system:node` ClusterRole (kube's `NodeRules()`), which decide what
/// the graph does not.
pub fn node_rules() -> &'static [PolicyRule] {
    static RULES: LazyLock<Vec<PolicyRule>> = LazyLock::new(|| {
        skiff_rbac::bootstrap::cluster_roles()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some("system:node"))
            .and_then(|r| r.rules)
            .unwrap_or_default()
    });
    &RULES
}

/// One request from one identified node.
struct Ask<'r, 'a> {
    node: &'r str,
    req: &'r Request<'a>,
    name: Cow<'a, str>,
}

impl Ask<'_, '_> {
    fn verb(&self) -> &str {
        self.req.verb
    }

    fn sub(&self) -> &str {
        self.req.subresource
    }

    fn ns(&self) -> &str {
        self.req.namespace
    }
}

fn deny(reason: impl Into<String>) -> Decision {
    Decision::Deny(reason.into())
}

fn no_relationship(node: &str) -> Decision {
    deny(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

/// The object name a request is about: its own, or for a list or watch the value of a
/// `metadata.name` field selector that is a valid path segment.
fn effective_name<'a>(req: &Request<'a>) -> Cow<'a, str> {
    if !req.name.is_empty() || !matches!(req.verb, "list" | "watch") {
        return Cow::Borrowed(req.name);
    }
    req.field_selector
        .and_then(|s| selector::exact_match(s, "metadata.name"))
        .filter(|n| valid_path_segment(n))
        .unwrap_or(Cow::Borrowed(""))
}

fn valid_path_segment(name: &str) -> bool {
    !matches!(name, "." | "..") && !name.contains(['/', '%'])
}

/// Kinds of object the graph answers for.
#[derive(Clone, Copy)]
enum Vertex {
    Named(RefKind),
    Pod,
    Pv,
    Attachment,
}

impl Graph {
    /// Kube's `NodeAuthorizer.Authorize`: requests of `system:node:<name>` users in
    /// `system:nodes` to objects the graph scopes are allowed when the node reaches the
    /// object, other requests when the `system:node` rules allow them.
    pub fn authorize(&self, req: &Request<'_>) -> Decision {
        let Some(node) = node_name(req.user, req.groups) else {
            return Decision::NoOpinion;
        };
        if node.is_empty() {
            return deny(format!("unknown node for user {:?}", req.user));
        }
        if req.resource.is_empty() {
            return Decision::NoOpinion;
        }
        let ask = Ask {
            node,
            req,
            name: effective_name(req),
        };
        self.route(&ask)
    }

    fn route(&self, a: &Ask<'_, '_>) -> Decision {
        let secret = Vertex::Named(RefKind::Secret);
        let claim = Vertex::Named(RefKind::Claim);
        match (a.req.api_group, a.req.resource) {
            ("", "secrets") => self.read_namespaced(a, secret),
            ("", "configmaps") => self.read_namespaced(a, Vertex::Named(RefKind::ConfigMap)),
            ("", "persistentvolumeclaims") if a.sub() == "status" => self.status_update(a, claim),
            ("", "persistentvolumeclaims") => self.get(a, claim),
            ("", "persistentvolumes") => self.get(a, Vertex::Pv),
            ("storage.k8s.io", "volumeattachments") => self.get(a, Vertex::Attachment),
            ("", "serviceaccounts") => self.create_token(a),
            ("coordination.k8s.io", "leases") => lease(a),
            ("storage.k8s.io", "csinodes") => csi_node(a),
            ("", "nodes") => node(a),
            ("", "pods") => self.pod(a),
            _ => by_rules(a),
        }
    }

    fn reaches(&self, node: &str, vertex: Vertex, ns: &str, name: &str) -> bool {
        match vertex {
            Vertex::Named(RefKind::Secret) => self.secret_on(node, ns, name),
            Vertex::Named(kind) => self.named_on(node, kind, ns, name),
            Vertex::Pod => self.pod_on(node, ns, name),
            Vertex::Pv => self.pv_on(node, name),
            Vertex::Attachment => self.attachment_on(node, name),
        }
    }

    /// Kube's `authorize`: a named object the node reaches.
    fn related(&self, a: &Ask<'_, '_>, vertex: Vertex) -> Decision {
        if a.name.is_empty() {
            return deny("No Object name found");
        }
        if self.reaches(a.node, vertex, a.ns(), &a.name) {
            Decision::Allow
        } else {
            no_relationship(a.node)
        }
    }

    /// `get` of one object the node reaches.
    fn get(&self, a: &Ask<'_, '_>, vertex: Vertex) -> Decision {
        if a.verb() != "get" {
            return deny("can only get individual resources of this type");
        }
        if !a.sub().is_empty() {
            return deny("cannot get subresource");
        }
        self.related(a, vertex)
    }

    /// `get`, `list`, `watch` of one namespaced object the node reaches.
    fn read_namespaced(&self, a: &Ask<'_, '_>, vertex: Vertex) -> Decision {
        if !matches!(a.verb(), "get" | "list" | "watch") {
            return deny("can only read resources of this type");
        }
        if !a.sub().is_empty() {
            return deny("cannot read subresource");
        }
        if a.ns().is_empty() {
            return deny("can only read namespaced object of this type");
        }
        self.related(a, vertex)
    }

    /// `update`/`patch` of the status of an object the node reaches.
    fn status_update(&self, a: &Ask<'_, '_>, vertex: Vertex) -> Decision {
        if !matches!(a.verb(), "update" | "patch") {
            return deny("can only get/update/patch this type");
        }
        self.related(a, vertex)
    }

    /// `create` of `serviceaccounts/token` for a ServiceAccount of a pod on the node.
    fn create_token(&self, a: &Ask<'_, '_>) -> Decision {
        if a.verb() != "create" || a.name.is_empty() {
            return deny("can only create tokens for individual service accounts");
        }
        if a.sub() != "token" {
            return deny("can only create token subresource of serviceaccount");
        }
        if self.reaches(
            a.node,
            Vertex::Named(RefKind::ServiceAccount),
            a.ns(),
            &a.name,
        ) {
            Decision::Allow
        } else {
            no_relationship(a.node)
        }
    }

    fn pod(&self, a: &Ask<'_, '_>) -> Decision {
        match (a.sub(), a.verb()) {
            ("", "get") => self.get(a, Vertex::Pod),
            // Kube 1.33 allows only `spec.nodeName=<node>` here. skiff keeps the
            // pre-1.32 rule (any list/watch of pods, as `system:node` grants): one
            // watch per node costs every watcher a wake-up per pod event until the
            // watch cache indexes watchers by node, as kube-apiserver's triggers do,
            // and simulated fleets of thousands share one watch.
            ("", "list" | "watch") => Decision::Allow,
            // Mirror pods, pod status and evictions: NodeRestriction limits them to
            // pods bound to the node.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
                Decision::Allow
            }
            _ => Decision::NoOpinion,
        }
    }
}

/// Kube's `authorizeNode`: any node may register and update (NodeRestriction keeps it
/// to its own Node), but read only its own Node, compared by name so that a kubelet
/// can read it before registering.
fn node(a: &Ask<'_, '_>) -> Decision {
    match (a.sub(), a.verb()) {
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Decision::Allow,
        ("", "get" | "list" | "watch") if *a.name == *a.node => Decision::Allow,
        ("", "get" | "list" | "watch") if a.name.is_empty() => deny(format!(
            "node '{}' cannot read all nodes, only its own Node object",
            a.node
        )),
        ("", "get" | "list" | "watch") => deny(format!(
            "node '{}' cannot read '{}', only its own Node object",
            a.node, a.name
        )),
        _ => Decision::NoOpinion,
    }
}

/// Kube's `authorizeLease`: the node's own lease in `kube-node-lease` (any name on
/// create: NodeRestriction checks it there).
fn lease(a: &Ask<'_, '_>) -> Decision {
    if !matches!(a.verb(), "get" | "create" | "update" | "patch" | "delete") {
        return deny("can only get, create, update, patch, or delete a node lease");
    }
    if a.ns() != NODE_LEASE_NAMESPACE {
        return deny(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    if a.verb() != "create" && *a.name != *a.node {
        return deny("can only access node lease with the same name as the requesting node");
    }
    Decision::Allow
}

/// Kube's `authorizeCSINode`: the node's own CSINode.
fn csi_node(a: &Ask<'_, '_>) -> Decision {
    if !matches!(a.verb(), "get" | "create" | "update" | "patch" | "delete") {
        return deny("can only get, create, update, patch, or delete a CSINode");
    }
    if !a.sub().is_empty() {
        return deny("cannot authorize CSINode subresources");
    }
    if a.verb() != "create" && *a.name != *a.node {
        return deny("can only access CSINode with the same name as the requesting node");
    }
    Decision::Allow
}

/// Everything the graph does not scope: the `system:node` rules.
fn by_rules(a: &Ask<'_, '_>) -> Decision {
    let req = skiff_rbac::Request {
        user: a.req.user,
        groups: a.req.groups,
        verb: a.req.verb,
        target: skiff_rbac::Target::Resource {
            group: a.req.api_group,
            resource: a.req.resource,
            subresource: a.req.subresource,
            namespace: a.req.namespace,
            name: &a.name,
        },
    };
    if node_rules().iter().any(|r| skiff_rbac::allows(r, &req)) {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}
