//! Defaulting, validation and selectors for the API server: pure functions on objects as
//! JSON, with Kubernetes' field paths and messages (they reach users verbatim through
//! kubectl).

pub mod cron;
mod defaults;
pub mod disruption;
pub mod fields;
pub mod labels;
pub mod names;
pub mod quantity;
mod storage;
mod validate;

pub use defaults::{admit_pod_defaults, default_object, initial_status, job_generate_selector};
pub use validate::{
    validate_create, validate_object_meta, validate_status_update, validate_update,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn fields_of(errs: &[skiff_types::FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn pod_rules() {
        let cases = [
            (
                json!({"containers": [{"name": "c"}]}),
                "spec.containers[0].image: Required value",
            ),
            (json!({"containers": []}), "spec.containers: Required value"),
            (
                json!({"containers": [{"name": "c", "image": "i"}, {"name": "c", "image": "i"}]}),
                "spec.containers[1].name: Duplicate value: \"c\"",
            ),
            (
                json!({"containers": [{"name": "C_1", "image": "i"}]}),
                "spec.containers[0].name: Invalid value: \"C_1\": a lowercase RFC 1123 label",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}]}),
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
            (
                json!({"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "i"}]}),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "500m"}}}]}),
                "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "lots"}}}]}),
                "spec.containers[0].resources.limits[memory]: Invalid value: \"lots\": quantities must match",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"periodSeconds": 5}}]}),
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}]}),
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/x"}]}]}),
                "spec.containers[0].volumeMounts[0].name: Not found: \"v\"",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i", "env": [{"name": "1X"}]}]}),
                "spec.containers[0].env[0].name: Invalid value: \"1X\"",
            ),
            (
                json!({"containers": [{"name": "c", "image": "i"}], "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}),
                "spec.tolerations[0].operator: Invalid value: \"Exists\": value must be empty",
            ),
        ];
        for (spec, want) in cases {
            let got = fields_of(&validate_create("", "pods", &pod(spec.clone())));
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{spec}: want {want:?}, got {got:?}"
            );
        }
        let ok = pod(
            json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}, "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 3, "periodSeconds": 5}}]}),
        );
        assert_eq!(
            fields_of(&validate_create("", "pods", &ok)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn metadata_names() {
        let bad = json!({"metadata": {"name": "Bad_Name", "namespace": "default"}});
        let e = fields_of(&validate_create("", "configmaps", &bad));
        assert!(
            e[0].starts_with(
                "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
            ),
            "{e:?}"
        );
        let ns = json!({"metadata": {"name": "a.b"}});
        assert!(!validate_create("", "namespaces", &ns).is_empty());
        let l = json!({"metadata": {"name": "x", "namespace": "d", "labels": {"app": "a b"}}});
        assert!(
            fields_of(&validate_create("", "configmaps", &l))[0]
                .starts_with("metadata.labels[app]: Invalid value: \"a b\"")
        );
    }

    #[test]
    fn pod_updates_are_mostly_immutable() {
        let old = pod(json!({"containers": [{"name": "c", "image": "a"}]}));
        let image = pod(json!({"containers": [{"name": "c", "image": "b"}]}));
        assert!(validate_update("", "pods", &image, &old).is_empty());
        let port = pod(
            json!({"containers": [{"name": "c", "image": "a", "ports": [{"containerPort": 80}]}]}),
        );
        let e = fields_of(&validate_update("", "pods", &port, &old));
        assert!(
            e[0].starts_with("spec: Forbidden: pod updates may not change fields other than"),
            "{e:?}"
        );
    }

    #[test]
    fn workloads_services_jobs() {
        let d = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let e = fields_of(&validate_create("apps", "deployments", &d));
        assert!(
            e.iter()
                .any(|x| x.contains("`selector` does not match template `labels`")),
            "{e:?}"
        );
        let s = json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        assert!(
            fields_of(&validate_create("", "services", &s))
                .iter()
                .any(|x| x == "spec.ports[0].name: Required value")
        );
        // Service port names are DNS labels ("80-80" from `create service --tcp=80:80`);
        // a container port's must hold a letter.
        let s = json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [{"name": "80-80", "port": 80}, {"name": "Web", "port": 81}]}});
        assert_eq!(
            fields_of(&validate_create("", "services", &s)),
            [
                "spec.ports[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        let j = json!({"metadata": {"name": "j", "namespace": "d"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        assert!(fields_of(&validate_create("batch", "jobs", &j)).iter().any(|x| x == "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""));
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"bad/key": "v"}});
        assert!(
            fields_of(&validate_create("", "configmaps", &cm))[0]
                .starts_with("data[bad/key]: Invalid value")
        );
    }

    #[test]
    fn statefulset_containers_mount_their_claim_templates() {
        let set = |mount: &str| {
            json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {
                "selector": {"matchLabels": {"app": "w"}}, "serviceName": "web",
                "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "volumeMounts": [{"name": mount, "mountPath": "/data"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
        };
        assert_eq!(
            fields_of(&validate_create("apps", "statefulsets", &set("data"))),
            Vec::<String>::new()
        );
        assert_eq!(
            fields_of(&validate_create("apps", "statefulsets", &set("other"))),
            ["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"other\""]
        );
        // A Deployment has no claim templates to lend names.
        let mut d = set("data");
        d["spec"]
            .as_object_mut()
            .unwrap()
            .remove("volumeClaimTemplates");
        assert_eq!(
            fields_of(&validate_create("apps", "deployments", &d)),
            ["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\""]
        );
    }
}
