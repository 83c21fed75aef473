//! EndpointSlices.

use crate::cells::{age, items, list_with_more, name, str_of};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "endpointslices").then_some(&ENDPOINTSLICES)
}

static ENDPOINTSLICES: Printer = Printer {
    columns: &[
        NAME,
        col("AddressType", "string", 0, "The IP protocol for this slice"),
        col("Ports", "string", 0, "The ports for this slice"),
        col("Endpoints", "string", 0, "First N endpoints for this slice"),
        AGE,
    ],
    row: endpointslice_row,
};

/// kubectl's formatDiscoveryPorts and formatDiscoveryEndpoints.
fn endpointslice_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = items(&o["ports"])
        .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let eps: Vec<String> = items(&o["endpoints"])
        .flat_map(|e| items(&e["addresses"]).filter_map(Value::as_str))
        .map(str::to_string)
        .collect();
    vec![
        name(o),
        json!(str_of(o, "/addressType")),
        json!(list_with_more(ports)),
        json!(list_with_more(eps)),
        age(o, now),
    ]
}
