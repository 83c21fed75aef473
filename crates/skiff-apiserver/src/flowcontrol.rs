//! Overload protection: kube-apiserver's max-in-flight limits, split into lanes as API
//! Priority and Fairness splits them into priority levels, so a flood of user requests
//! can never take the seats nodes and controllers need.
//!
//! - `system:masters` and health probes are exempt (APF's `exempt` level).
//! - Long-running requests (watches, exec, attach, port-forward, followed logs, proxy)
//!   hold no seat, as in both of kube's filters: watches are bounded elsewhere (slow
//!   watchers are cut off, see `watch`).
//! - Everything else takes a read-only or a mutating seat in its lane: `--max-requests-
//!   inflight` and `--max-mutating-requests-inflight` of them per lane. A user request
//!   finding its lane full is refused at once with 429 and `Retry-After: 1` (the legacy
//!   filter's answer, which client-go retries). Nodes, the controllers, the scheduler,
//!   kube-system's ServiceAccounts and bootstrapping nodes have a lane of their own
//!   (APF's `node-high`, `system`, `workload-high`); a request there waits up to
//!   [`SYSTEM_QUEUE_WAIT`] for a seat before it too is refused.

use skiff_pki::UserInfo;
use skiff_types::{ApiError, StatusReason};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a system request waits for a seat before 429.
pub const SYSTEM_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// `--max-requests-inflight` and `--max-mutating-requests-inflight` (0: unlimited).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub readonly: usize,
    pub mutating: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            readonly: 400,
            mutating: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Exempt,
    System,
    Workload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LongRunning,
    ReadOnly,
    Mutating,
}

const SYSTEM_USERS: &[&str] = &[
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:kube-proxy",
    "system:apiserver",
];
const SYSTEM_GROUPS: &[&str] = &["system:nodes", "system:bootstrappers"];

/// The lane of a request's (effective) user.
pub fn lane_of(user: &UserInfo) -> Lane {
    let in_group = |g: &str| user.groups.iter().any(|x| x == g);
    if in_group("system:masters") {
        Lane::Exempt
    } else if SYSTEM_GROUPS.iter().any(|g| in_group(g))
        || SYSTEM_USERS.contains(&user.username.as_str())
        || user
            .username
            .starts_with("system:serviceaccount:kube-system:")
    {
        Lane::System
    } else {
        Lane::Workload
    }
}

/// What a request costs: kube's `BasicLongRunningRequestCheck` and read-only verbs.
/// `verb` and `subresource` are the authorizer's; `path` tells probes apart.
pub fn kind_of(verb: &str, subresource: &str, path: &str, query: Option<&str>) -> Kind {
    let follows = || {
        query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "follow" && v == "true")
        })
    };
    let probe = matches!(path, "/healthz" | "/livez" | "/readyz")
        || ["/healthz/", "/livez/", "/readyz/"]
            .iter()
            .any(|p| path.starts_with(p));
    if probe
        || verb == "watch"
        || matches!(subresource, "exec" | "attach" | "portforward" | "proxy")
        || (subresource == "log" && follows())
    {
        Kind::LongRunning
    } else if matches!(verb, "get" | "list" | "head" | "options") {
        Kind::ReadOnly
    } else {
        Kind::Mutating
    }
}

struct Seats {
    readonly: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

impl Seats {
    fn new(l: Limits) -> Seats {
        let sem = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Seats {
            readonly: sem(l.readonly),
            mutating: sem(l.mutating),
        }
    }

    fn of(&self, kind: Kind) -> Option<&Arc<Semaphore>> {
        match kind {
            Kind::ReadOnly => self.readonly.as_ref(),
            Kind::Mutating => self.mutating.as_ref(),
            Kind::LongRunning => None,
        }
    }
}

/// A request's seat, given back when dropped.
pub struct Seat(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

pub struct FlowControl {
    limits: Limits,
    workload: Seats,
    system: Seats,
    /// Requests refused with 429, by lane (`apiserver_dropped_requests_total`).
    pub dropped: [AtomicU64; 2],
}

impl FlowControl {
    pub fn new(limits: Limits) -> FlowControl {
        FlowControl {
            limits,
            workload: Seats::new(limits),
            system: Seats::new(limits),
            dropped: Default::default(),
        }
    }

    /// A seat for a request, or the 429 that refuses it.
    pub async fn admit(&self, lane: Lane, kind: Kind) -> Result<Seat, ApiError> {
        let (seats, wait, slot) = match lane {
            Lane::Exempt => return Ok(Seat(None)),
            Lane::Workload => (&self.workload, None, 0),
            Lane::System => (&self.system, Some(SYSTEM_QUEUE_WAIT), 1),
        };
        let Some(sem) = seats.of(kind) else {
            return Ok(Seat(None));
        };
        let permit = match wait {
            None => sem.clone().try_acquire_owned().ok(),
            Some(w) => tokio::time::timeout(w, sem.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        };
        match permit {
            Some(p) => Ok(Seat(Some(p))),
            None => {
                self.dropped[slot].fetch_add(1, Ordering::Relaxed);
                Err(too_many_requests())
            }
        }
    }

    /// Seats taken now, per lane and kind, for `/metrics`.
    pub fn in_flight(&self) -> [(&'static str, &'static str, usize); 4] {
        let used = |s: &Seats, k: Kind, limit: usize| {
            s.of(k)
                .map(|sem| limit - sem.available_permits())
                .unwrap_or(0)
        };
        let l = self.limits;
        [
            (
                "workload",
                "readOnly",
                used(&self.workload, Kind::ReadOnly, l.readonly),
            ),
            (
                "workload",
                "mutating",
                used(&self.workload, Kind::Mutating, l.mutating),
            ),
            (
                "system",
                "readOnly",
                used(&self.system, Kind::ReadOnly, l.readonly),
            ),
            (
                "system",
                "mutating",
                used(&self.system, Kind::Mutating, l.mutating),
            ),
        ]
    }
}

impl FlowControl {
    /// kube-apiserver's in-flight and dropped-request metrics, with the lane as
    /// `priority_level`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP apiserver_current_inflight_requests Maximal number of currently used inflight request limit of this apiserver per request kind in last second.\n# TYPE apiserver_current_inflight_requests gauge\n",
        );
        for (lane, kind, n) in self.in_flight() {
            let _ = writeln!(
                out,
                "apiserver_current_inflight_requests{{priority_level=\"{lane}\",request_kind=\"{kind}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_dropped_requests_total Number of requests dropped with 'Try again later' response.\n# TYPE apiserver_dropped_requests_total counter\n");
        for (i, lane) in ["workload", "system"].iter().enumerate() {
            let n = self.dropped[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "apiserver_dropped_requests_total{{priority_level=\"{lane}\"}} {n}"
            );
        }
        out
    }
}

/// kube-apiserver's words for it.
pub fn too_many_requests() -> ApiError {
    let mut e = ApiError::new(
        429,
        StatusReason::TooManyRequests,
        "Too many requests, please try again later.",
    );
    e.retry_after_seconds = Some(1);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn lanes() {
        assert_eq!(lane_of(&user("admin", &["system:masters"])), Lane::Exempt);
        assert_eq!(
            lane_of(&user("system:node:n1", &["system:nodes"])),
            Lane::System
        );
        assert_eq!(
            lane_of(&user(
                "system:serviceaccount:kube-system:job-controller",
                &[]
            )),
            Lane::System
        );
        assert_eq!(lane_of(&user("system:kube-scheduler", &[])), Lane::System);
        assert_eq!(
            lane_of(&user("system:serviceaccount:default:default", &[])),
            Lane::Workload
        );
        assert_eq!(lane_of(&user("jane", &["dev"])), Lane::Workload);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("list", "", "/api/v1/pods", None), Kind::ReadOnly);
        assert_eq!(
            kind_of("watch", "", "/api/v1/pods", None),
            Kind::LongRunning
        );
        assert_eq!(kind_of("create", "exec", "/x", None), Kind::LongRunning);
        assert_eq!(kind_of("get", "log", "/x", None), Kind::ReadOnly);
        assert_eq!(
            kind_of("get", "log", "/x", Some("container=a&follow=true")),
            Kind::LongRunning
        );
        assert_eq!(kind_of("patch", "status", "/x", None), Kind::Mutating);
        assert_eq!(kind_of("get", "", "/readyz", None), Kind::LongRunning);
    }

    #[tokio::test]
    async fn users_are_refused_past_their_seats_while_system_keeps_its_own() {
        let fc = FlowControl::new(Limits {
            readonly: 2,
            mutating: 1,
        });
        let a = fc.admit(Lane::Workload, Kind::ReadOnly).await.unwrap();
        let _b = fc.admit(Lane::Workload, Kind::ReadOnly).await.unwrap();
        let e = fc
            .admit(Lane::Workload, Kind::ReadOnly)
            .await
            .err()
            .unwrap();
        assert_eq!((e.code, e.retry_after_seconds), (429, Some(1)));
        // Mutating seats are separate, and so is the system lane.
        let _m = fc.admit(Lane::Workload, Kind::Mutating).await.unwrap();
        let _s = fc.admit(Lane::System, Kind::ReadOnly).await.unwrap();
        let _x = fc.admit(Lane::Exempt, Kind::ReadOnly).await.unwrap();
        let _w = fc.admit(Lane::Workload, Kind::LongRunning).await.unwrap();
        assert_eq!(fc.in_flight()[0].2, 2);
        drop(a);
        fc.admit(Lane::Workload, Kind::ReadOnly).await.unwrap();
        assert_eq!(fc.dropped[0].load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn system_requests_wait_for_a_seat() {
        let fc = Arc::new(FlowControl::new(Limits {
            readonly: 1,
            mutating: 1,
        }));
        let held = fc.admit(Lane::System, Kind::Mutating).await.unwrap();
        let waiter = {
            let fc = fc.clone();
            tokio::spawn(async move { fc.admit(Lane::System, Kind::Mutating).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "the waiting request got no seat");
        let _held = fc.admit(Lane::System, Kind::Mutating).await.unwrap();
        let e = fc.admit(Lane::System, Kind::Mutating).await.err().unwrap();
        assert_eq!(e.code, 429, "past the queue wait");
    }
}
