//! CertificateSigningRequests.

use crate::cells::{age, human_duration, items, name, non_empty, str_of};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "certificatesigningrequests").then_some(&CSRS)
}

static CSRS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col(
            "SignerName",
            "string",
            0,
            "Name of the signer that will issue the certificate",
        ),
        col(
            "Requestor",
            "string",
            0,
            "Name of the user who made the request",
        ),
        col(
            "RequestedDuration",
            "string",
            0,
            "Requested duration of the certificate",
        ),
        col("Condition", "string", 0, "Status of the request"),
    ],
    row: csr_row,
};

fn csr_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let duration = o["spec"]["expirationSeconds"]
        .as_i64()
        .map_or("<none>".to_string(), |s| {
            human_duration(chrono::Duration::seconds(s))
        });
    vec![
        name(o),
        age(o, now),
        json!(str_of(o, "/spec/signerName")),
        json!(str_of(o, "/spec/username")),
        json!(duration),
        json!(csr_condition(o)),
    ]
}

/// kubectl's CSR condition: Denied, Approved or Pending, then Failed and Issued.
fn csr_condition(o: &Value) -> String {
    let has = |t: &str| items(&o["status"]["conditions"]).any(|c| c["type"] == t);
    let mut s = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        s.push_str(",Failed");
    }
    if non_empty(&o["status"]["certificate"]).is_some() {
        s.push_str(",Issued");
    }
    s
}
