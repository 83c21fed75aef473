//! The CronJob controller, as Kubernetes' (v2): on each schedule time (standard cron,
//! `@hourly`-style macros, `timeZone`) a Job named `<cronjob>-<minutes since epoch>`;
//! `startingDeadlineSeconds`, `concurrencyPolicy` Allow/Forbid/Replace, `suspend`, the
//! active list (only Jobs the controller made; others are reported), lastScheduleTime/
//! lastSuccessfulTime, the success and failure history limits, and Kubernetes' events
//! with their reasons and messages (a schedule that can never fire is InvalidSchedule).
//!
//! Time comes from a [`Clock`]: the real one, or for tests one that runs faster, so a
//! `*/1 * * * *` schedule fires every second instead of every minute.

use crate::claim::OwnerKind;
use crate::control;
use crate::owner;
use crate::{api_time, chrono_time};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use skiff_validation::cron::{Schedule, time_zone};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Kubernetes stops counting missed start times past this.
const MISSED_CAP: usize = 100;

const KIND: OwnerKind = OwnerKind {
    api_version: "batch/v1",
    kind: "CronJob",
    plural: "cronjobs",
};

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

fn name(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

fn uid(m: &ObjectMeta) -> &str {
    m.uid.as_deref().unwrap_or("")
}

fn spec(cj: &CronJob) -> &CronJobSpec {
    static EMPTY: std::sync::LazyLock<CronJobSpec> = std::sync::LazyLock::new(Default::default);
    cj.spec.as_ref().unwrap_or(&EMPTY)
}

/// How a Job ended, if it did.
fn job_finished(j: &Job) -> Option<&'static str> {
    let conds = j.status.as_ref()?.conditions.as_deref()?;
    let holds = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
    ["Complete", "Failed"].into_iter().find(|t| holds(t))
}

/// The Job for `scheduled`.
pub fn job_for(cj: &CronJob, scheduled: DateTime<Utc>, tz: chrono_tz::Tz) -> Job {
    let template = &spec(cj).job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let at = scheduled.with_timezone(&tz);
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    annotations.insert(SCHEDULED_AT.into(), at);
    Job {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{}",
                name(&cj.metadata),
                scheduled.timestamp() / 60
            )),
            namespace: cj.metadata.namespace.clone(),
            owner_references: Some(vec![KIND.controller_ref(&cj.metadata)]),
            labels: meta.labels,
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// An event to record on the CronJob: type, reason, message.
pub type Event = (&'static str, &'static str, String);

#[derive(Debug, Default)]
pub struct Plan {
    pub create: Option<Job>,
    /// Jobs to delete (finished ones past the history limits, or active ones a Replace
    /// run supersedes); their events follow the calls.
    pub delete: Vec<String>,
    pub status: CronJobStatus,
    /// Events the decision itself gives (not those of creating or deleting).
    pub events: Vec<Event>,
    /// The next schedule time, to look again then.
    pub next: Option<DateTime<Utc>>,
}

fn reference(j: &Job) -> ObjectReference {
    let m = &j.metadata;
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        ..Default::default()
    }
}

/// The CronJob's `status.active` references.
fn listed(cj: &CronJob) -> &[ObjectReference] {
    let status = cj.status.as_ref();
    status.and_then(|s| s.active.as_deref()).unwrap_or(&[])
}

fn names_job(r: &ObjectReference, j: &Job) -> bool {
    r.uid.as_deref() == Some(uid(&j.metadata))
}

/// Whether a running Job of `cj` is missing from its active list, which the cached
/// CronJob may simply not show yet (the caller then reads it afresh, as Kubernetes does).
pub fn has_unlisted_running(cj: &CronJob, jobs: &[Job]) -> bool {
    let active = listed(cj);
    let unlisted = |j: &Job| !active.iter().any(|r| names_job(r, j));
    jobs.iter()
        .any(|j| job_finished(j).is_none() && unlisted(j))
}

/// The active list after looking at the Jobs, as Kubernetes keeps it: finished Jobs
/// leave it (SawCompletedJob), gone ones too (MissingJob); a running Job it does not
/// name is reported (UnexpectedJob) but not taken in. Finished Jobs also move
/// lastSuccessfulTime.
fn track(
    cj: &CronJob,
    jobs: &[Job],
    status: &mut CronJobStatus,
    events: &mut Vec<Event>,
) -> Vec<ObjectReference> {
    let active = listed(cj);
    let is_listed = |j: &Job| active.iter().any(|r| names_job(r, j));
    for j in jobs {
        let n = name(&j.metadata);
        let Some(how) = job_finished(j) else {
            if !is_listed(j) {
                let msg = format!("Saw a job that the controller did not create or forgot: {n}");
                events.push(("Warning", "UnexpectedJob", msg));
            }
            continue;
        };
        if is_listed(j) {
            let msg = format!("Saw completed job: {n}, condition: {how}");
            events.push(("Normal", "SawCompletedJob", msg));
        }
        let completed = j.status.as_ref().and_then(|s| s.completion_time.as_ref());
        if how == "Complete"
            && let Some(t) = completed
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|l| t.0 > l.0)
        {
            status.last_successful_time = Some(t.clone());
        }
    }
    let mut still_active = |r: &ObjectReference| match jobs.iter().find(|j| names_job(r, j)) {
        Some(j) => job_finished(j).is_none(),
        None => {
            let n = r.name.as_deref().unwrap_or("");
            events.push((
                "Normal",
                "MissingJob",
                format!("Active job went missing: {n}"),
            ));
            false
        }
    };
    active.iter().filter(|r| still_active(r)).cloned().collect()
}

/// Finished Jobs past `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`, the
/// earliest started first.
fn past_history_limits(cj: &CronJob, jobs: &[Job]) -> Vec<String> {
    let s = spec(cj);
    let mut out = Vec::new();
    for (how, limit) in [
        ("Complete", s.successful_jobs_history_limit),
        ("Failed", s.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| job_finished(j) == Some(how) && j.metadata.deletion_timestamp.is_none())
            .collect();
        done.sort_by_key(|j| {
            let started = j.status.as_ref().and_then(|s| s.start_time.as_ref());
            (
                started.map(|t| t.0),
                j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        let excess = (done.len() as i64 - i64::from(limit.max(0))).max(0) as usize;
        out.extend(
            done.iter()
                .take(excess)
                .map(|j| name(&j.metadata).to_string()),
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
fn zone(cj: &CronJob) -> Result<chrono_tz::Tz, Event> {
    let Some(z) = spec(cj).time_zone.as_deref() else {
        return Ok(chrono_tz::UTC);
    };
    time_zone(z).map_err(|e| {
        let msg = format!("invalid timeZone: {z:?}: {e}");
        ("Warning", "UnknownTimeZone", msg)
    })
}

/// One sync of `cj` over the Jobs it owns.
pub fn reconcile(cj: &CronJob, jobs: &[Job], now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let mut status = cj.status.clone().unwrap_or_default();
    let mut active = track(cj, jobs, &mut status, &mut plan.events);
    plan.delete = past_history_limits(cj, jobs);
    if cj.metadata.deletion_timestamp.is_none() {
        start(cj, jobs, &mut active, now, &mut status, &mut plan);
    }
    status.active = (!active.is_empty()).then_some(active);
    plan.status = status;
    plan
}

/// The schedule's part, in Kubernetes' order of checks: time zone, suspension, the
/// schedule itself, missed times, the starting deadline, a run already made, then the
/// concurrency policy.
fn start(
    cj: &CronJob,
    jobs: &[Job],
    active: &mut Vec<ObjectReference>,
    now: DateTime<Utc>,
    status: &mut CronJobStatus,
    plan: &mut Plan,
) {
    let tz = match zone(cj) {
        Ok(tz) => tz,
        Err(e) => return plan.events.push(e),
    };
    let s = spec(cj);
    if s.suspend == Some(true) {
        return;
    }
    let text = s.schedule.as_str();
    let schedule = match Schedule::parse(text) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("unparseable schedule: {text:?} : {e}");
            return plan.events.push(("Warning", "UnparseableSchedule", msg));
        }
    };
    let last = status.last_schedule_time.as_ref();
    let created = cj.metadata.creation_timestamp.as_ref();
    let mut earliest = last.or(created).map_or(now, chrono_time);
    let deadline = s.starting_deadline_seconds;
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
    if jobs.iter().any(|j| j.metadata.name == job.metadata.name) {
        return; // Already started for this time.
    }
    match s.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            return plan.events.push(("Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()));
        }
        "Replace" => plan.delete.extend(active.drain(..).filter_map(|r| r.name)),
        _ => {}
    }
    status.last_schedule_time = Some(api_time(scheduled));
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
            && let Some((k, _)) = st.cronjobs.iter().find(|(_, cj)| reflect::uid(&***cj) == u)
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
                        .insert(reflect::names(&j).1.to_string(), j);
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
                .insert(reflect::names(&j).1.to_string(), j);
        }
        Change::Delete(j) => {
            let Some(u) = owner_uid(&j) else { return };
            touch(st, &j);
            if let Some(m) = st.jobs.get_mut(&u) {
                m.remove(reflect::names(&j).1);
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
    let (ns, cj_name) = reflect::names(cached);
    let jobs: Vec<Job> = st
        .jobs
        .get(reflect::uid(cached))
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|j| crate::typed(j))
        .collect();
    let cj: CronJob = crate::typed(cached)?;
    // A Job just made shows up before the status naming it: read the CronJob afresh
    // before calling the Job unexpected.
    let fresh = if has_unlisted_running(&cj, &jobs) {
        let path = format!(
            "/apis/batch/v1/namespaces/{}/cronjobs/{cj_name}",
            ns.unwrap_or("")
        );
        let fresh = get(client, path).await.ok();
        fresh.filter(|f| reflect::uid(f) == uid(&cj.metadata))
    } else {
        None
    };
    let raw = fresh.as_ref().unwrap_or(cached);
    let cj: CronJob = crate::typed(raw)?;
    let act = Act {
        client,
        recorder,
        raw,
        cj: &cj,
    };
    let mut plan = reconcile(&cj, &jobs, now);
    for (ty, reason, msg) in &plan.events {
        act.event(ty, reason, msg.clone());
    }
    for n in &plan.delete {
        act.delete_job(st, n).await;
    }
    if let Some(job) = plan.create.take() {
        let active = |made: &Job, status: &mut CronJobStatus| {
            let list = status.active.get_or_insert_default();
            if !list.iter().any(|r| names_job(r, made)) {
                list.push(reference(made));
            }
        };
        match act.create_job(st, &job).await {
            Created::New(made) => {
                let msg = format!("Created job {}", name(&made.metadata));
                act.event("Normal", "SuccessfulCreate", msg);
                active(&made, &mut plan.status);
            }
            Created::Ours(made) => active(&made, &mut plan.status),
            // Someone else's Job by that name: the time stays unrecorded, as in Kubernetes.
            Created::Foreign => {
                let before = cj
                    .status
                    .as_ref()
                    .and_then(|s| s.last_schedule_time.clone());
                plan.status.last_schedule_time = before;
            }
            Created::Failed(e) => {
                act.event(
                    "Warning",
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Some(now + chrono::Duration::seconds(10));
            }
        }
    }
    let status = serde_json::to_value(&plan.status).expect("a status serializes");
    owner::put_status(client, "batch/v1", "cronjobs", raw, status).await;
    plan.next
}

enum Created {
    New(Job),
    /// Made already by this CronJob (a restart between creating and recording).
    Ours(Job),
    /// The name is taken by a Job of someone else's.
    Foreign,
    Failed(kube::Error),
}

/// A sync's creations and deletions of Jobs, recorded as events on the CronJob.
struct Act<'a> {
    client: &'a kube::Client,
    recorder: &'a Recorder,
    raw: &'a Value,
    cj: &'a CronJob,
}

impl Act<'_> {
    fn jobs_path(&self) -> String {
        let ns = self.cj.metadata.namespace.as_deref().unwrap_or("");
        format!("/apis/batch/v1/namespaces/{ns}/jobs")
    }

    /// Deletes Job `n` (its pods in the background), with Kubernetes' events.
    async fn delete_job(&self, st: &mut State, n: &str) {
        let body =
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
        let path = format!("{}/{n}", self.jobs_path());
        let ct = "application/json";
        match owner::send(self.client, http::Method::DELETE, path, ct, &body).await {
            Ok(_) => {
                // Gone now: the watch may tell later, and a Job it still shows would look
                // unexpected.
                if let Some(m) = st.jobs.get_mut(uid(&self.cj.metadata)) {
                    m.remove(n);
                }
                self.event("Normal", "SuccessfulDelete", format!("Deleted job {n}"));
            }
            Err(e) => self.event("Warning", "FailedDelete", format!("Deleted job: {e}")),
        }
    }

    async fn create_job(&self, st: &mut State, job: &Job) -> Created {
        let base = self.jobs_path();
        let body = serde_json::to_value(job).expect("a job serializes");
        let ct = "application/json";
        let mine = uid(&self.cj.metadata);
        let (raw, new) =
            match owner::send(self.client, http::Method::POST, base.clone(), ct, &body).await {
                Ok(made) => (made, true),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    match get(self.client, format!("{base}/{}", name(&job.metadata))).await {
                        Ok(j) if owner_uid(&j).as_deref() == Some(mine) => (j, false),
                        Ok(_) => return Created::Foreign,
                        Err(e) => return Created::Failed(e),
                    }
                }
                Err(e) => return Created::Failed(e),
            };
        let made = crate::typed(&raw).unwrap_or_else(|| job.clone());
        let jobs = st.jobs.entry(mine.to_string()).or_default();
        jobs.insert(name(&job.metadata).to_string(), Arc::new(raw));
        if new {
            Created::New(made)
        } else {
            Created::Ours(made)
        }
    }

    fn event(&self, kind: &'static str, reason: &'static str, message: String) {
        self.recorder.record(self.raw, kind, reason, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(c: &Value, jobs: &[&Value], now: DateTime<Utc>) -> Plan {
        let jobs: Vec<Job> = jobs.iter().map(|j| crate::typed(j).unwrap()).collect();
        reconcile(&crate::typed(c).unwrap(), &jobs, now)
    }

    fn status(p: &Plan) -> Value {
        serde_json::to_value(&p.status).unwrap()
    }

    fn created(p: &Plan) -> Value {
        serde_json::to_value(p.create.as_ref().expect("a job")).unwrap()
    }

    /// Names `job` in the CronJob status's active list, as the controller does.
    fn add_active(status: &mut Value, job: &Value) {
        let m = &job["metadata"];
        let r = json!({"apiVersion": "batch/v1", "kind": "Job", "name": m["name"], "namespace": m["namespace"], "uid": m["uid"]});
        match status["active"].as_array_mut() {
            Some(a) => a.push(r),
            None => status["active"] = json!([r]),
        }
    }

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
        let p = plan(&c, &[], t("2026-01-01T00:02:30Z"));
        let j = created(&p);
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
        assert_eq!(status(&p)["lastScheduleTime"], "2026-01-01T00:02:00Z");
        assert_eq!(p.next, Some(t("2026-01-01T00:03:00Z")));
        // Already made: nothing more.
        let mut made = j.clone();
        made["metadata"]["uid"] = json!("j-uid");
        let mut c2 = c.clone();
        c2["status"] = status(&p);
        add_active(&mut c2["status"], &made);
        let p2 = plan(&c2, &[&made], t("2026-01-01T00:02:40Z"));
        assert!(
            p2.create.is_none() && p2.events.is_empty(),
            "{:?}",
            p2.events
        );
        assert_eq!(status(&p2)["active"][0]["name"], made["metadata"]["name"]);
    }

    #[test]
    fn concurrency_policies_and_deadlines() {
        let running = job("tick-1", None, "2026-01-01T00:01:00Z");
        let mut c = cj(json!({"concurrencyPolicy": "Forbid"}));
        c["status"]["lastScheduleTime"] = json!("2026-01-01T00:01:00Z");
        add_active(&mut c["status"], &running);
        let p = plan(&c, &[&running], t("2026-01-01T00:02:05Z"));
        assert!(p.create.is_none());
        assert!(p.events.iter().any(|e| e.1 == "JobAlreadyActive"));
        c["spec"]["concurrencyPolicy"] = json!("Replace");
        let p = plan(&c, &[&running], t("2026-01-01T00:02:05Z"));
        assert!(p.create.is_some());
        assert_eq!(p.delete, vec!["tick-1"]);
        c["spec"]["concurrencyPolicy"] = json!("Allow");
        c["spec"]["startingDeadlineSeconds"] = json!(10);
        let p = plan(&c, &[&running], t("2026-01-01T00:02:30Z"));
        assert!(p.create.is_none(), "too late to start");
        c["spec"]["suspend"] = json!(true);
        assert!(plan(&c, &[], t("2026-01-01T00:05:00Z")).create.is_none());
    }

    #[test]
    fn history_limits_and_time_zones() {
        let c = cj(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0, "suspend": true}),
        );
        let a = job("a", Some("Complete"), "2026-01-01T00:01:00Z");
        let b = job("b", Some("Complete"), "2026-01-01T00:02:00Z");
        let f = job("f", Some("Failed"), "2026-01-01T00:03:00Z");
        let mut p = plan(&c, &[&b, &a, &f], t("2026-01-01T00:04:00Z"));
        p.delete.sort();
        assert_eq!(p.delete, vec!["a", "f"]);
        assert_eq!(status(&p)["lastSuccessfulTime"], "2026-01-01T00:02:00Z");
        let mut c = cj(json!({"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}));
        c["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        let p = plan(&c, &[], t("2026-01-01T08:30:00Z"));
        let j = created(&p);
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
        let p = plan(&c, &[], t("2026-03-01T00:00:00Z"));
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
        assert!(plan(&s, &[], t("2026-03-01T00:00:00Z")).events.is_empty());
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
        let running: Vec<Job> = [&mine, &by_hand].map(|j| crate::typed(j).unwrap()).to_vec();
        assert!(has_unlisted_running(&crate::typed(&c).unwrap(), &running));
        let p = plan(&c, &[&mine, &by_hand], t("2026-01-01T00:01:30Z"));
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
        let st = status(&p);
        let names: Vec<&Value> = st["active"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["name"])
            .collect();
        assert_eq!(names, ["tick-1"]);
        // Finished: out of the list, once.
        let done = job("tick-1", Some("Complete"), "2026-01-01T00:01:00Z");
        let p = plan(&c, &[&done], t("2026-01-01T00:01:30Z"));
        assert_eq!(
            p.events[0].2,
            "Saw completed job: tick-1, condition: Complete"
        );
        assert!(status(&p)["active"].is_null());
    }

    #[test]
    fn missed_times_and_zones_in_kubernetes_words() {
        // Created a day ago, never run: far more than 100 minutes missed.
        let p = plan(&cj(json!({})), &[], t("2026-01-02T00:00:30Z"));
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
        let p = plan(
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
