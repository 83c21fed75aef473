//! The roles and bindings every cluster starts with, as kube-apiserver's bootstrap
//! policy lays them out (names, rules, aggregation labels, subjects), so manifests and
//! Helm charts that bind `view` or `system:auth-delegator` mean here what they mean
//! there. Controller roles exist for the controllers skiff runs. Data only: the API
//! server reconciles them at every start.

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
/// `"false"` on a default role or binding leaves the user's edits alone at start.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// The group of every node's own identity (`system:node:<name>`).
pub const NODES: &str = "system:nodes";
/// The group the join token authenticates into (skiff-pki's `StaticTokenAuthenticator`).
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

const AGENT_DNS_ENDPOINTS: &str = "skiff:agent:dns-endpoints";
/// What a node enforcing NetworkPolicies reads (k3s grants its embedded policy
/// controller the same through `system:k3s-controller`).
const NETWORK_POLICY: &str = "skiff:network-policy";
/// What a node's Ingress proxy reads: Ingresses and IngressClasses (Services and
/// EndpointSlices nodes read already as the service proxy). Not Secrets: the Node
/// authorizer lets every node read, by name, only the TLS Secrets Ingresses name.
const INGRESS: &str = "skiff:ingress";
/// What a node's local-path provisioner does: it makes the volumes of claims whose pods
/// were scheduled to it (and grows them), and deletes the released ones it made.
const LOCAL_PATH: &str = "skiff:local-path-provisioner";

/// The controllers skiff runs, by their service account in kube-system.
pub const CONTROLLERS: &[&str] = &[
    "certificate-controller",
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "ingress-status-controller",
    "job-controller",
    "node-controller",
    "persistent-volume-binder",
    "pod-garbage-collector",
    "pv-protection-controller",
    "pvc-protection-controller",
    "replicaset-controller",
    "root-ca-cert-publisher",
    "service-account-controller",
    "service-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
];

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// A rule under construction: `rule(verbs).groups(..).resources(..)`.
struct R(PolicyRule);

fn rule(verbs: &[&str]) -> R {
    R(PolicyRule {
        verbs: strings(verbs),
        ..PolicyRule::default()
    })
}

impl R {
    fn groups(mut self, g: &[&str]) -> R {
        self.0.api_groups = Some(strings(g));
        self
    }
    fn resources(mut self, r: &[&str]) -> R {
        self.0.resources = Some(strings(r));
        self
    }
    fn names(mut self, n: &[&str]) -> R {
        self.0.resource_names = Some(strings(n));
        self
    }
    fn urls(mut self, u: &[&str]) -> R {
        self.0.non_resource_urls = Some(strings(u));
        self
    }
}

fn events() -> R {
    rule(&["create", "patch", "update"])
        .groups(&["", "events.k8s.io"])
        .resources(&["events"])
}

fn meta(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut l = BTreeMap::from([(BOOTSTRAPPING_LABEL.into(), BOOTSTRAPPING_VALUE.into())]);
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(l),
        annotations: Some(BTreeMap::from([(AUTOUPDATE.into(), "true".into())])),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<R>) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name, labels),
        rules: Some(rules.into_iter().map(|r| r.0).collect()),
        aggregation_rule: None,
    }
}

/// admin, edit and view: their rules are the union of the roles labelled to them.
fn aggregated(name: &str, labels: &[(&str, &str)]) -> ClusterRole {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            format!("{AGGREGATE_TO}{name}"),
            "true".into(),
        )])),
        match_expressions: None,
    };
    ClusterRole {
        metadata: meta(None, name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![selector]),
        }),
    }
}

fn to(name: &str) -> (String, String) {
    (format!("{AGGREGATE_TO}{name}"), "true".into())
}

/// Every default ClusterRole, in name order.
pub fn cluster_roles() -> Vec<ClusterRole> {
    let admin = to("admin");
    let edit = to("edit");
    let view = to("view");
    let mut roles = vec![
        aggregated("admin", &[]),
        cluster_role(
            "cluster-admin",
            &[],
            vec![
                rule(&["*"]).groups(&["*"]).resources(&["*"]),
                rule(&["*"]).urls(&["*"]),
            ],
        ),
        aggregated("edit", &[(&admin.0, &admin.1)]),
        cluster_role(
            "system:aggregate-to-admin",
            &[(&admin.0, &admin.1)],
            aggregate_to_admin(),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(&edit.0, &edit.1)],
            aggregate_to_edit(),
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(&view.0, &view.1)],
            aggregate_to_view(),
        ),
        aggregated("view", &[(&edit.0, &edit.1)]),
        // What metrics-server ships: whoever may view may read the metrics API.
        cluster_role(
            "system:aggregated-metrics-reader",
            &[(&admin.0, &admin.1), (&edit.0, &edit.1), (&view.0, &view.1)],
            vec![
                rule(READ)
                    .groups(&["metrics.k8s.io"])
                    .resources(&["nodes", "pods"]),
            ],
        ),
    ];
    roles.extend(system_roles());
    roles.extend(CONTROLLERS.iter().map(|c| controller_role(c)));
    roles.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    roles
}

fn aggregate_to_admin() -> Vec<R> {
    vec![
        rule(&["create"])
            .groups(&["authorization.k8s.io"])
            .resources(&["localsubjectaccessreviews"]),
        rule(READ_WRITE)
            .groups(&["rbac.authorization.k8s.io"])
            .resources(&["rolebindings", "roles"]),
    ]
}

fn aggregate_to_edit() -> Vec<R> {
    let pod_access = ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"];
    vec![
        rule(READ).groups(&[""]).resources(&[
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "secrets",
            "services/proxy",
        ]),
        rule(&["impersonate"])
            .groups(&[""])
            .resources(&["serviceaccounts"]),
        rule(WRITE)
            .groups(&[""])
            .resources(&[&["pods"][..], &pod_access[..]].concat()),
        rule(&["create"])
            .groups(&[""])
            .resources(&["pods/eviction"]),
        rule(WRITE).groups(&[""]).resources(&[
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ]),
        rule(&["create"])
            .groups(&[""])
            .resources(&["serviceaccounts/token"]),
        rule(WRITE).groups(&["apps"]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ]),
        rule(WRITE)
            .groups(&["autoscaling"])
            .resources(&["horizontalpodautoscalers"]),
        rule(WRITE)
            .groups(&["batch"])
            .resources(&["cronjobs", "jobs"]),
        rule(WRITE).groups(&["extensions"]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "ingresses",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicationcontrollers/scale",
        ]),
        rule(WRITE)
            .groups(&["policy"])
            .resources(&["poddisruptionbudgets"]),
        rule(WRITE)
            .groups(&["networking.k8s.io"])
            .resources(&["ingresses", "networkpolicies"]),
        rule(READ_WRITE)
            .groups(&["coordination.k8s.io"])
            .resources(&["leases"]),
    ]
}

fn aggregate_to_view() -> Vec<R> {
    vec![
        rule(READ).groups(&[""]).resources(&[
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ]),
        rule(READ).groups(&[""]).resources(&[
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ]),
        rule(READ).groups(&[""]).resources(&["namespaces"]),
        rule(READ)
            .groups(&["discovery.k8s.io"])
            .resources(&["endpointslices"]),
        rule(READ).groups(&["apps"]).resources(&[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ]),
        rule(READ).groups(&["autoscaling"]).resources(&[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ]),
        rule(READ).groups(&["batch"]).resources(&[
            "cronjobs",
            "cronjobs/status",
            "jobs",
            "jobs/status",
        ]),
        rule(READ).groups(&["extensions"]).resources(&[
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "ingresses",
            "ingresses/status",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "replicationcontrollers/scale",
        ]),
        rule(READ)
            .groups(&["policy"])
            .resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ).groups(&["networking.k8s.io"]).resources(&[
            "ingresses",
            "ingresses/status",
            "networkpolicies",
        ]),
    ]
}

fn approver(signer: &str) -> Vec<R> {
    vec![
        rule(&["approve"])
            .groups(&["certificates.k8s.io"])
            .resources(&["signers"])
            .names(&[signer]),
    ]
}

fn reviews() -> [R; 2] {
    [
        rule(&["create"])
            .groups(&["authentication.k8s.io"])
            .resources(&["tokenreviews"]),
        rule(&["create"])
            .groups(&["authorization.k8s.io"])
            .resources(&["subjectaccessreviews"]),
    ]
}

/// Leases named after the component it elects: `create` any, `get`/`update` its own.
fn leader_lease(name: &str) -> [R; 2] {
    [
        rule(&["create"])
            .groups(&["coordination.k8s.io"])
            .resources(&["leases"]),
        rule(&["get", "update"])
            .groups(&["coordination.k8s.io"])
            .resources(&["leases"])
            .names(&[name]),
    ]
}

fn system_roles() -> Vec<ClusterRole> {
    let mut out = vec![
        cluster_role("system:auth-delegator", &[], reviews().into()),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(&["create"])
                    .groups(&["authorization.k8s.io"])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"])
                    .groups(&["authentication.k8s.io"])
                    .resources(&["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[],
            vec![
                rule(&["create"])
                    .groups(&["certificates.k8s.io"])
                    .resources(&["certificatesigningrequests/nodeclient"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[],
            vec![
                rule(&["create"])
                    .groups(&["certificates.k8s.io"])
                    .resources(&["certificatesigningrequests/selfnodeclient"]),
            ],
        ),
    ];
    for (role, signer) in [
        ("kube-apiserver-client-approver", "kube-apiserver-client"),
        (
            "kube-apiserver-client-kubelet-approver",
            "kube-apiserver-client-kubelet",
        ),
        ("kubelet-serving-approver", "kubelet-serving"),
        ("legacy-unknown-approver", "legacy-unknown"),
    ] {
        out.push(cluster_role(
            &format!("system:certificates.k8s.io:{role}"),
            &[],
            approver(&format!("kubernetes.io/{signer}")),
        ));
    }
    out.extend([
        cluster_role(
            "system:discovery",
            &[],
            vec![rule(&["get"]).urls(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        cluster_role(
            "system:heapster",
            &[],
            vec![
                rule(READ)
                    .groups(&[""])
                    .resources(&["events", "namespaces", "nodes", "pods"]),
                rule(READ)
                    .groups(&["extensions"])
                    .resources(&["deployments"]),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            &[],
            vec![
                rule(READ)
                    .groups(&[""])
                    .resources(&["endpoints", "services"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            kube_controller_manager(),
        ),
        cluster_role(
            "system:kube-dns",
            &[],
            vec![
                rule(&["list", "watch"])
                    .groups(&[""])
                    .resources(&["endpoints", "services"]),
            ],
        ),
        cluster_role("system:kube-scheduler", &[], kube_scheduler()),
        cluster_role(
            "system:kubelet-api-admin",
            &[],
            vec![
                rule(READ).groups(&[""]).resources(&["nodes"]),
                rule(&["proxy"]).groups(&[""]).resources(&["nodes"]),
                rule(&["*"]).groups(&[""]).resources(&[
                    "nodes/log",
                    "nodes/metrics",
                    "nodes/proxy",
                    "nodes/stats",
                ]),
            ],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![rule(&["get"]).urls(&[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ])],
        ),
        cluster_role("system:node", &[], node()),
        cluster_role(
            NETWORK_POLICY,
            &[],
            vec![
                rule(READ).groups(&[""]).resources(&["pods", "namespaces"]),
                rule(READ)
                    .groups(&["networking.k8s.io"])
                    .resources(&["networkpolicies"]),
            ],
        ),
        cluster_role(
            INGRESS,
            &[],
            vec![
                rule(READ)
                    .groups(&["networking.k8s.io"])
                    .resources(&["ingresses", "ingressclasses"]),
            ],
        ),
        cluster_role(
            LOCAL_PATH,
            &[],
            vec![
                rule(&["create", "delete", "get", "list", "update", "watch"])
                    .groups(&[""])
                    .resources(&["persistentvolumes"]),
                rule(READ)
                    .groups(&[""])
                    .resources(&["persistentvolumeclaims"]),
                rule(&["patch", "update"])
                    .groups(&[""])
                    .resources(&["persistentvolumeclaims/status"]),
                rule(READ)
                    .groups(&["storage.k8s.io"])
                    .resources(&["storageclasses"]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![
                rule(&["create", "get", "list", "watch"])
                    .groups(&["certificates.k8s.io"])
                    .resources(&["certificatesigningrequests"]),
            ],
        ),
        cluster_role(
            "system:node-problem-detector",
            &[],
            vec![
                rule(&["get"]).groups(&[""]).resources(&["nodes"]),
                rule(&["patch"]).groups(&[""]).resources(&["nodes/status"]),
                events(),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                rule(&["list", "watch"])
                    .groups(&[""])
                    .resources(&["endpoints", "services"]),
                rule(READ).groups(&[""]).resources(&["nodes"]),
                events(),
                rule(&["list", "watch"])
                    .groups(&["discovery.k8s.io"])
                    .resources(&["endpointslices"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            &[],
            vec![
                rule(&["create", "delete", "get", "list", "watch"])
                    .groups(&[""])
                    .resources(&["persistentvolumes"]),
                rule(&["get", "list", "update", "watch"])
                    .groups(&[""])
                    .resources(&["persistentvolumeclaims"]),
                rule(READ)
                    .groups(&["storage.k8s.io"])
                    .resources(&["storageclasses"]),
                rule(&["watch"]).groups(&[""]).resources(&["events"]),
                events(),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![rule(&["get"]).urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![rule(&["get"]).urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
        cluster_role(
            "system:volume-scheduler",
            &[],
            vec![
                rule(&["get", "list", "patch", "update", "watch"])
                    .groups(&[""])
                    .resources(&["persistentvolumes"]),
                rule(READ)
                    .groups(&["storage.k8s.io"])
                    .resources(&["storageclasses"]),
                rule(&["get", "list", "patch", "update", "watch"])
                    .groups(&[""])
                    .resources(&["persistentvolumeclaims"]),
            ],
        ),
    ]);
    out
}

fn kube_controller_manager() -> Vec<R> {
    let mut r = vec![events()];
    r.extend(leader_lease("kube-controller-manager"));
    r.extend([
        rule(&["create"])
            .groups(&[""])
            .resources(&["secrets", "serviceaccounts"]),
        rule(&["delete"]).groups(&[""]).resources(&["secrets"]),
        rule(&["get"]).groups(&[""]).resources(&[
            "configmaps",
            "namespaces",
            "secrets",
            "serviceaccounts",
        ]),
        rule(&["update"])
            .groups(&[""])
            .resources(&["secrets", "serviceaccounts"]),
    ]);
    r.extend(reviews());
    r.extend([
        rule(&["list", "watch"]).groups(&["*"]).resources(&["*"]),
        rule(&["create"])
            .groups(&[""])
            .resources(&["serviceaccounts/token"]),
    ]);
    r
}

fn kube_scheduler() -> Vec<R> {
    let mut r = vec![events()];
    r.extend(leader_lease("kube-scheduler"));
    r.extend([
        rule(READ).groups(&[""]).resources(&["nodes"]),
        rule(&["delete", "get", "list", "watch"])
            .groups(&[""])
            .resources(&["pods"]),
        rule(&["create"])
            .groups(&[""])
            .resources(&["bindings", "pods/binding"]),
        rule(&["patch", "update"])
            .groups(&[""])
            .resources(&["pods/status"]),
        rule(READ)
            .groups(&[""])
            .resources(&["replicationcontrollers", "services"]),
        rule(READ)
            .groups(&["apps", "extensions"])
            .resources(&["replicasets"]),
        rule(READ).groups(&["apps"]).resources(&["statefulsets"]),
        rule(READ)
            .groups(&["policy"])
            .resources(&["poddisruptionbudgets"]),
        rule(READ)
            .groups(&[""])
            .resources(&["persistentvolumeclaims", "persistentvolumes"]),
    ]);
    r.extend(reviews());
    r.extend([
        rule(READ)
            .groups(&["storage.k8s.io"])
            .resources(&["csinodes"]),
        rule(READ).groups(&[""]).resources(&["namespaces"]),
        rule(READ)
            .groups(&["storage.k8s.io"])
            .resources(&["csidrivers"]),
        rule(READ)
            .groups(&["storage.k8s.io"])
            .resources(&["csistoragecapacities"]),
    ]);
    r
}

fn node() -> Vec<R> {
    vec![
        rule(&["create"])
            .groups(&["authentication.k8s.io"])
            .resources(&["tokenreviews"]),
        rule(&["create"])
            .groups(&["authorization.k8s.io"])
            .resources(&["localsubjectaccessreviews", "subjectaccessreviews"]),
        rule(READ).groups(&[""]).resources(&["services"]),
        rule(&["create", "get", "list", "watch"])
            .groups(&[""])
            .resources(&["nodes"]),
        rule(&["patch", "update"])
            .groups(&[""])
            .resources(&["nodes/status"]),
        rule(&["patch", "update"])
            .groups(&[""])
            .resources(&["nodes"]),
        rule(&["create", "patch", "update"])
            .groups(&[""])
            .resources(&["events"]),
        rule(READ).groups(&[""]).resources(&["pods"]),
        rule(&["create", "delete"])
            .groups(&[""])
            .resources(&["pods"]),
        rule(&["patch", "update"])
            .groups(&[""])
            .resources(&["pods/status"]),
        rule(&["create"])
            .groups(&[""])
            .resources(&["pods/eviction"]),
        rule(READ)
            .groups(&[""])
            .resources(&["configmaps", "secrets"]),
        rule(&["get"])
            .groups(&[""])
            .resources(&["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["get"]).groups(&[""]).resources(&["endpoints"]),
        rule(&["create", "get", "list", "watch"])
            .groups(&["certificates.k8s.io"])
            .resources(&["certificatesigningrequests"]),
        rule(&["create", "delete", "get", "patch", "update"])
            .groups(&["coordination.k8s.io"])
            .resources(&["leases"]),
        rule(&["get"])
            .groups(&["storage.k8s.io"])
            .resources(&["volumeattachments"]),
        rule(&["create"])
            .groups(&[""])
            .resources(&["serviceaccounts/token"]),
        rule(&["get", "patch", "update"])
            .groups(&[""])
            .resources(&["persistentvolumeclaims/status"]),
        rule(READ)
            .groups(&["storage.k8s.io"])
            .resources(&["csidrivers"]),
        rule(&["create", "delete", "get", "patch", "update"])
            .groups(&["storage.k8s.io"])
            .resources(&["csinodes"]),
        rule(READ)
            .groups(&["node.k8s.io"])
            .resources(&["runtimeclasses"]),
    ]
}

/// `<kind>`, `<kind>/status`, `<kind>/finalizers` of a workload controller.
fn owns(groups: &[&str], kind: &str, verbs: &[&str]) -> [R; 3] {
    [
        rule(verbs).groups(groups).resources(&[kind]),
        rule(&["update"])
            .groups(groups)
            .resources(&[&format!("{kind}/status")]),
        rule(&["update"])
            .groups(groups)
            .resources(&[&format!("{kind}/finalizers")]),
    ]
}

fn controller_rules(name: &str) -> Vec<R> {
    let apps = &["apps", "extensions"][..];
    let pods_rw = &["create", "delete", "list", "patch", "watch"][..];
    let mut r: Vec<R> = match name {
        "certificate-controller" => {
            let csr = "certificates.k8s.io";
            vec![
                rule(&["delete", "get", "list", "watch"])
                    .groups(&[csr])
                    .resources(&["certificatesigningrequests"]),
                rule(&["update"]).groups(&[csr]).resources(&[
                    "certificatesigningrequests/approval",
                    "certificatesigningrequests/status",
                ]),
                // kube approves node client certificates; skiff also a node's serving
                // certificate for the addresses its Node reports.
                rule(&["approve"])
                    .groups(&[csr])
                    .resources(&["signers"])
                    .names(&[
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                    ]),
                rule(&["sign"])
                    .groups(&[csr])
                    .resources(&["signers"])
                    .names(&[
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/legacy-unknown",
                    ]),
                rule(&["create"])
                    .groups(&["authorization.k8s.io"])
                    .resources(&["subjectaccessreviews"]),
                rule(READ).groups(&[""]).resources(&["nodes"]),
            ]
        }
        "clusterrole-aggregation-controller" => vec![
            rule(&["escalate", "get", "list", "patch", "update", "watch"])
                .groups(&["rbac.authorization.k8s.io"])
                .resources(&["clusterroles"]),
        ],
        "cronjob-controller" => vec![
            rule(&["get", "list", "update", "watch"])
                .groups(&["batch"])
                .resources(&["cronjobs"]),
            rule(&[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ])
            .groups(&["batch"])
            .resources(&["jobs"]),
            rule(&["update"])
                .groups(&["batch"])
                .resources(&["cronjobs/status"]),
            rule(&["update"])
                .groups(&["batch"])
                .resources(&["cronjobs/finalizers"]),
            rule(&["delete", "list", "watch"])
                .groups(&[""])
                .resources(&["pods"]),
        ],
        "daemon-set-controller" => {
            let mut r: Vec<R> = owns(apps, "daemonsets", READ).into();
            r.extend([
                rule(&["list", "watch"]).groups(&[""]).resources(&["nodes"]),
                rule(pods_rw).groups(&[""]).resources(&["pods"]),
                rule(&["create"]).groups(&[""]).resources(&["pods/binding"]),
                rule(&[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ])
                .groups(&["apps"])
                .resources(&["controllerrevisions"]),
            ]);
            r
        }
        "deployment-controller" => {
            let mut r: Vec<R> =
                owns(apps, "deployments", &["get", "list", "update", "watch"]).into();
            r.extend([
                rule(&[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ])
                .groups(apps)
                .resources(&["replicasets"]),
                rule(&["get", "list", "update", "watch"])
                    .groups(&[""])
                    .resources(&["pods"]),
            ]);
            r
        }
        "disruption-controller" => vec![
            rule(READ).groups(apps).resources(&["deployments"]),
            rule(READ).groups(apps).resources(&["replicasets"]),
            rule(READ)
                .groups(&[""])
                .resources(&["replicationcontrollers"]),
            rule(READ)
                .groups(&["policy"])
                .resources(&["poddisruptionbudgets"]),
            rule(READ).groups(&["apps"]).resources(&["statefulsets"]),
            rule(&["update"])
                .groups(&["policy"])
                .resources(&["poddisruptionbudgets/status"]),
            rule(&["patch", "update"])
                .groups(&[""])
                .resources(&["pods/status"]),
            rule(&["get"]).groups(&["*"]).resources(&["*/scale"]),
        ],
        "endpoint-controller" => vec![
            rule(READ).groups(&[""]).resources(&["pods", "services"]),
            rule(&["create", "delete", "get", "list", "update", "watch"])
                .groups(&[""])
                .resources(&["endpoints"]),
            rule(&["create"])
                .groups(&[""])
                .resources(&["endpoints/restricted"]),
        ],
        "endpointslice-controller" => vec![
            rule(READ)
                .groups(&[""])
                .resources(&["nodes", "pods", "services"]),
            rule(&["update"])
                .groups(&[""])
                .resources(&["services/finalizers"]),
            rule(&["create", "delete", "get", "list", "update", "watch"])
                .groups(&["discovery.k8s.io"])
                .resources(&["endpointslices"]),
        ],
        "endpointslicemirroring-controller" => vec![
            rule(READ)
                .groups(&[""])
                .resources(&["endpoints", "services"]),
            rule(&["update"])
                .groups(&[""])
                .resources(&["services/finalizers"]),
            rule(&["update"])
                .groups(&[""])
                .resources(&["endpoints/finalizers"]),
            rule(&["create", "delete", "get", "list", "update", "watch"])
                .groups(&["discovery.k8s.io"])
                .resources(&["endpointslices"]),
        ],
        "generic-garbage-collector" => vec![
            rule(&["delete", "get", "list", "patch", "update", "watch"])
                .groups(&["*"])
                .resources(&["*"]),
        ],
        "horizontal-pod-autoscaler" => vec![
            rule(READ)
                .groups(&["autoscaling"])
                .resources(&["horizontalpodautoscalers"]),
            rule(&["update"])
                .groups(&["autoscaling"])
                .resources(&["horizontalpodautoscalers/status"]),
            rule(&["get", "update"])
                .groups(&["*"])
                .resources(&["*/scale"]),
            rule(&["list", "watch"]).groups(&[""]).resources(&["pods"]),
            rule(&["list", "watch"])
                .groups(&["metrics.k8s.io"])
                .resources(&["pods"]),
            rule(READ)
                .groups(&["custom.metrics.k8s.io"])
                .resources(&["*"]),
            rule(READ)
                .groups(&["external.metrics.k8s.io"])
                .resources(&["*"]),
        ],
        // skiff's own: the addresses of the nodes serving Ingresses in the status of
        // the Ingresses of skiff's class.
        "ingress-status-controller" => vec![
            rule(&["list", "watch"])
                .groups(&["networking.k8s.io"])
                .resources(&["ingresses", "ingressclasses"]),
            rule(&["patch", "update"])
                .groups(&["networking.k8s.io"])
                .resources(&["ingresses/status"]),
            rule(&["list", "watch"]).groups(&[""]).resources(&["nodes"]),
        ],
        "job-controller" => {
            let mut r: Vec<R> = owns(
                &["batch"],
                "jobs",
                &["get", "list", "patch", "update", "watch"],
            )
            .into();
            r.push(rule(pods_rw).groups(&[""]).resources(&["pods"]));
            r
        }
        "node-controller" => vec![
            rule(&["delete", "get", "list", "patch", "update", "watch"])
                .groups(&[""])
                .resources(&["nodes"]),
            rule(&["patch", "update"])
                .groups(&[""])
                .resources(&["nodes/status"]),
            rule(&["patch", "update"])
                .groups(&[""])
                .resources(&["pods/status"]),
            rule(&["delete", "get", "list", "watch"])
                .groups(&[""])
                .resources(&["pods"]),
        ],
        "persistent-volume-binder" => vec![
            rule(&["create", "delete", "get", "list", "update", "watch"])
                .groups(&[""])
                .resources(&["persistentvolumes"]),
            rule(&["patch", "update"])
                .groups(&[""])
                .resources(&["persistentvolumes/status"]),
            rule(&["get", "list", "update", "watch"])
                .groups(&[""])
                .resources(&["persistentvolumeclaims"]),
            rule(&["patch", "update"])
                .groups(&[""])
                .resources(&["persistentvolumeclaims/status"]),
            rule(&["create", "delete", "get", "list", "watch"])
                .groups(&[""])
                .resources(&["pods"]),
            rule(&["get", "list"]).groups(&[""]).resources(&["nodes"]),
            rule(READ)
                .groups(&["storage.k8s.io"])
                .resources(&["storageclasses"]),
        ],
        "pv-protection-controller" => vec![
            rule(&["get", "list", "update", "watch"])
                .groups(&[""])
                .resources(&["persistentvolumes"]),
        ],
        "pvc-protection-controller" => vec![
            rule(&["get", "list", "update", "watch"])
                .groups(&[""])
                .resources(&["persistentvolumeclaims"]),
            rule(&["get", "list", "watch"])
                .groups(&[""])
                .resources(&["pods"]),
        ],
        "pod-garbage-collector" => {
            return vec![
                rule(&["delete", "list", "watch"])
                    .groups(&[""])
                    .resources(&["pods"]),
                rule(READ).groups(&[""]).resources(&["nodes"]),
                rule(&["patch"]).groups(&[""]).resources(&["pods/status"]),
            ];
        }
        "replicaset-controller" => {
            let mut r: Vec<R> =
                owns(apps, "replicasets", &["get", "list", "update", "watch"]).into();
            r.push(rule(pods_rw).groups(&[""]).resources(&["pods"]));
            r
        }
        "root-ca-cert-publisher" => vec![
            rule(&["create", "update"])
                .groups(&[""])
                .resources(&["configmaps"]),
        ],
        "service-account-controller" => vec![
            rule(&["create"])
                .groups(&[""])
                .resources(&["serviceaccounts"]),
        ],
        "service-controller" => vec![
            rule(READ).groups(&[""]).resources(&["services"]),
            rule(&["patch", "update"])
                .groups(&[""])
                .resources(&["services/status"]),
            rule(&["list", "watch"]).groups(&[""]).resources(&["nodes"]),
        ],
        "statefulset-controller" => vec![
            rule(&["list", "watch"]).groups(&[""]).resources(&["pods"]),
            rule(READ).groups(&["apps"]).resources(&["statefulsets"]),
            rule(&["update"])
                .groups(&["apps"])
                .resources(&["statefulsets/status"]),
            rule(&["update"])
                .groups(&["apps"])
                .resources(&["statefulsets/finalizers"]),
            rule(&["create", "delete", "get", "patch", "update"])
                .groups(&[""])
                .resources(&["pods"]),
            rule(&[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ])
            .groups(&["apps"])
            .resources(&["controllerrevisions"]),
            rule(&["create", "get", "list", "watch"])
                .groups(&[""])
                .resources(&["persistentvolumeclaims"]),
            rule(&["delete", "update"])
                .groups(&[""])
                .resources(&["persistentvolumeclaims"]),
            rule(&["update"])
                .groups(&[""])
                .resources(&["pods/finalizers"]),
        ],
        "ttl-after-finished-controller" => vec![
            rule(&["delete", "get", "list", "watch"])
                .groups(&["batch"])
                .resources(&["jobs"]),
        ],
        other => unreachable!("no role for controller {other}"),
    };
    // Every controller but these records events.
    if name != "clusterrole-aggregation-controller" {
        r.push(events());
    }
    r
}

fn controller_role(name: &str) -> ClusterRole {
    cluster_role(
        &format!("system:controller:{name}"),
        &[],
        controller_rules(name),
    )
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.map(Into::into),
    }
}

pub fn group(name: &str) -> Subject {
    subject("Group", name, None)
}

pub fn user(name: &str) -> Subject {
    subject("User", name, None)
}

pub fn service_account(namespace: &str, name: &str) -> Subject {
    subject("ServiceAccount", name, Some(namespace))
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn cluster_binding(name: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name, &[]),
        role_ref: role_ref("ClusterRole", name),
        subjects: (!subjects.is_empty()).then_some(subjects),
    }
}

/// Every default ClusterRoleBinding (each named as its role), in name order.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let authenticated = || group("system:authenticated");
    let mut out = vec![
        cluster_binding("cluster-admin", vec![group("system:masters")]),
        cluster_binding("system:basic-user", vec![authenticated()]),
        cluster_binding("system:discovery", vec![authenticated()]),
        cluster_binding(
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding(
            "system:kube-dns",
            vec![service_account("kube-system", "kube-dns")],
        ),
        cluster_binding("system:kube-scheduler", vec![user("system:kube-scheduler")]),
        cluster_binding("system:monitoring", vec![group("system:monitoring")]),
        // Bound to no one: the Node authorizer decides for nodes.
        cluster_binding("system:node", vec![]),
        cluster_binding("system:node-proxier", vec![user("system:kube-proxy")]),
        cluster_binding(
            "system:public-info-viewer",
            vec![authenticated(), group("system:unauthenticated")],
        ),
        cluster_binding(
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        cluster_binding(
            "system:volume-scheduler",
            vec![user("system:kube-scheduler")],
        ),
    ];
    // As kubeadm binds them: the join token may ask for a node client certificate
    // (auto-approved), and a node may renew its own.
    for (name, role, subject) in [
        (
            "skiff:kubelet-bootstrap",
            "system:node-bootstrapper",
            BOOTSTRAPPERS,
        ),
        (
            "skiff:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            BOOTSTRAPPERS,
        ),
        (
            "skiff:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            NODES,
        ),
        // skiff's own: every node runs the service proxy and the cluster DNS beside
        // its pods, so nodes hold what kube-proxy and kube-dns hold in Kubernetes.
        ("skiff:node:node-proxier", "system:node-proxier", NODES),
        ("skiff:node:kube-dns", "system:kube-dns", NODES),
        ("skiff:node:network-policy", NETWORK_POLICY, NODES),
        ("skiff:node:ingress", INGRESS, NODES),
        ("skiff:node:local-path-provisioner", LOCAL_PATH, NODES),
    ] {
        let mut b = cluster_binding(name, vec![group(subject)]);
        b.role_ref.name = role.into();
        out.push(b);
    }
    out.extend(CONTROLLERS.iter().map(|c| {
        cluster_binding(
            &format!("system:controller:{c}"),
            vec![service_account("kube-system", c)],
        )
    }));
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The default Roles of kube-system (leader election of the two components, and the
/// `extension-apiserver-authentication` ConfigMap reader).
pub fn roles() -> Vec<Role> {
    let lock = || {
        ["leases", "leasecandidates"]
            .map(|r| {
                rule(&["create", "get", "list", "update", "watch"])
                    .groups(&["coordination.k8s.io"])
                    .resources(&[r])
                    .0
            })
            .to_vec()
    };
    vec![
        // skiff's own: each agent publishes its node's endpoint of the cluster DNS as
        // an EndpointSlice of `kube-dns` (server-side apply).
        Role {
            metadata: meta(Some("kube-system"), AGENT_DNS_ENDPOINTS, &[]),
            rules: Some(vec![
                rule(&[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ])
                .groups(&["discovery.k8s.io"])
                .resources(&["endpointslices"])
                .0,
            ]),
        },
        Role {
            metadata: meta(
                Some("kube-system"),
                "extension-apiserver-authentication-reader",
                &[],
            ),
            rules: Some(vec![
                rule(READ)
                    .groups(&[""])
                    .resources(&["configmaps"])
                    .names(&["extension-apiserver-authentication"])
                    .0,
            ]),
        },
        Role {
            metadata: meta(
                Some("kube-system"),
                "system::leader-locking-kube-controller-manager",
                &[],
            ),
            rules: Some(lock()),
        },
        Role {
            metadata: meta(
                Some("kube-system"),
                "system::leader-locking-kube-scheduler",
                &[],
            ),
            rules: Some(lock()),
        },
    ]
}

pub fn role_bindings() -> Vec<RoleBinding> {
    let binding = |name: &str, role: &str, subjects: Vec<Subject>| RoleBinding {
        metadata: meta(Some("kube-system"), name, &[]),
        role_ref: role_ref("Role", role),
        subjects: Some(subjects),
    };
    let (kcm, sched) = ("system:kube-controller-manager", "system:kube-scheduler");
    let cm_lock = "system::leader-locking-kube-controller-manager";
    let sched_lock = "system::leader-locking-kube-scheduler";
    vec![
        binding(AGENT_DNS_ENDPOINTS, AGENT_DNS_ENDPOINTS, vec![group(NODES)]),
        binding(
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            vec![user(kcm), user(sched)],
        ),
        binding(
            cm_lock,
            cm_lock,
            vec![
                user(kcm),
                service_account("kube-system", "kube-controller-manager"),
            ],
        ),
        binding(
            sched_lock,
            sched_lock,
            vec![
                user(sched),
                service_account("kube-system", "kube-scheduler"),
            ],
        ),
    ]
}
