//! Who may do what, with real kubectl against a real `skiff server`: RBAC decisions
//! and kube-apiserver's messages, `kubectl auth` (can-i, --list, whoami, reconcile),
//! service account tokens, impersonation, escalation prevention, aggregation, the
//! bootstrap policy reconciled at start, anonymous requests and the authorization
//! modes. Every "denied" is first shown allowed once the grant exists (or the reverse).

mod common;

use common::{Cluster, eventually};
use std::process::Output;
use std::time::Duration;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// GET `path` with no credentials at all (kubectl would prompt for a password): the
/// HTTP status and body, through Python's urllib against the cluster CA.
fn anonymous_get(c: &Cluster, path: &str) -> (u16, String) {
    let script = r#"
import ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    r = urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(c.data_dir().join("tls/ca.crt"))
        .arg(format!("https://127.0.0.1:{}{path}", c.port))
        .output()
        .expect("python3 runs");
    let text = stdout(&out);
    let (code, body) = text.split_once('\n').unwrap_or((&text, ""));
    (
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{text}{}", stderr(&out))),
        body.to_string(),
    )
}

/// `kubectl auth can-i …` prints yes or no (and exits 1 on no).
fn can_i(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    stdout(&c.kubectl(&all))
}

#[test]
fn rbac_decides_with_kubernetes_words() {
    let c = Cluster::start();
    let who = c.ok(&["auth", "whoami"]);
    assert!(who.contains("system:masters"), "{who}");

    // A user with no bindings: refused, in kube-apiserver's words.
    let err = c.fails(&["get", "pods", "--as=bob"]);
    assert!(
        err.contains(r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    assert_eq!(can_i(&c, &["list", "pods", "--as=bob"]), "no");
    let err = c.fails(&["get", "nodes", "--as=bob"]);
    assert!(
        err.contains(r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", "/metrics", "--as=bob"]);
    assert!(
        err.contains(r#"forbidden: User "bob" cannot get path "/metrics""#),
        "{err}"
    );

    // Granted in one namespace: allowed there, still refused elsewhere.
    c.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "bob-reads",
        "--role=pod-reader",
        "--user=bob",
    ]);
    c.ok(&["get", "pods", "--as=bob"]);
    assert_eq!(can_i(&c, &["list", "pods", "--as=bob"]), "yes");
    assert_eq!(can_i(&c, &["delete", "pods", "--as=bob"]), "no");
    assert_eq!(
        can_i(&c, &["list", "pods", "-n", "kube-system", "--as=bob"]),
        "no"
    );
    let list = c.ok(&["auth", "can-i", "--list", "--as=bob"]);
    let pods: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("{list}"))
        .split_whitespace()
        .collect();
    assert_eq!(pods, ["pods", "[]", "[]", "[get", "list]"], "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    assert!(list.contains("[/api/*]"), "{list}");

    // Revoked: refused again at once.
    c.ok(&["delete", "rolebinding", "bob-reads"]);
    assert_eq!(can_i(&c, &["list", "pods", "--as=bob"]), "no");

    // resourceNames: one ConfigMap, not the others, not a list.
    c.ok(&["create", "configmap", "app", "--from-literal=a=b"]);
    c.ok(&["create", "configmap", "other", "--from-literal=a=b"]);
    c.ok(&[
        "create",
        "role",
        "app-config",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=app",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "bob-app",
        "--role=app-config",
        "--user=bob",
    ]);
    c.ok(&["get", "configmap", "app", "--as=bob"]);
    let err = c.fails(&["get", "configmap", "other", "--as=bob"]);
    assert!(
        err.contains(r#"configmaps "other" is forbidden: User "bob" cannot get resource "configmaps" in API group "" in the namespace "default""#),
        "{err}"
    );
    c.fails(&["get", "configmaps", "--as=bob"]);

    // Reading a pod's exec is not running commands in it: that takes `create`.
    c.ok(&[
        "run",
        "sleeper",
        "--image=registry.local/busybox:1",
        "--",
        "sleep",
        "1d",
    ]);
    c.ok(&[
        "create",
        "role",
        "exec-get",
        "--verb=get",
        "--resource=pods,pods/exec",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "bob-exec-get",
        "--role=exec-get",
        "--user=bob",
    ]);
    let denied = r#"User "bob" cannot create resource "pods/exec" in API group "" in the namespace "default""#;
    let err = c.fails(&["exec", "sleeper", "--as=bob", "--", "true"]);
    assert!(err.contains(denied), "{err}");
    // A plain GET (the WebSocket upgrade's verb) too, not only kubectl's SPDY POST.
    let exec_url = "/api/v1/namespaces/default/pods/sleeper/exec?command=true&stdout=true";
    let err = c.fails(&["get", "--raw", exec_url, "--as=bob"]);
    assert!(err.contains(denied), "{err}");

    // The default roles: view in a namespace reads but not Secrets.
    c.ok(&["create", "namespace", "team"]);
    c.ok(&[
        "create",
        "rolebinding",
        "carol-view",
        "--clusterrole=view",
        "--user=carol",
        "-n",
        "team",
    ]);
    assert_eq!(
        can_i(
            &c,
            &["list", "deployments.apps", "-n", "team", "--as=carol"]
        ),
        "yes"
    );
    assert_eq!(
        can_i(&c, &["get", "secrets", "-n", "team", "--as=carol"]),
        "no"
    );
    assert_eq!(
        can_i(&c, &["create", "pods/exec", "-n", "team", "--as=carol"]),
        "no"
    );
    assert_eq!(
        can_i(&c, &["get", "pods", "-n", "default", "--as=carol"]),
        "no"
    );
}

#[test]
fn service_account_tokens_grant_only_what_is_bound() {
    let c = Cluster::start();
    assert_eq!(
        can_i(
            &c,
            &[
                "create",
                "pods",
                "--as=system:serviceaccount:default:default"
            ]
        ),
        "no"
    );
    let token = c.ok(&["create", "token", "default"]);
    let token = token.trim();
    assert_eq!(
        c.whoami(token).as_deref(),
        Some("system:serviceaccount:default:default")
    );
    let out = c.kubectl_token(token, &["get", "pods"]);
    assert!(
        stderr(&out).contains(
            r#"User "system:serviceaccount:default:default" cannot list resource "pods""#
        ),
        "{}",
        stderr(&out)
    );
    c.ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    let out = c.kubectl_token(token, &["get", "pods"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Impersonation needs the impersonate verb on what is impersonated.
    let out = c.kubectl_token(token, &["get", "pods", "--as=alice"]);
    assert!(
        stderr(&out).contains(r#"users "alice" is forbidden: User "system:serviceaccount:default:default" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{}",
        stderr(&out)
    );
    c.ok(&[
        "create",
        "clusterrole",
        "impersonator",
        "--verb=impersonate",
        "--resource=users,groups",
    ]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "sa-impersonates",
        "--clusterrole=impersonator",
        "--serviceaccount=default:default",
    ]);
    let out = c.kubectl_token(
        token,
        &[
            "auth",
            "whoami",
            "--as=alice",
            "--as-group=devs",
            "-o",
            "json",
        ],
    );
    let who = stdout(&out);
    assert!(
        who.contains(r#""username": "alice""#),
        "{who}{}",
        stderr(&out)
    );
    assert!(
        who.contains(r#""devs""#) && who.contains("system:authenticated"),
        "{who}"
    );
    // uid is another resource: not granted.
    let out = c.kubectl_token(token, &["get", "pods", "--as=alice", "--as-uid=1"]);
    assert!(
        stderr(&out)
            .contains(r#"cannot impersonate resource "uids" in API group "authentication.k8s.io""#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn roles_and_bindings_never_grant_more_than_their_writer_holds() {
    let c = Cluster::start();
    // dave may write roles and bindings in default, and read pods; nothing more.
    c.ok(&[
        "create",
        "role",
        "granter",
        "--verb=create,update,patch,get",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
    ]);
    c.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "dave-grants",
        "--role=granter",
        "--user=dave",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "dave-reads",
        "--role=pod-reader",
        "--user=dave",
    ]);

    // A role within what dave holds is fine; one beyond it is not.
    c.ok(&[
        "create",
        "role",
        "small",
        "--verb=get",
        "--resource=pods",
        "--as=dave",
    ]);
    let err = c.fails(&[
        "create",
        "role",
        "big",
        "--verb=get,delete",
        "--resource=pods,secrets",
        "--as=dave",
    ]);
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"big\" is forbidden: user \"dave\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"),
        "{err}"
    );
    // Nor by editing a role he could write.
    let err = c.fails(&[
        "patch",
        "role",
        "small",
        "--as=dave",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/0/verbs/-","value":"delete"}]"#,
    ]);
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );

    // Binding: a role he holds, yes; admin, no; admin once he may `bind` it, yes.
    c.ok(&[
        "create",
        "rolebinding",
        "erin-small",
        "--role=small",
        "--user=erin",
        "--as=dave",
    ]);
    let err = c.fails(&[
        "create",
        "rolebinding",
        "erin-admin",
        "--clusterrole=admin",
        "--user=erin",
        "--as=dave",
    ]);
    assert!(
        err.contains(
            r#"rolebindings.rbac.authorization.k8s.io "erin-admin" is forbidden: user "dave""#
        ),
        "{err}"
    );
    c.ok(&[
        "create",
        "role",
        "bind-admin",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=admin",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "dave-binds",
        "--role=bind-admin",
        "--user=dave",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "erin-admin",
        "--clusterrole=admin",
        "--user=erin",
        "--as=dave",
    ]);
    // A role that does not exist cannot be checked, so cannot be bound.
    let err = c.fails(&[
        "create",
        "rolebinding",
        "erin-ghost",
        "--role=ghost",
        "--user=erin",
        "--as=dave",
    ]);
    assert!(
        err.contains(r#"is forbidden: roles.rbac.authorization.k8s.io "ghost" not found"#),
        "{err}"
    );

    // `escalate` lets him write any role.
    c.ok(&[
        "create",
        "role",
        "escalator",
        "--verb=escalate",
        "--resource=roles.rbac.authorization.k8s.io",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "dave-escalates",
        "--role=escalator",
        "--user=dave",
    ]);
    c.ok(&[
        "create",
        "role",
        "big",
        "--verb=get,delete",
        "--resource=pods,secrets",
        "--as=dave",
    ]);
}

#[test]
fn aggregation_reconcile_and_the_bootstrap_policy() {
    let mut c = Cluster::start();
    // admin, edit and view are gathered from the roles labelled to them.
    let view = c.ok(&["get", "clusterrole", "view", "-o", "json"]);
    assert!(view.contains("\"deployments\""), "{view}");
    c.ok(&[
        "create",
        "clusterrolebinding",
        "frank-view",
        "--clusterrole=view",
        "--user=frank",
    ]);
    assert_eq!(can_i(&c, &["list", "nodes", "--as=frank"]), "no");
    c.ok(&[
        "create",
        "clusterrole",
        "node-viewer",
        "--verb=get,list",
        "--resource=nodes",
    ]);
    c.ok(&[
        "label",
        "clusterrole",
        "node-viewer",
        "rbac.authorization.k8s.io/aggregate-to-view=true",
    ]);
    eventually(Duration::from_secs(20), || {
        (can_i(&c, &["list", "nodes", "--as=frank"]) == "yes").then_some(())
    });
    // ...and reaches admin through edit.
    eventually(Duration::from_secs(20), || {
        c.ok(&["get", "clusterrole", "admin", "-o", "json"])
            .contains("\"nodes\"")
            .then_some(())
    });

    // kubectl auth reconcile creates, then adds what is missing.
    let manifest = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: recon\n  namespace: default\nrules:\n- apiGroups: [\"\"]\n  resources: [\"pods\"]\n  verbs: [\"get\"]\n";
    let out = c.kubectl_stdin(&["auth", "reconcile", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", stderr(&out));
    let more = manifest.replace("[\"get\"]", "[\"get\", \"watch\"]");
    let out = c.kubectl_stdin(&["auth", "reconcile", "-f", "-"], &more);
    assert!(
        stdout(&out).contains("reconciled"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let role = c.ok(&["get", "role", "recon", "-o", "jsonpath={.rules[*].verbs}"]);
    assert!(role.contains("watch"), "{role}");

    // Defaults put right at start; opted-out ones left alone; deleted ones back.
    let rules = |c: &Cluster, r: &str| c.ok(&["get", "clusterrole", r, "-o", "jsonpath={.rules}"]);
    assert!(rules(&c, "system:basic-user").contains("selfsubjectreviews"));
    c.ok(&[
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/rules/1"}]"#,
    ]);
    c.ok(&[
        "patch",
        "clusterrole",
        "system:discovery",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/rules/0/nonResourceURLs/0"}]"#,
    ]);
    c.ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:discovery",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    c.ok(&["delete", "clusterrolebinding", "system:public-info-viewer"]);
    assert!(!rules(&c, "system:basic-user").contains("selfsubjectreviews"));
    c.restart();
    assert!(rules(&c, "system:basic-user").contains("selfsubjectreviews"));
    assert!(
        !rules(&c, "system:discovery").contains("\"/api\""),
        "{}",
        rules(&c, "system:discovery")
    );
    c.ok(&["get", "clusterrolebinding", "system:public-info-viewer"]);
    let labels = c.ok(&[
        "get",
        "clusterrole",
        "cluster-admin",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        labels.contains(r#""kubernetes.io/bootstrapping":"rbac-defaults""#),
        "{labels}"
    );
}

#[test]
fn anonymous_requests_and_authorization_modes() {
    let c = Cluster::start();
    // No credentials: the public endpoints answer, nothing else does.
    assert_eq!(anonymous_get(&c, "/healthz"), (200, "ok".to_string()));
    let (code, body) = anonymous_get(&c, "/version");
    assert!(code == 200 && body.contains("gitVersion"), "{code} {body}");
    let (code, body) = anonymous_get(&c, "/api/v1/namespaces");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
    // A bad token is never anonymous.
    let out = c.kubectl_token("not-a-token", &["get", "--raw", "/healthz"]);
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
    // Taking the public role away closes the health endpoints to anonymous too.
    c.ok(&["delete", "clusterrolebinding", "system:public-info-viewer"]);
    let (code, body) = anonymous_get(&c, "/healthz");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"forbidden: User \"system:anonymous\" cannot get path \"/healthz\""#),
        "{body}"
    );
    drop(c);

    let c = Cluster::start_with(&[
        "server",
        "--authorization-mode=AlwaysAllow",
        "--anonymous-auth=false",
    ]);
    c.ok(&["get", "pods", "--as=bob"]);
    assert_eq!(anonymous_get(&c, "/healthz").0, 401);
    // AlwaysAllow allows `escalate` too, as in Kubernetes: any role may be written.
    c.ok(&[
        "create",
        "role",
        "big",
        "--verb=*",
        "--resource=secrets",
        "--as=bob",
    ]);
}
