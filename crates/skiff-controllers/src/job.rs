//! The Job controller, with Kubernetes' semantics: pods up to `parallelism` until
//! `completions` succeed (NonIndexed, or one per index for `Indexed`, with
//! JOB_COMPLETION_INDEX), failures counted against `backoffLimit` (container restarts
//! too under OnFailure) with the 10 s doubling back-off before replacements,
//! `activeDeadlineSeconds`, `podFailurePolicy` (FailJob, Ignore, Count), `suspend`, the
//! SuccessCriteriaMet/Complete and FailureTarget/Failed conditions, and
//! `ttlSecondsAfterFinished`. Pods carry the `batch.kubernetes.io/job-tracking`
//! finalizer: a finished pod is recorded in `uncountedTerminatedPods`, then released,
//! then counted, so no result is lost or counted twice when pods are deleted.
//!
//! `reconcile` is the pure decision; `run` keeps Jobs and their pods and acts.

use crate::claim::{self, ADOPTION_RETRY};
use crate::control;
use crate::owner;
use crate::podfacts::sort_for_deletion;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::informer::View;
use skiff_kube::reflect::Change;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const TRACKING: &str = "batch.kubernetes.io/job-tracking";
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";
const BACKOFF_BASE: i64 = 10;
const BACKOFF_MAX: i64 = 360;

type Time = chrono::DateTime<chrono::Utc>;

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn ts(t: Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse(v: &Value) -> Option<Time> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn uid(p: &Value) -> &str {
    p["metadata"]["uid"].as_str().unwrap_or("")
}

fn pod_name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn has_tracking(p: &Value) -> bool {
    p["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING))
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn index_of(p: &Value) -> Option<i64> {
    p["metadata"]["annotations"][INDEX]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// A pod that ended: Succeeded, Failed, or deleted before it could succeed.
fn finished(p: &Value) -> Option<bool> {
    match phase(p) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if !p["metadata"]["deletionTimestamp"].is_null() => Some(false),
        _ => None,
    }
}

fn is_active(p: &Value) -> bool {
    finished(p).is_none()
}

fn condition_true(job: &Value, ty: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

pub fn is_finished(job: &Value) -> bool {
    condition_true(job, "Complete") || condition_true(job, "Failed")
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

/// Kubernetes' pod failure back-off: 10 s doubling per failure, at most 6 minutes.
pub fn backoff(failures: i64) -> i64 {
    if failures <= 0 {
        return 0;
    }
    let mut d = BACKOFF_BASE;
    for _ in 1..failures {
        d *= 2;
        if d >= BACKOFF_MAX {
            return BACKOFF_MAX;
        }
    }
    d
}

/// What a failed pod's rules say (`podFailurePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    FailJob(String),
    Ignore,
    Count,
}

pub fn failure_action(job: &Value, p: &Value) -> FailureAction {
    let Some(rules) = job["spec"]["podFailurePolicy"]["rules"].as_array() else {
        return FailureAction::Count;
    };
    let statuses: Vec<&Value> = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    for (n, r) in rules.iter().enumerate() {
        let matched = if let Some(ec) = r.get("onExitCodes").filter(|v| v.is_object()) {
            let only = ec["containerName"].as_str();
            let values: Vec<i64> = ec["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let op_in = ec["operator"] == "In";
            statuses
                .iter()
                .filter(|c| only.is_none_or(|o| c["name"] == o))
                .find_map(|c| {
                    let code = c["state"]["terminated"]["exitCode"].as_i64()?;
                    // NotIn ignores the zero exit code, as Kubernetes does.
                    let hit = if op_in {
                        values.contains(&code)
                    } else {
                        code != 0 && !values.contains(&code)
                    };
                    hit.then(|| (c["name"].as_str().unwrap_or("").to_string(), code))
                })
        } else if let Some(pcs) = r["onPodConditions"].as_array() {
            pcs.iter()
                .any(|pc| {
                    p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| {
                            c["type"] == pc["type"]
                                && c["status"] == pc["status"].as_str().unwrap_or("True")
                        })
                })
                .then(|| (String::new(), 0))
        } else {
            None
        };
        let Some((container, code)) = matched else {
            continue;
        };
        return match r["action"].as_str() {
            Some("FailJob") => FailureAction::FailJob(if container.is_empty() {
                format!(
                    "Pod {}/{} has condition matching FailJob rule at index {n}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    pod_name(p)
                )
            } else {
                format!(
                    "Container {container} for pod {}/{} failed with exit code {code} matching FailJob rule at index {n}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    pod_name(p)
                )
            }),
            Some("Ignore") => FailureAction::Ignore,
            _ => FailureAction::Count,
        };
    }
    FailureAction::Count
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create: the completion index for Indexed jobs.
    pub create: Vec<Option<i64>>,
    pub delete: Vec<String>,
    /// Pods whose result is durably recorded: their finalizer can go.
    pub release: Vec<String>,
    pub status: Value,
    pub events: Vec<(&'static str, &'static str, String)>,
    /// When to look again (back-off, deadline, TTL).
    pub requeue: Option<i64>,
    /// The TTL has run out: delete the Job.
    pub delete_job: bool,
}

fn set_condition(
    conds: &mut Vec<Value>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Time,
) {
    let now = ts(now);
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) if c["status"] == status => {}
        Some(c) => {
            *c = json!({"type": ty, "status": status, "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now})
        }
        None => conds.push(json!({"type": ty, "status": status, "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now})),
    }
}

/// One sync of `job` over its pods.
pub fn reconcile(job: &Value, pods: &[&Value], now: Time) -> Plan {
    let mut plan = Plan::default();
    let st = &job["status"];
    let mut status = st.clone();
    if !status.is_object() {
        status = json!({});
    }
    let indexed = job["spec"]["completionMode"] == "Indexed";
    let completions = job["spec"]["completions"].as_i64();
    let parallelism = job["spec"]["parallelism"].as_i64().unwrap_or(1);
    let backoff_limit = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);

    // Results: counted, recorded but not yet counted, and new.
    let list = |k: &str| -> BTreeSet<String> {
        st["uncountedTerminatedPods"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let (mut unc_ok, mut unc_fail) = (list("succeeded"), list("failed"));
    let recorded: HashSet<String> = unc_ok.iter().chain(unc_fail.iter()).cloned().collect();
    let mut succeeded = i(&st["succeeded"]);
    let mut failed = i(&st["failed"]);
    let mut completed_ix = parse_indexes(st["completedIndexes"].as_str().unwrap_or(""));
    let mut fail_job: Option<(String, String)> = None;
    let mut last_failure: Option<Time> = None;
    let by_uid: HashMap<&str, &Value> = pods.iter().map(|p| (uid(p), *p)).collect();
    for p in pods.iter().filter(|p| has_tracking(p)) {
        let Some(ok) = finished(p) else { continue };
        let u = uid(p).to_string();
        if recorded.contains(&u) {
            // Durable in the status: the finalizer may go now.
            plan.release.push(pod_name(p));
            continue;
        }
        if ok {
            if indexed && index_of(p).is_none_or(|ix| completed_ix.contains(&ix)) {
                // A second success for an index, or no index: nothing to count.
                plan.release.push(pod_name(p));
                continue;
            }
            unc_ok.insert(u);
        } else {
            match failure_action(job, p) {
                FailureAction::Ignore => {
                    plan.release.push(pod_name(p));
                    continue;
                }
                FailureAction::FailJob(msg) => {
                    fail_job.get_or_insert(("PodFailurePolicy".into(), msg));
                }
                FailureAction::Count => {}
            }
            unc_fail.insert(u);
        }
    }
    // Recorded results whose pods are released (or gone) move into the counters.
    for (set, counter, ok) in [
        (&mut unc_ok, &mut succeeded, true),
        (&mut unc_fail, &mut failed, false),
    ] {
        let done: Vec<String> = set
            .iter()
            .filter(|u| {
                recorded.contains(*u) && by_uid.get(u.as_str()).is_none_or(|p| !has_tracking(p))
            })
            .cloned()
            .collect();
        for u in done {
            set.remove(&u);
            *counter += 1;
            if ok
                && indexed
                && let Some(ix) = by_uid.get(u.as_str()).and_then(|p| index_of(p))
            {
                completed_ix.insert(ix);
            }
        }
    }
    // Indexed completions count when first seen succeeded (the index is known then).
    if indexed {
        for p in pods.iter().filter(|p| finished(p) == Some(true)) {
            if let Some(ix) = index_of(p)
                && completions.is_some_and(|c| ix < c)
            {
                completed_ix.insert(ix);
            }
        }
    }
    for p in pods.iter().filter(|p| finished(p) == Some(false)) {
        let t = p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| parse(&c["state"]["terminated"]["finishedAt"]))
            .max()
            .or_else(|| parse(&p["metadata"]["deletionTimestamp"]));
        last_failure = last_failure.max(t);
    }
    let total_ok = succeeded + unc_ok.len() as i64;
    let mut total_failed = failed + unc_fail.len() as i64;
    let active: Vec<&Value> = pods.iter().copied().filter(|p| is_active(p)).collect();
    if job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure" {
        total_failed += active
            .iter()
            .flat_map(|p| {
                p["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|c| i(&c["restartCount"]))
            .sum::<i64>();
    }

    let mut conds: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
    let suspended = job["spec"]["suspend"] == true;
    let finished_before = is_finished(job);
    if !finished_before && !suspended && status["startTime"].is_null() {
        status["startTime"] = json!(ts(now));
    }
    let start = parse(&status["startTime"]);
    if !finished_before && fail_job.is_none() {
        if total_failed > backoff_limit {
            fail_job = Some((
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into(),
            ));
        } else if let (Some(ads), Some(s)) = (job["spec"]["activeDeadlineSeconds"].as_i64(), start)
            && !suspended
        {
            if s + chrono::Duration::seconds(ads) <= now {
                fail_job = Some((
                    "DeadlineExceeded".into(),
                    "Job was active longer than specified deadline".into(),
                ));
            } else {
                plan.requeue = Some(secs_until(s + chrono::Duration::seconds(ads), now));
            }
        }
    }
    let complete = match (indexed, completions) {
        (true, Some(c)) => completed_ix.len() as i64 >= c,
        (false, Some(c)) => total_ok >= c,
        (_, None) => total_ok > 0 && active.is_empty(),
    };

    if finished_before {
        // Only the pods' results are still settled (finalizers above).
    } else if let Some((reason, message)) = fail_job {
        plan.delete = active.iter().map(|p| pod_name(p)).collect();
        set_condition(&mut conds, "FailureTarget", "True", &reason, &message, now);
        set_condition(&mut conds, "Failed", "True", &reason, &message, now);
        plan.events
            .push(("Warning", static_reason(&reason), message));
    } else if complete {
        plan.delete = active.iter().map(|p| pod_name(p)).collect();
        set_condition(
            &mut conds,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        set_condition(
            &mut conds,
            "Complete",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        status["completionTime"] = json!(ts(now));
        plan.events
            .push(("Normal", "Completed", "Job completed".into()));
    } else if suspended {
        plan.delete = active.iter().map(|p| pod_name(p)).collect();
        if !condition_true(job, "Suspended") {
            set_condition(
                &mut conds,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            plan.events
                .push(("Normal", "Suspended", "Job suspended".into()));
        }
    } else {
        if condition_true(job, "Suspended") {
            set_condition(
                &mut conds,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            plan.events
                .push(("Normal", "Resumed", "Job resumed".into()));
        }
        let want_active = match completions {
            Some(c) if indexed => parallelism.min(c - completed_ix.len() as i64),
            Some(c) => parallelism.min(c - total_ok),
            None if total_ok > 0 => 0,
            None => parallelism,
        }
        .max(0);
        let have = active.len() as i64;
        // Replacements wait out the back-off after failures.
        let wait = last_failure
            .map(|t| secs_until(t + chrono::Duration::seconds(backoff(total_failed)), now))
            .unwrap_or(0);
        if have < want_active {
            if wait > 0 && total_failed > 0 {
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            } else if indexed {
                let busy: HashSet<i64> = active.iter().filter_map(|p| index_of(p)).collect();
                let c = completions.unwrap_or(0);
                plan.create = (0..c)
                    .filter(|ix| !completed_ix.contains(ix) && !busy.contains(ix))
                    .take((want_active - have) as usize)
                    .map(Some)
                    .collect();
            } else {
                plan.create = vec![None; (want_active - have) as usize];
            }
        } else if have > want_active {
            let mut a = active.clone();
            sort_for_deletion(&mut a);
            plan.delete = a
                .iter()
                .take((have - want_active) as usize)
                .map(|p| pod_name(p))
                .collect();
        }
    }

    let ready = active
        .iter()
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count();
    let terminating = pods
        .iter()
        .filter(|p| {
            !p["metadata"]["deletionTimestamp"].is_null()
                && matches!(phase(p), "Pending" | "Running")
        })
        .count();
    status["active"] = json!(active.len() as i64 - plan.delete.len() as i64);
    status["ready"] = json!(ready);
    status["terminating"] = json!(terminating);
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["uncountedTerminatedPods"] = json!({"succeeded": unc_ok, "failed": unc_fail});
    if indexed {
        status["completedIndexes"] = json!(format_indexes(&completed_ix));
    }
    if !conds.is_empty() {
        status["conditions"] = json!(conds);
    }
    // A finished job keeps counting what is left, then waits for its TTL.
    let done_at = parse(&status["completionTime"]).or_else(|| {
        conds
            .iter()
            .find(|c| c["type"] == "Failed" && c["status"] == "True")
            .and_then(|c| parse(&c["lastTransitionTime"]))
    });
    if let (Some(ttl), Some(t)) = (job["spec"]["ttlSecondsAfterFinished"].as_i64(), done_at)
        && (finished_before || complete || conds.iter().any(|c| c["type"] == "Failed"))
    {
        let left = secs_until(t + chrono::Duration::seconds(ttl), now);
        if left <= 0 {
            plan.delete_job = true;
        } else {
            plan.requeue = Some(plan.requeue.map_or(left, |r| r.min(left)));
        }
    }
    plan.status = status;
    plan
}

/// Whole seconds until `at`, rounded up: a deadline 0.9 s away has not passed.
fn secs_until(at: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> i64 {
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

/// The pod a Job makes, for `index` in an Indexed job.
pub fn pod_from_template(job: &Value, index: Option<i64>) -> Value {
    let name = job["metadata"]["name"].as_str().unwrap_or("");
    let t = &job["spec"]["template"];
    let mut meta = json!({
        "generateName": match index { Some(ix) => format!("{name}-{ix}-"), None => format!("{name}-") },
        "namespace": job["metadata"]["namespace"],
        "labels": t["metadata"]["labels"].clone(),
        "ownerReferences": [owner::controller_ref("batch/v1", "Job", job)],
        "finalizers": [TRACKING],
    });
    if t["metadata"]["annotations"].is_object() {
        meta["annotations"] = t["metadata"]["annotations"].clone();
    }
    let mut spec = t["spec"].clone();
    if let Some(ix) = index {
        if !meta["labels"].is_object() {
            meta["labels"] = json!({});
        }
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        meta["labels"][INDEX] = json!(ix.to_string());
        meta["annotations"][INDEX] = json!(ix.to_string());
        if spec["hostname"].is_null() {
            spec["hostname"] = json!(format!("{name}-{ix}"));
        }
        for list in ["initContainers", "containers"] {
            let list = spec.get_mut(list).and_then(Value::as_array_mut);
            for c in list.into_iter().flatten() {
                if !c["env"].is_array() {
                    c["env"] = json!([]);
                }
                let env = c["env"].as_array_mut().expect("array");
                if !env.iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX") {
                    env.push(json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{INDEX}']")}}}));
                }
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

struct State {
    jobs: HashMap<String, Arc<Value>>,
    /// Pods with a Job controller, and orphans (to adopt, or to free of the finalizer).
    pods: claim::Pods,
    jobs_listed: bool,
}

const KIND: claim::OwnerKind = claim::OwnerKind {
    api_version: "batch/v1",
    kind: "Job",
    plural: "jobs",
};

/// Runs the controller until `shutdown`.
/// `ttl` deletes Jobs finished longer than their `ttlSecondsAfterFinished` (Kubernetes'
/// ttl-after-finished controller, with its own identity).
pub async fn run(
    client: kube::Client,
    ttl: kube::Client,
    informers: skiff_kube::informer::Informers,
    shutdown: watch::Receiver<bool>,
) {
    let sources = vec![
        informers.watch("/apis/batch/v1/jobs"),
        informers.watch_view(
            "/api/v1/pods",
            View::only(|p| claim::owned_by_or_orphan(p, "Job")),
        ),
    ];
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
        ttl,
        st: State {
            jobs: HashMap::new(),
            pods: claim::Pods::default(),
            jobs_listed: false,
        },
        expectations: owner::Expectations::default(),
    };
    control::run(controller, sources, shutdown).await
}

struct Controller {
    client: kube::Client,
    ttl: kube::Client,
    recorder: Recorder,
    st: State,
    expectations: owner::Expectations,
}

impl control::Reconcile for Controller {
    fn expectations(&mut self) -> Option<&mut owner::Expectations> {
        Some(&mut self.expectations)
    }

    fn owners(&mut self) -> &mut HashMap<String, Arc<Value>> {
        &mut self.st.jobs
    }

    fn observe(&mut self, _pods: usize, c: Change, dirty: &mut control::Dirty) {
        self.st.pods.apply(
            c,
            "Job",
            &self.st.jobs,
            claim::selects,
            dirty,
            Some(&mut self.expectations),
        );
    }

    fn owners_listed(&mut self) {
        self.st.jobs_listed = true;
    }

    async fn before_round(&mut self) {
        release_orphans(&self.client, &self.st).await;
    }

    async fn sync(&mut self, key: &str, job: Option<Arc<Value>>) -> Option<Duration> {
        let job = job?;
        sync(
            (&self.client, &self.ttl),
            &self.recorder,
            &mut self.st,
            &mut self.expectations,
            key,
            &job,
        )
        .await
    }
}

async fn remove_tracking(client: &kube::Client, p: &Value) {
    let keep: Vec<Value> = p["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != TRACKING)
        .cloned()
        .collect();
    let body = json!({"metadata": {"finalizers": if keep.is_empty() { Value::Null } else { json!(keep) }, "resourceVersion": p["metadata"]["resourceVersion"]}});
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
    let req = http::Request::patch(format!("/api/v1/namespaces/{ns}/pods/{}", pod_name(p)))
        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("valid request");
    if let Err(e) = client.request::<Value>(req).await {
        tracing::debug!(error = %e, pod = %pod_name(p), "could not release a job pod");
    }
}

/// Pods whose Job is gone, and orphans no Job will adopt, keep no finalizer: nothing
/// is left to count them for.
async fn release_orphans(client: &kube::Client, st: &State) {
    if !st.jobs_listed {
        return;
    }
    let live: HashSet<&str> = st
        .jobs
        .values()
        .filter_map(|j| j["metadata"]["uid"].as_str())
        .collect();
    for p in st.pods.all().filter(|p| has_tracking(p)) {
        let free = match owner::controller_of(p) {
            Some(c) => !live.contains(c.uid.as_str()),
            None => !st.jobs.values().any(|j| {
                j["metadata"]["namespace"] == p["metadata"]["namespace"] && claim::selects(j, p)
            }),
        };
        if free {
            remove_tracking(client, p).await;
        }
    }
}

async fn sync(
    (client, ttl): (&kube::Client, &kube::Client),
    recorder: &Recorder,
    st: &mut State,
    exp: &mut owner::Expectations,
    key: &str,
    job: &Value,
) -> Option<Duration> {
    let ns = job["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let job_uid = job["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let selector = claim::OwnerSelector::of(job);
    let Some(pods) = st
        .pods
        .claim_for(client, job, &KIND, |p| selector.selects(p))
        .await
    else {
        return Some(ADOPTION_RETRY);
    };
    let refs: Vec<&Value> = pods.iter().collect();
    let plan = reconcile(job, &refs, chrono::Utc::now());
    if plan.delete_job {
        let req = http::Request::delete(format!("/apis/batch/v1/namespaces/{ns}/jobs/{}", job["metadata"]["name"].as_str().unwrap_or("")))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground", "preconditions": {"uid": job_uid}})).expect("json"))
            .expect("valid request");
        if let Err(e) = ttl.request::<Value>(req).await {
            tracing::debug!(error = %e, "deleting a finished job failed");
        }
        return None;
    }
    // The status first: a result is durable before its pod's finalizer goes.
    owner::put_status(client, "batch/v1", "jobs", job, plan.status.clone()).await;
    let by_name = |n: &str| pods.iter().find(|p| p["metadata"]["name"] == n);
    for n in &plan.release {
        if let Some(p) = by_name(n) {
            remove_tracking(client, p).await;
        }
    }
    for (ty, reason, msg) in &plan.events {
        recorder.record(job, ty, reason, msg.clone());
    }
    if !plan.create.is_empty() {
        exp.expect_creates(key, plan.create.len());
        let mut made = 0;
        // Indexed pods differ per index; NonIndexed ones share a template.
        let (names, err) = if plan.create.iter().all(Option::is_none) {
            owner::create_in_batches(
                client,
                &ns,
                &pod_from_template(job, None),
                plan.create.len(),
            )
            .await
        } else {
            let mut names = Vec::new();
            let mut err = None;
            for ix in &plan.create {
                let (n, e) =
                    owner::create_in_batches(client, &ns, &pod_from_template(job, *ix), 1).await;
                names.extend(n);
                if e.is_some() {
                    err = e;
                    break;
                }
            }
            (names, err)
        };
        for n in &names {
            made += 1;
            recorder.record(
                job,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {n}"),
            );
        }
        if let Some(e) = err {
            exp.lower_creates(key, plan.create.len() - made);
            recorder.record(
                job,
                "Warning",
                "FailedCreate",
                format!("Error creating: {e}"),
            );
        }
    }
    if !plan.delete.is_empty() {
        let victims: Vec<Value> = plan
            .delete
            .iter()
            .filter_map(|n| by_name(n).cloned())
            .collect();
        exp.expect_deletes(key, victims.iter().map(|p| uid(p).to_string()));
        for (p, r) in victims
            .iter()
            .zip(owner::delete_pods(client, &victims).await)
        {
            match r {
                Ok(()) => recorder.record(
                    job,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod_name(p)),
                ),
                Err(e) => {
                    exp.observed_delete(key, uid(p));
                    recorder.record(
                        job,
                        "Warning",
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                }
            }
        }
    }
    // Counting moves on once released pods are seen: look again soon while results wait.
    let pending = plan.status["uncountedTerminatedPods"]
        .as_object()
        .is_some_and(|m| {
            m.values()
                .any(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        });
    let again = plan.requeue.map(|s| Duration::from_secs(s.max(1) as u64));
    if pending {
        Some(again.map_or(Duration::from_secs(1), |a| a.min(Duration::from_secs(1))))
    } else {
        again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        let mut j = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": {"parallelism": 2, "completions": 5, "backoffLimit": 2, "completionMode": "NonIndexed",
                "template": {"metadata": {"labels": {"job-name": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {}});
        for (k, v) in spec.as_object().unwrap() {
            j["spec"][k] = v.clone();
        }
        j
    }

    fn pod(name: &str, phase: &str, tracked: bool, exit: Option<i64>) -> Value {
        let mut p = json!({"metadata": {"name": name, "uid": format!("{name}-uid"), "namespace": "default"},
            "status": {"phase": phase}});
        if tracked {
            p["metadata"]["finalizers"] = json!([TRACKING]);
        }
        if let Some(code) = exit {
            p["status"]["containerStatuses"] = json!([{"name": "c", "state": {"terminated": {"exitCode": code, "finishedAt": "2026-01-01T00:00:00Z"}}}]);
        }
        p
    }

    fn now() -> Time {
        "2026-01-01T00:00:05Z".parse().unwrap()
    }

    #[test]
    fn a_finished_job_waits_out_its_whole_ttl() {
        let mut j = job(json!({"ttlSecondsAfterFinished": 2}));
        j["status"] = json!({"startTime": "2026-01-01T00:00:00Z", "conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": "2026-01-01T00:00:05Z"}]});
        let at = |ms: i64| now() + chrono::Duration::milliseconds(ms);
        // 1.1 s left is not "1 s, truncated to 0": the job stays.
        let p = reconcile(&j, &[], at(900));
        assert!(!p.delete_job);
        assert_eq!(p.requeue, Some(2));
        let p = reconcile(&j, &[], at(1990));
        assert!(!p.delete_job);
        assert_eq!(p.requeue, Some(1));
        assert!(reconcile(&j, &[], at(2000)).delete_job);
    }

    #[test]
    fn starts_up_to_parallelism() {
        let p = reconcile(&job(json!({})), &[], now());
        assert_eq!(p.create.len(), 2);
        assert_eq!(p.status["startTime"], "2026-01-01T00:00:05Z");
        assert_eq!(p.status["active"], 0);
    }

    #[test]
    fn results_are_recorded_then_released_then_counted() {
        let j = job(json!({}));
        let done = pod("a", "Succeeded", true, Some(0));
        let run = pod("b", "Running", true, None);
        let p = reconcile(&j, &[&done, &run], now());
        assert_eq!(
            p.status["uncountedTerminatedPods"]["succeeded"],
            json!(["a-uid"])
        );
        assert!(p.release.is_empty(), "released before the status held it");
        assert_eq!(p.create.len(), 1);
        // Next sync: recorded, so it is released.
        let mut j2 = j.clone();
        j2["status"] = p.status.clone();
        let p2 = reconcile(&j2, &[&done, &run], now());
        assert_eq!(p2.release, vec!["a"]);
        assert_eq!(p2.status["succeeded"], 0);
        // Released: counted.
        let mut j3 = j2.clone();
        j3["status"] = p2.status.clone();
        let released = pod("a", "Succeeded", false, Some(0));
        let p3 = reconcile(&j3, &[&released, &run], now());
        assert_eq!(p3.status["succeeded"], 1);
        assert_eq!(p3.status["uncountedTerminatedPods"]["succeeded"], json!([]));
    }

    #[test]
    fn completes_and_fails_as_kubernetes() {
        let mut j = job(json!({"completions": 2}));
        j["status"] = json!({"succeeded": 2, "startTime": "2026-01-01T00:00:00Z"});
        let p = reconcile(&j, &[], now());
        let types: Vec<&str> = p.status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        assert!(p.status["completionTime"].is_string());

        let mut j = job(json!({}));
        j["status"] = json!({"failed": 3, "startTime": "2026-01-01T00:00:00Z"});
        let p = reconcile(&j, &[&pod("r", "Running", true, None)], now());
        assert_eq!(p.delete, vec!["r"]);
        let failed = p.status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .unwrap()
            .clone();
        assert_eq!(failed["reason"], "BackoffLimitExceeded");

        let mut j = job(json!({"activeDeadlineSeconds": 3}));
        j["status"] = json!({"startTime": "2026-01-01T00:00:00Z"});
        let p = reconcile(&j, &[], now());
        assert!(
            p.status["conditions"]
                .to_string()
                .contains("DeadlineExceeded")
        );
    }

    #[test]
    fn failures_back_off_before_replacement() {
        assert_eq!(
            (backoff(1), backoff(2), backoff(3), backoff(10)),
            (10, 20, 40, 360)
        );
        let j = job(json!({"parallelism": 1}));
        let f = pod("f", "Failed", true, Some(1));
        let p = reconcile(&j, &[&f], now());
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(5));
    }

    #[test]
    fn pod_failure_policy_rules() {
        let j = job(json!({"podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}));
        let p42 = pod("x", "Failed", true, Some(42));
        assert!(
            matches!(failure_action(&j, &p42), FailureAction::FailJob(m) if m.contains("exit code 42 matching FailJob rule at index 0"))
        );
        let mut evicted = pod("y", "Failed", true, Some(137));
        evicted["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(failure_action(&j, &evicted), FailureAction::Ignore);
        assert_eq!(
            failure_action(&j, &pod("z", "Failed", true, Some(1))),
            FailureAction::Count
        );
        let p = reconcile(&j, &[&p42], now());
        assert!(
            p.status["conditions"]
                .to_string()
                .contains("PodFailurePolicy")
        );
    }

    #[test]
    fn indexed_jobs_fill_missing_indexes() {
        let j = job(json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}));
        let mut done = pod("pi-1-x", "Succeeded", true, Some(0));
        done["metadata"]["annotations"] = json!({INDEX: "1"});
        let p = reconcile(&j, &[&done], now());
        assert_eq!(p.create, vec![Some(0), Some(2)]);
        assert_eq!(p.status["completedIndexes"], "1");
        let pod0 = pod_from_template(&j, Some(0));
        assert_eq!(pod0["metadata"]["generateName"], "pi-0-");
        assert_eq!(pod0["metadata"]["annotations"][INDEX], "0");
        assert_eq!(
            pod0["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
        assert_eq!(pod0["metadata"]["finalizers"][0], TRACKING);
        assert_eq!(format_indexes(&parse_indexes("0,1,2,4,6-7")), "0-2,4,6-7");
    }
}
