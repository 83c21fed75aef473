//! PersistentVolumes and PersistentVolumeClaims.

use crate::cells::{age, items, name, none_if_empty, str_of};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) static PERSISTENTVOLUMES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Capacity",
            "string",
            0,
            "capacity is the description of the persistent volume's resources and capacity.",
        ),
        col(
            "Access Modes",
            "string",
            0,
            "accessModes contains all ways the volume can be mounted.",
        ),
        col(
            "Reclaim Policy",
            "string",
            0,
            "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
        ),
        col(
            "Status",
            "string",
            0,
            "phase indicates if a volume is available, bound to a claim, or released by a claim.",
        ),
        col(
            "Claim",
            "string",
            0,
            "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
        ),
        col(
            "StorageClass",
            "string",
            0,
            "storageClassName is the name of StorageClass to which this persistent volume belongs.",
        ),
        col(
            "VolumeAttributesClass",
            "string",
            0,
            "Name of VolumeAttributesClass to which this persistent volume belongs.",
        ),
        col(
            "Reason",
            "string",
            0,
            "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
        ),
        AGE,
        col(
            "VolumeMode",
            "string",
            1,
            "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
        ),
    ],
    row: pv_row,
};

pub(crate) static PERSISTENTVOLUMECLAIMS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Status",
            "string",
            0,
            "phase represents the current phase of PersistentVolumeClaim.",
        ),
        col(
            "Volume",
            "string",
            0,
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
        ),
        col(
            "Capacity",
            "string",
            0,
            "capacity represents the actual resources of the underlying volume.",
        ),
        col(
            "Access Modes",
            "string",
            0,
            "accessModes contains the desired access modes the volume should have.",
        ),
        col(
            "StorageClass",
            "string",
            0,
            "storageClassName is the name of the StorageClass required by the claim.",
        ),
        col(
            "VolumeAttributesClass",
            "string",
            0,
            "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
        ),
        AGE,
        col(
            "VolumeMode",
            "string",
            1,
            "volumeMode defines what type of volume is required by the claim.",
        ),
    ],
    row: pvc_row,
};

fn pv_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let r = &o["spec"]["claimRef"];
    let claim = match (r["namespace"].as_str(), r["name"].as_str()) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => String::new(),
    };
    vec![
        name(o),
        json!(str_of(o, "/spec/capacity/storage")),
        json!(access_modes(&o["spec"]["accessModes"])),
        json!(str_of(o, "/spec/persistentVolumeReclaimPolicy")),
        json!(str_of(o, "/status/phase")),
        json!(claim),
        json!(str_of(o, "/spec/storageClassName")),
        attributes_class(o),
        json!(str_of(o, "/status/reason")),
        age(o, now),
        json!(str_of(o, "/spec/volumeMode")),
    ]
}

fn pvc_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(o),
        json!(str_of(o, "/status/phase")),
        json!(str_of(o, "/spec/volumeName")),
        json!(str_of(o, "/status/capacity/storage")),
        json!(access_modes(&o["status"]["accessModes"])),
        json!(str_of(o, "/spec/storageClassName")),
        attributes_class(o),
        age(o, now),
        json!(str_of(o, "/spec/volumeMode")),
    ]
}

fn attributes_class(o: &Value) -> Value {
    json!(none_if_empty(
        str_of(o, "/spec/volumeAttributesClassName").to_string()
    ))
}

/// RWO, ROX, RWX, RWOP.
fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = items(v)
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            o => o,
        })
        .collect();
    modes.join(",")
}
