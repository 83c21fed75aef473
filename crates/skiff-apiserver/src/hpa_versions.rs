//! autoscaling/v1 HorizontalPodAutoscalers: a view of the stored autoscaling/v2 object,
//! as pkg/apis/autoscaling/v1/conversion.go converts them. v1 says in one field,
//! `targetCPUUtilizationPercentage`, what v2 says with a cpu Utilization metric; what
//! else a v2 object holds (other metrics, current metrics, behavior, conditions) rides
//! in `autoscaling.alpha.kubernetes.io/…` annotations, so a v1 client that reads an
//! object and writes it back loses nothing. Pure functions on JSON.

use serde_json::{Map, Value, json};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// Every annotation a conversion writes (the tolerances are v2beta2's), dropped before
/// writing and after reading, so stale ones never survive (DropRoundTripHorizontalPodAutoscalerAnnotations).
const ROUND_TRIP: [&str; 6] = [
    METRICS,
    CURRENT_METRICS,
    CONDITIONS,
    BEHAVIOR,
    "autoscaling.alpha.kubernetes.io/scale-down-tolerance",
    "autoscaling.alpha.kubernetes.io/scale-up-tolerance",
];
/// The target v1 objects without metrics have always had (autoscaling.DefaultCPUUtilization).
const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// One field of a metric source or status: its v1 path, its v2 path, and the value Go
/// writes when it is unset because the field is not a pointer (`None`: omitted).
type Field = (&'static str, &'static str, Option<&'static str>);

/// The metric source kinds: v2's key, then how a spec's and a status's fields map.
const SOURCES: [(&str, &[Field], &[Field]); 5] = [
    (
        "object",
        &[
            ("target", "describedObject", Some("{}")),
            ("metricName", "metric.name", Some("\"\"")),
            ("targetValue", "target.value", Some("\"0\"")),
            ("selector", "metric.selector", None),
            ("averageValue", "target.averageValue", None),
        ],
        &[
            ("target", "describedObject", Some("{}")),
            ("metricName", "metric.name", Some("\"\"")),
            ("currentValue", "current.value", Some("\"0\"")),
            ("selector", "metric.selector", None),
            ("averageValue", "current.averageValue", None),
        ],
    ),
    (
        "pods",
        &[
            ("metricName", "metric.name", Some("\"\"")),
            ("targetAverageValue", "target.averageValue", Some("\"0\"")),
            ("selector", "metric.selector", None),
        ],
        &[
            ("metricName", "metric.name", Some("\"\"")),
            ("currentAverageValue", "current.averageValue", Some("\"0\"")),
            ("selector", "metric.selector", None),
        ],
    ),
    (
        "resource",
        &[
            ("name", "name", Some("\"\"")),
            (
                "targetAverageUtilization",
                "target.averageUtilization",
                None,
            ),
            ("targetAverageValue", "target.averageValue", None),
        ],
        &[
            ("name", "name", Some("\"\"")),
            (
                "currentAverageUtilization",
                "current.averageUtilization",
                None,
            ),
            ("currentAverageValue", "current.averageValue", Some("\"0\"")),
        ],
    ),
    (
        "containerResource",
        &[
            ("name", "name", Some("\"\"")),
            (
                "targetAverageUtilization",
                "target.averageUtilization",
                None,
            ),
            ("targetAverageValue", "target.averageValue", None),
            ("container", "container", Some("\"\"")),
        ],
        &[
            ("name", "name", Some("\"\"")),
            (
                "currentAverageUtilization",
                "current.averageUtilization",
                None,
            ),
            ("currentAverageValue", "current.averageValue", Some("\"0\"")),
            ("container", "container", Some("\"\"")),
        ],
    ),
    (
        "external",
        &[
            ("metricName", "metric.name", Some("\"\"")),
            ("metricSelector", "metric.selector", None),
            ("targetValue", "target.value", None),
            ("targetAverageValue", "target.averageValue", None),
        ],
        &[
            ("metricName", "metric.name", Some("\"\"")),
            ("metricSelector", "metric.selector", None),
            ("currentValue", "current.value", Some("\"0\"")),
            ("currentAverageValue", "current.averageValue", None),
        ],
    ),
];

/// The behavior annotation holds Go's internal type marshalled without json tags: its
/// keys are the Go field names (conversion.go has a TODO about it).
const RULES: [(&str, &str); 4] = [
    ("StabilizationWindowSeconds", "stabilizationWindowSeconds"),
    ("SelectPolicy", "selectPolicy"),
    ("Policies", "policies"),
    ("Tolerance", "tolerance"),
];
const POLICY: [(&str, &str, i64); 2] =
    [("Value", "value", 0), ("PeriodSeconds", "periodSeconds", 0)];

/// The v1 view of a stored v2 object.
pub fn v2_to_v1(v2: &Value) -> Value {
    let (spec, status) = (&v2["spec"], &v2["status"]);
    let metrics = items(&spec["metrics"]);
    let mut meta = v2["metadata"].clone();
    drop_round_trip(&mut meta);
    let mut s = json!({"scaleTargetRef": spec["scaleTargetRef"].clone()});
    copy(&mut s, "minReplicas", &spec["minReplicas"]);
    s["maxReplicas"] = or_zero(&spec["maxReplicas"]);
    // The first cpu metric decides, even when it has no utilization target.
    if let Some(m) = metrics.iter().find(|m| is_cpu(m)) {
        copy(
            &mut s,
            "targetCPUUtilizationPercentage",
            &m["resource"]["target"]["averageUtilization"],
        );
    }
    let mut st = Map::new();
    copy_into(&mut st, "observedGeneration", &status["observedGeneration"]);
    copy_into(&mut st, "lastScaleTime", &status["lastScaleTime"]);
    st.insert(
        "currentReplicas".into(),
        or_zero(&status["currentReplicas"]),
    );
    st.insert(
        "desiredReplicas".into(),
        or_zero(&status["desiredReplicas"]),
    );
    let current = items(&status["currentMetrics"]);
    // Unlike the spec, the last cpu utilization wins.
    for m in current.iter().filter(|m| is_cpu(m)) {
        copy_into(
            &mut st,
            "currentCPUUtilizationPercentage",
            &m["resource"]["current"]["averageUtilization"],
        );
    }

    let mut notes: Vec<(&str, Value)> = Vec::new();
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !(is_cpu(m) && present(&m["resource"]["target"]["averageUtilization"])))
        .map(|m| metric_to_v1(m, false))
        .collect();
    if !others.is_empty() {
        notes.push((METRICS, Value::Array(others)));
    }
    if !current.is_empty() {
        notes.push((
            CURRENT_METRICS,
            current.iter().map(|m| metric_to_v1(m, true)).collect(),
        ));
    }
    if present(&spec["behavior"]) {
        notes.push((BEHAVIOR, behavior_to_go(&spec["behavior"])));
    }
    let conditions = items(&status["conditions"]);
    if !conditions.is_empty() {
        notes.push((CONDITIONS, Value::Array(conditions)));
    }
    for (k, v) in notes {
        meta["annotations"][k] = json!(v.to_string());
    }
    json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": meta, "spec": s, "status": st})
}

/// The v2 object a v1 one stands for: the annotations' metrics first, then the cpu
/// target, or cpu at 80 % when there are none (the controller's old implicit target).
pub fn v1_to_v2(v1: &Value) -> Value {
    let (spec, status) = (&v1["spec"], &v1["status"]);
    let note = |k: &str| {
        v1["metadata"]["annotations"][k]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    };
    let mut metrics: Vec<Value> = note(METRICS)
        .map(|m| items(&m).iter().map(|m| metric_to_v2(m, false)).collect())
        .unwrap_or_default();
    let cpu = if present(&spec["targetCPUUtilizationPercentage"]) {
        Some(spec["targetCPUUtilizationPercentage"].clone())
    } else if metrics.is_empty() {
        Some(json!(DEFAULT_CPU_UTILIZATION))
    } else {
        None
    };
    if let Some(u) = cpu {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": u}}}));
    }
    let mut s = json!({"scaleTargetRef": spec["scaleTargetRef"].clone()});
    copy(&mut s, "minReplicas", &spec["minReplicas"]);
    s["maxReplicas"] = or_zero(&spec["maxReplicas"]);
    s["metrics"] = Value::Array(metrics);
    if let Some(b) = note(BEHAVIOR).and_then(|b| behavior_from_go(&b)) {
        s["behavior"] = b;
    }
    let mut meta = v1["metadata"].clone();
    drop_round_trip(&mut meta);
    let mut out = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta, "spec": s});
    if status.is_object() {
        let mut st = json!({});
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            copy(&mut st, k, &status[k]);
        }
        // The annotation has every metric's raw values; the percentage only cpu's.
        if let Some(current) = note(CURRENT_METRICS) {
            st["currentMetrics"] = items(&current)
                .iter()
                .map(|m| metric_to_v2(m, true))
                .collect();
        } else if present(&status["currentCPUUtilizationPercentage"]) {
            st["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": status["currentCPUUtilizationPercentage"]}}}]);
        }
        if let Some(c) = note(CONDITIONS) {
            st["conditions"] = c;
        }
        out["status"] = st;
    }
    out
}

fn is_cpu(m: &Value) -> bool {
    m["type"] == "Resource" && m["resource"]["name"] == "cpu"
}

/// A v2 metric spec (or status) in v1's words.
fn metric_to_v1(m: &Value, status: bool) -> Value {
    let mut out = json!({"type": m["type"]});
    for (key, spec_fields, status_fields) in SOURCES {
        let src = &m[key];
        if !present(src) {
            continue;
        }
        let mut v1 = json!({});
        for &(p1, p2, zero) in if status { status_fields } else { spec_fields } {
            set(&mut v1, p1, get(src, p2).cloned(), zero);
        }
        out[key] = v1;
    }
    out
}

/// A v1 metric spec (or status) in v2's words.
fn metric_to_v2(m: &Value, status: bool) -> Value {
    let mut out = json!({"type": m["type"]});
    for (key, spec_fields, status_fields) in SOURCES {
        let src = &m[key];
        if !present(src) {
            continue;
        }
        let mut v2 = json!({});
        if !status {
            v2["target"] = json!({"type": target_type(key, src)});
        }
        for &(p1, p2, zero) in if status { status_fields } else { spec_fields } {
            set(&mut v2, p2, get(src, p1).cloned(), zero);
        }
        out[key] = v2;
    }
    out
}

/// The kind of target a v1 metric source means, which v1 leaves implicit.
fn target_type(key: &str, src: &Value) -> &'static str {
    match key {
        "resource" | "containerResource" if present(&src["targetAverageUtilization"]) => {
            "Utilization"
        }
        "object" if !present(&src["averageValue"]) => "Value",
        "external" if present(&src["targetValue"]) => "Value",
        _ => "AverageValue",
    }
}

fn behavior_to_go(b: &Value) -> Value {
    let rules = |r: &Value| {
        if !present(r) {
            return Value::Null;
        }
        let mut out = Map::new();
        for (go, k) in RULES {
            let v = if k == "policies" && present(&r[k]) {
                items(&r[k]).iter().map(policy_to_go).collect()
            } else {
                r[k].clone()
            };
            out.insert(go.into(), v);
        }
        Value::Object(out)
    };
    json!({"ScaleUp": rules(&b["scaleUp"]), "ScaleDown": rules(&b["scaleDown"])})
}

fn policy_to_go(p: &Value) -> Value {
    let mut out = json!({"Type": p.get("type").cloned().unwrap_or(json!(""))});
    for (go, k, zero) in POLICY {
        out[go] = p.get(k).cloned().unwrap_or(json!(zero));
    }
    out
}

/// The behavior an annotation holds; `None` when it is empty (encoding/json matches
/// keys ignoring case, and so does this).
fn behavior_from_go(b: &Value) -> Option<Value> {
    let rules = |r: Option<&Value>| -> Option<Value> {
        let r = r.filter(|r| r.is_object())?;
        let mut out = json!({});
        for (go, k) in RULES {
            match field(r, go).filter(|v| present(v)) {
                Some(p) if k == "policies" => {
                    out[k] = items(p).iter().map(policy_from_go).collect()
                }
                Some(v) => out[k] = v.clone(),
                None => {}
            }
        }
        Some(out)
    };
    let mut out = json!({});
    for (go, k) in [("ScaleUp", "scaleUp"), ("ScaleDown", "scaleDown")] {
        if let Some(r) = rules(field(b, go)) {
            out[k] = r;
        }
    }
    (out.as_object().is_some_and(|o| !o.is_empty())).then_some(out)
}

fn policy_from_go(p: &Value) -> Value {
    let mut out = json!({"type": field(p, "Type").cloned().unwrap_or(json!(""))});
    for (go, k, zero) in POLICY {
        out[k] = field(p, go).cloned().unwrap_or(json!(zero));
    }
    out
}

fn field<'a>(o: &'a Value, name: &str) -> Option<&'a Value> {
    let m = o.as_object()?;
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn drop_round_trip(meta: &mut Value) {
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        a.retain(|k, _| !ROUND_TRIP.contains(&k.as_str()));
        if a.is_empty() {
            meta.as_object_mut().map(|m| m.remove("annotations"));
        }
    }
}

fn present(v: &Value) -> bool {
    !v.is_null()
}

fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn or_zero(v: &Value) -> Value {
    if present(v) { v.clone() } else { json!(0) }
}

fn copy(out: &mut Value, k: &str, v: &Value) {
    if present(v) {
        out[k] = v.clone();
    }
}

fn copy_into(out: &mut Map<String, Value>, k: &str, v: &Value) {
    if present(v) {
        out.insert(k.into(), v.clone());
    }
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| present(v))
}

/// Sets a dotted path, or its Go zero when unset and the field is not a pointer.
fn set(out: &mut Value, path: &str, v: Option<Value>, zero: Option<&str>) {
    let Some(v) = v.or_else(|| zero.and_then(|z| serde_json::from_str(z).ok())) else {
        return;
    };
    // Indexing a null makes it an object: the path's parents come into being.
    let at = path.split('.').fold(out, |at, k| &mut at[k]);
    *at = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(u: i64) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": u}}})
    }

    fn hpa(spec: Value) -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": spec})
    }

    #[test]
    fn cpu_utilization_is_the_v1_percentage_both_ways() {
        let v2 = hpa(
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "minReplicas": 2, "maxReplicas": 3, "metrics": [cpu(70)]}),
        );
        let v1 = v2_to_v1(&v2);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert_eq!(v1["spec"]["minReplicas"], 2);
        // Go's status struct: the counts are always written.
        assert_eq!(
            v1["status"],
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
        assert!(v1["metadata"].get("annotations").is_none());
        let back = v1_to_v2(&v1);
        assert_eq!(back["spec"]["metrics"], json!([cpu(70)]));
        assert_eq!(back["apiVersion"], "autoscaling/v2");
    }

    #[test]
    fn v1_without_a_target_means_cpu_at_80() {
        let v1 = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3}});
        assert_eq!(v1_to_v2(&v1)["spec"]["metrics"], json!([cpu(80)]));
        assert!(v1_to_v2(&v1).get("status").is_none());
    }

    #[test]
    fn other_metrics_ride_in_an_annotation() {
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        let object = json!({"type": "Object", "object": {"describedObject": {"kind": "Ingress", "name": "i", "apiVersion": "networking.k8s.io/v1"}, "target": {"type": "Value", "value": "10"}, "metric": {"name": "rps"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}});
        let external = json!({"type": "External", "external": {"metric": {"name": "q", "selector": {"matchLabels": {"a": "b"}}}, "target": {"type": "AverageValue", "averageValue": "5"}}});
        let v2 =
            hpa(json!({"maxReplicas": 3, "metrics": [memory, object, pods, external, cpu(50)]}));
        let v1 = v2_to_v1(&v2);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        let note: Value =
            serde_json::from_str(v1["metadata"]["annotations"][METRICS].as_str().unwrap()).unwrap();
        assert_eq!(
            note,
            json!([
                {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
                {"type": "Object", "object": {"target": {"kind": "Ingress", "name": "i", "apiVersion": "networking.k8s.io/v1"}, "metricName": "rps", "targetValue": "10"}},
                {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}},
                {"type": "External", "external": {"metricName": "q", "metricSelector": {"matchLabels": {"a": "b"}}, "targetAverageValue": "5"}},
            ])
        );
        let back = v1_to_v2(&v1);
        assert_eq!(back["spec"]["metrics"], v2["spec"]["metrics"]);
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn status_behavior_and_conditions_round_trip() {
        let behavior = json!({"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}, "scaleDown": {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}});
        let mut v2 = hpa(json!({"maxReplicas": 3, "metrics": [cpu(80)], "behavior": behavior}));
        v2["metadata"]["annotations"] = json!({"keep": "me", METRICS: "stale"});
        v2["status"] = json!({"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 120, "averageValue": "120m"}}}], "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]});
        let v1 = v2_to_v1(&v2);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 120);
        let notes = &v1["metadata"]["annotations"];
        assert_eq!(notes["keep"], "me");
        assert!(notes.get(METRICS).is_none(), "stale annotations go");
        let go: Value = serde_json::from_str(notes[BEHAVIOR].as_str().unwrap()).unwrap();
        assert_eq!(
            go["ScaleUp"]["Policies"][0],
            json!({"Type": "Pods", "Value": 4, "PeriodSeconds": 15})
        );
        assert_eq!(go["ScaleDown"]["StabilizationWindowSeconds"], Value::Null);
        let back = v1_to_v2(&v1);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"], v2["status"]);
        assert_eq!(back["metadata"]["annotations"], json!({"keep": "me"}));
    }

    #[test]
    fn v1_status_percentage_without_annotation() {
        let v1 = json!({"metadata": {}, "spec": {"maxReplicas": 1, "targetCPUUtilizationPercentage": 60}, "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 30}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(v2["spec"]["metrics"], json!([cpu(60)]));
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"],
            json!({"averageUtilization": 30})
        );
    }
}
