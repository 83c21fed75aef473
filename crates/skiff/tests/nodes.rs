//! Node identities on a real `skiff server`, driven by real kubectl: TLS bootstrapping
//! with the join token (CertificateSigningRequests auto-approved and signed, renewed by
//! the node itself before they expire), `kubectl certificate approve/deny` and the
//! signer permission behind them, the Node authorizer (a node reads only what its pods
//! use, and the TLS Secrets Ingresses name) and NodeRestriction (a node writes only what
//! is its own).

mod common;

use common::Cluster;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn join_token(c: &Cluster) -> String {
    std::fs::read_to_string(c.data_dir().join("token"))
        .unwrap()
        .trim()
        .to_string()
}

/// A `skiff agent --simulate` process joined with the join token.
fn start_agent(c: &Cluster, nodes: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["agent", "--simulate", nodes, "--simulate-prefix", "remote"])
        .arg(format!("--server=https://127.0.0.1:{}", c.port))
        .arg(format!("--token={}", join_token(c)))
        .arg("--ca-file")
        .arg(c.data_dir().join("tls/ca.crt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start agent")
}

/// `kubectl get csr` rows as (name, signer, requestor, condition).
fn csrs(c: &Cluster) -> Vec<(String, String, String, String)> {
    c.ok(&["get", "csr", "--no-headers"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].into(), f[2].into(), f[3].into(), f[5].into())
        })
        .collect()
}

/// A CSR manifest for `cn`/`orgs` to `signer`; returns the manifest and the key PEM.
fn csr_manifest(
    name: &str,
    cn: &str,
    orgs: &[&str],
    signer: &str,
    usages: &str,
) -> (String, String) {
    use base64::Engine;
    let (key, pem) = skiff_pki::csr::new_request(cn, orgs, &[], &[]).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
    let yaml = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {b64}\n  signerName: {signer}\n  usages: [{usages}]\n"
    );
    (yaml, key)
}

/// Waits for CSR `name`'s certificate and writes it with its key; returns both paths.
fn issued(c: &Cluster, name: &str, key: &str) -> (PathBuf, PathBuf) {
    use base64::Engine;
    let cert = common::eventually(Duration::from_secs(20), || {
        let b64 = c.ok(&["get", "csr", name, "-o", "jsonpath={.status.certificate}"]);
        (!b64.is_empty()).then(|| {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        })
    });
    let (cp, kp) = (
        c.dir.path().join(format!("{name}.crt")),
        c.dir.path().join(format!("{name}.key")),
    );
    std::fs::write(&cp, cert).unwrap();
    std::fs::write(&kp, key).unwrap();
    (cp, kp)
}

#[test]
fn nodes_bootstrap_with_the_join_token_and_renew_as_themselves() {
    // Certificates live 40 s here, so renewal (at 70–90 %) happens within the test.
    let c = Cluster::start_with(&["server", "--cluster-signing-duration", "40s"]);
    let token = join_token(&c);
    let id = skiff_pki::token_id(&token);
    // The join token is a bootstrapper: it may ask for a certificate, nothing else.
    assert_eq!(
        c.whoami(&token).as_deref(),
        Some(format!("system:bootstrap:{id}").as_str())
    );
    let out = c.kubectl_token(&token, &["get", "pods"]);
    assert!(
        stderr(&out).contains(&format!(
            "pods is forbidden: User \"system:bootstrap:{id}\" cannot list resource \"pods\""
        )),
        "{}",
        stderr(&out)
    );
    let out = c.kubectl_token(
        &token,
        &["auth", "can-i", "create", "certificatesigningrequests"],
    );
    assert_eq!(stdout(&out).trim(), "yes");

    let mut agent = start_agent(&c, "2");
    common::eventually(Duration::from_secs(30), || {
        let nodes = c.ok(&["get", "nodes", "--no-headers"]);
        (nodes.lines().filter(|l| l.contains(" Ready ")).count() == 2).then_some(())
    });
    let first = csrs(&c);
    let boot: Vec<_> = first
        .iter()
        .filter(|r| r.2 == format!("system:bootstrap:{id}"))
        .collect();
    assert_eq!(boot.len(), 2, "{first:?}");
    for r in &boot {
        assert_eq!(r.1, "kubernetes.io/kube-apiserver-client-kubelet");
        assert_eq!(r.3, "Approved,Issued");
    }
    // Renewals: each node asks again as itself before its certificate ends, and is
    // approved through `certificatesigningrequests/selfnodeclient`.
    let renewed = common::eventually(Duration::from_secs(60), || {
        let rows = csrs(&c);
        let mine: Vec<_> = rows
            .into_iter()
            .filter(|r| r.2.starts_with("system:node:remote-") && r.3 == "Approved,Issued")
            .collect();
        (mine.len() >= 2).then_some(mine)
    });
    assert!(
        renewed
            .iter()
            .all(|r| r.1 == "kubernetes.io/kube-apiserver-client-kubelet")
    );
    // Still Ready on the renewed certificates.
    std::thread::sleep(Duration::from_secs(12));
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" Ready ")).count(),
        2,
        "{nodes}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn a_node_reads_only_what_its_pods_use_and_writes_only_its_own() {
    let c = Cluster::start();
    let token = join_token(&c);
    // A node identity made as an agent makes it: a CSR sent with the join token.
    let (yaml, key) = csr_manifest(
        "node-n9",
        "system:node:n9",
        &["system:nodes"],
        "kubernetes.io/kube-apiserver-client-kubelet",
        "digital signature, client auth",
    );
    let file = c.dir.path().join("n9-csr.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = c.kubectl_token(&token, &["create", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (cert, key) = issued(&c, "node-n9", &key);
    let n9 = |args: &[&str]| c.kubectl_cert(&cert, &key, args);
    assert_eq!(
        stdout(&n9(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}"
        ])),
        "system:node:n9"
    );

    c.ok(&["create", "secret", "generic", "used", "--from-literal=a=1"]);
    c.ok(&["create", "secret", "generic", "other", "--from-literal=a=2"]);
    c.ok(&["create", "configmap", "settings", "--from-literal=b=3"]);
    let pod = |name: &str, secret: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: n9\n  containers:\n  - name: c\n    image: busybox\n    env:\n    - name: A\n      valueFrom:\n        secretKeyRef: {{name: {secret}, key: a}}\n    envFrom:\n    - configMapRef: {{name: settings}}\n"
        )
    };
    c.apply(&pod("uses", "used"));
    // What its pod uses: readable.
    assert!(n9(&["get", "secret", "used"]).status.success());
    assert!(n9(&["get", "configmap", "settings"]).status.success());
    // What no pod of it uses: refused, in the Node authorizer's words.
    let out = n9(&["get", "secret", "other"]);
    assert!(
        stderr(&out).contains(
            "secrets \"other\" is forbidden: User \"system:node:n9\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'n9' and this object"
        ),
        "{}",
        stderr(&out)
    );
    // The graph follows the pods: a second pod using it opens it, its deletion closes it.
    c.apply(&pod("uses-other", "other"));
    common::eventually(Duration::from_secs(5), || {
        n9(&["get", "secret", "other"])
            .status
            .success()
            .then_some(())
    });
    c.ok(&["delete", "pod", "uses-other", "--grace-period=0", "--force"]);
    common::eventually(Duration::from_secs(5), || {
        (!n9(&["get", "secret", "other"]).status.success()).then_some(())
    });

    // NodeRestriction: its own Node, yes; another's, or restricted labels, no.
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: n8\n");
    let n9_node = c.dir.path().join("n9-node.yaml");
    std::fs::write(
        &n9_node,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n9\n",
    )
    .unwrap();
    let out = n9(&["create", "-f", n9_node.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = n9(&["label", "node", "n9", "team=blue"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = n9(&["label", "node", "n8", "team=blue"]);
    assert!(
        stderr(&out).contains(
            "nodes \"n8\" is forbidden: node \"n9\" is not allowed to modify node \"n8\""
        ),
        "{}",
        stderr(&out)
    );
    let out = n9(&[
        "label",
        "node",
        "n9",
        "node-restriction.kubernetes.io/pool=a",
    ]);
    assert!(
        stderr(&out)
            .contains("is not allowed to modify labels: node-restriction.kubernetes.io/pool"),
        "{}",
        stderr(&out)
    );
    // Pods: it deletes its own, not another node's.
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: elsewhere\nspec:\n  nodeName: n8\n  containers:\n  - name: c\n    image: busybox\n");
    let out = n9(&["delete", "pod", "elsewhere", "--wait=false"]);
    assert!(
        stderr(&out).contains("node \"n9\" can only delete pods with spec.nodeName set to itself"),
        "{}",
        stderr(&out)
    );
    let out = n9(&["delete", "pod", "uses", "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A node identity for `node` made as an agent makes it (a CSR sent with the join
/// token, signed for the kubelet client signer): its certificate and key paths.
fn node_identity(c: &Cluster, node: &str) -> (PathBuf, PathBuf) {
    let csr = format!("node-{node}");
    let (yaml, key) = csr_manifest(
        &csr,
        &format!("system:node:{node}"),
        &["system:nodes"],
        "kubernetes.io/kube-apiserver-client-kubelet",
        "digital signature, client auth",
    );
    let file = c.dir.path().join(format!("{csr}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = c.kubectl_token(&join_token(c), &["create", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    issued(c, &csr, &key)
}

#[test]
fn every_node_reads_the_tls_secrets_ingresses_name_and_only_while_they_do() {
    let c = Cluster::start();
    let (cert, key) = node_identity(&c, "n7");
    let n7 = |args: &[&str]| c.kubectl_cert(&cert, &key, args);
    // A real key pair for the TLS Secrets: the node's own.
    let (cert_arg, key_arg) = (
        format!("--cert={}", cert.display()),
        format!("--key={}", key.display()),
    );
    c.ok(&["create", "secret", "tls", "tls-a", &cert_arg, &key_arg]);
    c.ok(&["create", "secret", "tls", "tls-b", &cert_arg, &key_arg]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "unrelated",
        "--from-literal=a=1",
    ]);
    assert_eq!(
        c.ok(&["get", "secret", "tls-a", "-o", "jsonpath={.type}"]),
        "kubernetes.io/tls"
    );
    let no_relationship = |out: &Output, name: &str| {
        let err = stderr(out);
        assert!(
            err.contains(&format!(
                "secrets \"{name}\" is forbidden: User \"system:node:n7\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'n7' and this object"
            )),
            "{err}"
        );
    };
    // No pod on n7 uses it and no Ingress names it: refused.
    no_relationship(&n7(&["get", "secret", "tls-a"]), "tls-a");

    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n  tls:\n  - hosts: [a.example]\n    secretName: tls-a\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service: {name: web, port: {number: 80}}\n",
    );
    // Named by an Ingress: every node may read it, by name.
    common::eventually(Duration::from_secs(5), || {
        n7(&["get", "secret", "tls-a"])
            .status
            .success()
            .then_some(())
    });
    let out = n7(&["get", "secret", "tls-a", "-o", "jsonpath={.type}"]);
    assert_eq!(stdout(&out), "kubernetes.io/tls", "{}", stderr(&out));
    let out = n7(&[
        "get",
        "secrets",
        "--field-selector",
        "metadata.name=tls-a",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(stdout(&out), "tls-a", "{}", stderr(&out));
    // Only that one: not an unrelated Secret, another TLS one, nor the whole namespace.
    no_relationship(&n7(&["get", "secret", "unrelated"]), "unrelated");
    no_relationship(&n7(&["get", "secret", "tls-b"]), "tls-b");
    let out = n7(&["get", "secrets"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "secrets is forbidden: User \"system:node:n7\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        stderr(&out)
    );
    let out = n7(&["label", "secret", "tls-a", "team=blue"]);
    assert!(
        stderr(&out).contains("cannot patch resource \"secrets\""),
        "read only: {}",
        stderr(&out)
    );

    // The Ingress gone, so is the access.
    c.ok(&["delete", "ingress", "web"]);
    common::eventually(Duration::from_secs(5), || {
        (!n7(&["get", "secret", "tls-a"]).status.success()).then_some(())
    });
    no_relationship(&n7(&["get", "secret", "tls-a"]), "tls-a");
    let out = n7(&["get", "secrets", "--field-selector", "metadata.name=tls-a"]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn certificates_are_approved_by_whoever_may_approve_for_the_signer() {
    let c = Cluster::start();
    let signer = "kubernetes.io/kube-apiserver-client";
    for name in ["jane", "mallory"] {
        let (yaml, key) = csr_manifest(name, name, &["devs"], signer, "client auth");
        c.apply(&yaml);
        std::fs::write(c.dir.path().join(format!("{name}.pem")), key).unwrap();
    }
    let rows = csrs(&c);
    assert!(
        rows.iter()
            .all(|r| r.2 == "skiff-admin" && r.3 == "Pending"),
        "{rows:?}"
    );
    // bob may update approvals, but not approve for this signer.
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: csr-updater\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests, certificatesigningrequests/approval]\n  verbs: [get, list, update]\n",
    );
    c.ok(&[
        "create",
        "clusterrolebinding",
        "bob-csr",
        "--clusterrole=csr-updater",
        "--user=bob",
    ]);
    let err = c.fails(&["certificate", "approve", "jane", "--as=bob"]);
    assert!(
        err.contains(&format!(
            "certificatesigningrequests.certificates.k8s.io \"jane\" is forbidden: user not permitted to approve requests with signerName \"{signer}\""
        )),
        "{err}"
    );
    c.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: client-approver\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [signers]\n  resourceNames: [\"{signer}\"]\n  verbs: [approve]\n"
    ));
    c.ok(&[
        "create",
        "clusterrolebinding",
        "bob-approve",
        "--clusterrole=client-approver",
        "--user=bob",
    ]);
    assert!(
        c.ok(&["certificate", "approve", "jane", "--as=bob"])
            .contains("approved")
    );
    assert!(c.ok(&["certificate", "deny", "mallory"]).contains("denied"));
    common::eventually(Duration::from_secs(10), || {
        let rows = csrs(&c);
        let cond = |n: &str| rows.iter().find(|r| r.0 == n).map(|r| r.3.clone());
        (cond("jane").as_deref() == Some("Approved,Issued")
            && cond("mallory").as_deref() == Some("Denied"))
        .then_some(())
    });
    // The issued certificate is jane's.
    let (cert, key) = issued(
        &c,
        "jane",
        &std::fs::read_to_string(c.dir.path().join("jane.pem")).unwrap(),
    );
    let out = c.kubectl_cert(
        &cert,
        &key,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(stdout(&out), "jane");
    // system:masters is never issued through the API.
    let (yaml, _) = csr_manifest("root", "root", &["system:masters"], signer, "client auth");
    let out = c.kubectl_stdin(&["create", "-f", "-"], &yaml);
    assert!(
        stderr(&out).contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{}",
        stderr(&out)
    );
}
