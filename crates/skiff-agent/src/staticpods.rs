//! Static pods: Pod manifests in a folder (`<data-dir>/agent/pod-manifests`, or
//! `--pod-manifest-path`) that the agent runs without the API server, as kubelet does.
//! Each gets kubelet's identity: name `<name>-<node>`, a uid hashed from the manifest and
//! the node (so a restarted agent adopts its containers), and the `kubernetes.io/config.*`
//! annotations. The API shows a mirror pod (annotated `kubernetes.io/config.mirror`,
//! owned by the Node) that carries the status; deleting it only brings it back.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// `namespace/name`, the key static and mirror pods are matched by.
pub fn full_name(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or(""),
        p["metadata"]["name"].as_str().unwrap_or("")
    )
}

pub fn is_mirror(p: &Value) -> bool {
    p["metadata"]["annotations"][MIRROR_ANNOTATION].is_string()
}

/// The static pods of `dir`, by full name. Files that cannot be read or are not a Pod
/// are skipped with a warning (kubelet logs and ignores them too); hidden files are
/// ignored, as are two files defining the same pod (the first, by file name, wins).
pub fn load(dir: &Path, node: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    for path in files {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| from_manifest(&text, node));
        match parsed {
            Ok(pod) => {
                let key = full_name(&pod);
                if out.contains_key(&key) {
                    tracing::warn!(file = %path.display(), pod = %key, "static pod defined twice; ignoring this file");
                    continue;
                }
                out.insert(key, pod);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "not a static pod manifest")
            }
        }
    }
    out
}

/// One manifest (YAML or JSON) made into the pod this node runs.
pub fn from_manifest(text: &str, node: &str) -> Result<Value, String> {
    let mut pod: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if pod["kind"] != "Pod" || pod["apiVersion"] != "v1" {
        return Err(format!(
            "kind {} apiVersion {}: only v1 Pods can be static pods",
            pod["kind"], pod["apiVersion"]
        ));
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        return Err("metadata.name: Required value".into());
    }
    if pod["spec"]["containers"]
        .as_array()
        .is_none_or(|c| c.is_empty())
    {
        return Err("spec.containers: Required value".into());
    }
    // The uid hashes what the file says plus the node, as kubelet's does: the same
    // manifest keeps its pod (and containers) across agent restarts; an edit replaces it.
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&pod).unwrap_or_default());
    h.update(format!("host:{node}"));
    let uid: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = pod["metadata"]
        .as_object_mut()
        .ok_or("metadata: not an object")?;
    meta.insert("name".into(), json!(format!("{name}-{node}")));
    if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), json!("default"));
    }
    meta.insert("uid".into(), json!(uid));
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann[HASH_ANNOTATION] = json!(uid);
    ann[SOURCE_ANNOTATION] = json!("file");
    ann[SEEN_ANNOTATION] = json!(chrono::Utc::now().to_rfc3339());
    skiff_validation::default_object("", "pods", &mut pod);
    let spec = pod["spec"].as_object_mut().ok_or("spec: not an object")?;
    spec.insert("nodeName".into(), json!(node));
    // Static pods tolerate every NoExecute taint: nothing may evict them.
    let tol = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tol.as_array_mut()
        && !list
            .iter()
            .any(|t| t["operator"] == "Exists" && t["effect"] == "NoExecute" && t["key"].is_null())
    {
        list.push(json!({"operator": "Exists", "effect": "NoExecute"}));
    }
    pod["status"] = json!({"phase": "Pending"});
    Ok(pod)
}

/// The mirror pod to create in the API for `pod`, owned by the node.
pub fn mirror_of(pod: &Value, node_uid: &str) -> Value {
    let mut m = pod.clone();
    let meta = m["metadata"]
        .as_object_mut()
        .expect("static pods have metadata");
    meta.remove("uid");
    meta.remove("resourceVersion");
    let hash = pod["metadata"]["uid"].clone();
    meta["annotations"][MIRROR_ANNOTATION] = hash;
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "v1",
            "kind": "Node",
            "name": pod["spec"]["nodeName"],
            "uid": node_uid,
            "controller": true,
        }]),
    );
    m.as_object_mut().expect("object").remove("status");
    m
}

/// Whether `mirror` stands for this version of `pod` and is not being deleted.
pub fn mirror_matches(pod: &Value, mirror: &Value) -> bool {
    mirror["metadata"]["annotations"][MIRROR_ANNOTATION] == pod["metadata"]["uid"]
        && mirror["metadata"]["deletionTimestamp"].is_null()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: nginx\n";

    #[test]
    fn a_manifest_gets_kubelets_identity() {
        let p = from_manifest(WEB, "node1").unwrap();
        assert_eq!(p["metadata"]["name"], "web-node1");
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["spec"]["nodeName"], "node1");
        let uid = p["metadata"]["uid"].as_str().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(p["metadata"]["annotations"][HASH_ANNOTATION], uid);
        assert_eq!(p["metadata"]["annotations"][SOURCE_ANNOTATION], "file");
        // Defaults as the API server would give them.
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert!(
            p["spec"]["tolerations"]
                .as_array()
                .unwrap()
                .contains(&json!({"operator": "Exists", "effect": "NoExecute"}))
        );
        // Same file, same node: same uid. An edit or another node: another.
        assert_eq!(from_manifest(WEB, "node1").unwrap()["metadata"]["uid"], uid);
        assert_ne!(from_manifest(WEB, "node2").unwrap()["metadata"]["uid"], uid);
        let edited = WEB.replace("nginx", "busybox");
        assert_ne!(
            from_manifest(&edited, "node1").unwrap()["metadata"]["uid"],
            uid
        );
    }

    #[test]
    fn only_pods_are_static_pods() {
        assert!(
            from_manifest("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", "n").is_err()
        );
        assert!(from_manifest("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c, image: i}]}\n", "n")
            .unwrap_err()
            .contains("metadata.name"));
        assert!(
            from_manifest(
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n",
                "n"
            )
            .unwrap_err()
            .contains("spec.containers")
        );
        assert!(from_manifest(": : :", "n").is_err());
    }

    #[test]
    fn mirrors_point_back_at_their_static_pod() {
        let p = from_manifest(WEB, "node1").unwrap();
        let m = mirror_of(&p, "node-uid");
        assert!(is_mirror(&m));
        assert!(m["metadata"]["uid"].is_null());
        assert!(m["status"].is_null());
        assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(m["metadata"]["ownerReferences"][0]["uid"], "node-uid");
        let mut stored = m.clone();
        stored["metadata"]["uid"] = json!("api-uid");
        assert!(mirror_matches(&p, &stored));
        stored["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!mirror_matches(&p, &stored));
        let edited = from_manifest(&WEB.replace("nginx", "busybox"), "node1").unwrap();
        assert!(!mirror_matches(&edited, &m));
    }

    #[test]
    fn load_skips_hidden_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), WEB.replace("web", "h")).unwrap();
        std::fs::write(dir.path().join("broken.yaml"), "kind: [").unwrap();
        std::fs::write(dir.path().join("twice.yaml"), WEB).unwrap();
        let pods = load(dir.path(), "n");
        assert_eq!(pods.keys().collect::<Vec<_>>(), ["default/web-n"]);
    }
}
