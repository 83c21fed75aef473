//! The CronJob controller, as Kubernetes' (v2): on each schedule time (standard cron,
//! `@hourly`-style macros, `timeZone`) a Job named `<cronjob>-<minutes since epoch>`;
//! `startingDeadlineSeconds`, `concurrencyPolicy` Allow/Forbid/Replace, `suspend`, the
//! active list (only Jobs the controller made; others are reported), lastScheduleTime/
//! lastSuccessfulTime, the success and failure history limits, and Kubernetes' events
//! with their reasons and messages (a schedule that can never fire is InvalidSchedule).
//!
//! Time comes from a [`Clock`]: the real one, or for tests one that runs faster, so a
//! `*/1 * * * *` schedule fires every second instead of every minute.

use crate::control;
use crate::owner;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::Change;
use skiff_validation::cron::{Schedule, time_zone};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Kubernetes stops counting missed start times past this.
const MISSED_CAP: usize = 100;

/// The controller's time: wall time, or wall time sped up `rate` times from the start
/// (tests only: `--cronjob-clock-rate`).
#[derive(Debug, Clone)]
pub struct Clock {
    rate: f64,
    real0: Instant,
    wall0: DateTime<Utc>,
}

impl Clock {
    pub fn real() -> Clock {
        Clock::with_rate(1.0)
    }

    pub fn with_rate(rate: f64) -> Clock {
        Clock {
            rate: rate.max(1.0),
            real0: Instant::now(),
            wall0: Utc::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = self.real0.elapsed().as_secs_f64() * self.rate;
        self.wall0 + chrono::Duration::milliseconds((elapsed * 1000.0) as i64)
    }

    /// How long to really wait for `d` of this clock's time.
    pub fn real_wait(&self, d: chrono::Duration) -> Duration {
        Duration::from_secs_f64((d.num_milliseconds().max(0) as f64 / 1000.0) / self.rate)
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

/// How a Job ended, if it did.
fn job_finished(j: &Value) -> Option<&'static str> {
    let conds = j["status"]["conditions"].as_array()?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conds
            .iter()
            .any(|c| c["type"] == *t && c["status"] == "True")
    })
}

/// The Job for `scheduled`.
pub fn job_for(cj: &Value, scheduled: DateTime<Utc>, tz: chrono_tz::Tz) -> Value {
    let t = &cj["spec"]["jobTemplate"];
    let mut meta = json!({
        "name": format!("{}-{}", name(cj), scheduled.timestamp() / 60),
        "namespace": cj["metadata"]["namespace"],
        "ownerReferences": [owner::controller_ref("batch/v1", "CronJob", cj)],
        "annotations": {},
    });
    if t["metadata"]["labels"].is_object() {
        meta["labels"] = t["metadata"]["labels"].clone();
    }
    if let Some(a) = t["metadata"]["annotations"].as_object() {
        meta["annotations"] = json!(a);
    }
    meta["annotations"][SCHEDULED_AT] = json!(
        scheduled
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": t["spec"]})
}

/// An event to record on the CronJob: type, reason, message.
pub type Event = (&'static str, &'static str, String);

#[derive(Debug, Default)]
pub struct Plan {
    pub create: Option<Value>,
    /// Jobs to delete (finished ones past the history limits, or active ones a Replace
    /// run supersedes); their events follow the calls.
    pub delete: Vec<String>,
    pub status: Value,
    /// Events the decision itself gives (not those of creating or deleting).
    pub events: Vec<Event>,
    /// The next schedule time, to look again then.
    pub next: Option<DateTime<Utc>>,
}

fn reference(j: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"], "namespace": j["metadata"]["namespace"], "uid": j["metadata"]["uid"], "resourceVersion": j["metadata"]["resourceVersion"]})
}

fn uid(j: &Value) -> &str {
    j["metadata"]["uid"].as_str().unwrap_or("")
}

/// The CronJob's `status.active` references.
fn listed(cj: &Value) -> Vec<Value> {
    cj["status"]["active"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether a running Job of `cj` is missing from its active list, which the cached
/// CronJob may simply not show yet (the caller then reads it afresh, as Kubernetes does).
pub fn has_unlisted_running(cj: &Value, jobs: &[&Value]) -> bool {
    let active = listed(cj);
    jobs.iter()
        .any(|j| job_finished(j).is_none() && !active.iter().any(|r| r["uid"] == uid(j)))
}

/// The active list after looking at the Jobs, as Kubernetes keeps it: finished Jobs
/// leave it (SawCompletedJob), gone ones too (MissingJob); a running Job it does not
/// name is reported (UnexpectedJob) but not taken in. Finished Jobs also move
/// lastSuccessfulTime.
fn track(cj: &Value, jobs: &[&Value], status: &mut Value, events: &mut Vec<Event>) -> Vec<Value> {
    let active = listed(cj);
    let is_listed = |j: &Value| active.iter().any(|r| r["uid"] == uid(j));
    for j in jobs {
        match job_finished(j) {
            None if !is_listed(j) => events.push((
                "Warning",
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    name(j)
                ),
            )),
            None => {}
            Some(how) => {
                if is_listed(j) {
                    events.push((
                        "Normal",
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: {how}", name(j)),
                    ));
                }
                if how == "Complete"
                    && let Some(t) = parse(&j["status"]["completionTime"])
                    && parse(&status["lastSuccessfulTime"]).is_none_or(|l| t > l)
                {
                    status["lastSuccessfulTime"] = json!(ts(t));
                }
            }
        }
    }
    active
        .into_iter()
        .filter(|r| match jobs.iter().find(|j| uid(j) == r["uid"]) {
            Some(j) => job_finished(j).is_none(),
            None => {
                events.push((
                    "Normal",
                    "MissingJob",
                    format!(
                        "Active job went missing: {}",
                        r["name"].as_str().unwrap_or("")
                    ),
                ));
                false
            }
        })
        .collect()
}

/// Finished Jobs past `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`, the
/// earliest started first.
fn past_history_limits(cj: &Value, jobs: &[&Value]) -> Vec<String> {
    let mut out = Vec::new();
    for (how, limit_field) in [
        ("Complete", "successfulJobsHistoryLimit"),
        ("Failed", "failedJobsHistoryLimit"),
    ] {
        let Some(limit) = cj["spec"][limit_field].as_i64() else {
            continue;
        };
        let mut done: Vec<&&Value> = jobs
            .iter()
            .filter(|j| {
                job_finished(j) == Some(how) && j["metadata"]["deletionTimestamp"].is_null()
            })
            .collect();
        done.sort_by_key(|j| {
            (
                j["status"]["startTime"].as_str().unwrap_or("").to_string(),
                j["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        });
        let excess = done.len() as i64 - limit.max(0);
        out.extend(
            done.iter()
                .take(excess.max(0) as usize)
                .map(|j| name(j).to_string()),
        );
    }
    out
}

/// Kubernetes' test for a schedule that parses but cannot fire (`59 23 31 2 *`): past
/// its first time after `earliest` (or without one) there must be a second.
pub fn never_fires(
    schedule: &Schedule,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> bool {
    match schedule.next_after(earliest, tz) {
        None => true,
        Some(first) if first > now => false,
        Some(first) => schedule.next_after(first, tz).is_none(),
    }
}

/// Go's `time.RFC1123Z`, the form of a missed start time in Kubernetes' message.
fn rfc1123z(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// `spec.timeZone`: UTC when unset; an unknown one stops the CronJob (UnknownTimeZone).
fn zone(cj: &Value) -> Result<chrono_tz::Tz, Event> {
    let Some(z) = cj["spec"]["timeZone"].as_str() else {
        return Ok(chrono_tz::UTC);
    };
    time_zone(z).map_err(|e| {
        (
            "Warning",
            "UnknownTimeZone",
            format!("invalid timeZone: {z:?}: {e}"),
        )
    })
}

/// One sync of `cj` over the Jobs it owns.
pub fn reconcile(cj: &Value, jobs: &[&Value], now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let mut status = cj["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut active = track(cj, jobs, &mut status, &mut plan.events);
    plan.delete = past_history_limits(cj, jobs);
    if cj["metadata"]["deletionTimestamp"].is_null() {
        start(cj, jobs, &mut active, now, &mut status, &mut plan);
    }
    if active.is_empty() {
        status.as_object_mut().map(|m| m.remove("active"));
    } else {
        status["active"] = json!(active);
    }
    plan.status = status;
    plan
}

/// The schedule's part, in Kubernetes' order of checks: time zone, suspension, the
/// schedule itself, missed times, the starting deadline, a run already made, then the
/// concurrency policy.
fn start(
    cj: &Value,
    jobs: &[&Value],
    active: &mut Vec<Value>,
    now: DateTime<Utc>,
    status: &mut Value,
    plan: &mut Plan,
) {
    let tz = match zone(cj) {
        Ok(tz) => tz,
        Err(e) => return plan.events.push(e),
    };
    if cj["spec"]["suspend"] == true {
        return;
    }
    let text = cj["spec"]["schedule"].as_str().unwrap_or("");
    let schedule = match Schedule::parse(text) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("unparseable schedule: {text:?} : {e}");
            return plan.events.push(("Warning", "UnparseableSchedule", msg));
        }
    };
    let mut earliest = parse(&status["lastScheduleTime"])
        .or_else(|| parse(&cj["metadata"]["creationTimestamp"]))
        .unwrap_or(now);
    let deadline = cj["spec"]["startingDeadlineSeconds"].as_i64();
    if let Some(d) = deadline {
        earliest = earliest.max(now - chrono::Duration::seconds(d));
    }
    if never_fires(&schedule, earliest, now, tz) {
        let msg = format!(
            "invalid schedule: {text} : time difference between two schedules is less than 1 second"
        );
        return plan.events.push(("Warning", "InvalidSchedule", msg));
    }
    plan.next = schedule.next_after(now, tz);
    let (recent, missed) = schedule.most_recent(earliest, now, tz, MISSED_CAP);
    let Some(scheduled) = recent else { return };
    if missed > MISSED_CAP {
        plan.events.push(("Warning", "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into()));
    }
    if deadline.is_some_and(|d| scheduled + chrono::Duration::seconds(d) < now) {
        let msg = format!(
            "Missed scheduled time to start a job: {}",
            rfc1123z(scheduled)
        );
        return plan.events.push(("Warning", "MissSchedule", msg));
    }
    let job = job_for(cj, scheduled, tz);
    if jobs.iter().any(|j| name(j) == name(&job)) {
        return; // Already started for this time.
    }
    match cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            return plan.events.push(("Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()));
        }
        "Replace" => {
            plan.delete.extend(
                active
                    .drain(..)
                    .filter_map(|r| r["name"].as_str().map(str::to_string)),
            );
        }
        _ => {}
    }
    status["lastScheduleTime"] = json!(ts(scheduled));
    plan.create = Some(job);
}

struct State {
    cronjobs: HashMap<String, Arc<Value>>,
    /// Jobs with a CronJob controller, by the CronJob's uid, then name.
    jobs: HashMap<String, HashMap<String, Arc<Value>>>,
}

fn owner_uid(j: &Value) -> Option<String> {
    owner::controller_of(j)
        .filter(|c| c.kind == "CronJob")
        .map(|c| c.uid)
}

/// Runs the controller until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/batch/v1/cronjobs"),
        informers.watch("/apis/batch/v1/jobs"),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "cronjob-controller"),
        client,
        clock,
        st: State {
            cronjobs: HashMap::new(),
            jobs: HashMap::new(),
        },
    };
    control::run(controller, sources, shutdown).await
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    clock: Clock,
    st: State,
}

impl control::Reconcile for Controller {
    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
        &mut self.st.cronjobs
    }

    fn observe(&mut self, _jobs: usize, c: Change, dirty: &mut control::Dirty) {
        job_change(&mut self.st, dirty, c);
    }

    async fn sync(&mut self, _key: &str, cj: Option<Arc<Value>>) -> Option<Duration> {
        let now = self.clock.now();
        let next = sync(&self.client, &self.recorder, &mut self.st, &*cj?, now).await?;
        Some(self.clock.real_wait(next - now))
    }
}

fn job_change(st: &mut State, dirty: &mut HashSet<String>, c: Change) {
    let mut touch = |st: &State, j: &Value| {
        if let Some(u) = owner_uid(j)
            && let Some((k, _)) = st
                .cronjobs
                .iter()
                .find(|(_, cj)| cj["metadata"]["uid"] == u.as_str())
        {
            dirty.insert(k.clone());
        }
    };
    match c {
        Change::Reset(items) => {
            st.jobs.clear();
            for j in items {
                if let Some(u) = owner_uid(&j) {
                    st.jobs
                        .entry(u)
                        .or_default()
                        .insert(name(&j).to_string(), j);
                }
            }
            dirty.extend(st.cronjobs.keys().cloned());
        }
        Change::Apply(j) => {
            let Some(u) = owner_uid(&j) else { return };
            touch(st, &j);
            st.jobs
                .entry(u)
                .or_default()
                .insert(name(&j).to_string(), j);
        }
        Change::Delete(j) => {
            let Some(u) = owner_uid(&j) else { return };
            touch(st, &j);
            if let Some(m) = st.jobs.get_mut(&u) {
                m.remove(name(&j));
            }
        }
    }
}

/// GET of `path` (the apiserver's current object, not the cached one).
async fn get(client: &kube::Client, path: String) -> Result<Value, kube::Error> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("valid request");
    client.request::<Value>(req).await
}

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    cached: &Value,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let ns = cached["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let jobs: Vec<Arc<Value>> = st
        .jobs
        .get(uid(cached))
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let refs: Vec<&Value> = jobs.iter().map(|j| &**j).collect();
    // A Job just made shows up before the status naming it: read the CronJob afresh
    // before calling the Job unexpected.
    let fresh = if has_unlisted_running(cached, &refs) {
        let path = format!("/apis/batch/v1/namespaces/{ns}/cronjobs/{}", name(cached));
        get(client, path)
            .await
            .ok()
            .filter(|f| uid(f) == uid(cached))
    } else {
        None
    };
    let cj = fresh.as_ref().unwrap_or(cached);
    let mut plan = reconcile(cj, &refs, now);
    for (ty, reason, msg) in &plan.events {
        recorder.record(cj, ty, reason, msg.clone());
    }
    for n in &plan.delete {
        delete_job(client, recorder, st, cj, n).await;
    }
    if let Some(job) = plan.create.take() {
        match create_job(client, st, cj, &job).await {
            Created::New(made) => {
                let msg = format!("Created job {}", name(&made));
                recorder.record(cj, "Normal", "SuccessfulCreate", msg);
                add_active(&mut plan.status, &made);
            }
            Created::Ours(made) => add_active(&mut plan.status, &made),
            // Someone else's Job by that name: the time stays unrecorded, as in Kubernetes.
            Created::Foreign => match &cj["status"]["lastScheduleTime"] {
                Value::Null => {
                    if let Some(m) = plan.status.as_object_mut() {
                        m.remove("lastScheduleTime");
                    }
                }
                t => plan.status["lastScheduleTime"] = t.clone(),
            },
            Created::Failed(e) => {
                let msg = format!("Error creating job: {e}");
                recorder.record(cj, "Warning", "FailedCreate", msg);
                return Some(now + chrono::Duration::seconds(10));
            }
        }
    }
    owner::put_status(client, "batch/v1", "cronjobs", cj, plan.status.clone()).await;
    plan.next
}

fn add_active(status: &mut Value, job: &Value) {
    let mut active = status["active"].as_array().cloned().unwrap_or_default();
    if !active.iter().any(|r| r["uid"] == uid(job)) {
        active.push(reference(job));
    }
    status["active"] = json!(active);
}

/// Deletes Job `n` (its pods in the background), with Kubernetes' events.
async fn delete_job(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    cj: &Value,
    n: &str,
) {
    let ns = cj["metadata"]["namespace"].as_str().unwrap_or("");
    let body =
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
    let path = format!("/apis/batch/v1/namespaces/{ns}/jobs/{n}");
    match owner::send(
        client,
        http::Method::DELETE,
        path,
        "application/json",
        &body,
    )
    .await
    {
        Ok(_) => {
            // Gone now: the watch may tell later, and a Job it still shows would look
            // unexpected.
            if let Some(m) = st.jobs.get_mut(uid(cj)) {
                m.remove(n);
            }
            recorder.record(cj, "Normal", "SuccessfulDelete", format!("Deleted job {n}"));
        }
        Err(e) => recorder.record(cj, "Warning", "FailedDelete", format!("Deleted job: {e}")),
    }
}

enum Created {
    New(Value),
    /// Made already by this CronJob (a restart between creating and recording).
    Ours(Value),
    /// The name is taken by a Job of someone else's.
    Foreign,
    Failed(kube::Error),
}

async fn create_job(client: &kube::Client, st: &mut State, cj: &Value, job: &Value) -> Created {
    let ns = cj["metadata"]["namespace"].as_str().unwrap_or("");
    let base = format!("/apis/batch/v1/namespaces/{ns}/jobs");
    let made = match owner::send(
        client,
        http::Method::POST,
        base.clone(),
        "application/json",
        job,
    )
    .await
    {
        Ok(made) => Created::New(made),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            match get(client, format!("{base}/{}", name(job))).await {
                Ok(j) if owner_uid(&j).as_deref() == Some(uid(cj)) => Created::Ours(j),
                Ok(_) => Created::Foreign,
                Err(e) => Created::Failed(e),
            }
        }
        Err(e) => Created::Failed(e),
    };
    if let Created::New(j) | Created::Ours(j) = &made {
        st.jobs
            .entry(uid(cj).to_string())
            .or_default()
            .insert(name(j).to_string(), Arc::new(j.clone()));
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cj(spec: Value) -> Value {
        let mut c = json!({"metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {}});
        for (k, v) in spec.as_object().unwrap() {
            c["spec"][k] = v.clone();
        }
        c
    }

    fn job(name: &str, finished: Option<&str>, start: &str) -> Value {
        let mut j = json!({"metadata": {"name": name, "uid": format!("{name}-uid"), "namespace": "default", "creationTimestamp": start}, "status": {"startTime": start}});
        if let Some(how) = finished {
            j["status"]["conditions"] = json!([{"type": how, "status": "True"}]);
            j["status"]["completionTime"] = json!(start);
        }
        j
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn fires_once_per_schedule_time() {
        let c = cj(json!({}));
        let p = reconcile(&c, &[], t("2026-01-01T00:02:30Z"));
        let j = p.create.expect("a job");
        // The most recent time only, named by its minute.
        assert_eq!(
            j["metadata"]["name"],
            format!("tick-{}", t("2026-01-01T00:02:00Z").timestamp() / 60)
        );
        assert_eq!(
            j["metadata"]["annotations"][SCHEDULED_AT],
            "2026-01-01T00:02:00Z"
        );
        assert_eq!(j["metadata"]["labels"]["app"], "tick");
        assert_eq!(p.status["lastScheduleTime"], "2026-01-01T00:02:00Z");
        assert_eq!(p.next, Some(t("2026-01-01T00:03:00Z")));
        // Already made: nothing more.
        let mut made = j.clone();
        made["metadata"]["uid"] = json!("j-uid");
        let mut c2 = c.clone();
        c2["status"] = p.status.clone();
        add_active(&mut c2["status"], &made);
        let p2 = reconcile(&c2, &[&made], t("2026-01-01T00:02:40Z"));
        assert!(
            p2.create.is_none() && p2.events.is_empty(),
            "{:?}",
            p2.events
        );
        assert_eq!(p2.status["active"][0]["name"], made["metadata"]["name"]);
    }

    #[test]
    fn concurrency_policies_and_deadlines() {
        let running = job("tick-1", None, "2026-01-01T00:01:00Z");
        let mut c = cj(json!({"concurrencyPolicy": "Forbid"}));
        c["status"]["lastScheduleTime"] = json!("2026-01-01T00:01:00Z");
        add_active(&mut c["status"], &running);
        let p = reconcile(&c, &[&running], t("2026-01-01T00:02:05Z"));
        assert!(p.create.is_none());
        assert!(p.events.iter().any(|e| e.1 == "JobAlreadyActive"));
        c["spec"]["concurrencyPolicy"] = json!("Replace");
        let p = reconcile(&c, &[&running], t("2026-01-01T00:02:05Z"));
        assert!(p.create.is_some());
        assert_eq!(p.delete, vec!["tick-1"]);
        c["spec"]["concurrencyPolicy"] = json!("Allow");
        c["spec"]["startingDeadlineSeconds"] = json!(10);
        let p = reconcile(&c, &[&running], t("2026-01-01T00:02:30Z"));
        assert!(p.create.is_none(), "too late to start");
        c["spec"]["suspend"] = json!(true);
        assert!(
            reconcile(&c, &[], t("2026-01-01T00:05:00Z"))
                .create
                .is_none()
        );
    }

    #[test]
    fn history_limits_and_time_zones() {
        let c = cj(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0, "suspend": true}),
        );
        let a = job("a", Some("Complete"), "2026-01-01T00:01:00Z");
        let b = job("b", Some("Complete"), "2026-01-01T00:02:00Z");
        let f = job("f", Some("Failed"), "2026-01-01T00:03:00Z");
        let mut p = reconcile(&c, &[&b, &a, &f], t("2026-01-01T00:04:00Z"));
        p.delete.sort();
        assert_eq!(p.delete, vec!["a", "f"]);
        assert_eq!(p.status["lastSuccessfulTime"], "2026-01-01T00:02:00Z");
        let mut c = cj(json!({"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}));
        c["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        let p = reconcile(&c, &[], t("2026-01-01T08:30:00Z"));
        let j = p.create.expect("09:00 Berlin is 08:00 UTC");
        assert_eq!(
            j["metadata"]["annotations"][SCHEDULED_AT],
            "2026-01-01T09:00:00+01:00"
        );
    }

    fn reasons(p: &Plan) -> Vec<(&str, &str, &str)> {
        p.events
            .iter()
            .map(|(t, r, m)| (*t, *r, m.as_str()))
            .collect()
    }

    #[test]
    fn a_schedule_that_never_fires_is_invalid() {
        let c = cj(json!({"schedule": "59 23 31 2 *"}));
        let p = reconcile(&c, &[], t("2026-03-01T00:00:00Z"));
        assert!(p.create.is_none() && p.next.is_none());
        assert_eq!(
            reasons(&p),
            [(
                "Warning",
                "InvalidSchedule",
                "invalid schedule: 59 23 31 2 * : time difference between two schedules is less than 1 second"
            )]
        );
        // Suspended, Kubernetes does not look at the schedule.
        let mut s = c.clone();
        s["spec"]["suspend"] = json!(true);
        assert!(
            reconcile(&s, &[], t("2026-03-01T00:00:00Z"))
                .events
                .is_empty()
        );
        // Rare but real (leap days): fine.
        let utc = chrono_tz::UTC;
        let leap = Schedule::parse("0 0 29 2 *").unwrap();
        assert!(!never_fires(
            &leap,
            t("2026-01-01T00:00:00Z"),
            t("2026-03-01T00:00:00Z"),
            utc
        ));
    }

    #[test]
    fn the_active_list_is_the_controllers_own() {
        let mine = job("tick-1", None, "2026-01-01T00:01:00Z");
        let by_hand = job("by-hand", None, "2026-01-01T00:01:10Z");
        let mut c = cj(json!({"concurrencyPolicy": "Forbid"}));
        c["status"]["lastScheduleTime"] = json!("2026-01-01T00:01:00Z");
        add_active(&mut c["status"], &mine);
        add_active(
            &mut c["status"],
            &job("tick-0", None, "2026-01-01T00:00:00Z"),
        );
        assert!(has_unlisted_running(&c, &[&mine, &by_hand]));
        let p = reconcile(&c, &[&mine, &by_hand], t("2026-01-01T00:01:30Z"));
        assert_eq!(
            reasons(&p),
            [
                (
                    "Warning",
                    "UnexpectedJob",
                    "Saw a job that the controller did not create or forgot: by-hand"
                ),
                ("Normal", "MissingJob", "Active job went missing: tick-0"),
            ]
        );
        let names: Vec<&Value> = p.status["active"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["name"])
            .collect();
        assert_eq!(names, ["tick-1"]);
        // Finished: out of the list, once.
        let done = job("tick-1", Some("Complete"), "2026-01-01T00:01:00Z");
        let p = reconcile(&c, &[&done], t("2026-01-01T00:01:30Z"));
        assert_eq!(
            p.events[0].2,
            "Saw completed job: tick-1, condition: Complete"
        );
        assert!(p.status["active"].is_null());
    }

    #[test]
    fn missed_times_and_zones_in_kubernetes_words() {
        // Created a day ago, never run: far more than 100 minutes missed.
        let p = reconcile(&cj(json!({})), &[], t("2026-01-02T00:00:30Z"));
        assert_eq!(
            reasons(&p),
            [(
                "Warning",
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            )]
        );
        assert!(p.create.is_some(), "the latest still starts");
        assert_eq!(
            rfc1123z(t("2026-01-05T09:03:00Z")),
            "Mon, 05 Jan 2026 09:03:00 +0000"
        );
        let p = reconcile(
            &cj(json!({"timeZone": "Mars/Olympus"})),
            &[],
            t("2026-01-01T00:05:00Z"),
        );
        assert!(p.create.is_none());
        assert_eq!(
            reasons(&p),
            [(
                "Warning",
                "UnknownTimeZone",
                "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus"
            )]
        );
    }
}
