//! Events, of the core group and of events.k8s.io alike.

use crate::cells::{kind_name, since, str_of};
use crate::{Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "events").then_some(&EVENTS)
}

pub(crate) static EVENTS: Printer = Printer {
    columns: &[
        col("Last Seen", "string", 0, "Time when last Event occurred"),
        col(
            "Type",
            "string",
            0,
            "Type of this event (Normal, Warning), new types could be added in the future.",
        ),
        col(
            "Reason",
            "string",
            0,
            "This should be a short, machine understandable string that gives the reason for this event being generated.",
        ),
        col(
            "Object",
            "string",
            0,
            "The object that this event is about.",
        ),
        col(
            "Subobject",
            "string",
            1,
            "Object field path this event is about.",
        ),
        col("Source", "string", 1, "The component reporting this event."),
        col(
            "Message",
            "string",
            0,
            "A human-readable description of the status of this operation.",
        ),
        col("First Seen", "string", 1, "Time when first Event occurred"),
        col(
            "Count",
            "string",
            1,
            "The number of times this event has occurred.",
        ),
        col("Name", "string", 1, "Name of the event"),
    ],
    row: event_row,
};

/// The first of these string fields that is set.
fn first_str<'a>(e: &'a Value, ptrs: &[&str]) -> Option<&'a str> {
    ptrs.iter()
        .find_map(|p| e.pointer(p).and_then(Value::as_str))
}

fn event_row(e: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Core and events.k8s.io shapes.
    let io = if e["involvedObject"].is_object() {
        &e["involvedObject"]
    } else {
        &e["regarding"]
    };
    let first = first_str(
        e,
        &["/firstTimestamp", "/deprecatedFirstTimestamp", "/eventTime"],
    )
    .unwrap_or("");
    let last = first_str(
        e,
        &[
            "/lastTimestamp",
            "/deprecatedLastTimestamp",
            "/series/lastObservedTime",
            "/eventTime",
        ],
    )
    .unwrap_or(first);
    let count = ["/count", "/deprecatedCount", "/series/count"]
        .iter()
        .find_map(|p| e.pointer(p).and_then(Value::as_i64))
        .unwrap_or(1);
    let message = first_str(e, &["/message", "/note"]).unwrap_or("");
    vec![
        json!(since(last, now)),
        json!(str_of(e, "/type")),
        json!(str_of(e, "/reason")),
        json!(kind_name(io, true)),
        json!(str_of(io, "/fieldPath")),
        json!(event_source(e)),
        json!(message.trim()),
        json!(since(first, now)),
        json!(count.to_string()),
        json!(str_of(e, "/metadata/name")),
    ]
}

/// `component, host` of the reporter.
fn event_source(e: &Value) -> String {
    let source = first_str(
        e,
        &[
            "/source/component",
            "/reportingComponent",
            "/reportingController",
        ],
    )
    .unwrap_or("");
    match e["source"]["host"].as_str().unwrap_or("") {
        "" => source.to_string(),
        host => format!("{source}, {host}"),
    }
}
