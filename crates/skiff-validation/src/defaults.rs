//! Kubernetes' defaults (pkg/apis/*/v1/defaults.go), applied on create and update the
//! way the API server applies them when decoding.

use base64::Engine;
use serde_json::{Map, Value, json};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(Value::is_null) {
        m.insert(k.to_string(), v);
    }
}

fn child<'a>(m: &'a mut Map<String, Value>, k: &str) -> &'a mut Value {
    let e = m.entry(k.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    e
}

/// The status a new object of this kind starts with, as kube-apiserver returns it: its
/// Go status struct empty, so the fields without `omitempty` show as zeros (a Service
/// comes back with `"status":{"loadBalancer":{}}`). None for kinds with no status, or
/// whose status the API sets otherwise (pods, namespaces).
pub fn initial_status(group: &str, resource: &str) -> Option<Value> {
    Some(match (group, resource) {
        ("", "services") => json!({"loadBalancer": {}}),
        ("", "replicationcontrollers") | ("apps", "replicasets") => json!({"replicas": 0}),
        ("apps", "statefulsets") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "daemonsets") => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        ("policy", "poddisruptionbudgets") => json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }),
        ("", "persistentvolumeclaims") | ("", "persistentvolumes") => json!({"phase": "Pending"}),
        ("apps", "deployments")
        | ("batch", "jobs")
        | ("batch", "cronjobs")
        | ("", "resourcequotas")
        | ("certificates.k8s.io", "certificatesigningrequests") => json!({}),
        _ => return None,
    })
}

pub fn default_object(group: &str, resource: &str, o: &mut Value) {
    match (group, resource) {
        ("", "pods") => {
            if let Some(spec) = o.get_mut("spec") {
                pod_spec(spec);
                pod_only(spec);
            }
        }
        ("", "podtemplates") => {
            if let Some(t) = o.pointer_mut("/template/spec") {
                pod_spec(t);
            }
        }
        ("", "replicationcontrollers") => {
            replication_controller(o);
            if let Some(t) = o.pointer_mut("/spec/template/spec") {
                pod_spec(t);
            }
        }
        ("apps", "deployments") => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else {
                return;
            };
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy").as_object_mut().expect("object");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(strategy, "rollingUpdate")
                    .as_object_mut()
                    .expect("object");
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
            template(spec);
        }
        ("apps", "replicasets") => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else {
                return;
            };
            set_default(spec, "replicas", json!(1));
            template(spec);
        }
        ("apps", "daemonsets") => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else {
                return;
            };
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = child(spec, "updateStrategy")
                .as_object_mut()
                .expect("object");
            set_default(us, "type", json!("RollingUpdate"));
            if us.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(us, "rollingUpdate").as_object_mut().expect("object");
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
            template(spec);
        }
        ("apps", "statefulsets") => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else {
                return;
            };
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            let us = child(spec, "updateStrategy")
                .as_object_mut()
                .expect("object");
            set_default(us, "type", json!("RollingUpdate"));
            if us.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(us, "rollingUpdate").as_object_mut().expect("object");
                set_default(ru, "partition", json!(0));
            }
            let p = child(spec, "persistentVolumeClaimRetentionPolicy")
                .as_object_mut()
                .expect("object");
            set_default(p, "whenDeleted", json!("Retain"));
            set_default(p, "whenScaled", json!("Retain"));
            template(spec);
        }
        ("batch", "jobs") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                job_spec(spec);
            }
        }
        ("batch", "cronjobs") => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else {
                return;
            };
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(js) = spec
                .get_mut("jobTemplate")
                .and_then(|j| j.get_mut("spec"))
                .and_then(obj)
            {
                job_spec(js);
            }
        }
        ("", "services") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                service_spec(spec);
            }
        }
        ("", "secrets") => {
            let Some(m) = obj(o) else { return };
            set_default(m, "type", json!("Opaque"));
            // stringData is write-only: fold it into data.
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                let data = child(m, "data").as_object_mut().expect("object");
                for (k, v) in sd {
                    if let Some(s) = v.as_str() {
                        data.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
        }
        ("", "namespaces") => {
            let Some(m) = obj(o) else { return };
            let spec = child(m, "spec").as_object_mut().expect("object");
            set_default(spec, "finalizers", json!(["kubernetes"]));
            let status = child(m, "status").as_object_mut().expect("object");
            set_default(status, "phase", json!("Active"));
            let name = o["metadata"]["name"].as_str().map(str::to_string);
            if let (Some(n), Some(meta)) = (name, o.get_mut("metadata").and_then(obj)) {
                let labels = child(meta, "labels").as_object_mut().expect("object");
                labels.insert("kubernetes.io/metadata.name".into(), json!(n));
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "persistentvolumes") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("storage.k8s.io", "storageclasses") => {
            if let Some(m) = obj(o) {
                set_default(m, "reclaimPolicy", json!("Delete"));
                set_default(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                hpa_spec(spec);
            }
        }
        ("networking.k8s.io", "networkpolicies") => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else {
                return;
            };
            if spec
                .get("policyTypes")
                .is_none_or(|p| p.as_array().is_none_or(Vec::is_empty))
            {
                let mut types = vec![json!("Ingress")];
                if spec.get("egress").is_some_and(|e| !e.is_null()) {
                    types.push(json!("Egress"));
                }
                spec.insert("policyTypes".into(), Value::Array(types));
            }
            for dir in ["ingress", "egress"] {
                for rule in spec
                    .get_mut(dir)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    for p in rule
                        .get_mut("ports")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(pm) = obj(p) {
                            set_default(pm, "protocol", json!("TCP"));
                        }
                    }
                }
            }
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            if let Some(m) = obj(o) {
                set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("", "endpoints") => {
            for s in o
                .get_mut("subsets")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for p in s
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(pm) = obj(p) {
                        set_default(pm, "protocol", json!("TCP"));
                    }
                }
            }
        }
        _ => {}
    }
}

/// autoscaling/v2 SetDefaults_HorizontalPodAutoscaler: one cpu metric at 80 % average
/// utilization when none is given (v1's old implicit target, made explicit), and a
/// behavior, when there is one, completed in both directions from the rules the
/// controller used before behaviors existed. An absent behavior stays absent (the
/// controller then scales by its older built-in limits).
fn hpa_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let Some(behavior) = spec.get_mut("behavior").and_then(obj) else {
        return;
    };
    let scale_up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]});
    // Scale-down's window is left unset: the controller's
    // --horizontal-pod-autoscaler-downscale-stabilization flag supplies it.
    let scale_down = json!({"selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]});
    for (dir, defaults) in [("scaleUp", scale_up), ("scaleDown", scale_down)] {
        let rules = child(behavior, dir)
            .as_object_mut()
            .expect("child is an object");
        for (k, v) in defaults.as_object().into_iter().flatten() {
            set_default(rules, k, v.clone());
        }
    }
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(t);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    let has_c = spec.get("completions").is_some_and(|v| !v.is_null());
    let has_p = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !has_c && !has_p {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    } else if !has_p {
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", Value::Null);
    if spec.get("manualSelector").is_some_and(Value::is_null) {
        spec.remove("manualSelector");
    }
    if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(t);
        if let Some(m) = t.as_object_mut() {
            set_default(m, "restartPolicy", json!("Never"));
        }
    }
    // What a pod-condition pattern leaves out means the condition holds.
    let policy = spec.get_mut("podFailurePolicy");
    let rules = policy
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut);
    for rule in rules.into_iter().flatten() {
        let patterns = rule
            .get_mut("onPodConditions")
            .and_then(Value::as_array_mut);
        for pattern in patterns.into_iter().flatten().filter_map(obj) {
            set_default(pattern, "status", json!("True"));
        }
    }
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
}

fn pull_policy(image: &str) -> &'static str {
    // `:latest` or no tag means Always; a digest or another tag, IfNotPresent.
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Value) {
    let Some(m) = obj(p) else { return };
    set_default(m, "timeoutSeconds", json!(1));
    set_default(m, "periodSeconds", json!(10));
    set_default(m, "successThreshold", json!(1));
    set_default(m, "failureThreshold", json!(3));
    if let Some(h) = m.get_mut("httpGet").and_then(obj) {
        set_default(h, "path", json!("/"));
        set_default(h, "scheme", json!("HTTP"));
    }
}

fn container(c: &mut Value) {
    let Some(m) = obj(c) else { return };
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    if let Some(img) = m.get("image").and_then(Value::as_str).map(str::to_string) {
        set_default(m, "imagePullPolicy", json!(pull_policy(&img)));
    }
    let res = child(m, "resources").as_object_mut().expect("object");
    // Requests default to limits when only limits are given.
    if let Some(lims) = res.get("limits").and_then(Value::as_object).cloned() {
        let req = child(res, "requests").as_object_mut().expect("object");
        for (k, v) in lims {
            req.entry(k).or_insert(v);
        }
    }
    for p in m
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(pm) = obj(p) {
            set_default(pm, "protocol", json!("TCP"));
        }
    }
    for e in m
        .get_mut("env")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(fr) = e.pointer_mut("/valueFrom/fieldRef").and_then(obj) {
            set_default(fr, "apiVersion", json!("v1"));
        }
    }
    for k in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(k) {
            probe(p);
        }
    }
}

/// kube's SetDefaults_ReplicationController: the selector and the labels, when empty,
/// are the template's labels (so `kubectl expose rc` finds a selector); one replica.
fn replication_controller(o: &mut Value) {
    let labels = o
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if let Some(labels) = labels {
        if let Some(spec) = o.get_mut("spec").and_then(obj)
            && empty(spec.get("selector"))
        {
            spec.insert("selector".into(), labels.clone());
        }
        if let Some(meta) = o.get_mut("metadata").and_then(obj)
            && empty(meta.get("labels"))
        {
            meta.insert("labels".into(), labels);
        }
    }
    if let Some(spec) = o.get_mut("spec").and_then(obj) {
        set_default(spec, "replicas", json!(1));
    }
}

/// What Pods get and pod templates do not (kube's SetDefaults_Pod and the Priority
/// admission plugin, not SetDefaults_PodSpec): a template shows none of it.
fn pod_only(spec: &mut Value) {
    let Some(m) = obj(spec) else { return };
    set_default(m, "enableServiceLinks", json!(true));
    set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(m, "priority", json!(0));
}

fn pod_spec(spec: &mut Value) {
    let Some(m) = obj(spec) else { return };
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "schedulerName", json!("default-scheduler"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "securityContext", json!({}));
    for k in ["containers", "initContainers", "ephemeralContainers"] {
        for c in m
            .get_mut(k)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            container(c);
        }
    }
    for v in m
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(vm) = obj(v) else { continue };
        for src in ["configMap", "secret", "downwardAPI", "projected"] {
            if let Some(s) = vm.get_mut(src).and_then(obj) {
                set_default(s, "defaultMode", json!(420));
            }
        }
        if let Some(h) = vm.get_mut("hostPath").and_then(obj) {
            set_default(h, "type", json!(""));
        }
    }
}

fn service_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    for p in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(pm) = obj(p) else { continue };
        set_default(pm, "protocol", json!("TCP"));
        if let Some(port) = pm.get("port").cloned() {
            set_default(pm, "targetPort", port);
        }
    }
}

/// Admission defaults for pods: the `default` ServiceAccount and the not-ready /
/// unreachable tolerations of 300 s (DefaultTolerationSeconds).
pub fn admit_pod_defaults(pod: &mut Value) {
    // The ServiceAccount plugin leaves mirror pods alone: static pods run without one.
    let mirror = pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
    let Some(spec) = pod.get_mut("spec").and_then(obj) else {
        return;
    };
    if !mirror {
        set_default(spec, "serviceAccountName", json!("default"));
        set_default(
            spec,
            "serviceAccount",
            spec.get("serviceAccountName")
                .cloned()
                .unwrap_or(json!("default")),
        );
    }
    let tol = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !tol.is_array() {
        *tol = json!([]);
    }
    let list = tol.as_array_mut().expect("array");
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            let exists_all = t["operator"] == "Exists" && t.get("key").is_none_or(|k| k == "");
            exists_all
                || (t["key"] == key
                    && (t["effect"] == "NoExecute" || t.get("effect").is_none_or(|e| e == "")))
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Jobs select their pods by the uid the server just gave them (unless manualSelector).
pub fn job_generate_selector(job: &mut Value) {
    if job["spec"]["manualSelector"] == json!(true) {
        return;
    }
    let uid = job["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
    if uid.is_empty() || !job["spec"].is_object() {
        return;
    }
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name});
    if !job["spec"]["template"]["metadata"].is_object() {
        job["spec"]["template"]["metadata"] = json!({});
    }
    let tm = &mut job["spec"]["template"]["metadata"];
    if !tm["labels"].is_object() {
        tm["labels"] = json!({});
    }
    for (k, v) in labels.as_object().expect("object") {
        tm["labels"][k] = v.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_run_body_gets_pod_defaults() {
        let mut p = json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":"my-pod","labels":{"run":"my-pod"}},"spec":{"containers":[{"name":"my-pod","image":"nginx","resources":{}}],"restartPolicy":"Always","dnsPolicy":"ClusterFirst"},"status":{}});
        default_object("", "pods", &mut p);
        admit_pod_defaults(&mut p);
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);
        admit_pod_defaults(&mut p);
        assert_eq!(
            p["spec"]["tolerations"].as_array().unwrap().len(),
            2,
            "idempotent"
        );
    }

    #[test]
    fn pull_policies() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("127.0.0.1:5000/web"), "Always");
        assert_eq!(pull_policy("127.0.0.1:5000/web:v1"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn deployment_service_secret_defaults() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": {"limits": {"cpu": "1"}}}]}}}});
        default_object("apps", "deployments", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        default_object("", "services", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        let mut sec = json!({"stringData": {"password": "s3cret"}});
        default_object("", "secrets", &mut sec);
        assert_eq!(sec["data"]["password"], "czNjcmV0");
        assert!(sec.get("stringData").is_none());
        assert_eq!(sec["type"], "Opaque");
    }

    #[test]
    fn job_failure_policy_patterns_default_to_true() {
        let mut j = json!({"spec": {"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {"spec": {"containers": []}}}});
        default_object("batch", "jobs", &mut j);
        assert_eq!(
            j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
    }

    #[test]
    fn job_selector_from_uid() {
        let mut j = json!({"metadata": {"name": "db-backup", "uid": "u1"}, "spec": {"template": {"spec": {"containers": []}}}});
        job_generate_selector(&mut j);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "db-backup"
        );
    }

    // pkg/apis/autoscaling/v2/defaults.go SetDefaults_HorizontalPodAutoscaler.
    #[test]
    fn hpa_gets_cpu_metric_and_min_replicas() {
        let mut h = json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}});
        default_object("autoscaling", "horizontalpodautoscalers", &mut h);
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert!(h["spec"].get("behavior").is_none());
        // Given metrics and minReplicas stay.
        let memory = json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}]);
        let mut h = json!({"spec": {"minReplicas": 2, "maxReplicas": 3, "metrics": memory}});
        default_object("autoscaling", "horizontalpodautoscalers", &mut h);
        assert_eq!(h["spec"]["minReplicas"], 2);
        assert_eq!(h["spec"]["metrics"], memory);
    }

    #[test]
    fn hpa_behavior_is_completed_field_by_field() {
        let mut h = json!({"spec": {"maxReplicas": 3, "behavior": {
            "scaleUp": {"selectPolicy": "Min"},
            "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
        }}});
        default_object("autoscaling", "horizontalpodautoscalers", &mut h);
        assert_eq!(
            h["spec"]["behavior"],
            json!({
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Min", "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                    {"type": "Pods", "value": 1, "periodSeconds": 60}]},
            })
        );
        // An empty behavior gets both directions; scale-down has no window of its own.
        let mut h = json!({"spec": {"maxReplicas": 3, "behavior": {}}});
        default_object("autoscaling", "horizontalpodautoscalers", &mut h);
        assert_eq!(
            h["spec"]["behavior"]["scaleUp"]["policies"][0]["type"],
            "Pods"
        );
        assert!(
            h["spec"]["behavior"]["scaleDown"]
                .get("stabilizationWindowSeconds")
                .is_none()
        );
    }
}
