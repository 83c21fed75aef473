//! Validation of PersistentVolumes, PersistentVolumeClaims and StorageClasses, with the
//! paths and words of Kubernetes' `ValidatePersistentVolume*` and `ValidateStorageClass*`.

use crate::names;
use crate::quantity;
use serde_json::{Value, json};
use skiff_types::FieldError;

type Errs = Vec<FieldError>;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

/// The PersistentVolume sources skiff's nodes can mount (and the rest of Kubernetes' list,
/// so a PV of another type is accepted as Kubernetes accepts it).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn storage_request(errs: &mut Errs, field: &str, v: &Value) {
    match v.as_str().map(quantity::parse) {
        None => errs.push(FieldError::required(field, "")),
        Some(Err(_)) => errs.push(FieldError::invalid(field, v.clone(), "must be a quantity")),
        Some(Ok(q)) if q.value() <= 0 => errs.push(FieldError::invalid(
            field,
            v.clone(),
            "must be greater than zero",
        )),
        Some(Ok(_)) => {}
    }
}

fn access_modes(errs: &mut Errs, field: &str, v: &Value) {
    let modes = v.as_array().cloned().unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(
            field,
            "at least 1 access mode is required",
        ));
    }
    for m in &modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            errs.push(FieldError::not_supported(field, m.clone(), ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        errs.push(FieldError::forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn volume_mode(errs: &mut Errs, field: &str, v: &Value) {
    if let Some(m) = v.as_str()
        && !VOLUME_MODES.contains(&m)
    {
        errs.push(FieldError::not_supported(field, json!(m), VOLUME_MODES));
    }
}

pub fn claim(errs: &mut Errs, spec_path: &str, spec: &Value) {
    access_modes(
        errs,
        &format!("{spec_path}.accessModes"),
        &spec["accessModes"],
    );
    storage_request(
        errs,
        &format!("{spec_path}.resources[storage]"),
        &spec["resources"]["requests"]["storage"],
    );
    volume_mode(
        errs,
        &format!("{spec_path}.volumeMode"),
        &spec["volumeMode"],
    );
    if let Some(class) = spec["storageClassName"].as_str().filter(|c| !c.is_empty()) {
        for m in names::is_dns1123_subdomain(class) {
            errs.push(FieldError::invalid(
                format!("{spec_path}.storageClassName"),
                json!(class),
                m,
            ));
        }
    }
}

pub fn volume(errs: &mut Errs, pv: &Value) {
    let spec = &pv["spec"];
    storage_request(errs, "spec.capacity[storage]", &spec["capacity"]["storage"]);
    access_modes(errs, "spec.accessModes", &spec["accessModes"]);
    volume_mode(errs, "spec.volumeMode", &spec["volumeMode"]);
    if let Some(p) = spec["persistentVolumeReclaimPolicy"].as_str()
        && !["Delete", "Recycle", "Retain"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            json!(p),
            &["Delete", "Recycle", "Retain"],
        ));
    }
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| spec[*s].is_object())
        .collect();
    match sources.as_slice() {
        [] => errs.push(FieldError::required("spec", "must specify a volume type")),
        [one] => source(errs, one, spec),
        [_, second, ..] => errs.push(FieldError::forbidden(
            format!("spec.{second}"),
            "may not specify more than 1 volume type",
        )),
    }
}

fn source(errs: &mut Errs, kind: &str, spec: &Value) {
    let path = spec[kind]["path"].as_str().unwrap_or("");
    match kind {
        "hostPath" | "local" if path.is_empty() => {
            errs.push(FieldError::required(format!("spec.{kind}.path"), ""))
        }
        "hostPath" | "local" if path.split('/').any(|p| p == "..") => {
            errs.push(FieldError::invalid(
                format!("spec.{kind}.path"),
                json!(path),
                "must not contain '..'",
            ))
        }
        "local" if !spec["nodeAffinity"].is_object() => errs.push(FieldError::required(
            "spec.nodeAffinity",
            "Local volume requires node affinity",
        )),
        _ => {}
    }
}

pub fn storage_class(errs: &mut Errs, sc: &Value) {
    match sc["provisioner"].as_str() {
        None | Some("") => errs.push(FieldError::required("provisioner", "")),
        Some(p) => {
            for m in names::qualified_name(p) {
                errs.push(FieldError::invalid("provisioner", json!(p), m));
            }
        }
    }
    if let Some(p) = sc["reclaimPolicy"].as_str()
        && !["Delete", "Retain"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            "reclaimPolicy",
            json!(p),
            &["Delete", "Retain"],
        ));
    }
    let modes = ["Immediate", "WaitForFirstConsumer"];
    match sc["volumeBindingMode"].as_str() {
        None => errs.push(FieldError::required("volumeBindingMode", "")),
        Some(m) if !modes.contains(&m) => errs.push(FieldError::not_supported(
            "volumeBindingMode",
            json!(m),
            &modes,
        )),
        Some(_) => {}
    }
}

/// What may change in a StorageClass: labels, annotations, mount options, expansion and
/// topologies.
pub fn storage_class_update(errs: &mut Errs, new: &Value, old: &Value) {
    for f in ["parameters", "provisioner", "reclaimPolicy"] {
        if new[f] != old[f] {
            errs.push(FieldError::forbidden(
                f,
                format!("updates to {f} are forbidden."),
            ));
        }
    }
    if new["volumeBindingMode"] != old["volumeBindingMode"] {
        errs.push(FieldError::invalid(
            "volumeBindingMode",
            new["volumeBindingMode"].clone(),
            "field is immutable",
        ));
    }
}

/// A claim's spec is fixed once created, except: the binder sets `volumeName` once, a
/// class may be given to a claim that had none, and a bound claim's storage request
/// may grow (the resize admission decides whether the class allows it).
pub fn claim_update(errs: &mut Errs, new: &Value, old: &Value) {
    let (mut n, mut o) = (new["spec"].clone(), old["spec"].clone());
    let unset = |v: &mut Value, f: &str| {
        if let Some(m) = v.as_object_mut() {
            m.remove(f);
        }
    };
    if old["spec"]["volumeName"].as_str().is_none_or(str::is_empty) {
        unset(&mut n, "volumeName");
        unset(&mut o, "volumeName");
    }
    if old["spec"]["storageClassName"].is_null() {
        unset(&mut n, "storageClassName");
        unset(&mut o, "storageClassName");
    }
    let bound = old["status"]["phase"] == "Bound";
    if bound {
        let (ns, os) = (
            &new["spec"]["resources"]["requests"]["storage"],
            &old["spec"]["resources"]["requests"]["storage"],
        );
        if let (Some(a), Some(b)) = (
            quantity_of(ns),
            quantity_of(&old["status"]["capacity"]["storage"]),
        ) && a < b
            && ns != os
        {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
        n["resources"]["requests"]["storage"] = os.clone();
    }
    if n != o {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                crate::validate::spec_diff(&o, &n)
            ),
        ));
    }
}

fn quantity_of(v: &Value) -> Option<i128> {
    v.as_str()
        .and_then(|s| quantity::parse(s).ok())
        .map(|q| q.value())
}

pub fn volume_update(errs: &mut Errs, new: &Value, old: &Value) {
    let source = |pv: &Value| -> Value {
        PV_SOURCES
            .iter()
            .filter(|s| pv["spec"][**s].is_object())
            .map(|s| json!({*s: pv["spec"][*s]}))
            .next()
            .unwrap_or(Value::Null)
    };
    let (ns, os) = (source(new), source(old));
    if ns != os {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                crate::validate::spec_diff(&os, &ns)
            ),
        ));
    }
    if new["spec"]["volumeMode"] != old["spec"]["volumeMode"] {
        errs.push(FieldError::invalid(
            "volumeMode",
            new["spec"]["volumeMode"].clone(),
            "field is immutable",
        ));
    }
    if !old["spec"]["nodeAffinity"].is_null()
        && new["spec"]["nodeAffinity"] != old["spec"]["nodeAffinity"]
    {
        errs.push(FieldError::invalid(
            "nodeAffinity",
            new["spec"]["nodeAffinity"].clone(),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn claims_need_access_modes_and_a_positive_storage_request() {
        let mut e = Vec::new();
        claim(
            &mut e,
            "spec",
            &json!({"resources": {"requests": {"storage": "0"}}}),
        );
        assert_eq!(
            msgs(&e),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero"
            ]
        );
    }

    #[test]
    fn volumes_need_one_source_and_local_ones_node_affinity() {
        let base =
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        let mut e = Vec::new();
        volume(&mut e, &base);
        assert_eq!(
            msgs(&e),
            ["spec: Required value: must specify a volume type"]
        );
        let mut local = base.clone();
        local["spec"]["local"] = json!({"path": "/mnt/disk"});
        let mut e = Vec::new();
        volume(&mut e, &local);
        assert_eq!(
            msgs(&e),
            ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
        local["spec"]["hostPath"] = json!({"path": "/x"});
        let mut e = Vec::new();
        volume(&mut e, &local);
        assert!(
            msgs(&e)[0].contains("may not specify more than 1 volume type"),
            "{e:?}"
        );
    }

    #[test]
    fn a_bound_claim_may_grow_but_not_shrink_or_change_anything_else() {
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv1", "storageClassName": "local-path"},
                         "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let mut e = Vec::new();
        claim_update(&mut e, &grown, &old);
        assert!(e.is_empty(), "{e:?}");
        let mut shrunk = old.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
        let mut e = Vec::new();
        claim_update(&mut e, &shrunk, &old);
        assert_eq!(
            msgs(&e),
            [
                "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
            ]
        );
        let mut other = old.clone();
        other["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let mut e = Vec::new();
        claim_update(&mut e, &other, &old);
        assert!(msgs(&e)[0].starts_with("spec: Forbidden: spec is immutable after creation"));
    }

    #[test]
    fn an_unbound_claim_may_be_given_its_volume_but_not_resized() {
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv1");
        bound["spec"]["storageClassName"] = json!("local-path");
        let mut e = Vec::new();
        claim_update(&mut e, &bound, &old);
        assert!(e.is_empty(), "{e:?}");
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let mut e = Vec::new();
        claim_update(&mut e, &grown, &old);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn storage_classes_keep_provisioner_parameters_and_policies() {
        let old = json!({"provisioner": "skiff.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        let mut e = Vec::new();
        storage_class(&mut e, &old);
        assert!(e.is_empty(), "{e:?}");
        let mut new = old.clone();
        new["provisioner"] = json!("other.io/x");
        new["allowVolumeExpansion"] = json!(true);
        let mut e = Vec::new();
        storage_class_update(&mut e, &new, &old);
        assert_eq!(
            msgs(&e),
            ["provisioner: Forbidden: updates to provisioner are forbidden."]
        );
    }
}
