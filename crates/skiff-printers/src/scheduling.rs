//! PriorityClasses.

use crate::cells::{age, int_of, name};
use crate::{AGE, NAME, Printer, col};
use serde_json::json;

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "priorityclasses").then_some(&PRIORITYCLASSES)
}

static PRIORITYCLASSES: Printer = Printer {
    columns: &[
        NAME,
        col("Value", "integer", 0, "The value of this priority class."),
        col(
            "Global-Default",
            "boolean",
            0,
            "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
        ),
        AGE,
        col(
            "PreemptionPolicy",
            "string",
            0,
            "PreemptionPolicy is the Policy for preempting pods with lower priority.",
        ),
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(int_of(o, "/value")),
            json!(o["globalDefault"].as_bool().unwrap_or(false)),
            age(o, now),
            json!(
                o["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
            ),
        ]
    },
};
