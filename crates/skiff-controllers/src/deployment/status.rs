//! The Deployment's status from its ReplicaSets (Kubernetes' `calculateStatus` and
//! `syncRolloutStatus`).

use super::rollout::max_unavailable;
use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub(super) fn condition<'a>(d: &'a Deployment, ty: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

struct Cond<'a> {
    ty: &'a str,
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

fn set_condition(conds: &mut Vec<DeploymentCondition>, c: Cond, now: Timestamp) {
    let old = conds.iter().position(|o| o.type_ == c.ty);
    let transition = match old.map(|n| &conds[n]) {
        Some(o) if o.status == c.status => o.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    let new = DeploymentCondition {
        type_: c.ty.into(),
        status: c.status.into(),
        last_update_time: Some(Time(now)),
        last_transition_time: transition,
        reason: Some(c.reason.into()),
        message: Some(c.message.into()),
    };
    match old {
        Some(n)
            if conds[n].reason.as_deref() == Some(c.reason)
                && conds[n].status == c.status
                && conds[n].message.as_deref() == Some(c.message) =>
        {
            // Unchanged: only ReplicaSetUpdated refreshes its update time.
            if c.reason == "ReplicaSetUpdated" {
                conds[n] = new;
            }
        }
        Some(n) => conds[n] = new,
        None => conds.push(new),
    }
}

fn counts(new: Option<&ReplicaSet>, all: &[&ReplicaSet]) -> DeploymentStatus {
    let sum = |f: fn(&ReplicaSetStatus) -> i32| -> i32 {
        all.iter().filter_map(|rs| rs.status.as_ref()).map(f).sum()
    };
    let total_spec: i64 = all.iter().map(|rs| replicas(rs)).sum();
    let available = sum(|s| s.available_replicas.unwrap_or(0));
    DeploymentStatus {
        replicas: Some(sum(|s| s.replicas)),
        updated_replicas: Some(
            new.and_then(|n| n.status.as_ref())
                .map_or(0, |s| s.replicas),
        ),
        ready_replicas: Some(sum(|s| s.ready_replicas.unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some(count((total_spec - i64::from(available)).max(0))),
        ..Default::default()
    }
}

/// The Deployment's status. `event` names a new or found ReplicaSet this sync.
pub fn status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    event: Option<(&str, String)>,
    now: Timestamp,
) -> DeploymentStatus {
    let prev = d.status.clone().unwrap_or_default();
    let mut s = counts(new, all);
    s.observed_generation = Some(d.metadata.generation.unwrap_or(0));
    s.collision_count = prev.collision_count;
    let want = want(d);
    let available = i64::from(s.available_replicas.unwrap_or(0));
    let mut conds = prev.conditions.clone().unwrap_or_default();
    let availability = if available >= want - max_unavailable(d) {
        Cond {
            ty: "Available",
            status: "True",
            reason: "MinimumReplicasAvailable",
            message: "Deployment has minimum availability.",
        }
    } else {
        Cond {
            ty: "Available",
            status: "False",
            reason: "MinimumReplicasUnavailable",
            message: "Deployment does not have minimum availability.",
        }
    };
    set_condition(&mut conds, availability, now);
    if let Some((status, reason, message)) = progressing(d, &prev, &s, new, event, now) {
        let c = Cond {
            ty: "Progressing",
            status,
            reason: &reason,
            message: &message,
        };
        set_condition(&mut conds, c, now);
    }
    // Conditions in Kubernetes' order: Available, then Progressing.
    conds.sort_by_key(|c| c.type_ != "Available");
    s.conditions = Some(conds);
    s
}

/// The Progressing condition's status, reason and message, when this sync sets it.
fn progressing(
    d: &Deployment,
    prev: &DeploymentStatus,
    s: &DeploymentStatus,
    new: Option<&ReplicaSet>,
    event: Option<(&str, String)>,
    now: Timestamp,
) -> Option<(&'static str, String, String)> {
    if paused(d) {
        return Some((
            "Unknown",
            "DeploymentPaused".into(),
            "Deployment is paused".into(),
        ));
    }
    progress_deadline(d)?;
    let n = |v: Option<i32>| i64::from(v.unwrap_or(0));
    let want = want(d);
    let rs_name = new.map(name).unwrap_or("");
    let complete = n(s.updated_replicas) == want
        && n(s.replicas) == want
        && n(s.available_replicas) == want
        && new.is_some();
    let progressed = n(s.updated_replicas) > n(prev.updated_replicas)
        || n(s.ready_replicas) > n(prev.ready_replicas)
        || n(s.available_replicas) > n(prev.available_replicas)
        || n(s.replicas) - n(s.updated_replicas) < n(prev.replicas) - n(prev.updated_replicas);
    let was_paused = condition(d, "Progressing")
        .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
    Some(if let Some((reason, message)) = event {
        ("True", reason.into(), message)
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else if was_paused {
        (
            "Unknown",
            "DeploymentResumed".into(),
            "Deployment is resumed".into(),
        )
    } else if progressed {
        (
            "True",
            "ReplicaSetUpdated".into(),
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    } else if timed_out(d, now) {
        (
            "False",
            "ProgressDeadlineExceeded".into(),
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else {
        return None;
    })
}

/// The rollout has not moved for progressDeadlineSeconds (and is not done).
pub fn timed_out(d: &Deployment, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(d, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some("ProgressDeadlineExceeded") => true,
        Some("NewReplicaSetAvailable") => false,
        _ => c.last_update_time.as_ref().is_some_and(|t| {
            t.0.checked_add(SignedDuration::from_secs(deadline.into()))
                .is_ok_and(|end| end < now)
        }),
    }
}
