//! Objects every cluster has from its first start: the four system namespaces, their
//! default ServiceAccounts and `kube-root-ca.crt` ConfigMaps, the `kubernetes` Service and its Endpoints, and the two
//! system PriorityClasses. Created only when absent, so restarts keep user edits.

use crate::kinds::{KUBERNETES_SERVICE_IP, ensure_default_service_account, system_write_options};
use crate::object::Target;
use crate::server::ApiServer;
use serde_json::{Value, json};
use skiff_types::ApiError;
use skiff_types::registry::lookup;

async fn ensure_one(
    api: &ApiServer,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    let ri = lookup(group, plural).expect("bootstrap kinds are served");
    let t = Target {
        ri,
        namespace: ns.map(str::to_string),
        name: None,
        sub: None,
    };
    match api.create(&t, obj, &system_write_options()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn ensure(api: &ApiServer) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure_one(api, "", "namespaces", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})).await?;
        // Creating the namespace made its service account; this covers a namespace that
        // existed before a crash between the two writes.
        ensure_default_service_account(api, ns).await;
    }
    // Namespaces of an earlier version of skiff lack the CA ConfigMap.
    let ns_ri = lookup("", "namespaces").expect("served");
    let (all, _, _) = api.cache.list(&ns_ri.prefix(None), None, None, &|_| true);
    for s in all {
        if let Ok(ns) = crate::object::from_stored(&s)
            && let Some(name) = ns["metadata"]["name"].as_str()
            && ns["metadata"]["deletionTimestamp"].is_null()
        {
            crate::serviceaccount::ensure_root_ca(api, name).await;
        }
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP.to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api.advertise.port()}], "sessionAffinity": "None"},
    });
    ensure_one(api, "", "services", Some("default"), svc).await?;
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": api.advertise.ip().to_string()}], "ports": [{"name": "https", "port": api.advertise.port(), "protocol": "TCP"}]}],
    });
    ensure_one(api, "", "endpoints", Some("default"), ep).await?;
    for (name, value, desc) in [
        (
            "system-cluster-critical",
            2000000000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
        (
            "system-node-critical",
            2000001000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
    ] {
        ensure_one(api, "scheduling.k8s.io", "priorityclasses", None, json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, "description": desc})).await?;
    }
    Ok(())
}
