//! The namespace lifecycle's finalizer: deleting a namespace removes what is in it
//! (every served kind, custom ones too), then the namespace itself.

use crate::registry::Resource;
use crate::request::DeleteOptions;
use crate::request::Target;
use crate::state::ApiServer;
use skiff_types::{ApiError, meta};
use std::sync::Arc;
use std::time::Duration;

pub fn spawn_namespace_finalizer(api: Arc<ApiServer>) {
    tokio::spawn(async move {
        let ns_ri = crate::registry::builtin("", "namespaces");
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (objs, _, _) = api.cache.list(&ns_ri.prefix(None), None, None, &|_| true);
            for s in objs {
                let Ok(ns) = crate::codec::from_stored(&s) else {
                    continue;
                };
                if meta::deletion_timestamp(&ns).is_none() {
                    continue;
                }
                let Some(name) = meta::name(&ns).map(str::to_string) else {
                    continue;
                };
                if let Err(e) = finalize_namespace(&api, &name).await {
                    tracing::warn!(namespace = %name, error = %e, "namespace cleanup failed");
                }
            }
        }
    });
}

/// Deletes every object of `ri` (in `ns`, or all) not already being deleted; returns
/// how many were there, those being deleted included (0: nothing left).
pub async fn delete_all(
    api: &ApiServer,
    ri: &Resource,
    ns: Option<&str>,
) -> Result<usize, ApiError> {
    let (objs, _, _) = api.cache.list(&ri.prefix(ns), None, None, &|_| true);
    for s in &objs {
        let Ok(obj) = crate::codec::from_stored(s) else {
            continue;
        };
        if meta::deletion_timestamp(&obj).is_some() {
            continue;
        }
        let t = Target {
            ri: ri.clone(),
            namespace: meta::namespace(&obj).map(str::to_string),
            name: meta::name(&obj).map(str::to_string),
            sub: None,
        };
        match api.delete(&t, &DeleteOptions::default()).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(objs.len())
}

async fn finalize_namespace(api: &ApiServer, ns: &str) -> Result<(), ApiError> {
    let mut remaining = 0usize;
    let served = api.registry.snapshot();
    for ri in served.stored().filter(|r| r.namespaced()) {
        remaining += delete_all(api, ri, Some(ns)).await?;
    }
    if remaining > 0 {
        return Ok(());
    }
    // Everything is gone: drop the `kubernetes` finalizer and the namespace.
    let ns_ri = crate::registry::builtin("", "namespaces");
    let t = Target {
        ri: ns_ri,
        namespace: None,
        name: Some(ns.to_string()),
        sub: None,
    };
    let Some(kv) = api
        .store
        .get(&t.key())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    else {
        return Ok(());
    };
    let obj = crate::codec::from_bytes(&kv.value, kv.mod_revision)?;
    if !meta::finalizers(&obj).is_empty() {
        return Ok(());
    }
    match api.store.delete(&t.key(), Some(kv.mod_revision)).await {
        Ok(_) => tracing::info!(namespace = ns, "namespace deleted"),
        Err(e) => {
            tracing::debug!(namespace = ns, error = %e, "namespace delete raced; retrying later")
        }
    }
    Ok(())
}
