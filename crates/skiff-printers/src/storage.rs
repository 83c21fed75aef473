//! Columns and rows of the storage.k8s.io kinds, as `printers.go` prints them.

use crate::{AGE, Column, NAME, col, since, str_of};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The annotation that makes a StorageClass the default (and its beta form).
const DEFAULT_CLASS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

pub(crate) fn columns(resource: &str) -> Option<Vec<Column>> {
    Some(match resource {
        "storageclasses" => vec![
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
        "csidrivers" => vec![
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
        "csinodes" => vec![
            NAME,
            col(
                "Drivers",
                "integer",
                0,
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            AGE,
        ],
        "volumeattachments" => vec![
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
        _ => return None,
    })
}

pub(crate) fn row(resource: &str, o: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let age = json!(since(str_of(o, "/metadata/creationTimestamp"), now));
    Some(match resource {
        "storageclasses" => {
            let mut name = str_of(o, "/metadata/name").to_string();
            if is_default_class(o) {
                name.push_str(" (default)");
            }
            let or = |v: &str, d: &'static str| {
                if v.is_empty() {
                    d.to_string()
                } else {
                    v.to_string()
                }
            };
            vec![
                json!(name),
                json!(str_of(o, "/provisioner")),
                json!(or(str_of(o, "/reclaimPolicy"), "Delete")),
                json!(or(str_of(o, "/volumeBindingMode"), "Immediate")),
                json!(
                    o["allowVolumeExpansion"]
                        .as_bool()
                        .unwrap_or(false)
                        .to_string()
                ),
                age,
            ]
        }
        "csidrivers" => {
            let spec = &o["spec"];
            let flag = |f: &str, d: bool| json!(spec[f].as_bool().unwrap_or(d));
            let audiences: Vec<&str> = spec["tokenRequests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["audience"].as_str())
                .collect();
            let modes: Vec<&str> = spec["volumeLifecycleModes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let or_unset = |v: Vec<&str>| {
                if v.is_empty() {
                    "<unset>".to_string()
                } else {
                    v.join(",")
                }
            };
            vec![
                json!(str_of(o, "/metadata/name")),
                flag("attachRequired", true),
                flag("podInfoOnMount", false),
                flag("storageCapacity", false),
                json!(or_unset(audiences)),
                flag("requiresRepublish", false),
                json!(or_unset(modes)),
                age,
            ]
        }
        "csinodes" => vec![
            json!(str_of(o, "/metadata/name")),
            json!(o["spec"]["drivers"].as_array().map_or(0, Vec::len)),
            age,
        ],
        "volumeattachments" => vec![
            json!(str_of(o, "/metadata/name")),
            json!(str_of(o, "/spec/attacher")),
            json!(str_of(o, "/spec/source/persistentVolumeName")),
            json!(str_of(o, "/spec/nodeName")),
            json!(o["status"]["attached"].as_bool().unwrap_or(false)),
            age,
        ],
        _ => return None,
    })
}

/// Whether a StorageClass is annotated as the cluster's default.
pub fn is_default_class(o: &Value) -> bool {
    DEFAULT_CLASS
        .iter()
        .any(|a| o["metadata"]["annotations"][a] == "true")
}
