//! Whether the store takes writes, as `/readyz` reports it.
//!
//! A nearly full disk takes small writes into pages SQLite already holds while
//! larger ones fail, so "the last write's outcome" flaps between ready and not.
//! A failure is therefore held until a write has succeeded and none has failed
//! for [`HOLD`], as readiness should not flap under a load balancer.

use std::time::{Duration, Instant};

/// How long writes must go without a failure before readiness comes back.
pub const HOLD: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct WriteHealth {
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Failure {
    why: String,
    at: Instant,
    succeeded_since: bool,
}

impl WriteHealth {
    pub fn failed(&mut self, why: String, now: Instant) {
        self.failure = Some(Failure {
            why,
            at: now,
            succeeded_since: false,
        });
    }

    pub fn succeeded(&mut self, now: Instant) {
        if let Some(f) = &mut self.failure {
            f.succeeded_since = true;
            if now.duration_since(f.at) >= HOLD {
                self.failure = None;
            }
        }
    }

    /// Why writes are failing, while the last failure is held.
    pub fn failure(&self, now: Instant) -> Option<String> {
        let f = self.failure.as_ref()?;
        let recovered = f.succeeded_since && now.duration_since(f.at) >= HOLD;
        (!recovered).then(|| f.why.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_held_until_writes_succeed_for_the_hold() {
        let t0 = Instant::now();
        let mut h = WriteHealth::default();
        assert_eq!(h.failure(t0), None);
        h.failed("disk is full".into(), t0);
        // A small write that fits still leaves the failure standing.
        h.succeeded(t0 + Duration::from_secs(1));
        assert_eq!(
            h.failure(t0 + Duration::from_secs(2)).as_deref(),
            Some("disk is full")
        );
        // Without a success, time alone does not clear it.
        let mut stuck = WriteHealth::default();
        stuck.failed("disk is full".into(), t0);
        assert!(stuck.failure(t0 + HOLD * 3).is_some());
        // A later failure starts the hold again.
        h.failed("disk is full again".into(), t0 + Duration::from_secs(5));
        h.succeeded(t0 + Duration::from_secs(6));
        assert!(h.failure(t0 + HOLD + Duration::from_secs(1)).is_some());
        assert_eq!(h.failure(t0 + HOLD + Duration::from_secs(5)), None);
        // A success past the hold forgets the failure for good.
        h.succeeded(t0 + HOLD + Duration::from_secs(6));
        assert!(h.failure.is_none());
    }
}
