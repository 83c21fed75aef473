//! What a failed pod means for its Job: the back-off before a replacement and the
//! `podFailurePolicy` rules.

use crate::podfacts::PodFacts;
use k8s_openapi::api::batch::v1::{Job, PodFailurePolicyOnExitCodesRequirement};

const BACKOFF_BASE: i64 = 10;
const BACKOFF_MAX: i64 = 360;

/// Kubernetes' pod failure back-off: 10 s doubling per failure, at most 6 minutes.
pub fn backoff(failures: i64) -> i64 {
    if failures <= 0 {
        return 0;
    }
    let mut d = BACKOFF_BASE;
    for _ in 1..failures {
        d *= 2;
        if d >= BACKOFF_MAX {
            return BACKOFF_MAX;
        }
    }
    d
}

/// What a failed pod's rules say (`podFailurePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    FailJob(String),
    Ignore,
    Count,
}

/// The first rule of the Job's `podFailurePolicy` that the failed pod matches decides.
pub fn failure_action(job: &Job, p: &PodFacts) -> FailureAction {
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let rules = policy.map_or(&[][..], |p| &p.rules[..]);
    for (n, r) in rules.iter().enumerate() {
        // (container, exit code) that matched, or ("", 0) for a pod condition.
        let matched = if let Some(codes) = &r.on_exit_codes {
            exit_code_matches(codes, p)
        } else if let Some(patterns) = &r.on_pod_conditions {
            let hit = patterns.iter().any(|c| p.condition(&c.type_, &c.status));
            hit.then(|| (String::new(), 0))
        } else {
            None
        };
        let Some((container, code)) = matched else {
            continue;
        };
        let pod = format!("{}/{}", p.metadata.namespace, p.metadata.name);
        return match r.action.as_str() {
            "FailJob" if container.is_empty() => FailureAction::FailJob(format!(
                "Pod {pod} has condition matching FailJob rule at index {n}"
            )),
            "FailJob" => FailureAction::FailJob(format!(
                "Container {container} for pod {pod} failed with exit code {code} matching FailJob rule at index {n}"
            )),
            "Ignore" => FailureAction::Ignore,
            _ => FailureAction::Count,
        };
    }
    FailureAction::Count
}

/// The first of the pod's containers (or the one named) whose exit code the
/// requirement matches. NotIn ignores the zero exit code, as Kubernetes does.
fn exit_code_matches(
    req: &PodFailurePolicyOnExitCodesRequirement,
    p: &PodFacts,
) -> Option<(String, i64)> {
    let only = req.container_name.as_deref();
    let listed = |code: i64| req.values.iter().any(|v| i64::from(*v) == code);
    let op_in = req.operator == "In";
    let statuses = p.container_statuses().iter();
    statuses
        .filter(|c| only.is_none_or(|o| c.name == o))
        .find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            let hit = if op_in {
                listed(code)
            } else {
                code != 0 && !listed(code)
            };
            hit.then(|| (c.name.to_string(), code))
        })
}
