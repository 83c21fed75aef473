use super::*;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        ..PolicyRule::default()
    }
}

fn urls(urls: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(urls.iter().map(|x| x.to_string()).collect()),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        ..PolicyRule::default()
    }
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: (!ns.is_empty()).then(|| ns.into()),
        ..ObjectMeta::default()
    }
}

fn subject(kind: &str, ns: Option<&str>, name: &str) -> Subject {
    Subject {
        kind: kind.into(),
        name: name.into(),
        namespace: ns.map(Into::into),
        api_group: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn cluster_role(p: &mut Policy, name: &str, rules: Vec<PolicyRule>) {
    p.set_cluster_role(ClusterRole {
        metadata: meta("", name),
        rules: Some(rules),
        ..ClusterRole::default()
    });
}

fn crb(p: &mut Policy, name: &str, role: &str, subjects: Vec<Subject>) {
    p.set_cluster_role_binding(ClusterRoleBinding {
        metadata: meta("", name),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    });
}

fn rb(p: &mut Policy, ns: &str, name: &str, role: RoleRef, subjects: Vec<Subject>) {
    p.set_role_binding(RoleBinding {
        metadata: meta(ns, name),
        role_ref: role,
        subjects: Some(subjects),
    });
}

fn policy() -> Policy {
    let mut p = Policy::default();
    cluster_role(
        &mut p,
        "cluster-admin",
        vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
    );
    crb(
        &mut p,
        "cluster-admin",
        "cluster-admin",
        vec![subject("Group", None, "system:masters")],
    );
    cluster_role(
        &mut p,
        "view",
        vec![rule(
            &[""],
            &["pods", "services"],
            &["get", "list", "watch"],
        )],
    );
    rb(
        &mut p,
        "dev",
        "alice-view",
        role_ref("ClusterRole", "view"),
        vec![subject("User", None, "alice")],
    );
    p.set_role(Role {
        metadata: meta("dev", "cm-reader"),
        rules: Some(vec![PolicyRule {
            resource_names: Some(vec!["app-config".into()]),
            ..rule(&[""], &["configmaps"], &["get"])
        }]),
    });
    rb(
        &mut p,
        "dev",
        "app-config",
        role_ref("Role", "cm-reader"),
        // No namespace: the binding's.
        vec![subject("ServiceAccount", None, "app")],
    );
    cluster_role(
        &mut p,
        "scaler",
        vec![rule(&["apps"], &["*/scale"], &["update"])],
    );
    crb(
        &mut p,
        "ops-scale",
        "scaler",
        vec![subject("Group", None, "ops")],
    );
    cluster_role(&mut p, "logs", vec![rule(&[""], &["pods/log"], &["get"])]);
    crb(
        &mut p,
        "bob-logs",
        "logs",
        vec![subject("User", None, "bob")],
    );
    cluster_role(
        &mut p,
        "health",
        vec![urls(&["/healthz", "/livez/*"], &["get"])],
    );
    crb(
        &mut p,
        "public",
        "health",
        vec![subject("Group", None, "system:unauthenticated")],
    );
    // A binding to a role that does not exist grants nothing.
    crb(
        &mut p,
        "dangling",
        "nope",
        vec![subject("User", None, "eve")],
    );
    p
}

pub(crate) fn res<'a>(
    group: &'a str,
    resource: &'a str,
    sub: &'a str,
    ns: &'a str,
    name: &'a str,
) -> Target<'a> {
    Target::Resource {
        group,
        resource,
        subresource: sub,
        namespace: ns,
        name,
    }
}

fn allowed(p: &Policy, user: &str, groups: &[&str], verb: &str, target: Target<'_>) -> bool {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let req = Request {
        user,
        groups: &groups,
        verb,
        target,
    };
    matches!(p.authorize(&req), Decision::Allow(_))
}

/// (user, groups, verb, target, allowed)
#[test]
fn decisions_by_subject_verb_resource_and_namespace() {
    let p = policy();
    let sa = "system:serviceaccount:dev:app";
    let cases: Vec<(&str, &[&str], &str, Target<'_>, bool)> = vec![
        (
            "admin",
            &["system:masters"],
            "delete",
            res("apps", "deployments", "", "x", "d"),
            true,
        ),
        (
            "admin",
            &["system:masters"],
            "get",
            Target::Path("/metrics"),
            true,
        ),
        ("alice", &[], "list", res("", "pods", "", "dev", ""), true),
        (
            "alice",
            &[],
            "get",
            res("", "services", "", "dev", "web"),
            true,
        ),
        // The binding is in dev only, and view has no writes, no secrets, no subresources.
        ("alice", &[], "list", res("", "pods", "", "prod", ""), false),
        ("alice", &[], "list", res("", "pods", "", "", ""), false),
        (
            "alice",
            &[],
            "delete",
            res("", "pods", "", "dev", "p"),
            false,
        ),
        (
            "alice",
            &[],
            "get",
            res("", "secrets", "", "dev", "s"),
            false,
        ),
        (
            "alice",
            &[],
            "get",
            res("", "pods", "log", "dev", "p"),
            false,
        ),
        (
            "alice",
            &[],
            "get",
            res("apps", "pods", "", "dev", "p"),
            false,
        ),
        // resourceNames: that object only, and no list.
        (
            sa,
            &[],
            "get",
            res("", "configmaps", "", "dev", "app-config"),
            true,
        ),
        (
            sa,
            &[],
            "get",
            res("", "configmaps", "", "dev", "other"),
            false,
        ),
        (sa, &[], "list", res("", "configmaps", "", "dev", ""), false),
        (
            "system:serviceaccount:prod:app",
            &[],
            "get",
            res("", "configmaps", "", "prod", "app-config"),
            false,
        ),
        // */scale: any resource's scale subresource, not the resource.
        (
            "carol",
            &["ops"],
            "update",
            res("apps", "deployments", "scale", "x", "d"),
            true,
        ),
        (
            "carol",
            &["ops"],
            "update",
            res("apps", "statefulsets", "scale", "y", "s"),
            true,
        ),
        (
            "carol",
            &["ops"],
            "update",
            res("apps", "deployments", "", "x", "d"),
            false,
        ),
        (
            "carol",
            &["ops"],
            "update",
            res("apps", "deployments", "status", "x", "d"),
            false,
        ),
        ("bob", &[], "get", res("", "pods", "log", "any", "p"), true),
        ("bob", &[], "get", res("", "pods", "", "any", "p"), false),
        // nonResourceURLs: exact, and a prefix ending in *.
        (
            "anon",
            &["system:unauthenticated"],
            "get",
            Target::Path("/healthz"),
            true,
        ),
        (
            "anon",
            &["system:unauthenticated"],
            "get",
            Target::Path("/livez/ping"),
            true,
        ),
        (
            "anon",
            &["system:unauthenticated"],
            "get",
            Target::Path("/healthz/etcd"),
            false,
        ),
        (
            "anon",
            &["system:unauthenticated"],
            "post",
            Target::Path("/healthz"),
            false,
        ),
        (
            "anon",
            &["system:unauthenticated"],
            "get",
            res("", "pods", "", "dev", ""),
            false,
        ),
        ("eve", &[], "get", res("", "pods", "", "dev", "p"), false),
    ];
    for (user, groups, verb, target, want) in cases {
        let shown = format!("{user} {groups:?} {verb} {target:?}");
        assert_eq!(allowed(&p, user, groups, verb, target), want, "{shown}");
    }
}

#[test]
fn the_allow_reason_names_the_binding() {
    let p = policy();
    let groups = ["system:masters".to_string()];
    let req = Request {
        user: "admin",
        groups: &groups,
        verb: "get",
        target: res("", "pods", "", "x", "p"),
    };
    assert_eq!(
        p.authorize(&req),
        Decision::Allow(
            "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to admin".into()
        )
    );
}

#[test]
fn bindings_and_roles_follow_changes() {
    let mut p = policy();
    let pods = || res("", "pods", "", "dev", "");
    assert!(allowed(&p, "alice", &[], "list", pods()));
    // The binding now names someone else: alice loses it, dave gains it.
    rb(
        &mut p,
        "dev",
        "alice-view",
        role_ref("ClusterRole", "view"),
        vec![subject("User", None, "dave")],
    );
    assert!(!allowed(&p, "alice", &[], "list", pods()));
    assert!(allowed(&p, "dave", &[], "list", pods()));
    // The role loses the rule.
    cluster_role(&mut p, "view", vec![]);
    assert!(!allowed(&p, "dave", &[], "list", pods()));
    cluster_role(&mut p, "view", vec![rule(&[""], &["pods"], &["list"])]);
    assert!(allowed(&p, "dave", &[], "list", pods()));
    p.remove_role_binding("dev", "alice-view");
    assert!(!allowed(&p, "dave", &[], "list", pods()));
    // Cluster bindings and roles go too.
    assert!(allowed(
        &p,
        "bob",
        &[],
        "get",
        res("", "pods", "log", "x", "p")
    ));
    p.remove_cluster_role("logs");
    assert!(!allowed(
        &p,
        "bob",
        &[],
        "get",
        res("", "pods", "log", "x", "p")
    ));
    assert!(allowed(
        &p,
        "carol",
        &["ops"],
        "update",
        res("apps", "deployments", "scale", "x", "d")
    ));
    p.remove_cluster_role_binding("ops-scale");
    assert!(!allowed(
        &p,
        "carol",
        &["ops"],
        "update",
        res("apps", "deployments", "scale", "x", "d")
    ));
    let sa = "system:serviceaccount:dev:app";
    assert!(allowed(
        &p,
        sa,
        &[],
        "get",
        res("", "configmaps", "", "dev", "app-config")
    ));
    p.remove_role("dev", "cm-reader");
    assert!(!allowed(
        &p,
        sa,
        &[],
        "get",
        res("", "configmaps", "", "dev", "app-config")
    ));
}

#[test]
fn rules_for_lists_cluster_and_namespace_rules() {
    let p = policy();
    assert_eq!(p.rules_for("alice", &[], "dev").len(), 1);
    assert!(p.rules_for("alice", &[], "prod").is_empty());
    let g = ["ops".to_string()];
    assert_eq!(p.rules_for("carol", &g, "dev").len(), 1);
}

#[test]
fn forbidden_messages_are_kube_apiservers() {
    let g = [];
    let req = |verb, target| Request {
        user: "x",
        groups: &g,
        verb,
        target,
    };
    assert_eq!(
        forbidden_message(&req("list", res("", "pods", "", "y", ""))),
        "User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"y\""
    );
    assert_eq!(
        forbidden_message(&req("get", res("apps", "deployments", "scale", "", "d"))),
        "User \"x\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
    );
    assert_eq!(
        forbidden_message(&req("get", Target::Path("/metrics"))),
        "User \"x\" cannot get path \"/metrics\""
    );
}
