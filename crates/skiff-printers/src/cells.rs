//! Cell helpers shared by the printers: field access, kubectl's formats for durations,
//! selectors, container lists and the "first three and N more" lists.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn str_of<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn int_of(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The items of an array field (none when absent or not an array).
pub(crate) fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// A string field's value when it is set and not empty.
pub(crate) fn non_empty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// Whether `status.conditions` has a condition of this type with status "True".
pub(crate) fn condition_true(status: &Value, type_: &str) -> bool {
    items(&status["conditions"]).any(|c| c["type"] == type_ && c["status"] == "True")
}

pub(crate) fn none_if_empty(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The object's name cell.
pub(crate) fn name(o: &Value) -> Value {
    json!(str_of(o, "/metadata/name"))
}

/// The object's Age cell.
pub(crate) fn age(o: &Value, now: DateTime<Utc>) -> Value {
    json!(since(str_of(o, "/metadata/creationTimestamp"), now))
}

/// The default printer's row: the name and the creation timestamp as stored.
pub(crate) fn name_created(o: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    vec![name(o), json!(str_of(o, "/metadata/creationTimestamp"))]
}

/// `kind/name` of a reference (lower-cased kind where kubectl lowers it).
pub(crate) fn kind_name(r: &Value, lower: bool) -> String {
    let kind = r["kind"].as_str().unwrap_or("");
    let kind = if lower {
        kind.to_lowercase()
    } else {
        kind.to_string()
    };
    format!("{kind}/{}", r["name"].as_str().unwrap_or(""))
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        with_rest(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with_rest(hours / 24, "d", hours % 24, "h")
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        with_rest(hours / 24 / 365, "y", (hours / 24) % 365, "d")
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// `3h` or `3h30m`: a unit and the remainder in the next smaller one when not zero.
fn with_rest(n: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{n}{unit}")
    } else {
        format!("{n}{unit}{rest}{rest_unit}")
    }
}

/// The age of a timestamp, `<unknown>` when it does not parse.
pub(crate) fn since(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// `metav1.FormatLabelSelector`.
pub fn format_label_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        let mut kv: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        kv.sort();
        parts.extend(kv);
    }
    parts.extend(
        sel.get("matchExpressions")
            .into_iter()
            .flat_map(items)
            .filter_map(format_requirement),
    );
    if parts.is_empty()
        && sel.is_object()
        && sel.get("matchLabels").is_none()
        && sel.get("matchExpressions").is_none()
        && !sel.as_object().is_some_and(|o| o.is_empty())
    {
        return "<none>".into();
    }
    none_if_empty(parts.join(","))
}

/// One `matchExpressions` requirement as `FormatLabelSelector` writes it.
fn format_requirement(e: &Value) -> Option<String> {
    let key = e["key"].as_str().unwrap_or("");
    let vals: Vec<&str> = items(&e["values"]).filter_map(Value::as_str).collect();
    Some(match e["operator"].as_str().unwrap_or("") {
        "In" => format!("{key} in ({})", vals.join(",")),
        "NotIn" => format!("{key} notin ({})", vals.join(",")),
        "Exists" => key.to_string(),
        "DoesNotExist" => format!("!{key}"),
        _ => return None,
    })
}

/// A map selector (or label map) as sorted `k=v` pairs, `<none>` when empty.
pub(crate) fn map_selector(m: &Value) -> String {
    let mut kv: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    kv.sort();
    none_if_empty(kv.join(","))
}

/// The Containers and Images cells of a pod template's spec.
pub(crate) fn template_containers(pod_spec: &Value) -> (String, String) {
    let field = |f: &str| -> Vec<&str> {
        items(&pod_spec["containers"])
            .map(|c| c[f].as_str().unwrap_or(""))
            .collect()
    };
    (field("name").join(","), field("image").join(","))
}

/// The Containers, Images and Selector cells the workload printers end their rows with.
pub(crate) fn template_cells(pod_spec: &Value, selector: String) -> [Value; 3] {
    let (c, i) = template_containers(pod_spec);
    [json!(c), json!(i), json!(selector)]
}

/// kubectl's listWithMoreString: the first three, "+ N more...", `<unset>` for none.
pub(crate) fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX)
    } else if items.is_empty() {
        "<unset>".into()
    } else {
        items.join(",")
    }
}
