//! The default roles and bindings (`skiff_rbac::bootstrap`) reconciled at every start,
//! as kube-apiserver's `rbac/bootstrap-roles` post-start hook does: a missing one is
//! created; one that lost rules, subjects, labels or annotations gets them back; one
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "false"` is left as it is.

use crate::request::Target;
use crate::request::system_write_options;
use crate::state::ApiServer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_rbac::bootstrap;
use skiff_rbac::reconcile::{
    autoupdate_off, merge_aggregation, merge_meta, merge_rules, merge_subjects,
};
use skiff_types::ApiError;

type Merge<T> = fn(&mut T, &T) -> bool;

async fn reconcile<T>(
    api: &ApiServer,
    plural: &str,
    expected: T,
    merge: Merge<T>,
) -> Result<(), ApiError>
where
    T: Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned,
{
    let ri = crate::registry::builtin(crate::rbac::GROUP, plural);
    let meta = expected.metadata();
    let t = Target {
        ri,
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        sub: None,
    };
    let json = |v: &T| serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()));
    let current = match api.get_object(&t).await {
        Ok(c) => c,
        Err(e) if e.code == 404 => {
            let create = Target { name: None, ..t };
            return match api
                .create(&create, json(&expected)?, &system_write_options())
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()), // another server made it meanwhile
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let mut have: T = serde_json::from_value(current)
        .map_err(|e| ApiError::internal(format!("stored {plural} {:?}: {e}", t.name())))?;
    if autoupdate_off(have.metadata()) {
        return Ok(());
    }
    let meta_changed = merge_meta(have.metadata_mut(), expected.metadata());
    if !(merge(&mut have, &expected) | meta_changed) {
        return Ok(());
    }
    tracing::info!(kind = T::KIND, name = %t.name(), "default RBAC object brought up to date");
    let next = json(&have)?;
    api.write_existing(&t, None, &system_write_options(), |_| Ok(next.clone()))
        .await
        .map(drop)
}

pub async fn ensure(api: &ApiServer) -> Result<(), ApiError> {
    for r in bootstrap::cluster_roles() {
        reconcile(api, "clusterroles", r, |have, want| {
            merge_rules(&mut have.rules, want.rules.as_deref().unwrap_or_default())
                | merge_aggregation(&mut have.aggregation_rule, &want.aggregation_rule)
        })
        .await?;
    }
    for r in bootstrap::roles() {
        reconcile(api, "roles", r, |have, want| {
            merge_rules(&mut have.rules, want.rules.as_deref().unwrap_or_default())
        })
        .await?;
    }
    for b in bootstrap::cluster_role_bindings() {
        reconcile(api, "clusterrolebindings", b, |have, want| {
            merge_subjects(&mut have.subjects, &want.subjects)
        })
        .await?;
    }
    for b in bootstrap::role_bindings() {
        reconcile(api, "rolebindings", b, |have, want| {
            merge_subjects(&mut have.subjects, &want.subjects)
        })
        .await?;
    }
    Ok(())
}
