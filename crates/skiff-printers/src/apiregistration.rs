//! APIServices, as kube-aggregator prints them.

use crate::cells::{age, name};
use crate::{AGE, NAME, Printer, col};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    (resource == "apiservices").then_some(&APISERVICES)
}

static APISERVICES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Service",
            "string",
            0,
            "The reference to the service that hosts this API endpoint.",
        ),
        col(
            "Available",
            "string",
            0,
            "Whether this service is available.",
        ),
        AGE,
    ],
    row: |o, now| vec![name(o), json!(service(o)), json!(available(o)), age(o, now)],
};

/// `namespace/name`, or `Local` for an API the server serves itself.
fn service(o: &Value) -> String {
    match o["spec"]["service"].as_object() {
        Some(s) => format!(
            "{}/{}",
            s.get("namespace").and_then(Value::as_str).unwrap_or(""),
            s.get("name").and_then(Value::as_str).unwrap_or("")
        ),
        None => "Local".into(),
    }
}

/// The Available condition's status, with its reason when not True.
fn available(o: &Value) -> String {
    let cond = o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
    match cond {
        None => "Unknown".into(),
        Some(c) if c["status"] == "True" => "True".into(),
        Some(c) => format!(
            "{} ({})",
            c["status"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_rows() {
        let local = json!({"spec": {"group": "apps"}, "status": {"conditions": [{"type": "Available", "status": "True"}]}});
        assert_eq!(
            (service(&local), available(&local)),
            ("Local".into(), "True".into())
        );
        let remote = json!({"spec": {"service": {"namespace": "kube-system", "name": "m"}}, "status": {"conditions": [{"type": "Available", "status": "False", "reason": "FailedDiscoveryCheck"}]}});
        assert_eq!(service(&remote), "kube-system/m");
        assert_eq!(available(&remote), "False (FailedDiscoveryCheck)");
    }
}
