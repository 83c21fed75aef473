//! Recording core/v1 Events the way Kubernetes components do (kubectl describe reads
//! them by `involvedObject` field selectors); a repeat within ten minutes raises the
//! first event's `count` instead of adding another, as client-go's correlator does.

use serde_json::{Value, json};

/// The time in nanoseconds, never the same twice in this process: events are named
/// `<object>.<hex nanoseconds>` as Kubernetes names them, so their names sort in the
/// order they happened (`kubectl describe` lists events of the same second in that
/// order) and two in one nanosecond still differ.
fn unique_nanos(now: &chrono::DateTime<chrono::Utc>) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let t = now.timestamp_nanos_opt().unwrap_or(0) as u64;
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(t.max(last + 1))
        })
        .unwrap_or(0);
    t.max(prev + 1)
}

/// Records an event about `obj` (a JSON object with metadata).
pub async fn record(
    client: &kube::Client,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> kube::Result<String> {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let now = chrono::Utc::now();
    let event_name = format!("{name}.{:x}", unique_nanos(&now));
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        // Kubernetes names events <object>.<hex time>.
        "metadata": {"name": event_name, "namespace": ns},
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
    Ok(event_name)
}

/// Counts one more occurrence of an existing event, as Kubernetes' correlator does for
/// a repeat (same object, type, reason and message) within ten minutes.
async fn bump(client: &kube::Client, ns: &str, name: &str, count: u64) -> kube::Result<()> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!({"count": count, "lastTimestamp": ts});
    let req = http::Request::patch(format!("/api/v1/namespaces/{ns}/events/{name}"))
        .header("Content-Type", "application/merge-patch+json")
        .body(serde_json::to_vec(&body).expect("JSON values serialize"))
        .expect("valid request");
    client.request_text(req).await?;
    Ok(())
}

/// Repeats are folded into one event for this long.
const CORRELATION_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// Events remembered for folding; the stale go first when it is full.
const REMEMBERED: usize = 4096;

/// (namespace, object, type, reason, message): what makes two events the same.
type Key = (String, String, String, String, String);

#[derive(Default)]
struct Seen {
    /// (namespace, object uid, type, reason, message) → (event name once written,
    /// count, last seen).
    by_key: std::collections::HashMap<Key, (Option<String>, u64, std::time::Instant)>,
}

/// What to do with an event.
#[derive(Debug, PartialEq, Eq)]
enum Fold {
    /// First of its kind: write it.
    Create,
    /// A repeat of a written event: raise its count to this.
    Bump(String, u64),
    /// A repeat of one still being written: counted, written with it.
    Counted,
}

impl Seen {
    fn key(obj: &Value, type_: &str, reason: &str, message: &str) -> Key {
        let m = &obj["metadata"];
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        (
            s(&m["namespace"]),
            format!("{}/{}", s(&m["uid"]), s(&m["name"])),
            type_.into(),
            reason.into(),
            message.into(),
        )
    }

    fn fold(&mut self, key: &Key) -> Fold {
        if let Some(e) = self.by_key.get_mut(key)
            && e.2.elapsed() <= CORRELATION_WINDOW
        {
            e.1 += 1;
            e.2 = std::time::Instant::now();
            return match &e.0 {
                Some(name) => Fold::Bump(name.clone(), e.1),
                None => Fold::Counted,
            };
        }
        if self.by_key.len() >= REMEMBERED {
            self.by_key
                .retain(|_, v| v.2.elapsed() <= CORRELATION_WINDOW);
            if self.by_key.len() >= REMEMBERED {
                self.by_key.clear();
            }
        }
        self.by_key
            .insert(key.clone(), (None, 1, std::time::Instant::now()));
        Fold::Create
    }

    /// The event is written as `name`; returns the count reached meanwhile.
    fn written(&mut self, key: &Key, name: String) -> u64 {
        match self.by_key.get_mut(key) {
            Some(e) => {
                e.0 = Some(name);
                e.1
            }
            None => 1,
        }
    }

    fn failed(&mut self, key: &Key) {
        self.by_key.remove(key);
    }
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
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Seen::default()));
        tokio::spawn(async move {
            use futures::StreamExt;
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(IN_FLIGHT, |(obj, type_, reason, message)| {
                    let client = client.clone();
                    let seen = seen.clone();
                    async move {
                        let key = Seen::key(&obj, type_, reason, &message);
                        let fold = seen.lock().fold(&key);
                        match fold {
                            Fold::Counted => {}
                            Fold::Bump(name, count) => {
                                if let Err(e) = bump(&client, &key.0, &name, count).await {
                                    tracing::debug!(error = %e, reason, "event count not updated");
                                }
                            }
                            Fold::Create => {
                                match record(&client, &obj, type_, reason, &message, component)
                                    .await
                                {
                                    Ok(name) => {
                                        let count = seen.lock().written(&key, name.clone());
                                        // Repeats that came while it was being written.
                                        if count > 1 {
                                            let _ = bump(&client, &key.0, &name, count).await;
                                        }
                                    }
                                    Err(e) => {
                                        seen.lock().failed(&key);
                                        tracing::debug!(error = %e, reason, "event not recorded");
                                    }
                                }
                            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_fold_into_one_event() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}});
        let other = json!({"metadata": {"name": "q", "namespace": "default", "uid": "u2"}});
        let mut seen = Seen::default();
        let k = Seen::key(
            &pod,
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
        );
        assert_eq!(seen.fold(&k), Fold::Create);
        // Repeats while the first is being written are counted, and written with it.
        assert_eq!(seen.fold(&k), Fold::Counted);
        assert_eq!(seen.written(&k, "p.1".into()), 2);
        assert_eq!(seen.fold(&k), Fold::Bump("p.1".into(), 3));
        // Another object, or another message, is another event.
        let k2 = Seen::key(
            &other,
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
        );
        assert_eq!(seen.fold(&k2), Fold::Create);
        let k3 = Seen::key(&pod, "Warning", "BackOff", "something else");
        assert_eq!(seen.fold(&k3), Fold::Create);
        // A failed write is forgotten: the next one writes again.
        seen.failed(&k3);
        assert_eq!(seen.fold(&k3), Fold::Create);
    }
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn event_names_sort_in_time_order_and_never_repeat() {
        let now = chrono::Utc::now();
        let a = super::unique_nanos(&now);
        let b = super::unique_nanos(&now);
        let later = super::unique_nanos(&(now + chrono::Duration::milliseconds(1)));
        assert!(a < b && b < later, "{a} {b} {later}");
        assert!(format!("{a:x}") < format!("{later:x}"));
    }
}
