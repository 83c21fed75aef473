//! Admission configuration kinds, as kube prints them.

use crate::cells::{age, name, str_of};
use crate::{AGE, NAME, Printer, col};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    match resource {
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => Some(&WEBHOOKS),
        "validatingadmissionpolicies" => Some(&POLICIES),
        "validatingadmissionpolicybindings" => Some(&BINDINGS),
        _ => None,
    }
}

fn count(o: &Value, pointer: &str) -> Value {
    json!(
        o.pointer(pointer)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    )
}

static WEBHOOKS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Webhooks",
            "integer",
            0,
            "Webhooks indicates the number of webhooks.",
        ),
        AGE,
    ],
    row: |o, now| vec![name(o), count(o, "/webhooks"), age(o, now)],
};

static POLICIES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Validations",
            "integer",
            0,
            "Validations indicates the number of validation rules.",
        ),
        col(
            "ParamKind",
            "string",
            0,
            "ParamKind specifies the kind of resources used to parameterize this policy.",
        ),
        AGE,
    ],
    row: |o, now| {
        let kind = &o["spec"]["paramKind"];
        let param = match kind["kind"].as_str() {
            Some(k) => format!("{} {k}", kind["apiVersion"].as_str().unwrap_or("")),
            None => "<unset>".into(),
        };
        vec![
            name(o),
            count(o, "/spec/validations"),
            json!(param),
            age(o, now),
        ]
    },
};

static BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "PolicyName",
            "string",
            0,
            "PolicyName references a ValidatingAdmissionPolicy name.",
        ),
        col(
            "ParamRef",
            "string",
            0,
            "ParamRef specifies the parameter resource used to configure the admission control policy.",
        ),
        AGE,
    ],
    row: |o, now| {
        let r = &o["spec"]["paramRef"];
        let param = match r["name"].as_str() {
            Some(n) => match r["namespace"].as_str() {
                Some(ns) => format!("{ns}/{n}"),
                None => format!("*/{n}"),
            },
            None if r["selector"].is_object() => "*/*".into(),
            None => "<unset>".into(),
        };
        vec![
            name(o),
            json!(str_of(o, "/spec/policyName")),
            json!(param),
            age(o, now),
        ]
    },
};
