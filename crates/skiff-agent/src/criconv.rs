//! Pure translation between Pods and CRI messages: sandbox and container configs from a
//! pod spec (labels as kubelet sets them, so a restarted agent adopts what it finds), and
//! CRI statuses back into `pod::Observed`.

use crate::pod::{CState, ContainerObs, Observed, SandboxObs};
use serde_json::Value;
use skiff_cri::cri;
use std::collections::{BTreeMap, HashMap};

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

pub fn pod_labels(pod: &Value) -> HashMap<String, String> {
    let m = &pod["metadata"];
    let mut l: HashMap<String, String> = m["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), s(v)))
        .collect();
    l.insert(LABEL_POD_NAME.into(), s(&m["name"]));
    l.insert(LABEL_POD_NAMESPACE.into(), s(&m["namespace"]));
    l.insert(LABEL_POD_UID.into(), s(&m["uid"]));
    l
}

/// The pod's QoS class as Kubernetes computes it from requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    if let Some(q) = pod["status"]["qosClass"].as_str() {
        return match q {
            "Guaranteed" => "Guaranteed",
            "Burstable" => "Burstable",
            _ => "BestEffort",
        };
    }
    let mut any = false;
    let mut guaranteed = true;
    for c in pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        )
    {
        let r = &c["resources"];
        for res in ["cpu", "memory"] {
            let req = r["requests"][res].as_str();
            let lim = r["limits"][res].as_str();
            if req.is_some() || lim.is_some() {
                any = true;
            }
            if lim.is_none() || req.is_some_and(|q| Some(q) != lim) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// cgroupfs parent as kubelet lays it out: `/kubepods[/burstable|/besteffort]/pod<uid>`.
pub fn cgroup_parent(pod: &Value) -> String {
    let uid = s(&pod["metadata"]["uid"]);
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

pub fn host_network(pod: &Value) -> bool {
    pod["spec"]["hostNetwork"].as_bool().unwrap_or(false)
}

/// `/…/pods/<ns>_<name>_<uid>`, kubelet's per-pod log directory.
pub fn log_directory(root: &std::path::Path, pod: &Value) -> String {
    let m = &pod["metadata"];
    root.join(format!(
        "{}_{}_{}",
        s(&m["namespace"]),
        s(&m["name"]),
        s(&m["uid"])
    ))
    .display()
    .to_string()
}

/// A resolv.conf's nameservers, search domains and options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

pub fn parse_resolv_conf(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().map(str::to_string)),
            // The last search (or domain) line wins, as in the resolver.
            Some("search" | "domain") => r.searches = words.map(str::to_string).collect(),
            Some("options") => r.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    r
}

/// The pod's DNS as kubelet builds it from `dnsPolicy` and `dnsConfig`: ClusterFirst
/// uses the cluster DNS with the namespace's search path and `ndots:5`, Default the
/// node's resolv.conf, None only `dnsConfig`. Without a cluster DNS configured,
/// ClusterFirst falls back to Default (the bool says so, for kubelet's event).
pub fn dns_config(
    pod: &Value,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &Resolv,
) -> (cri::DnsConfig, bool) {
    let spec = &pod["spec"];
    let hostnet = host_network(pod);
    let mut policy = spec["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    match policy {
        "ClusterFirst" if hostnet => policy = "Default",
        "ClusterFirstWithHostNet" => policy = "ClusterFirst",
        _ => {}
    }
    let mut missing = false;
    if policy == "ClusterFirst" && cluster_dns.is_empty() {
        policy = "Default";
        missing = true;
    }
    let mut r = match policy {
        "None" => Resolv::default(),
        "ClusterFirst" => {
            let ns = s(&pod["metadata"]["namespace"]);
            let mut searches = vec![
                format!("{ns}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_string(),
            ];
            searches.extend(host.searches.iter().cloned());
            Resolv {
                nameservers: cluster_dns.to_vec(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => host.clone(),
    };
    let extra = &spec["dnsConfig"];
    for n in extra["nameservers"].as_array().into_iter().flatten() {
        if let Some(n) = n.as_str().filter(|n| !r.nameservers.iter().any(|x| x == n)) {
            r.nameservers.push(n.to_string());
        }
    }
    for d in extra["searches"].as_array().into_iter().flatten() {
        if let Some(d) = d.as_str().filter(|d| !r.searches.iter().any(|x| x == d)) {
            r.searches.push(d.to_string());
        }
    }
    // Options merge by name: the pod's value replaces the policy's.
    for o in extra["options"].as_array().into_iter().flatten() {
        let Some(name) = o["name"].as_str() else {
            continue;
        };
        r.options.retain(|x| x.split(':').next() != Some(name));
        r.options.push(match o["value"].as_str() {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        });
    }
    // The resolver reads three nameservers and kubelet keeps 32 search domains.
    r.nameservers.truncate(3);
    r.searches.truncate(32);
    (
        cri::DnsConfig {
            servers: r.nameservers,
            searches: r.searches,
            options: r.options,
        },
        missing,
    )
}

pub fn sandbox_config(
    pod: &Value,
    attempt: u32,
    log_root: &std::path::Path,
) -> cri::PodSandboxConfig {
    let m = &pod["metadata"];
    let spec = &pod["spec"];
    let hostnet = host_network(pod);
    let mut ports = Vec::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for p in c["ports"].as_array().into_iter().flatten() {
            let Some(host_port) = p["hostPort"].as_i64().filter(|p| *p > 0) else {
                continue;
            };
            let protocol = match p["protocol"].as_str().unwrap_or("TCP") {
                "UDP" => cri::Protocol::Udp,
                "SCTP" => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            };
            ports.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p["containerPort"].as_i64().unwrap_or(0) as i32,
                host_port: host_port as i32,
                host_ip: s(&p["hostIP"]),
            });
        }
    }
    let hostname = spec["hostname"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| s(&m["name"]));
    let annotations = m["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), s(v)))
        .collect();
    let mode = |host: bool| {
        if host {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: s(&m["name"]),
            uid: s(&m["uid"]),
            namespace: s(&m["namespace"]),
            attempt,
        }),
        // A host-network pod keeps the node's hostname (runc refuses one without a UTS ns).
        hostname: if hostnet { String::new() } else { hostname },
        log_directory: log_directory(log_root, pod),
        dns_config: None,
        port_mappings: ports,
        labels: pod_labels(pod),
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode(hostnet),
                    pid: if spec["shareProcessNamespace"].as_bool().unwrap_or(false) {
                        cri::NamespaceMode::Pod as i32
                    } else if spec["hostPID"].as_bool().unwrap_or(false) {
                        cri::NamespaceMode::Node as i32
                    } else {
                        cri::NamespaceMode::Container as i32
                    },
                    ipc: mode(spec["hostIPC"].as_bool().unwrap_or(false)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

/// Parses a CPU quantity into millicores (`500m`, `1`, `0.5`).
pub fn millicores(q: &str) -> Option<i64> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as i64)
}

/// Parses a memory quantity into bytes (`64Mi`, `1G`, `1e6`, plain bytes).
pub fn bytes(q: &str) -> Option<i64> {
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suf, mult) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suf) {
            return n.parse::<f64>().ok().map(|n| (n * mult) as i64);
        }
    }
    q.parse::<f64>().ok().map(|n| n as i64)
}

/// CPU shares, CFS quota and memory limit from a container's resources, as kubelet maps
/// them (shares = request millicores * 1024 / 1000, minimum 2; quota = limit * period).
pub fn linux_resources(c: &Value) -> cri::LinuxContainerResources {
    let r = &c["resources"];
    let req_cpu = r["requests"]["cpu"].as_str().and_then(millicores);
    let lim_cpu = r["limits"]["cpu"].as_str().and_then(millicores);
    let shares = req_cpu.or(lim_cpu).map_or(2, |m| (m * 1024 / 1000).max(2));
    let period = 100_000;
    cri::LinuxContainerResources {
        cpu_period: if lim_cpu.is_some() { period } else { 0 },
        cpu_quota: lim_cpu.map_or(0, |m| (m * period / 1000).max(1000)),
        cpu_shares: shares,
        memory_limit_in_bytes: r["limits"]["memory"].as_str().and_then(bytes).unwrap_or(0),
        ..Default::default()
    }
}

/// kubelet's runAsNonRoot check, made before a container is created: the effective
/// runAsUser (container over pod) decides; without one, the image's user does, and an
/// image without a user runs as root.
pub fn verify_run_as_non_root(
    pod: &Value,
    c: &Value,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let sc = &c["securityContext"];
    let psc = &pod["spec"]["securityContext"];
    let non_root = sc["runAsNonRoot"]
        .as_bool()
        .or(psc["runAsNonRoot"].as_bool());
    if non_root != Some(true) {
        return Ok(());
    }
    let m = &pod["metadata"];
    let who = format!(
        "pod: \"{}_{}({})\", container: {}",
        s(&m["name"]),
        s(&m["namespace"]),
        s(&m["uid"]),
        s(&c["name"])
    );
    match sc["runAsUser"].as_i64().or(psc["runAsUser"].as_i64()) {
        Some(0) => Err(format!(
            "container's runAsUser breaks non-root policy ({who})"
        )),
        Some(_) => Ok(()),
        None => match (image_uid, image_user) {
            (Some(0), _) | (None, "") => Err(format!(
                "container has runAsNonRoot and image will run as root ({who})"
            )),
            (None, name) => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root ({who})"
            )),
            (Some(_), _) => Ok(()),
        },
    }
}

/// The container config. `env` is already resolved (values, fieldRef, config maps, secrets).
pub fn container_config(
    pod: &Value,
    c: &Value,
    image: &str,
    attempt: u32,
    env: &[(String, String)],
) -> cri::ContainerConfig {
    let name = s(&c["name"]);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut labels = HashMap::new();
    let m = &pod["metadata"];
    labels.insert(LABEL_POD_NAME.to_string(), s(&m["name"]));
    labels.insert(LABEL_POD_NAMESPACE.to_string(), s(&m["namespace"]));
    labels.insert(LABEL_POD_UID.to_string(), s(&m["uid"]));
    labels.insert(LABEL_CONTAINER_NAME.to_string(), name.clone());
    let sc = &c["securityContext"];
    let psc = &pod["spec"]["securityContext"];
    let run_as_user = sc["runAsUser"].as_i64().or(psc["runAsUser"].as_i64());
    let run_as_group = sc["runAsGroup"].as_i64().or(psc["runAsGroup"].as_i64());
    let caps = &sc["capabilities"];
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: strings(&c["command"]),
        args: strings(&c["args"]),
        working_dir: s(&c["workingDir"]),
        envs: env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        labels,
        log_path: format!("{name}/{attempt}.log"),
        stdin: c["stdin"].as_bool().unwrap_or(false),
        stdin_once: c["stdinOnce"].as_bool().unwrap_or(false),
        tty: c["tty"].as_bool().unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(c)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: sc["privileged"].as_bool().unwrap_or(false),
                readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
                run_as_user: run_as_user.map(|v| cri::Int64Value { value: v }),
                run_as_group: run_as_group.map(|v| cri::Int64Value { value: v }),
                // As kubelet: the pod's supplementalGroups, and its fsGroup, which owns
                // its volumes.
                supplemental_groups: psc["supplementalGroups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(psc.get("fsGroup"))
                    .filter_map(Value::as_i64)
                    .collect(),
                no_new_privs: sc["allowPrivilegeEscalation"] == false,
                capabilities: Some(cri::Capability {
                    add_capabilities: strings(&caps["add"]),
                    drop_capabilities: strings(&caps["drop"]),
                    ..Default::default()
                }),
                namespace_options: Some(cri::NamespaceOption {
                    network: if host_network(pod) {
                        cri::NamespaceMode::Node as i32
                    } else {
                        cri::NamespaceMode::Pod as i32
                    },
                    pid: if pod["spec"]["shareProcessNamespace"]
                        .as_bool()
                        .unwrap_or(false)
                    {
                        cri::NamespaceMode::Pod as i32
                    } else {
                        cri::NamespaceMode::Container as i32
                    },
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// A CRI time (Unix nanoseconds). Zero is the epoch, as kubelet shows it: a container
/// that never started says `startedAt: "1970-01-01T00:00:00Z"`, which typed clients
/// decode (an empty string they do not).
fn rfc3339(nanos: i64) -> String {
    if nanos < 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn sandbox_obs(sb: &cri::PodSandboxStatus) -> SandboxObs {
    SandboxObs {
        id: sb.id.clone(),
        ready: sb.state == cri::PodSandboxState::SandboxReady as i32,
        ip: sb
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default(),
        attempt: sb.metadata.as_ref().map_or(0, |m| m.attempt),
    }
}

pub fn container_obs(c: &cri::ContainerStatus) -> ContainerObs {
    let state = match cri::ContainerState::try_from(c.state) {
        Ok(cri::ContainerState::ContainerCreated) => CState::Created,
        Ok(cri::ContainerState::ContainerRunning) => CState::Running,
        Ok(cri::ContainerState::ContainerExited) => CState::Exited,
        _ => CState::Unknown,
    };
    ContainerObs {
        id: c.id.clone(),
        name: c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
        state,
        exit_code: c.exit_code,
        // The runtime's own reasons (`OOMKilled`, `StartError`) are kept; `Completed`
        // and `Error` kubelet derives from the code.
        reason: if matches!(c.reason.as_str(), "Completed" | "Error") {
            String::new()
        } else {
            c.reason.clone()
        },
        message: c.message.clone(),
        started_at: rfc3339(c.started_at),
        finished_at: rfc3339(c.finished_at),
        image_ref: c.image_ref.clone(),
    }
}

/// Sorts sandboxes newest first.
pub fn observed(mut sandboxes: Vec<(i64, SandboxObs)>, containers: Vec<ContainerObs>) -> Observed {
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.0));
    Observed {
        sandboxes: sandboxes.into_iter().map(|(_, s)| s).collect(),
        containers,
        probed: BTreeMap::new(),
    }
}

/// Env values from the spec that need no API lookups; `fieldRef`s resolved from the pod.
/// Returns the names of variables that need a ConfigMap or Secret (resolved by the caller).
pub fn simple_env(pod: &Value, c: &Value, host_ip: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = s(&e["name"]);
        if let Some(v) = e["value"].as_str() {
            out.push((name, Some(v.to_string())));
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            out.push((name, field_ref(pod, path, host_ip)));
        } else if !e["valueFrom"].is_null() {
            out.push((name, None));
        } else {
            out.push((name, Some(String::new())));
        }
    }
    out
}

/// `$(VAR)` references to variables defined before (envFrom, then earlier env entries),
/// as Kubernetes expands `value`s; `$$` escapes, unknown references stay as written.
pub fn expand(v: &str, env: &[(String, String)]) -> String {
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let var = &inner[..end];
            match vars.get(var) {
                Some(val) => out.push_str(val),
                None => out.push_str(&format!("$({var})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

pub fn field_ref(pod: &Value, path: &str, host_ip: &str) -> Option<String> {
    let m = &pod["metadata"];
    Some(match path {
        "metadata.name" => s(&m["name"]),
        "metadata.namespace" => s(&m["namespace"]),
        "metadata.uid" => s(&m["uid"]),
        "spec.nodeName" => s(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => s(&pod["spec"]["serviceAccountName"]),
        "status.hostIP" => host_ip.to_string(),
        "status.podIP" => s(&pod["status"]["podIP"]),
        p => {
            if let Some(k) = p
                .strip_prefix("metadata.labels['")
                .and_then(|r| r.strip_suffix("']"))
            {
                s(&m["labels"][k])
            } else if let Some(k) = p
                .strip_prefix("metadata.annotations['")
                .and_then(|r| r.strip_suffix("']"))
            {
                s(&m["annotations"][k])
            } else {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_and_resources() {
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("1.5"), Some(1500));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        let r = linux_resources(
            &json!({"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}),
        );
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(linux_resources(&json!({})).cpu_shares, 2);
    }

    #[test]
    fn qos_classes() {
        let p = |res: Value| json!({"spec": {"containers": [{"name": "a", "resources": res}]}});
        assert_eq!(qos_class(&p(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&p(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&p(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            cgroup_parent(
                &json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a"}]}})
            ),
            "/kubepods/besteffort/podu"
        );
    }

    #[test]
    fn sandbox_config_carries_identity_ports_and_namespaces() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]},
        });
        let c = sandbox_config(&pod, 2, std::path::Path::new("/logs"));
        let m = c.metadata.unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("web", "ns", "u1", 2)
        );
        assert_eq!(c.hostname, "web");
        assert_eq!(c.log_directory, "/logs/ns_web_u1");
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(c.port_mappings[0].host_port, 8080);
        assert_eq!(c.labels[LABEL_POD_UID], "u1");
        assert_eq!(c.labels["app"], "web");
    }

    #[test]
    fn env_values_field_refs_and_expansion() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}}, "spec": {"nodeName": "node1"}, "status": {"podIP": "10.42.0.9"}});
        let c = json!({"env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$$(A)-$(NOPE)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
        ]});
        let env = simple_env(&pod, &c, "192.0.2.1");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("B").unwrap(), "$(A)-$$(A)-$(NOPE)");
        let defined = [("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)-$$(A)-$(NOPE)", &defined), "1-$(A)-$(NOPE)");
        assert_eq!(get("POD").unwrap(), "p");
        assert_eq!(get("APP").unwrap(), "x");
        assert_eq!(get("HOST").unwrap(), "192.0.2.1");
        assert_eq!(get("CM"), None);
    }

    #[test]
    fn run_as_non_root_is_checked_as_kubelet_does() {
        let pod = |psc: Value, sc: Value| {
            json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
                "spec": {"securityContext": psc, "containers": [{"name": "c", "securityContext": sc}]}
            })
        };
        let check = |p: &Value, uid: Option<i64>, user: &str| {
            verify_run_as_non_root(p, &p["spec"]["containers"][0], uid, user)
        };
        // Not asked for: anything goes.
        assert!(check(&pod(json!({}), json!({})), Some(0), "").is_ok());
        // The pod's setting applies to its containers; an image without a user is root.
        let p = pod(json!({"runAsNonRoot": true}), json!({}));
        assert_eq!(
            check(&p, None, "").unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        assert!(check(&p, Some(0), "").is_err());
        assert!(check(&p, Some(1000), "").is_ok());
        assert!(
            check(&p, None, "nobody")
                .unwrap_err()
                .contains("image has non-numeric user (nobody), cannot verify user is non-root")
        );
        // runAsUser decides before the image: the container's over the pod's.
        let p = pod(
            json!({"runAsNonRoot": true, "runAsUser": 1000}),
            json!({"runAsUser": 0}),
        );
        assert!(
            check(&p, Some(1000), "")
                .unwrap_err()
                .starts_with("container's runAsUser breaks non-root policy")
        );
        let p = pod(json!({"runAsNonRoot": true, "runAsUser": 1000}), json!({}));
        assert!(check(&p, Some(0), "").is_ok());
        // The container can lift the pod's demand.
        let p = pod(
            json!({"runAsNonRoot": true}),
            json!({"runAsNonRoot": false}),
        );
        assert!(check(&p, Some(0), "").is_ok());
    }

    #[test]
    fn dns_follows_the_pods_policy() {
        let host = parse_resolv_conf(
            "# comment\nnameserver 192.0.2.53\nsearch example.org\noptions edns0 ndots:2\n",
        );
        assert_eq!(host.nameservers, ["192.0.2.53"]);
        assert_eq!(host.searches, ["example.org"]);
        let pod = |spec: Value| json!({"metadata": {"namespace": "web"}, "spec": spec});
        let dns = ["10.43.0.10".to_string()];
        let (c, missing) = dns_config(&pod(json!({})), &dns, "cluster.local", &host);
        assert!(!missing);
        assert_eq!(c.servers, ["10.43.0.10"]);
        assert_eq!(
            c.searches,
            [
                "web.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.org"
            ]
        );
        assert_eq!(c.options, ["ndots:5"]);
        // No cluster DNS: ClusterFirst falls back to the node's, and says so.
        let (c, missing) = dns_config(&pod(json!({})), &[], "cluster.local", &host);
        assert!(missing);
        assert_eq!(c.servers, ["192.0.2.53"]);
        // Host network: the node's, unless ClusterFirstWithHostNet.
        let (c, _) = dns_config(
            &pod(json!({"hostNetwork": true})),
            &dns,
            "cluster.local",
            &host,
        );
        assert_eq!(c.servers, ["192.0.2.53"]);
        let (c, _) = dns_config(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &dns,
            "cluster.local",
            &host,
        );
        assert_eq!(c.servers, ["10.43.0.10"]);
        // None takes dnsConfig alone; options merge by name.
        let (c, _) = dns_config(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"], "searches": ["a.b"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]
            }})),
            &dns,
            "cluster.local",
            &host,
        );
        assert_eq!(
            (c.servers, c.searches),
            (vec!["1.2.3.4".to_string()], vec!["a.b".to_string()])
        );
        assert_eq!(c.options, ["ndots:1", "edns0"]);
        let (c, _) = dns_config(
            &pod(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}})),
            &dns,
            "cluster.local",
            &host,
        );
        assert_eq!(c.options, ["ndots:2"]);
    }
}
