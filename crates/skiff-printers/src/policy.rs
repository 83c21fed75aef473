//! PodDisruptionBudgets.

use crate::cells::{age, int_of, name};
use crate::{AGE, NAME, Printer, col};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "poddisruptionbudgets").then_some(&PDBS)
}

static PDBS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Min Available",
            "string",
            0,
            "The minimum number of pods that must be available simultaneously.",
        ),
        col(
            "Max Unavailable",
            "string",
            0,
            "The maximum number of pods that may be unavailable simultaneously.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            0,
            "Calculated number of pods that may be disrupted at this time",
        ),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(int_or_string(&o["spec"]["minAvailable"])),
            json!(int_or_string(&o["spec"]["maxUnavailable"])),
            json!(int_of(o, "/status/disruptionsAllowed")),
            age(o, now),
        ]
    },
};

/// An IntOrString as kubectl prints it, `N/A` when unset.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Null => "N/A".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
