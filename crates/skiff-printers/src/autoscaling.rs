//! HorizontalPodAutoscalers.

use crate::cells::{age, int_of, kind_name, name};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "horizontalpodautoscalers").then_some(&HPAS)
}

static HPAS: Printer = Printer {
    columns: &[
        NAME,
        col("Reference", "string", 0, "Reference to the target object"),
        col(
            "Targets",
            "string",
            0,
            "The current and target value of the metrics",
        ),
        col(
            "MinPods",
            "string",
            0,
            "Lower limit for the number of pods that can be set by the autoscaler, default 1.",
        ),
        col(
            "MaxPods",
            "integer",
            0,
            "Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.",
        ),
        col(
            "Replicas",
            "integer",
            0,
            "Current number of replicas of pods managed by this autoscaler.",
        ),
        AGE,
    ],
    row: hpa_row,
};

fn hpa_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let min = o["spec"]["minReplicas"]
        .as_i64()
        .map(|m| m.to_string())
        .unwrap_or_else(|| "<unset>".into());
    vec![
        name(o),
        json!(kind_name(&o["spec"]["scaleTargetRef"], false)),
        json!(hpa_targets(o)),
        json!(min),
        json!(int_of(o, "/spec/maxReplicas")),
        json!(int_of(o, "/status/currentReplicas")),
        age(o, now),
    ]
}

/// kubectl's TARGETS: each Resource metric as `name: current/target`, two at most.
pub(crate) fn hpa_targets(o: &Value) -> String {
    let specs = o["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = o["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let list: Vec<String> = specs
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, m)| metric_target(m, statuses.get(i).map(|s| &s["resource"]["current"])))
        .collect();
    let mut out = list.join(", ");
    if specs.len() > 2 {
        out.push_str(&format!(" + {} more...", specs.len() - 2));
    }
    out
}

/// One Resource metric's `name: current/target`; `<unknown>` for other metric types.
fn metric_target(m: &Value, cur: Option<&Value>) -> String {
    let r = &m["resource"];
    if m["type"] != "Resource" || !r.is_object() {
        return "<unknown>".to_string();
    }
    let name = r["name"].as_str().unwrap_or("");
    let t = &r["target"];
    if let Some(avg) = t["averageValue"].as_str() {
        let current = cur
            .and_then(|c| c["averageValue"].as_str())
            .unwrap_or("<unknown>");
        return format!("{name}: {current}/{avg}");
    }
    let percent = |v: Option<i64>, none: &str| v.map_or(none.to_string(), |u| format!("{u}%"));
    let current = percent(
        cur.and_then(|c| c["averageUtilization"].as_i64()),
        "<unknown>",
    );
    let target = percent(t["averageUtilization"].as_i64(), "<auto>");
    format!("{name}: {current}/{target}")
}
