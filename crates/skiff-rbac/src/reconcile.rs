//! Bringing a stored default role or binding up to the bootstrap policy, as
//! kube-apiserver does at every start (and `kubectl auth reconcile` without
//! `--remove-extra-*`): what is missing is added, what the user added is kept.

use crate::escalation::uncovered;
use k8s_openapi::api::rbac::v1::{AggregationRule, PolicyRule, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Whether the user opted this object out of reconciliation.
pub fn autoupdate_off(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(crate::bootstrap::AUTOUPDATE))
        .is_some_and(|v| v == "false")
}

/// Missing labels and annotations added (existing values win); true if any was.
pub fn merge_meta(existing: &mut ObjectMeta, expected: &ObjectMeta) -> bool {
    let mut changed = false;
    let mut merge = |have: &mut Option<BTreeMap<String, String>>,
                     want: &Option<BTreeMap<String, String>>| {
        for (k, v) in want.iter().flatten() {
            let map = have.get_or_insert_with(BTreeMap::new);
            if !map.contains_key(k) {
                map.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    };
    merge(&mut existing.labels, &expected.labels);
    merge(&mut existing.annotations, &expected.annotations);
    changed
}

/// The expected rules not already granted, appended; true if any was.
pub fn merge_rules(existing: &mut Option<Vec<PolicyRule>>, expected: &[PolicyRule]) -> bool {
    let have = existing.get_or_insert_with(Vec::new);
    let missing: Vec<PolicyRule> = expected
        .iter()
        .filter(|r| !uncovered(have, std::slice::from_ref(*r)).is_empty())
        .cloned()
        .collect();
    let changed = !missing.is_empty();
    have.extend(missing);
    changed
}

/// The expected aggregation selectors not already present, appended.
pub fn merge_aggregation(
    existing: &mut Option<AggregationRule>,
    expected: &Option<AggregationRule>,
) -> bool {
    let Some(want) = expected else { return false };
    let have = existing.get_or_insert_with(AggregationRule::default);
    let selectors = have.cluster_role_selectors.get_or_insert_with(Vec::new);
    let mut changed = false;
    for s in want.cluster_role_selectors.iter().flatten() {
        if !selectors.contains(s) {
            selectors.push(s.clone());
            changed = true;
        }
    }
    changed
}

/// The expected subjects not already bound, appended.
pub fn merge_subjects(
    existing: &mut Option<Vec<Subject>>,
    expected: &Option<Vec<Subject>>,
) -> bool {
    let mut changed = false;
    for s in expected.iter().flatten() {
        let have = existing.get_or_insert_with(Vec::new);
        let same = |h: &Subject| h.kind == s.kind && h.name == s.name && h.namespace == s.namespace;
        if !have.iter().any(same) {
            have.push(s.clone());
            changed = true;
        }
    }
    changed
}
