//! Leader election through a `coordination.k8s.io` Lease, as client-go's
//! leaderelection: the holder renews every 2 s; another candidate takes the lease over
//! once it has gone 15 s without renewal (trying every 2 s, and at the moment it runs
//! out); a holder that cannot renew for 10 s stops leading. Several servers can then run the controllers with one of them active.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::watch;

pub const LEASE_DURATION: i64 = 15;
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Create,
    /// Ours: renew it.
    Renew,
    /// Expired (or released): take it, counting a transition.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

fn micro(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// What a candidate `me` does about the lease as it stands.
pub fn decide(lease: Option<&Value>, me: &str, now: DateTime<Utc>) -> Decision {
    let Some(l) = lease else {
        return Decision::Create;
    };
    let spec = &l["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    let renewed = spec["renewTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let duration = spec["leaseDurationSeconds"]
        .as_i64()
        .unwrap_or(LEASE_DURATION);
    match renewed {
        _ if holder.is_empty() => Decision::TakeOver,
        Some(t) if t + chrono::Duration::seconds(duration) > now => Decision::Wait,
        _ => Decision::TakeOver,
    }
}

/// How long until another's lease expires, if it says.
pub fn expires_in(lease: &Value, now: DateTime<Utc>) -> Option<Duration> {
    let spec = &lease["spec"];
    let renewed = DateTime::parse_from_rfc3339(spec["renewTime"].as_str()?).ok()?;
    let duration = spec["leaseDurationSeconds"]
        .as_i64()
        .unwrap_or(LEASE_DURATION);
    (renewed.with_timezone(&Utc) + chrono::Duration::seconds(duration) - now)
        .to_std()
        .ok()
}

/// The lease after `me` acted on it.
pub fn held(lease: Option<&Value>, name: &str, ns: &str, me: &str, now: DateTime<Utc>) -> Value {
    let mut l = lease.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": ns}, "spec": {"leaseTransitions": 0}})
    });
    let taking = l["spec"]["holderIdentity"].as_str() != Some(me);
    if taking {
        if lease.is_some() {
            let t = l["spec"]["leaseTransitions"].as_i64().unwrap_or(0);
            l["spec"]["leaseTransitions"] = json!(t + 1);
        }
        l["spec"]["acquireTime"] = json!(micro(now));
    }
    l["spec"]["holderIdentity"] = json!(me);
    l["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION);
    l["spec"]["renewTime"] = json!(micro(now));
    l
}

async fn get(client: &kube::Client, path: &str) -> Result<Option<Value>, kube::Error> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("valid request");
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// One attempt to hold the lease: held now, or when to try again (the lease's expiry
/// when that comes before the next retry, so a dead leader is replaced as soon as its
/// lease runs out rather than up to a retry period later).
async fn try_hold(client: &kube::Client, name: &str, ns: &str, me: &str) -> Result<(), Duration> {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}");
    let Ok(current) = get(client, &path).await else {
        return Err(RETRY);
    };
    let now = Utc::now();
    let (method, url) = match decide(current.as_ref(), me, now) {
        Decision::Wait => {
            let expiry = current.as_ref().and_then(|l| expires_in(l, now));
            return Err(expiry.map_or(RETRY, |d| RETRY.min(d + Duration::from_millis(10))));
        }
        Decision::Create => (
            http::Method::POST,
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
        ),
        Decision::Renew | Decision::TakeOver => (http::Method::PUT, path),
    };
    // PUT carries the resourceVersion read: a competing write makes it a 409.
    let body = held(current.as_ref(), name, ns, me, now);
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("valid request");
    client
        .request::<Value>(req)
        .await
        .map(drop)
        .map_err(|_| RETRY)
}

/// Waits until `me` leads through lease `ns/name`, then keeps it renewed. The returned
/// receiver turns false if leadership is lost (renewals failing for 10 s).
pub async fn lead(
    client: kube::Client,
    name: &str,
    ns: &str,
    me: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Option<watch::Receiver<bool>> {
    let mut announced = false;
    loop {
        let again = match try_hold(&client, name, ns, me).await {
            Ok(()) => break,
            Err(again) => again,
        };
        if !announced {
            tracing::info!(lease = %format!("{ns}/{name}"), "waiting to become leader");
            announced = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(again) => {}
            _ = shutdown.changed() => return None,
        }
    }
    tracing::info!(lease = %format!("{ns}/{name}"), identity = me, "leading");
    let (tx, rx) = watch::channel(true);
    let (name, ns, me) = (name.to_string(), ns.to_string(), me.to_string());
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.changed() => return,
            }
            if try_hold(&client, &name, &ns, &me).await.is_ok() {
                last_ok = tokio::time::Instant::now();
            } else if last_ok.elapsed() > RENEW_DEADLINE {
                tracing::error!(lease = %format!("{ns}/{name}"), "leader election lost");
                let _ = tx.send(false);
                return;
            }
        }
    });
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn decisions_follow_client_go() {
        let now = t("2026-01-01T00:00:30Z");
        assert_eq!(decide(None, "a", now), Decision::Create);
        let fresh = held(None, "kcm", "kube-system", "b", t("2026-01-01T00:00:20Z"));
        assert_eq!(decide(Some(&fresh), "a", now), Decision::Wait);
        assert_eq!(decide(Some(&fresh), "b", now), Decision::Renew);
        let stale = held(None, "kcm", "kube-system", "b", t("2026-01-01T00:00:10Z"));
        assert_eq!(decide(Some(&stale), "a", now), Decision::TakeOver);
        let taken = held(Some(&stale), "kcm", "kube-system", "a", now);
        assert_eq!(taken["spec"]["holderIdentity"], "a");
        assert_eq!(taken["spec"]["leaseTransitions"], 1);
        assert_eq!(taken["spec"]["leaseDurationSeconds"], LEASE_DURATION);
        let renewed = held(Some(&taken), "kcm", "kube-system", "a", now);
        assert_eq!(renewed["spec"]["leaseTransitions"], 1);
    }

    #[test]
    fn a_waiting_candidate_knows_when_the_lease_runs_out() {
        let lease = held(None, "kcm", "kube-system", "b", t("2026-01-01T00:00:20Z"));
        let now = t("2026-01-01T00:00:34.5Z");
        assert_eq!(expires_in(&lease, now), Some(Duration::from_millis(500)));
        assert_eq!(expires_in(&lease, t("2026-01-01T00:00:40Z")), None);
    }
}
