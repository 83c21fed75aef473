//! Recording core/v1 Events the way Kubernetes components do (kubectl describe reads
//! them by `involvedObject` field selectors).

use serde_json::{Value, json};

/// Records an event about `obj` (a JSON object with metadata).
pub async fn record(
    client: &kube::Client,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> kube::Result<()> {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let now = chrono::Utc::now();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        // Kubernetes names events <object>.<hex time>.
        "metadata": {"name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or(0) as u64 ^ rand::random::<u32>() as u64), "namespace": ns},
        "involvedObject": {
            "kind": obj["kind"].as_str().unwrap_or("Pod"),
            "apiVersion": obj["apiVersion"].as_str().unwrap_or("v1"),
            "namespace": ns,
            "name": name,
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": component,
    });
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/events"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&event).expect("JSON values serialize"))
        .expect("valid request");
    client.request_text(req).await?;
    Ok(())
}
