//! The default policy as users meet it: who may do what with nothing but the bootstrap
//! roles and bindings (plus a few bindings of admin/edit/view), and the escalation
//! rules as kube-apiserver's RBAC integration tests exercise them.

use crate::bootstrap;
use crate::escalation::{compact_string, escalation_message, uncovered};
use crate::tests::res as r;
use crate::{Decision, Policy, Request, Target};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// admin/edit/view with their rules gathered as the aggregation controller gathers
/// them (by label, to a fixed point: admin takes edit's, which takes view's).
fn aggregated_roles() -> Vec<ClusterRole> {
    let mut roles = bootstrap::cluster_roles();
    for _ in 0..3 {
        let snapshot = roles.clone();
        for r in roles.iter_mut() {
            let Some(agg) = &r.aggregation_rule else {
                continue;
            };
            let mut rules: Vec<PolicyRule> = Vec::new();
            for sel in agg.cluster_role_selectors.iter().flatten() {
                let want = sel.match_labels.clone().unwrap_or_default();
                for other in &snapshot {
                    let labels = other.metadata.labels.clone().unwrap_or_default();
                    if other.metadata.name == r.metadata.name
                        || !want.iter().all(|(k, v)| labels.get(k) == Some(v))
                    {
                        continue;
                    }
                    for rule in other.rules.iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
            r.rules = Some(rules);
        }
    }
    roles
}

fn bind(p: &mut Policy, ns: &str, role: &str, user: &str) {
    p.set_role_binding(RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{role}-{user}")),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![bootstrap::user(user)]),
    });
}

fn default_policy() -> Policy {
    let mut p = Policy::default();
    for r in aggregated_roles() {
        p.set_cluster_role(r);
    }
    for r in bootstrap::roles() {
        p.set_role(r);
    }
    for b in bootstrap::cluster_role_bindings() {
        p.set_cluster_role_binding(b);
    }
    for b in bootstrap::role_bindings() {
        p.set_role_binding(b);
    }
    bind(&mut p, "a", "view", "viewer");
    bind(&mut p, "a", "edit", "editor");
    bind(&mut p, "a", "admin", "owner");
    p
}

/// Who asks: a user name and groups (authentication adds system:authenticated).
struct Who(&'static str, &'static [&'static str]);

const MASTER: Who = Who("root", &["system:masters", "system:authenticated"]);
const ANON: Who = Who("system:anonymous", &["system:unauthenticated"]);
const USER: Who = Who("jane", &["system:authenticated"]);
const MONITOR: Who = Who("prom", &["system:monitoring", "system:authenticated"]);
const VIEWER: Who = Who("viewer", &["system:authenticated"]);
const EDITOR: Who = Who("editor", &["system:authenticated"]);
const OWNER: Who = Who("owner", &["system:authenticated"]);
const SCHED: Who = Who("system:kube-scheduler", &["system:authenticated"]);
const KCM: Who = Who("system:kube-controller-manager", &["system:authenticated"]);
// RBAC's share of a node (the Node authorizer decides the rest).
const AGENT: Who = Who("system:node:n", &["system:nodes", "system:authenticated"]);
const JOINER: Who = Who(
    "system:bootstrap:abcdef",
    &["system:bootstrappers", "system:authenticated"],
);
const SA_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
    "system:authenticated",
];
const GC: Who = Who(
    "system:serviceaccount:kube-system:generic-garbage-collector",
    SA_GROUPS,
);
const PDB: Who = Who(
    "system:serviceaccount:kube-system:disruption-controller",
    SA_GROUPS,
);
const AGG: Who = Who(
    "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
    SA_GROUPS,
);
const INGRESS_STATUS: Who = Who(
    "system:serviceaccount:kube-system:ingress-status-controller",
    SA_GROUPS,
);
const POD_SA: Who = Who(
    "system:serviceaccount:default:default",
    &[
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ],
);

fn decide(p: &Policy, who: &Who, verb: &str, target: Target<'_>) -> bool {
    let groups: Vec<String> = who.1.iter().map(|g| g.to_string()).collect();
    let req = Request {
        user: who.0,
        groups: &groups,
        verb,
        target,
    };
    matches!(p.authorize(&req), Decision::Allow(_))
}

#[test]
fn the_default_policy_decides_as_kubernetes() {
    let p = default_policy();
    let path = Target::Path;
    let cases: Vec<(&Who, &str, Target<'_>, bool)> = vec![
        (&MASTER, "delete", r("", "nodes", "", "", "n1"), true),
        (&MASTER, "get", path("/metrics"), true),
        // Anonymous: the public paths only.
        (&ANON, "get", path("/healthz"), true),
        (&ANON, "get", path("/version"), true),
        (&ANON, "get", path("/api"), false),
        (&ANON, "list", r("", "pods", "", "default", ""), false),
        // Any user: discovery and reviews of themselves, nothing else.
        (&USER, "get", path("/apis/apps/v1"), true),
        (&USER, "get", path("/openapi/v3"), true),
        (&USER, "get", path("/metrics"), false),
        (
            &USER,
            "create",
            r(
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                "",
                "",
            ),
            true,
        ),
        (
            &USER,
            "create",
            r("authentication.k8s.io", "selfsubjectreviews", "", "", ""),
            true,
        ),
        (
            &USER,
            "create",
            r("authorization.k8s.io", "subjectaccessreviews", "", "", ""),
            false,
        ),
        (&USER, "list", r("", "pods", "", "default", ""), false),
        (&USER, "list", r("", "namespaces", "", "", ""), false),
        (&MONITOR, "get", path("/metrics"), true),
        (&MONITOR, "get", path("/readyz/etcd"), true),
        // view: reads, not Secrets, no exec, nothing outside its namespace.
        (&VIEWER, "list", r("", "pods", "", "a", ""), true),
        (&VIEWER, "get", r("", "pods", "log", "a", "p"), true),
        (&VIEWER, "list", r("apps", "deployments", "", "a", ""), true),
        (
            &VIEWER,
            "get",
            r("apps", "deployments", "scale", "a", "d"),
            true,
        ),
        (&VIEWER, "list", r("", "pods", "", "b", ""), false),
        (&VIEWER, "get", r("", "secrets", "", "a", "s"), false),
        (&VIEWER, "create", r("", "pods", "exec", "a", "p"), false),
        (
            &VIEWER,
            "update",
            r("apps", "deployments", "scale", "a", "d"),
            false,
        ),
        (
            &VIEWER,
            "list",
            r("rbac.authorization.k8s.io", "roles", "", "a", ""),
            false,
        ),
        // edit: view plus writes, Secrets, exec, impersonating service accounts.
        (&EDITOR, "get", r("", "secrets", "", "a", "s"), true),
        (&EDITOR, "create", r("", "pods", "exec", "a", "p"), true),
        (
            &EDITOR,
            "update",
            r("apps", "deployments", "scale", "a", "d"),
            true,
        ),
        (
            &EDITOR,
            "impersonate",
            r("", "serviceaccounts", "", "a", "x"),
            true,
        ),
        (&EDITOR, "list", r("", "pods", "", "a", ""), true),
        (
            &EDITOR,
            "create",
            r("rbac.authorization.k8s.io", "roles", "", "a", ""),
            false,
        ),
        (&EDITOR, "delete", r("", "namespaces", "", "", "a"), false),
        // admin: edit plus roles and bindings of its namespace.
        (
            &OWNER,
            "create",
            r("rbac.authorization.k8s.io", "rolebindings", "", "a", ""),
            true,
        ),
        (
            &OWNER,
            "create",
            r(
                "authorization.k8s.io",
                "localsubjectaccessreviews",
                "",
                "a",
                "",
            ),
            true,
        ),
        (&OWNER, "get", r("", "secrets", "", "a", "s"), true),
        (
            &OWNER,
            "create",
            r("rbac.authorization.k8s.io", "clusterroles", "", "", ""),
            false,
        ),
        // The scheduler: bindings, its own Lease by name only.
        (&SCHED, "create", r("", "pods", "binding", "a", "p"), true),
        (
            &SCHED,
            "update",
            r(
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                "kube-scheduler",
            ),
            true,
        ),
        (
            &SCHED,
            "update",
            r("coordination.k8s.io", "leases", "", "kube-system", "other"),
            true,
        ),
        (
            &SCHED,
            "update",
            r("coordination.k8s.io", "leases", "", "default", "other"),
            false,
        ),
        (&SCHED, "delete", r("", "nodes", "", "", "n"), false),
        // The controller manager lists and watches everything, writes little.
        (&KCM, "watch", r("apps", "statefulsets", "", "", ""), true),
        (&KCM, "delete", r("", "pods", "", "a", "p"), false),
        (
            &KCM,
            "update",
            r(
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                "kube-controller-manager",
            ),
            true,
        ),
        (&GC, "delete", r("batch", "jobs", "", "a", "j"), true),
        (&GC, "create", r("batch", "jobs", "", "a", ""), false),
        (
            &PDB,
            "get",
            r("apps", "statefulsets", "scale", "a", "s"),
            true,
        ),
        (
            &PDB,
            "update",
            r("apps", "statefulsets", "status", "a", "s"),
            false,
        ),
        (
            &AGG,
            "escalate",
            r("rbac.authorization.k8s.io", "clusterroles", "", "", "admin"),
            true,
        ),
        (
            &AGG,
            "create",
            r("rbac.authorization.k8s.io", "clusterroles", "", "", ""),
            false,
        ),
        // Node agents: RBAC grants them the proxy's, the DNS's and the Ingress
        // proxy's reads; the Node authorizer the kubelet's and the TLS Secrets
        // Ingresses name.
        (&AGENT, "get", r("", "secrets", "", "a", "s"), false),
        (&AGENT, "watch", r("", "secrets", "", "", ""), false),
        (&AGENT, "update", r("", "secrets", "", "a", "s"), false),
        (
            &AGENT,
            "list",
            r("networking.k8s.io", "ingresses", "", "", ""),
            true,
        ),
        (
            &AGENT,
            "watch",
            r("networking.k8s.io", "ingressclasses", "", "", ""),
            true,
        ),
        (
            &AGENT,
            "update",
            r("networking.k8s.io", "ingresses", "status", "a", "i"),
            false,
        ),
        (
            &INGRESS_STATUS,
            "patch",
            r("networking.k8s.io", "ingresses", "status", "a", "i"),
            true,
        ),
        (
            &INGRESS_STATUS,
            "update",
            r("networking.k8s.io", "ingresses", "", "a", "i"),
            false,
        ),
        (&INGRESS_STATUS, "watch", r("", "nodes", "", "", ""), true),
        (
            &AGENT,
            "list",
            r("discovery.k8s.io", "endpointslices", "", "", ""),
            true,
        ),
        (&AGENT, "update", r("", "nodes", "status", "", "n"), false),
        (
            &AGENT,
            "patch",
            r(
                "discovery.k8s.io",
                "endpointslices",
                "",
                "kube-system",
                "kube-dns-n",
            ),
            true,
        ),
        (
            &AGENT,
            "patch",
            r("discovery.k8s.io", "endpointslices", "", "a", "x"),
            false,
        ),
        (
            &AGENT,
            "create",
            r(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "selfnodeclient",
                "",
                "",
            ),
            true,
        ),
        (
            &AGENT,
            "create",
            r(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "nodeclient",
                "",
                "",
            ),
            false,
        ),
        // The join token: a CSR, and nothing else.
        (
            &JOINER,
            "create",
            r(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                "",
                "",
            ),
            true,
        ),
        (
            &JOINER,
            "create",
            r(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "nodeclient",
                "",
                "",
            ),
            true,
        ),
        (
            &JOINER,
            "watch",
            r(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                "",
                "",
            ),
            true,
        ),
        (&JOINER, "list", r("", "pods", "", "", ""), false),
        (&JOINER, "get", r("", "nodes", "", "", "n"), false),
        (&JOINER, "create", r("", "nodes", "", "", ""), false),
        (&AGENT, "create", r("", "pods", "binding", "a", "p"), false),
        (&AGENT, "delete", r("", "nodes", "", "", "n"), false),
        // A pod's token: issuer discovery, nothing of the cluster.
        (&POD_SA, "get", path("/openid/v1/jwks"), true),
        (&POD_SA, "list", r("", "pods", "", "default", ""), false),
        (&POD_SA, "create", r("", "pods", "", "default", ""), false),
        (&USER, "get", path("/openid/v1/jwks"), false),
    ];
    let mut wrong = Vec::new();
    for (who, verb, target, want) in cases {
        let got = decide(&p, who, verb, target.clone());
        if got != want {
            wrong.push(format!(
                "{} {verb} {target:?}: got {got}, want {want}",
                who.0
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn aggregated_roles_nest_view_in_edit_in_admin() {
    let roles = aggregated_roles();
    let rules = |name: &str| {
        roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .and_then(|r| r.rules.clone())
            .unwrap_or_default()
    };
    let (view, edit, admin) = (rules("view"), rules("edit"), rules("admin"));
    assert!(!view.is_empty());
    assert!(uncovered(&edit, &view).is_empty(), "edit holds view");
    assert!(uncovered(&admin, &edit).is_empty(), "admin holds edit");
    assert!(
        !uncovered(&view, &edit).is_empty(),
        "view does not hold edit"
    );
}

#[test]
fn every_default_object_is_labelled_and_autoupdated() {
    let metas = bootstrap::cluster_roles()
        .into_iter()
        .map(|r| r.metadata)
        .chain(
            bootstrap::cluster_role_bindings()
                .into_iter()
                .map(|b| b.metadata),
        )
        .chain(bootstrap::roles().into_iter().map(|r| r.metadata))
        .chain(bootstrap::role_bindings().into_iter().map(|b| b.metadata));
    for m in metas {
        let labels = m.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get(bootstrap::BOOTSTRAPPING_LABEL)
                .map(String::as_str),
            Some(bootstrap::BOOTSTRAPPING_VALUE),
            "{:?}",
            m.name
        );
        assert_eq!(
            m.annotations
                .unwrap_or_default()
                .get(bootstrap::AUTOUPDATE)
                .map(String::as_str),
            Some("true")
        );
    }
    // Every binding's role exists.
    let roles: Vec<String> = bootstrap::cluster_roles()
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    for b in bootstrap::cluster_role_bindings() {
        assert!(roles.contains(&b.role_ref.name), "{}", b.role_ref.name);
    }
}

fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        resource_names: (!names.is_empty()).then(|| v(names)).flatten(),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        non_resource_urls: None,
    }
}

fn urls(urls: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(urls.iter().map(|x| x.to_string()).collect()),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// (held, granted, escalates)
#[test]
fn escalation_is_any_grant_not_held() {
    let cases: Vec<(Vec<PolicyRule>, Vec<PolicyRule>, bool)> = vec![
        (
            vec![rule(&[""], &["pods"], &[], &["get", "list"])],
            vec![rule(&[""], &["pods"], &[], &["get"])],
            false,
        ),
        (
            vec![rule(&[""], &["pods"], &[], &["get"])],
            vec![rule(&[""], &["pods"], &[], &["get", "list"])],
            true,
        ),
        // Wildcards held cover anything of their kind.
        (
            vec![rule(&["*"], &["*"], &[], &["*"])],
            vec![rule(&["apps"], &["deployments/scale"], &["d"], &["update"])],
            false,
        ),
        (
            vec![rule(&["apps"], &["*/scale"], &[], &["update"])],
            vec![rule(&["apps"], &["deployments/scale"], &[], &["update"])],
            false,
        ),
        (
            vec![rule(&["apps"], &["*/scale"], &[], &["update"])],
            vec![rule(&["apps"], &["deployments"], &[], &["update"])],
            true,
        ),
        // A wildcard granted is more than any list held.
        (
            vec![rule(&[""], &["pods", "secrets"], &[], &["get"])],
            vec![rule(&[""], &["*"], &[], &["get"])],
            true,
        ),
        // Names: held for one object, granting it is fine, granting all is not.
        (
            vec![rule(&[""], &["configmaps"], &["c"], &["get"])],
            vec![rule(&[""], &["configmaps"], &["c"], &["get"])],
            false,
        ),
        (
            vec![rule(&[""], &["configmaps"], &["c"], &["get"])],
            vec![rule(&[""], &["configmaps"], &[], &["get"])],
            true,
        ),
        (
            vec![rule(&[""], &["configmaps"], &[], &["get"])],
            vec![rule(&[""], &["configmaps"], &["c", "d"], &["get"])],
            false,
        ),
        // Groups are matched exactly.
        (
            vec![rule(&["apps"], &["deployments"], &[], &["get"])],
            vec![rule(&["extensions"], &["deployments"], &[], &["get"])],
            true,
        ),
        // Paths: prefixes held cover paths under them.
        (
            vec![urls(&["/api/*"], &["get"])],
            vec![urls(&["/api/v1"], &["get"])],
            false,
        ),
        (
            vec![urls(&["/api"], &["get"])],
            vec![urls(&["/api/*"], &["get"])],
            true,
        ),
        (
            vec![urls(&["*"], &["*"])],
            vec![urls(&["/metrics"], &["get"])],
            false,
        ),
        (
            vec![rule(&["*"], &["*"], &[], &["*"])],
            vec![urls(&["/metrics"], &["get"])],
            true,
        ),
        (vec![], vec![], false),
    ];
    for (i, (held, granted, escalates)) in cases.into_iter().enumerate() {
        assert_eq!(
            !uncovered(&held, &granted).is_empty(),
            escalates,
            "case {i}"
        );
    }
}

#[test]
fn the_refusal_is_worded_as_kube_apiservers() {
    let missing = uncovered(
        &[],
        &[
            rule(&[""], &["pods"], &[], &["get", "list"]),
            rule(&["apps"], &["deployments"], &["d"], &["update"]),
            urls(&["/metrics"], &["get"]),
        ],
    );
    let groups = vec!["dev".to_string(), "system:authenticated".to_string()];
    assert_eq!(
        escalation_message("bob", &groups, missing),
        "user \"bob\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}\n\
         {APIGroups:[\"apps\"], Resources:[\"deployments\"], ResourceNames:[\"d\"], Verbs:[\"update\"]}\n\
         {NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
    );
    assert_eq!(
        compact_string(&rule(&["*"], &["*"], &[], &["*"])),
        "{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"
    );
}
