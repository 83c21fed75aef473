//! The API objects a pod or a PersistentVolume names, as kube's `VisitPodSecretNames`,
//! `VisitPodConfigmapNames` (pkg/api/v1/pod) and `VisitPVSecretNames`
//! (pkg/api/v1/persistentvolume) find them. Objects are JSON as stored; a missing or
//! `null` field is an empty one. Empty names are skipped.

use serde_json::Value;

/// `metadata.annotations` key that marks a mirror pod (a static pod's API copy).
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

pub(crate) fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

pub(crate) fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn present(v: &Value) -> bool {
    !v.is_null()
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    CONTAINER_LISTS
        .iter()
        .flat_map(move |key| list(&pod["spec"][*key]))
}

fn volumes(pod: &Value) -> &[Value] {
    list(&pod["spec"]["volumes"])
}

/// Names from `env[].valueFrom.<key_ref>.name` and `envFrom[].<from_ref>.name`.
fn container_names<'a>(c: &'a Value, key_ref: &str, from_ref: &str, out: &mut Vec<&'a str>) {
    out.extend(
        list(&c["envFrom"])
            .iter()
            .map(|e| text(&e[from_ref]["name"])),
    );
    out.extend(
        list(&c["env"])
            .iter()
            .map(|e| text(&e["valueFrom"][key_ref]["name"])),
    );
}

/// Pod volume sources that name a secret, in kube's `switch` order, with the path of
/// the secret's name inside the source. `projected` is handled on its own.
const SECRET_VOLUMES: [(&str, &[&str]); 11] = [
    ("azureFile", &["secretName"]),
    ("cephfs", &["secretRef", "name"]),
    ("cinder", &["secretRef", "name"]),
    ("flexVolume", &["secretRef", "name"]),
    ("projected", &[]),
    ("rbd", &["secretRef", "name"]),
    ("secret", &["secretName"]),
    ("scaleIO", &["secretRef", "name"]),
    ("iscsi", &["secretRef", "name"]),
    ("storageos", &["secretRef", "name"]),
    ("csi", &["nodePublishSecretRef", "name"]),
];

fn dig<'a>(mut v: &'a Value, path: &[&str]) -> &'a Value {
    for key in path {
        v = &v[*key];
    }
    v
}

/// The first source of `volume` among `table` (kube's `switch`), and the names it gives.
fn volume_names<'a>(volume: &'a Value, table: &[(&str, &[&str])], projected: &str) -> Vec<&'a str> {
    let Some((key, path)) = table.iter().find(|(key, _)| present(&volume[*key])) else {
        return Vec::new();
    };
    let source = &volume[*key];
    if *key == "projected" {
        return list(&source["sources"])
            .iter()
            .map(|s| text(&s[projected]["name"]))
            .collect();
    }
    vec![text(dig(source, path))]
}

fn non_empty(mut names: Vec<&str>) -> Vec<&str> {
    names.retain(|n| !n.is_empty());
    names
}

/// Every secret the pod names: image pull secrets, env and envFrom of every container
/// (init and ephemeral too), and secret-bearing volumes. Not those behind its claims.
pub fn pod_secret_names(pod: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = list(&pod["spec"]["imagePullSecrets"])
        .iter()
        .map(|r| text(&r["name"]))
        .collect();
    for c in containers(pod) {
        container_names(c, "secretKeyRef", "secretRef", &mut out);
    }
    for v in volumes(pod) {
        out.extend(volume_names(v, &SECRET_VOLUMES, "secret"));
    }
    non_empty(out)
}

/// Every ConfigMap the pod names: env and envFrom of every container, `configMap` and
/// projected volumes.
pub fn pod_configmap_names(pod: &Value) -> Vec<&str> {
    const TABLE: [(&str, &[&str]); 2] = [("projected", &[]), ("configMap", &["name"])];
    let mut out = Vec::new();
    for c in containers(pod) {
        container_names(c, "configMapKeyRef", "configMapRef", &mut out);
    }
    for v in volumes(pod) {
        out.extend(volume_names(v, &TABLE, "configMap"));
    }
    non_empty(out)
}

/// Every PersistentVolumeClaim the pod uses: `persistentVolumeClaim.claimName`, and for
/// a generic ephemeral volume the claim kube creates for it, `<pod>-<volume>`.
pub fn pod_claim_names(pod: &Value) -> Vec<String> {
    let pod_name = text(&pod["metadata"]["name"]);
    let claim = |v: &Value| {
        if present(&v["persistentVolumeClaim"]) {
            text(&v["persistentVolumeClaim"]["claimName"]).to_string()
        } else if present(&v["ephemeral"]) {
            format!("{pod_name}-{}", text(&v["name"]))
        } else {
            String::new()
        }
    };
    volumes(pod)
        .iter()
        .map(claim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Whether the pod carries the mirror-pod annotation (any value).
pub fn is_mirror_pod(pod: &Value) -> bool {
    pod["metadata"]["annotations"]
        .get(MIRROR_POD_ANNOTATION)
        .is_some()
}

/// PV sources naming kubelet-visible secrets, in kube's `switch` order, and whether a
/// secret reference without a namespace means the bound claim's namespace.
const PV_SECRET_SOURCES: [(&str, bool); 9] = [
    ("azureFile", true),
    ("cephfs", true),
    ("cinder", false),
    ("flexVolume", true),
    ("rbd", true),
    ("scaleIO", true),
    ("iscsi", true),
    ("storageos", false),
    ("csi", false),
];

/// CSI secrets the kubelet reads (the controller ones are not kubelet-visible).
const CSI_NODE_SECRETS: [&str; 3] = [
    "nodePublishSecretRef",
    "nodeStageSecretRef",
    "nodeExpandSecretRef",
];

/// `(namespace, name)` of every secret of the PV that the kubelet needs (kube's
/// `VisitPVSecretNames` with `kubeletVisible`).
pub fn pv_kubelet_secrets(pv: &Value) -> Vec<(&str, &str)> {
    let spec = &pv["spec"];
    let Some((key, claim_default)) = PV_SECRET_SOURCES
        .iter()
        .find(|(key, _)| present(&spec[*key]))
    else {
        return Vec::new();
    };
    let source = &spec[*key];
    let fallback = claim_default.then_some(text(&spec["claimRef"]["namespace"]));
    let mut out: Vec<(&str, &str)> = match *key {
        "azureFile" => vec![(
            namespace_or(text(&source["secretNamespace"]), fallback),
            text(&source["secretName"]),
        )],
        "csi" => CSI_NODE_SECRETS
            .iter()
            .map(|k| secret_ref(&source[*k], None))
            .collect(),
        _ => vec![secret_ref(&source["secretRef"], fallback)],
    };
    out.retain(|(_, name)| !name.is_empty());
    out
}

fn namespace_or<'a>(ns: &'a str, fallback: Option<&'a str>) -> &'a str {
    match fallback {
        Some(f) if ns.is_empty() => f,
        _ => ns,
    }
}

/// `(namespace, name)` of a `SecretReference`, an empty namespace meaning `fallback`.
fn secret_ref<'a>(r: &'a Value, fallback: Option<&'a str>) -> (&'a str, &'a str) {
    (
        namespace_or(text(&r["namespace"]), fallback),
        text(&r["name"]),
    )
}
