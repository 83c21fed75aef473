//! What every namespace holds for as long as it lives: its `default` ServiceAccount
//! (kube's ServiceAccount controller) and the `kube-root-ca.crt` ConfigMap (kube's
//! root-CA publisher), made when the namespace is created and put back when deleted or
//! edited. Written through the store like any client's objects.

use crate::cache::EventType;
use crate::codec::from_stored;
use crate::request::{Target, system_write_options};
use crate::serviceaccount::ROOT_CA_CONFIGMAP;
use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_types::{ResourceInfo, meta};
use std::sync::Arc;

const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

fn root_ca(ns: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns,
            "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
        "data": {"ca.crt": ca_pem},
    })
}

/// Creates or repairs `kube-root-ca.crt` in `ns` (Kubernetes' root-ca-cert-publisher).
pub async fn ensure_root_ca(api: &ApiServer, ns: &str) {
    let ri = crate::registry::builtin("", "configmaps");
    let t = Target {
        ri,
        namespace: Some(ns.to_string()),
        name: None,
        sub: None,
    };
    let want = root_ca(ns, &api.pki.ca_cert_pem);
    let opts = system_write_options();
    let named = Target {
        name: Some(ROOT_CA_CONFIGMAP.into()),
        ..t.clone()
    };
    let result = match api.get_object(&named).await {
        Ok(cur) if cur["data"] == want["data"] => return,
        Ok(_) => api
            .write_existing(&named, None, &opts, |cur| {
                let mut cur = cur.clone();
                cur["data"] = want["data"].clone();
                Ok(cur)
            })
            .await
            .map(|_| ()),
        Err(e) if e.code == 404 => api.create(&t, want.clone(), &opts).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {}
        // Conflicts: a racing writer; gone namespace: nothing to publish into.
        Err(e) if matches!(e.code, 409 | 403 | 404) => {}
        Err(e) => tracing::warn!(namespace = ns, error = %e, "could not publish kube-root-ca.crt"),
    }
}

/// Puts back a `kube-root-ca.crt` that was deleted or edited, as Kubernetes'
/// root-CA publisher does, and a `default` ServiceAccount that was deleted, as its
/// ServiceAccount controller does, for as long as their namespace lives.
pub fn spawn_namespace_defaults(api: Arc<ApiServer>) {
    keep(
        api.clone(),
        "configmaps",
        ROOT_CA_CONFIGMAP,
        true,
        |api, ns| Box::pin(async move { ensure_root_ca(&api, &ns).await }),
    );
    keep(api, "serviceaccounts", "default", false, |api, ns| {
        Box::pin(async move { ensure_default_service_account(&api, &ns).await })
    });
}

type Ensure = fn(Arc<ApiServer>, String) -> futures::future::BoxFuture<'static, ()>;

/// Watches `resource` for the object `name` in any namespace and calls `ensure` when it
/// is deleted (or, with `on_edit`, changed). Creating it again in a namespace being
/// deleted fails (403) and so ends there.
fn keep(
    api: Arc<ApiServer>,
    resource: &'static str,
    name: &'static str,
    on_edit: bool,
    ensure: Ensure,
) {
    tokio::spawn(async move {
        let ri = crate::registry::builtin("", resource);
        let Ok(mut w) = api.cache.watch(&ri.prefix(None), None) else {
            return;
        };
        w.initial.clear();
        let suffix = format!("/{name}");
        loop {
            let Ok(batch) = w.next_batch().await else {
                // Fell behind: start over from now (the namespaces keep theirs meanwhile).
                match api.cache.watch(&ri.prefix(None), None) {
                    Ok(nw) => {
                        w = nw;
                        w.initial.clear();
                    }
                    Err(_) => return,
                }
                continue;
            };
            if batch.is_empty() {
                return;
            }
            for ev in batch {
                // Only the kept objects are parsed; every other change passes by.
                let wanted = match ev.kind {
                    EventType::Deleted => true,
                    EventType::Modified => on_edit,
                    _ => false,
                };
                if !wanted || !ev.obj.key.ends_with(&suffix) {
                    continue;
                }
                let Ok(obj) = from_stored(&ev.obj) else {
                    continue;
                };
                if obj["metadata"]["name"] != name {
                    continue;
                }
                let ns = obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                ensure(api.clone(), ns).await;
            }
        }
    });
}

/// Creates `ns`'s `default` ServiceAccount unless it is there.
pub async fn ensure_default_service_account(api: &ApiServer, ns: &str) {
    let sa_ri = crate::registry::builtin("", "serviceaccounts");
    let t = Target {
        ri: sa_ri,
        namespace: Some(ns.to_string()),
        name: None,
        sub: None,
    };
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    let opts = system_write_options();
    match api.create(&t, sa, &opts).await {
        Ok(_) => {}
        // Already there; or the namespace is going or gone.
        Err(e) if matches!(e.code, 409 | 403 | 404) => {}
        Err(e) => {
            tracing::warn!(namespace = ns, error = %e, "could not create the default service account")
        }
    }
}

/// After a create through the API: a new namespace gets its `default` ServiceAccount
/// and the cluster CA at once (the loops above only repair them), so pods can be
/// created in it right away.
pub async fn after_create(api: &ApiServer, ri: &ResourceInfo, obj: &Value) {
    if ri.is("", "namespaces")
        && let Some(ns) = meta::name(obj)
    {
        ensure_default_service_account(api, ns).await;
        ensure_root_ca(api, ns).await;
    }
}
