//! A kind's own preparation of an object on create and update, beyond its strategy's
//! defaults (kube's `PrepareForCreate`/`PrepareForUpdate` and the mutating plugins
//! tied to one kind): initial status, pod QoS, namespace phase, Service allocations,
//! job selectors, default IngressClass and StorageClass.

use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_types::{ApiError, ResourceInfo, Subresource};

/// Creates of these kinds allocate from shared pools and must be serialised.
pub fn needs_alloc_lock(ri: &ResourceInfo) -> bool {
    ri.is("", "services")
}

/// Kind-specific preparation of a new object, after defaulting and before validation.
pub async fn prepare_create(
    api: &ApiServer,
    ri: &ResourceInfo,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if ri.has_subresource(Subresource::Status) && !ri.is("", "nodes") {
        // Status is the system's to write; a create starts from a fresh one.
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
            if let Some(s) = skiff_validation::initial_status(&ri.group, &ri.plural) {
                o.insert("status".into(), s);
            }
        }
    }
    match (&*ri.group, &*ri.plural) {
        ("", "pods") => {
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            api.sync_cache().await?;
            api.service_alloc.allocate(&api.cache, obj)?
        }
        ("batch", "jobs") => skiff_validation::job_generate_selector(obj),
        ("networking.k8s.io", "ingresses") => crate::ingressclass::admit_default(api, obj),
        ("", "persistentvolumeclaims" | "persistentvolumes") => {
            crate::storage::admit_create(api, ri, obj)
        }
        _ => {}
    }
    Ok(())
}

/// Kind-specific rules on update (values the server allocated survive a PUT that omits them).
pub fn prepare_update(ri: &ResourceInfo, new: &mut Value, current: &Value) -> Result<(), ApiError> {
    if ri.is("", "services") {
        let spec = new.get_mut("spec").and_then(Value::as_object_mut);
        if let Some(spec) = spec {
            for f in ["clusterIP", "clusterIPs"] {
                let empty = spec
                    .get(f)
                    .map(|v| v.is_null() || v == "" || v == &json!([]))
                    .unwrap_or(true);
                if empty && let Some(old) = current["spec"].get(f) {
                    spec.insert(f.to_string(), old.clone());
                }
            }
            // A type without node ports drops them (Kubernetes' dropTypeDependentFields);
            // otherwise node ports the user did not name keep their allocation (matched
            // by port).
            let with_node_ports = matches!(
                spec.get("type").and_then(Value::as_str),
                Some("NodePort" | "LoadBalancer")
            );
            if !with_node_ports {
                for p in spec
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = p.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
            let keeps_health_port = with_node_ports
                && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
            if keeps_health_port && !spec.contains_key("healthCheckNodePort") {
                if let Some(hc) = current["spec"].get("healthCheckNodePort") {
                    spec.insert("healthCheckNodePort".into(), hc.clone());
                }
            } else if !keeps_health_port {
                spec.remove("healthCheckNodePort");
            }
            let old_ports = current["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .filter(|_| with_node_ports)
            {
                for p in ports {
                    let missing = p
                        .get("nodePort")
                        .map(|v| v.is_null() || v == 0)
                        .unwrap_or(true);
                    if missing
                        && let Some(old) = old_ports.iter().find(|o| {
                            o["port"] == p["port"] && o.get("protocol") == p.get("protocol")
                        })
                        && let Some(np) = old.get("nodePort")
                    {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
    }
    Ok(())
}

/// Kubernetes' QoS class of a pod (pkg/apis/core/helper/qos).
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests_any = false;
    let mut guaranteed = true;
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod["spec"][*f].as_array())
        .flatten();
    for c in containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let rq = req.get(r).and_then(Value::as_str);
            let lm = lim.get(r).and_then(Value::as_str);
            if rq.is_some() || lm.is_some() {
                requests_any = true;
            }
            match (rq, lm) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if !quantity_eq(a, b) => guaranteed = false,
                _ => {}
            }
        }
    }
    if !requests_any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn quantity_eq(a: &str, b: &str) -> bool {
    match (
        skiff_validation::quantity::parse(a),
        skiff_validation::quantity::parse(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------
// pods/eviction: PodDisruptionBudgets.

// ---------------------------------------------------------------------------------------
// pods/binding.

// ---------------------------------------------------------------------------------------
// events.k8s.io/v1 Event <-> core/v1 Event (one storage, two views).

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let be = json!({"spec": {"containers": [{"name": "a", "resources": {}}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
