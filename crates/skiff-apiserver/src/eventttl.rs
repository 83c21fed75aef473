//! Events expire `--event-ttl` (1 h) after they were last written, as kube-apiserver
//! stores each one under an etcd lease of that length, renewed by every update. skiff's
//! store has no leases: a sweep deletes, straight from storage as a lease's expiry
//! does (watchers see a DELETED event; no admission, no audit), every Event whose
//! newest timestamp is older than the TTL. Without it Events grow without bound.

use crate::cache::Stored;
use crate::state::ApiServer;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// What the sweep reads of an Event (core/v1 and events.k8s.io/v1 share the storage).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Times {
    #[serde(default)]
    metadata: Meta,
    last_timestamp: Option<String>,
    first_timestamp: Option<String>,
    event_time: Option<String>,
    series: Option<Series>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    creation_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Series {
    last_observed_time: Option<String>,
}

/// When the Event was last written, as near as its fields tell: the newest of its
/// timestamps (a repeat raises `lastTimestamp` or `series.lastObservedTime`).
fn last_written(e: &Times) -> Option<DateTime<Utc>> {
    [
        &e.metadata.creation_timestamp,
        &e.last_timestamp,
        &e.first_timestamp,
        &e.event_time,
        &e.series.as_ref().and_then(|s| s.last_observed_time.clone()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
    .map(|t| t.with_timezone(&Utc))
    .max()
}

/// Whether the Event stored as `s` has outlived `ttl` at `now`.
fn expired(s: &Stored, ttl: Duration, now: DateTime<Utc>) -> bool {
    let Ok(v) = crate::codec::from_stored(s) else {
        return false;
    };
    let times = Times::deserialize(&v).unwrap_or_default();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    last_written(&times).is_some_and(|t| t + ttl < now)
}

/// Sweeps every `ttl / 10` (between 1 s and 1 min) until the process ends.
pub fn spawn(api: Arc<ApiServer>, ttl: Duration) {
    let every = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let prefix = crate::registry::builtin("", "events").prefix(None);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = Utc::now();
            let (events, _, _) = api.cache.list(&prefix, None, None, &|_| true);
            let doomed: Vec<_> = events.iter().filter(|s| expired(s, ttl, now)).collect();
            for s in &doomed {
                // A conflict is an update since the list: it lives on.
                let _ = api.store.delete(&s.key, Some(s.rev)).await;
            }
            if !doomed.is_empty() {
                tracing::debug!(expired = doomed.len(), "events past --event-ttl deleted");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn times(v: serde_json::Value) -> Times {
        Times::deserialize(&v).unwrap()
    }

    #[test]
    fn the_newest_timestamp_counts() {
        let e = times(json!({
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T02:00:00Z",
        }));
        assert_eq!(
            last_written(&e).unwrap().to_rfc3339(),
            "2026-01-01T02:00:00+00:00"
        );
        let series = times(json!({
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-01-01T05:00:00.000000Z"},
        }));
        assert_eq!(
            last_written(&series).unwrap().to_rfc3339(),
            "2026-01-01T05:00:00+00:00"
        );
        assert!(last_written(&times(json!({}))).is_none());
    }

    #[test]
    fn expiry_is_strictly_after_the_ttl() {
        let body = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "d", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let s = Stored::new(
            "/registry/events/d/e".into(),
            serde_json::to_vec(&body).unwrap().into(),
            7,
        );
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let hour = Duration::from_secs(3600);
        assert!(!expired(&s, hour, at("2026-01-01T00:59:59Z")));
        assert!(!expired(&s, hour, at("2026-01-01T01:00:00Z")));
        assert!(expired(&s, hour, at("2026-01-01T01:00:01Z")));
    }
}
