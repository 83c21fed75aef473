//! What is special about some kinds: pod status on create and graceful deletion,
//! service IP and node-port allocation, namespaces' lifecycle, the Scale and Binding
//! subresources, and the events.k8s.io view of core events.

use crate::object::{DeleteOptions, Target, WriteOptions, now_rfc3339};
use crate::registry::Resource;
use crate::server::ApiServer;
use rand::Rng;
use serde_json::{Value, json};
use skiff_types::{ApiError, FieldError, ResourceInfo, Subresource, meta};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

pub const SERVICE_CIDR_BASE: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 0);
pub const SERVICE_CIDR_PREFIX: u32 = 16;
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 1);
/// The cluster DNS Service's address (kubelet's `--cluster-dns`).
pub const KUBE_DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

fn is(ri: &ResourceInfo, group: &str, plural: &str) -> bool {
    ri.group == group && ri.plural == plural
}

/// Creates of these kinds allocate from shared pools and must be serialised.
pub fn needs_alloc_lock(ri: &ResourceInfo) -> bool {
    is(ri, "", "services")
}

/// Kind-specific preparation of a new object, after defaulting and before validation.
pub async fn prepare_create(
    api: &ApiServer,
    ri: &ResourceInfo,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if ri.has_subresource(Subresource::Status) && !is(ri, "", "nodes") {
        // Status is the system's to write; a create starts from a fresh one.
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
            if let Some(s) = skiff_validation::initial_status(&ri.group, &ri.plural) {
                o.insert("status".into(), s);
            }
        }
    }
    match (&*ri.group, &*ri.plural) {
        ("", "pods") => {
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => allocate_service(api, obj, None).await?,
        ("batch", "jobs") => skiff_validation::job_generate_selector(obj),
        ("networking.k8s.io", "ingresses") => crate::ingressclass::admit_default(api, obj),
        ("", "persistentvolumeclaims" | "persistentvolumes") => {
            crate::storage::admit_create(api, ri, obj)
        }
        _ => {}
    }
    Ok(())
}

/// Side effects after a successful create.
pub async fn after_create(api: &ApiServer, ri: &ResourceInfo, obj: &Value) {
    if is(ri, "", "namespaces")
        && let Some(ns) = meta::name(obj)
    {
        // Every namespace gets its `default` ServiceAccount and the cluster CA.
        // (Boxed: both recurse into create.)
        ensure_default_service_account(api, ns).await;
        Box::pin(crate::serviceaccount::ensure_root_ca(api, ns)).await;
    }
}

/// Boxed because it re-enters `create`, which calls back here for namespaces.
pub fn ensure_default_service_account<'a>(
    api: &'a ApiServer,
    ns: &'a str,
) -> futures::future::BoxFuture<'a, ()> {
    Box::pin(async move {
        let sa_ri = crate::registry::builtin("", "serviceaccounts");
        let t = Target {
            ri: sa_ri,
            namespace: Some(ns.to_string()),
            name: None,
            sub: None,
        };
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        let opts = system_write_options();
        match api.create(&t, sa, &opts).await {
            Ok(_) => {}
            // Already there; or the namespace is going or gone.
            Err(e) if matches!(e.code, 409 | 403 | 404) => {}
            Err(e) => {
                tracing::warn!(namespace = ns, error = %e, "could not create the default service account")
            }
        }
    })
}

pub fn system_write_options() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        field_manager: None,
        field_validation: crate::object::FieldValidation::Ignore,
        user: skiff_pki::UserInfo {
            username: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        },
    }
}

/// Kind-specific rules on update (values the server allocated survive a PUT that omits them).
pub fn prepare_update(ri: &ResourceInfo, new: &mut Value, current: &Value) -> Result<(), ApiError> {
    if is(ri, "", "services") {
        let spec = new.get_mut("spec").and_then(Value::as_object_mut);
        if let Some(spec) = spec {
            for f in ["clusterIP", "clusterIPs"] {
                let empty = spec
                    .get(f)
                    .map(|v| v.is_null() || v == "" || v == &json!([]))
                    .unwrap_or(true);
                if empty && let Some(old) = current["spec"].get(f) {
                    spec.insert(f.to_string(), old.clone());
                }
            }
            // A type without node ports drops them (Kubernetes' dropTypeDependentFields);
            // otherwise node ports the user did not name keep their allocation (matched
            // by port).
            let with_node_ports = matches!(
                spec.get("type").and_then(Value::as_str),
                Some("NodePort" | "LoadBalancer")
            );
            if !with_node_ports {
                for p in spec
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = p.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
            let keeps_health_port = with_node_ports
                && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
            if keeps_health_port && !spec.contains_key("healthCheckNodePort") {
                if let Some(hc) = current["spec"].get("healthCheckNodePort") {
                    spec.insert("healthCheckNodePort".into(), hc.clone());
                }
            } else if !keeps_health_port {
                spec.remove("healthCheckNodePort");
            }
            let old_ports = current["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .filter(|_| with_node_ports)
            {
                for p in ports {
                    let missing = p
                        .get("nodePort")
                        .map(|v| v.is_null() || v == 0)
                        .unwrap_or(true);
                    if missing
                        && let Some(old) = old_ports.iter().find(|o| {
                            o["port"] == p["port"] && o.get("protocol") == p.get("protocol")
                        })
                        && let Some(np) = old.get("nodePort")
                    {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
    }
    Ok(())
}

/// Kubernetes' QoS class of a pod (pkg/apis/core/helper/qos).
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests_any = false;
    let mut guaranteed = true;
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod["spec"][*f].as_array())
        .flatten();
    for c in containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let rq = req.get(r).and_then(Value::as_str);
            let lm = lim.get(r).and_then(Value::as_str);
            if rq.is_some() || lm.is_some() {
                requests_any = true;
            }
            match (rq, lm) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if !quantity_eq(a, b) => guaranteed = false,
                _ => {}
            }
        }
    }
    if !requests_any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn quantity_eq(a: &str, b: &str) -> bool {
    match (
        skiff_validation::quantity::parse(a),
        skiff_validation::quantity::parse(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub enum DeletionPlan {
    /// Remove from storage now.
    Immediate,
    /// Store this object (deletionTimestamp set); something else finishes the deletion.
    Mark(Value),
    /// Deletion already under way; nothing to change.
    AlreadyPending,
}

/// Namespaces the cluster cannot do without (kube-apiserver's NamespaceLifecycle keeps
/// the same three).
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Whether `name` of this kind may be deleted at all, as admission decides before any
/// precondition is looked at.
pub fn admit_delete(ri: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    if is(ri, "", "namespaces") && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            &ri.group,
            &ri.plural,
            name,
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}

/// How a DELETE proceeds: graceful pod termination, namespace finalization, finalizers.
pub fn deletion_plan(ri: &ResourceInfo, current: &Value, opts: &DeleteOptions) -> DeletionPlan {
    let finalizers = meta::finalizers(current);
    let now = chrono::Utc::now();
    if is(ri, "", "pods") {
        let bound = current["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            current["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let default_grace = current["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let mut grace = opts.grace_period_seconds.unwrap_or(default_grace).max(0);
        if !bound || terminal {
            grace = 0;
        }
        if meta::deletion_timestamp(current).is_some() {
            let current_grace = current["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if grace == 0 && finalizers.is_empty() {
                return DeletionPlan::Immediate;
            }
            if grace < current_grace {
                return DeletionPlan::Mark(mark(
                    current,
                    now + chrono::Duration::seconds(grace),
                    grace,
                    None,
                ));
            }
            return DeletionPlan::AlreadyPending;
        }
        if grace == 0 && finalizers.is_empty() {
            return DeletionPlan::Immediate;
        }
        return DeletionPlan::Mark(mark(
            current,
            now + chrono::Duration::seconds(grace),
            grace,
            None,
        ));
    }
    if is(ri, "", "namespaces") {
        if meta::deletion_timestamp(current).is_some() {
            return DeletionPlan::AlreadyPending;
        }
        let mut m = mark(current, now, 0, None);
        m["status"]["phase"] = json!("Terminating");
        return DeletionPlan::Mark(m);
    }
    if meta::deletion_timestamp(current).is_some() {
        return if finalizers.is_empty() {
            DeletionPlan::Immediate
        } else {
            DeletionPlan::AlreadyPending
        };
    }
    if is(ri, "apiextensions.k8s.io", "customresourcedefinitions") {
        // Its objects go first: the CRD controller deletes them, then the finalizer.
        let m = mark(current, now, 0, Some(crate::crds::CLEANUP_FINALIZER));
        return DeletionPlan::Mark(m);
    }
    // Orphan and Foreground leave the owner in place, marked, for the garbage collector:
    // it releases or deletes the dependents, then removes the finalizer. Background
    // (kubectl's default) deletes the owner now; the collector follows.
    match opts.propagation_policy.as_deref() {
        Some("Orphan") => return DeletionPlan::Mark(mark(current, now, 0, Some("orphan"))),
        Some("Foreground") => {
            return DeletionPlan::Mark(mark(current, now, 0, Some("foregroundDeletion")));
        }
        _ => {}
    }
    if !finalizers.is_empty() {
        return DeletionPlan::Mark(mark(current, now, 0, None));
    }
    DeletionPlan::Immediate
}

fn mark(
    current: &Value,
    at: chrono::DateTime<chrono::Utc>,
    grace: i64,
    add_finalizer: Option<&str>,
) -> Value {
    let mut m = current.clone();
    meta::set(
        &mut m,
        "deletionTimestamp",
        json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    meta::set(&mut m, "deletionGracePeriodSeconds", json!(grace));
    if let Some(f) = add_finalizer {
        let mut fs = meta::finalizers(&m);
        if !fs.iter().any(|x| x == f) {
            fs.push(f.to_string());
        }
        meta::set(&mut m, "finalizers", json!(fs));
    }
    if meta::generation(&m) > 0 {
        let g = meta::generation(&m) + 1;
        meta::set(&mut m, "generation", json!(g));
    }
    m
}

/// A pod being deleted with a grace period is removed by its node's agent, not by the
/// last finalizer going away.
pub fn waits_for_kubelet(ri: &ResourceInfo, obj: &Value) -> bool {
    is(ri, "", "pods")
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0
        && obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
}

// ---------------------------------------------------------------------------------------
// Services: cluster IPs and node ports.

fn ip_in_cidr(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SERVICE_CIDR_PREFIX);
    (u32::from(ip) & mask) == u32::from(SERVICE_CIDR_BASE)
}

/// Allocates `spec.clusterIP(s)` and node ports of a new service, or checks the ones the
/// user asked for. Caller holds `alloc_lock`.
pub async fn allocate_service(
    api: &ApiServer,
    svc: &mut Value,
    _old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = meta::name(svc).unwrap_or("").to_string();
    let svc_type = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    // The object itself is excluded: if it exists, storage answers AlreadyExists.
    let self_key = (meta::namespace(svc).unwrap_or("").to_string(), name.clone());
    let (used_ips, used_ports) = used_service_allocations(api, &self_key).await?;
    let invalid = |errs: Vec<FieldError>| ApiError::invalid("", "Service", &name, &errs);
    if svc_type != "ExternalName" {
        let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        match requested.as_str() {
            "None" => {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
            "" => {
                let ip = pick_ip(&used_ips).ok_or_else(|| {
                    ApiError::internal("failed to allocate a serviceIP: range is full")
                })?;
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
            s => {
                let ip: Ipv4Addr = s.parse().map_err(|_| {
                    invalid(vec![FieldError::invalid(
                        "spec.clusterIPs[0]",
                        json!(s),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )])
                })?;
                if !ip_in_cidr(ip) {
                    return Err(invalid(vec![FieldError::invalid(
                        "spec.clusterIPs",
                        json!([s]),
                        format!(
                            "failed to allocate IP {s}: the provided IP ({s}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR_BASE}/{SERVICE_CIDR_PREFIX}"
                        ),
                    )]));
                }
                if used_ips.contains(&ip) {
                    return Err(invalid(vec![FieldError::invalid(
                        "spec.clusterIPs",
                        json!([s]),
                        format!("failed to allocate IP {s}: provided IP is already allocated"),
                    )]));
                }
                svc["spec"]["clusterIPs"] = json!([s]);
            }
        }
    }
    if svc_type == "NodePort" || svc_type == "LoadBalancer" {
        let mut taken = used_ports.clone();
        // (Not `svc["spec"]["ports"]`: indexing would store `"ports": null` when absent.)
        let ports = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut);
        if let Some(ports) = ports {
            for (i, p) in ports.iter_mut().enumerate() {
                match p
                    .get("nodePort")
                    .and_then(Value::as_i64)
                    .filter(|n| *n != 0)
                {
                    Some(np) => {
                        let ok = u16::try_from(np)
                            .ok()
                            .filter(|n| NODE_PORT_RANGE.contains(n));
                        let Some(np16) = ok else {
                            return Err(invalid(vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                json!(np),
                                "provided port is not in the valid range. The range of valid ports is 30000-32767",
                            )]));
                        };
                        if !taken.insert(np16) {
                            return Err(invalid(vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                json!(np),
                                "provided port is already allocated",
                            )]));
                        }
                    }
                    None => {
                        let np = pick_port(&taken).ok_or_else(|| {
                            ApiError::internal("failed to allocate a nodePort: range is full")
                        })?;
                        taken.insert(np);
                        p["nodePort"] = json!(np);
                    }
                }
            }
        }
        // A LoadBalancer keeping client addresses gets the port its health is asked on.
        let local = svc["spec"]["externalTrafficPolicy"] == "Local";
        let hc = &svc["spec"]["healthCheckNodePort"];
        if svc_type == "LoadBalancer" && local && hc.as_i64().unwrap_or(0) == 0 {
            let np = pick_port(&taken).ok_or_else(|| {
                ApiError::internal("failed to allocate a healthCheckNodePort: range is full")
            })?;
            svc["spec"]["healthCheckNodePort"] = json!(np);
        }
    }
    Ok(())
}

async fn used_service_allocations(
    api: &ApiServer,
    except: &(String, String),
) -> Result<(HashSet<Ipv4Addr>, HashSet<u16>), ApiError> {
    api.sync_cache().await?;
    Ok(cached_service_allocations(api, except))
}

/// Node ports a Service updated to a type that has them (NodePort, LoadBalancer) lacks,
/// allocated as on create. The caller holds `alloc_lock` with the cache caught up.
pub fn allocate_on_update(api: &ApiServer, svc: &mut Value) -> Result<(), ApiError> {
    let ty = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "NodePort" && ty != "LoadBalancer" {
        return Ok(());
    }
    let me = (
        meta::namespace(svc).unwrap_or("").to_string(),
        meta::name(svc).unwrap_or("").to_string(),
    );
    let (_, mut taken) = cached_service_allocations(api, &me);
    let full = || ApiError::internal("failed to allocate a nodePort: range is full");
    let ports = svc
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for p in ports {
        if let Some(np) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
            taken.insert(np);
        } else {
            let np = pick_port(&taken).ok_or_else(full)?;
            taken.insert(np);
            p["nodePort"] = json!(np);
        }
    }
    let local = svc["spec"]["externalTrafficPolicy"] == "Local";
    if ty == "LoadBalancer" && local && svc["spec"]["healthCheckNodePort"].as_u64().is_none() {
        svc["spec"]["healthCheckNodePort"] = json!(pick_port(&taken).ok_or_else(full)?);
    }
    Ok(())
}

/// What a stored Service holds of the shared ranges, read once per stored version:
/// allocating walks every Service, and parsing each whole object on every create cost
/// tens of milliseconds at 10,000 Services.
#[derive(Debug, Clone, Default)]
pub struct Held {
    ip: Option<Ipv4Addr>,
    ports: Vec<u16>,
}

#[derive(serde::Deserialize, Default)]
struct HeldSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default)]
    ports: Vec<HeldPort>,
    #[serde(rename = "healthCheckNodePort")]
    health_check_node_port: Option<u16>,
}

#[derive(serde::Deserialize)]
struct HeldPort {
    #[serde(rename = "nodePort")]
    node_port: Option<u16>,
}

#[derive(serde::Deserialize)]
struct HeldService {
    #[serde(default)]
    spec: HeldSpec,
}

impl Held {
    fn of(value: &[u8]) -> Held {
        let spec = serde_json::from_slice::<HeldService>(value)
            .map(|s| s.spec)
            .unwrap_or_default();
        Held {
            ip: spec.cluster_ip.and_then(|s| s.parse().ok()),
            ports: spec
                .ports
                .iter()
                .filter_map(|p| p.node_port)
                .chain(spec.health_check_node_port)
                .collect(),
        }
    }
}

/// `Held` per Service key, with the revision it was read at.
pub type HeldByKey = std::collections::HashMap<String, (skiff_store::Revision, Held)>;

fn cached_service_allocations(
    api: &ApiServer,
    except: &(String, String),
) -> (HashSet<Ipv4Addr>, HashSet<u16>) {
    let svc_ri = crate::registry::builtin("", "services");
    let except = svc_ri.key(Some(&except.0), &except.1);
    let (objs, _, _) = api.cache.list(&svc_ri.prefix(None), None, None, &|_| true);
    let mut memo = api.service_allocations.lock();
    let mut next = HeldByKey::with_capacity(objs.len());
    let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
    for s in objs {
        let held = match memo.remove(&s.key) {
            Some((rev, h)) if rev == s.rev => h,
            _ => Held::of(&s.value),
        };
        if s.key != except {
            ips.extend(held.ip);
            ports.extend(held.ports.iter().copied());
        }
        next.insert(s.key.clone(), (s.rev, held));
    }
    *memo = next;
    (ips, ports)
}

fn pick_ip(used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(SERVICE_CIDR_BASE);
    let size = 1u32 << (32 - SERVICE_CIDR_PREFIX);
    let mut rng = rand::rng();
    // Random like Kubernetes' allocator, skipping network and broadcast addresses, from
    // the upper band first: the lower one (KEP-3070: size/16, 16 to 256 addresses) is
    // kept for Services that ask for a fixed address, such as kube-dns' 10.43.0.10.
    let reserved = (size / 16).clamp(16, 256).min(size / 2);
    for _ in 0..64 {
        let ip = Ipv4Addr::from(base + rng.random_range(reserved..size - 1));
        if !used.contains(&ip) {
            return Some(ip);
        }
    }
    (reserved..size - 1)
        .chain(2..reserved)
        .map(|o| Ipv4Addr::from(base + o))
        .find(|ip| !used.contains(ip))
}

fn pick_port(used: &HashSet<u16>) -> Option<u16> {
    let mut rng = rand::rng();
    for _ in 0..64 {
        let p = rng.random_range(NODE_PORT_RANGE);
        if !used.contains(&p) {
            return Some(p);
        }
    }
    NODE_PORT_RANGE.into_iter().find(|p| !used.contains(p))
}

// ---------------------------------------------------------------------------------------
// Namespaces: deleting one removes what is in it, then the namespace itself.

pub fn spawn_namespace_finalizer(api: Arc<ApiServer>) {
    tokio::spawn(async move {
        let ns_ri = crate::registry::builtin("", "namespaces");
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (objs, _, _) = api.cache.list(&ns_ri.prefix(None), None, None, &|_| true);
            for s in objs {
                let Ok(ns) = crate::object::from_stored(&s) else {
                    continue;
                };
                if meta::deletion_timestamp(&ns).is_none() {
                    continue;
                }
                let Some(name) = meta::name(&ns).map(str::to_string) else {
                    continue;
                };
                if let Err(e) = finalize_namespace(&api, &name).await {
                    tracing::warn!(namespace = %name, error = %e, "namespace cleanup failed");
                }
            }
        }
    });
}

/// Deletes every object of `ri` (in `ns`, or all) not already being deleted; returns
/// how many were there, those being deleted included (0: nothing left).
pub async fn delete_all(
    api: &ApiServer,
    ri: &Resource,
    ns: Option<&str>,
) -> Result<usize, ApiError> {
    let (objs, _, _) = api.cache.list(&ri.prefix(ns), None, None, &|_| true);
    for s in &objs {
        let Ok(obj) = crate::object::from_stored(s) else {
            continue;
        };
        if meta::deletion_timestamp(&obj).is_some() {
            continue;
        }
        let t = Target {
            ri: ri.clone(),
            namespace: meta::namespace(&obj).map(str::to_string),
            name: meta::name(&obj).map(str::to_string),
            sub: None,
        };
        match api.delete(&t, &DeleteOptions::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(objs.len())
}

async fn finalize_namespace(api: &ApiServer, ns: &str) -> Result<(), ApiError> {
    let mut remaining = 0usize;
    let served = api.registry.snapshot();
    for ri in served.stored().filter(|r| r.namespaced()) {
        remaining += delete_all(api, ri, Some(ns)).await?;
    }
    if remaining > 0 {
        return Ok(());
    }
    // Everything is gone: drop the `kubernetes` finalizer and the namespace.
    let ns_ri = crate::registry::builtin("", "namespaces");
    let t = Target {
        ri: ns_ri,
        namespace: None,
        name: Some(ns.to_string()),
        sub: None,
    };
    let Some(kv) = api
        .store
        .get(&t.key())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    else {
        return Ok(());
    };
    let obj = crate::object::from_bytes(&kv.value, kv.mod_revision)?;
    if !meta::finalizers(&obj).is_empty() {
        return Ok(());
    }
    match api.store.delete(&t.key(), Some(kv.mod_revision)).await {
        Ok(_) => tracing::info!(namespace = ns, "namespace deleted"),
        Err(e) => {
            tracing::debug!(namespace = ns, error = %e, "namespace delete raced; retrying later")
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Priority admission: spec.priority comes from the pod's PriorityClass (or the global
// default class), as Kubernetes' Priority admission plugin does.

/// Whether `needle` occurs in `hay` (a cheap test before parsing stored bytes).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn admit_priority(api: &ApiServer, pod: &mut Value, name: &str) -> Result<(), ApiError> {
    let pc_ri = crate::registry::builtin("scheduling.k8s.io", "priorityclasses");
    let class = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let found = match &class {
        Some(c) => {
            let Some(s) = api.cache.get(&pc_ri.key(None, c)) else {
                return Err(ApiError::forbidden(
                    "",
                    "pods",
                    name,
                    &format!("no PriorityClass with name {c} was found"),
                ));
            };
            serde_json::from_slice::<Value>(&s.value).ok()
        }
        None => {
            let (all, _, _) = api.cache.list(&pc_ri.prefix(None), None, None, &|_| true);
            // Only a class that says `globalDefault` anywhere is worth parsing: this runs
            // for every pod created.
            all.iter()
                .filter(|s| contains(&s.value, b"\"globalDefault\""))
                .filter_map(|s| serde_json::from_slice::<Value>(&s.value).ok())
                .find(|pc| pc["globalDefault"] == json!(true))
        }
    };
    let (value, policy) = match &found {
        Some(pc) => (
            pc["value"].as_i64().unwrap_or(0),
            pc["preemptionPolicy"]
                .as_str()
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string()),
    };
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && class.is_some()
        && given != value
        && given != 0
    {
        return Err(ApiError::forbidden(
            "",
            "pods",
            name,
            "the integer value of priority must not be provided in pod spec; priority admission controller computed the priority from the given PriorityClass name",
        ));
    }
    pod["spec"]["priority"] = json!(value);
    pod["spec"]["preemptionPolicy"] = json!(policy);
    if class.is_none()
        && let Some(pc) = &found
    {
        pod["spec"]["priorityClassName"] = pc["metadata"]["name"].clone();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// pods/eviction: PodDisruptionBudgets.

/// Refuses an eviction that would break a PodDisruptionBudget (429, as Kubernetes).
pub async fn check_disruption_budgets(api: &ApiServer, pod: &Value) -> Result<(), ApiError> {
    let ns = meta::namespace(pod).unwrap_or("default");
    if meta::deletion_timestamp(pod).is_some() || !skiff_validation::disruption::pod_ready(pod) {
        // Terminating or unhealthy pods do not count against a budget.
        return Ok(());
    }
    api.sync_cache().await?;
    let pdb_ri = crate::registry::builtin("policy", "poddisruptionbudgets");
    let pod_ri = crate::registry::builtin("", "pods");
    let (pdbs, _, _) = api
        .cache
        .list(&pdb_ri.prefix(Some(ns)), None, None, &|_| true);
    if pdbs.is_empty() {
        return Ok(());
    }
    let (pods, _, _) = api
        .cache
        .list(&pod_ri.prefix(Some(ns)), None, None, &|_| true);
    let pods: Vec<Value> = pods
        .iter()
        .filter_map(|s| serde_json::from_slice(&s.value).ok())
        .collect();
    let labels = meta::string_map(pod["metadata"].get("labels"));
    for s in pdbs {
        let Ok(pdb) = serde_json::from_slice::<Value>(&s.value) else {
            continue;
        };
        let sel = skiff_validation::labels::Selector::from_label_selector(&pdb["spec"]["selector"])
            .unwrap_or_default();
        if sel.is_empty() || !sel.matches(&labels) {
            continue;
        }
        let b = skiff_validation::disruption::budget(&pdb, &pods);
        let (allowed, desired, healthy) = (b.allowed, b.desired, b.healthy);
        if allowed < 1 {
            let name = meta::name(&pdb).unwrap_or("");
            let mut e = ApiError::new(
                429,
                skiff_types::StatusReason::TooManyRequests,
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            e.causes = vec![
                json!({"reason": "DisruptionBudget", "message": format!("The disruption budget {name} needs {desired} healthy pods and has {healthy} currently")}),
            ];
            return Err(e);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// pods/binding.

pub fn apply_binding(pod: &Value, binding: &Value, pod_name: &str) -> Result<Value, ApiError> {
    let node = binding["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            pod_name,
            &[FieldError::required("target.name", "")],
        ));
    }
    if meta::deletion_timestamp(pod).is_some() {
        return Err(ApiError::conflict(
            "",
            "pods",
            pod_name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            "",
            "pods",
            pod_name,
            &format!("pod {pod_name} is already assigned to node {existing:?}"),
        ));
    }
    let mut p = pod.clone();
    p["spec"]["nodeName"] = json!(node);
    if let Some(ann) = binding["metadata"]["annotations"].as_object() {
        for (k, v) in ann {
            p["metadata"]["annotations"][k] = v.clone();
        }
    }
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    let conds = p["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(cond);
    p["status"]["conditions"] = json!(conds);
    Ok(p)
}

// ---------------------------------------------------------------------------------------
// events.k8s.io/v1 Event <-> core/v1 Event (one storage, two views).

pub fn core_event_to_v1(e: &Value) -> Value {
    let mut out = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": e["metadata"].clone()});
    let copy = |out: &mut Value, to: &str, v: &Value| {
        if !v.is_null() {
            out[to] = v.clone();
        }
    };
    copy(&mut out, "eventTime", &e["eventTime"]);
    if out.get("eventTime").is_none() {
        out["eventTime"] = Value::Null;
    }
    copy(
        &mut out,
        "reportingController",
        if e["reportingComponent"].is_null() {
            &e["source"]["component"]
        } else {
            &e["reportingComponent"]
        },
    );
    copy(
        &mut out,
        "reportingInstance",
        if e["reportingInstance"].is_null() {
            &e["source"]["host"]
        } else {
            &e["reportingInstance"]
        },
    );
    copy(&mut out, "action", &e["action"]);
    copy(&mut out, "reason", &e["reason"]);
    copy(&mut out, "regarding", &e["involvedObject"]);
    copy(&mut out, "related", &e["related"]);
    copy(&mut out, "note", &e["message"]);
    copy(&mut out, "type", &e["type"]);
    copy(&mut out, "deprecatedSource", &e["source"]);
    copy(&mut out, "deprecatedFirstTimestamp", &e["firstTimestamp"]);
    copy(&mut out, "deprecatedLastTimestamp", &e["lastTimestamp"]);
    copy(&mut out, "deprecatedCount", &e["count"]);
    if let Some(series) = e.get("series").filter(|s| !s.is_null()) {
        out["series"] =
            json!({"count": series["count"], "lastObservedTime": series["lastObservedTime"]});
    }
    out
}

pub fn v1_event_to_core(e: &Value) -> Value {
    let mut out = json!({"apiVersion": "v1", "kind": "Event", "metadata": e["metadata"].clone()});
    let copy = |out: &mut Value, to: &str, v: &Value| {
        if !v.is_null() {
            out[to] = v.clone();
        }
    };
    copy(&mut out, "eventTime", &e["eventTime"]);
    copy(&mut out, "reportingComponent", &e["reportingController"]);
    copy(&mut out, "reportingInstance", &e["reportingInstance"]);
    copy(&mut out, "action", &e["action"]);
    copy(&mut out, "reason", &e["reason"]);
    copy(&mut out, "involvedObject", &e["regarding"]);
    copy(&mut out, "related", &e["related"]);
    copy(&mut out, "message", &e["note"]);
    copy(&mut out, "type", &e["type"]);
    copy(&mut out, "source", &e["deprecatedSource"]);
    copy(&mut out, "firstTimestamp", &e["deprecatedFirstTimestamp"]);
    copy(&mut out, "lastTimestamp", &e["deprecatedLastTimestamp"]);
    copy(&mut out, "count", &e["deprecatedCount"]);
    if out.get("involvedObject").is_none() {
        out["involvedObject"] = json!({});
    }
    if let Some(series) = e.get("series").filter(|s| !s.is_null()) {
        out["series"] = series.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_holds_its_cluster_ip_and_node_ports() {
        let h = Held::of(
            br#"{"metadata":{"name":"a"},"spec":{"clusterIP":"10.43.1.2","healthCheckNodePort":31000,
                 "ports":[{"port":80,"nodePort":30080},{"port":81}]}}"#,
        );
        assert_eq!(h.ip, Some(Ipv4Addr::new(10, 43, 1, 2)));
        assert_eq!(h.ports, [30080, 31000]);
        let none = Held::of(br#"{"spec":{"clusterIP":"None","type":"ClusterIP"}}"#);
        assert!(none.ip.is_none() && none.ports.is_empty());
        assert!(Held::of(b"garbage").ip.is_none());
    }

    #[test]
    fn qos_classes() {
        let be = json!({"spec": {"containers": [{"name": "a", "resources": {}}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn binding_sets_node_once() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
        let b = json!({"target": {"kind": "Node", "name": "n1"}});
        let bound = apply_binding(&pod, &b, "p").unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(apply_binding(&bound, &b, "p").unwrap_err().code, 409);
    }

    #[test]
    fn graceful_pod_deletion() {
        let ri = crate::registry::builtin("", "pods");
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(matches!(
            deletion_plan(&ri, &unbound, &DeleteOptions::default()),
            DeletionPlan::Immediate
        ));
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}});
        let DeletionPlan::Mark(m) = deletion_plan(&ri, &bound, &DeletionOptionsExt::grace(None))
        else {
            panic!()
        };
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(matches!(
            deletion_plan(&ri, &m, &DeletionOptionsExt::grace(Some(0))),
            DeletionPlan::Immediate
        ));
    }

    struct DeletionOptionsExt;
    impl DeletionOptionsExt {
        fn grace(g: Option<i64>) -> DeleteOptions {
            DeleteOptions {
                grace_period_seconds: g,
                ..Default::default()
            }
        }
    }

    #[test]
    fn event_views_round_trip() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Scheduled", "message": "hi", "type": "Normal", "source": {"component": "default-scheduler"}, "count": 1});
        let v1 = core_event_to_v1(&core);
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["reportingController"], "default-scheduler");
        let back = v1_event_to_core(&v1);
        assert_eq!(back["message"], "hi");
        assert_eq!(back["involvedObject"]["kind"], "Pod");
    }
}
