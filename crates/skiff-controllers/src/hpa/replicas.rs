//! How many replicas one Resource or ContainerResource metric asks for, as upstream's
//! replica calculator decides it: `ceil(current × usage / target)` over the pods that
//! count, left alone within the tolerance; pods being deleted or failed ignored, pending
//! ones and (for CPU) ones not yet ready counted as unready; then, when some pods lack
//! metrics or are unready, the answer checked again as if missing pods used 100 % of
//! their request on a scale-down and 0 on a scale-up, and unready pods 0 on a
//! scale-up — and no rescale when that would reverse the direction. Pure.

use chrono::{DateTime, Duration, Utc};

/// One pod of the target, as the calculation reads it. Quantities in milli-units.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    /// `Pending`, `Running`, `Failed`, …
    pub phase: String,
    pub deleting: bool,
    pub start_time: Option<DateTime<Utc>>,
    /// The Ready condition: whether true, and when it last changed.
    pub ready: Option<(bool, DateTime<Utc>)>,
    /// The sum of its containers' requests for the resource; `None` when one has none.
    pub request: Option<i64>,
    /// The first container without a request, for the error.
    pub unrequested: Option<String>,
    pub metric: Option<Metric>,
}

/// A pod's usage from the metrics API.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub value: i64,
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i64),
    /// Per pod, milli-units.
    AverageValue(i64),
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay: Duration,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            tolerance: 0.1,
            cpu_initialization_period: Duration::minutes(5),
            initial_readiness_delay: Duration::seconds(30),
        }
    }
}

/// What one metric proposes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub replicas: i64,
    /// Percent of requests (Utilization targets).
    pub utilization: Option<i64>,
    /// Average usage per pod, milli-units.
    pub average: i64,
}

/// Pods whose metrics count, with their usage and request.
struct Counted {
    samples: Vec<(i64, i64)>,
    ready: usize,
    unready: Vec<i64>,
    missing: Vec<i64>,
}

fn group(pods: &[Pod], cpu: bool, p: &Params, now: DateTime<Utc>) -> Counted {
    let mut c = Counted {
        samples: Vec::new(),
        ready: 0,
        unready: Vec::new(),
        missing: Vec::new(),
    };
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            continue;
        }
        let request = pod.request;
        if pod.phase == "Pending" {
            c.unready.push(request.unwrap_or(0));
            continue;
        }
        let Some(m) = pod.metric else {
            c.missing.push(request.unwrap_or(0));
            continue;
        };
        if cpu && unready_for_cpu(pod, &m, p, now) {
            c.unready.push(request.unwrap_or(0));
            continue;
        }
        c.ready += 1;
        c.samples.push((m.value, request.unwrap_or(0)));
    }
    c
}

/// CPU of a pod that is starting (or never got ready) says little about its load.
fn unready_for_cpu(pod: &Pod, m: &Metric, p: &Params, now: DateTime<Utc>) -> bool {
    let (Some((ready, changed)), Some(started)) = (pod.ready, pod.start_time) else {
        return true;
    };
    if started + p.cpu_initialization_period > now {
        // Unready, or not one whole metric window since it became ready.
        !ready || m.timestamp < changed + m.window
    } else {
        // Unready and never ready since it started.
        !ready && started + p.initial_readiness_delay > changed
    }
}

/// (usage ratio, utilization %, average) of `samples` (usage, request).
fn ratio(samples: &[(i64, i64)], target: Target) -> Result<(f64, Option<i64>, i64), String> {
    let n = samples.len() as i64;
    let usage: i64 = samples.iter().map(|s| s.0).sum();
    let average = usage / n.max(1);
    match target {
        Target::Utilization(pct) => {
            let requests: i64 = samples.iter().map(|s| s.1).sum();
            if requests == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = usage * 100 / requests;
            Ok((utilization as f64 / pct as f64, Some(utilization), average))
        }
        Target::AverageValue(v) => Ok((usage as f64 / (v as f64 * n as f64), None, average)),
    }
}

/// The replicas `target` asks for of a target now at `current` replicas.
pub fn replicas(
    current: i64,
    target: Target,
    resource: &str,
    pods: &[Pod],
    p: &Params,
    now: DateTime<Utc>,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    if let Target::Utilization(_) = target
        && let Some(pod) = pods.iter().find(|p| p.request.is_none())
    {
        let container = pod.unrequested.as_deref().unwrap_or("");
        return Err(format!(
            "missing request for {resource} in container {container} of Pod {}",
            pod.name
        ));
    }
    let mut c = group(pods, resource == "cpu", p, now);
    if c.samples.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (usage_ratio, utilization, average) = ratio(&c.samples, target)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let scale_up_with_unready = !c.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && c.missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= p.tolerance {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * c.ready as f64).ceil() as i64));
    }
    // Pods without metrics: as much as they may use on the way down, nothing on the way up.
    for request in &c.missing {
        let assumed = match target {
            Target::Utilization(pct) if usage_ratio < 1.0 => request * pct.max(100) / 100,
            Target::AverageValue(v) if usage_ratio < 1.0 => v,
            _ => 0,
        };
        c.samples.push((assumed, *request));
    }
    if scale_up_with_unready {
        c.samples.extend(c.unready.iter().map(|r| (0, *r)));
    }
    let (new_ratio, _, _) = ratio(&c.samples, target)?;
    let reversed = (usage_ratio < 1.0 && new_ratio > 1.0) || (usage_ratio > 1.0 && new_ratio < 1.0);
    if (1.0 - new_ratio).abs() <= p.tolerance || reversed {
        return Ok(proposal(current));
    }
    let new = (new_ratio * c.samples.len() as f64).ceil() as i64;
    if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .into()
    }

    /// A pod running for an hour, ready for as long, using `usage` of `request` millicores.
    fn pod(name: &str, request: i64, usage: Option<i64>) -> Pod {
        let hour_ago = now() - Duration::hours(1);
        Pod {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            start_time: Some(hour_ago),
            ready: Some((true, hour_ago)),
            request: Some(request),
            unrequested: None,
            metric: usage.map(|value| Metric {
                value,
                timestamp: now() - Duration::seconds(10),
                window: Duration::seconds(15),
            }),
        }
    }

    fn calc(current: i64, target: Target, pods: &[Pod]) -> Result<Proposal, String> {
        replicas(current, target, "cpu", pods, &Params::default(), now())
    }

    #[test]
    fn the_documented_ratio() {
        // "if the current metric value is 200m, and the desired value is 100m, the
        // number of replicas will be doubled"; 50m of 100m halves it.
        let two = [pod("a", 1000, Some(200)), pod("b", 1000, Some(200))];
        assert_eq!(
            calc(2, Target::AverageValue(100), &two).unwrap().replicas,
            4
        );
        let four: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), 1000, Some(50)))
            .collect();
        assert_eq!(
            calc(4, Target::AverageValue(100), &four).unwrap().replicas,
            2
        );
        // Utilization: 80 % of requests against 50 % → ceil(3 × 1.6) = 5.
        let three: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("p{i}"), 1000, Some(800)))
            .collect();
        let p = calc(3, Target::Utilization(50), &three).unwrap();
        assert_eq!((p.replicas, p.utilization, p.average), (5, Some(80), 800));
    }

    #[test]
    fn within_the_tolerance_nothing_moves() {
        let three: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("p{i}"), 1000, Some(540)))
            .collect();
        assert_eq!(
            calc(3, Target::Utilization(50), &three).unwrap().replicas,
            3
        );
        let three: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("p{i}"), 1000, Some(560)))
            .collect();
        assert_eq!(
            calc(3, Target::Utilization(50), &three).unwrap().replicas,
            4
        );
    }

    #[test]
    fn missing_metrics_count_as_full_on_the_way_down_and_empty_on_the_way_up() {
        // Down: two pods at 10 %, one without metrics taken at 100 % → 40 % of 50 %
        // → ceil(3 × 0.8) = 3: no scale-down on a guess.
        let pods = [
            pod("a", 1000, Some(100)),
            pod("b", 1000, Some(100)),
            pod("c", 1000, None),
        ];
        assert_eq!(calc(3, Target::Utilization(50), &pods).unwrap().replicas, 3);
        // Up: two at 100 %, one without metrics taken at 0 → 66 % of 50 % → ceil(3 × 1.33) = 4.
        let pods = [
            pod("a", 1000, Some(1000)),
            pod("b", 1000, Some(1000)),
            pod("c", 1000, None),
        ];
        assert_eq!(calc(3, Target::Utilization(50), &pods).unwrap().replicas, 4);
    }

    #[test]
    fn unready_pods_count_as_idle_on_a_scale_up() {
        let mut pending = pod("d", 1000, None);
        pending.phase = "Pending".into();
        let pods = [
            pod("a", 1000, Some(1000)),
            pod("b", 1000, Some(1000)),
            pod("c", 1000, Some(1000)),
            pending,
        ];
        // With the pending pod idle: 3000 of 4000 requested = 75 % of 50 % → ceil(4 × 1.5) = 6.
        assert_eq!(calc(4, Target::Utilization(50), &pods).unwrap().replicas, 6);
        let mut pods = pods.clone();
        for p in pods.iter_mut().take(3) {
            p.metric.as_mut().unwrap().value = 600;
        }
        // Ready alone: 60 % of 50 % (up); with the pending pod idle: 45 % (down). The
        // direction reverses, so nothing moves.
        assert_eq!(calc(4, Target::Utilization(50), &pods).unwrap().replicas, 4);
    }

    #[test]
    fn a_starting_pods_cpu_is_left_out() {
        // Started a minute ago and ready for five seconds: less than one metric window.
        let mut fresh = pod("c", 1000, Some(1000));
        fresh.start_time = Some(now() - Duration::minutes(1));
        fresh.ready = Some((true, now() - Duration::seconds(5)));
        let pods = [
            pod("a", 1000, Some(500)),
            pod("b", 1000, Some(500)),
            fresh.clone(),
        ];
        // Ready pods at 50 % of 50 %: ratio 1, within tolerance, even though the new
        // pod burns a whole core.
        assert_eq!(calc(3, Target::Utilization(50), &pods).unwrap().replicas, 3);
        // The same pod counts for memory.
        let mem = replicas(
            3,
            Target::Utilization(50),
            "memory",
            &pods,
            &Params::default(),
            now(),
        )
        .unwrap();
        assert_eq!(mem.utilization, Some(66));
        assert_eq!(mem.replicas, 4);
    }

    #[test]
    fn ignored_pods_and_errors() {
        let mut failed = pod("f", 1000, Some(5000));
        failed.phase = "Failed".into();
        let mut leaving = pod("l", 1000, Some(5000));
        leaving.deleting = true;
        let pods = [pod("a", 1000, Some(500)), failed, leaving];
        assert_eq!(calc(1, Target::Utilization(50), &pods).unwrap().replicas, 1);
        let mut no_request = pod("n", 1000, Some(10));
        no_request.request = None;
        no_request.unrequested = Some("app".into());
        assert_eq!(
            calc(1, Target::Utilization(50), &[no_request]).unwrap_err(),
            "missing request for cpu in container app of Pod n"
        );
        assert!(
            calc(1, Target::Utilization(50), &[])
                .unwrap_err()
                .starts_with("no pods returned")
        );
        assert!(
            calc(1, Target::Utilization(50), &[pod("x", 1000, None)])
                .unwrap_err()
                .starts_with("did not receive metrics")
        );
    }
}
