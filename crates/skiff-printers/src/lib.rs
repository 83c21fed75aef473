//! Server-side table printing: the `meta.k8s.io/v1 Table` kubectl prints verbatim, with
//! the columns and cell formats of Kubernetes' `pkg/printers/internalversion/printers.go`.
//! Pure functions of JSON objects and a `now`.
//!
//! Each kind's printer is one [`Printer`] (its columns beside the function making its
//! cells), kept in the file of its API group; [`printer`] finds it. Kinds without one get
//! [`DEFAULT`] (Name, Created At), as in Kubernetes.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

mod admissionregistration;
mod apiregistration;
mod apps;
mod autoscaling;
mod batch;
mod cells;
mod certificates;
mod coordination;
mod core;
pub mod custom;
mod discovery;
mod events;
mod networking;
mod policy;
mod rbac;
mod scheduling;
mod storage;

#[cfg(test)]
use autoscaling::hpa_targets;
pub use cells::{format_label_selector, human_duration};
pub use storage::is_default_class;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

/// A kind's printer: its columns and the cells of one object's row, in the same order.
pub struct Printer {
    pub columns: &'static [Column],
    pub row: fn(&Value, DateTime<Utc>) -> Vec<Value>,
}

pub(crate) const fn col(
    name: &'static str,
    type_: &'static str,
    priority: i32,
    description: &'static str,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority,
    }
}

pub(crate) const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
pub(crate) const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";
pub(crate) const AGE: Column = col("Age", "string", 0, AGE_DESCRIPTION);
pub(crate) const CREATED_AT: Column = col(
    "Created At",
    "date",
    0,
    "Time at which the object was created",
);
pub(crate) const CONTAINERS: Column = col(
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
pub(crate) const IMAGES: Column = col(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
pub(crate) const SELECTOR: Column = col("Selector", "string", 1, "Label selector for pods.");

/// Kubernetes' default printer, for kinds without one of their own.
pub static DEFAULT: Printer = Printer {
    columns: &[NAME, CREATED_AT],
    row: cells::name_created,
};

/// The printer of a built-in kind, by API group and resource.
pub fn printer(group: &str, resource: &str) -> Option<&'static Printer> {
    match group {
        "" => self::core::printer(resource),
        "apps" => apps::printer(resource),
        "batch" => batch::printer(resource),
        "autoscaling" => autoscaling::printer(resource),
        "networking.k8s.io" => networking::printer(resource),
        "policy" => policy::printer(resource),
        "rbac.authorization.k8s.io" => rbac::printer(resource),
        "scheduling.k8s.io" => scheduling::printer(resource),
        "storage.k8s.io" => storage::printer(resource),
        "certificates.k8s.io" => certificates::printer(resource),
        "coordination.k8s.io" => coordination::printer(resource),
        "discovery.k8s.io" => discovery::printer(resource),
        "events.k8s.io" => events::printer(resource),
        "apiregistration.k8s.io" => apiregistration::printer(resource),
        "admissionregistration.k8s.io" => admissionregistration::printer(resource),
        _ => None,
    }
}

fn printer_or_default(group: &str, resource: &str) -> &'static Printer {
    printer(group, resource).unwrap_or(&DEFAULT)
}

/// Columns for a resource; kinds without a printer get Kubernetes' default (Name, Created At).
pub fn columns(group: &str, resource: &str) -> Vec<Column> {
    printer_or_default(group, resource).columns.to_vec()
}

/// One row of cells for an object.
pub fn row(group: &str, resource: &str, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    (printer_or_default(group, resource).row)(o, now)
}

/// The whole Table.
pub fn table(
    group: &str,
    resource: &str,
    objs: &[Value],
    include_object: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let p = printer_or_default(group, resource);
    let cols = p
        .columns
        .iter()
        .map(|c| column_json(c.name, c.type_, c.format, c.description, c.priority))
        .collect();
    let rows = objs.iter().map(|o| (p.row)(o, now)).collect();
    assemble(
        cols,
        rows,
        objs,
        include_object,
        resource_version,
        continue_token,
    )
}

/// One `columnDefinitions` entry.
pub(crate) fn column_json(
    name: &str,
    type_: &str,
    format: &str,
    description: &str,
    priority: i32,
) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

/// The Table around its columns and each object's cells.
pub(crate) fn assemble(
    columns: Vec<Value>,
    cells: Vec<Vec<Value>>,
    objs: &[Value],
    include_object: &str,
    resource_version: &str,
    continue_token: Option<&str>,
) -> Value {
    let rows: Vec<Value> = cells
        .into_iter()
        .zip(objs)
        .map(|(cells, o)| {
            let mut r = json!({"cells": cells});
            let obj = row_object(o, include_object);
            if !obj.is_null() {
                r["object"] = obj;
            }
            r
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns, "rows": rows})
}

/// Row objects carry metadata (`Metadata`, default), the whole object (`Object`) or nothing.
fn row_object(o: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => o.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

#[cfg(test)]
mod tests;
