//! Pod Security Admission: a namespace's `pod-security.kubernetes.io/*` labels decide
//! what its pods may be (`skiff-podsecurity` holds the checks). Pods are refused at the
//! enforce level and warned about at the warn level, on create and on updates that
//! change their containers; workloads' pod templates are warned about; bad labels are
//! refused on the namespace; tightening a namespace's enforce level warns about the
//! pods already there that would not pass it.

use crate::state::ApiServer;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;
use skiff_podsecurity::{LevelVersion, Policy, evaluate, reasons, violates, would_violate};
use skiff_types::registry::ResourceInfo;
use skiff_types::{ApiError, FieldError};
use std::collections::BTreeMap;

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    skiff_types::meta::string_map(obj.get("metadata").and_then(|m| m.get("labels")))
}

fn annotations_of(obj: &Value) -> BTreeMap<String, String> {
    skiff_types::meta::string_map(obj.get("metadata").and_then(|m| m.get("annotations")))
}

/// The policy of namespace `ns` as the watch cache has it (privileged if it is not
/// there: the create is refused elsewhere).
fn policy_of(api: &ApiServer, ns: &str) -> Policy {
    let defaults = api.pod_security.defaults;
    let ri = crate::registry::builtin("", "namespaces");
    let labels = api
        .cache
        .get(&ri.key(None, ns))
        .and_then(|s| crate::codec::from_stored(&s).ok())
        .map(|n| labels_of(&n))
        .unwrap_or_default();
    Policy::from_labels(&labels, defaults).0
}

/// Exempt by the admission configuration: the namespace, or the requesting user (what
/// the audit annotation says).
fn exempt(api: &ApiServer, ns: &str, user: &str) -> Option<&'static str> {
    let e = &api.pod_security.exemptions;
    if e.namespaces.iter().any(|n| n == ns) {
        Some("namespace")
    } else if e.usernames.iter().any(|u| u == user) {
        Some("user")
    } else {
        None
    }
}

fn exempt_runtime_class(api: &ApiServer, spec: &PodSpec) -> bool {
    spec.runtime_class_name
        .as_ref()
        .is_some_and(|rc| api.pod_security.exemptions.runtime_classes.contains(rc))
}

fn spec_of(v: Option<&Value>) -> Option<PodSpec> {
    v.and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// Whether a pod update changes what Pod Security judges: containers added or removed,
/// images changed, ephemeral containers added or changed.
fn significant(new: &Value, old: &Value) -> bool {
    let images = |v: &Value, list: &str| -> Vec<Value> {
        v["spec"][list]
            .as_array()
            .map(|cs| cs.iter().map(|c| c["image"].clone()).collect())
            .unwrap_or_default()
    };
    let ephemeral = |v: &Value| -> BTreeMap<String, Value> {
        v["spec"]["ephemeralContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["image"].clone(),
                )
            })
            .collect()
    };
    let (ne, oe) = (ephemeral(new), ephemeral(old));
    ["containers", "initContainers"]
        .iter()
        .any(|l| images(new, l) != images(old, l))
        || ne.iter().any(|(n, img)| oe.get(n) != Some(img))
}

/// A pod being written: Err when it violates its namespace's enforce level, else the
/// warnings to send (`old`: the stored pod, on an update).
pub fn admit_pod(
    api: &ApiServer,
    user: &str,
    (ns, name): (&str, &str),
    pod: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    if let Some(why) = exempt(api, ns, user) {
        note(EXEMPT, why.into());
        return Ok(Vec::new());
    }
    let policy = policy_of(api, ns);
    if old.is_some_and(|o| !significant(pod, o)) {
        return Ok(Vec::new());
    }
    if policy.is_privileged() {
        note(ENFORCE_POLICY, "privileged:latest".into());
        return Ok(Vec::new());
    }
    let Some(spec) = spec_of(pod.get("spec")) else {
        return Ok(Vec::new());
    };
    if exempt_runtime_class(api, &spec) {
        note(EXEMPT, "runtimeClass".into());
        return Ok(Vec::new());
    }
    let ann = annotations_of(pod);
    note(ENFORCE_POLICY, policy.enforce.to_string());
    audit(policy.audit, &ann, &spec);
    let refused = evaluate(policy.enforce, &ann, &spec);
    if !refused.is_empty() {
        return Err(ApiError::forbidden(
            "",
            "pods",
            name,
            &violates(policy.enforce, &refused),
        ));
    }
    Ok(warning(policy.warn, &ann, &spec).into_iter().collect())
}

const EXEMPT: &str = "pod-security.kubernetes.io/exempt";
const ENFORCE_POLICY: &str = "pod-security.kubernetes.io/enforce-policy";
const AUDIT_VIOLATIONS: &str = "pod-security.kubernetes.io/audit-violations";

/// An annotation on the request's audit event (dropped when there is no audit log).
fn note(key: &'static str, value: String) {
    crate::audit::annotate(key, value);
}

/// The audit level's verdict, as an audit annotation.
fn audit(lv: LevelVersion, ann: &BTreeMap<String, String>, spec: &PodSpec) {
    let v = evaluate(lv, ann, spec);
    if !v.is_empty() {
        note(AUDIT_VIOLATIONS, would_violate(lv, &v));
    }
}

fn warning(lv: LevelVersion, ann: &BTreeMap<String, String>, spec: &PodSpec) -> Option<String> {
    let v = evaluate(lv, ann, spec);
    (!v.is_empty()).then(|| would_violate(lv, &v))
}

/// Where a workload keeps its pod template.
fn template_of<'a>(ri: &ResourceInfo, obj: &'a Value) -> Option<&'a Value> {
    let t = match (&*ri.group, &*ri.plural) {
        ("", "podtemplates") => obj.get("template"),
        ("", "replicationcontrollers")
        | ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => obj.get("spec")?.get("template"),
        ("batch", "cronjobs") => obj.pointer("/spec/jobTemplate/spec/template"),
        _ => None,
    };
    t.filter(|t| t.is_object())
}

/// Warnings for a workload whose pod template its namespace's warn level refuses
/// (workloads are never refused: their pods are).
pub fn warn_workload(
    api: &ApiServer,
    user: &str,
    ri: &ResourceInfo,
    ns: &str,
    obj: &Value,
) -> Vec<String> {
    let Some(template) = template_of(ri, obj) else {
        return Vec::new();
    };
    if let Some(why) = exempt(api, ns, user) {
        note(EXEMPT, why.into());
        return Vec::new();
    }
    let policy = policy_of(api, ns);
    let privileged = skiff_podsecurity::Level::Privileged;
    if policy.warn.level == privileged && policy.audit.level == privileged {
        return Vec::new();
    }
    let Some(spec) = spec_of(template.get("spec")) else {
        return Vec::new();
    };
    if exempt_runtime_class(api, &spec) {
        note(EXEMPT, "runtimeClass".into());
        return Vec::new();
    }
    audit(policy.audit, &annotations_of(template), &spec);
    warning(policy.warn, &annotations_of(template), &spec)
        .into_iter()
        .collect()
}

/// A namespace's Pod Security labels must be valid (unchanged bad ones are tolerated
/// on updates, as Kubernetes tolerates them).
pub fn check_namespace(obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let (_, errs) = Policy::from_labels(&labels_of(obj), Policy::default());
    if errs.is_empty() {
        return Ok(());
    }
    if let Some(o) = old
        && Policy::from_labels(&labels_of(o), Policy::default()).1 == errs
    {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let fields: Vec<FieldError> = errs
        .iter()
        .map(|e| FieldError::invalid(e.field.clone(), Value::String(e.value.clone()), e.detail))
        .collect();
    Err(ApiError::invalid("", "Namespace", name, &fields))
}

/// Pods checked at most when a namespace's enforce level tightens.
const DRY_RUN_PODS: usize = 3000;

/// When a namespace's enforce level tightens, the pods already in it that would not
/// pass, summarized as Kubernetes summarizes them.
pub fn namespace_warnings(api: &ApiServer, new: &Value, old: &Value) -> Vec<String> {
    let defaults = api.pod_security.defaults;
    let (np, _) = Policy::from_labels(&labels_of(new), defaults);
    let (op, _) = Policy::from_labels(&labels_of(old), defaults);
    let (n, o) = (np.enforce, op.enforce);
    let ns = new["metadata"]["name"].as_str().unwrap_or("");
    if n == o
        || n.level == skiff_podsecurity::Level::Privileged
        || (n.version == o.version && n.level <= o.level)
    {
        return Vec::new();
    }
    if api
        .pod_security
        .exemptions
        .namespaces
        .iter()
        .any(|x| x == ns)
    {
        return exempt_namespace_warning(api, new).into_iter().collect();
    }
    let ri = crate::registry::builtin("", "pods");
    let (pods, _, _) = api.cache.list(&ri.prefix(Some(ns)), None, None, &|_| true);
    let total = pods.len();
    let mut groups: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for s in pods.iter().take(DRY_RUN_PODS) {
        let Ok(pod) = crate::codec::from_stored(s) else {
            continue;
        };
        let Some(spec) = spec_of(pod.get("spec")).filter(|s| !exempt_runtime_class(api, s)) else {
            continue;
        };
        let v = evaluate(n, &annotations_of(&pod), &spec);
        if v.is_empty() {
            continue;
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let g = groups.entry(reasons(&v)).or_insert((name.clone(), 0));
        g.0 = g.0.clone().min(name);
        g.1 += 1;
    }
    let mut out = Vec::new();
    if total > DRY_RUN_PODS {
        out.push(format!(
            "new PodSecurity enforce level only checked against the first {DRY_RUN_PODS} of {total} existing pods"
        ));
    }
    if groups.is_empty() {
        return out;
    }
    out.push(format!(
        "existing pods in namespace {ns:?} violate the new PodSecurity enforce level \"{n}\""
    ));
    let mut lines: Vec<String> = groups
        .into_iter()
        .map(|(why, (pod, count))| match count {
            1 => format!("{pod}: {why}"),
            2 => format!("{pod} (and 1 other pod): {why}"),
            c => format!("{pod} (and {} other pods): {why}", c - 1),
        })
        .collect();
    lines.sort();
    out.extend(lines);
    out
}

/// For an exempt namespace whose labels ask for more than the cluster defaults:
/// `namespace "x" is exempt from Pod Security, and the policy (enforce=...) will be
/// ignored`.
pub fn exempt_namespace_warning(api: &ApiServer, ns: &Value) -> Option<String> {
    let name = ns["metadata"]["name"].as_str().unwrap_or("");
    if !api
        .pod_security
        .exemptions
        .namespaces
        .iter()
        .any(|x| x == name)
    {
        return None;
    }
    let labels = labels_of(ns);
    let defaults = api.pod_security.defaults;
    let (p, _) = Policy::from_labels(&labels, defaults);
    let privileged = skiff_podsecurity::Level::Privileged;
    let same = |a: LevelVersion, b: LevelVersion| {
        a == b || (a.level == privileged && b.level == privileged)
    };
    if p.is_privileged()
        || (same(p.enforce, defaults.enforce)
            && same(p.audit, defaults.audit)
            && same(p.warn, defaults.warn))
    {
        return None;
    }
    let labelled = |mode: &str| {
        let key = format!("{}{mode}", skiff_podsecurity::LABEL_PREFIX);
        labels.contains_key(&key) || labels.contains_key(&format!("{key}-version"))
    };
    let parts: Vec<String> = [("enforce", p.enforce), ("audit", p.audit), ("warn", p.warn)]
        .into_iter()
        .filter(|(mode, lv)| lv.level != privileged && labelled(mode))
        .map(|(mode, lv)| format!("{mode}={lv}"))
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "namespace {name:?} is exempt from Pod Security, and the policy ({}) will be ignored",
            parts.join(", ")
        )
    })
}
