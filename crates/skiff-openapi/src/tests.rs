use super::*;
use serde_json::json;

#[test]
fn index_and_documents() {
    let idx = v3_index();
    assert!(
        idx["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash=")
    );
    assert!(idx["paths"].get("apis/apps/v1").is_some());
    let doc: Value = serde_json::from_slice(&v3_document("api/v1").unwrap()).unwrap();
    let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
    assert!(
        pod["properties"]["spec"]["description"]
            .as_str()
            .unwrap()
            .contains("desired behavior")
    );
    let containers =
        &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert!(
        containers["description"]
            .as_str()
            .unwrap()
            .contains("List of containers belonging to the pod.")
    );
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
    assert!(v3_document("apis/nope/v1").is_none());
    let apps: Value = serde_json::from_slice(&v3_document("apis/apps/v1").unwrap()).unwrap();
    assert!(
        apps["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_some()
    );
}

#[test]
fn unknown_fields_found() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "foo": 1, "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "imagee": "nginx", "image": "nginx"}]}, "status": {"phase": "Pending"}});
    let mut u = unknown_fields("", "v1", "Pod", &pod);
    u.sort();
    assert_eq!(u, ["metadata.foo", "spec.containers[0].imagee"]);
    let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "managedFields": [{"manager": "m", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]}, "data": {"anything": "goes"}});
    assert!(unknown_fields("", "v1", "ConfigMap", &ok).is_empty());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}]}}}});
    assert!(
        unknown_fields("apps", "v1", "Deployment", &d).is_empty(),
        "{:?}",
        unknown_fields("apps", "v1", "Deployment", &d)
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "x"}}});
    assert!(unknown_fields("", "v1", "Service", &svc).is_empty());
    // Deep in a template, through arrays and shared definitions (a Deployment's pod
    // template reuses PodSpec; the second container must be checked as the first).
    let deep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i", "livenessProbe": {"httpGet": {"pathh": "/", "port": 80}}}], "nodeSelector": {"k": "v"}}}}});
    assert_eq!(
        unknown_fields("apps", "v1", "Deployment", &deep),
        ["spec.template.spec.containers[1].livenessProbe.httpGet.pathh"]
    );
}

#[test]
fn duplicates() {
    assert_eq!(
        duplicate_fields(br#"{"metadata":{"name":"a","name":"b"}}"#),
        ["metadata.name"]
    );
    assert_eq!(duplicate_fields(br#"{"a":[{"x":1,"x":2}]}"#), ["a[0].x"]);
    assert!(duplicate_fields(br#"{"a":1}"#).is_empty());
    assert!(duplicate_fields(b"{garbage").is_empty());
    // Past the short list of keys kept per object, and with escaped keys.
    let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":1")).collect();
    let body = format!(
        "{{\"data\":{{{},\"k3\":2,\"a\\\"b\":1,\"a\\\"b\":2}}}}",
        many.join(",")
    );
    assert_eq!(duplicate_fields(body.as_bytes()), ["data.k3", "data.a\"b"]);
    let deep = "[".repeat(10000);
    assert!(duplicate_fields(deep.as_bytes()).is_empty());
}

#[test]
fn parse_noting_duplicates_matches_serde_json() {
    let bodies: [&[u8]; 5] = [
        br#"{"a":1,"b":[1,-2,3.5,"x",null,true,{"c":{}}],"d":{"e":"\u00e9\n"}}"#,
        br#"{"n":18446744073709551615,"m":-9223372036854775808,"f":1e300}"#,
        br#"{"metadata":{"name":"a","x":1,"name":"b"}}"#,
        br#"[{"x":1,"x":2}]"#,
        br#""s""#,
    ];
    for b in bodies {
        let (v, dup) = from_slice_noting_duplicates(b).unwrap();
        let want: serde_json::Value = serde_json::from_slice(b).unwrap();
        // Same value, same key order (a repeated key keeps its first place).
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
        assert_eq!(
            dup,
            !duplicate_fields(b).is_empty(),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
    for bad in [
        &b"{garbage"[..],
        b"{} x",
        b"{\"a\":1,}",
        &"[".repeat(10000).into_bytes(),
    ] {
        assert!(from_slice_noting_duplicates(bad).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err());
    }
}
