//! `pods/<name>/binding`: the scheduler's (or anyone's) placement of a pod on a node.

use super::call::Call;
use crate::request::WriteOptions;
use crate::request::now_rfc3339;
use crate::respond::respond;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_types::{ApiError, FieldError, meta};

pub async fn serve(
    call: &Call<'_>,
    binding: Value,
    opts: WriteOptions,
) -> Result<Response, ApiError> {
    let name = call.t.name().to_string();
    let opts = WriteOptions {
        field_manager: None,
        ..opts
    };
    call.api
        .write_existing(&call.t, None, &opts, |cur| apply(cur, &binding, &name))
        .await?;
    Ok(respond(&call.headers, 201, &created(), &[]))
}

/// The `Status` a successful binding or eviction answers with.
pub fn created() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

fn apply(pod: &Value, binding: &Value, pod_name: &str) -> Result<Value, ApiError> {
    let node = binding["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            pod_name,
            &[FieldError::required("target.name", "")],
        ));
    }
    if meta::deletion_timestamp(pod).is_some() {
        return Err(ApiError::conflict(
            "",
            "pods",
            pod_name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            "",
            "pods",
            pod_name,
            &format!("pod {pod_name} is already assigned to node {existing:?}"),
        ));
    }
    let mut p = pod.clone();
    p["spec"]["nodeName"] = json!(node);
    if let Some(ann) = binding["metadata"]["annotations"].as_object() {
        for (k, v) in ann {
            p["metadata"]["annotations"][k] = v.clone();
        }
    }
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    let conds = p["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(cond);
    p["status"]["conditions"] = json!(conds);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_sets_node_once() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
        let b = json!({"target": {"kind": "Node", "name": "n1"}});
        let bound = apply(&pod, &b, "p").unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(apply(&bound, &b, "p").unwrap_err().code, 409);
    }
}
