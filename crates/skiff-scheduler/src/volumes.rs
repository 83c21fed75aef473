//! Persistent volumes in scheduling, pure: which PersistentVolume a claim binds to (the
//! binder's rules, shared with the PV controller), and the VolumeBinding plugin: what a
//! pod's claims demand of a node, and what must happen to them before the pod is bound
//! there (a static volume to bind, or a volume to provision on the node).

use crate::NodeInfo;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use skiff_types::volumes::SELECTED_NODE;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const AFFINITY_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const NO_VOLUME_TO_BIND: &str = "node(s) didn't find available persistent volumes to bind";
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i128> {
    skiff_validation::quantity::parse(&q?.0)
        .ok()
        .map(|q| q.value())
}

pub fn request_bytes(c: &PersistentVolumeClaim) -> i128 {
    let spec = c.spec.as_ref();
    let req = spec.and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"));
    quantity(req).unwrap_or(0)
}

pub fn capacity_bytes(v: &PersistentVolume) -> i128 {
    quantity(
        v.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref()?.get("storage")),
    )
    .unwrap_or(0)
}

/// A claim's class; "" for none (which only matches volumes without a class).
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

pub fn volume_class(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

pub fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or(""),
        c.metadata.name.as_deref().unwrap_or("")
    )
}

/// The claim a volume's `claimRef` names, as `ns/name`, and its UID if recorded.
pub fn claim_ref(v: &PersistentVolume) -> Option<(String, Option<&str>)> {
    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
    Some((
        format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        ),
        r.uid.as_deref().filter(|u| !u.is_empty()),
    ))
}

/// Whether `v`'s claimRef names `c` (by name, and by UID when it has one).
pub fn refers_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    claim_ref(v).is_some_and(|(key, uid)| {
        key == claim_key(c) && uid.is_none_or(|u| Some(u) == c.metadata.uid.as_deref())
    })
}

fn modes(m: Option<&Vec<String>>) -> &[String] {
    m.map(Vec::as_slice).unwrap_or(&[])
}

/// Whether the volume can serve the claim, ignoring who it is bound to: class, access
/// modes, volume mode, size and the claim's selector.
pub fn satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    let selected = match &cs.selector {
        None => true,
        Some(sel) => serde_json::to_value(sel)
            .ok()
            .and_then(|s| skiff_validation::labels::Selector::from_label_selector(&s).ok())
            .is_some_and(|s| s.matches(&v.metadata.labels.clone().unwrap_or_default())),
    };
    volume_class(v) == claim_class(c)
        && modes(cs.access_modes.as_ref())
            .iter()
            .all(|m| modes(vs.access_modes.as_ref()).contains(m))
        && mode(vs.volume_mode.as_ref()) == mode(cs.volume_mode.as_ref())
        && capacity_bytes(v) >= request_bytes(c)
        && selected
}

/// Whether the volume's node affinity admits the node (no affinity admits every node).
pub fn node_allows(v: &PersistentVolume, node: &NodeInfo) -> bool {
    let required = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref()?.required.as_ref());
    let Some(required) = required else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| serde_json::to_value(t).is_ok_and(|t| crate::filters::term_matches(&t, node)))
}

/// The volume `c` should bind to among `volumes`, as the binder picks it: one pre-bound
/// to the claim first, else the smallest unclaimed one that satisfies it (and, with a
/// node, whose affinity admits that node). Volumes being deleted are never chosen.
pub fn find_match<'a>(
    c: &PersistentVolumeClaim,
    volumes: impl Iterator<Item = &'a PersistentVolume>,
    node: Option<&NodeInfo>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<&PersistentVolume> = None;
    for v in volumes {
        if v.metadata.deletion_timestamp.is_some()
            || !satisfies(v, c)
            || node.is_some_and(|n| !node_allows(v, n))
        {
            continue;
        }
        match claim_ref(v) {
            Some(_) if refers_to(v, c) => return Some(v),
            Some(_) => continue,
            None => {}
        }
        if best.is_none_or(|b| capacity_bytes(v) < capacity_bytes(b)) {
            best = Some(v);
        }
    }
    best
}

/// Whether binding of claims of this class waits for a pod to be scheduled.
pub fn delayed(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// A provisioner that makes volumes, as opposed to `kubernetes.io/no-provisioner`.
pub fn provisions(class: Option<&StorageClass>) -> bool {
    class.is_some_and(|c| c.provisioner != "kubernetes.io/no-provisioner")
}

/// The claims, volumes and classes the scheduler sees, and the static volumes it has
/// promised to claims but not yet seen bound.
#[derive(Debug, Clone, Default)]
pub struct VolumeView {
    pub claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: BTreeMap<String, Arc<PersistentVolume>>,
    pub classes: BTreeMap<String, Arc<StorageClass>>,
    /// volume name -> claim key.
    pub assumed: HashMap<String, String>,
}

/// What must happen to a claim before its pod is bound to the chosen node.
#[derive(Debug, Clone, PartialEq)]
pub enum Prebind {
    /// Bind this static volume to the claim.
    Volume { claim: String, volume: String },
    /// Have the class's provisioner make a volume on the node.
    Provision { claim: String },
}

/// A pod's claims, resolved for filtering.
struct PodClaims<'a> {
    bound: Vec<Option<&'a PersistentVolume>>,
    /// Claims waiting for their first consumer.
    waiting: Vec<&'a PersistentVolumeClaim>,
}

impl VolumeView {
    fn class_of(&self, c: &PersistentVolumeClaim) -> Option<&StorageClass> {
        self.classes.get(claim_class(c)).map(|c| &**c)
    }

    fn resolve<'a>(&'a self, ns: &str, claims: &[String]) -> Result<PodClaims<'a>, String> {
        let mut out = PodClaims {
            bound: Vec::new(),
            waiting: Vec::new(),
        };
        for name in claims {
            let Some(c) = self.claims.get(&format!("{ns}/{name}")) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if c.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            let volume = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            match volume.filter(|v| !v.is_empty()) {
                Some(v) => out.bound.push(self.volumes.get(v).map(|v| &**v)),
                None if delayed(self.class_of(c)) => out.waiting.push(c),
                None => return Err(UNBOUND_IMMEDIATE.into()),
            }
        }
        Ok(out)
    }

    /// PreFilter: a reason no node can take the pod now (a claim missing, being
    /// deleted, or waiting for the binder).
    pub fn pre_filter(&self, ns: &str, claims: &[String]) -> Option<String> {
        self.resolve(ns, claims).err()
    }

    /// Filter: why `node` cannot take the pod's claims (empty: it can).
    pub fn check(&self, ns: &str, claims: &[String], node: &NodeInfo) -> Vec<String> {
        let Ok(pc) = self.resolve(ns, claims) else {
            return Vec::new();
        };
        if pc.bound.iter().any(Option::is_none) {
            return vec![
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)".into(),
            ];
        }
        if pc.bound.iter().flatten().any(|v| !node_allows(v, node)) {
            return vec![AFFINITY_CONFLICT.into()];
        }
        if self.plan(&pc.waiting, node).is_none() {
            return vec![NO_VOLUME_TO_BIND.into()];
        }
        Vec::new()
    }

    /// What to do with the waiting claims for the pod to go to `node`; None if they
    /// cannot be served there.
    fn plan(&self, waiting: &[&PersistentVolumeClaim], node: &NodeInfo) -> Option<Vec<Prebind>> {
        let mut taken: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for c in waiting {
            let key = claim_key(c);
            let selected = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE));
            if selected.is_some_and(|n| *n != node.name) {
                return None;
            }
            let free = self.volumes.values().map(|v| &**v).filter(|v| {
                let name = v.metadata.name.as_deref().unwrap_or("");
                !taken.contains(&name) && self.assumed.get(name).is_none_or(|k| *k == key)
            });
            if let Some(v) = find_match(c, free, Some(node)) {
                let name = v.metadata.name.as_deref().unwrap_or("");
                taken.push(name);
                out.push(Prebind::Volume {
                    claim: key,
                    volume: name.to_string(),
                });
            } else if provisions(self.class_of(c)) {
                out.push(Prebind::Provision { claim: key });
            } else {
                return None;
            }
        }
        Some(out)
    }

    /// The prebind steps for the pod's claims on the chosen node, with the static
    /// volumes assumed so the next pods do not pick them too.
    pub fn assume(&mut self, ns: &str, claims: &[String], node: &NodeInfo) -> Vec<Prebind> {
        let steps = self
            .resolve(ns, claims)
            .ok()
            .and_then(|pc| self.plan(&pc.waiting, node))
            .unwrap_or_default();
        for s in &steps {
            if let Prebind::Volume { claim, volume } = s {
                self.assumed.insert(volume.clone(), claim.clone());
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pv(name: &str, size: &str, class: &str, extra: Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": class, "hostPath": {"path": "/tmp/x"}}});
        json_patch(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn pvc(name: &str, size: &str, class: Option<&str>, extra: Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": class}});
        json_patch(&mut c, extra);
        serde_json::from_value(c).unwrap()
    }

    fn json_patch(base: &mut Value, extra: Value) {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                match (b.get_mut(k), v) {
                    (Some(bv @ Value::Object(_)), Value::Object(_)) => json_patch(bv, v.clone()),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo::from_json(
            &json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
        )
    }

    fn name(v: Option<&PersistentVolume>) -> Option<&str> {
        v.and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let vols = [
            pv("big", "10Gi", "", json!({})),
            pv("small", "1Gi", "", json!({})),
            pv("tiny", "500Mi", "", json!({})),
            pv("other-class", "2Gi", "fast", json!({})),
        ];
        let c = pvc("c", "800Mi", Some(""), json!({}));
        assert_eq!(name(find_match(&c, vols.iter(), None)), Some("small"));
        let fast = pvc("c", "800Mi", Some("fast"), json!({}));
        assert_eq!(
            name(find_match(&fast, vols.iter(), None)),
            Some("other-class")
        );
    }

    #[test]
    fn modes_selector_claims_and_deletion_rule_volumes_out() {
        let c = pvc(
            "c",
            "1Gi",
            Some(""),
            json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
        );
        let rwo = pv("rwo", "1Gi", "", json!({}));
        let rwx = pv(
            "rwx",
            "5Gi",
            "",
            json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadWriteMany"]}}),
        );
        assert_eq!(
            name(find_match(&c, [&rwo, &rwx].into_iter(), None)),
            Some("rwx")
        );
        let taken = pv(
            "taken",
            "1Gi",
            "",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "other"}}}),
        );
        let c = pvc("c", "1Gi", Some(""), json!({}));
        assert!(find_match(&c, [&taken].into_iter(), None).is_none());
        let gone = pv(
            "gone",
            "1Gi",
            "",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        assert!(find_match(&c, [&gone].into_iter(), None).is_none());
        let picky = pvc(
            "c",
            "1Gi",
            Some(""),
            json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}}),
        );
        assert!(find_match(&picky, [&rwo].into_iter(), None).is_none());
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_beats_a_smaller_one() {
        let c = pvc("c", "1Gi", Some(""), json!({}));
        let small = pv("small", "1Gi", "", json!({}));
        let mine = pv(
            "mine",
            "8Gi",
            "",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "c"}}}),
        );
        assert_eq!(
            name(find_match(&c, [&small, &mine].into_iter(), None)),
            Some("mine")
        );
        // Pre-bound to an earlier claim of the same name: not this one.
        let stale = pv(
            "stale",
            "8Gi",
            "",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "c", "uid": "old"}}}),
        );
        assert_eq!(
            name(find_match(&c, [&small, &stale].into_iter(), None)),
            Some("small")
        );
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> Arc<StorageClass> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode})).unwrap())
    }

    fn local(name: &str, node: &str) -> PersistentVolume {
        pv(
            name,
            "1Gi",
            "local",
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}),
        )
    }

    fn view(claims: &[PersistentVolumeClaim], vols: &[PersistentVolume]) -> VolumeView {
        let mut v = VolumeView::default();
        for c in claims {
            v.claims.insert(claim_key(c), Arc::new(c.clone()));
        }
        for p in vols {
            v.volumes
                .insert(p.metadata.name.clone().unwrap(), Arc::new(p.clone()));
        }
        v.classes.insert(
            "local".into(),
            class(
                "local",
                "WaitForFirstConsumer",
                "kubernetes.io/no-provisioner",
            ),
        );
        v.classes.insert(
            "local-path".into(),
            class("local-path", "WaitForFirstConsumer", "skiff.io/local-path"),
        );
        v.classes.insert(
            "now".into(),
            class("now", "Immediate", "skiff.io/local-path"),
        );
        v
    }

    #[test]
    fn waiting_claims_go_where_a_local_volume_is_or_anywhere_a_provisioner_reaches() {
        let c = pvc("data", "1Gi", Some("local"), json!({}));
        let mut v = view(&[c], &[local("on-a", "a")]);
        let claims = vec!["data".to_string()];
        assert!(v.check("default", &claims, &node("a")).is_empty());
        assert_eq!(v.check("default", &claims, &node("b")), [NO_VOLUME_TO_BIND]);
        assert_eq!(
            v.assume("default", &claims, &node("a")),
            [Prebind::Volume {
                claim: "default/data".into(),
                volume: "on-a".into()
            }]
        );
        // Promised to this claim: another claim cannot have it.
        let other = pvc("other", "1Gi", Some("local"), json!({}));
        v.claims.insert(claim_key(&other), Arc::new(other));
        assert_eq!(
            v.check("default", &["other".into()], &node("a")),
            [NO_VOLUME_TO_BIND]
        );

        let dynamic = pvc("dyn", "1Gi", Some("local-path"), json!({}));
        let mut v = view(&[dynamic], &[]);
        let claims = vec!["dyn".to_string()];
        assert!(v.check("default", &claims, &node("b")).is_empty());
        assert_eq!(
            v.assume("default", &claims, &node("b")),
            [Prebind::Provision {
                claim: "default/dyn".into()
            }]
        );
    }

    #[test]
    fn bound_volumes_pin_their_node_and_unbound_immediate_claims_wait() {
        let bound = pvc(
            "b",
            "1Gi",
            Some("local"),
            json!({"spec": {"volumeName": "on-a"}}),
        );
        let immediate = pvc("i", "1Gi", Some("now"), json!({}));
        let selected = pvc(
            "s",
            "1Gi",
            Some("local-path"),
            json!({"metadata": {"annotations": {SELECTED_NODE: "a"}}}),
        );
        let v = view(&[bound, immediate, selected], &[local("on-a", "a")]);
        assert!(v.check("default", &["b".into()], &node("a")).is_empty());
        assert_eq!(
            v.check("default", &["b".into()], &node("b")),
            [AFFINITY_CONFLICT]
        );
        assert_eq!(
            v.pre_filter("default", &["i".into()]).as_deref(),
            Some(UNBOUND_IMMEDIATE)
        );
        assert_eq!(
            v.pre_filter("default", &["nope".into()]).as_deref(),
            Some("persistentvolumeclaim \"nope\" not found")
        );
        assert_eq!(
            v.check("default", &["s".into()], &node("b")),
            [NO_VOLUME_TO_BIND]
        );
        assert!(v.check("default", &["s".into()], &node("a")).is_empty());
    }
}
