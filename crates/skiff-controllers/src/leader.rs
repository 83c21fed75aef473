//! Leader election through a `coordination.k8s.io` Lease, as client-go's
//! leaderelection: the holder renews every 2 s; another candidate takes the lease over
//! once it has gone 15 s without renewal (trying every 2 s, and at the moment it runs
//! out); a holder that cannot renew for 10 s stops leading. Several servers can then run the controllers with one of them active.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;

pub const LEASE_DURATION: i32 = 15;
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

fn holder(lease: &Lease) -> &str {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

/// When the lease runs out, if it says when it was renewed.
fn expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = spec.lease_duration_seconds.unwrap_or(LEASE_DURATION);
    renewed
        .checked_add(SignedDuration::from_secs(duration.into()))
        .ok()
}

/// What a candidate `me` does about the lease as it stands.
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Decision {
    let Some(l) = lease else {
        return Decision::Create;
    };
    match holder(l) {
        h if h == me => Decision::Renew,
        "" => Decision::TakeOver,
        _ if expiry(l).is_some_and(|t| t > now) => Decision::Wait,
        _ => Decision::TakeOver,
    }
}

/// How long until another's lease expires, if it says.
pub fn expires_in(lease: &Lease, now: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_until(expiry(lease)?)).ok()
}

/// The lease after `me` acted on it.
pub fn held(lease: Option<&Lease>, name: &str, ns: &str, me: &str, now: Timestamp) -> Lease {
    let mut l = lease.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            lease_transitions: Some(0),
            ..Default::default()
        }),
    });
    let spec = l.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(me) {
        if lease.is_some() {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.holder_identity = Some(me.into());
    spec.lease_duration_seconds = Some(LEASE_DURATION);
    spec.renew_time = Some(MicroTime(now));
    l
}

/// One attempt to hold the lease: held now, or when to try again (the lease's expiry
/// when that comes before the next retry, so a dead leader is replaced as soon as its
/// lease runs out rather than up to a retry period later).
async fn try_hold(leases: &Api<Lease>, name: &str, ns: &str, me: &str) -> Result<(), Duration> {
    let Ok(current) = leases.get_opt(name).await else {
        return Err(RETRY);
    };
    let now = Timestamp::now();
    let decision = decide(current.as_ref(), me, now);
    if decision == Decision::Wait {
        let expiry = current.as_ref().and_then(|l| expires_in(l, now));
        return Err(expiry.map_or(RETRY, |d| RETRY.min(d + Duration::from_millis(10))));
    }
    // A replace carries the resourceVersion read: a competing write makes it a 409.
    let lease = held(current.as_ref(), name, ns, me, now);
    let pp = PostParams::default();
    let written = match decision {
        Decision::Create => leases.create(&pp, &lease).await,
        _ => leases.replace(name, &pp, &lease).await,
    };
    written.map(drop).map_err(|_| RETRY)
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
    let leases: Api<Lease> = Api::namespaced(client, ns);
    let mut announced = false;
    loop {
        let again = match try_hold(&leases, name, ns, me).await {
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
            if try_hold(&leases, &name, &ns, &me).await.is_ok() {
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

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(l: &Lease) -> &LeaseSpec {
        l.spec.as_ref().unwrap()
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
        assert_eq!(spec(&taken).holder_identity.as_deref(), Some("a"));
        assert_eq!(spec(&taken).lease_transitions, Some(1));
        assert_eq!(spec(&taken).lease_duration_seconds, Some(LEASE_DURATION));
        assert_eq!(spec(&taken).acquire_time, Some(MicroTime(now)));
        let renewed = held(Some(&taken), "kcm", "kube-system", "a", now);
        assert_eq!(spec(&renewed).lease_transitions, Some(1));
        let released = Lease {
            spec: Some(LeaseSpec::default()),
            ..fresh
        };
        assert_eq!(decide(Some(&released), "a", now), Decision::TakeOver);
    }

    #[test]
    fn a_waiting_candidate_knows_when_the_lease_runs_out() {
        let lease = held(None, "kcm", "kube-system", "b", t("2026-01-01T00:00:20Z"));
        let now = t("2026-01-01T00:00:34.5Z");
        assert_eq!(expires_in(&lease, now), Some(Duration::from_millis(500)));
        assert_eq!(expires_in(&lease, t("2026-01-01T00:00:40Z")), None);
    }
}
