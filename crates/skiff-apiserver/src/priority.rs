//! Priority admission: `spec.priority` comes from the pod's PriorityClass (or the
//! global default class), as Kubernetes' Priority admission plugin does.

use crate::request::contains;
use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_types::ApiError;

pub fn admit_priority(api: &ApiServer, pod: &mut Value, name: &str) -> Result<(), ApiError> {
    let pc_ri = crate::registry::builtin("scheduling.k8s.io", "priorityclasses");
    let class = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let found = match &class {
        Some(c) => {
            let Some(s) = api.cache.get(&pc_ri.key(None, c)) else {
                return Err(ApiError::forbidden(
                    "",
                    "pods",
                    name,
                    &format!("no PriorityClass with name {c} was found"),
                ));
            };
            serde_json::from_slice::<Value>(&s.value).ok()
        }
        None => {
            let (all, _, _) = api.cache.list(&pc_ri.prefix(None), None, None, &|_| true);
            // Only a class that says `globalDefault` anywhere is worth parsing: this runs
            // for every pod created.
            all.iter()
                .filter(|s| contains(&s.value, b"\"globalDefault\""))
                .filter_map(|s| serde_json::from_slice::<Value>(&s.value).ok())
                .find(|pc| pc["globalDefault"] == json!(true))
        }
    };
    let (value, policy) = match &found {
        Some(pc) => (
            pc["value"].as_i64().unwrap_or(0),
            pc["preemptionPolicy"]
                .as_str()
                .unwrap_or("PreemptLowerPriority")
                .to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string()),
    };
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && class.is_some()
        && given != value
        && given != 0
    {
        return Err(ApiError::forbidden(
            "",
            "pods",
            name,
            "the integer value of priority must not be provided in pod spec; priority admission controller computed the priority from the given PriorityClass name",
        ));
    }
    pod["spec"]["priority"] = json!(value);
    pod["spec"]["preemptionPolicy"] = json!(policy);
    if class.is_none()
        && let Some(pc) = &found
    {
        pod["spec"]["priorityClassName"] = pc["metadata"]["name"].clone();
    }
    Ok(())
}
