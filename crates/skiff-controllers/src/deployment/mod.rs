//! The Deployment controller, with Kubernetes' semantics: a ReplicaSet per pod
//! template (named and labelled by `pod-template-hash`), `revision` annotations,
//! RollingUpdate within maxSurge/maxUnavailable and Recreate, proportional scaling of a
//! rollout in flight, `paused`, the Progressing and Available conditions with
//! `progressDeadlineSeconds`, and `revisionHistoryLimit`. `kubectl rollout undo`,
//! `restart`, `set image` and `scale` need nothing more: they edit the Deployment, and
//! an existing ReplicaSet whose template matches becomes the new one again.
//!
//! The decisions (`rolling_step`, `recreate_step`, `scale_step`, `status`) are pure;
//! `run` keeps Deployments and ReplicaSets from reflectors and applies them.

use crate::claim;
use crate::control;
use crate::owner;
use serde_json::{Map, Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations that are the controller's own, not copied to ReplicaSets.
const NOT_COPIED: &[&str] = &[
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
];

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn replicas(rs: &Value) -> i64 {
    i(&rs["spec"]["replicas"])
}

/// An intOrString against `total`: percentages round up (surge) or down (unavailable).
fn scaled(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::String(s) if s.ends_with('%') => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (p * total + 99) / 100
            } else {
                p * total / 100
            }
        }
        Value::String(s) => s.parse().unwrap_or(0),
        v => i(v),
    }
}

/// maxSurge and maxUnavailable as pod counts; both zero would stall, so unavailable
/// becomes 1 (Kubernetes' `ResolveFenceposts`).
pub fn fenceposts(d: &Value) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let want = i(&d["spec"]["replicas"]);
    let surge = scaled(&ru["maxSurge"], want, true);
    let unavailable = scaled(&ru["maxUnavailable"], want, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn max_unavailable(d: &Value) -> i64 {
    if d["spec"]["strategy"]["type"] == "Recreate" {
        return 0;
    }
    fenceposts(d).1.min(i(&d["spec"]["replicas"]))
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            out.push('{');
            for (n, (k, v)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        v => out.push_str(&v.to_string()),
    }
}

/// The `pod-template-hash` of a template: FNV-32a over its canonical JSON and the
/// collision count, spelled in Kubernetes' safe alphabet (no vowels, no look-alikes).
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut s = String::new();
    canonical(&without_hash(template), &mut s);
    if collision_count > 0 {
        s.push_str(&collision_count.to_string());
    }
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A template as Go's semantic equality sees it: zero values (false, 0, "", null, empty
/// lists and maps) are the same as absent, as they are for Kubernetes' omitempty
/// fields; kubectl's protobuf bodies carry them where JSON ones do not.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        v => v.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "1970-01-01T00:00:00Z",
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn without_hash(template: &Value) -> Value {
    let mut t = normalized(template);
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if t["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        t.as_object_mut().map(|m| m.remove("metadata"));
    }
    t
}

/// Whether a ReplicaSet runs the Deployment's template (its hash label aside).
pub fn same_template(d: &Value, rs: &Value) -> bool {
    without_hash(&d["spec"]["template"]) == without_hash(&rs["spec"]["template"])
}

pub fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(o: &Value) -> String {
    o["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The ReplicaSet for the current template (the oldest if several match) and the rest.
pub fn split<'a>(d: &Value, sets: &[&'a Value]) -> (Option<&'a Value>, Vec<&'a Value>) {
    let mut matching: Vec<&Value> = sets
        .iter()
        .copied()
        .filter(|rs| same_template(d, rs))
        .collect();
    matching.sort_by_key(|rs| (created(rs), name(rs).to_string()));
    let new = matching.first().copied();
    let old = sets
        .iter()
        .copied()
        .filter(|rs| new.is_none_or(|n| name(n) != name(rs)))
        .collect();
    (new, old)
}

/// The ReplicaSet a Deployment would create for its template.
pub fn new_replica_set(d: &Value, replicas: i64, revision: i64) -> Value {
    let collisions = i(&d["status"]["collisionCount"]);
    let hash = template_hash(&d["spec"]["template"], collisions);
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    let mut annotations = copied_annotations(d);
    let (surge, _) = fenceposts(d);
    let want = i(&d["spec"]["replicas"]);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(DESIRED_REPLICAS.into(), json!(want.to_string()));
    annotations.insert(MAX_REPLICAS.into(), json!((want + surge).to_string()));
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", name(d)),
            "namespace": d["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner::controller_ref("apps/v1", "Deployment", d)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": i(&d["spec"]["minReadySeconds"]),
            "selector": selector,
            "template": template,
        },
    })
}

fn copied_annotations(d: &Value) -> Map<String, Value> {
    d["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// How many pods the new ReplicaSet may have now (Kubernetes' `NewRSNewReplicas`).
pub fn new_rs_replicas(d: &Value, all: &[&Value], new: Option<&Value>) -> i64 {
    let want = i(&d["spec"]["replicas"]);
    let current_new = new.map_or(0, replicas);
    if d["spec"]["strategy"]["type"] == "Recreate" {
        return want;
    }
    let (surge, _) = fenceposts(d);
    let current: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let max_total = want + surge;
    if current >= max_total {
        return current_new;
    }
    let up = (max_total - current).min(want - current_new).max(0);
    current_new + up
}

/// One RollingUpdate step for the old ReplicaSets: their new sizes (Kubernetes'
/// `reconcileOldReplicaSets`: unhealthy replicas first, then healthy ones while enough
/// stay available).
pub fn scale_down_old(d: &Value, new: Option<&Value>, old: &[&Value]) -> Vec<(String, i64)> {
    let old_pods: i64 = old.iter().map(|rs| replicas(rs)).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods: i64 = old_pods + new.map_or(0, replicas);
    let want = i(&d["spec"]["replicas"]);
    let min_available = want - max_unavailable(d);
    let new_unavailable = new.map_or(0, |n| replicas(n) - i(&n["status"]["availableReplicas"]));
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&Value> = old.to_vec();
    sorted.sort_by_key(|rs| (created(rs), name(rs).to_string()));
    let mut sizes: Vec<(String, i64)> = sorted
        .iter()
        .map(|rs| (name(rs).to_string(), replicas(rs)))
        .collect();
    // Unhealthy first.
    let mut cleaned = 0;
    for (n, rs) in sorted.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (sizes[n].1 - i(&rs["status"]["availableReplicas"])).max(0);
        let down = unhealthy.min(max_scaled_down - cleaned);
        sizes[n].1 -= down;
        cleaned += down;
    }
    // Then healthy ones, keeping minAvailable.
    let available: i64 = old
        .iter()
        .map(|rs| i(&rs["status"]["availableReplicas"]))
        .sum::<i64>()
        + new.map_or(0, |n| i(&n["status"]["availableReplicas"]));
    let mut budget = (available - min_available)
        .max(0)
        .min(max_scaled_down - cleaned);
    for (n, _) in sorted.iter().enumerate() {
        if budget == 0 {
            break;
        }
        let down = sizes[n].1.min(budget);
        sizes[n].1 -= down;
        budget -= down;
    }
    sizes
        .into_iter()
        .zip(sorted.iter())
        .filter(|((_, size), rs)| *size != replicas(rs))
        .map(|(s, _)| s)
        .collect()
}

/// Whether the Deployment was resized since its ReplicaSets were (their
/// desired-replicas annotation says another size).
pub fn is_scaling_event(d: &Value, active: &[&Value]) -> bool {
    let want = i(&d["spec"]["replicas"]).to_string();
    active.iter().any(|rs| {
        rs["metadata"]["annotations"][DESIRED_REPLICAS]
            .as_str()
            .is_some_and(|v| v != want)
    })
}

/// Proportional scaling of a rollout in flight: the change is shared among the active
/// ReplicaSets by their size (Kubernetes' `scale`). Returns new sizes by name.
pub fn scale_step(d: &Value, new: Option<&Value>, all: &[&Value]) -> Vec<(String, i64)> {
    let want = i(&d["spec"]["replicas"]);
    let active: Vec<&Value> = all.iter().copied().filter(|rs| replicas(rs) > 0).collect();
    if active.len() <= 1 {
        // One active set (or none): it takes the whole size, the new one by preference.
        let target = active.first().copied().or(new);
        return target
            .filter(|rs| replicas(rs) != want)
            .map(|rs| vec![(name(rs).to_string(), want)])
            .unwrap_or_default();
    }
    let (surge, _) = fenceposts(d);
    let allowed = want
        + if d["spec"]["strategy"]["type"] == "Recreate" {
            0
        } else {
            surge
        };
    let current: i64 = active.iter().map(|rs| replicas(rs)).sum();
    let to_add = allowed - current;
    if to_add == 0 {
        return Vec::new();
    }
    let mut sorted = active.clone();
    // Larger first; among equals the newer first when growing, the older when shrinking.
    sorted.sort_by(|a, b| {
        replicas(b).cmp(&replicas(a)).then_with(|| {
            if to_add > 0 {
                created(b).cmp(&created(a))
            } else {
                created(a).cmp(&created(b))
            }
        })
    });
    let mut sizes: Vec<i64> = sorted.iter().map(|rs| replicas(rs)).collect();
    let mut added = 0;
    for (n, rs) in sorted.iter().enumerate() {
        let annotated: i64 = rs["metadata"]["annotations"][MAX_REPLICAS]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(current.max(1));
        let share = if annotated > 0 {
            (replicas(rs) as f64 * allowed as f64 / annotated as f64).round() as i64 - replicas(rs)
        } else {
            0
        };
        let share = if to_add > 0 {
            share.clamp(0, to_add - added)
        } else {
            share.clamp(to_add - added, 0)
        };
        sizes[n] += share;
        added += share;
    }
    // What rounding left goes to the first (largest) set.
    sizes[0] = (sizes[0] + to_add - added).max(0);
    sorted
        .iter()
        .zip(sizes)
        .filter(|(rs, s)| replicas(rs) != *s)
        .map(|(rs, s)| (name(rs).to_string(), s))
        .collect()
}

fn condition<'a>(d: &'a Value, ty: &str) -> Option<&'a Value> {
    d["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn set_condition(
    conds: &mut Vec<Value>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let old = conds.iter().position(|c| c["type"] == ty);
    let transition = match old.map(|n| &conds[n]) {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let c = json!({"type": ty, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition, "reason": reason, "message": message});
    match old {
        Some(n)
            if conds[n]["reason"] == reason
                && conds[n]["status"] == status
                && conds[n]["message"] == message =>
        {
            // Unchanged: only ReplicaSetUpdated refreshes its update time.
            if reason == "ReplicaSetUpdated" {
                conds[n] = c;
            }
        }
        Some(n) => conds[n] = c,
        None => conds.push(c),
    }
}

/// The Deployment's status from its ReplicaSets (Kubernetes' `calculateStatus` and
/// `syncRolloutStatus`). `event` names a new or found ReplicaSet this sync.
pub fn status(
    d: &Value,
    new: Option<&Value>,
    all: &[&Value],
    event: Option<(&str, String)>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let sum = |f: &str| -> i64 { all.iter().map(|rs| i(&rs["status"][f])).sum() };
    let want = i(&d["spec"]["replicas"]);
    let total_spec: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let available = sum("availableReplicas");
    let mut s = json!({
        "observedGeneration": i(&d["metadata"]["generation"]),
        "replicas": sum("replicas"),
        "updatedReplicas": new.map_or(0, |n| i(&n["status"]["replicas"])),
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total_spec - available).max(0),
    });
    if let Some(c) = d["status"]["collisionCount"].as_i64() {
        s["collisionCount"] = json!(c);
    }
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut conds: Vec<Value> = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if available >= want - max_unavailable(d) {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &ts,
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &ts,
        );
    }
    let rs_name = new.map(name).unwrap_or("");
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64();
    if d["spec"]["paused"] == true {
        set_condition(
            &mut conds,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &ts,
        );
    } else if deadline.is_some() {
        let complete = s["updatedReplicas"] == want
            && s["replicas"] == want
            && available == want
            && new.is_some();
        let prev = &d["status"];
        let progressed = i(&s["updatedReplicas"]) > i(&prev["updatedReplicas"])
            || i(&s["readyReplicas"]) > i(&prev["readyReplicas"])
            || available > i(&prev["availableReplicas"])
            || i(&s["replicas"]) - i(&s["updatedReplicas"])
                < i(&prev["replicas"]) - i(&prev["updatedReplicas"]);
        let was_paused =
            condition(d, "Progressing").is_some_and(|c| c["reason"] == "DeploymentPaused");
        if let Some((reason, message)) = &event {
            set_condition(&mut conds, "Progressing", "True", reason, message, &ts);
        } else if complete {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                &ts,
            );
        } else if was_paused {
            set_condition(
                &mut conds,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                &ts,
            );
        } else if progressed {
            set_condition(
                &mut conds,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
                &ts,
            );
        } else if timed_out(d, now) {
            set_condition(
                &mut conds,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                &ts,
            );
        }
    }
    // Conditions in Kubernetes' order: Available, then Progressing.
    conds.sort_by_key(|c| if c["type"] == "Available" { 0 } else { 1 });
    s["conditions"] = json!(conds);
    s
}

/// The rollout has not moved for progressDeadlineSeconds (and is not done).
pub fn timed_out(d: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(deadline) = d["spec"]["progressDeadlineSeconds"].as_i64() else {
        return false;
    };
    let Some(c) = condition(d, "Progressing") else {
        return false;
    };
    if c["reason"] == "NewReplicaSetAvailable" || c["reason"] == "ProgressDeadlineExceeded" {
        return c["reason"] == "ProgressDeadlineExceeded";
    }
    c["lastUpdateTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t + chrono::Duration::seconds(deadline) < now)
}

/// Old ReplicaSets beyond revisionHistoryLimit, oldest first: empty and settled ones only.
pub fn history_to_delete(d: &Value, old: &[&Value]) -> Vec<String> {
    let Some(limit) = d["spec"]["revisionHistoryLimit"].as_i64() else {
        return Vec::new();
    };
    let mut done: Vec<&Value> = old
        .iter()
        .copied()
        .filter(|rs| {
            replicas(rs) == 0
                && i(&rs["status"]["replicas"]) == 0
                && i(&rs["status"]["observedGeneration"]) >= i(&rs["metadata"]["generation"])
                && rs["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    let excess = done.len() as i64 - limit;
    if excess <= 0 {
        return Vec::new();
    }
    done.sort_by_key(|rs| (revision(rs), created(rs)));
    done.iter()
        .take(excess as usize)
        .map(|rs| name(rs).to_string())
        .collect()
}

/// What one sync writes.
#[derive(Debug, Default)]
struct Writes {
    create: Option<Value>,
    /// name → (replicas, annotations to set).
    scale: BTreeMap<String, (i64, Map<String, Value>)>,
    annotate: BTreeMap<String, Map<String, Value>>,
    delete: Vec<String>,
    event: Option<(&'static str, String)>,
}

struct State {
    deployments: HashMap<String, Arc<Value>>,
    sets: HashMap<String, Arc<Value>>,
}

impl State {
    fn sets_of(&self, d: &Value) -> Vec<&Value> {
        let uid = d["metadata"]["uid"].as_str().unwrap_or("");
        let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
        self.sets
            .values()
            .filter(|rs| {
                rs["metadata"]["namespace"] == ns
                    && owner::controller_of(rs).is_some_and(|c| c.uid == uid)
            })
            .map(|v| &**v)
            .collect()
    }

    fn owner_key(&self, rs: &Value) -> Option<String> {
        let ns = rs["metadata"]["namespace"].as_str().unwrap_or("");
        owner::controller_of(rs)
            .filter(|c| c.kind == "Deployment")
            .map(|c| format!("{ns}/{}", c.name))
    }
}

fn annotations_for(d: &Value, new_rev: Option<i64>, max_replicas: bool) -> Map<String, Value> {
    let want = i(&d["spec"]["replicas"]);
    let mut a = Map::new();
    a.insert(DESIRED_REPLICAS.into(), json!(want.to_string()));
    if max_replicas {
        a.insert(
            MAX_REPLICAS.into(),
            json!((want + fenceposts(d).0).to_string()),
        );
    }
    if let Some(r) = new_rev {
        a.insert(REVISION.into(), json!(r.to_string()));
    }
    a
}

/// Plans one sync of `d` over its ReplicaSets.
fn plan(d: &Value, sets: &[&Value], pods_running_in_old: bool) -> Writes {
    let mut w = Writes::default();
    let (new, old) = split(d, sets);
    let max_old_rev = old.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let next_rev = max_old_rev + 1;
    let deleting = !d["metadata"]["deletionTimestamp"].is_null();
    // The new set carries the newest revision, and the Deployment's annotations.
    if let Some(n) = new {
        let mut a = Map::new();
        if revision(n) < next_rev {
            a.insert(REVISION.into(), json!(next_rev.to_string()));
            let mut hist: Vec<String> = n["metadata"]["annotations"][REVISION_HISTORY]
                .as_str()
                .map(|h| h.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            if revision(n) > 0 {
                hist.push(revision(n).to_string());
                a.insert(REVISION_HISTORY.into(), json!(hist.join(",")));
            }
        }
        for (k, v) in copied_annotations(d) {
            if n["metadata"]["annotations"][&k] != v {
                a.insert(k, v);
            }
        }
        if !a.is_empty() {
            w.annotate.insert(name(n).to_string(), a);
        }
    }
    if deleting {
        return w;
    }
    let active: Vec<&Value> = sets.iter().copied().filter(|rs| replicas(rs) > 0).collect();
    let paused = d["spec"]["paused"] == true;
    if paused || (new.is_some() && is_scaling_event(d, &active)) {
        for (n, size) in scale_step(d, new, sets) {
            w.scale.insert(n, (size, annotations_for(d, None, true)));
        }
        return w;
    }
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    if recreate {
        let old_active: Vec<&&Value> = old.iter().filter(|rs| replicas(rs) > 0).collect();
        if !old_active.is_empty() {
            for rs in old_active {
                w.scale
                    .insert(name(rs).to_string(), (0, annotations_for(d, None, true)));
            }
            return w;
        }
        // Old pods must be gone, not just terminating, before the new ones start.
        if pods_running_in_old {
            return w;
        }
    }
    match new {
        None => {
            let size = if recreate {
                i(&d["spec"]["replicas"])
            } else {
                new_rs_replicas(d, sets, None)
            };
            let rs = new_replica_set(d, size, next_rev);
            w.event = Some((
                "ScalingReplicaSet",
                format!("Scaled up replica set {} from 0 to {size}", name(&rs)),
            ));
            w.create = Some(rs);
        }
        Some(n) => {
            // Recreate runs the new set at full size; a rolling one never above it.
            let size = if recreate || replicas(n) > i(&d["spec"]["replicas"]) {
                i(&d["spec"]["replicas"])
            } else {
                new_rs_replicas(d, sets, Some(n))
            };
            if size != replicas(n) {
                w.scale
                    .insert(name(n).to_string(), (size, annotations_for(d, None, true)));
            } else if !recreate {
                for (rs, size) in scale_down_old(d, Some(n), &old) {
                    w.scale.insert(rs, (size, annotations_for(d, None, true)));
                }
            }
            let settled = w.scale.is_empty()
                && i(&n["status"]["availableReplicas"]) == i(&d["spec"]["replicas"])
                && old.iter().all(|rs| replicas(rs) == 0);
            if settled {
                w.delete = history_to_delete(d, &old);
            }
        }
    }
    w
}

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/apps/v1/deployments"),
        informers.watch("/apis/apps/v1/replicasets"),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        st: State {
            deployments: HashMap::new(),
            sets: HashMap::new(),
        },
    };
    control::run(controller, sources, shutdown).await
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    st: State,
}

impl control::Reconcile for Controller {
    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
        &mut self.st.deployments
    }

    fn observe(&mut self, _sets: usize, c: Change, dirty: &mut control::Dirty) {
        set_change(&mut self.st, dirty, c);
    }

    async fn sync(&mut self, _key: &str, d: Option<Arc<Value>>) -> Option<Duration> {
        sync(&self.client, &self.recorder, &mut self.st, &*d?).await
    }
}

const KIND: claim::OwnerKind = claim::OwnerKind {
    api_version: "apps/v1",
    kind: "Deployment",
    plural: "deployments",
};

fn set_change(st: &mut State, dirty: &mut HashSet<String>, c: Change) {
    // A ReplicaSet taken from a Deployment concerns the one it left, too.
    if let Change::Apply(rs) | Change::Delete(rs) = &c
        && let Some(old) = st.sets.get(&reflect::key(rs))
    {
        dirty.extend(st.owner_key(old));
    }
    match &c {
        Change::Reset(_) => dirty.extend(st.deployments.keys().cloned()),
        Change::Apply(rs) | Change::Delete(rs) => match st.owner_key(rs) {
            Some(k) => {
                dirty.insert(k);
            }
            // An orphan may be adopted by a Deployment of its namespace.
            None if owner::controller_of(rs).is_none() => {
                let ns = rs["metadata"]["namespace"].as_str().unwrap_or("");
                dirty.extend(
                    st.deployments
                        .keys()
                        .filter(|k| k.starts_with(&format!("{ns}/")))
                        .cloned(),
                );
            }
            None => {}
        },
    }
    reflect::apply_to(&mut st.sets, c);
}

fn rs_path(ns: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/replicasets/{name}")
}

/// Whether pods of the old ReplicaSets still run (Recreate waits for them to be gone).
async fn old_pods_running(client: &kube::Client, d: &Value, old: &[&Value]) -> bool {
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
    let uids: HashSet<&str> = old
        .iter()
        .filter_map(|rs| rs["metadata"]["uid"].as_str())
        .collect();
    if uids.is_empty() {
        return false;
    }
    let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods"))
        .body(Vec::new())
        .expect("valid request");
    let Ok(list) = client.request::<Value>(req).await else {
        return true;
    };
    list["items"].as_array().into_iter().flatten().any(|p| {
        owner::controller_of(p).is_some_and(|c| uids.contains(c.uid.as_str()))
            && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })
}

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    d: &Value,
) -> Option<Duration> {
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // Claim first: an adopted orphan may be this template's ReplicaSet.
    let selector = claim::OwnerSelector::of(d);
    let in_ns: Vec<&Value> = st
        .sets
        .values()
        .filter(|rs| rs["metadata"]["namespace"] == ns.as_str())
        .map(|v| &**v)
        .collect();
    let claimed = claim::claim(d, &in_ns, |rs| selector.selects(rs));
    let Some(updated) = claim::settle(client, ("apps/v1", "replicasets"), &claimed, d, &KIND).await
    else {
        return Some(claim::ADOPTION_RETRY);
    };
    for rs in updated {
        st.sets.insert(reflect::key(&rs), Arc::new(rs));
    }
    let sets: Vec<Value> = st.sets_of(d).into_iter().cloned().collect();
    let refs: Vec<&Value> = sets.iter().collect();
    let (_, old) = split(d, &refs);
    let recreate_waiting = d["spec"]["strategy"]["type"] == "Recreate"
        && old.iter().all(|rs| replicas(rs) == 0)
        && split(d, &refs).0.is_none_or(|n| replicas(n) == 0)
        && old_pods_running(client, d, &old).await;
    let w = plan(d, &refs, recreate_waiting);
    let mut event: Option<(&str, String)> = None;
    if let Some(rs) = &w.create {
        match owner::send(
            client,
            http::Method::POST,
            format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
            "application/json",
            rs,
        )
        .await
        {
            Ok(created) => {
                recorder.record(
                    d,
                    "Normal",
                    "ScalingReplicaSet",
                    w.event.clone().map(|e| e.1).unwrap_or_default(),
                );
                event = Some((
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{}\"", name(&created)),
                ));
                st.sets.insert(reflect::key(&created), Arc::new(created));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A ReplicaSet by that name with another template: count the collision,
                // and the next hash differs.
                let existing = st.sets.get(&format!("{ns}/{}", name(rs)));
                if existing.is_none_or(|e| !same_template(d, e)) {
                    let count = i(&d["status"]["collisionCount"]) + 1;
                    let mut o = d.clone();
                    o["status"]["collisionCount"] = json!(count);
                    owner::put_status(client, "apps/v1", "deployments", d, o["status"].clone())
                        .await;
                }
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "creating the new ReplicaSet failed");
                return Some(Duration::from_secs(5));
            }
        }
    }
    for (rs_name, annotations) in &w.annotate {
        let body = json!({"metadata": {"annotations": annotations}});
        if let Ok(updated) = owner::send(
            client,
            http::Method::PATCH,
            rs_path(&ns, rs_name),
            "application/merge-patch+json",
            &body,
        )
        .await
        {
            st.sets.insert(reflect::key(&updated), Arc::new(updated));
        }
    }
    for (rs_name, (size, annotations)) in &w.scale {
        let before = st
            .sets
            .get(&format!("{ns}/{rs_name}"))
            .map_or(0, |rs| replicas(rs));
        let mut body = json!({"spec": {"replicas": size}});
        if !annotations.is_empty() {
            body["metadata"] = json!({"annotations": annotations});
        }
        match owner::send(
            client,
            http::Method::PATCH,
            rs_path(&ns, rs_name),
            "application/merge-patch+json",
            &body,
        )
        .await
        {
            Ok(updated) => {
                let verb = if *size > before { "up" } else { "down" };
                recorder.record(
                    d,
                    "Normal",
                    "ScalingReplicaSet",
                    format!("Scaled {verb} replica set {rs_name} from {before} to {size}"),
                );
                st.sets.insert(reflect::key(&updated), Arc::new(updated));
            }
            Err(e) => tracing::debug!(error = %e, rs = %rs_name, "scaling failed"),
        }
    }
    for rs_name in &w.delete {
        let body =
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
        if owner::send(
            client,
            http::Method::DELETE,
            rs_path(&ns, rs_name),
            "application/json",
            &body,
        )
        .await
        .is_ok()
        {
            st.sets.remove(&format!("{ns}/{rs_name}"));
        }
    }
    // The Deployment carries its newest revision.
    let sets: Vec<Value> = st.sets_of(d).into_iter().cloned().collect();
    let refs: Vec<&Value> = sets.iter().collect();
    let (new, _) = split(d, &refs);
    if let Some(n) = new {
        let rev = revision(n).to_string();
        if d["metadata"]["annotations"][REVISION] != rev.as_str() && revision(n) > 0 {
            // An update, as Kubernetes' deployment controller writes it (its role may
            // update Deployments, not patch them); a conflict waits for the next sync.
            let mut body = d.clone();
            body["apiVersion"] = json!("apps/v1");
            body["kind"] = json!("Deployment");
            body["metadata"]["annotations"][REVISION] = json!(rev);
            let _ = owner::send(
                client,
                http::Method::PUT,
                format!("/apis/apps/v1/namespaces/{ns}/deployments/{}", name(d)),
                "application/json",
                &body,
            )
            .await;
        }
        if event.is_none()
            && condition(d, "Progressing")
                .is_none_or(|c| !c["message"].as_str().unwrap_or("").contains(name(n)))
        {
            event = Some((
                "FoundNewReplicaSet",
                format!("Found new replica set \"{}\"", name(n)),
            ));
        }
    }
    let now = chrono::Utc::now();
    let s = status(
        d,
        new,
        &refs,
        event.as_ref().map(|(r, m)| (*r, m.clone())),
        now,
    );
    owner::put_status(client, "apps/v1", "deployments", d, s).await;
    // Look again for progress deadlines and minReadySeconds.
    let min_ready = i(&d["spec"]["minReadySeconds"]);
    if min_ready > 0 {
        return Some(Duration::from_secs(min_ready as u64 + 1));
    }
    d["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .filter(|_| d["spec"]["paused"] != true)
        .map(|s| Duration::from_secs(s as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2, "annotations": {"kubernetes.io/change-cause": "v2"}},
            "spec": {"replicas": replicas, "revisionHistoryLimit": 1, "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})
    }

    fn rs_for(
        d: &Value,
        image: &str,
        replicas: i64,
        available: i64,
        rev: i64,
        created: &str,
    ) -> Value {
        let mut t = d.clone();
        t["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        let mut rs = new_replica_set(&t, replicas, rev);
        rs["metadata"]["creationTimestamp"] = json!(created);
        rs["status"] = json!({"replicas": replicas, "readyReplicas": available, "availableReplicas": available});
        rs
    }

    #[test]
    fn fenceposts_round_as_kubernetes() {
        assert_eq!(fenceposts(&deploy(10, json!("25%"), json!("25%"))), (3, 2));
        assert_eq!(fenceposts(&deploy(1, json!("25%"), json!("25%"))), (1, 0));
        assert_eq!(fenceposts(&deploy(4, json!(0), json!(0))), (0, 1));
        assert_eq!(fenceposts(&deploy(4, json!("2"), json!(1))), (2, 1));
    }

    #[test]
    fn hash_is_stable_and_template_matching_ignores_it() {
        let d = deploy(3, json!(1), json!(0));
        let a = template_hash(&d["spec"]["template"], 0);
        assert_eq!(a, template_hash(&d["spec"]["template"], 0));
        assert_ne!(a, template_hash(&d["spec"]["template"], 1));
        assert!(
            a.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        let rs = new_replica_set(&d, 3, 1);
        assert_eq!(rs["metadata"]["name"], format!("web-{a}"));
        assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH_LABEL], a);
        assert_eq!(
            rs["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "v2"
        );
        assert_eq!(rs["metadata"]["annotations"][MAX_REPLICAS], "4");
        assert!(same_template(&d, &rs));
        let other = rs_for(&d, "nginx:1", 3, 3, 1, "2026-01-01T00:00:00Z");
        assert!(!same_template(&d, &other));
        // Zero values are absent values, as in Go.
        let mut zeros = rs.clone();
        zeros["spec"]["template"]["spec"]["containers"][0]["stdin"] = json!(false);
        zeros["spec"]["template"]["metadata"]["generation"] = json!(0);
        assert!(same_template(&d, &zeros));
        assert_eq!(template_hash(&zeros["spec"]["template"], 0), a);
    }

    #[test]
    fn rolling_update_steps_within_surge_and_unavailability() {
        // 4 replicas, maxSurge 1, maxUnavailable 0: one new pod at a time.
        let d = deploy(4, json!(1), json!(0));
        let old = rs_for(&d, "nginx:1", 4, 4, 1, "2026-01-01T00:00:00Z");
        let w = plan(&d, &[&old], false);
        let created = w.create.expect("a new ReplicaSet");
        assert_eq!(created["spec"]["replicas"], 1);
        assert_eq!(created["metadata"]["annotations"][REVISION], "2");
        // The new pod is not available yet: the old set may not shrink.
        let mut new = created.clone();
        new["metadata"]["creationTimestamp"] = json!("2026-01-01T00:01:00Z");
        new["status"] = json!({"replicas": 1, "availableReplicas": 0});
        let w = plan(&d, &[&old, &new], false);
        assert!(w.scale.is_empty(), "{:?}", w.scale);
        // Once it is, one old pod goes.
        new["status"]["availableReplicas"] = json!(1);
        let w = plan(&d, &[&old, &new], false);
        assert_eq!(w.scale.get(name(&old)).map(|s| s.0), Some(3));
        // And with room under the surge again, the new set grows.
        let mut old3 = old.clone();
        old3["spec"]["replicas"] = json!(3);
        let w = plan(&d, &[&old3, &new], false);
        assert_eq!(w.scale.get(name(&new)).map(|s| s.0), Some(2));
    }

    #[test]
    fn unavailable_budget_scales_old_down_first() {
        // 4 replicas, maxSurge 0, maxUnavailable 2.
        let d = deploy(4, json!(0), json!(2));
        let old = rs_for(&d, "nginx:1", 4, 4, 1, "2026-01-01T00:00:00Z");
        let w = plan(&d, &[&old], false);
        assert_eq!(w.create.unwrap()["spec"]["replicas"], 0);
        let mut new = new_replica_set(&d, 0, 2);
        new["metadata"]["creationTimestamp"] = json!("2026-01-01T00:01:00Z");
        let w = plan(&d, &[&old, &new], false);
        assert_eq!(w.scale.get(name(&old)).map(|s| s.0), Some(2));
    }

    #[test]
    fn proportional_scaling_mid_rollout() {
        let d = deploy(10, json!(3), json!(2));
        let mut old = rs_for(&d, "nginx:1", 8, 8, 1, "2026-01-01T00:00:00Z");
        let mut new = new_replica_set(&d, 5, 2);
        new["metadata"]["creationTimestamp"] = json!("2026-01-01T00:01:00Z");
        for rs in [&mut old, &mut new] {
            rs["metadata"]["annotations"][DESIRED_REPLICAS] = json!("10");
            rs["metadata"]["annotations"][MAX_REPLICAS] = json!("13");
        }
        let mut bigger = d.clone();
        bigger["spec"]["replicas"] = json!(20);
        bigger["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!(6);
        assert!(is_scaling_event(&bigger, &[&old, &new]));
        let steps: BTreeMap<String, i64> = scale_step(&bigger, Some(&new), &[&old, &new])
            .into_iter()
            .collect();
        // 13 → 26 allowed: each set doubles.
        assert_eq!(steps[name(&old)], 16);
        assert_eq!(steps[name(&new)], 10);
    }

    #[test]
    fn recreate_empties_old_then_waits_for_its_pods() {
        let mut d = deploy(3, json!(null), json!(null));
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        let old = rs_for(&d, "nginx:1", 3, 3, 1, "2026-01-01T00:00:00Z");
        let w = plan(&d, &[&old], false);
        assert!(w.create.is_none());
        assert_eq!(w.scale.get(name(&old)).map(|s| s.0), Some(0));
        let mut empty = old.clone();
        empty["spec"]["replicas"] = json!(0);
        assert!(plan(&d, &[&empty], true).create.is_none());
        assert_eq!(
            plan(&d, &[&empty], false).create.unwrap()["spec"]["replicas"],
            3
        );
    }

    #[test]
    fn status_conditions_and_history() {
        let d = deploy(2, json!(1), json!(0));
        let new = rs_for(&d, "nginx:2", 2, 2, 3, "2026-01-01T00:02:00Z");
        let now: chrono::DateTime<chrono::Utc> = "2026-01-01T00:05:00Z".parse().unwrap();
        let s = status(&d, Some(&new), &[&new], None, now);
        assert_eq!(s["updatedReplicas"], 2);
        assert_eq!(s["availableReplicas"], 2);
        assert_eq!(s["conditions"][0]["type"], "Available");
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
        // Stuck past the deadline.
        let mut stuck = d.clone();
        stuck["status"] = json!({"replicas": 2, "updatedReplicas": 2, "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        stuck["spec"]["progressDeadlineSeconds"] = json!(60);
        let half = rs_for(&d, "nginx:2", 2, 0, 3, "2026-01-01T00:02:00Z");
        assert!(timed_out(&stuck, now));
        let s = status(&stuck, Some(&half), &[&half], None, now);
        assert_eq!(s["conditions"][1]["reason"], "ProgressDeadlineExceeded");
        assert_eq!(s["conditions"][0]["status"], "False");
        // revisionHistoryLimit 1: of two empty old sets, the older revision goes.
        let mut r1 = rs_for(&d, "nginx:0", 0, 0, 1, "2026-01-01T00:00:00Z");
        let mut r2 = rs_for(&d, "nginx:1", 0, 0, 2, "2026-01-01T00:01:00Z");
        r1["status"]["replicas"] = json!(0);
        r2["status"]["replicas"] = json!(0);
        assert_eq!(
            history_to_delete(&d, &[&r2, &r1]),
            vec![name(&r1).to_string()]
        );
    }
}
