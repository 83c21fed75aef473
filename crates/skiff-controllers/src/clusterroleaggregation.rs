//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule`
//! (admin, edit, view, and any a user makes) gets as its rules the union of the rules
//! of every other ClusterRole its selectors match, in name order, each rule once, as
//! kube-controller-manager's `clusterrole-aggregation` controller keeps them.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::serde::Deserialize;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use skiff_kube::reflect;
use skiff_validation::labels::Selector;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::watch;

fn labels(r: &ClusterRole) -> BTreeMap<String, String> {
    r.metadata.labels.clone().unwrap_or_default()
}

/// The rules `role` should have, or None when it has no aggregation rule.
pub fn aggregate(
    role: &ClusterRole,
    all: &BTreeMap<String, ClusterRole>,
) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let me = role.metadata.name.as_deref().unwrap_or("");
    let mut rules: Vec<PolicyRule> = Vec::new();
    for sel in rule.cluster_role_selectors.iter().flatten() {
        let Ok(sel) = serde_json::to_value(sel)
            .map_err(|e| e.to_string())
            .and_then(|v| Selector::from_label_selector(&v))
        else {
            continue;
        };
        // An empty selector would gather every role: Kubernetes matches nothing with it.
        if sel.is_empty() {
            continue;
        }
        for (name, other) in all {
            if name == me || !sel.matches(&labels(other)) {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rx = informers.watch("/apis/rbac.authorization.k8s.io/v1/clusterroles");
    let mut roles: HashMap<String, Arc<Value>> = HashMap::new();
    let api: Api<ClusterRole> = Api::all(client);
    loop {
        tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { return };
                reflect::apply_to(&mut roles, c);
            }
            _ = shutdown.changed() => return,
        }
        while let Ok(c) = rx.try_recv() {
            reflect::apply_to(&mut roles, c);
        }
        sync(&api, &roles).await;
    }
}

async fn sync(api: &Api<ClusterRole>, roles: &HashMap<String, Arc<Value>>) {
    let typed: BTreeMap<String, ClusterRole> = roles
        .values()
        .filter_map(|v| ClusterRole::deserialize(&**v).ok())
        .filter_map(|r| Some((r.metadata.name.clone()?, r)))
        .collect();
    for (name, role) in &typed {
        let Some(rules) = aggregate(role, &typed) else {
            continue;
        };
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            continue;
        }
        let patch = json!({"rules": rules});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::debug!(%name, rules = rules.len(), "aggregated ClusterRole rules"),
            Err(e) => tracing::warn!(%name, error = %e, "aggregating ClusterRole rules"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                ..PolicyRule::default()
            }]),
            aggregation_rule: None,
        }
    }

    fn aggregating(name: &str, label: &str) -> ClusterRole {
        ClusterRole {
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(vec![LabelSelector {
                    match_labels: Some([(label.to_string(), "true".to_string())].into()),
                    match_expressions: None,
                }]),
            }),
            rules: None,
            ..role(name, &[], &[])
        }
    }

    #[test]
    fn gathers_matching_roles_in_name_order_once_each() {
        let all: BTreeMap<String, ClusterRole> = [
            aggregating("view", "to-view"),
            role("b", &[("to-view", "true")], &["list"]),
            role("a", &[("to-view", "true")], &["get"]),
            role("c", &[("to-view", "true")], &["get"]),
            role("other", &[], &["delete"]),
        ]
        .into_iter()
        .map(|r| (r.metadata.name.clone().unwrap(), r))
        .collect();
        let rules = aggregate(&all["view"], &all).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
        assert_eq!(aggregate(&all["a"], &all), None);
    }
}
