//! How stored objects are shown: the events.k8s.io view of core Events, the version
//! asked for when it is not the storage version, and PartialObjectMetadata.

use crate::decode::Wanted;
use crate::request::Target;
use serde_json::{Value, json};
use skiff_types::ResourceInfo;

/// Shapes an object for the client: events.k8s.io view, metadata-only, or as is.
pub fn present(t: &Target, obj: Value, wanted: Wanted) -> Value {
    let obj = if t.ri.is_storage_alias() {
        from_storage(&t.ri, &obj)
    } else if t.ri.custom.is_some()
        && obj["kind"] == *t.ri.kind
        && obj["apiVersion"] != *t.ri.api_version()
    {
        // Conversion `None`: the object is the same in every version (a Scale or a
        // Status is not one of the kind's objects and keeps its own).
        let mut obj = obj;
        obj["apiVersion"] = json!(t.ri.api_version());
        obj
    } else {
        obj
    };
    match wanted {
        Wanted::PartialObjectMetadata => partial(&obj),
        _ => obj,
    }
}

/// An alias kind's view of a stored object.
pub fn from_storage(ri: &ResourceInfo, obj: &Value) -> Value {
    match &*ri.group {
        "autoscaling" => crate::hpa_versions::v2_to_v1(obj),
        _ => core_event_to_v1(obj),
    }
}

/// The stored object an alias kind's object stands for.
pub fn to_storage(ri: &ResourceInfo, obj: &Value) -> Value {
    match &*ri.group {
        "autoscaling" => crate::hpa_versions::v1_to_v2(obj),
        _ => v1_event_to_core(obj),
    }
}

pub fn core_event_to_v1(e: &Value) -> Value {
    let mut out = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": e["metadata"].clone()});
    let copy = |out: &mut Value, to: &str, v: &Value| {
        if !v.is_null() {
            out[to] = v.clone();
        }
    };
    copy(&mut out, "eventTime", &e["eventTime"]);
    if out.get("eventTime").is_none() {
        out["eventTime"] = Value::Null;
    }
    copy(
        &mut out,
        "reportingController",
        if e["reportingComponent"].is_null() {
            &e["source"]["component"]
        } else {
            &e["reportingComponent"]
        },
    );
    copy(
        &mut out,
        "reportingInstance",
        if e["reportingInstance"].is_null() {
            &e["source"]["host"]
        } else {
            &e["reportingInstance"]
        },
    );
    copy(&mut out, "action", &e["action"]);
    copy(&mut out, "reason", &e["reason"]);
    copy(&mut out, "regarding", &e["involvedObject"]);
    copy(&mut out, "related", &e["related"]);
    copy(&mut out, "note", &e["message"]);
    copy(&mut out, "type", &e["type"]);
    copy(&mut out, "deprecatedSource", &e["source"]);
    copy(&mut out, "deprecatedFirstTimestamp", &e["firstTimestamp"]);
    copy(&mut out, "deprecatedLastTimestamp", &e["lastTimestamp"]);
    copy(&mut out, "deprecatedCount", &e["count"]);
    if let Some(series) = e.get("series").filter(|s| !s.is_null()) {
        out["series"] =
            json!({"count": series["count"], "lastObservedTime": series["lastObservedTime"]});
    }
    out
}

pub fn v1_event_to_core(e: &Value) -> Value {
    let mut out = json!({"apiVersion": "v1", "kind": "Event", "metadata": e["metadata"].clone()});
    let copy = |out: &mut Value, to: &str, v: &Value| {
        if !v.is_null() {
            out[to] = v.clone();
        }
    };
    copy(&mut out, "eventTime", &e["eventTime"]);
    copy(&mut out, "reportingComponent", &e["reportingController"]);
    copy(&mut out, "reportingInstance", &e["reportingInstance"]);
    copy(&mut out, "action", &e["action"]);
    copy(&mut out, "reason", &e["reason"]);
    copy(&mut out, "involvedObject", &e["regarding"]);
    copy(&mut out, "related", &e["related"]);
    copy(&mut out, "message", &e["note"]);
    copy(&mut out, "type", &e["type"]);
    copy(&mut out, "source", &e["deprecatedSource"]);
    copy(&mut out, "firstTimestamp", &e["deprecatedFirstTimestamp"]);
    copy(&mut out, "lastTimestamp", &e["deprecatedLastTimestamp"]);
    copy(&mut out, "count", &e["deprecatedCount"]);
    if out.get("involvedObject").is_none() {
        out["involvedObject"] = json!({});
    }
    if let Some(series) = e.get("series").filter(|s| !s.is_null()) {
        out["series"] = series.clone();
    }
    out
}

pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_views_round_trip() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Scheduled", "message": "hi", "type": "Normal", "source": {"component": "default-scheduler"}, "count": 1});
        let v1 = core_event_to_v1(&core);
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["reportingController"], "default-scheduler");
        let back = v1_event_to_core(&v1);
        assert_eq!(back["message"], "hi");
        assert_eq!(back["involvedObject"]["kind"], "Pod");
    }
}
