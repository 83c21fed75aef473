//! PodDisruptionBudget arithmetic, shared by eviction in the API server and the
//! disruption controller that publishes a budget's status.

use crate::labels::Selector;
use serde_json::Value;
use std::collections::BTreeMap;

pub fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// An int-or-percent of `total`, rounded up as Kubernetes does for budgets.
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| (p * total + 99) / 100),
        _ => None,
    }
}

fn labels(p: &Value) -> BTreeMap<String, String> {
    p["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Where a budget stands over the pods of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Pods the selector matches.
    pub expected: i64,
    /// Of those, Ready and not being deleted.
    pub healthy: i64,
    pub desired: i64,
    pub allowed: i64,
}

/// `pods` are the budget's namespace's, owned or borrowed.
pub fn budget<P: std::borrow::Borrow<Value>>(pdb: &Value, pods: &[P]) -> Budget {
    let sel = Selector::from_label_selector(&pdb["spec"]["selector"]).unwrap_or_default();
    let matching: Vec<&Value> = pods
        .iter()
        .map(|p| p.borrow())
        .filter(|p| !sel.is_empty() && sel.matches(&labels(p)))
        .collect();
    let expected = matching.len() as i64;
    let healthy = matching
        .iter()
        .filter(|p| pod_ready(p) && p["metadata"]["deletionTimestamp"].is_null())
        .count() as i64;
    let desired = if let Some(min) = scaled(&pdb["spec"]["minAvailable"], expected) {
        min
    } else if let Some(max) = scaled(&pdb["spec"]["maxUnavailable"], expected) {
        (expected - max).max(0)
    } else {
        expected
    };
    Budget {
        expected,
        healthy,
        desired,
        allowed: (healthy - desired).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn disruption_budget_arithmetic() {
        let ready = |n: &str| json!({"metadata": {"name": n, "labels": {"app": "web"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let pods = vec![
            ready("a"),
            ready("b"),
            json!({"metadata": {"name": "c", "labels": {"app": "web"}}, "status": {}}),
        ];
        let pdb = |spec: Value| json!({"spec": spec});
        let b = |spec: Value| {
            let b = budget(&pdb(spec), &pods);
            (b.allowed, b.desired, b.healthy)
        };
        let sel = json!({"matchLabels": {"app": "web"}});
        assert_eq!(b(json!({"selector": sel, "minAvailable": 2})), (0, 2, 2));
        assert_eq!(b(json!({"selector": sel, "minAvailable": 1})), (1, 1, 2));
        assert_eq!(b(json!({"selector": sel, "maxUnavailable": 1})), (0, 2, 2));
        assert_eq!(
            b(json!({"selector": sel, "minAvailable": "50%"})),
            (0, 2, 2)
        );
        assert_eq!(budget(&pdb(json!({"selector": sel})), &pods).expected, 3);
    }
}
