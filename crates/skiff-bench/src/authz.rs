//! The cost of authorization in `skiff bench api`: with 1,000 ClusterRoles and 1,000
//! RoleBindings present, one RBAC decision (the same policy, in this process) and pod
//! creates by a ServiceAccount (a bearer token, as pods and operators call) against a
//! server in RBAC mode and one in `AlwaysAllow` mode, in one run, side by side.

use crate::{ApiBenchOptions, Throughput, requests_h2, start_server_with};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_rbac::{Decision, Policy, Request, Target};
use std::time::Instant;

const OBJECTS: usize = 1000;
/// Of the bindings, this many name the ServiceAccounts group: a decision for the bench's
/// account walks their grants before it finds its own.
const GROUP_BINDINGS: usize = 100;
const SA: &str = "bench";

fn cluster_role(i: usize) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": format!("bench-role-{i}")},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", format!("things{i}")], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [format!("d{i}")], "verbs": ["update"]},
        ],
    }))
    .expect("static role")
}

fn role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: name.into(),
    }
}

fn binding(i: usize) -> RoleBinding {
    let subject = if i < GROUP_BINDINGS {
        Subject {
            kind: "Group".into(),
            name: "system:serviceaccounts".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }
    } else {
        Subject {
            kind: "User".into(),
            name: format!("user-{i}"),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }
    };
    RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("bench-binding-{i}")),
            namespace: Some("default".into()),
            ..Default::default()
        },
        role_ref: role_ref(&format!("bench-role-{i}")),
        subjects: Some(vec![subject]),
    }
}

/// What lets the bench's account create pods, bound last.
fn creator() -> (ClusterRole, RoleBinding) {
    let role = ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some("bench-pod-creator".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["create".into()],
            ..PolicyRule::default()
        }]),
        aggregation_rule: None,
    };
    let b = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("bench-pod-creator".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        role_ref: role_ref("bench-pod-creator"),
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: SA.into(),
            namespace: Some("default".into()),
            api_group: None,
        }]),
    };
    (role, b)
}

fn sa_user() -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:default:{SA}"),
        vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:default".into(),
            "system:authenticated".into(),
        ],
    )
}

/// Mean µs per decision over the whole policy (bootstrap defaults included): an allowed
/// create, and a denied delete (every grant of the requester looked at).
fn decision_micros() -> (f64, f64) {
    let mut p = Policy::default();
    for r in skiff_rbac::bootstrap::cluster_roles() {
        p.set_cluster_role(r);
    }
    for b in skiff_rbac::bootstrap::cluster_role_bindings() {
        p.set_cluster_role_binding(b);
    }
    for i in 0..OBJECTS {
        p.set_cluster_role(cluster_role(i));
        p.set_role_binding(binding(i));
    }
    let (role, b) = creator();
    p.set_cluster_role(role);
    p.set_role_binding(b);
    let (user, groups) = sa_user();
    let time = |verb: &str, want_allow: bool| {
        let req = Request {
            user: &user,
            groups: &groups,
            verb,
            target: Target::Resource {
                group: "",
                resource: "pods",
                subresource: "",
                namespace: "default",
                name: "",
            },
        };
        assert_eq!(matches!(p.authorize(&req), Decision::Allow(_)), want_allow);
        let n = 200_000;
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(p.authorize(std::hint::black_box(&req)));
        }
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    (time("create", true), time("delete", false))
}

/// Creates by the bench's ServiceAccount against a server started with `mode`: the
/// rate, and the server's CPU per create.
async fn creates_as_service_account(
    opts: &ApiBenchOptions,
    mode: &str,
) -> anyhow::Result<(Throughput, f64)> {
    let (server, _) = start_server_with(
        &opts.skiff,
        &["--disable", "all", "--authorization-mode", mode],
    )
    .await?;
    let admin = crate::client_for(&server.kubeconfig).await?;
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    let pp = PostParams::default();
    for i in 0..OBJECTS {
        roles.create(&pp, &cluster_role(i)).await?;
        bindings.create(&pp, &binding(i)).await?;
    }
    let (role, b) = creator();
    roles.create(&pp, &role).await?;
    bindings.create(&pp, &b).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": SA}}))?;
    sas.create(&pp, &sa).await?;
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}}))?;
    let tr: TokenRequest = sas.create_subresource("token", SA, &pp, &tr).await?;
    let token = tr.status.map(|s| s.token).unwrap_or_default();

    // The connections present no certificate: the token is the only credential.
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.auth_info = Default::default();
    let conns = crate::h2_connections_with(&cfg, server.port, opts.connections.max(1)).await?;
    let bearer = format!("Bearer {token}");
    let run = |prefix: &'static str, total: usize| {
        let bearer = bearer.clone();
        requests_h2(
            &conns,
            total,
            opts.concurrency,
            http::StatusCode::CREATED,
            move |i| {
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{prefix}-{i}"}},"spec":{{"containers":[{{"name":"c","image":"registry.local/bench:1"}}]}}}}"#
                );
                http::Request::post("https://127.0.0.1/api/v1/namespaces/default/pods")
                    .header("content-type", "application/json")
                    .header("authorization", &bearer)
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            },
        )
    };
    run("warm", opts.concurrency * 4).await?;
    let pid = server.child.id();
    let cpu0 = crate::cpu_seconds(pid);
    let tp = run("authz", opts.creates).await?;
    let cpu = (crate::cpu_seconds(pid) - cpu0) / opts.creates as f64;
    Ok((tp, cpu))
}

pub async fn run(opts: &ApiBenchOptions) -> anyhow::Result<()> {
    println!();
    println!(
        "authorization, with {OBJECTS} ClusterRoles and {OBJECTS} RoleBindings present ({GROUP_BINDINGS} of them to system:serviceaccounts)"
    );
    let (allow_us, deny_us) = decision_micros();
    // Alternated, best of two each: the two servers share the machine's noise.
    let (mut rbac, mut allow) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        rbac.push(creates_as_service_account(opts, "RBAC").await?);
        allow.push(creates_as_service_account(opts, "AlwaysAllow").await?);
    }
    // The faster run of each, with its CPU.
    let best = |v: &[(Throughput, f64)]| {
        v.iter()
            .map(|(t, c)| (t.per_sec, *c))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    };
    let ((rbac, rbac_cpu), (allow, allow_cpu)) = (best(&rbac), best(&allow));
    println!(
        "{:<44} {:>8.2} us allowed, {:.2} us denied   (target <= 5 us)",
        "RBAC decision (same policy, in process)", allow_us, deny_us
    );
    println!(
        "{:<44} {:>14.0} {:>14.0} {:>9.0}%   (target >= 90%)",
        "creates/s as a ServiceAccount: RBAC | AlwaysAllow",
        rbac,
        allow,
        100.0 * rbac / allow.max(1e-9)
    );
    println!(
        "{:<44} {:>11.0} us {:>11.0} us",
        "server CPU per create: RBAC | AlwaysAllow",
        rbac_cpu * 1e6,
        allow_cpu * 1e6
    );
    Ok(())
}
