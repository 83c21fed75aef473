//! How long a decision takes among 1,000 ClusterRoles and 1,000 RoleBindings (the issue's
//! benchmark setting), for a requester with a few bindings. Prints, asserts nothing:
//! `cargo test --release -p skiff-rbac --test scale -- --ignored --nocapture`.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_rbac::{Decision, Policy, Request, Target};
use std::time::Instant;

#[test]
#[ignore]
fn decisions_among_a_thousand_roles_and_bindings() {
    let mut p = Policy::default();
    for i in 0..1000 {
        p.set_cluster_role(ClusterRole {
            metadata: ObjectMeta {
                name: Some(format!("role-{i}")),
                ..ObjectMeta::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec![format!("things{i}"), "pods".into()]),
                verbs: vec!["get".into(), "list".into()],
                ..PolicyRule::default()
            }]),
            ..ClusterRole::default()
        });
        p.set_role_binding(RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("b-{i}")),
                namespace: Some(format!("ns-{}", i % 100)),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: format!("role-{i}"),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: format!("user-{}", i % 250),
                ..Subject::default()
            }]),
        });
    }
    let groups = vec!["system:authenticated".to_string(), "team".to_string()];
    let n = 1_000_000u32;
    let t = Instant::now();
    let mut allowed = 0u32;
    for i in 0..n {
        let ns = format!("ns-{}", i % 100);
        let user = format!("user-{}", i % 250);
        let req = Request {
            user: &user,
            groups: &groups,
            verb: "list",
            target: Target::Resource {
                group: "",
                resource: "pods",
                subresource: "",
                namespace: &ns,
                name: "",
            },
        };
        if matches!(p.authorize(&req), Decision::Allow(_)) {
            allowed += 1;
        }
    }
    let per = t.elapsed() / n;
    println!("{n} decisions ({allowed} allowed): {per:?} each, formatting the names included");
}
