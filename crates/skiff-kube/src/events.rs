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

/// Records events in the background, as Kubernetes' event broadcaster does: callers never
/// wait for an event write and a bounded number are written at once. The queue is sized
/// so that a scheduler binding thousands of pods a second keeps every event; only beyond
/// it are events dropped (logged as a warning) rather than slowing the caller.
#[derive(Clone)]
pub struct Recorder {
    tx: tokio::sync::mpsc::Sender<(Value, &'static str, &'static str, String)>,
}

const QUEUE: usize = 16384;
/// Few writes at once: events yield to the work they describe (binds, status), and
/// under a burst they trail it by a second or two instead of competing with it, as
/// Kubernetes' rate-limited broadcaster lets them.
const IN_FLIGHT: usize = 4;

impl Recorder {
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<(Value, &'static str, &'static str, String)>(QUEUE);
        tokio::spawn(async move {
            use futures::StreamExt;
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(IN_FLIGHT, |(obj, type_, reason, message)| {
                    let client = client.clone();
                    async move {
                        if let Err(e) =
                            record(&client, &obj, type_, reason, &message, component).await
                        {
                            tracing::debug!(error = %e, reason, "event not recorded");
                        }
                    }
                })
                .await;
        });
        Recorder { tx }
    }

    /// Queues an event about `obj`; only its identifying metadata is kept.
    pub fn record(&self, obj: &Value, type_: &'static str, reason: &'static str, message: String) {
        let m = &obj["metadata"];
        let slim = json!({
            "kind": obj["kind"], "apiVersion": obj["apiVersion"],
            "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"], "resourceVersion": m["resourceVersion"]},
        });
        if self.tx.try_send((slim, type_, reason, message)).is_err() {
            tracing::warn!(reason, "event queue full; event dropped");
        }
    }
}
