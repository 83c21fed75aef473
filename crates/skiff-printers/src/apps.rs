//! The apps group's printers.

use crate::cells::{
    age, format_label_selector, int_of, items, kind_name, map_selector, name, template_cells,
};
use crate::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer, SELECTOR, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    Some(match resource {
        "deployments" => &DEPLOYMENTS,
        "replicasets" => &REPLICASETS,
        "daemonsets" => &DAEMONSETS,
        "statefulsets" => &STATEFULSETS,
        "controllerrevisions" => &CONTROLLERREVISIONS,
        _ => return None,
    })
}

/// ReplicaSets' columns, which ReplicationControllers share.
pub(crate) const REPLICA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        0,
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        0,
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        0,
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

static REPLICASETS: Printer = Printer {
    columns: REPLICA_COLUMNS,
    row: |o, now| replicas_row(o, now, format_label_selector(&o["spec"]["selector"])),
};

/// A ReplicaSet's or ReplicationController's row, with its selector as formatted.
pub(crate) fn replicas_row(o: &Value, now: DateTime<Utc>, selector: String) -> Vec<Value> {
    let mut row = vec![
        name(o),
        json!(desired(o)),
        json!(int_of(o, "/status/replicas")),
        json!(int_of(o, "/status/readyReplicas")),
        age(o, now),
    ];
    row.extend(template_cells(&o["spec"]["template"]["spec"], selector));
    row
}

/// `spec.replicas`, 1 when unset.
fn desired(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// `ready/desired`.
fn ready_of_desired(o: &Value) -> String {
    format!("{}/{}", int_of(o, "/status/readyReplicas"), desired(o))
}

static DEPLOYMENTS: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", 0, "Number of the pod with ready state"),
        col(
            "Up-to-date",
            "string",
            0,
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        ),
        col(
            "Available",
            "string",
            0,
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: deployment_row,
};

fn deployment_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut row = vec![
        name(o),
        json!(ready_of_desired(o)),
        json!(int_of(o, "/status/updatedReplicas").to_string()),
        json!(int_of(o, "/status/availableReplicas").to_string()),
        age(o, now),
    ];
    row.extend(template_cells(
        &o["spec"]["template"]["spec"],
        format_label_selector(&o["spec"]["selector"]),
    ));
    row
}

static DAEMONSETS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Desired",
            "integer",
            0,
            "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
        ),
        col(
            "Current",
            "integer",
            0,
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        ),
        col(
            "Ready",
            "integer",
            0,
            "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
        ),
        col(
            "Up-to-date",
            "integer",
            0,
            "The total number of nodes that are running updated daemon pod",
        ),
        col(
            "Available",
            "integer",
            0,
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
        ),
        col(
            "Node Selector",
            "string",
            0,
            "NodeSelector is a selector which must be true for the pod to fit on a node.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: daemonset_row,
};

fn daemonset_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let pod_spec = &o["spec"]["template"]["spec"];
    let n = |f: &str| json!(int_of(&o["status"], f));
    let mut row = vec![
        name(o),
        n("/desiredNumberScheduled"),
        n("/currentNumberScheduled"),
        n("/numberReady"),
        n("/updatedNumberScheduled"),
        n("/numberAvailable"),
        json!(map_selector(&pod_spec["nodeSelector"])),
        age(o, now),
    ];
    row.extend(template_cells(
        pod_spec,
        format_label_selector(&o["spec"]["selector"]),
    ));
    row
}

static STATEFULSETS: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", 0, "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    row: |o, now| {
        let [c, i, _] = template_cells(&o["spec"]["template"]["spec"], String::new());
        vec![name(o), json!(ready_of_desired(o)), age(o, now), c, i]
    },
};

static CONTROLLERREVISIONS: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", 0, "Controller of the object"),
        col(
            "Revision",
            "integer",
            0,
            "Revision indicates the revision of the state represented by Data.",
        ),
        AGE,
    ],
    row: |o, now| {
        let ctrl = items(&o["metadata"]["ownerReferences"])
            .find(|r| r["controller"] == json!(true))
            .map(|r| kind_name(r, true))
            .unwrap_or_else(|| "<none>".into());
        vec![
            name(o),
            json!(ctrl),
            json!(int_of(o, "/revision")),
            age(o, now),
        ]
    },
};
