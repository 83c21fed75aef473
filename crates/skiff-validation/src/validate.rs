//! Validation on create and update (pkg/apis/*/validation), reporting field errors with
//! Kubernetes' paths and messages.

use crate::{labels, names, quantity};
use serde_json::{Value, json};
use skiff_types::FieldError;
use std::collections::HashSet;

type Errs = Vec<FieldError>;

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

fn name_errs(errs: &mut Errs, field: &str, value: &str, check: fn(&str) -> Vec<String>) {
    for m in check(value) {
        errs.push(FieldError::invalid(field, json!(value), m));
    }
}

/// Which name rule a kind's metadata.name follows.
fn name_check(group: &str, resource: &str) -> fn(&str) -> Vec<String> {
    match (group, resource) {
        ("", "namespaces")
        | ("", "services")
        | ("apps", "statefulsets")
        | ("batch", "cronjobs") => names::dns1123_label,
        ("rbac.authorization.k8s.io", _) | ("apiregistration.k8s.io", _) => path_segment,
        _ => names::dns1123_subdomain,
    }
}

fn path_segment(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    if s.contains('/') || s.contains('%') {
        return vec!["may not contain '/'".into()];
    }
    Vec::new()
}

fn validate_meta(errs: &mut Errs, group: &str, resource: &str, obj: &Value, namespaced: bool) {
    let m = &obj["metadata"];
    match s(&m["name"]) {
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(n) => name_errs(errs, "metadata.name", n, name_check(group, resource)),
    }
    if namespaced && s(&m["namespace"]).is_none_or(str::is_empty) {
        errs.push(FieldError::required("metadata.namespace", ""));
    }
    labels_map(errs, "metadata.labels", &m["labels"]);
    if let Some(a) = m["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in a {
            for msg in names::qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", json!(k), msg));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            errs.push(FieldError::new(
                skiff_types::FieldErrorType::TooLong,
                "metadata.annotations",
                None,
                "must have at most 262144 bytes",
            ));
        }
    }
}

fn labels_map(errs: &mut Errs, field: &str, v: &Value) {
    let Some(m) = v.as_object() else { return };
    for (k, val) in m {
        for msg in names::qualified_name(k) {
            errs.push(FieldError::invalid(field, json!(k), msg));
        }
        match val.as_str() {
            Some(sv) => {
                for msg in names::label_value(sv) {
                    errs.push(FieldError::invalid(format!("{field}[{k}]"), json!(sv), msg));
                }
            }
            None => errs.push(FieldError::invalid(
                format!("{field}[{k}]"),
                val.clone(),
                "must be a string",
            )),
        }
    }
}

fn cluster_scoped(resource: &str) -> bool {
    use skiff_types::registry::{RESOURCES, Scope};
    RESOURCES
        .iter()
        .any(|r| r.plural == resource && r.scope == Scope::Cluster)
}

/// Metadata rules alone, for kinds whose scope is not in the built-in table (custom
/// resources).
pub fn validate_object_meta(group: &str, resource: &str, obj: &Value, namespaced: bool) -> Errs {
    let mut errs = Vec::new();
    validate_meta(&mut errs, group, resource, obj, namespaced);
    errs
}

pub fn validate_create(group: &str, resource: &str, obj: &Value) -> Errs {
    let mut errs = Vec::new();
    validate_meta(&mut errs, group, resource, obj, !cluster_scoped(resource));
    kind_rules(&mut errs, group, resource, obj);
    errs
}

pub fn validate_update(group: &str, resource: &str, new: &Value, old: &Value) -> Errs {
    let mut errs = validate_create(group, resource, new);
    immutable(&mut errs, group, resource, new, old);
    errs
}

pub fn validate_status_update(group: &str, resource: &str, new: &Value, _old: &Value) -> Errs {
    let mut errs = Vec::new();
    validate_meta(&mut errs, group, resource, new, !cluster_scoped(resource));
    if (group, resource) == ("", "pods")
        && let Some(p) = new["status"]["phase"].as_str()
        && !["Pending", "Running", "Succeeded", "Failed", "Unknown"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            "status.phase",
            json!(p),
            &["Failed", "Pending", "Running", "Succeeded", "Unknown"],
        ));
    }
    errs
}

fn kind_rules(errs: &mut Errs, group: &str, resource: &str, o: &Value) {
    match (group, resource) {
        ("", "pods") => pod_spec(errs, "spec", &o["spec"], false),
        ("apps", "deployments")
        | ("apps", "replicasets")
        | ("apps", "daemonsets")
        | ("apps", "statefulsets") => workload(errs, resource, o),
        ("", "replicationcontrollers") => {
            replicas(errs, &o["spec"]["replicas"]);
            if o["spec"]["template"].is_object() {
                pod_spec(
                    errs,
                    "spec.template.spec",
                    &o["spec"]["template"]["spec"],
                    false,
                );
            }
        }
        ("batch", "jobs") => job(errs, "spec", &o["spec"]),
        ("batch", "cronjobs") => {
            match o["spec"]["schedule"].as_str() {
                None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
                Some(sch) => {
                    if let Err(m) = crate::cron::validate(sch) {
                        errs.push(FieldError::invalid("spec.schedule", json!(sch), m));
                    }
                }
            }
            if let Some(tz) = o["spec"]["timeZone"].as_str()
                && let Err(m) = crate::cron::time_zone(tz)
            {
                errs.push(FieldError::invalid("spec.timeZone", json!(tz), m));
            }
            if let Some(cp) = o["spec"]["concurrencyPolicy"].as_str()
                && !["Allow", "Forbid", "Replace"].contains(&cp)
            {
                errs.push(FieldError::not_supported(
                    "spec.concurrencyPolicy",
                    json!(cp),
                    &["Allow", "Forbid", "Replace"],
                ));
            }
            job(
                errs,
                "spec.jobTemplate.spec",
                &o["spec"]["jobTemplate"]["spec"],
            );
        }
        ("", "services") => service(errs, &o["spec"]),
        ("", "persistentvolumeclaims") => crate::storage::claim(errs, "spec", &o["spec"]),
        ("", "persistentvolumes") => crate::storage::volume(errs, o),
        ("storage.k8s.io", "storageclasses") => crate::storage::storage_class(errs, o),
        ("", "configmaps") => {
            let mut size = 0;
            for f in ["data", "binaryData"] {
                for (k, v) in o[f].as_object().into_iter().flatten() {
                    for m in names::config_key(k) {
                        errs.push(FieldError::invalid(format!("{f}[{k}]"), json!(k), m));
                    }
                    size += v.as_str().map(str::len).unwrap_or(0);
                }
            }
            if size > 1024 * 1024 {
                errs.push(FieldError::too_long("", 1024 * 1024));
            }
        }
        ("", "secrets") => {
            for (k, v) in o["data"].as_object().into_iter().flatten() {
                for m in names::config_key(k) {
                    errs.push(FieldError::invalid(format!("data[{k}]"), json!(k), m));
                }
                if v.as_str().is_none_or(|b| base64_decode(b).is_none()) {
                    errs.push(FieldError::invalid(
                        format!("data[{k}]"),
                        Value::String("<secret contents redacted>".into()),
                        "must be base64 encoded",
                    ));
                }
            }
            match o["type"].as_str().unwrap_or("Opaque") {
                "kubernetes.io/tls" => {
                    for k in ["tls.crt", "tls.key"] {
                        if o["data"].get(k).is_none() {
                            errs.push(FieldError::required(format!("data[{k}]"), ""));
                        }
                    }
                }
                "kubernetes.io/dockerconfigjson"
                    if o["data"].get(".dockerconfigjson").is_none() =>
                {
                    errs.push(FieldError::required("data[.dockerconfigjson]", ""));
                }
                _ => {}
            }
        }
        ("", "namespaces") => {}
        ("networking.k8s.io", "networkpolicies") => {
            if let Err(e) = labels::Selector::from_label_selector(&o["spec"]["podSelector"]) {
                errs.push(FieldError::invalid(
                    "spec.podSelector",
                    o["spec"]["podSelector"].clone(),
                    e,
                ));
            }
            for t in o["spec"]["policyTypes"].as_array().into_iter().flatten() {
                if !(t == "Ingress" || t == "Egress") {
                    errs.push(FieldError::not_supported(
                        "spec.policyTypes",
                        t.clone(),
                        &["Egress", "Ingress"],
                    ));
                }
            }
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            if !o["value"].is_i64() {
                errs.push(FieldError::required("value", ""));
            }
        }
        ("rbac.authorization.k8s.io", "roles") | ("rbac.authorization.k8s.io", "clusterroles") => {
            for (i, r) in o["rules"].as_array().into_iter().flatten().enumerate() {
                if r["verbs"].as_array().is_none_or(Vec::is_empty) {
                    errs.push(FieldError::required(
                        format!("rules[{i}].verbs"),
                        "verbs must contain at least one value",
                    ));
                }
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            if o["roleRef"]["name"].as_str().is_none_or(str::is_empty) {
                errs.push(FieldError::required("roleRef.name", ""));
            }
        }
        ("", "events") => {
            if o["involvedObject"].is_null() && o["regarding"].is_null() {
                errs.push(FieldError::required("involvedObject", ""));
            }
        }
        ("coordination.k8s.io", "leases") => {
            if let Some(d) = o["spec"]["leaseDurationSeconds"].as_i64()
                && d <= 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    json!(d),
                    "must be greater than 0",
                ));
            }
        }
        _ => {}
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn replicas(errs: &mut Errs, v: &Value) {
    if let Some(r) = v.as_i64()
        && r < 0
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            json!(r),
            "must be greater than or equal to 0",
        ));
    }
}

fn workload(errs: &mut Errs, resource: &str, o: &Value) {
    let spec = &o["spec"];
    if resource != "daemonsets" {
        replicas(errs, &spec["replicas"]);
    }
    let sel = &spec["selector"];
    if !sel.is_object()
        || (sel
            .get("matchLabels")
            .is_none_or(|m| m.as_object().is_none_or(|m| m.is_empty()))
            && sel
                .get("matchExpressions")
                .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty)))
    {
        errs.push(FieldError::required("spec.selector", ""));
        if sel.is_object() {
            errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                "empty selector is invalid for deployment",
            ));
        }
    } else {
        match labels::Selector::from_label_selector(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e)),
            Ok(selector) => {
                let tl = skiff_types::meta::string_map(spec["template"]["metadata"].get("labels"));
                if !selector.matches(&tl) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        json!(tl),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    if spec["template"].is_object() {
        labels_map(
            errs,
            "spec.template.metadata.labels",
            &spec["template"]["metadata"]["labels"],
        );
        // A StatefulSet's containers may mount its claim templates by name: each pod
        // gets a volume of that name for its claim (upstream leaves this pod spec
        // unchecked for want of exactly this union).
        let claims: Vec<&str> = spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["metadata"]["name"].as_str())
            .collect();
        pod_spec_with(
            errs,
            "spec.template.spec",
            &spec["template"]["spec"],
            &claims,
        );
        if matches!(
            resource,
            "deployments" | "replicasets" | "daemonsets" | "statefulsets"
        ) && let Some(rp) = spec["template"]["spec"]["restartPolicy"].as_str()
            && rp != "Always"
        {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                json!(rp),
                &["Always"],
            ));
        }
    } else {
        errs.push(FieldError::required("spec.template", ""));
    }
}

fn job(errs: &mut Errs, path: &str, spec: &Value) {
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
    ] {
        if let Some(v) = spec[f].as_i64()
            && v < 0
        {
            errs.push(FieldError::invalid(
                format!("{path}.{f}"),
                json!(v),
                "must be greater than or equal to 0",
            ));
        }
    }
    let t = &spec["template"]["spec"];
    pod_spec(errs, &format!("{path}.template.spec"), t, true);
    match t["restartPolicy"].as_str() {
        Some("OnFailure") | Some("Never") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{path}.template.spec.restartPolicy"),
            json!(other),
            &["OnFailure", "Never"],
        )),
        None => errs.push(FieldError::required(
            format!("{path}.template.spec.restartPolicy"),
            "",
        )),
    }
}

fn port_value(errs: &mut Errs, field: &str, v: &Value, required: bool) {
    match v.as_i64() {
        Some(p) if (1..=65535).contains(&p) => {}
        Some(p) => errs.push(FieldError::invalid(
            field,
            json!(p),
            "must be between 1 and 65535, inclusive",
        )),
        None if required => errs.push(FieldError::required(field, "")),
        None => {}
    }
}

fn int_or_port(errs: &mut Errs, field: &str, v: &Value) {
    match v {
        Value::Number(_) => port_value(errs, field, v, true),
        Value::String(name) => {
            for m in names::port_name(name) {
                errs.push(FieldError::invalid(field, json!(name), m));
            }
        }
        Value::Null => {}
        other => errs.push(FieldError::invalid(
            field,
            other.clone(),
            "must be an integer or a port name",
        )),
    }
}

fn service(errs: &mut Errs, spec: &Value) {
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        errs.push(FieldError::not_supported(
            "spec.type",
            json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && spec["clusterIP"] != "None" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names_seen = HashSet::new();
    let mut port_proto = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        match p["name"].as_str() {
            Some(n) if !n.is_empty() => {
                // A DNS label, not an IANA name as a container port's: `kubectl create
                // service clusterip x --tcp=80:80` names its port "80-80".
                for m in names::dns1123_label(n) {
                    errs.push(FieldError::invalid(format!("{base}.name"), json!(n), m));
                }
                if !names_seen.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{base}.name"), json!(n)));
                }
            }
            _ if ports.len() > 1 => errs.push(FieldError::required(format!("{base}.name"), "")),
            _ => {}
        }
        port_value(errs, &format!("{base}.port"), &p["port"], true);
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.push(FieldError::not_supported(
                format!("{base}.protocol"),
                json!(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if !port_proto.insert((p["port"].as_i64(), proto.to_string())) {
            errs.push(FieldError::duplicate(
                base.clone(),
                json!({"port": p["port"], "protocol": proto}),
            ));
        }
        int_or_port(errs, &format!("{base}.targetPort"), &p["targetPort"]);
        if let Some(np) = p["nodePort"].as_i64()
            && np != 0
            && ty == "ClusterIP"
        {
            errs.push(FieldError::forbidden(
                format!("{base}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if let Some(sel) = spec["selector"].as_object() {
        labels_map(errs, "spec.selector", &Value::Object(sel.clone()));
    }
    if let Some(sa) = spec["sessionAffinity"].as_str()
        && !["None", "ClientIP"].contains(&sa)
    {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            json!(sa),
            &["ClientIP", "None"],
        ));
    }
    if ty == "ExternalName" && spec["externalName"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldError::required("spec.externalName", ""));
    }
}

fn probe(errs: &mut Errs, path: &str, p: &Value, liveness_like: bool) {
    if !p.is_object() {
        return;
    }
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
        .iter()
        .filter(|h| !p[**h].is_null())
        .count();
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(v) = p[f].as_i64()
            && v < 0
        {
            errs.push(FieldError::invalid(
                format!("{path}.{f}"),
                json!(v),
                "must be greater than or equal to 0",
            ));
        }
    }
    if liveness_like
        && let Some(st) = p["successThreshold"].as_i64()
        && st != 1
    {
        errs.push(FieldError::invalid(
            format!("{path}.successThreshold"),
            json!(st),
            "must be 1",
        ));
    }
    if !p["httpGet"].is_null() {
        int_or_port(errs, &format!("{path}.httpGet.port"), &p["httpGet"]["port"]);
        if p["httpGet"]["port"].is_null() {
            errs.push(FieldError::required(format!("{path}.httpGet.port"), ""));
        }
    }
    if !p["tcpSocket"].is_null() {
        int_or_port(
            errs,
            &format!("{path}.tcpSocket.port"),
            &p["tcpSocket"]["port"],
        );
    }
    if !p["exec"].is_null() && p["exec"]["command"].as_array().is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{path}.exec.command"), ""));
    }
}

fn resources(errs: &mut Errs, path: &str, r: &Value) {
    let mut parsed = std::collections::BTreeMap::new();
    for kind in ["limits", "requests"] {
        for (k, v) in r[kind].as_object().into_iter().flatten() {
            let field = format!("{path}.{kind}[{k}]");
            match v
                .as_str()
                .map(quantity::parse)
                .or_else(|| v.as_f64().map(|f| quantity::parse(&f.to_string())))
            {
                Some(Ok(q)) => {
                    if q.nanos < 0 {
                        errs.push(FieldError::invalid(
                            &field,
                            v.clone(),
                            "must be greater than or equal to 0",
                        ));
                    }
                    parsed.insert((kind, k.clone()), q);
                }
                Some(Err(m)) => errs.push(FieldError::invalid(&field, v.clone(), m)),
                None => errs.push(FieldError::invalid(&field, v.clone(), "must be a quantity")),
            }
        }
    }
    for ((kind, k), q) in &parsed {
        if *kind == "requests"
            && let Some(l) = parsed.get(&("limits", k.clone()))
            && q > l
        {
            let lim = r["limits"][k]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| r["limits"][k].to_string());
            errs.push(FieldError::invalid(
                format!("{path}.requests"),
                r["requests"][k].clone(),
                format!("must be less than or equal to {k} limit of {lim}"),
            ));
        }
    }
}

fn containers(
    errs: &mut Errs,
    path: &str,
    list: &Value,
    volumes: &HashSet<String>,
    seen: &mut HashSet<String>,
    app: bool,
) {
    for (i, c) in list.as_array().into_iter().flatten().enumerate() {
        let base = format!("{path}[{i}]");
        match c["name"].as_str() {
            None | Some("") => errs.push(FieldError::required(format!("{base}.name"), "")),
            Some(n) => {
                name_errs(errs, &format!("{base}.name"), n, names::dns1123_label);
                if !seen.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{base}.name"), json!(n)));
                }
            }
        }
        if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
            errs.push(FieldError::required(format!("{base}.image"), ""));
        } else if c["image"].as_str().is_some_and(|s| s.trim() != s) {
            errs.push(FieldError::invalid(
                format!("{base}.image"),
                c["image"].clone(),
                "must not have leading or trailing whitespace",
            ));
        }
        let mut port_keys = HashSet::new();
        let mut port_names = HashSet::new();
        for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
            let pb = format!("{base}.ports[{j}]");
            port_value(
                errs,
                &format!("{pb}.containerPort"),
                &p["containerPort"],
                true,
            );
            port_value(errs, &format!("{pb}.hostPort"), &p["hostPort"], false);
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            if !["TCP", "UDP", "SCTP"].contains(&proto) {
                errs.push(FieldError::not_supported(
                    format!("{pb}.protocol"),
                    json!(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
            if !port_keys.insert((p["containerPort"].as_i64(), proto.to_string())) {
                errs.push(FieldError::duplicate(
                    pb.clone(),
                    json!({"containerPort": p["containerPort"], "protocol": proto}),
                ));
            }
            if let Some(n) = p["name"].as_str() {
                for m in names::port_name(n) {
                    errs.push(FieldError::invalid(format!("{pb}.name"), json!(n), m));
                }
                if !port_names.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{pb}.name"), json!(n)));
                }
            }
        }
        for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
            let eb = format!("{base}.env[{j}]");
            match e["name"].as_str() {
                None | Some("") => errs.push(FieldError::required(format!("{eb}.name"), "")),
                Some(n) => name_errs(errs, &format!("{eb}.name"), n, names::env_var_name),
            }
            if let Some(vf) = e["valueFrom"].as_object() {
                let n = [
                    "fieldRef",
                    "resourceFieldRef",
                    "configMapKeyRef",
                    "secretKeyRef",
                ]
                .iter()
                .filter(|k| vf.get(**k).is_some_and(|v| !v.is_null()))
                .count();
                if n != 1 {
                    errs.push(FieldError::invalid(
                        format!("{eb}.valueFrom"),
                        Value::String(String::new()),
                        "may not have more than one field specified at a time",
                    ));
                }
                if e["value"].as_str().is_some_and(|v| !v.is_empty()) {
                    errs.push(FieldError::invalid(
                        format!("{eb}.valueFrom"),
                        Value::String(String::new()),
                        "may not be specified when `value` is not empty",
                    ));
                }
            }
        }
        for (j, m) in c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mb = format!("{base}.volumeMounts[{j}]");
            match m["name"].as_str() {
                None | Some("") => errs.push(FieldError::required(format!("{mb}.name"), "")),
                Some(n) if !volumes.contains(n) => errs.push(FieldError::new(
                    skiff_types::FieldErrorType::NotFound,
                    format!("{mb}.name"),
                    Some(json!(n)),
                    "",
                )),
                _ => {}
            }
            if m["mountPath"].as_str().is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("{mb}.mountPath"), ""));
            }
        }
        resources(errs, &format!("{base}.resources"), &c["resources"]);
        if app {
            probe(
                errs,
                &format!("{base}.livenessProbe"),
                &c["livenessProbe"],
                true,
            );
            probe(
                errs,
                &format!("{base}.startupProbe"),
                &c["startupProbe"],
                true,
            );
            probe(
                errs,
                &format!("{base}.readinessProbe"),
                &c["readinessProbe"],
                false,
            );
        }
        if let Some(pol) = c["imagePullPolicy"].as_str()
            && !["Always", "IfNotPresent", "Never"].contains(&pol)
        {
            errs.push(FieldError::not_supported(
                format!("{base}.imagePullPolicy"),
                json!(pol),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
        let sc = &c["securityContext"];
        for f in ["runAsUser", "runAsGroup"] {
            if let Some(v) = sc[f].as_i64()
                && v < 0
            {
                errs.push(FieldError::invalid(
                    format!("{base}.securityContext.{f}"),
                    json!(v),
                    "must be between 0 and 2147483647, inclusive",
                ));
            }
        }
        if sc["runAsNonRoot"] == json!(true) && sc["runAsUser"] == json!(0) {
            errs.push(FieldError::invalid(
                format!("{base}.securityContext.runAsNonRoot"),
                json!(true),
                "runAsUser must not be 0 when runAsNonRoot is true",
            ));
        }
    }
}

fn pod_spec(errs: &mut Errs, path: &str, spec: &Value, _in_job: bool) {
    pod_spec_with(errs, path, spec, &[]);
}

/// A pod spec whose containers may also mount `more_volumes` by name.
fn pod_spec_with(errs: &mut Errs, path: &str, spec: &Value, more_volumes: &[&str]) {
    if !spec.is_object() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut volumes = HashSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let vb = format!("{path}.volumes[{i}]");
        match v["name"].as_str() {
            None | Some("") => errs.push(FieldError::required(format!("{vb}.name"), "")),
            Some(n) => {
                name_errs(errs, &format!("{vb}.name"), n, names::dns1123_label);
                if !volumes.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{vb}.name"), json!(n)));
                }
            }
        }
        let sources = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, val)| *k != "name" && !val.is_null())
                    .count()
            })
            .unwrap_or(0);
        if sources == 0 {
            errs.push(FieldError::required(
                vb.clone(),
                "must specify a volume type",
            ));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(
                vb.clone(),
                "may not specify more than 1 volume type",
            ));
        }
    }
    volumes.extend(more_volumes.iter().map(|v| v.to_string()));
    let mut seen = HashSet::new();
    if spec["containers"].as_array().is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    containers(
        errs,
        &format!("{path}.initContainers"),
        &spec["initContainers"],
        &volumes,
        &mut seen,
        false,
    );
    containers(
        errs,
        &format!("{path}.containers"),
        &spec["containers"],
        &volumes,
        &mut seen,
        true,
    );
    if let Some(rp) = spec["restartPolicy"].as_str()
        && !["Always", "OnFailure", "Never"].contains(&rp)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            json!(rp),
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(dp) = spec["dnsPolicy"].as_str()
        && !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&dp)
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            json!(dp),
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ));
    }
    if let Some(g) = spec["terminationGracePeriodSeconds"].as_i64()
        && g < 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            json!(g),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(a) = spec["activeDeadlineSeconds"].as_i64()
        && a <= 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            json!(a),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    labels_map(errs, &format!("{path}.nodeSelector"), &spec["nodeSelector"]);
    for (i, t) in spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let tb = format!("{path}.tolerations[{i}]");
        let op = t["operator"].as_str().unwrap_or("Equal");
        match op {
            "Exists" => {
                if t["value"].as_str().is_some_and(|v| !v.is_empty()) {
                    errs.push(FieldError::invalid(
                        format!("{tb}.operator"),
                        json!(op),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            "Equal" => {
                if t["key"].as_str().is_none_or(str::is_empty) {
                    errs.push(FieldError::invalid(format!("{tb}.operator"), json!(op), "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{tb}.operator"),
                json!(other),
                &["Equal", "Exists"],
            )),
        }
        if let Some(e) = t["effect"].as_str()
            && !e.is_empty()
            && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&e)
        {
            errs.push(FieldError::not_supported(
                format!("{tb}.effect"),
                json!(e),
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
        if t["tolerationSeconds"].is_i64() && t["effect"] != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{tb}.effect"),
                t["effect"].clone(),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
    }
    let na = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    for (i, term) in na.as_array().into_iter().flatten().enumerate() {
        for (j, e) in term["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let op = e["operator"].as_str().unwrap_or("");
            if !["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"].contains(&op) {
                errs.push(FieldError::not_supported(
                    format!("{path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}].matchExpressions[{j}].operator"),
                    json!(op),
                    &["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"],
                ));
            }
        }
    }
    let psc = &spec["securityContext"];
    for f in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(v) = psc[f].as_i64()
            && v < 0
        {
            errs.push(FieldError::invalid(
                format!("{path}.securityContext.{f}"),
                json!(v),
                "must be between 0 and 2147483647, inclusive",
            ));
        }
    }
}

fn immutable(errs: &mut Errs, group: &str, resource: &str, new: &Value, old: &Value) {
    let field_immutable = |errs: &mut Errs, path: &str, n: &Value, o: &Value| {
        if n != o {
            errs.push(FieldError::invalid(path, n.clone(), "field is immutable"));
        }
    };
    match (group, resource) {
        ("", "persistentvolumeclaims") => crate::storage::claim_update(errs, new, old),
        ("", "persistentvolumes") => crate::storage::volume_update(errs, new, old),
        ("storage.k8s.io", "storageclasses") => {
            crate::storage::storage_class_update(errs, new, old)
        }
        ("", "pods") => {
            // Only images, activeDeadlineSeconds, tolerations (additions) and the grace
            // period may change in a pod's spec.
            let mut n = new["spec"].clone();
            let mut o = old["spec"].clone();
            for spec in [&mut n, &mut o] {
                for k in ["containers", "initContainers"] {
                    for c in spec[k].as_array_mut().into_iter().flatten() {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("image");
                        }
                    }
                }
                if let Some(m) = spec.as_object_mut() {
                    m.remove("activeDeadlineSeconds");
                    m.remove("tolerations");
                    m.remove("terminationGracePeriodSeconds");
                    m.remove("schedulingGates");
                }
            }
            // nodeName is set once, by binding.
            if old["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
                && let Some(m) = n.as_object_mut()
            {
                m.remove("nodeName");
                if let Some(om) = o.as_object_mut() {
                    om.remove("nodeName");
                }
            }
            if n != o {
                errs.push(FieldError::forbidden(
                    "spec",
                    format!(
                        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n{}",
                        spec_diff(&o, &n)
                    ),
                ));
            }
            let old_tol = old["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let new_tol = new["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if old_tol.iter().any(|t| !new_tol.contains(t)) {
                errs.push(FieldError::forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                ));
            }
        }
        ("apps", "deployments")
        | ("apps", "replicasets")
        | ("apps", "daemonsets")
        | ("apps", "statefulsets")
        | ("batch", "jobs") => {
            if !old["spec"]["selector"].is_null() {
                field_immutable(
                    errs,
                    "spec.selector",
                    &new["spec"]["selector"],
                    &old["spec"]["selector"],
                );
            }
            if (group, resource) == ("batch", "jobs") {
                field_immutable(
                    errs,
                    "spec.template",
                    &new["spec"]["template"],
                    &old["spec"]["template"],
                );
                field_immutable(
                    errs,
                    "spec.completions",
                    &new["spec"]["completions"],
                    &old["spec"]["completions"],
                );
            }
        }
        ("", "services") => {
            let (n, o) = (&new["spec"]["clusterIP"], &old["spec"]["clusterIP"]);
            if !o.is_null() && o != "" && n != o {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    n.clone(),
                    "may not change once set",
                ));
            }
        }
        ("", "configmaps") | ("", "secrets") => {
            if old["immutable"] == json!(true) {
                if new["data"] != old["data"] || new["binaryData"] != old["binaryData"] {
                    errs.push(FieldError::forbidden(
                        "data",
                        "field is immutable when `immutable` is set",
                    ));
                }
                if new["immutable"] != json!(true) {
                    errs.push(FieldError::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if resource == "secrets" {
                field_immutable(errs, "type", &new["type"], &old["type"]);
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            field_immutable(errs, "roleRef", &new["roleRef"], &old["roleRef"]);
        }
        _ => {}
    }
}

/// A short description of what differs, like the diff Kubernetes appends.
pub(crate) fn spec_diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_walk("spec", old, new, &mut lines);
    lines.truncate(10);
    lines.join("\n")
}

fn diff_walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff_walk(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_walk(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("  {path}: {a} -> {b}")),
        _ => {}
    }
}
