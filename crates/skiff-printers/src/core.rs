//! The core (`""`) group's printers; the bigger kinds have files of their own.

mod nodes;
mod pods;
mod services;
mod volumes;

use crate::cells::{age, map_selector, name, str_of, template_containers};
use crate::{AGE, DEFAULT, NAME, Printer, apps, col, events};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    Some(match resource {
        "pods" => &pods::PODS,
        "nodes" => &nodes::NODES,
        "namespaces" => &NAMESPACES,
        "services" => &services::SERVICES,
        "endpoints" => &services::ENDPOINTS,
        "configmaps" => &CONFIGMAPS,
        "secrets" => &SECRETS,
        "serviceaccounts" => &SERVICEACCOUNTS,
        "events" => &events::EVENTS,
        // printers.go gives LimitRanges the default's columns.
        "limitranges" => &DEFAULT,
        "resourcequotas" => &RESOURCEQUOTAS,
        "persistentvolumes" => &volumes::PERSISTENTVOLUMES,
        "persistentvolumeclaims" => &volumes::PERSISTENTVOLUMECLAIMS,
        "podtemplates" => &PODTEMPLATES,
        "replicationcontrollers" => &REPLICATIONCONTROLLERS,
        _ => return None,
    })
}

static NAMESPACES: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", 0, "The status of the namespace"),
        AGE,
    ],
    row: |o, now| vec![name(o), json!(str_of(o, "/status/phase")), age(o, now)],
};

/// The number of entries of a map field.
fn entries(v: &Value) -> usize {
    v.as_object().map(|m| m.len()).unwrap_or(0)
}

static CONFIGMAPS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Data",
            "string",
            0,
            "Number of data entries in the ConfigMap",
        ),
        AGE,
    ],
    row: |o, now| {
        let n = entries(&o["data"]) + entries(&o["binaryData"]);
        vec![name(o), json!(n.to_string()), age(o, now)]
    },
};

static SECRETS: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", 0, "The type of the secret"),
        col("Data", "string", 0, "The number of entries in the secret"),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(o["type"].as_str().unwrap_or("Opaque")),
            json!(entries(&o["data"]).to_string()),
            age(o, now),
        ]
    },
};

static SERVICEACCOUNTS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Secrets",
            "string",
            0,
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        ),
        AGE,
    ],
    row: |o, now| {
        let n = o["secrets"].as_array().map(Vec::len).unwrap_or(0);
        vec![name(o), json!(n.to_string()), age(o, now)]
    },
};

static RESOURCEQUOTAS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col(
            "Request",
            "string",
            0,
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        col(
            "Limit",
            "string",
            0,
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
    ],
    row: resourcequota_row,
};

/// `resource: used/hard` for each hard limit, requests and `limits.*` apart.
fn resourcequota_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let used = &o["status"]["used"];
    let (mut req, mut lim) = (Vec::new(), Vec::new());
    for (k, v) in o["status"]["hard"].as_object().into_iter().flatten() {
        let entry = format!(
            "{k}: {}/{}",
            used[k].as_str().unwrap_or("0"),
            v.as_str().unwrap_or("")
        );
        if k.starts_with("limits.") {
            lim.push(entry)
        } else {
            req.push(entry)
        }
    }
    vec![
        name(o),
        age(o, now),
        json!(req.join(", ")),
        json!(lim.join(", ")),
    ]
}

static PODTEMPLATES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Containers",
            "string",
            0,
            "Names of each container in the template.",
        ),
        col(
            "Images",
            "string",
            0,
            "Images referenced by each container in the template.",
        ),
        col(
            "Pod Labels",
            "string",
            0,
            "The labels for the pod template.",
        ),
    ],
    row: |o, _| {
        let (c, i) = template_containers(&o["template"]["spec"]);
        let labels = map_selector(&o["template"]["metadata"]["labels"]);
        vec![name(o), json!(c), json!(i), json!(labels)]
    },
};

static REPLICATIONCONTROLLERS: Printer = Printer {
    columns: apps::REPLICA_COLUMNS,
    row: |o, now| apps::replicas_row(o, now, map_selector(&o["spec"]["selector"])),
};
