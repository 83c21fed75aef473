//! The rbac.authorization.k8s.io group's printers.

use crate::cells::{age, items, kind_name, name};
use crate::{AGE, DEFAULT, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    Some(match resource {
        // printers.go gives Roles and ClusterRoles the default's columns.
        "roles" | "clusterroles" => &DEFAULT,
        "rolebindings" | "clusterrolebindings" => &BINDINGS,
        _ => return None,
    })
}

static BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        col("Role", "string", 0, "Role to which this binding refers"),
        AGE,
        col("Users", "string", 1, "Users in the binding"),
        col("Groups", "string", 1, "Groups in the binding"),
        col(
            "ServiceAccounts",
            "string",
            1,
            "ServiceAccounts in the binding",
        ),
    ],
    row: binding_row,
};

fn binding_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(o),
        json!(kind_name(&o["roleRef"], false)),
        age(o, now),
        json!(subjects(o, "User")),
        json!(subjects(o, "Group")),
        json!(subjects(o, "ServiceAccount")),
    ]
}

/// The binding's subjects of one kind; service accounts as `namespace/name`.
fn subjects(o: &Value, kind: &str) -> String {
    items(&o["subjects"])
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            let name = s["name"].as_str().unwrap_or("");
            if kind == "ServiceAccount" {
                format!("{}/{name}", s["namespace"].as_str().unwrap_or(""))
            } else {
                name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
