//! Columns and rows of the storage.k8s.io kinds, as `printers.go` prints them.

use crate::cells::{age, items, name, str_of};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The annotation that makes a StorageClass the default (and its beta form).
const DEFAULT_CLASS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    Some(match resource {
        "storageclasses" => &STORAGECLASSES,
        "csidrivers" => &CSIDRIVERS,
        "csinodes" => &CSINODES,
        "volumeattachments" => &VOLUMEATTACHMENTS,
        _ => return None,
    })
}

static STORAGECLASSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Provisioner",
            "string",
            0,
            "Indicates the type of the provisioner.",
        ),
        col(
            "ReclaimPolicy",
            "string",
            0,
            "Indicates the type of the reclaim policy.",
        ),
        col(
            "VolumeBindingMode",
            "string",
            0,
            "Indicates how PersistentVolumeClaims should be provisioned and bound",
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            0,
            "Indicates whether the storage class allow volume expand",
        ),
        AGE,
    ],
    row: storageclass_row,
};

fn storageclass_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut name = str_of(o, "/metadata/name").to_string();
    if is_default_class(o) {
        name.push_str(" (default)");
    }
    let or = |ptr: &str, d: &'static str| match str_of(o, ptr) {
        "" => d.to_string(),
        v => v.to_string(),
    };
    let expansion = o["allowVolumeExpansion"].as_bool().unwrap_or(false);
    vec![
        json!(name),
        json!(str_of(o, "/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(expansion.to_string()),
        age(o, now),
    ]
}

static CSIDRIVERS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "AttachRequired",
            "boolean",
            0,
            "Indicates this CSI volume driver requires an attach operation",
        ),
        col(
            "PodInfoOnMount",
            "boolean",
            0,
            "Indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations",
        ),
        col(
            "StorageCapacity",
            "boolean",
            0,
            "Indicates this CSI volume driver supports storage capacity tracking",
        ),
        col(
            "TokenRequests",
            "string",
            0,
            "Indicates the CSI volume driver requires tokens with audiences",
        ),
        col(
            "RequiresRepublish",
            "boolean",
            0,
            "Indicates the CSI volume driver requires periodic calls to NodePublishVolume",
        ),
        col(
            "Modes",
            "string",
            0,
            "Indicates the volume lifecycle modes supported by the CSI driver",
        ),
        AGE,
    ],
    row: csidriver_row,
};

fn csidriver_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &o["spec"];
    let flag = |f: &str, d: bool| json!(spec[f].as_bool().unwrap_or(d));
    let audiences = items(&spec["tokenRequests"]).filter_map(|t| t["audience"].as_str());
    let modes = items(&spec["volumeLifecycleModes"]).filter_map(Value::as_str);
    vec![
        name(o),
        flag("attachRequired", true),
        flag("podInfoOnMount", false),
        flag("storageCapacity", false),
        json!(or_unset(audiences.collect())),
        flag("requiresRepublish", false),
        json!(or_unset(modes.collect())),
        age(o, now),
    ]
}

fn or_unset(v: Vec<&str>) -> String {
    if v.is_empty() {
        "<unset>".to_string()
    } else {
        v.join(",")
    }
}

static CSINODES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Drivers",
            "integer",
            0,
            "Drivers indicates the number of CSI drivers registered on the node",
        ),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(o["spec"]["drivers"].as_array().map_or(0, Vec::len)),
            age(o, now),
        ]
    },
};

static VOLUMEATTACHMENTS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Attacher",
            "string",
            0,
            "Attacher indicates the name of the volume driver that MUST handle this request.",
        ),
        col(
            "PV",
            "string",
            0,
            "Name of the persistent volume to attach.",
        ),
        col(
            "Node",
            "string",
            0,
            "The node that the volume should be attached to.",
        ),
        col(
            "Attached",
            "boolean",
            0,
            "Indicates the volume is successfully attached.",
        ),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(str_of(o, "/spec/attacher")),
            json!(str_of(o, "/spec/source/persistentVolumeName")),
            json!(str_of(o, "/spec/nodeName")),
            json!(o["status"]["attached"].as_bool().unwrap_or(false)),
            age(o, now),
        ]
    },
};

/// Whether a StorageClass is annotated as the cluster's default.
pub fn is_default_class(o: &Value) -> bool {
    DEFAULT_CLASS
        .iter()
        .any(|a| o["metadata"]["annotations"][a] == "true")
}
