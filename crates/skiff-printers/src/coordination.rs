//! Leases.

use crate::cells::{age, name, str_of};
use crate::{AGE, NAME, Printer, col};
use serde_json::json;

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "leases").then_some(&LEASES)
}

static LEASES: Printer = Printer {
    columns: &[
        NAME,
        col("Holder", "string", 0, "The holder of the lease"),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(str_of(o, "/spec/holderIdentity")),
            age(o, now),
        ]
    },
};
