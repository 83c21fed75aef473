//! The disruption controller: each PodDisruptionBudget's status (expected, healthy and
//! desired pods, disruptions allowed, the DisruptionAllowed condition) kept current from
//! the pods it selects, as `kubectl get pdb` and eviction read it.

use crate::owner;
use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use skiff_validation::disruption::budget;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The status a budget should show over `pods` (its namespace's).
pub fn status(pdb: &Value, pods: &[&Value], now: &str) -> Value {
    let b = budget(pdb, pods);
    let (cond, reason) = if b.allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let since = pdb["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionAllowed" && c["status"] == cond)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(now));
    json!({
        "observedGeneration": generation,
        "disruptionsAllowed": b.allowed,
        "currentHealthy": b.healthy,
        "desiredHealthy": b.desired,
        "expectedPods": b.expected,
        "conditions": [{"type": "DisruptionAllowed", "status": cond, "reason": reason, "message": "", "observedGeneration": generation, "lastTransitionTime": since}],
    })
}

fn namespace(o: &Value) -> String {
    o["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pdb_rx = informers.watch("/apis/policy/v1/poddisruptionbudgets");
    let mut pods_rx = informers.watch("/api/v1/pods");
    let mut pdbs: HashMap<String, Arc<Value>> = HashMap::new();
    let mut pods: HashMap<String, Arc<Value>> = HashMap::new();
    // Namespaces whose budgets need a look.
    let mut dirty: HashSet<String> = HashSet::new();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    loop {
        let touch = |dirty: &mut HashSet<String>, c: &Change| match c {
            Change::Reset(items) => dirty.extend(items.iter().map(|o| namespace(o))),
            Change::Apply(o) | Change::Delete(o) => {
                dirty.insert(namespace(o));
            }
        };
        tokio::select! {
            c = pdb_rx.recv() => {
                let Some(c) = c else { return };
                touch(&mut dirty, &c);
                reflect::apply_to(&mut pdbs, c);
            }
            c = pods_rx.recv() => {
                let Some(c) = c else { return };
                touch(&mut dirty, &c);
                reflect::apply_to(&mut pods, c);
            }
            _ = resync.tick() => dirty.extend(pdbs.values().map(|p| namespace(p))),
            _ = shutdown.changed() => return,
        }
        while let Ok(c) = pods_rx.try_recv() {
            touch(&mut dirty, &c);
            reflect::apply_to(&mut pods, c);
        }
        if pdbs.is_empty() {
            dirty.clear();
            continue;
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for ns in std::mem::take(&mut dirty) {
            let in_ns: Vec<&Value> = pods
                .values()
                .filter(|p| namespace(p) == ns)
                .map(|p| &**p)
                .collect();
            for pdb in pdbs.values().filter(|p| namespace(p) == ns) {
                let s = status(pdb, &in_ns, &now);
                owner::put_status(&client, "policy/v1", "poddisruptionbudgets", pdb, s).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_pods() {
        let pdb = json!({"metadata": {"generation": 2}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
        let ready = json!({"metadata": {"labels": {"app": "web"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let s = status(&pdb, &[&ready, &ready], "2026-01-01T00:00:00Z");
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["expectedPods"], 2);
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
        let s = status(&pdb, &[], "2026-01-01T00:00:00Z");
        assert_eq!(s["conditions"][0]["status"], "False");
    }
}
