use super::*;
use serde_json::json;

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "my-pod", "labels": {"app": "myapp", "tier": "fe"}, "finalizers": ["a", "b"]},
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}], "env": [{"name": "A", "value": "1"}]},
                {"name": "log", "image": "fluentd"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn smp(doc: &Value, patch: Value) -> Value {
    strategic_merge_patch(doc, &patch, "", "Pod").unwrap()
}

#[test]
fn kubectl_apply_image_change_keeps_ports() {
    let p = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}, "spec": {"$setElementOrder/containers": [{"name": "web"}, {"name": "log"}], "containers": [{"image": "nginx:1.27", "name": "web"}]}});
    let out = smp(&pod(), p);
    assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(
        out["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(out["spec"]["containers"][1]["name"], "log");
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}"
    );
}

#[test]
fn directives() {
    // $patch: delete on a list item, null deletes a map key.
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"tier": null}}, "spec": {"containers": [{"name": "log", "$patch": "delete"}]}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "myapp"}));
    assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    // $patch: replace on a map.
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    // $patch: replace on a list.
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "x"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "solo", "image": "x"}])
    );
    // $deleteFromPrimitiveList and set union on finalizers.
    let out = smp(
        &pod(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    // $retainKeys on a volume source switch.
    let out = smp(
        &pod(),
        json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
    );
    assert_eq!(
        out["spec"]["volumes"][0],
        json!({"name": "data", "hostPath": {"path": "/x"}})
    );
    // New container appended; env merged by name.
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}, {"name": "side", "image": "busybox"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(out["spec"]["containers"][2]["name"], "side");
    // $setElementOrder reorders.
    let out = smp(
        &pod(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "log"}, {"name": "web"}]}}),
    );
    assert_eq!(out["spec"]["containers"][0]["name"], "log");
    // Lists without a strategy are replaced.
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "web", "args": ["a"]}]}}),
    );
    let out = smp(
        &out,
        json!({"spec": {"containers": [{"name": "web", "args": ["b"]}]}}),
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["b"]));
}

#[test]
fn smp_errors() {
    assert!(strategic_merge_patch(&pod(), &json!([1]), "", "Pod").is_err());
    assert!(
        strategic_merge_patch(
            &pod(),
            &json!({"spec": {"containers": [{"image": "no-name"}]}}),
            "",
            "Pod"
        )
        .is_err()
    );
    assert!(
        strategic_merge_patch(
            &pod(),
            &json!({"metadata": {"$patch": "explode"}}),
            "",
            "Pod"
        )
        .is_err()
    );
    let mut deep = json!({});
    for _ in 0..200 {
        deep = json!({"a": deep});
    }
    assert!(strategic_merge_patch(&json!({}), &deep, "", "Pod").is_err());
}

#[test]
fn json_and_merge_patches() {
    let doc = json!({"a": {"b": 1}, "l": [1, 2]});
    let out = json_patch(&doc, &json!([{"op": "replace", "path": "/a/b", "value": 2}, {"op": "add", "path": "/l/-", "value": 3}])).unwrap();
    assert_eq!(out, json!({"a": {"b": 2}, "l": [1, 2, 3]}));
    assert!(json_patch(&doc, &json!([{"op": "test", "path": "/a/b", "value": 9}])).is_err());
    assert!(json_patch(&doc, &json!({"op": "x"})).is_err());
    // kube-rs' finalizer helper: `test` for null where nothing is, then `add`.
    let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                     {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]);
    let with = json_patch(&json!({"metadata": {}}), &add).unwrap();
    assert_eq!(with["metadata"]["finalizers"], json!(["f"]));
    // A null test of a path that has a value still fails, naming the operation.
    let err = json_patch(&with, &add).unwrap_err().to_string();
    assert!(err.contains("'/0'"), "{err}");
    // RFC 7386 examples.
    let out = merge_patch(
        &json!({"a": "b", "c": {"d": "e", "f": "g"}}),
        &json!({"a": "z", "c": {"f": null}}),
    )
    .unwrap();
    assert_eq!(out, json!({"a": "z", "c": {"d": "e"}}));
    assert!(merge_patch(&doc, &json!([1])).is_err());
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json"),
        Some(PatchType::StrategicMerge)
    );
    assert_eq!(PatchType::from_content_type("text/plain"), None);
}

fn applied() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-pod", "labels": {"app": "demo"}}, "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}})
}

#[test]
fn ssa_create_reapply_and_field_removal() {
    let out = server_side_apply(
        None,
        &applied(),
        "",
        "Pod",
        "kubectl",
        false,
        "2025-01-01T00:00:00Z",
    )
    .unwrap();
    let mf = &out.object["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl");
    assert_eq!(mf["operation"], "Apply");
    assert_eq!(
        mf["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"],
        json!({})
    );
    assert_eq!(
        mf["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["."],
        json!({})
    );
    // Re-apply: same object.
    let again = server_side_apply(
        Some(&out.object),
        &applied(),
        "",
        "Pod",
        "kubectl",
        false,
        "2025-01-01T00:00:00Z",
    )
    .unwrap();
    assert_eq!(again.object["spec"], out.object["spec"]);
    // Dropping the label from the applied config removes it.
    let mut less = applied();
    less["metadata"].as_object_mut().unwrap().remove("labels");
    let out2 =
        server_side_apply(Some(&out.object), &less, "", "Pod", "kubectl", false, "t").unwrap();
    assert!(
        out2.object["metadata"].get("labels").is_none(),
        "{}",
        out2.object
    );
}

#[test]
fn ssa_conflicts_and_force() {
    let mut live = server_side_apply(None, &applied(), "", "Pod", "kubectl", false, "t")
        .unwrap()
        .object;
    // Another manager edits the image with an ordinary update.
    let old = live.clone();
    live["spec"]["containers"][0]["image"] = json!("nginx:edited");
    record_update(Some(&old), &mut live, "kubectl-edit", "v1", "t", None);
    let err =
        server_side_apply(Some(&live), &applied(), "", "Pod", "kubectl", false, "t").unwrap_err();
    match err {
        ApplyError::Conflicts(c) => {
            assert_eq!(c[0].manager, "kubectl-edit");
            assert_eq!(c[0].field, ".spec.containers[name=\"web\"].image");
        }
        other => panic!("{other:?}"),
    }
    let forced =
        server_side_apply(Some(&live), &applied(), "", "Pod", "kubectl", true, "t").unwrap();
    assert_eq!(forced.object["spec"]["containers"][0]["image"], "nginx");
    let editors: Vec<&str> = forced.object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        !editors.contains(&"kubectl-edit"),
        "ownership moved: {editors:?}"
    );
}

#[test]
fn record_update_tracks_changed_fields() {
    let mut o = pod();
    record_update(None, &mut o, "kubectl-run", "v1", "t", None);
    let mf = &o["metadata"]["managedFields"][0];
    assert_eq!(mf["operation"], "Update");
    assert!(mf["fieldsV1"]["f:metadata"]["f:labels"]["f:app"].is_object());
    assert!(mf["fieldsV1"].get("f:status").is_none());
    let old = o.clone();
    o["metadata"]["labels"]["app"] = json!("other");
    record_update(Some(&old), &mut o, "kubectl-label", "v1", "t2", None);
    let m = o["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert!(m[1]["fieldsV1"]["f:metadata"]["f:labels"]["f:app"].is_object());
    assert!(
        m[0]["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:app")
            .is_none()
    );
}
