//! The HorizontalPodAutoscaler controller (autoscaling/v2), as Kubernetes' every 15 s:
//! the target's `scale` subresource is read, a size outside minReplicas/maxReplicas is
//! brought inside them, and otherwise the metrics decide: Resource and
//! ContainerResource metrics from `metrics.k8s.io` for the pods of the Scale's selector
//! ([`metrics`]), each metric's proposal by upstream's calculation ([`replicas`]), the
//! largest normalized by the HPA's behavior or the defaults ([`behavior`]). Pods, Object
//! and External metrics are reported unavailable (no custom or external metrics API),
//! in Kubernetes' own conditions and words.

pub mod behavior;
pub mod metrics;
pub mod replicas;

use crate::discovered::Kinds;
use crate::gc::object_path;
use crate::owner;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use skiff_kube::events::Recorder;
use skiff_kube::reflect::{self, Change};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// How often discovery is asked again for a target kind not known yet.
const REDISCOVER: Duration = Duration::from_secs(10);
/// HPAs synced at once (upstream's `--concurrent-horizontal-pod-autoscaler-syncs`): a
/// sync is a few requests, each waited for, so one at a time would leave a pass over
/// a hundred HPAs mostly waiting.
const CONCURRENT_SYNCS: usize = 5;

/// What one sync decides from the target's current size.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub desired: i64,
    /// Why it is rescaled, in the event's words.
    pub rescale_reason: Option<String>,
    /// (status, reason, message) of ScalingActive.
    pub active: (&'static str, &'static str, String),
    /// (status, reason, message) of ScalingLimited.
    pub limited: (&'static str, &'static str, &'static str),
}

/// What the target's size alone decides: nothing to do at zero replicas, or a size
/// outside the bounds brought inside them; `None` when the metrics decide.
pub fn decide(hpa: &Value, current: i64) -> Option<Decision> {
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(min);
    if current == 0 && min != 0 {
        return Some(Decision {
            desired: 0,
            rescale_reason: None,
            active: (
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            ),
            limited: behavior::WITHIN,
        });
    }
    let (desired, reason, limited) = if current > max {
        (
            max,
            "Current number of replicas above Spec.MaxReplicas",
            behavior::TOO_MANY,
        )
    } else if current < min {
        (
            min,
            "Current number of replicas below Spec.MinReplicas",
            behavior::TOO_FEW,
        )
    } else {
        return None;
    };
    Some(Decision {
        desired,
        rescale_reason: Some(reason.into()),
        active: (
            "True",
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count".into(),
        ),
        limited,
    })
}

fn set(conds: &mut Vec<Value>, ty: &str, status: &str, reason: &str, message: &str, now: &str) {
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conds.push(json!({"type": ty, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})),
    }
}

/// Runs the controller until `shutdown`.
pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let mut rx = reflect::watch_values(
        client.clone(),
        "/apis/autoscaling/v2/horizontalpodautoscalers",
        None,
    );
    let recorder = Recorder::new(client.clone(), "horizontal-pod-autoscaler");
    let targets = Targets::default();
    let mut hpas: HashMap<String, Arc<Value>> = HashMap::new();
    let mut histories: HashMap<String, behavior::History> = HashMap::new();
    let mut tick = tokio::time::interval(SYNC_PERIOD);
    loop {
        let changed: Vec<String> = tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { return };
                let mut keys = absorb(&mut hpas, &mut histories, c);
                // What came meanwhile (a hundred HPAs created at once) is synced together,
                // CONCURRENT_SYNCS at a time, not one change per turn.
                while let Ok(c) = rx.try_recv() {
                    keys.extend(absorb(&mut hpas, &mut histories, c));
                }
                keys.sort();
                keys.dedup();
                keys
            }
            _ = tick.tick() => hpas.keys().cloned().collect(),
            _ = shutdown.changed() => return,
        };
        let work = changed.into_iter().filter_map(|key| {
            let hpa = hpas.get(&key)?.clone();
            let history = histories.remove(&key).unwrap_or_default();
            Some((key, hpa, history))
        });
        let synced: Vec<(String, behavior::History)> = futures::stream::iter(work)
            .map(|(key, hpa, mut history)| {
                let (client, recorder, targets) = (&client, &recorder, &targets);
                async move {
                    sync(client, recorder, targets, &hpa, &mut history).await;
                    (key, history)
                }
            })
            .buffer_unordered(CONCURRENT_SYNCS)
            .collect()
            .await;
        histories.extend(synced);
    }
}

/// Takes in one change; the keys of the HPAs it asks to sync now. A new or respecified
/// HPA is acted on at once; its status writes (ours) wait for the period, as upstream's
/// queue makes every HPA wait: acting again before new metrics would scale twice on one
/// reading.
fn absorb(
    hpas: &mut HashMap<String, Arc<Value>>,
    histories: &mut HashMap<String, behavior::History>,
    c: Change,
) -> Vec<String> {
    let respecified = |o: &Value| {
        let generation = o["metadata"]["generation"].as_i64();
        hpas.get(&reflect::key(o))
            .is_none_or(|old| old["metadata"]["generation"].as_i64() != generation)
    };
    let keys = match &c {
        Change::Reset(items) => items.iter().map(reflect::key).collect(),
        Change::Apply(o) if respecified(o) => vec![reflect::key(o)],
        Change::Apply(_) | Change::Delete(_) => Vec::new(),
    };
    reflect::apply_to(hpas, c);
    histories.retain(|k, _| hpas.contains_key(k));
    keys
}

/// The kinds an HPA may target: built-ins, and custom kinds with a scale subresource
/// as discovery finds them (asked again at most every [`REDISCOVER`] for an unknown one).
#[derive(Default)]
struct Targets {
    kinds: Kinds,
    asked: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl Targets {
    /// The path of the target's `scale` subresource, if its kind has one.
    async fn scale_path(&self, client: &kube::Client, target: &Value, ns: &str) -> Option<String> {
        let api_version = target["apiVersion"].as_str().unwrap_or("");
        let kind = target["kind"].as_str().unwrap_or("");
        let name = target["name"].as_str().unwrap_or("");
        let r = match self.kinds.get(api_version, kind) {
            Some(r) => r,
            None => {
                let mut asked = self.asked.lock().await;
                if asked.is_none_or(|at| at.elapsed() >= REDISCOVER) {
                    *asked = Some(std::time::Instant::now());
                    if let Err(e) = self.kinds.refresh(client).await {
                        tracing::debug!(error = %e, "HPA discovery failed");
                    }
                }
                self.kinds.get(api_version, kind)?
            }
        };
        r.has_subresource(skiff_types::registry::Subresource::Scale)
            .then(|| format!("{}/scale", object_path(&r, Some(ns), name)))
    }
}

async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    targets: &Targets,
    hpa: &Value,
    history: &mut behavior::History,
) {
    let at = chrono::Utc::now();
    let now = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ns = hpa["metadata"]["namespace"].as_str().unwrap_or("");
    let target = &hpa["spec"]["scaleTargetRef"];
    let mut conds: Vec<Value> = hpa["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut status = json!({
        "currentReplicas": hpa["status"]["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": hpa["status"]["desiredReplicas"].as_i64().unwrap_or(0),
    });
    if let Some(t) = hpa["status"]["lastScaleTime"].as_str() {
        status["lastScaleTime"] = json!(t);
    }
    let kind = target["kind"].as_str().unwrap_or("");
    let scale_path = targets.scale_path(client, target, ns).await;
    let scale = match &scale_path {
        Some(p) => {
            let req = http::Request::get(p.as_str())
                .body(Vec::new())
                .expect("valid request");
            client.request::<Value>(req).await.map_err(|e| match e {
                kube::Error::Api(s) => s.message,
                e => e.to_string(),
            })
        }
        None => Err(format!("no scale subresource for {kind}")),
    };
    match scale {
        Err(e) => {
            let msg =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            set(
                &mut conds,
                "AbleToScale",
                "False",
                "FailedGetScale",
                &msg,
                &now,
            );
            recorder.record(hpa, "Warning", "FailedGetScale", e);
        }
        Ok(scale) => {
            let current = scale["spec"]["replicas"].as_i64().unwrap_or(0);
            let mut stabilized = None;
            let d = match decide(hpa, current) {
                Some(d) => d,
                None => {
                    let by = by_metrics(client, hpa, ns, &scale, current, history, at).await;
                    if let Some(m) = by.current_metrics {
                        status["currentMetrics"] = json!(m);
                    }
                    stabilized = by.stabilized;
                    by.decision
                }
            };
            status["currentReplicas"] =
                json!(scale["status"]["replicas"].as_i64().unwrap_or(current));
            status["desiredReplicas"] = json!(d.desired);
            let mut able = (
                "True",
                "ReadyForNewScale",
                "recommended size matches current size".to_string(),
            );
            if let Some((reason, msg)) = stabilized {
                able = ("True", reason, msg.to_string());
            }
            if let (Some(reason), Some(path)) = (d.rescale_reason.as_deref(), &scale_path)
                && d.desired != current
            {
                // An update of the Scale read above, as Kubernetes' HPA writes it (its
                // role may get and update scales, not patch them); a conflict is
                // retried at the next sync.
                let mut body = scale.clone();
                body["spec"]["replicas"] = json!(d.desired);
                match owner::send(
                    client,
                    http::Method::PUT,
                    path.clone(),
                    "application/json",
                    &body,
                )
                .await
                {
                    Ok(_) => {
                        history.rescaled(current, d.desired, at);
                        recorder.record(
                            hpa,
                            "Normal",
                            "SuccessfulRescale",
                            format!("New size: {}; reason: {reason}", d.desired),
                        );
                        status["lastScaleTime"] = json!(now);
                        able = (
                            "True",
                            "SucceededRescale",
                            format!(
                                "the HPA controller was able to update the target scale to {}",
                                d.desired
                            ),
                        );
                    }
                    Err(e) => {
                        recorder.record(
                            hpa,
                            "Warning",
                            "FailedRescale",
                            format!("New size: {}; reason: {reason}; error: {e}", d.desired),
                        );
                        able = (
                            "False",
                            "FailedUpdateScale",
                            format!(
                                "the HPA controller was unable to update the target scale: {e}"
                            ),
                        );
                    }
                }
            }
            set(&mut conds, "AbleToScale", able.0, able.1, &able.2, &now);
            // Told once per change, not every sync: events here are not aggregated.
            let was = conds
                .iter()
                .find(|c| c["type"] == "ScalingActive")
                .map(|c| c["reason"].as_str().unwrap_or("").to_string());
            set(
                &mut conds,
                "ScalingActive",
                d.active.0,
                d.active.1,
                &d.active.2,
                &now,
            );
            if d.active.0 == "False"
                && d.active.1 != "ScalingDisabled"
                && was.as_deref() != Some(d.active.1)
            {
                recorder.record(
                    hpa,
                    "Warning",
                    "FailedComputeMetricsReplicas",
                    d.active.2.clone(),
                );
            }
            set(
                &mut conds,
                "ScalingLimited",
                d.limited.0,
                d.limited.1,
                d.limited.2,
                &now,
            );
        }
    }
    status["conditions"] = json!(conds);
    owner::put_status(
        client,
        "autoscaling/v2",
        "horizontalpodautoscalers",
        hpa,
        status,
    )
    .await;
}

/// What the metrics decided, with what the status shows of them.
struct ByMetrics {
    decision: Decision,
    current_metrics: Option<Vec<Value>>,
    /// AbleToScale's reason and message when stabilization held the size.
    stabilized: Option<(&'static str, &'static str)>,
}

/// The replicas the HPA's metrics ask for at `current`, normalized, or why none.
async fn by_metrics(
    client: &kube::Client,
    hpa: &Value,
    ns: &str,
    scale: &Value,
    current: i64,
    history: &mut behavior::History,
    now: chrono::DateTime<chrono::Utc>,
) -> ByMetrics {
    let unable = |(reason, message): metrics::Unavailable| ByMetrics {
        decision: Decision {
            desired: current,
            rescale_reason: None,
            active: ("False", reason, message),
            limited: behavior::WITHIN,
        },
        current_metrics: None,
        stabilized: None,
    };
    let typed: HorizontalPodAutoscaler = match serde_json::from_value(hpa.clone()) {
        Ok(h) => h,
        Err(e) => return unable(("InvalidMetricSourceType", e.to_string())),
    };
    let Some(selector) = scale["status"]["selector"]
        .as_str()
        .filter(|s| !s.is_empty())
    else {
        return unable((
            "InvalidSelector",
            "the HPA target's scale is missing a selector".into(),
        ));
    };
    let all = metrics::metrics(&typed);
    let computable: Vec<&metrics::Metric> = all.iter().filter_map(|m| m.as_ref().ok()).collect();
    if computable.is_empty() {
        return unable(metrics::first_error(&all).expect("a metric or its error"));
    }
    let (pods, usage) = match inputs(client, ns, selector).await {
        Ok(x) => x,
        Err(e) => {
            let name = &computable[0].resource;
            return unable((
                "FailedGetResourceMetric",
                format!(
                    "the HPA was unable to compute the replica count: failed to get {name} utilization: unable to get metrics for resource {name}: unable to fetch metrics from resource metrics API: {e}"
                ),
            ));
        }
    };
    if usage.is_empty() {
        let name = &computable[0].resource;
        return unable((
            "FailedGetResourceMetric",
            format!(
                "the HPA was unable to compute the replica count: failed to get {name} utilization: unable to get metrics for resource {name}: no metrics returned from resource metrics API"
            ),
        ));
    }
    let mut proposals = Vec::new();
    let mut failed = metrics::first_error(&all);
    for m in computable {
        let rows = metrics::rows(m, &pods, &usage);
        match replicas::replicas(
            current,
            m.target,
            &m.resource,
            &rows,
            &Default::default(),
            now,
        ) {
            Ok(p) => proposals.push((m, p)),
            Err(e) => {
                let why = format!(
                    "the HPA was unable to compute the replica count: failed to get {} utilization: {e}",
                    m.resource
                );
                failed.get_or_insert(("FailedGetResourceMetric", why));
            }
        }
    }
    let Some((best, top)) = proposals.iter().max_by_key(|(_, p)| p.replicas) else {
        return unable(failed.expect("an error for each metric"));
    };
    // With a metric missing, never scale down on the others alone.
    let proposed = if failed.is_some() {
        top.replicas.max(current)
    } else {
        top.replicas
    };
    let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(min);
    let rules = typed
        .spec
        .as_ref()
        .and_then(|s| s.behavior.as_ref())
        .map(behavior_of);
    let out = history.normalize(rules.as_ref(), current, proposed, (min, max), now);
    let described = metrics::describe(best);
    let rescale_reason = match out.desired.cmp(&current) {
        std::cmp::Ordering::Greater => Some(format!("{described} above target")),
        std::cmp::Ordering::Less => Some("All metrics below target".to_string()),
        std::cmp::Ordering::Equal => None,
    };
    ByMetrics {
        decision: Decision {
            desired: out.desired,
            rescale_reason,
            active: (
                "True",
                "ValidMetricFound",
                format!(
                    "the HPA was able to successfully calculate a replica count from {described}"
                ),
            ),
            limited: out.limited,
        },
        current_metrics: Some(
            proposals
                .iter()
                .map(|(m, p)| metrics::current(m, p))
                .collect(),
        ),
        stabilized: out.stabilized,
    }
}

/// The target's pods and their PodMetrics.
async fn inputs(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<(Vec<Pod>, Vec<metrics::PodMetrics>), String> {
    let lp = kube::api::ListParams::default().labels(selector);
    let pods = kube::Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| e.to_string())?
        .items;
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("labelSelector", selector)
        .finish();
    let req = http::Request::get(format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?{q}"
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    let usage = client
        .request::<metrics::PodMetricsList>(req)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => s.message,
            e => e.to_string(),
        })?;
    Ok((pods, usage.items))
}

/// The HPA's behavior, each field the API left out at Kubernetes' default.
fn behavior_of(b: &HorizontalPodAutoscalerBehavior) -> behavior::Behavior {
    let rules = |r: Option<&HPAScalingRules>, d: behavior::Rules| {
        let Some(r) = r else { return d };
        behavior::Rules {
            window_seconds: r
                .stabilization_window_seconds
                .map_or(d.window_seconds, i64::from),
            select: match r.select_policy.as_deref() {
                Some("Min") => behavior::Select::Min,
                Some("Disabled") => behavior::Select::Disabled,
                _ => behavior::Select::Max,
            },
            policies: match &r.policies {
                Some(ps) => ps
                    .iter()
                    .map(|p| behavior::Policy {
                        kind: if p.type_ == "Pods" {
                            behavior::PolicyKind::Pods
                        } else {
                            behavior::PolicyKind::Percent
                        },
                        value: i64::from(p.value),
                        period_seconds: i64::from(p.period_seconds),
                    })
                    .collect(),
                None => d.policies,
            },
        }
    };
    behavior::Behavior {
        up: rules(b.scale_up.as_ref(), behavior::Rules::default_up()),
        down: rules(b.scale_down.as_ref(), behavior::Rules::default_down()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(min: i64, max: i64) -> Value {
        json!({"spec": {"minReplicas": min, "maxReplicas": max, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
    }

    #[test]
    fn bounds_first_then_metrics() {
        let d = decide(&hpa(3, 5), 1).unwrap();
        assert_eq!((d.desired, d.limited.1), (3, "TooFewReplicas"));
        assert_eq!(
            d.rescale_reason,
            Some("Current number of replicas below Spec.MinReplicas".into())
        );
        let d = decide(&hpa(3, 5), 9).unwrap();
        assert_eq!((d.desired, d.limited.1), (5, "TooManyReplicas"));
        // Inside the bounds the metrics decide (`by_metrics`; their failures are
        // `metrics::Unavailable` and the kubectl autoscaler tests').
        assert_eq!(decide(&hpa(3, 5), 4), None);
        assert_eq!(decide(&hpa(3, 5), 0).unwrap().active.1, "ScalingDisabled");
    }
}
