//! Pod Security Admission with real kubectl: namespace labels, pods refused at the
//! enforce level with Kubernetes' message, warnings for workloads and for the pods a
//! tightened namespace already holds, bad labels refused.

mod common;

use common::Cluster;

const PRIVILEGED: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\nspec:\n  containers:\n  - name: c\n    image: busybox\n    securityContext:\n      privileged: true\n";

const HARDENED: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hardened\nspec:\n  securityContext:\n    runAsNonRoot: true\n    runAsUser: 1000\n    seccompProfile:\n      type: RuntimeDefault\n  containers:\n  - name: c\n    image: busybox\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [\"ALL\"]\n";

fn apply(c: &Cluster, ns: &str, yaml: &str) -> (bool, String) {
    let out = c.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn namespaces_enforce_and_warn_pod_security_levels() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "secure"]);
    // Without a level, a privileged pod is accepted.
    let (ok, err) = apply(&c, "secure", &PRIVILEGED.replace("NAME", "before"));
    assert!(ok, "{err}");

    // Tightening warns about the pod already there.
    let out = c.kubectl(&[
        "label",
        "namespace",
        "secure",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{warned}");
    assert!(
        warned.contains("Warning: existing pods in namespace \"secure\" violate the new PodSecurity enforce level \"restricted:latest\"")
            && warned.contains("Warning: before: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{warned}"
    );

    // The same pod is now refused, in kube-apiserver's words.
    let (ok, err) = apply(&c, "secure", &PRIVILEGED.replace("NAME", "after"));
    assert!(!ok);
    assert!(
        err.contains("pods \"after\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"c\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"),
        "{err}"
    );
    // A pod that meets the standard is accepted; the one already there may still be
    // relabelled (an update that does not touch its containers).
    let (ok, err) = apply(&c, "secure", HARDENED);
    assert!(ok, "{err}");
    c.ok(&["label", "pod", "before", "-n", "secure", "touched=yes"]);

    // Workloads are not refused, but warned about (warn follows enforce).
    let out = c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "-n",
        "secure",
    ]);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        warned.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false)"),
        "{warned}"
    );

    // An update of a workload's template is warned about too.
    let out = c.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "nginx=nginx:2",
        "-n",
        "secure",
    ]);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        warned.contains("Warning: would violate PodSecurity \"restricted:latest\""),
        "{warned}"
    );

    // Baseline: what restricted adds is allowed, the host is not.
    c.ok(&["create", "namespace", "base"]);
    c.ok(&[
        "label",
        "namespace",
        "base",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    c.ok(&["run", "plain", "--image=nginx", "-n", "base"]);
    let host = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: host\nspec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox\n    ports:\n    - containerPort: 8080\n      hostPort: 8080\n";
    let (ok, err) = apply(&c, "base", host);
    assert!(!ok);
    assert!(
        err.contains("violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), hostPort (container \"c\" uses hostPort 8080)"),
        "{err}"
    );

    // Bad labels are refused, naming the label.
    let err = c.fails(&[
        "label",
        "namespace",
        "base",
        "pod-security.kubernetes.io/warn=strict",
    ]);
    assert!(
        err.contains("metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: \"strict\": must be one of privileged, baseline, restricted"),
        "{err}"
    );
}

#[test]
fn cluster_defaults_and_exemptions_from_the_admission_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admission.yaml");
    std::fs::write(
        &file,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults:\n      enforce: baseline\n    exemptions:\n      namespaces: [open]\n",
    )
    .unwrap();
    let arg = format!("--admission-control-config-file={}", file.display());
    let c = Cluster::start_in(dir, &["server", &arg]);
    // No labels: the cluster default applies.
    let (ok, err) = apply(&c, "default", &PRIVILEGED.replace("NAME", "p"));
    assert!(!ok);
    assert!(err.contains("violates PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"), "{err}");
    // An exempt namespace takes anything, even labelled restricted.
    c.ok(&["create", "namespace", "open"]);
    let out = c.kubectl(&[
        "label",
        "namespace",
        "open",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        warned.contains("Warning: namespace \"open\" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"),
        "{warned}"
    );
    let (ok, err) = apply(&c, "open", &PRIVILEGED.replace("NAME", "p"));
    assert!(ok, "{err}");
    // A label loosens the default for its namespace.
    c.ok(&["create", "namespace", "lab"]);
    c.ok(&[
        "label",
        "namespace",
        "lab",
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    let (ok, err) = apply(&c, "lab", &PRIVILEGED.replace("NAME", "p"));
    assert!(ok, "{err}");
}
