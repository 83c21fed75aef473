//! Delete: immortal objects, preconditions, the kind's deletion plan (graceful, with
//! finalizers, orphaning or in the foreground).

use crate::codec::from_kv;
use crate::codec::store_error;
use crate::deletion::{self, DeletionPlan};
use crate::registry::Served;
use crate::request::FieldValidation;
use crate::request::{DeleteOptions, Target, WriteOptions, WriteResult};
use crate::state::ApiServer;
use serde_json::Value;
use skiff_admission::Operation;
use skiff_store::Error as StoreError;
use skiff_types::{ApiError, meta};

impl ApiServer {
    /// DELETE of one object.
    pub async fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<WriteResult, ApiError> {
        let ri = &t.ri;
        deletion::admit_delete(ri, t.name())?;
        for _ in 0..16 {
            let kv = self
                .store
                .get(&t.key())
                .await
                .map_err(|e| store_error(e, t))?
                .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, t.name()))?;
            let current = from_kv(&kv)?;
            if let Some(uid) = &opts.precondition_uid
                && meta::uid(&current) != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    &ri.group,
                    &ri.plural,
                    t.name(),
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&current).unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_rv
                && meta::resource_version(&current) != Some(rv.as_str())
            {
                return Err(ApiError::conflict(
                    &ri.group,
                    &ri.plural,
                    t.name(),
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta::resource_version(&current).unwrap_or("")
                    ),
                ));
            }
            if let Some(user) = &opts.user {
                self.admit_node(
                    user,
                    t,
                    skiff_nodeauth::Operation::Delete,
                    None,
                    Some(&current),
                )?;
                if self.admission.active() {
                    let wo = WriteOptions {
                        dry_run: opts.dry_run,
                        field_manager: None,
                        field_validation: FieldValidation::Ignore,
                        user: user.clone(),
                    };
                    let r = self.admission_request(t, Operation::Delete, None, Some(&current), &wo);
                    self.admission
                        .validate(&self.registry.snapshot(), r)
                        .await?;
                }
            }
            let plan = deletion::deletion_plan(ri, &current, opts);
            match plan {
                DeletionPlan::Immediate => {
                    if opts.dry_run {
                        return Ok(deleted_result(ri, current));
                    }
                    match self.store.delete(&t.key(), Some(kv.mod_revision)).await {
                        Ok((rev, _)) => {
                            self.settle_policy(ri, rev).await;
                            let mut last = current;
                            meta::set_resource_version(&mut last, rev);
                            return Ok(deleted_result(ri, last));
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(store_error(e, t)),
                    }
                }
                DeletionPlan::Mark(mut marked) => {
                    if opts.dry_run {
                        return Ok(WriteResult {
                            object: marked,
                            code: 200,
                            warnings: Vec::new(),
                            raw: None,
                        });
                    }
                    match self
                        .store
                        .update(
                            &t.key(),
                            crate::conversion::encode(self, ri, &marked).await?,
                            kv.mod_revision,
                        )
                        .await
                    {
                        Ok(rev) => {
                            meta::set_resource_version(&mut marked, rev);
                            return Ok(WriteResult {
                                object: marked,
                                code: 200,
                                warnings: Vec::new(),
                                raw: None,
                            });
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(store_error(e, t)),
                    }
                }
                DeletionPlan::AlreadyPending => {
                    return Ok(WriteResult {
                        object: current,
                        code: 200,
                        warnings: Vec::new(),
                        raw: None,
                    });
                }
            }
        }
        Err(ApiError::modified(&ri.group, &ri.plural, t.name()))
    }
}

fn deleted_result(ri: &Served, last: Value) -> WriteResult {
    // Kubernetes returns the deleted object for these registries (custom resources
    // too), a Status for the rest.
    let object = if ri.custom.is_some()
        || ri.group.is_empty()
            && matches!(
                &*ri.plural,
                "pods"
                    | "services"
                    | "namespaces"
                    | "nodes"
                    | "persistentvolumes"
                    | "persistentvolumeclaims"
            ) {
        last
    } else {
        skiff_types::status::success_status(
            &ri.group,
            &ri.plural,
            meta::name(&last).unwrap_or(""),
            meta::uid(&last).unwrap_or(""),
        )
    };
    WriteResult {
        object,
        code: 200,
        warnings: Vec::new(),
        raw: None,
    }
}
