//! What the workload controllers read of a pod, through a type. The pods they share are
//! trimmed JSON (see `trim`); a [`PodFacts`] borrows its strings from that JSON, so
//! reading one allocates little, where decoding a whole k8s-openapi `Pod` for every pod
//! of every sync would copy all of it.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Pods with a lower cost go first when a set scales down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodFacts<'a> {
    #[serde(borrow)]
    pub metadata: Meta<'a>,
    #[serde(borrow)]
    pub spec: Spec<'a>,
    #[serde(borrow)]
    pub status: Status<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub resource_version: Option<&'a str>,
    pub creation_timestamp: Option<&'a str>,
    pub deletion_timestamp: Option<&'a str>,
    #[serde(borrow)]
    pub labels: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(borrow)]
    pub annotations: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(borrow)]
    pub finalizers: Option<Vec<&'a str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec<'a> {
    pub node_name: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status<'a> {
    pub phase: Option<&'a str>,
    #[serde(borrow)]
    pub conditions: Option<Vec<Condition<'a>>>,
    #[serde(borrow)]
    pub container_statuses: Option<Vec<ContainerStatus<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition<'a> {
    #[serde(rename = "type")]
    pub type_: &'a str,
    pub status: &'a str,
    pub last_transition_time: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus<'a> {
    pub name: &'a str,
    pub restart_count: i64,
    #[serde(borrow)]
    pub state: Option<ContainerState<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ContainerState<'a> {
    #[serde(borrow)]
    pub terminated: Option<Terminated<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Terminated<'a> {
    pub exit_code: i64,
    pub finished_at: Option<&'a str>,
}

fn time(t: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl<'a> PodFacts<'a> {
    /// Reads `p`. A pod the API server stored always reads; anything else is logged and
    /// read as a pod with no facts (pending, not ready, on no node).
    pub fn of(p: &'a Value) -> PodFacts<'a> {
        PodFacts::deserialize(p)
            .inspect_err(|e| tracing::warn!(error = %e, "a pod that does not read as a pod"))
            .unwrap_or_default()
    }

    pub fn node(&self) -> &'a str {
        self.spec.node_name.unwrap_or("")
    }

    pub fn phase(&self) -> &'a str {
        self.status.phase.unwrap_or("")
    }

    pub fn deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// Neither finished nor terminating.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase(), "Succeeded" | "Failed") && !self.deleting()
    }

    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.metadata.labels.iter().flatten().map(|(k, v)| (*k, *v))
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.metadata.annotations.as_ref()?.get(key).copied()
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.metadata.finalizers.iter().flatten().any(|x| *x == f)
    }

    /// Whether it has condition `type_` with `status`.
    pub fn condition(&self, type_: &str, status: &str) -> bool {
        let conditions = self.status.conditions.iter().flatten();
        conditions
            .into_iter()
            .any(|c| c.type_ == type_ && c.status == status)
    }

    pub fn container_statuses(&self) -> &[ContainerStatus<'a>] {
        self.status.container_statuses.as_deref().unwrap_or(&[])
    }

    pub fn deletion_time(&self) -> Option<DateTime<Utc>> {
        time(self.metadata.deletion_timestamp)
    }

    /// When its last container to end ended.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        let ended = self.container_statuses().iter();
        ended
            .filter_map(|c| time(c.state.as_ref()?.terminated.as_ref()?.finished_at))
            .max()
    }

    /// When it became Ready, if it is (an unreadable time counts as long ago).
    pub fn ready_since(&self) -> Option<DateTime<Utc>> {
        let ready = self
            .status
            .conditions
            .as_deref()?
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "True")?;
        Some(time(ready.last_transition_time).unwrap_or_default())
    }

    pub fn is_ready(&self) -> bool {
        self.ready_since().is_some()
    }

    /// Ready for at least `min_ready` seconds.
    pub fn is_available(&self, min_ready: i64, now: DateTime<Utc>) -> bool {
        self.ready_since()
            .is_some_and(|t| min_ready <= 0 || t + chrono::Duration::seconds(min_ready) <= now)
    }

    /// The most restarts of one of its containers.
    pub fn restarts(&self) -> i64 {
        let statuses = self.container_statuses().iter();
        statuses.map(|c| c.restart_count).max().unwrap_or(0)
    }

    pub fn deletion_cost(&self) -> i64 {
        let cost = self.annotation(POD_DELETION_COST);
        cost.and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    pub fn created(&self) -> Option<DateTime<Utc>> {
        time(self.metadata.creation_timestamp)
    }
}

/// Sorts `pods` most deletable first, as Kubernetes' `ActivePodsWithRanks`: unscheduled,
/// pending, not ready, lower deletion cost, more of the set on its node, ready for less
/// time, more restarts, newer.
pub fn sort_for_deletion(pods: &mut [&Value]) {
    let mut per_node: HashMap<&str, i64> = HashMap::new();
    for p in pods.iter() {
        let node = PodFacts::of(p).node();
        if !node.is_empty() {
            *per_node.entry(node).or_default() += 1;
        }
    }
    pods.sort_by_cached_key(|p| {
        let f = PodFacts::of(p);
        let node = f.node();
        let phase = match f.phase() {
            "Pending" => 0,
            "Running" => 2,
            _ => 1,
        };
        let rank = per_node.get(node).copied().unwrap_or(0);
        // Ready longer sorts later: negate the time it became ready.
        let ready_at = f.ready_since().map_or(i64::MIN, |t| -t.timestamp());
        let created = f.created().map_or(i64::MIN, |t| -t.timestamp());
        (
            !node.is_empty(),
            phase,
            f.is_ready(),
            f.deletion_cost(),
            -rank,
            ready_at,
            -f.restarts(),
            created,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_loops_need_and_tolerates_nulls() {
        let p = json!({
            "metadata": {"name": "a", "uid": "u", "labels": {"app": "web"}, "annotations": null,
                "creationTimestamp": "2026-01-01T00:00:00Z", "deletionTimestamp": "2026-01-01T00:05:00Z"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}],
                "containerStatuses": [{"restartCount": 2}, {"restartCount": 5}]}});
        let f = PodFacts::of(&p);
        assert_eq!(
            (f.metadata.name, f.node(), f.phase()),
            ("a", "n1", "Running")
        );
        assert!(f.deleting() && !f.is_active());
        assert_eq!(f.labels().collect::<Vec<_>>(), vec![("app", "web")]);
        assert_eq!(f.restarts(), 5);
        assert_eq!(f.deletion_cost(), 0);
        let now: DateTime<Utc> = "2026-01-01T00:01:20Z".parse().unwrap();
        assert!(f.is_available(20, now) && !f.is_available(21, now));
    }

    #[test]
    fn a_pod_that_does_not_read_has_no_facts() {
        let p = json!({"metadata": {"name": 7}, "status": {"phase": "Running"}});
        let f = PodFacts::of(&p);
        assert_eq!((f.metadata.name, f.phase()), ("", ""));
        assert!(f.is_active() && !f.is_ready());
    }
}
