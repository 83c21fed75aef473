//! The rollout decisions, pure over typed Deployments and ReplicaSets (Kubernetes'
//! `rolling.go`, `recreate.go`, `sync.go`).

use super::hash::TemplateKey;
use super::*;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// An intOrString against `total`: percentages round up (surge) or down (unavailable).
fn scaled(v: Option<&IntOrString>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(IntOrString::String(s)) if s.ends_with('%') => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (p * total + 99) / 100
            } else {
                p * total / 100
            }
        }
        Some(IntOrString::String(s)) => s.parse().unwrap_or(0),
        Some(IntOrString::Int(n)) => (*n).into(),
        None => 0,
    }
}

/// maxSurge and maxUnavailable as pod counts; both zero would stall, so unavailable
/// becomes 1 (Kubernetes' `ResolveFenceposts`).
pub fn fenceposts(d: &Deployment) -> (i64, i64) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let want = want(d);
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), want, true);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), want, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub(super) fn max_unavailable(d: &Deployment) -> i64 {
    if recreate(d) {
        return 0;
    }
    fenceposts(d).1.min(want(d))
}

/// The ReplicaSet for the current template (the oldest if several match) and the rest.
pub fn split<'a>(
    d: &Deployment,
    sets: &[&'a ReplicaSet],
) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let key = TemplateKey::of(d.spec.as_ref().map(|s| &s.template));
    let mut matching: Vec<&ReplicaSet> = sets
        .iter()
        .copied()
        .filter(|rs| TemplateKey::of(rs_template(rs)) == key)
        .collect();
    matching.sort_by_key(|rs| age_key(rs));
    let new = matching.first().copied();
    let old = sets
        .iter()
        .copied()
        .filter(|rs| new.is_none_or(|n| name(n) != name(*rs)))
        .collect();
    (new, old)
}

/// The ReplicaSet a Deployment would create for its template.
pub fn new_replica_set(d: &Deployment, replicas: i64, revision: i64) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let hash = TemplateKey::of(Some(&spec.template)).hash(collision_count(d));
    let mut template = spec.template;
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    labels.insert(HASH_LABEL.into(), hash.clone());
    let labels = labels.clone();
    let mut selector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations = copied_annotations(d);
    annotations.extend(annotations_for(d, Some(revision), true));
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", name(d))),
            namespace: d.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(count(replicas)),
            min_ready_seconds: Some(spec.min_ready_seconds.unwrap_or(0)),
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

fn controller_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: name(d).into(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(super) fn copied_annotations(d: &Deployment) -> Annotations {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The size annotations a ReplicaSet carries for this Deployment, and its revision.
pub(super) fn annotations_for(d: &Deployment, revision: Option<i64>, max: bool) -> Annotations {
    let want = want(d);
    let mut a = Annotations::new();
    a.insert(DESIRED_REPLICAS.into(), want.to_string());
    if max {
        a.insert(MAX_REPLICAS.into(), (want + fenceposts(d).0).to_string());
    }
    if let Some(r) = revision {
        a.insert(REVISION.into(), r.to_string());
    }
    a
}

/// How many pods the new ReplicaSet may have now (Kubernetes' `NewRSNewReplicas`).
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> i64 {
    let want = want(d);
    let current_new = new.map_or(0, replicas);
    if recreate(d) {
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
pub fn scale_down_old(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Vec<(String, i64)> {
    let old_pods: i64 = old.iter().map(|rs| replicas(rs)).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods: i64 = old_pods + new.map_or(0, replicas);
    let min_available = want(d) - max_unavailable(d);
    let new_unavailable = new.map_or(0, |n| replicas(n) - available(n));
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&ReplicaSet> = old.to_vec();
    sorted.sort_by_key(|rs| age_key(rs));
    let mut sizes: Vec<(String, i64)> = sorted
        .iter()
        .map(|rs| (name(*rs).to_string(), replicas(rs)))
        .collect();
    // Unhealthy first.
    let mut cleaned = 0;
    for (n, rs) in sorted.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (sizes[n].1 - available(rs)).max(0);
        let down = unhealthy.min(max_scaled_down - cleaned);
        sizes[n].1 -= down;
        cleaned += down;
    }
    // Then healthy ones, keeping minAvailable.
    let available_now: i64 =
        old.iter().map(|rs| available(rs)).sum::<i64>() + new.map_or(0, available);
    let mut budget = (available_now - min_available)
        .max(0)
        .min(max_scaled_down - cleaned);
    for size in sizes.iter_mut() {
        if budget == 0 {
            break;
        }
        let down = size.1.min(budget);
        size.1 -= down;
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
pub fn is_scaling_event(d: &Deployment, active: &[&ReplicaSet]) -> bool {
    let want = want(d).to_string();
    active
        .iter()
        .any(|rs| annotation(*rs, DESIRED_REPLICAS).is_some_and(|v| v != want))
}

/// Proportional scaling of a rollout in flight: the change is shared among the active
/// ReplicaSets by their size (Kubernetes' `scale`). Returns new sizes by name.
pub fn scale_step(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
) -> Vec<(String, i64)> {
    let want = want(d);
    let active: Vec<&ReplicaSet> = all.iter().copied().filter(|rs| replicas(rs) > 0).collect();
    if active.len() <= 1 {
        // One active set (or none): it takes the whole size, the new one by preference.
        let target = active.first().copied().or(new);
        return target
            .filter(|rs| replicas(rs) != want)
            .map(|rs| vec![(name(rs).to_string(), want)])
            .unwrap_or_default();
    }
    let allowed = want + if recreate(d) { 0 } else { fenceposts(d).0 };
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
                created(*b).cmp(&created(*a))
            } else {
                created(*a).cmp(&created(*b))
            }
        })
    });
    let mut sizes: Vec<i64> = sorted.iter().map(|rs| replicas(rs)).collect();
    let mut added = 0;
    for (n, rs) in sorted.iter().enumerate() {
        let annotated: i64 = annotation(*rs, MAX_REPLICAS)
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
        .map(|(rs, s)| (name(*rs).to_string(), s))
        .collect()
}

/// Old ReplicaSets beyond revisionHistoryLimit, oldest first: empty and settled ones only.
pub fn history_to_delete(d: &Deployment, old: &[&ReplicaSet]) -> Vec<String> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return Vec::new();
    };
    let mut done: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| {
            let status = rs.status.as_ref();
            replicas(rs) == 0
                && status.is_none_or(|s| s.replicas == 0)
                && status.and_then(|s| s.observed_generation).unwrap_or(0)
                    >= rs.metadata.generation.unwrap_or(0)
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let excess = done.len() as i64 - i64::from(limit);
    if excess <= 0 {
        return Vec::new();
    }
    done.sort_by_key(|rs| (revision(rs), created(*rs)));
    done.iter()
        .take(excess as usize)
        .map(|rs| name(*rs).to_string())
        .collect()
}

/// What one sync writes.
#[derive(Debug, Default)]
pub(super) struct Writes {
    pub create: Option<ReplicaSet>,
    /// name → (replicas, annotations to set).
    pub scale: BTreeMap<String, (i64, Annotations)>,
    pub annotate: BTreeMap<String, Annotations>,
    pub delete: Vec<String>,
    pub event: Option<(&'static str, String)>,
}

/// The annotations the new set lacks: the newest revision (the one it had joining its
/// history) and the Deployment's own.
fn new_set_annotations(d: &Deployment, n: &ReplicaSet, next_rev: i64) -> Annotations {
    let mut a = Annotations::new();
    if revision(n) < next_rev {
        a.insert(REVISION.into(), next_rev.to_string());
        let mut hist: Vec<String> = annotation(n, REVISION_HISTORY)
            .map(|h| h.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        if revision(n) > 0 {
            hist.push(revision(n).to_string());
            a.insert(REVISION_HISTORY.into(), hist.join(","));
        }
    }
    for (k, v) in copied_annotations(d) {
        if annotation(n, &k) != Some(v.as_str()) {
            a.insert(k, v);
        }
    }
    a
}

/// Plans one sync of `d` over its ReplicaSets.
pub(super) fn plan(d: &Deployment, sets: &[&ReplicaSet], pods_running_in_old: bool) -> Writes {
    let mut w = Writes::default();
    let (new, old) = split(d, sets);
    let next_rev = old.iter().map(|rs| revision(rs)).max().unwrap_or(0) + 1;
    if let Some(n) = new {
        let a = new_set_annotations(d, n, next_rev);
        if !a.is_empty() {
            w.annotate.insert(name(n).to_string(), a);
        }
    }
    if d.metadata.deletion_timestamp.is_some() {
        return w;
    }
    let active: Vec<&ReplicaSet> = sets.iter().copied().filter(|rs| replicas(rs) > 0).collect();
    if paused(d) || (new.is_some() && is_scaling_event(d, &active)) {
        for (n, size) in scale_step(d, new, sets) {
            w.scale.insert(n, (size, annotations_for(d, None, true)));
        }
        return w;
    }
    if recreate(d) {
        let old_active: Vec<&&ReplicaSet> = old.iter().filter(|rs| replicas(rs) > 0).collect();
        if !old_active.is_empty() {
            for rs in old_active {
                w.scale
                    .insert(name(*rs).to_string(), (0, annotations_for(d, None, true)));
            }
            return w;
        }
        // Old pods must be gone, not just terminating, before the new ones start.
        if pods_running_in_old {
            return w;
        }
    }
    match new {
        None => create_new(&mut w, d, sets, next_rev),
        Some(n) => roll(&mut w, d, sets, n, &old),
    }
    w
}

fn create_new(w: &mut Writes, d: &Deployment, sets: &[&ReplicaSet], next_rev: i64) {
    let size = if recreate(d) {
        want(d)
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

fn roll(w: &mut Writes, d: &Deployment, sets: &[&ReplicaSet], n: &ReplicaSet, old: &[&ReplicaSet]) {
    // Recreate runs the new set at full size; a rolling one never above it.
    let size = if recreate(d) || replicas(n) > want(d) {
        want(d)
    } else {
        new_rs_replicas(d, sets, Some(n))
    };
    if size != replicas(n) {
        w.scale
            .insert(name(n).to_string(), (size, annotations_for(d, None, true)));
    } else if !recreate(d) {
        for (rs, size) in scale_down_old(d, Some(n), old) {
            w.scale.insert(rs, (size, annotations_for(d, None, true)));
        }
    }
    let settled =
        w.scale.is_empty() && available(n) == want(d) && old.iter().all(|rs| replicas(rs) == 0);
    if settled {
        w.delete = history_to_delete(d, old);
    }
}
