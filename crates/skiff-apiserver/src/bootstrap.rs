//! Objects every cluster has from its first start: the four system namespaces, their
//! default ServiceAccounts and `kube-root-ca.crt` ConfigMaps, the `kubernetes` Service and its Endpoints and
//! EndpointSlice (kept at this server's address), the `kube-dns` Service, the two
//! system PriorityClasses, the default StorageClass `local-path`, the IngressClass `skiff` of the built-in Ingress
//! controller (the default class), and `kube-system/extension-apiserver-authentication`. Created only when absent, so restarts keep user edits.

use crate::namespace_defaults::ensure_default_service_account;
use crate::reconcile::{ensure_one, reconcile_one};
use crate::service_alloc::{KUBE_DNS_SERVICE_IP, KUBERNETES_SERVICE_IP};
use crate::state::ApiServer;
use serde_json::json;
use skiff_types::ApiError;

/// The cluster DNS Service. Every real node answers it itself (node-local, no pods):
/// each agent publishes its own endpoint, and `internalTrafficPolicy: Local` keeps a
/// node's queries on that node.
async fn ensure_kube_dns(api: &ApiServer) -> Result<(), ApiError> {
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": KUBE_DNS_SERVICE_IP.to_string(),
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}],
                 "internalTrafficPolicy": "Local", "sessionAffinity": "None"},
    });
    ensure_one(api, "", "services", Some("kube-system"), svc).await
}

/// The built-in Ingress controller's IngressClass, the cluster's default (as k3s ships
/// Traefik's).
async fn ensure_ingress_class(api: &ApiServer) -> Result<(), ApiError> {
    use skiff_ingress::class::{CLASS_NAME, CONTROLLER, DEFAULT_CLASS_ANNOTATION};
    let class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER},
    });
    ensure_one(api, "networking.k8s.io", "ingressclasses", None, class).await
}

/// The built-in local-path provisioner's StorageClass, the cluster's default (as k3s
/// ships rancher's local-path).
async fn ensure_storage_class(api: &ApiServer) -> Result<(), ApiError> {
    use skiff_types::volumes::{
        DEFAULT_CLASS_ANNOTATION, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER,
    };
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    ensure_one(api, "storage.k8s.io", "storageclasses", None, class).await
}

/// `kube-system/extension-apiserver-authentication`: how extension API servers
/// recognise requests this server proxies to them (and clients' certificates).
async fn ensure_extension_authentication(api: &ApiServer) -> Result<(), ApiError> {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": api.pki.ca_cert_pem,
            "requestheader-client-ca-file": api.pki.request_header_ca_pem,
            "requestheader-allowed-names": json!([skiff_pki::PROXY_CLIENT_CN]).to_string(),
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
            "requestheader-uid-headers": "[\"X-Remote-Uid\"]",
        },
    });
    reconcile_one(api, "", "configmaps", "kube-system", cm, &["data"]).await
}

pub async fn ensure(api: &ApiServer) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure_one(api, "", "namespaces", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})).await?;
        // Creating the namespace made its service account; this covers a namespace that
        // existed before a crash between the two writes.
        ensure_default_service_account(api, ns).await;
    }
    // Namespaces of an earlier version of skiff lack the CA ConfigMap.
    let ns_ri = crate::registry::builtin("", "namespaces");
    let (all, _, _) = api.cache.list(&ns_ri.prefix(None), None, None, &|_| true);
    for s in all {
        if let Ok(ns) = crate::codec::from_stored(&s)
            && let Some(name) = ns["metadata"]["name"].as_str()
            && ns["metadata"]["deletionTimestamp"].is_null()
        {
            crate::namespace_defaults::ensure_root_ca(api, name).await;
        }
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP.to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api.advertise.port()}], "sessionAffinity": "None"},
    });
    ensure_one(api, "", "services", Some("default"), svc).await?;
    crate::rbac_bootstrap::ensure(api).await?;
    ensure_extension_authentication(api).await?;
    ensure_kube_dns(api).await?;
    ensure_ingress_class(api).await?;
    ensure_storage_class(api).await?;
    crate::apiservers::announce(api).await?;
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
