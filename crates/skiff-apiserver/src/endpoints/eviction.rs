//! `pods/<name>/eviction`: a delete that PodDisruptionBudgets may refuse.

use super::binding::created;
use super::call::Call;
use crate::request::{DeleteOptions, Target, WriteOptions};
use crate::respond::respond;
use crate::state::ApiServer;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_types::{ApiError, meta};

pub async fn serve(
    call: &Call<'_>,
    eviction: Value,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let mut dopts =
        DeleteOptions::from_body(eviction.get("deleteOptions").unwrap_or(&Value::Null))?;
    dopts.dry_run |= opts.dry_run;
    dopts.user = Some(call.user.clone());
    let pod_t = Target {
        sub: None,
        ..call.t.clone()
    };
    let write = crate::nodeauth::Write::create_sub(&call.t, "eviction", &eviction);
    crate::nodeauth::admit(call.api, call.user, &write)?;
    let pod = call.api.get_object(&pod_t).await?;
    check_disruption_budgets(call.api, &pod).await?;
    call.api.delete(&pod_t, &dopts).await?;
    Ok(respond(&call.headers, 201, &created(), &[]))
}

/// Refuses an eviction that would break a PodDisruptionBudget (429, as Kubernetes).
async fn check_disruption_budgets(api: &ApiServer, pod: &Value) -> Result<(), ApiError> {
    let ns = meta::namespace(pod).unwrap_or("default");
    if meta::deletion_timestamp(pod).is_some() || !skiff_validation::disruption::pod_ready(pod) {
        // Terminating or unhealthy pods do not count against a budget.
        return Ok(());
    }
    api.sync_cache().await?;
    let pdb_ri = crate::registry::builtin("policy", "poddisruptionbudgets");
    let pod_ri = crate::registry::builtin("", "pods");
    let (pdbs, _, _) = api
        .cache
        .list(&pdb_ri.prefix(Some(ns)), None, None, &|_| true);
    if pdbs.is_empty() {
        return Ok(());
    }
    let (pods, _, _) = api
        .cache
        .list(&pod_ri.prefix(Some(ns)), None, None, &|_| true);
    let pods: Vec<Value> = pods
        .iter()
        .filter_map(|s| serde_json::from_slice(&s.value).ok())
        .collect();
    let labels = meta::string_map(pod["metadata"].get("labels"));
    for s in pdbs {
        let Ok(pdb) = serde_json::from_slice::<Value>(&s.value) else {
            continue;
        };
        let sel = skiff_validation::labels::Selector::from_label_selector(&pdb["spec"]["selector"])
            .unwrap_or_default();
        if sel.is_empty() || !sel.matches(&labels) {
            continue;
        }
        let b = skiff_validation::disruption::budget(&pdb, &pods);
        let (allowed, desired, healthy) = (b.allowed, b.desired, b.healthy);
        if allowed < 1 {
            let name = meta::name(&pdb).unwrap_or("");
            let mut e = ApiError::new(
                429,
                skiff_types::StatusReason::TooManyRequests,
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            e.causes = vec![
                json!({"reason": "DisruptionBudget", "message": format!("The disruption budget {name} needs {desired} healthy pods and has {healthy} currently")}),
            ];
            return Err(e);
        }
    }
    Ok(())
}
