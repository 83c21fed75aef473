//! Nodes.

use crate::cells::{age, items, name, none_if_empty, str_of};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) static NODES: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", 0, "The status of the node"),
        col("Roles", "string", 0, "The roles of the node"),
        AGE,
        col(
            "Version",
            "string",
            0,
            "Kubelet Version reported by the node.",
        ),
        col(
            "Internal-IP",
            "string",
            1,
            "List of addresses reachable to the node.",
        ),
        col(
            "External-IP",
            "string",
            1,
            "List of addresses reachable to the node.",
        ),
        col(
            "OS-Image",
            "string",
            1,
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        ),
        col(
            "Kernel-Version",
            "string",
            1,
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        ),
        col(
            "Container-Runtime",
            "string",
            1,
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        ),
    ],
    row: node_row,
};

fn node_row(n: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let addr = |t: &str| {
        items(&n["status"]["addresses"])
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = &n["status"]["nodeInfo"];
    let or_unknown = |ptr: &str| {
        json!(none_if_empty(str_of(info, ptr).to_string()).replace("<none>", "<unknown>"))
    };
    vec![
        name(n),
        json!(node_status(n)),
        json!(none_if_empty(node_roles(n).join(","))),
        age(n, now),
        json!(str_of(info, "/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        or_unknown("/osImage"),
        or_unknown("/kernelVersion"),
        or_unknown("/containerRuntimeVersion"),
    ]
}

/// Ready, NotReady or Unknown, and SchedulingDisabled when cordoned.
fn node_status(n: &Value) -> String {
    let mut status = match items(&n["status"]["conditions"]).find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if n["spec"]["unschedulable"] == json!(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Roles from `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role`.
fn node_roles(n: &Value) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in n["metadata"]["labels"].as_object().into_iter().flatten() {
        if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
            if !r.is_empty() {
                roles.push(r.to_string());
            }
        } else if k == "kubernetes.io/role"
            && let Some(r) = v.as_str().filter(|r| !r.is_empty())
        {
            roles.push(r.to_string());
        }
    }
    roles.sort();
    roles.dedup();
    roles
}
