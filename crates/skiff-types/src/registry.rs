//! The table of every built-in resource kind skiff serves. Discovery, routing, storage
//! keys, printers, validation and OpenAPI all key off this one list, so adding a kind is
//! one entry here plus its printer and validation. Kinds defined at run time
//! (CustomResourceDefinitions) use the same [`ResourceInfo`] with owned strings.

use std::borrow::Cow;

/// A name that is `'static` for built-ins and owned for kinds defined at run time.
pub type Str = Cow<'static, str>;

/// A list of names: static for built-ins, owned for kinds defined at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrList {
    Static(&'static [&'static str]),
    Owned(Vec<String>),
}

impl StrList {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (a, b) = match self {
            StrList::Static(s) => (Some(s.iter().copied()), None),
            StrList::Owned(v) => (None, Some(v.iter().map(String::as_str))),
        };
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|s| s == name)
    }
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl serde::Serialize for StrList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Whether objects of a kind live inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Subresources reachable under `/<resource>/<name>/<sub>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: updates touch only `.status`.
    Status,
    /// `scale`: an `autoscaling/v1 Scale` view of `spec.replicas`.
    Scale,
    /// `pods/binding`: assigns `spec.nodeName`.
    Binding,
    /// `pods/eviction`: a PDB-respecting delete.
    Eviction,
    /// `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`: proxied to the node.
    Log,
    Exec,
    Attach,
    PortForward,
    /// `serviceaccounts/token`: TokenRequest.
    Token,
    /// `certificatesigningrequests/approval`: updates touch only the Approved/Denied
    /// conditions.
    Approval,
    /// `nodes/proxy`: HTTP requests carried to the node's agent (its statistics).
    Proxy,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Token => "token",
            Subresource::Approval => "approval",
            Subresource::Proxy => "proxy",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "status" => Subresource::Status,
            "scale" => Subresource::Scale,
            "binding" => Subresource::Binding,
            "eviction" => Subresource::Eviction,
            "log" => Subresource::Log,
            "exec" => Subresource::Exec,
            "attach" => Subresource::Attach,
            "portforward" => Subresource::PortForward,
            "token" => Subresource::Token,
            "approval" => Subresource::Approval,
            "proxy" => Subresource::Proxy,
            _ => return None,
        })
    }

    /// (group, version, kind) of the object a subresource takes and returns, when it is not
    /// the parent kind itself.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Status | Subresource::Approval => None,
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
            Subresource::Log => Some(("", "v1", "Pod")),
            Subresource::Exec | Subresource::Attach => Some(("", "v1", "PodExecOptions")),
            Subresource::PortForward => Some(("", "v1", "PodPortForwardOptions")),
            Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
            Subresource::Proxy => Some(("", "v1", "NodeProxyOptions")),
        }
    }

    /// Verbs a subresource accepts, as discovery lists them.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale | Subresource::Approval => {
                &["get", "patch", "update"]
            }
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                &["create", "get"]
            }
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
        }
    }
}

/// One kind the API serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` is the core group served under `/api/v1`.
    pub group: Str,
    pub version: Str,
    pub kind: Str,
    /// Lower-case plural used in URLs (`pods`).
    pub plural: Str,
    pub singular: Str,
    pub scope: Scope,
    pub short_names: StrList,
    pub categories: StrList,
    pub subresources: Cow<'static, [Subresource]>,
    /// Verbs on the main resource.
    pub verbs: &'static [&'static str],
    /// Key prefix in the store, as Kubernetes lays out etcd (`/registry/pods`).
    /// Objects live at `<prefix>/<namespace>/<name>` or `<prefix>/<name>`.
    pub storage_prefix: Str,
    /// A virtual kind is never stored: a create is answered and forgotten
    /// (SelfSubjectAccessReview and friends).
    pub virtual_create_only: bool,
}

pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const ALL: &[&str] = &["all"];

use Subresource as S;

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $scope:ident,
     short: $short:expr, cat: $cat:expr, sub: $sub:expr, prefix: $prefix:expr) => {
        ResourceInfo {
            group: Cow::Borrowed($group),
            version: Cow::Borrowed($version),
            kind: Cow::Borrowed($kind),
            plural: Cow::Borrowed($plural),
            singular: Cow::Borrowed($singular),
            scope: Scope::$scope,
            short_names: StrList::Static($short),
            categories: StrList::Static($cat),
            subresources: Cow::Borrowed($sub),
            verbs: CRUD,
            storage_prefix: Cow::Borrowed($prefix),
            virtual_create_only: false,
        }
    };
}

macro_rules! review {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $scope:ident) => {
        ResourceInfo {
            group: Cow::Borrowed($group),
            version: Cow::Borrowed($version),
            kind: Cow::Borrowed($kind),
            plural: Cow::Borrowed($plural),
            singular: Cow::Borrowed($singular),
            scope: Scope::$scope,
            short_names: StrList::Static(&[]),
            categories: StrList::Static(&[]),
            subresources: Cow::Borrowed(&[]),
            verbs: CREATE_ONLY,
            storage_prefix: Cow::Borrowed(""),
            virtual_create_only: true,
        }
    };
}

/// Every kind skiff serves, in the order discovery lists groups.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    res!("", "v1", "Namespace", "namespaces", "namespace", Cluster, short: &["ns"], cat: &[], sub: &[S::Status], prefix: "/registry/namespaces"),
    res!("", "v1", "Pod", "pods", "pod", Namespaced, short: &["po"], cat: ALL,
         sub: &[S::Status, S::Binding, S::Eviction, S::Log, S::Exec, S::Attach, S::PortForward],
         prefix: "/registry/pods"),
    res!("", "v1", "Node", "nodes", "node", Cluster, short: &["no"], cat: &[], sub: &[S::Proxy, S::Status], prefix: "/registry/minions"),
    res!("", "v1", "Service", "services", "service", Namespaced, short: &["svc"], cat: ALL, sub: &[S::Status], prefix: "/registry/services/specs"),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", Namespaced, short: &["ep"], cat: &[], sub: &[], prefix: "/registry/services/endpoints"),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", Namespaced, short: &["cm"], cat: &[], sub: &[], prefix: "/registry/configmaps"),
    res!("", "v1", "Secret", "secrets", "secret", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/secrets"),
    res!("", "v1", "Event", "events", "event", Namespaced, short: &["ev"], cat: &[], sub: &[], prefix: "/registry/events"),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", Namespaced, short: &["sa"], cat: &[], sub: &[S::Token], prefix: "/registry/serviceaccounts"),
    res!("", "v1", "PodTemplate", "podtemplates", "podtemplate", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/podtemplates"),
    res!("", "v1", "LimitRange", "limitranges", "limitrange", Namespaced, short: &["limits"], cat: &[], sub: &[], prefix: "/registry/limitranges"),
    res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", Namespaced, short: &["quota"], cat: &[], sub: &[S::Status], prefix: "/registry/resourcequotas"),
    res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", Cluster, short: &["pv"], cat: &[], sub: &[S::Status], prefix: "/registry/persistentvolumes"),
    res!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", Namespaced, short: &["pvc"], cat: &[], sub: &[S::Status], prefix: "/registry/persistentvolumeclaims"),
    res!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", Namespaced, short: &["rc"], cat: ALL, sub: &[S::Status, S::Scale], prefix: "/registry/controllers"),
    // apps/v1
    res!("apps", "v1", "Deployment", "deployments", "deployment", Namespaced, short: &["deploy"], cat: ALL, sub: &[S::Status, S::Scale], prefix: "/registry/deployments"),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", Namespaced, short: &["rs"], cat: ALL, sub: &[S::Status, S::Scale], prefix: "/registry/replicasets"),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", Namespaced, short: &["ds"], cat: ALL, sub: &[S::Status], prefix: "/registry/daemonsets"),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", Namespaced, short: &["sts"], cat: ALL, sub: &[S::Status, S::Scale], prefix: "/registry/statefulsets"),
    res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/controllerrevisions"),
    // batch/v1
    res!("batch", "v1", "Job", "jobs", "job", Namespaced, short: &[], cat: ALL, sub: &[S::Status], prefix: "/registry/jobs"),
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", Namespaced, short: &["cj"], cat: ALL, sub: &[S::Status], prefix: "/registry/cronjobs"),
    // autoscaling/v2
    res!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", Namespaced, short: &["hpa"], cat: ALL, sub: &[S::Status], prefix: "/registry/horizontalpodautoscalers"),
    // autoscaling/v1: the same stored v2 objects, converted on the way in and out (after
    // v2, so lookups by group and plural find the stored version).
    res!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", Namespaced, short: &["hpa"], cat: ALL, sub: &[S::Status], prefix: "/registry/horizontalpodautoscalers"),
    // networking.k8s.io/v1
    res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", Namespaced, short: &["netpol"], cat: &[], sub: &[], prefix: "/registry/networkpolicies"),
    res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", Namespaced, short: &["ing"], cat: &[], sub: &[S::Status], prefix: "/registry/ingress"),
    res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", Cluster, short: &[], cat: &[], sub: &[], prefix: "/registry/ingressclasses"),
    // policy/v1
    res!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", Namespaced, short: &["pdb"], cat: &[], sub: &[S::Status], prefix: "/registry/poddisruptionbudgets"),
    // rbac.authorization.k8s.io/v1
    res!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/roles"),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", Cluster, short: &[], cat: &[], sub: &[], prefix: "/registry/clusterroles"),
    res!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/rolebindings"),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", Cluster, short: &[], cat: &[], sub: &[], prefix: "/registry/clusterrolebindings"),
    // certificates.k8s.io/v1
    res!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", Cluster, short: &["csr"], cat: &[], sub: &[S::Status, S::Approval], prefix: "/registry/certificatesigningrequests"),
    // storage.k8s.io/v1
    res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", Cluster, short: &["sc"], cat: &[], sub: &[], prefix: "/registry/storageclasses"),
    res!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", Cluster, short: &[], cat: &[], sub: &[], prefix: "/registry/csidrivers"),
    res!("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", Cluster, short: &[], cat: &[], sub: &[], prefix: "/registry/csinodes"),
    res!("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", Cluster, short: &[], cat: &[], sub: &[S::Status], prefix: "/registry/volumeattachments"),
    // scheduling.k8s.io/v1
    res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", Cluster, short: &["pc"], cat: &[], sub: &[], prefix: "/registry/priorityclasses"),
    // coordination.k8s.io/v1
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/leases"),
    // discovery.k8s.io/v1
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", Namespaced, short: &[], cat: &[], sub: &[], prefix: "/registry/endpointslices"),
    // events.k8s.io/v1: the same stored events as core/v1, converted on the way in and out.
    res!("events.k8s.io", "v1", "Event", "events", "event", Namespaced, short: &["ev"], cat: &[], sub: &[], prefix: "/registry/events"),
    res!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", Cluster,
         short: &["crd", "crds"], cat: &["api-extensions"], sub: &[S::Status],
         prefix: "/registry/apiextensions.k8s.io/customresourcedefinitions"),
    res!("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", Cluster,
         short: &[], cat: &["api-extensions"], sub: &[S::Status],
         prefix: "/registry/apiregistration.k8s.io/apiservices"),
    res!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", Cluster,
         short: &[], cat: &["api-extensions"], sub: &[],
         prefix: "/registry/mutatingwebhookconfigurations"),
    res!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration", Cluster,
         short: &[], cat: &["api-extensions"], sub: &[],
         prefix: "/registry/validatingwebhookconfigurations"),
    res!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", "validatingadmissionpolicy", Cluster,
         short: &[], cat: &["api-extensions"], sub: &[S::Status],
         prefix: "/registry/validatingadmissionpolicies"),
    res!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", "validatingadmissionpolicybinding", Cluster,
         short: &[], cat: &["api-extensions"], sub: &[],
         prefix: "/registry/validatingadmissionpolicybindings"),
    // authorization.k8s.io/v1: answered by the authorizer, never stored.
    review!(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        Cluster
    ),
    review!(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        Cluster
    ),
    review!(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        Cluster
    ),
    review!(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        Namespaced
    ),
    // authentication.k8s.io/v1
    review!(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        Cluster
    ),
    review!(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        Cluster
    ),
];

impl ResourceInfo {
    /// Whether this is `group`'s `plural`.
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// `pods` or `deployments.apps`, as Kubernetes names a group-resource in messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}/{}/{}", self.storage_prefix, ns, name),
            _ => format!("{}/{}", self.storage_prefix, name),
        }
    }

    /// Store prefix covering a namespace (or every object when `None`), with the trailing `/`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}/{}/", self.storage_prefix, ns),
            _ => format!("{}/", self.storage_prefix),
        }
    }

    /// Objects of this kind share storage with another served kind (events.k8s.io Event,
    /// autoscaling/v1 HorizontalPodAutoscaler).
    pub fn is_storage_alias(&self) -> bool {
        self.group == "events.k8s.io" || (self.group == "autoscaling" && self.version == "v1")
    }
}

/// Looks a kind up by group and URL plural.
pub fn lookup(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Looks a kind up by group, version and kind name.
pub fn lookup_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Groups in discovery order, each with its single served version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((&*r.group, &*r.version));
        }
    }
    out
}

/// Every served (group, version) of the built-in kinds, in table order (a group's
/// stored version first, then views such as autoscaling/v1).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.iter().any(|(g, v)| *g == r.group && *v == r.version) {
            out.push((&*r.group, &*r.version));
        }
    }
    out
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (`""`, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} duplicated",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn keys_follow_kubernetes_layout() {
        let pods = lookup("", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let nodes = lookup("", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/minions/n1");
        assert_eq!(
            lookup("apps", "deployments").unwrap().api_version(),
            "apps/v1"
        );
    }

    #[test]
    fn stored_prefixes_do_not_nest() {
        // A prefix that is a parent of another would make range reads return foreign kinds.
        for a in RESOURCES
            .iter()
            .filter(|r| !r.virtual_create_only && !r.is_storage_alias())
        {
            for b in RESOURCES
                .iter()
                .filter(|r| !r.virtual_create_only && !r.is_storage_alias())
            {
                if std::ptr::eq(a, b) {
                    continue;
                }
                let pa = format!("{}/", a.storage_prefix);
                assert!(
                    !b.storage_prefix.starts_with(&pa),
                    "{} nests in {}",
                    b.storage_prefix,
                    a.storage_prefix
                );
            }
        }
    }
}
