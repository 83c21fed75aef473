//! An HPA's Resource and ContainerResource metrics against what the API holds: the
//! target's pods (by its Scale's selector) and their PodMetrics from `metrics.k8s.io`,
//! made into the rows [`super::replicas`] calculates from; and what the status says of
//! each (`currentMetrics`, the names conditions and events use). Pure.

use super::replicas::{self, Target};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec, MetricTarget};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_validation::quantity;
use std::collections::BTreeMap;

/// One metric the HPA can compute here.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// `cpu` or `memory`.
    pub resource: String,
    /// ContainerResource: the container measured; Resource: the whole pod.
    pub container: Option<String>,
    pub target: Target,
}

/// Why a metric cannot be computed: (ScalingActive reason, message).
pub type Unavailable = (&'static str, String);

/// The PodMetrics fields read here.
#[derive(Debug, Clone, Deserialize)]
pub struct PodMetrics {
    pub metadata: Named,
    pub timestamp: String,
    pub window: String,
    pub containers: Vec<ContainerUsage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PodMetricsList {
    pub items: Vec<PodMetrics>,
}

/// The spec's metrics (none: cpu at 80 %, the API's default), each computable here or why not.
pub fn metrics(hpa: &HorizontalPodAutoscaler) -> Vec<Result<Metric, Unavailable>> {
    let specs = hpa
        .spec
        .as_ref()
        .and_then(|s| s.metrics.clone())
        .unwrap_or_default();
    if specs.is_empty() {
        return vec![Ok(Metric {
            resource: "cpu".into(),
            container: None,
            target: Target::Utilization(80),
        })];
    }
    specs.iter().map(metric).collect()
}

fn metric(m: &MetricSpec) -> Result<Metric, Unavailable> {
    let (resource, container, target) = match m.type_.as_str() {
        "Resource" => {
            let r = m.resource.as_ref().ok_or((
                "InvalidMetricSourceType",
                "a Resource metric needs `resource`".to_string(),
            ))?;
            (r.name.clone(), None, &r.target)
        }
        "ContainerResource" => {
            let r = m.container_resource.as_ref().ok_or((
                "InvalidMetricSourceType",
                "a ContainerResource metric needs `containerResource`".to_string(),
            ))?;
            (r.name.clone(), Some(r.container.clone()), &r.target)
        }
        "Pods" => {
            let name = m.pods.as_ref().map(|p| p.metric.name.as_str());
            return Err(no_api("FailedGetPodsMetric", "metric", name, "custom"));
        }
        "Object" => {
            let name = m.object.as_ref().map(|p| p.metric.name.as_str());
            return Err(no_api("FailedGetObjectMetric", "metric", name, "custom"));
        }
        _ => {
            let name = m.external.as_ref().map(|p| p.metric.name.as_str());
            return Err(no_api(
                "FailedGetExternalMetric",
                "external metric",
                name,
                "external",
            ));
        }
    };
    Ok(Metric {
        target: target_of(target, &resource)?,
        resource,
        container,
    })
}

/// A metric of an API this cluster does not serve.
fn no_api(reason: &'static str, what: &str, name: Option<&str>, api: &str) -> Unavailable {
    let name = name.unwrap_or_default();
    (
        reason,
        format!(
            "the HPA was unable to compute the replica count: unable to get {what} {name}: no {api} metrics API is served"
        ),
    )
}

fn target_of(t: &MetricTarget, resource: &str) -> Result<Target, Unavailable> {
    match (t.type_.as_str(), t.average_utilization, &t.average_value) {
        ("Utilization", Some(u), _) => Ok(Target::Utilization(i64::from(u))),
        ("AverageValue", _, Some(v)) => quantity::parse(&v.0)
            .map(|q| Target::AverageValue(q.millis() as i64))
            .map_err(|e| {
                (
                    "InvalidMetricSourceType",
                    format!("invalid target for {resource}: {e}"),
                )
            }),
        (other, _, _) => Err((
            "InvalidMetricSourceType",
            format!(
                "the HPA was unable to compute the replica count: invalid {resource} target type {other:?} (Utilization or AverageValue)"
            ),
        )),
    }
}

/// How conditions and events name a metric, as upstream does.
pub fn describe(m: &Metric) -> String {
    let kind = if m.container.is_some() {
        "container resource"
    } else {
        "resource"
    };
    match m.target {
        Target::Utilization(_) => {
            format!("{} {kind} utilization (percentage of request)", m.resource)
        }
        Target::AverageValue(_) => format!("{} {kind}", m.resource),
    }
}

fn utc(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

fn milli(q: &str) -> Option<i64> {
    quantity::parse(q).ok().map(|q| q.millis() as i64)
}

/// A Go duration as metav1.Duration writes it (`15.002s`, `1m0s`).
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut num = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'h' | 'm' | 's' => {
                let v: f64 = num.parse().ok()?;
                total += v * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    num.is_empty()
        .then(|| Duration::milliseconds((total * 1e3) as i64))
}

/// The rows for `m` of each pod.
pub fn rows(m: &Metric, pods: &[Pod], usage: &[PodMetrics]) -> Vec<replicas::Pod> {
    let by_name: BTreeMap<&str, &PodMetrics> = usage
        .iter()
        .map(|u| (u.metadata.name.as_str(), u))
        .collect();
    let counts = |name: &str| m.container.as_deref().is_none_or(|c| c == name);
    pods.iter()
        .map(|pod| {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| {
                    (
                        c.status == "True",
                        c.last_transition_time
                            .as_ref()
                            .map(|t| utc(&t.0))
                            .unwrap_or_default(),
                    )
                });
            let request = pod.spec.as_ref().map(|s| {
                s.containers
                    .iter()
                    .filter(|c| counts(&c.name))
                    .map(|c| {
                        let q = c.resources.as_ref()?.requests.as_ref()?.get(&m.resource)?;
                        milli(&q.0)
                    })
                    .sum::<Option<i64>>()
            });
            let unrequested = pod.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .filter(|c| counts(&c.name))
                    .find(|c| {
                        c.resources
                            .as_ref()
                            .and_then(|r| r.requests.as_ref())
                            .is_none_or(|r| !r.contains_key(&m.resource))
                    })
                    .map(|c| c.name.clone())
            });
            let metric = by_name.get(name.as_str()).and_then(|u| {
                let value: i64 = u
                    .containers
                    .iter()
                    .filter(|c| counts(&c.name))
                    .map(|c| c.usage.get(&m.resource).and_then(|q| milli(q)))
                    .sum::<Option<i64>>()?;
                Some(replicas::Metric {
                    value,
                    timestamp: DateTime::parse_from_rfc3339(&u.timestamp).ok()?.into(),
                    window: go_duration(&u.window)?,
                })
            });
            replicas::Pod {
                name,
                phase: status.phase.clone().unwrap_or_default(),
                deleting: pod.metadata.deletion_timestamp.is_some(),
                start_time: status.start_time.as_ref().map(|t| utc(&t.0)),
                ready,
                request: request.flatten(),
                unrequested,
                metric,
            }
        })
        .collect()
}

/// `status.currentMetrics[]` for `m` at what was measured.
pub fn current(m: &Metric, p: &replicas::Proposal) -> Value {
    let mut cur = json!({"averageValue": quantity_milli(p.average, &m.resource)});
    if let Some(u) = p.utilization {
        cur["averageUtilization"] = json!(u);
    }
    match &m.container {
        None => json!({"type": "Resource", "resource": {"name": m.resource, "current": cur}}),
        Some(c) => {
            json!({"type": "ContainerResource", "containerResource": {"name": m.resource, "container": c, "current": cur}})
        }
    }
}

/// Milli-units as a quantity: CPU in millicores, memory in bytes (rounded up).
fn quantity_milli(v: i64, resource: &str) -> String {
    if resource == "cpu" {
        format!("{v}m")
    } else if v % 1000 == 0 {
        format!("{}", v / 1000)
    } else {
        format!("{v}m")
    }
}

/// The first Unavailable, once every metric is.
pub fn first_error(all: &[Result<Metric, Unavailable>]) -> Option<Unavailable> {
    all.iter().find_map(|m| m.as_ref().err().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_pods_and_their_metrics() {
        let pods: Vec<Pod> = serde_json::from_value(json!([
            {"metadata": {"name": "a"}, "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "side", "resources": {"requests": {"cpu": "100m"}}}]},
             "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}},
            {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Pending"}},
        ]))
        .unwrap();
        let usage: PodMetricsList = serde_json::from_value(json!({"items": [
            {"metadata": {"name": "a"}, "timestamp": "2026-01-01T01:00:00Z", "window": "15.5s",
             "containers": [{"name": "app", "usage": {"cpu": "150000000n", "memory": "1Mi"}},
                            {"name": "side", "usage": {"cpu": "10m", "memory": "1Mi"}}]},
        ]}))
        .unwrap();
        let cpu = Metric {
            resource: "cpu".into(),
            container: None,
            target: Target::Utilization(50),
        };
        let r = rows(&cpu, &pods, &usage.items);
        assert_eq!(r[0].request, Some(300));
        let m = r[0].metric.unwrap();
        assert_eq!((m.value, m.window), (160, Duration::milliseconds(15_500)));
        assert_eq!(r[0].ready.map(|r| r.0), Some(true));
        assert_eq!(
            (r[1].request, r[1].metric.is_none(), r[1].phase.as_str()),
            (None, true, "Pending")
        );
        let app = Metric {
            container: Some("app".into()),
            ..cpu
        };
        let r = rows(&app, &pods, &usage.items);
        assert_eq!((r[0].request, r[0].metric.unwrap().value), (Some(200), 150));
        assert_eq!(
            describe(&app),
            "cpu container resource utilization (percentage of request)"
        );
    }

    #[test]
    fn spec_metrics_and_their_defaults() {
        let hpa: HorizontalPodAutoscaler =
            serde_json::from_value(json!({"spec": {"maxReplicas": 3,
            "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}))
            .unwrap();
        assert_eq!(
            metrics(&hpa),
            vec![Ok(Metric {
                resource: "cpu".into(),
                container: None,
                target: Target::Utilization(80)
            })]
        );
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({"spec": {"maxReplicas": 3,
            "scaleTargetRef": {"kind": "Deployment", "name": "d"}, "metrics": [
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}]}})).unwrap();
        let all = metrics(&hpa);
        assert_eq!(
            all[0],
            Ok(Metric {
                resource: "memory".into(),
                container: None,
                target: Target::AverageValue(64 * 1024 * 1024 * 1000)
            })
        );
        assert_eq!(all[1].as_ref().unwrap_err().0, "FailedGetPodsMetric");
        assert_eq!(go_duration("1m0.5s"), Some(Duration::milliseconds(60_500)));
    }
}
