//! Create, in kube-apiserver's order: type meta and name, system metadata, defaults,
//! mutating admission (built-in, then webhooks), the kind's preparation, validation,
//! validating admission (built-in, then policies and webhooks), managedFields, storage.

use super::meta::{check_namespace, drop_empty_metadata, tracks_generation};
use crate::codec::check_decodes;
use crate::kinds;
use crate::request::{Target, WriteOptions, WriteResult};
use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_admission::Operation;
use skiff_types::FieldError;
use skiff_types::{ApiError, meta};

use crate::codec::check_type_meta;
use crate::codec::stamp_stored;
use crate::codec::store_error;
use crate::request::now_rfc3339;
use crate::request::random_suffix;

impl ApiServer {
    pub async fn create(
        &self,
        t: &Target,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        let ri = &t.ri;
        crate::strategy::check_create_allowed(ri)?;
        check_type_meta(ri, &mut obj)?;
        check_decodes(ri, &obj)?;
        check_namespace(t, &mut obj)?;
        if meta::resource_version(&obj).is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if meta::name(&obj).is_none() {
            match meta::generate_name(&obj) {
                Some(prefix) => {
                    let name = format!("{}{}", prefix, random_suffix());
                    meta::set(&mut obj, "name", json!(name));
                }
                None => {
                    return Err(ApiError::invalid(
                        &ri.group,
                        &ri.kind,
                        "",
                        &[FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            }
        }
        let name = meta::name(&obj).unwrap_or_default().to_string();
        let t = Target {
            name: Some(name.clone()),
            ..t.clone()
        };
        if let Some(ns) = &t.namespace {
            self.check_namespace_accepts(ns, ri, &name).await?;
        }
        {
            let m = meta::meta_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            if tracks_generation(ri) {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        crate::strategy::default(ri, &mut obj);
        drop_empty_metadata(&mut obj);
        if ri.group.is_empty() && ri.plural == "pods" {
            skiff_validation::admit_pod_defaults(&mut obj);
            crate::priority::admit_priority(self, &mut obj, &name)?;
            crate::serviceaccount::admit_pod(self, &mut obj, &name).await?;
        }
        let served = self.registry.snapshot();
        let mut webhook_warnings = Vec::new();
        if self.admission.active() {
            let (mutated, w) = self
                .admission
                .mutate(
                    &served,
                    self.admission_request(&t, Operation::Create, Some(obj), None, opts),
                )
                .await?;
            obj = mutated.unwrap_or_default();
            // What a webhook added is decoded with defaults, as kube's decoder does.
            crate::strategy::default(ri, &mut obj);
            webhook_warnings = w;
        }
        // Held until the object is stored, so two creates never get the same IP or port.
        let _alloc = if kinds::needs_alloc_lock(ri) {
            Some(self.service_alloc.lock().await)
        } else {
            None
        };
        kinds::prepare_create(self, ri, &mut obj).await?;
        let csr = crate::certificates::is_csr(&ri.group, &ri.plural);
        if csr {
            crate::certificates::prepare_create(&mut obj, &opts.user);
        }
        let mut errs = crate::strategy::validate_create(ri, &obj);
        if csr {
            errs.extend(crate::certificates::validate(&obj, None));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&ri.group, &ri.kind, &name, &errs));
        }
        self.check_escalation(&t, &obj, None, &opts.user)?;
        if csr {
            crate::certificates::admit(self.authorizer.as_ref(), &opts.user, None, &obj, None)?;
        }
        self.admit_node(
            &opts.user,
            &t,
            skiff_nodeauth::Operation::Create,
            Some(&obj),
            None,
        )?;
        let mut warnings = self.admit_pod_security(&t, &obj, None, &opts.user)?;
        warnings.append(&mut webhook_warnings);
        if self.admission.active() {
            let r = self.admission_request(&t, Operation::Create, Some(obj.clone()), None, opts);
            warnings.extend(self.admission.validate(&served, r).await?);
        }
        if let Some(mgr) = &opts.field_manager {
            crate::strategy::record_update(ri, None, &mut obj, mgr, &now_rfc3339(), None);
        }
        if opts.dry_run {
            return Ok(WriteResult {
                object: obj,
                code: 201,
                warnings,
                raw: None,
            });
        }
        let stored = crate::conversion::encode(self, ri, &obj).await?;
        let rev = self
            .store
            .create(&t.key(), stored.clone())
            .await
            .map_err(|e| store_error(e, &t))?;
        meta::set_resource_version(&mut obj, rev);
        self.settle_policy(ri, rev).await;
        Ok(WriteResult {
            object: obj,
            code: 201,
            warnings,
            raw: (!ri.converts())
                .then(|| stamp_stored(&stored, rev))
                .flatten(),
        })
    }
}
