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
//! `decide::reconcile` is the pure decision over the typed Job and its pods' facts,
//! with `policy` (back-off, podFailurePolicy) and `pod` (the pods it makes); `run`
//! keeps Jobs and their pods and acts.

mod decide;
mod pod;
mod policy;
#[cfg(test)]
mod tests;

pub use decide::{Plan, format_indexes, is_finished, parse_indexes, reconcile};
pub use pod::pod_from_template;
pub use policy::{FailureAction, backoff, failure_action};

use crate::claim::{self, ADOPTION_RETRY};
use crate::control;
use crate::owner;
use crate::podfacts::PodFacts;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::informer::View;
use skiff_kube::reflect::{self, Change};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const TRACKING: &str = "batch.kubernetes.io/job-tracking";
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A Job as the informers hold it, typed with Kubernetes' defaults (applied on read as
/// Kubernetes does for stored objects, so a Job written before a default existed reads).
fn typed_job(raw: &Value) -> Option<Job> {
    let mut job = raw.clone();
    skiff_validation::default_object("batch", "jobs", &mut job);
    crate::typed(&job)
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
    let f = PodFacts::of(p);
    let all = f.metadata.finalizers.iter().flatten().copied();
    let keep: Vec<&str> = all.filter(|x| *x != TRACKING).collect();
    let finalizers = if keep.is_empty() {
        Value::Null
    } else {
        json!(keep)
    };
    let meta = json!({"finalizers": finalizers, "resourceVersion": f.metadata.resource_version});
    let (ns, name) = (f.metadata.namespace, f.metadata.name);
    let req = http::Request::patch(format!("/api/v1/namespaces/{ns}/pods/{name}"))
        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"metadata": meta})).expect("json"))
        .expect("valid request");
    if let Err(e) = client.request::<Value>(req).await {
        tracing::debug!(error = %e, pod = %name, "could not release a job pod");
    }
}

/// Pods whose Job is gone, and orphans no Job will adopt, keep no finalizer: nothing
/// is left to count them for.
async fn release_orphans(client: &kube::Client, st: &State) {
    if !st.jobs_listed {
        return;
    }
    let live: HashSet<&str> = st.jobs.values().map(|j| reflect::uid(&**j)).collect();
    for p in st.pods.all() {
        let f = PodFacts::of(p);
        if !f.has_finalizer(TRACKING) {
            continue;
        }
        let free = match owner::controller_of(p) {
            Some(c) => !live.contains(c.uid.as_str()),
            None => !st.jobs.values().any(|j| {
                reflect::names(&**j).0 == Some(f.metadata.namespace) && claim::selects(j, p)
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
    raw: &Value,
) -> Option<Duration> {
    let job = typed_job(raw)?;
    let selector = claim::OwnerSelector::of(raw);
    let Some(pods) = st
        .pods
        .claim_for(client, raw, &KIND, |p| selector.selects(p))
        .await
    else {
        return Some(ADOPTION_RETRY);
    };
    let refs: Vec<&Value> = pods.iter().collect();
    let plan = reconcile(&job, &refs, chrono::Utc::now());
    if plan.delete_job {
        expire(ttl, &job).await;
        return None;
    }
    // The status first: a result is durable before its pod's finalizer goes.
    let status = serde_json::to_value(&plan.status).expect("a status serializes");
    owner::put_status(client, "batch/v1", "jobs", raw, status).await;
    let by_name = |n: &str| pods.iter().find(|p| PodFacts::of(p).metadata.name == n);
    for p in plan.release.iter().filter_map(|n| by_name(n)) {
        remove_tracking(client, p).await;
    }
    for (ty, reason, msg) in &plan.events {
        recorder.record(raw, ty, reason, msg.clone());
    }
    let act = owner::Act {
        client,
        recorder,
        owner: raw,
        key,
    };
    create(&act, exp, &job, &plan.create).await;
    let victims: Vec<Value> = plan
        .delete
        .iter()
        .filter_map(|n| by_name(n).cloned())
        .collect();
    act.delete_pods(exp, &victims, "Error deleting").await;
    // Counting moves on once released pods are seen: look again soon while results wait.
    let uncounted = plan.status.uncounted_terminated_pods.as_ref();
    let lists = uncounted
        .into_iter()
        .flat_map(|u| [&u.succeeded, &u.failed]);
    let pending = lists.flatten().any(|l| !l.is_empty());
    let again = plan.requeue.map(|s| Duration::from_secs(s.max(1) as u64));
    let soon = Duration::from_secs(1);
    if pending {
        Some(again.map_or(soon, |a| a.min(soon)))
    } else {
        again
    }
}

/// Deletes a Job whose TTL after finishing ran out, as the ttl-after-finished
/// controller (its own identity), with its pods in the foreground.
async fn expire(ttl: &kube::Client, job: &Job) {
    let m = &job.metadata;
    let (ns, name) = (
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
    );
    let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground", "preconditions": {"uid": m.uid}});
    let req = http::Request::delete(format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("valid request");
    if let Err(e) = ttl.request::<Value>(req).await {
        tracing::debug!(error = %e, "deleting a finished job failed");
    }
}

/// Creates the Job's pods, one per index for an Indexed Job.
async fn create(
    act: &owner::Act<'_>,
    exp: &mut owner::Expectations,
    job: &Job,
    indexes: &[Option<i64>],
) {
    if indexes.is_empty() {
        return;
    }
    exp.expect_creates(act.key, indexes.len());
    let ns = job.metadata.namespace.as_deref().unwrap_or("");
    let pod = |ix| serde_json::to_value(pod_from_template(job, ix)).expect("a pod serializes");
    // Indexed pods differ per index; NonIndexed ones share a template.
    let (names, err) = if indexes.iter().all(Option::is_none) {
        owner::create_in_batches(act.client, ns, &pod(None), indexes.len()).await
    } else {
        let mut names = Vec::new();
        let mut err = None;
        for ix in indexes {
            let (n, e) = owner::create_in_batches(act.client, ns, &pod(*ix), 1).await;
            names.extend(n);
            if e.is_some() {
                err = e;
                break;
            }
        }
        (names, err)
    };
    for n in &names {
        act.event("Normal", "SuccessfulCreate", format!("Created pod: {n}"));
    }
    if let Some(e) = err {
        exp.lower_creates(act.key, indexes.len() - names.len());
        act.event("Warning", "FailedCreate", format!("Error creating: {e}"));
    }
}
