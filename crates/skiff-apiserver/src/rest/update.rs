//! Update: a compare-and-swap read-modify-write from the freshest copy, the kind's
//! status rules and preparation, admission, and finalization on update.

use super::meta::{
    check_namespace, drop_empty_metadata, same_but_version, spec_changed, tracks_generation,
};
use crate::codec::check_decodes;
use crate::codec::check_type_meta;
use crate::codec::from_kv;
use crate::codec::from_stored;
use crate::codec::store_error;
use crate::request::now_rfc3339;
use crate::request::parse_rv;
use crate::request::{Target, WriteOptions, WriteResult};
use crate::state::ApiServer;
use crate::{deletion, kinds};
use serde_json::{Value, json};
use skiff_admission::Operation;
use skiff_store::Error as StoreError;
use skiff_store::Revision;
use skiff_types::Subresource;
use skiff_types::{ApiError, meta};

impl ApiServer {
    /// Read-modify-write with compare-and-swap, retried on conflicts unless the caller
    /// pinned a resourceVersion. `f` gets the current object (None if absent) and returns
    /// the new one; returning `Ok(None)` deletes nothing and writes nothing.
    pub async fn guaranteed_update<F>(
        &self,
        t: &Target,
        precondition: Option<Revision>,
        mut f: F,
    ) -> Result<(Value, Option<Value>), ApiError>
    where
        F: FnMut(Option<Value>) -> Result<Value, ApiError>,
    {
        let key = t.key();
        // The first attempt starts from the watch cache, as Kubernetes' GuaranteedUpdate
        // does: the compare-and-swap catches a stale copy, and anything a stale copy
        // could make fail (a precondition, the update function) is retried on a fresh
        // read before it counts.
        let mut try_cache = true;
        for _ in 0..16 {
            let cached = if std::mem::take(&mut try_cache) {
                self.cache.get(&key)
            } else {
                None
            };
            let from_cache = cached.is_some();
            let (cur_obj, cur_rev, cur_bytes) = match cached {
                Some(s) => (Some(from_stored(&s)?), s.rev, Some(s.value.clone())),
                None => match self.store.get(&key).await.map_err(|e| store_error(e, t))? {
                    Some(kv) => (Some(from_kv(&kv)?), kv.mod_revision, Some(kv.value)),
                    None => (None, 0, None),
                },
            };
            // The update works on the object in the request's version.
            let cur_obj = match cur_obj {
                Some(o) => Some(crate::conversion::for_request(self, &t.ri, o).await?),
                None => None,
            };
            if let (Some(p), Some(_)) = (precondition, &cur_obj)
                && p != cur_rev
            {
                if from_cache {
                    continue;
                }
                return Err(ApiError::modified(&t.ri.group, &t.ri.plural, t.name()));
            }
            let mut new = match f(cur_obj.clone()) {
                Ok(new) => new,
                Err(_) if from_cache => continue,
                Err(e) => return Err(e),
            };
            let stored = crate::conversion::encode(self, &t.ri, &new).await?;
            // Equal objects serialize to the same length whatever their key order, so
            // the field-by-field comparison only runs when the lengths match.
            if let Some(cur) = &cur_obj
                && let Some(cur_bytes) = &cur_bytes
                && cur_bytes.len() == stored.len()
                && (*cur_bytes == stored || same_but_version(cur, &new))
            {
                // Nothing changes: like Kubernetes, no write, no event, the same
                // resourceVersion (confirmed on a fresh read if the copy was cached).
                if from_cache {
                    continue;
                }
                return Ok((cur.clone(), cur_obj));
            }
            let res = match &cur_obj {
                Some(_) => self.store.update(&key, stored, cur_rev).await,
                None => self.store.create(&key, stored).await,
            };
            match res {
                Ok(rev) => {
                    meta::set_resource_version(&mut new, rev);
                    return Ok((new, cur_obj));
                }
                Err(StoreError::Conflict { .. })
                | Err(StoreError::AlreadyExists)
                | Err(StoreError::NotFound)
                    if precondition.is_none() || from_cache =>
                {
                    continue;
                }
                Err(StoreError::Conflict { .. }) => {
                    return Err(ApiError::modified(&t.ri.group, &t.ri.plural, t.name()));
                }
                Err(e) => return Err(store_error(e, t)),
            }
        }
        Err(ApiError::modified(&t.ri.group, &t.ri.plural, t.name()))
    }

    /// Builds the object to store for an update of `current` with `incoming` (PUT body or
    /// patched object) on the main resource or a subresource, with admission's warnings.
    pub(super) fn prepare_update(
        &self,
        t: &Target,
        current: &Value,
        mut incoming: Value,
        opts: &WriteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let ri = &t.ri;
        check_type_meta(ri, &mut incoming)?;
        if let Some(n) = meta::name(&incoming)
            && n != t.name()
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                t.name()
            )));
        }
        let csr = crate::certificates::is_csr(&ri.group, &ri.plural);
        let mut new = match t.sub {
            _ if csr => crate::certificates::prepare_update(t.sub, current, &incoming),
            // The bound pod, node and PodScheduled condition both: spec and status move.
            Some(Subresource::Binding) => incoming,
            Some(Subresource::Status) => {
                // Only status moves; everything else stays as stored.
                let mut n = current.clone();
                n["status"] = incoming.get("status").cloned().unwrap_or(Value::Null);
                if n["status"].is_null() {
                    n.as_object_mut().expect("object").remove("status");
                }
                n
            }
            _ => {
                if ri.has_subresource(Subresource::Status) {
                    match current.get("status") {
                        Some(s) => incoming["status"] = s.clone(),
                        None => {
                            incoming.as_object_mut().expect("object").remove("status");
                        }
                    }
                }
                incoming
            }
        };
        check_namespace(t, &mut new)?;
        // System-owned metadata always comes from the stored object.
        {
            let cm = current
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let m = meta::meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
            ] {
                match cm.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            if m.get("managedFields").is_none()
                && let Some(mf) = cm.get("managedFields")
            {
                m.insert("managedFields".into(), mf.clone());
            }
        }
        kinds::prepare_update(ri, &mut new, current)?;
        crate::strategy::default(ri, &mut new);
        drop_empty_metadata(&mut new);
        if tracks_generation(ri)
            && t.sub != Some(Subresource::Status)
            && spec_changed(&new, current)
        {
            let g = meta::generation(current) + 1;
            meta::set(&mut new, "generation", json!(g));
        }
        let mut errs = crate::strategy::validate_update(ri, t.sub, &new, current);
        if csr {
            errs.extend(crate::certificates::validate(&new, Some(current)));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&ri.group, &ri.kind, t.name(), &errs));
        }
        self.check_escalation(t, &new, Some(current), &opts.user)?;
        if csr {
            let authz = self.authorizer.as_ref();
            crate::certificates::admit(authz, &opts.user, t.sub, &new, Some(current))?;
        }
        let op = skiff_nodeauth::Operation::Update;
        self.admit_node(&opts.user, t, op, Some(&new), Some(current))?;
        crate::storage::admit_update(self, t, &new, current)?;
        let warnings = self.admit_pod_security(t, &new, Some(current), &opts.user)?;
        if let Some(mgr) = &opts.field_manager {
            crate::strategy::record_update(ri, Some(current), &mut new, mgr, &now_rfc3339(), t.sub);
        }
        Ok((new, warnings))
    }

    /// PUT.
    pub async fn update(
        &self,
        t: &Target,
        incoming: Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if t.sub != Some(Subresource::Scale) {
            check_decodes(&t.ri, &incoming)?;
        }
        let precondition = meta::resource_version(&incoming)
            .map(parse_rv)
            .transpose()?;
        self.write_existing(t, precondition, opts, |_| Ok(incoming.clone()))
            .await
    }

    /// Shared tail of PUT and PATCH: `produce` maps the current object to the incoming one.
    pub async fn write_existing<F>(
        &self,
        t: &Target,
        precondition: Option<Revision>,
        opts: &WriteOptions,
        mut produce: F,
    ) -> Result<WriteResult, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        if opts.dry_run {
            let current = self.get_object(t).await?;
            let current = crate::conversion::for_request(self, &t.ri, current).await?;
            let incoming = produce(&current)?;
            let (new, warnings) = self.prepare_update(t, &current, incoming, opts)?;
            return Ok(WriteResult {
                object: new,
                code: 200,
                warnings,
                raw: None,
            });
        }
        if self.admission.active() {
            return self
                .write_existing_admitted(t, precondition, opts, produce)
                .await;
        }
        let mut deleted_after = false;
        let mut admitted: Vec<String> = Vec::new();
        // An update may give a Service node ports: held until stored, as on create.
        let alloc = if kinds::needs_alloc_lock(&t.ri) && t.sub.is_none() {
            let guard = self.service_alloc.lock().await;
            self.sync_cache().await?;
            Some(guard)
        } else {
            None
        };
        let (new, _old) = self
            .guaranteed_update(t, precondition, |cur| {
                let current =
                    cur.ok_or_else(|| ApiError::not_found(&t.ri.group, &t.ri.plural, t.name()))?;
                let incoming = produce(&current)?;
                let (mut new, warnings) = self.prepare_update(t, &current, incoming, opts)?;
                admitted = warnings;
                if alloc.is_some() {
                    self.service_alloc
                        .allocate_on_update(&self.cache, &mut new)?;
                }
                deleted_after = meta::deletion_timestamp(&new).is_some()
                    && meta::finalizers(&new).is_empty()
                    && !deletion::waits_for_kubelet(&t.ri, &new);
                Ok(new)
            })
            .await?;
        if let Some(rev) = meta::resource_version(&new).and_then(|v| v.parse().ok()) {
            self.settle_policy(&t.ri, rev).await;
        }
        if deleted_after {
            // The last finalizer is gone from an object being deleted: delete it now.
            let rev = meta::resource_version(&new)
                .map(parse_rv)
                .transpose()?
                .unwrap_or(0);
            match self.store.delete(&t.key(), Some(rev)).await {
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(key = %t.key(), error = %e, "finalized object not deleted")
                }
            }
        }
        // Tightening a namespace's enforce level: the pods it already holds that fail.
        let mut warnings = admitted;
        if let ("", "namespaces", None, Some(old)) = (&*t.ri.group, &*t.ri.plural, t.sub, &_old) {
            warnings.extend(crate::podsecurity::namespace_warnings(self, &new, old));
        }
        Ok(WriteResult {
            object: new,
            code: 200,
            warnings,
            raw: None,
        })
    }

    /// An update with admission webhooks or policies configured: the new object is
    /// computed from a consistent read, mutated and validated (both may call out), then
    /// written only if the object did not change meanwhile (else all again).
    pub(super) async fn write_existing_admitted<F>(
        &self,
        t: &Target,
        precondition: Option<Revision>,
        opts: &WriteOptions,
        mut produce: F,
    ) -> Result<WriteResult, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let served = self.registry.snapshot();
        for _ in 0..8 {
            let current = self.get_object(t).await?;
            let current = crate::conversion::for_request(self, &t.ri, current).await?;
            let rev = meta::resource_version(&current)
                .map(parse_rv)
                .transpose()?
                .unwrap_or(0);
            if precondition.is_some_and(|p| p != rev) {
                return Err(ApiError::modified(&t.ri.group, &t.ri.plural, t.name()));
            }
            let incoming = produce(&current)?;
            let r =
                self.admission_request(t, Operation::Update, Some(incoming), Some(&current), opts);
            let (mutated, mut warnings) = self.admission.mutate(&served, r).await?;
            let mut incoming = mutated.unwrap_or_default();
            crate::strategy::default(&t.ri, &mut incoming);
            let (new, w) = self.prepare_update(t, &current, incoming, opts)?;
            warnings.extend(w);
            let r = self.admission_request(
                t,
                Operation::Update,
                Some(new.clone()),
                Some(&current),
                opts,
            );
            warnings.extend(self.admission.validate(&served, r).await?);
            // Admission is not run again for this exact object.
            let plain = WriteOptions {
                dry_run: opts.dry_run,
                ..opts.clone()
            };
            match self.write_decided(t, rev, &plain, new).await {
                Err(e) if e.code == 409 && precondition.is_none() => continue,
                Ok(mut res) => {
                    res.warnings.splice(0..0, warnings);
                    return Ok(res);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::modified(&t.ri.group, &t.ri.plural, t.name()))
    }

    /// Writes an object already admitted, if the stored one is still at `rev`.
    pub(super) async fn write_decided(
        &self,
        t: &Target,
        rev: Revision,
        opts: &WriteOptions,
        new: Value,
    ) -> Result<WriteResult, ApiError> {
        if opts.dry_run {
            return Ok(WriteResult {
                object: new,
                code: 200,
                warnings: Vec::new(),
                raw: None,
            });
        }
        let (stored, _) = self
            .guaranteed_update(t, Some(rev), |_| Ok(new.clone()))
            .await?;
        Ok(WriteResult {
            object: stored,
            code: 200,
            warnings: Vec::new(),
            raw: None,
        })
    }
}
