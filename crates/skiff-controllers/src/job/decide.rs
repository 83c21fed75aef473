//! One sync's decision for a Job, pure over the typed Job and its pods' facts: which
//! results to record, release and count, whether the Job completes or fails, which
//! pods to start or stop, its status, and when to look again.

use super::INDEX;
use super::policy::{FailureAction, backoff, failure_action};
use crate::podfacts::{PodFacts, sort_for_deletion};
use crate::{api_time, chrono_time};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};

pub type Time = chrono::DateTime<chrono::Utc>;

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create: the completion index for Indexed jobs.
    pub create: Vec<Option<i64>>,
    pub delete: Vec<String>,
    /// Pods whose result is durably recorded: their finalizer can go.
    pub release: Vec<String>,
    pub status: JobStatus,
    pub events: Vec<(&'static str, &'static str, String)>,
    /// When to look again (back-off, deadline, TTL), in seconds.
    pub requeue: Option<i64>,
    /// The TTL has run out: delete the Job.
    pub delete_job: bool,
}

impl Plan {
    fn requeue_within(&mut self, secs: i64) {
        self.requeue = Some(self.requeue.map_or(secs, |r| r.min(secs)));
    }
}

/// The Job's spec as a sync reads it, with Kubernetes' defaults.
struct Settings {
    indexed: bool,
    completions: Option<i64>,
    parallelism: i64,
    backoff_limit: i64,
    suspended: bool,
    deadline: Option<i64>,
    ttl: Option<i64>,
    /// Container restarts count as failures.
    on_failure: bool,
}

impl Settings {
    fn of(job: &Job) -> Settings {
        static EMPTY: std::sync::LazyLock<JobSpec> = std::sync::LazyLock::new(Default::default);
        let s = job.spec.as_ref().unwrap_or(&EMPTY);
        let template = s.template.spec.as_ref();
        Settings {
            indexed: s.completion_mode.as_deref() == Some("Indexed"),
            completions: s.completions.map(i64::from),
            parallelism: s.parallelism.map_or(1, i64::from),
            backoff_limit: s.backoff_limit.map_or(6, i64::from),
            suspended: s.suspend == Some(true),
            deadline: s.active_deadline_seconds,
            ttl: s.ttl_seconds_after_finished.map(i64::from),
            on_failure: template.and_then(|t| t.restart_policy.as_deref()) == Some("OnFailure"),
        }
    }
}

fn condition_true(conditions: &[JobCondition], ty: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == ty && c.status == "True")
}

fn conditions(job: &Job) -> &[JobCondition] {
    let status = job.status.as_ref();
    status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[])
}

pub fn is_finished(job: &Job) -> bool {
    let c = conditions(job);
    condition_true(c, "Complete") || condition_true(c, "Failed")
}

fn set_condition(
    conds: &mut Vec<JobCondition>,
    ty: &str,
    (status, reason, message): (&str, &str, &str),
    now: Time,
) {
    let new = JobCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
    };
    match conds.iter_mut().find(|c| c.type_ == ty) {
        Some(c) if c.status == status => {}
        Some(c) => *c = new,
        None => conds.push(new),
    }
}

/// A pod that ended: Succeeded, Failed, or deleted before it could succeed.
fn finished(p: &PodFacts) -> Option<bool> {
    match p.phase() {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if p.deleting() => Some(false),
        _ => None,
    }
}

fn index_of(p: &PodFacts) -> Option<i64> {
    p.annotation(INDEX)?.parse().ok()
}

/// `1,3-5` as Kubernetes writes completedIndexes.
pub fn format_indexes(ix: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let v: Vec<i64> = ix.iter().copied().collect();
    let mut n = 0;
    while n < v.len() {
        let start = v[n];
        let mut end = start;
        while n + 1 < v.len() && v[n + 1] == end + 1 {
            n += 1;
            end = v[n];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        n += 1;
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// Whole seconds until `at`, rounded up: a deadline 0.9 s away has not passed.
fn secs_until(at: Time, now: Time) -> i64 {
    let ms = (at - now).num_milliseconds();
    if ms <= 0 { 0 } else { (ms + 999) / 1000 }
}

fn static_reason(r: &str) -> &'static str {
    match r {
        "BackoffLimitExceeded" => "BackoffLimitExceeded",
        "DeadlineExceeded" => "DeadlineExceeded",
        _ => "PodFailurePolicy",
    }
}

/// The Job's results: counted, recorded in `uncountedTerminatedPods` but not yet
/// counted, and new. A result is recorded before its pod's finalizer goes, and counted
/// once the pod is released, so none is lost or counted twice.
struct Results {
    succeeded: i64,
    failed: i64,
    uncounted_ok: BTreeSet<String>,
    uncounted_failed: BTreeSet<String>,
    completed: BTreeSet<i64>,
    /// (reason, message) of a rule that fails the Job.
    fail_job: Option<(String, String)>,
    /// Pods whose result is durable: their finalizer can go.
    release: Vec<String>,
}

impl Results {
    fn of(job: &Job, cfg: &Settings, pods: &[PodFacts]) -> Results {
        let st = job.status.clone().unwrap_or_default();
        let uncounted = st.uncounted_terminated_pods.unwrap_or_default();
        let set = |l: Option<Vec<String>>| l.into_iter().flatten().collect::<BTreeSet<_>>();
        let mut r = Results {
            succeeded: st.succeeded.map_or(0, i64::from),
            failed: st.failed.map_or(0, i64::from),
            uncounted_ok: set(uncounted.succeeded),
            uncounted_failed: set(uncounted.failed),
            completed: parse_indexes(st.completed_indexes.as_deref().unwrap_or("")),
            fail_job: None,
            release: Vec::new(),
        };
        let recorded: HashSet<String> = r.uncounted().cloned().collect();
        for p in pods.iter().filter(|p| p.has_finalizer(super::TRACKING)) {
            r.record(job, cfg, &recorded, p);
        }
        r.count_released(cfg, &recorded, pods);
        // Indexed completions count when first seen succeeded (the index is known then).
        if cfg.indexed {
            let done = pods.iter().filter(|p| finished(p) == Some(true));
            let in_range = |ix: &i64| cfg.completions.is_some_and(|c| *ix < c);
            r.completed
                .extend(done.filter_map(index_of).filter(in_range));
        }
        r
    }

    fn uncounted(&self) -> impl Iterator<Item = &String> {
        self.uncounted_ok.iter().chain(&self.uncounted_failed)
    }

    /// A tracked pod: a new result is recorded; a recorded one's pod is released.
    fn record(&mut self, job: &Job, cfg: &Settings, recorded: &HashSet<String>, p: &PodFacts) {
        let Some(ok) = finished(p) else { return };
        let (uid, name) = (p.metadata.uid.to_string(), p.metadata.name.to_string());
        if recorded.contains(&uid) {
            // Durable in the status: the finalizer may go now.
            self.release.push(name);
            return;
        }
        if ok {
            if cfg.indexed && index_of(p).is_none_or(|ix| self.completed.contains(&ix)) {
                // A second success for an index, or no index: nothing to count.
                self.release.push(name);
                return;
            }
            self.uncounted_ok.insert(uid);
            return;
        }
        match failure_action(job, p) {
            FailureAction::Ignore => return self.release.push(name),
            FailureAction::FailJob(msg) => {
                self.fail_job
                    .get_or_insert(("PodFailurePolicy".into(), msg));
            }
            FailureAction::Count => {}
        }
        self.uncounted_failed.insert(uid);
    }

    /// Recorded results whose pods are released (or gone) move into the counters.
    fn count_released(&mut self, cfg: &Settings, recorded: &HashSet<String>, pods: &[PodFacts]) {
        let by_uid: HashMap<&str, &PodFacts> = pods.iter().map(|p| (p.metadata.uid, p)).collect();
        let released = |u: &String| {
            recorded.contains(u)
                && by_uid
                    .get(u.as_str())
                    .is_none_or(|p| !p.has_finalizer(super::TRACKING))
        };
        let take = |set: &mut BTreeSet<String>| -> BTreeSet<String> {
            let (done, left) = std::mem::take(set).into_iter().partition(|u| released(u));
            *set = left;
            done
        };
        for u in take(&mut self.uncounted_ok) {
            self.succeeded += 1;
            let index = by_uid.get(u.as_str()).and_then(|p| index_of(p));
            if let Some(ix) = index.filter(|_| cfg.indexed) {
                self.completed.insert(ix);
            }
        }
        self.failed += take(&mut self.uncounted_failed).len() as i64;
    }

    fn total_ok(&self) -> i64 {
        self.succeeded + self.uncounted_ok.len() as i64
    }
}

/// When the last of the failed pods failed (the back-off counts from there).
fn last_failure(pods: &[PodFacts]) -> Option<Time> {
    let failed = pods.iter().filter(|p| finished(p) == Some(false));
    failed
        .filter_map(|p| p.finished_at().or_else(|| p.deletion_time()))
        .max()
}

/// One sync of `job` over its pods.
pub fn reconcile(job: &Job, pods: &[&Value], now: Time) -> Plan {
    let cfg = Settings::of(job);
    let facts: Vec<PodFacts> = pods.iter().map(|p| PodFacts::of(p)).collect();
    let mut results = Results::of(job, &cfg, &facts);
    let mut total_failed = results.failed + results.uncounted_failed.len() as i64;
    let active: Vec<usize> = (0..facts.len())
        .filter(|i| finished(&facts[*i]).is_none())
        .collect();
    if cfg.on_failure {
        let restarts = active.iter().flat_map(|i| facts[*i].container_statuses());
        total_failed += restarts.map(|c| c.restart_count).sum::<i64>();
    }
    let mut plan = Plan {
        release: std::mem::take(&mut results.release),
        ..Default::default()
    };
    let mut status = job.status.clone().unwrap_or_default();
    let finished_before = is_finished(job);
    if !finished_before && !cfg.suspended && status.start_time.is_none() {
        status.start_time = Some(api_time(now));
    }
    let start = status.start_time.as_ref().map(chrono_time);
    let mut fail_job = results.fail_job.take();
    if !finished_before && fail_job.is_none() {
        fail_job = limits(&cfg, total_failed, start, now, &mut plan);
    }
    let complete = match (cfg.indexed, cfg.completions) {
        (true, Some(c)) => results.completed.len() as i64 >= c,
        (false, Some(c)) => results.total_ok() >= c,
        (_, None) => results.total_ok() > 0 && active.is_empty(),
    };
    let mut conds = status.conditions.take().unwrap_or_default();
    let all_active = || -> Vec<String> {
        let names = active.iter().map(|i| facts[*i].metadata.name.to_string());
        names.collect()
    };
    if finished_before {
        // Only the pods' results are still settled (finalizers above).
    } else if let Some((reason, message)) = fail_job {
        plan.delete = all_active();
        let why = ("True", reason.as_str(), message.as_str());
        set_condition(&mut conds, "FailureTarget", why, now);
        set_condition(&mut conds, "Failed", why, now);
        plan.events
            .push(("Warning", static_reason(&reason), message));
    } else if complete {
        plan.delete = all_active();
        let why = (
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        set_condition(&mut conds, "SuccessCriteriaMet", why, now);
        set_condition(&mut conds, "Complete", why, now);
        status.completion_time = Some(api_time(now));
        plan.events
            .push(("Normal", "Completed", "Job completed".into()));
    } else if cfg.suspended {
        plan.delete = all_active();
        if !condition_true(conditions(job), "Suspended") {
            let why = ("True", "JobSuspended", "Job suspended");
            set_condition(&mut conds, "Suspended", why, now);
            plan.events
                .push(("Normal", "Suspended", "Job suspended".into()));
        }
    } else {
        if condition_true(conditions(job), "Suspended") {
            let why = ("False", "JobResumed", "Job resumed");
            set_condition(&mut conds, "Suspended", why, now);
            plan.events
                .push(("Normal", "Resumed", "Job resumed".into()));
        }
        let active_pods: Vec<&Value> = active.iter().map(|i| pods[*i]).collect();
        let wait = last_failure(&facts)
            .map(|t| secs_until(t + chrono::Duration::seconds(backoff(total_failed)), now));
        let want = Want {
            cfg: &cfg,
            results: &results,
            total_failed,
            backoff_wait: wait.unwrap_or(0),
        };
        want.scale(&active_pods, &mut plan);
    }
    let active_left = active.len() as i64 - plan.delete.len() as i64;
    let ready = active
        .iter()
        .filter(|i| facts[**i].condition("Ready", "True"))
        .count();
    let terminating = facts
        .iter()
        .filter(|p| p.deleting() && matches!(p.phase(), "Pending" | "Running"))
        .count();
    status.active = Some(crate::int32(active_left));
    status.ready = Some(crate::int32(ready));
    status.terminating = Some(crate::int32(terminating));
    status.succeeded = Some(crate::int32(results.succeeded));
    status.failed = Some(crate::int32(results.failed));
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(results.uncounted_ok.iter().cloned().collect()),
        failed: Some(results.uncounted_failed.iter().cloned().collect()),
    });
    if cfg.indexed {
        status.completed_indexes = Some(format_indexes(&results.completed));
    }
    let failed_now = conds.iter().any(|c| c.type_ == "Failed");
    status.conditions = (!conds.is_empty()).then_some(conds);
    if finished_before || complete || failed_now {
        expire(&cfg, &status, now, &mut plan);
    }
    plan.status = status;
    plan
}

/// The backoff limit and the active deadline: the (reason, message) that fails the
/// Job, if one does; a deadline still ahead is looked at again when it comes.
fn limits(
    cfg: &Settings,
    total_failed: i64,
    start: Option<Time>,
    now: Time,
    plan: &mut Plan,
) -> Option<(String, String)> {
    if total_failed > cfg.backoff_limit {
        return Some((
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into(),
        ));
    }
    let (Some(ads), Some(s)) = (cfg.deadline, start) else {
        return None;
    };
    if cfg.suspended {
        return None;
    }
    let deadline = s + chrono::Duration::seconds(ads);
    if deadline <= now {
        return Some((
            "DeadlineExceeded".into(),
            "Job was active longer than specified deadline".into(),
        ));
    }
    plan.requeue = Some(secs_until(deadline, now));
    None
}

/// A finished Job is deleted once `ttlSecondsAfterFinished` has passed since it
/// finished (it keeps counting what is left meanwhile).
fn expire(cfg: &Settings, status: &JobStatus, now: Time, plan: &mut Plan) {
    let failed_at = || {
        let conds = status.conditions.as_deref().unwrap_or(&[]);
        let failed = conds
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True");
        failed?.last_transition_time.as_ref().map(chrono_time)
    };
    let done_at = status
        .completion_time
        .as_ref()
        .map(chrono_time)
        .or_else(failed_at);
    let (Some(ttl), Some(t)) = (cfg.ttl, done_at) else {
        return;
    };
    let left = secs_until(t + chrono::Duration::seconds(ttl), now);
    if left <= 0 {
        plan.delete_job = true;
    } else {
        plan.requeue_within(left);
    }
}

/// How many pods a running Job wants, and which to start or stop to get there.
struct Want<'a> {
    cfg: &'a Settings,
    results: &'a Results,
    total_failed: i64,
    /// Seconds until the back-off after the last failure has passed.
    backoff_wait: i64,
}

impl Want<'_> {
    fn active(&self) -> i64 {
        let (cfg, done) = (self.cfg, self.results.completed.len() as i64);
        let want = match cfg.completions {
            Some(c) if cfg.indexed => cfg.parallelism.min(c - done),
            Some(c) => cfg.parallelism.min(c - self.results.total_ok()),
            None if self.results.total_ok() > 0 => 0,
            None => cfg.parallelism,
        };
        want.max(0)
    }

    fn scale(&self, active: &[&Value], plan: &mut Plan) {
        let (want, have) = (self.active(), active.len() as i64);
        if have > want {
            let mut a = active.to_vec();
            sort_for_deletion(&mut a);
            let surplus = a.iter().take((have - want) as usize);
            plan.delete = surplus
                .map(|p| PodFacts::of(p).metadata.name.to_string())
                .collect();
            return;
        }
        if have == want {
            return;
        }
        // Replacements wait out the back-off after failures.
        if self.backoff_wait > 0 && self.total_failed > 0 {
            plan.requeue_within(self.backoff_wait);
            return;
        }
        let missing = (want - have) as usize;
        if !self.cfg.indexed {
            plan.create = vec![None; missing];
            return;
        }
        let busy: HashSet<i64> = active
            .iter()
            .filter_map(|p| index_of(&PodFacts::of(p)))
            .collect();
        let free = (0..self.cfg.completions.unwrap_or(0))
            .filter(|ix| !self.results.completed.contains(ix) && !busy.contains(ix));
        plan.create = free.take(missing).map(Some).collect();
    }
}
