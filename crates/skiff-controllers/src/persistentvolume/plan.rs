//! What the PersistentVolume controller should do next, as a pure function of claims,
//! volumes, classes and the claims pods use. Level-triggered: each call yields the next
//! step of every binding (volume's `claimRef`, then the claim's `volumeName`, then both
//! statuses), so a step lost to a conflict is simply planned again.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use skiff_scheduler::volumes::{
    claim_class, claim_key, claim_ref, delayed, find_match, provisions, refers_to, satisfies,
};
use skiff_types::volumes::{
    BETA_STORAGE_PROVISIONER, BIND_COMPLETED, PROVISIONED_BY, PV_PROTECTION, PVC_PROTECTION,
    SELECTED_NODE, STORAGE_PROVISIONER,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub struct World<'a> {
    pub claims: &'a BTreeMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: &'a BTreeMap<String, Arc<PersistentVolume>>,
    pub classes: &'a BTreeMap<String, Arc<StorageClass>>,
    /// Claims (`ns/name`) that pods not yet finished use.
    pub in_use: &'a HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the claim (with its UID) into the volume's `claimRef`.
    ClaimVolume {
        volume: String,
        claim: String,
    },
    /// Write the volume's name into the claim (`spec.volumeName`, bind-completed).
    NameVolume {
        claim: String,
        volume: String,
    },
    VolumePhase {
        volume: String,
        phase: &'static str,
        message: Option<String>,
    },
    /// Claim status: `Bound` (capacity and modes from the volume), or `Lost`.
    ClaimPhase {
        claim: String,
        phase: &'static str,
    },
    /// Hand the claim to its class's provisioner.
    Provision {
        claim: String,
        provisioner: String,
    },
    /// The volume was bound by the controller to a claim that now names another volume.
    Unbind {
        volume: String,
    },
    /// A volume whose claim is gone: Released, once a read confirms the claim is gone.
    Release {
        volume: String,
    },
    RemoveClaimFinalizer {
        claim: String,
    },
    RemoveVolumeFinalizer {
        volume: String,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `ns/name` of a claim, or a volume's name.
    pub object: String,
    pub on_claim: bool,
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn claim_event(c: &str, type_: &'static str, reason: &'static str, message: String) -> Action {
    Action::Event(Event {
        object: c.to_string(),
        on_claim: true,
        type_,
        reason,
        message,
    })
}

fn annotation<'a>(
    m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

fn has_finalizer(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, f: &str) -> bool {
    m.finalizers
        .as_ref()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn volume_name(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|v| !v.is_empty())
}

/// Every next step, for every claim and volume.
pub fn plan(w: &World) -> Vec<Action> {
    let mut out = Vec::new();
    for c in w.claims.values() {
        sync_claim(w, c, &mut out);
    }
    for v in w.volumes.values() {
        sync_volume(w, v, &mut out);
    }
    out
}

fn sync_claim(w: &World, c: &PersistentVolumeClaim, out: &mut Vec<Action>) {
    let key = claim_key(c);
    if c.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&c.metadata, PVC_PROTECTION) && !w.in_use.contains(&key) {
            out.push(Action::RemoveClaimFinalizer { claim: key });
        }
        return;
    }
    match volume_name(c) {
        None => sync_unbound_claim(w, c, key, out),
        Some(vn) => sync_bound_claim(w, c, key, vn, out),
    }
}

fn sync_unbound_claim(w: &World, c: &PersistentVolumeClaim, key: String, out: &mut Vec<Action>) {
    // A volume already names this claim (pre-bound, chosen by the scheduler, or
    // provisioned for it): finish from that side.
    if let Some(v) = w.volumes.values().find(|v| refers_to(v, c)) {
        let volume = v.metadata.name.clone().unwrap_or_default();
        out.push(match claim_ref(v).and_then(|(_, uid)| uid) {
            None => Action::ClaimVolume { volume, claim: key },
            Some(_) => Action::NameVolume { claim: key, volume },
        });
        return;
    }
    let class_name = claim_class(c);
    let class = w.classes.get(class_name).map(|c| &**c);
    let selected = annotation(&c.metadata, SELECTED_NODE).is_some();
    if delayed(class) && !selected {
        out.push(claim_event(
            &key,
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        ));
        return;
    }
    if !delayed(class)
        && let Some(v) = find_match(c, w.volumes.values().map(|v| &**v), None)
    {
        let volume = v.metadata.name.clone().unwrap_or_default();
        out.push(Action::ClaimVolume { volume, claim: key });
        return;
    }
    match class {
        Some(sc) if provisions(Some(sc)) => {
            if annotation(&c.metadata, STORAGE_PROVISIONER) != Some(sc.provisioner.as_str()) {
                out.push(Action::Provision {
                    claim: key.clone(),
                    provisioner: sc.provisioner.clone(),
                });
            }
            out.push(claim_event(&key, "Normal", "ExternalProvisioning", format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                sc.provisioner
            )));
        }
        Some(sc) => out.push(claim_event(
            &key,
            "Warning",
            "ProvisioningFailed",
            format!("no volume plugin matched name: {}", sc.provisioner),
        )),
        None if !class_name.is_empty() => out.push(claim_event(
            &key,
            "Warning",
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        )),
        _ => out.push(claim_event(
            &key,
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        )),
    }
}

/// A bound claim whose volume is gone or is another claim's: Lost, and why.
fn lost(out: &mut Vec<Action>, key: String, reason: &'static str, message: &str) {
    let event = claim_event(&key, "Warning", reason, message.into());
    out.push(Action::ClaimPhase {
        claim: key,
        phase: "Lost",
    });
    out.push(event);
}

fn sync_bound_claim(
    w: &World,
    c: &PersistentVolumeClaim,
    key: String,
    vn: &str,
    out: &mut Vec<Action>,
) {
    let Some(v) = w.volumes.get(vn) else {
        if claim_phase(c) == "Bound" {
            lost(
                out,
                key,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            );
        }
        return;
    };
    let volume = vn.to_string();
    match claim_ref(v) {
        None if satisfies(v, c) => out.push(Action::ClaimVolume { volume, claim: key }),
        None => out.push(claim_event(
            &key,
            "Warning",
            "FailedBinding",
            format!("Cannot bind to requested volume \"{vn}\": it does not satisfy the claim"),
        )),
        Some((_, None)) if refers_to(v, c) => out.push(Action::ClaimVolume { volume, claim: key }),
        Some(_) if refers_to(v, c) => {
            if annotation(&c.metadata, BIND_COMPLETED).is_none() {
                out.push(Action::NameVolume { claim: key, volume });
            } else if claim_phase(c) != "Bound"
                || c.status
                    .as_ref()
                    .and_then(|s| s.capacity.as_ref())
                    .is_none()
            {
                out.push(Action::ClaimPhase {
                    claim: key,
                    phase: "Bound",
                });
            }
        }
        Some(_) if claim_phase(c) == "Bound" => {
            lost(
                out,
                key,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            );
        }
        Some(_) => out.push(claim_event(
            &key,
            "Warning",
            "FailedBinding",
            format!("volume \"{vn}\" already bound to a different claim."),
        )),
    }
}

fn sync_volume(w: &World, v: &PersistentVolume, out: &mut Vec<Action>) {
    let name = v.metadata.name.clone().unwrap_or_default();
    if v.metadata.deletion_timestamp.is_some()
        && has_finalizer(&v.metadata, PV_PROTECTION)
        && volume_phase(v) != "Bound"
    {
        out.push(Action::RemoveVolumeFinalizer {
            volume: name.clone(),
        });
    }
    let phase = volume_phase(v);
    let set = |out: &mut Vec<Action>, p: &'static str| {
        if phase != p {
            out.push(Action::VolumePhase {
                volume: name.clone(),
                phase: p,
                message: None,
            });
        }
    };
    let Some((key, uid)) = claim_ref(v) else {
        return set(out, "Available");
    };
    let Some(uid) = uid else {
        // Pre-bound by the user, waiting for its claim.
        return set(out, "Available");
    };
    let claim = w
        .claims
        .get(&key)
        .filter(|c| c.metadata.uid.as_deref() == Some(uid));
    match claim {
        Some(c) => match volume_name(c) {
            Some(vn) if vn == name => set(out, "Bound"),
            // The claim is being bound to it: the claim's side comes next.
            None => {}
            Some(_) => {
                if annotation(&v.metadata, skiff_types::volumes::BOUND_BY_CONTROLLER).is_some() {
                    out.push(Action::Unbind { volume: name });
                }
            }
        },
        None => released(v, name, phase, out),
    }
}

/// A volume whose claim is gone: Released, then reclaimed by its policy.
fn released(v: &PersistentVolume, name: String, phase: &str, out: &mut Vec<Action>) {
    if !matches!(phase, "Released" | "Failed") {
        out.push(Action::Release { volume: name });
        return;
    }
    if phase == "Failed" {
        return;
    }
    let policy = v
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let message = match policy {
        // A provisioner that made the volume deletes it.
        "Delete" if annotation(&v.metadata, PROVISIONED_BY).is_some() => return,
        "Delete" => format!(
            "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
        ),
        "Recycle" => "No recycler plugin found for the volume!".to_string(),
        _ => return,
    };
    let reason = if policy == "Delete" {
        "VolumeFailedDelete"
    } else {
        "VolumeFailedRecycle"
    };
    out.push(Action::VolumePhase {
        volume: name.clone(),
        phase: "Failed",
        message: Some(message.clone()),
    });
    out.push(Action::Event(Event {
        object: name,
        on_claim: false,
        type_: "Warning",
        reason,
        message,
    }));
}

/// The beta annotation a provisioner may still read, next to the GA one.
pub fn provisioner_annotations(provisioner: &str) -> [(&'static str, String); 2] {
    [
        (STORAGE_PROVISIONER, provisioner.to_string()),
        (BETA_STORAGE_PROVISIONER, provisioner.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pv(name: &str, size: &str, extra: Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": "", "hostPath": {"path": "/x"}, "persistentVolumeReclaimPolicy": "Retain"}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pvc(name: &str, class: &str, extra: Value) -> Arc<PersistentVolumeClaim> {
        let mut c = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": class}, "status": {"phase": "Pending"}});
        merge(&mut c, extra);
        Arc::new(serde_json::from_value(c).unwrap())
    }

    fn merge(b: &mut Value, e: Value) {
        if let (Some(bm), Value::Object(em)) = (b.as_object_mut(), e) {
            for (k, v) in em {
                match bm.get_mut(&k) {
                    Some(bv) if bv.is_object() && v.is_object() => merge(bv, v),
                    _ => {
                        bm.insert(k, v);
                    }
                }
            }
        }
    }

    fn classes() -> BTreeMap<String, Arc<StorageClass>> {
        [
            ("local-path", "WaitForFirstConsumer", "skiff.io/local-path"),
            ("now", "Immediate", "skiff.io/local-path"),
        ]
        .into_iter()
        .map(|(n, m, p)| {
            (
                n.to_string(),
                Arc::new(
                    serde_json::from_value(
                        json!({"metadata": {"name": n}, "provisioner": p, "volumeBindingMode": m}),
                    )
                    .unwrap(),
                ),
            )
        })
        .collect()
    }

    fn run(
        claims: &[Arc<PersistentVolumeClaim>],
        volumes: &[Arc<PersistentVolume>],
        in_use: &[&str],
    ) -> Vec<Action> {
        let claims = claims.iter().map(|c| (claim_key(c), c.clone())).collect();
        let volumes = volumes
            .iter()
            .map(|v| (v.metadata.name.clone().unwrap(), v.clone()))
            .collect();
        let in_use = in_use.iter().map(|s| s.to_string()).collect();
        plan(&World {
            claims: &claims,
            volumes: &volumes,
            classes: &classes(),
            in_use: &in_use,
        })
    }

    fn reasons(a: &[Action]) -> Vec<&str> {
        a.iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_immediate_claim_binds_the_smallest_fitting_volume_in_three_steps() {
        let c = pvc("c", "", json!({}));
        let vols = [
            pv("big", "5Gi", json!({})),
            pv("fit", "2Gi", json!({})),
            pv("small", "512Mi", json!({})),
        ];
        let a = run(std::slice::from_ref(&c), &vols, &[]);
        assert!(
            a.contains(&Action::ClaimVolume {
                volume: "fit".into(),
                claim: "default/c".into()
            }),
            "{a:?}"
        );
        let claimed = pv(
            "fit",
            "2Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "u-c"}}}),
        );
        let a = run(
            std::slice::from_ref(&c),
            std::slice::from_ref(&claimed),
            &[],
        );
        assert_eq!(
            a,
            [Action::NameVolume {
                claim: "default/c".into(),
                volume: "fit".into()
            }]
        );
        let named = pvc(
            "c",
            "",
            json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}, "spec": {"volumeName": "fit"}}),
        );
        let a = run(&[named], &[claimed], &[]);
        assert!(
            a.contains(&Action::ClaimPhase {
                claim: "default/c".into(),
                phase: "Bound"
            }),
            "{a:?}"
        );
        assert!(
            a.contains(&Action::VolumePhase {
                volume: "fit".into(),
                phase: "Bound",
                message: None
            }),
            "{a:?}"
        );
    }

    #[test]
    fn delayed_claims_wait_for_a_consumer_then_go_to_the_provisioner() {
        let a = run(&[pvc("c", "local-path", json!({}))], &[], &[]);
        assert_eq!(reasons(&a), ["WaitForFirstConsumer"]);
        let selected = pvc(
            "c",
            "local-path",
            json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}}}),
        );
        let a = run(&[selected], &[], &[]);
        assert_eq!(
            a[0],
            Action::Provision {
                claim: "default/c".into(),
                provisioner: "skiff.io/local-path".into()
            }
        );
        assert_eq!(reasons(&a), ["ExternalProvisioning"]);
        let a = run(&[pvc("c", "", json!({}))], &[], &[]);
        assert_eq!(reasons(&a), ["FailedBinding"]);
    }

    #[test]
    fn a_volume_whose_claim_is_gone_is_released_and_reclaimed_by_its_policy() {
        let bound = pv(
            "v",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "gone", "uid": "u-gone"}}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            run(&[], &[bound], &[]),
            [Action::Release { volume: "v".into() }]
        );
        let retained = pv(
            "v",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "gone", "uid": "u-gone"}}, "status": {"phase": "Released"}}),
        );
        assert!(run(&[], &[retained], &[]).is_empty());
        let manual_delete = pv(
            "v",
            "1Gi",
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "default", "name": "gone", "uid": "u-gone"}}, "status": {"phase": "Released"}}),
        );
        assert_eq!(
            reasons(&run(&[], &[manual_delete], &[])),
            ["VolumeFailedDelete"]
        );
        let provisioned = pv(
            "v",
            "1Gi",
            json!({"metadata": {"annotations": {PROVISIONED_BY: "skiff.io/local-path"}}, "spec": {"persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "default", "name": "gone", "uid": "u-gone"}}, "status": {"phase": "Released"}}),
        );
        assert!(run(&[], &[provisioned], &[]).is_empty());
        // A new claim of the same name is not the old one.
        let bound = pv(
            "v",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "old"}}, "status": {"phase": "Bound"}}),
        );
        let a = run(&[pvc("c", "", json!({}))], &[bound], &[]);
        assert!(a.contains(&Action::Release { volume: "v".into() }), "{a:?}");
    }

    #[test]
    fn protection_finalizers_go_once_nothing_uses_the_claim_or_binds_the_volume() {
        let deleting = pvc(
            "c",
            "",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [PVC_PROTECTION]}}),
        );
        assert!(run(std::slice::from_ref(&deleting), &[], &["default/c"]).is_empty());
        assert_eq!(
            run(&[deleting], &[], &[]),
            [Action::RemoveClaimFinalizer {
                claim: "default/c".into()
            }]
        );
        let bound = pv(
            "v",
            "1Gi",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [PV_PROTECTION]}, "spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "u-c"}}, "status": {"phase": "Bound"}}),
        );
        let c = pvc(
            "c",
            "",
            json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}, "spec": {"volumeName": "v"}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}),
        );
        assert!(run(std::slice::from_ref(&c), &[bound], &[]).is_empty());
        let free = pv(
            "v",
            "1Gi",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [PV_PROTECTION]}, "status": {"phase": "Available"}}),
        );
        assert_eq!(
            run(&[], &[free], &[]),
            [Action::RemoveVolumeFinalizer { volume: "v".into() }]
        );
    }
}
