//! Every Pod Security Standards check, each a function of the pod and the version
//! evaluated, worded as Pod Security Admission words its reason and detail.

use crate::Version;
use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};
use std::collections::BTreeMap;
use std::collections::BTreeSet;

/// One failed check: `reason (detail)` in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// What a check reads of a pod.
pub struct PodView<'a> {
    pub annotations: &'a BTreeMap<String, String>,
    pub spec: &'a PodSpec,
}

type Check = fn(&PodView<'_>, Version) -> Option<Violation>;

/// `"a", "b"`: wrapped in quotes, no escaping.
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

fn sorted<I: IntoIterator<Item = String>>(items: I) -> Vec<String> {
    items
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A container as the checks see it: name, security context, and the container itself
/// (None for ephemeral ones, which have no ports).
type Seen<'a> = (&'a str, Option<&'a SecurityContext>, Option<&'a Container>);

/// Init, regular, then ephemeral containers, in Pod Security Admission's visit order.
fn containers(s: &PodSpec) -> Vec<Seen<'_>> {
    let mut out = Vec::new();
    for c in s
        .init_containers
        .iter()
        .flatten()
        .chain(s.containers.iter())
    {
        out.push((c.name.as_str(), c.security_context.as_ref(), Some(c)));
    }
    for c in s.ephemeral_containers.iter().flatten() {
        out.push((c.name.as_str(), c.security_context.as_ref(), None));
    }
    out
}

/// `container "a"` / `containers "a", "b"`.
fn these(names: &[&str]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        join_quote(names)
    )
}

/// `pod`, `container "a"`, `pod and containers "a", "b"`.
fn setters(pod: bool, names: &[&str]) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push("pod".to_string());
    }
    if !names.is_empty() {
        parts.push(these(names));
    }
    parts.join(" and ")
}

fn fail(reason: &str, detail: String) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail,
    })
}

fn windows(s: &PodSpec) -> bool {
    s.os.as_ref().is_some_and(|o| o.name == "windows")
}

const APPARMOR_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_profile(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let bad_type = |t: Option<&str>| t.is_some_and(|t| t != "RuntimeDefault" && t != "Localhost");
    let pod_type = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
        .map(|a| a.type_.as_str());
    let mut types = BTreeSet::new();
    let pod_bad = bad_type(pod_type);
    if pod_bad {
        types.insert(pod_type.unwrap_or_default().to_string());
    }
    let mut names = Vec::new();
    for (name, sc, _) in containers(p.spec) {
        let t = sc
            .and_then(|s| s.app_armor_profile.as_ref())
            .map(|a| a.type_.as_str());
        if bad_type(t) {
            names.push(name);
            types.insert(t.unwrap_or_default().to_string());
        }
    }
    let bad_annotations: Vec<String> = p
        .annotations
        .iter()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !pod_bad && names.is_empty() && bad_annotations.is_empty() {
        return None;
    }
    let mut who = Vec::new();
    if pod_bad {
        who.push("pod".to_string());
    }
    if !names.is_empty() {
        who.push(these(&names));
    }
    if !bad_annotations.is_empty() {
        who.push(plural("annotation", "annotations", bad_annotations.len()).to_string());
    }
    let mut values: Vec<String> = types.into_iter().collect();
    values.extend(sorted(bad_annotations));
    let reason = plural(
        "forbidden AppArmor profile",
        "forbidden AppArmor profiles",
        values.len(),
    );
    fail(
        reason,
        format!(
            "{} must not set AppArmor profile type to {}",
            who.join(" and "),
            join_quote(&values)
        ),
    )
}

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added(sc: Option<&SecurityContext>) -> impl Iterator<Item = &String> {
    sc.and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
}

fn capabilities_baseline(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let mut names = Vec::new();
    let mut caps = BTreeSet::new();
    for (name, sc, _) in containers(p.spec) {
        let bad: Vec<&String> = added(sc)
            .filter(|c| !BASELINE_CAPS.contains(&c.as_str()))
            .collect();
        if !bad.is_empty() {
            names.push(name);
            caps.extend(bad.into_iter().cloned());
        }
    }
    if names.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    fail(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            these(&names),
            join_quote(&caps)
        ),
    )
}

fn host_namespaces(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let s = p.spec;
    let set: Vec<&str> = [
        (s.host_network, "hostNetwork=true"),
        (s.host_pid, "hostPID=true"),
        (s.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(v, _)| *v == Some(true))
    .map(|(_, t)| t)
    .collect();
    (!set.is_empty()).then(|| Violation {
        reason: "host namespaces".into(),
        detail: set.join(", "),
    })
}

fn host_path_volumes(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let names: Vec<&str> = p
        .spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        return None;
    }
    fail(
        "hostPath volumes",
        format!(
            "{} {}",
            plural("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

fn host_ports(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let mut names = Vec::new();
    let mut ports = BTreeSet::new();
    for (name, _, c) in containers(p.spec) {
        let bad: Vec<String> = c
            .and_then(|c| c.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|port| port.host_port.filter(|h| *h != 0))
            .map(|h| h.to_string())
            .collect();
        if !bad.is_empty() {
            names.push(name);
            ports.extend(bad);
        }
    }
    if names.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    fail(
        "hostPort",
        format!(
            "{} {} {} {}",
            these(&names),
            plural("uses", "use", names.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let names: Vec<&str> = containers(p.spec)
        .into_iter()
        .filter(|(_, sc, _)| sc.and_then(|s| s.privileged) == Some(true))
        .map(|(n, _, _)| n)
        .collect();
    if names.is_empty() {
        return None;
    }
    fail(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            these(&names)
        ),
    )
}

fn proc_mount(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let mut names = Vec::new();
    let mut values = BTreeSet::new();
    for (name, sc, _) in containers(p.spec) {
        if let Some(m) = sc
            .and_then(|s| s.proc_mount.as_ref())
            .filter(|m| *m != "Default")
        {
            names.push(name);
            values.insert(m.clone());
        }
    }
    if names.is_empty() {
        return None;
    }
    let values: Vec<String> = values.into_iter().collect();
    fail(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            these(&names),
            join_quote(&values)
        ),
    )
}

fn se_linux_options(p: &PodView<'_>, v: Version) -> Option<Violation> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if v.at_least(31) {
        allowed.push("container_engine_t");
    }
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut judge = |o: Option<&k8s_openapi::api::core::v1::SELinuxOptions>| {
        let Some(o) = o else { return false };
        let mut bad = false;
        let t = o.type_.as_deref().unwrap_or("");
        if !allowed.contains(&t) {
            types.insert(t.to_string());
            bad = true;
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            user = true;
            bad = true;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            role = true;
            bad = true;
        }
        bad
    };
    let pod_bad = judge(
        p.spec
            .security_context
            .as_ref()
            .and_then(|s| s.se_linux_options.as_ref()),
    );
    let names: Vec<&str> = containers(p.spec)
        .into_iter()
        .filter(|(_, sc, _)| judge(sc.and_then(|s| s.se_linux_options.as_ref())))
        .map(|(n, _, _)| n)
        .collect();
    if !pod_bad && names.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !types.is_empty() {
        let t: Vec<String> = types.into_iter().collect();
        data.push(format!(
            "{} {}",
            plural("type", "types", t.len()),
            join_quote(&t)
        ));
    }
    if user {
        data.push("user may not be set".into());
    }
    if role {
        data.push("role may not be set".into());
    }
    fail(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters(pod_bad, &names),
            data.join("; ")
        ),
    )
}

fn seccomp_type(sc: Option<&SecurityContext>) -> Option<&str> {
    sc.and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str())
}

fn pod_seccomp(s: &PodSpec) -> Option<&str> {
    s.security_context
        .as_ref()
        .and_then(|c| c.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str())
}

fn seccomp_ok(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn seccomp_baseline(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let pod_bad = pod_seccomp(p.spec).filter(|t| !seccomp_ok(t)).inspect(|t| {
        types.insert(t.to_string());
    });
    let names: Vec<&str> = containers(p.spec)
        .into_iter()
        .filter(|(_, sc, _)| {
            seccomp_type(*sc)
                .filter(|t| !seccomp_ok(t))
                .inspect(|t| {
                    types.insert(t.to_string());
                })
                .is_some()
        })
        .map(|(n, _, _)| n)
        .collect();
    if pod_bad.is_none() && names.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    fail(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters(pod_bad.is_some(), &names),
            join_quote(&types)
        ),
    )
}

/// Before 1.19 seccomp was set by annotations: the pod's, and each container's.
fn seccomp_annotations(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let ok =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let pod_key = "seccomp.security.alpha.kubernetes.io/pod".to_string();
    let keys = std::iter::once(pod_key).chain(
        containers(p.spec)
            .into_iter()
            .map(|(n, _, _)| format!("container.seccomp.security.alpha.kubernetes.io/{n}")),
    );
    let bad = sorted(keys.filter_map(|k| {
        let v = p.annotations.get(&k)?;
        (!ok(v)).then(|| format!("{k}={v:?}"))
    }));
    if bad.is_empty() {
        return None;
    }
    fail(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            plural("annotation", "annotations", bad.len()),
            bad.join(", ")
        ),
    )
}

fn safe_sysctls(v: Version) -> Vec<&'static str> {
    let mut s = vec![
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    if v.at_least(27) {
        s.push("net.ipv4.ip_local_reserved_ports");
    }
    if v.at_least(29) {
        s.extend([
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ]);
    }
    if v.at_least(32) {
        s.extend(["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]);
    }
    s
}

fn sysctls(p: &PodView<'_>, v: Version) -> Option<Violation> {
    let safe = safe_sysctls(v);
    let bad: Vec<&str> = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|n| !safe.contains(n))
        .collect();
    (!bad.is_empty()).then(|| Violation {
        reason: "forbidden sysctls".into(),
        detail: bad.join(", "),
    })
}

fn windows_host_process(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let host = |w: Option<&k8s_openapi::api::core::v1::WindowsSecurityContextOptions>| {
        w.and_then(|w| w.host_process) == Some(true)
    };
    let pod = host(
        p.spec
            .security_context
            .as_ref()
            .and_then(|s| s.windows_options.as_ref()),
    );
    let names: Vec<&str> = containers(p.spec)
        .into_iter()
        .filter(|(_, sc, _)| host(sc.and_then(|s| s.windows_options.as_ref())))
        .map(|(n, _, _)| n)
        .collect();
    if !pod && names.is_empty() {
        return None;
    }
    fail(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters(pod, &names)
        ),
    )
}

fn allow_privilege_escalation(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if v.at_least(25) && windows(p.spec) {
        return None;
    }
    let names: Vec<&str> = containers(p.spec)
        .into_iter()
        .filter(|(_, sc, _)| sc.and_then(|s| s.allow_privilege_escalation) != Some(false))
        .map(|(n, _, _)| n)
        .collect();
    if names.is_empty() {
        return None;
    }
    fail(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            these(&names)
        ),
    )
}

fn capabilities_restricted(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if v.at_least(25) && windows(p.spec) {
        return None;
    }
    let (mut missing, mut adding) = (Vec::new(), Vec::new());
    let mut caps = BTreeSet::new();
    for (name, sc, _) in containers(p.spec) {
        let c = sc.and_then(|s| s.capabilities.as_ref());
        if !c
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        {
            missing.push(name);
        }
        let bad: Vec<&String> = added(sc).filter(|c| *c != "NET_BIND_SERVICE").collect();
        if !bad.is_empty() {
            adding.push(name);
            caps.extend(bad.into_iter().cloned());
        }
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            these(&missing)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        parts.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            these(&adding),
            join_quote(&caps)
        ));
    }
    (!parts.is_empty()).then(|| Violation {
        reason: "unrestricted capabilities".into(),
        detail: parts.join("; "),
    })
}

const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The name of a volume's source, in Pod Security Admission's order.
fn volume_type(v: &k8s_openapi::api::core::v1::Volume) -> &'static str {
    let allowed = [
        v.config_map.is_some(),
        v.csi.is_some(),
        v.downward_api.is_some(),
        v.empty_dir.is_some(),
        v.ephemeral.is_some(),
        v.image.is_some(),
        v.persistent_volume_claim.is_some(),
        v.projected.is_some(),
        v.secret.is_some(),
    ];
    if let Some(i) = allowed.iter().position(|a| *a) {
        return ALLOWED_VOLUMES[i];
    }
    let restricted = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    restricted
        .into_iter()
        .find(|(set, _)| *set)
        .map(|(_, n)| n)
        .unwrap_or("unknown")
}

fn restricted_volumes(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in p.spec.volumes.iter().flatten() {
        let t = volume_type(v);
        if !ALLOWED_VOLUMES.contains(&t) {
            names.push(v.name.as_str());
            types.insert(t.to_string());
        }
    }
    if names.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    fail(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", names.len()),
            join_quote(&names),
            plural("uses", "use", names.len()),
            plural(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let pod = p
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for (name, sc, _) in containers(p.spec) {
        match sc.and_then(|s| s.run_as_non_root) {
            Some(false) => explicit.push(name),
            Some(true) => {}
            None if pod == Some(true) => {}
            None => implicit.push(name),
        }
    }
    let pod_bad = pod == Some(false);
    if pod_bad || !explicit.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters(pod_bad, &explicit)
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    fail(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            these(&implicit)
        ),
    )
}

fn run_as_user(p: &PodView<'_>, _: Version) -> Option<Violation> {
    let pod = p.spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(0);
    let names: Vec<&str> = containers(p.spec)
        .into_iter()
        .filter(|(_, sc, _)| sc.and_then(|s| s.run_as_user) == Some(0))
        .map(|(n, _, _)| n)
        .collect();
    if !pod && names.is_empty() {
        return None;
    }
    fail(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters(pod, &names)),
    )
}

fn seccomp_restricted(p: &PodView<'_>, v: Version) -> Option<Violation> {
    if v.at_least(25) && windows(p.spec) {
        return None;
    }
    let pod = pod_seccomp(p.spec);
    let pod_set = pod.is_some_and(seccomp_ok);
    let mut types = BTreeSet::new();
    let pod_bad = pod.filter(|t| !seccomp_ok(t)).inspect(|t| {
        types.insert(t.to_string());
    });
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for (name, sc, _) in containers(p.spec) {
        match seccomp_type(sc) {
            Some(t) if !seccomp_ok(t) => {
                explicit.push(name);
                types.insert(t.to_string());
            }
            Some(_) => {}
            None if pod_set => {}
            None => implicit.push(name),
        }
    }
    if pod_bad.is_some() || !explicit.is_empty() {
        let types: Vec<String> = types.into_iter().collect();
        return fail(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters(pod_bad.is_some(), &explicit),
                join_quote(&types)
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    fail(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            these(&implicit)
        ),
    )
}

/// The checks of a level at a version, in Pod Security Admission's order: baseline IDs
/// sorted, then restricted IDs sorted, without the baseline checks restricted ones
/// replace.
pub fn checks(restricted: bool, v: Version) -> Vec<Check> {
    let mut out: Vec<(&str, Check)> = vec![
        ("appArmorProfile", app_armor_profile),
        ("hostNamespaces", host_namespaces),
        ("hostPorts", host_ports),
        ("privileged", privileged),
        ("procMount", proc_mount),
        ("seLinuxOptions", se_linux_options),
        ("sysctls", sysctls),
        ("windowsHostProcess", windows_host_process),
    ];
    // Replaced at restricted (capabilities from 1.22, hostPath always, seccomp 1.19+).
    if !(restricted && v.at_least(22)) {
        out.push(("capabilities_baseline", capabilities_baseline));
    }
    if !restricted {
        out.push(("hostPathVolumes", host_path_volumes));
    }
    // Replaced at restricted from 1.19, when it became fields; annotations before.
    if !v.at_least(19) {
        out.push(("seccompProfile_baseline", seccomp_annotations));
    } else if !restricted {
        out.push(("seccompProfile_baseline", seccomp_baseline));
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    if restricted {
        let mut r: Vec<(&str, Check)> = vec![
            ("restrictedVolumes", restricted_volumes),
            ("runAsNonRoot", run_as_non_root),
        ];
        if v.at_least(8) {
            r.push(("allowPrivilegeEscalation", allow_privilege_escalation));
        }
        if v.at_least(22) {
            r.push(("capabilities_restricted", capabilities_restricted));
        }
        if v.at_least(23) {
            r.push(("runAsUser", run_as_user));
        }
        if v.at_least(19) {
            r.push(("seccompProfile_restricted", seccomp_restricted));
        }
        r.sort_by(|a, b| a.0.cmp(b.0));
        out.extend(r);
    }
    out.into_iter().map(|(_, c)| c).collect()
}
