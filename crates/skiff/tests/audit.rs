//! The audit log of a real `skiff server`, driven by real kubectl: levels and stages
//! from the policy, users and impersonation, the authorization decision, request and
//! response bodies, and rotation by size.

mod common;

use common::Cluster;
use serde_json::Value;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/api*", "/openapi*"]
- level: None
  userGroups: ["system:serviceaccounts", "system:nodes"]
- level: None
  users: ["system:kube-scheduler", "system:kube-controller-manager"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Request
  resources:
  - group: ""
    resources: ["secrets"]
  omitManagedFields: true
- level: Metadata
"#;

fn events(c: &Cluster) -> Vec<Value> {
    let text = std::fs::read_to_string(c.dir.path().join("audit/audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits for the writer thread, then the events of `verb` on `resource` named `name`.
fn find(c: &Cluster, verb: &str, resource: &str, name: &str) -> Vec<Value> {
    common::eventually(std::time::Duration::from_secs(10), || {
        let found: Vec<Value> = events(c)
            .into_iter()
            .filter(|e| {
                e["verb"] == verb
                    && e["objectRef"]["resource"] == resource
                    && (name.is_empty() || e["requestURI"].as_str().unwrap_or("").contains(name))
            })
            .collect();
        (!found.is_empty()).then_some(found)
    })
}

fn start(extra: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let log = dir.path().join("audit/audit.log");
    let mut args = vec![
        "server".to_string(),
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", log.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cluster::start_in(dir, &args)
}

#[test]
fn requests_are_audited_at_the_policy_level() {
    let c = start(&[]);
    c.ok(&["create", "configmap", "audited", "--from-literal=k=v"]);
    let ev = find(&c, "create", "configmaps", "configmaps");
    let e = &ev[0];
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(e["level"], "RequestResponse");
    assert_eq!(
        e["stage"], "ResponseComplete",
        "RequestReceived is omitted: {e}"
    );
    assert_eq!(e["user"]["username"], "skiff-admin");
    assert_eq!(e["responseStatus"]["code"], 201);
    assert_eq!(e["requestObject"]["data"]["k"], "v", "{e}");
    assert_eq!(e["responseObject"]["metadata"]["name"], "audited", "{e}");
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(e["auditID"].as_str().is_some_and(|s| s.len() >= 32));

    // Request level: the request, not the response; managed fields left out.
    c.ok(&["create", "secret", "generic", "s", "--from-literal=p=q"]);
    let e = &find(&c, "create", "secrets", "secrets")[0];
    assert_eq!(e["level"], "Request");
    assert_eq!(e["requestObject"]["data"]["p"], "cQ==", "{e}");
    assert!(e.get("responseObject").is_none(), "{e}");

    // A refused request, impersonated: who asked, as whom, and why not.
    c.fails(&["get", "pods", "--as=bob"]);
    let denied = find(&c, "list", "pods", "pods")
        .into_iter()
        .find(|e| e["impersonatedUser"]["username"] == "bob")
        .expect("bob's list");
    assert_eq!(denied["level"], "Metadata");
    assert_eq!(denied["user"]["username"], "skiff-admin");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(denied["responseStatus"]["reason"], "Forbidden");
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert!(denied.get("requestObject").is_none());

    // A watch starts, then completes when it ends.
    c.ok(&["get", "configmaps", "--watch-only", "--request-timeout=1s"]);
    let w = common::eventually(std::time::Duration::from_secs(10), || {
        let w: Vec<Value> = find(&c, "watch", "configmaps", "")
            .into_iter()
            .filter(|e| e["user"]["username"] == "skiff-admin")
            .collect();
        (w.len() >= 2).then_some(w)
    });
    assert_eq!(w[0]["stage"], "ResponseStarted");
    assert_eq!(w[1]["stage"], "ResponseComplete");
    assert_eq!(w[0]["auditID"], w[1]["auditID"]);

    // Pod Security's verdicts ride on the pod's event.
    c.ok(&["create", "namespace", "watched"]);
    c.ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/audit=restricted",
    ]);
    c.ok(&["run", "loose", "--image=nginx", "-n", "watched"]);
    let e = find(&c, "create", "pods", "/namespaces/watched/")
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(
        e["annotations"]["pod-security.kubernetes.io/enforce-policy"], "privileged:latest",
        "{e}"
    );
    let v = e["annotations"]["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap_or("");
    assert!(
        v.starts_with("would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"loose\""),
        "{e}"
    );

    // Nothing for what the policy says None to (the controllers, the health checks).
    assert!(
        !events(&c)
            .iter()
            .any(|e| e["user"]["username"] == "system:kube-scheduler")
    );
    assert!(!events(&c).iter().any(|e| e["requestURI"] == "/readyz"));
}

#[test]
fn the_log_rotates_by_size_and_keeps_its_backups() {
    let c = start(&["--audit-log-maxsize=1", "--audit-log-maxbackup=2"]);
    let big = c.dir.path().join("big");
    std::fs::write(&big, "x".repeat(200 * 1024)).unwrap();
    let from = format!("--from-file=k={}", big.display());
    for i in 0..20 {
        c.ok(&["create", "configmap", &format!("big{i}"), &from]);
    }
    let dir = c.dir.path().join("audit");
    let files = common::eventually(std::time::Duration::from_secs(10), || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        (names.len() == 3).then_some(names)
    });
    assert!(
        files[0].starts_with("audit-") && files[0].ends_with(".log"),
        "{files:?}"
    );
    assert_eq!(files[2], "audit.log");
    for f in &files {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 1024 * 1024, "{f}: {len}");
    }
}
