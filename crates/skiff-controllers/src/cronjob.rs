//! The CronJob controller, as Kubernetes' (v2): on each schedule time (standard cron,
//! `@hourly`-style macros, `timeZone`) a Job named `<cronjob>-<minutes since epoch>`;
//! `startingDeadlineSeconds`, `concurrencyPolicy` Allow/Forbid/Replace, `suspend`, the
//! active list, lastScheduleTime/lastSuccessfulTime, and the success and failure
//! history limits.
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

#[derive(Debug, Default)]
pub struct Plan {
    pub create: Option<Value>,
    pub delete: Vec<String>,
    pub status: Value,
    pub events: Vec<(&'static str, &'static str, String)>,
    /// The next schedule time, to look again then.
    pub next: Option<DateTime<Utc>>,
}

fn reference(j: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"], "namespace": j["metadata"]["namespace"], "uid": j["metadata"]["uid"], "resourceVersion": j["metadata"]["resourceVersion"]})
}

/// One sync of `cj` over the Jobs it owns.
pub fn reconcile(cj: &Value, jobs: &[&Value], now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let mut status = cj["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let was_active: HashSet<&str> = cj["status"]["active"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
        .collect();
    let mut active: Vec<&Value> = Vec::new();
    for j in jobs {
        match job_finished(j) {
            None if j["metadata"]["deletionTimestamp"].is_null() => active.push(j),
            None => {}
            Some(how) => {
                if was_active.contains(j["metadata"]["uid"].as_str().unwrap_or("")) {
                    plan.events.push((
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
    for gone in was_active
        .iter()
        .filter(|u| !jobs.iter().any(|j| j["metadata"]["uid"] == **u))
    {
        plan.events.push((
            "Normal",
            "MissingJob",
            format!("Active job went missing: {gone}"),
        ));
    }

    // History: the oldest finished jobs beyond the limits.
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
        for j in done.iter().take(excess.max(0) as usize) {
            plan.delete.push(name(j).to_string());
            plan.events.push((
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {}", name(j)),
            ));
        }
    }

    let tz = cj["spec"]["timeZone"]
        .as_str()
        .and_then(|z| time_zone(z).ok())
        .unwrap_or(chrono_tz::UTC);
    let schedule = Schedule::parse(cj["spec"]["schedule"].as_str().unwrap_or(""));
    let deleting = !cj["metadata"]["deletionTimestamp"].is_null();
    let suspended = cj["spec"]["suspend"] == true;
    if let (Ok(schedule), false, false) = (&schedule, deleting, suspended) {
        let mut earliest = parse(&status["lastScheduleTime"])
            .or_else(|| parse(&cj["metadata"]["creationTimestamp"]))
            .unwrap_or(now);
        let deadline = cj["spec"]["startingDeadlineSeconds"].as_i64();
        if let Some(d) = deadline {
            earliest = earliest.max(now - chrono::Duration::seconds(d));
        }
        let (recent, missed) = schedule.most_recent(earliest, now, tz, MISSED_CAP);
        if missed > MISSED_CAP {
            plan.events.push(("Warning", "TooManyMissedTimes", format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew")));
        }
        if let Some(scheduled) = recent {
            let job = job_for(cj, scheduled, tz);
            let exists = jobs.iter().any(|j| name(j) == name(&job));
            let too_late = deadline.is_some_and(|d| scheduled + chrono::Duration::seconds(d) < now);
            let policy = cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow");
            if exists {
                // Already started for this time.
            } else if too_late {
                plan.events.push((
                    "Warning",
                    "MissSchedule",
                    format!(
                        "Missed scheduled time to start a job: {}",
                        scheduled.to_rfc2822()
                    ),
                ));
            } else if policy == "Forbid" && !active.is_empty() {
                plan.events.push(("Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()));
            } else {
                if policy == "Replace" {
                    for j in &active {
                        plan.delete.push(name(j).to_string());
                        plan.events.push((
                            "Normal",
                            "SuccessfulDelete",
                            format!("Deleted job {}", name(j)),
                        ));
                    }
                    active.clear();
                }
                status["lastScheduleTime"] = json!(ts(scheduled));
                plan.events.push((
                    "Normal",
                    "SuccessfulCreate",
                    format!("Created job {}", name(&job)),
                ));
                plan.create = Some(job);
            }
        }
        plan.next = schedule.next_after(now, tz);
    }
    let mut refs: Vec<Value> = active.iter().map(|j| reference(j)).collect();
    refs.sort_by_key(|r| r["name"].as_str().unwrap_or("").to_string());
    if refs.is_empty() {
        status.as_object_mut().map(|m| m.remove("active"));
    } else {
        status["active"] = json!(refs);
    }
    plan.status = status;
    plan
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

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    st: &mut State,
    cj: &Value,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let ns = cj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let uid = cj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let jobs: Vec<Arc<Value>> = st
        .jobs
        .get(&uid)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let refs: Vec<&Value> = jobs.iter().map(|j| &**j).collect();
    let mut plan = reconcile(cj, &refs, now);
    for n in &plan.delete {
        let body =
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"});
        if let Err(e) = owner::send(
            client,
            http::Method::DELETE,
            format!("/apis/batch/v1/namespaces/{ns}/jobs/{n}"),
            "application/json",
            &body,
        )
        .await
        {
            tracing::debug!(error = %e, job = %n, "deleting a job failed");
        }
    }
    if let Some(job) = &plan.create {
        match owner::send(
            client,
            http::Method::POST,
            format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            "application/json",
            job,
        )
        .await
        {
            Ok(created) => {
                let mut active = plan.status["active"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                active.push(reference(&created));
                plan.status["active"] = json!(active);
                if let Some(u) = owner_uid(&created) {
                    st.jobs
                        .entry(u)
                        .or_default()
                        .insert(name(&created).to_string(), Arc::new(created));
                }
            }
            // Made already (a restart between creating and recording): fine.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                recorder.record(
                    cj,
                    "Warning",
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Some(now + chrono::Duration::seconds(10));
            }
        }
    }
    for (ty, reason, msg) in &plan.events {
        recorder.record(cj, ty, reason, msg.clone());
    }
    owner::put_status(client, "batch/v1", "cronjobs", cj, plan.status.clone()).await;
    plan.next
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
        let p2 = reconcile(&c2, &[&made], t("2026-01-01T00:02:40Z"));
        assert!(p2.create.is_none());
        assert_eq!(p2.status["active"][0]["name"], made["metadata"]["name"]);
    }

    #[test]
    fn concurrency_policies_and_deadlines() {
        let running = job("tick-1", None, "2026-01-01T00:01:00Z");
        let mut c = cj(json!({"concurrencyPolicy": "Forbid"}));
        c["status"]["lastScheduleTime"] = json!("2026-01-01T00:01:00Z");
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
}
