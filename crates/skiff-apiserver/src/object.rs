//! The generic object pipeline shared by every kind: create, read, update (with
//! optimistic concurrency), patch, delete (graceful, with finalizers), list.
//! Kind-specific steps are delegated to `crate::kinds`, defaulting and validation to
//! `skiff_validation`.

use crate::auth::UserInfo;
use crate::cache::Stored;
use crate::kinds;
use crate::registry::Served;
use crate::server::ApiServer;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use skiff_admission::Operation;
use skiff_store::{Error as StoreError, KeyValue, Revision};
use skiff_types::registry::split_api_version;
use skiff_types::{ApiError, FieldError, ResourceInfo, Subresource, meta};
use std::time::Duration;

/// Which object (or collection) a request is about.
#[derive(Debug, Clone)]
pub struct Target {
    pub ri: crate::registry::Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
}

impl Target {
    pub fn key(&self) -> String {
        self.ri.key(
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or(""),
        )
    }
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options shared by writes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub user: UserInfo,
}

/// The result of a write: the object, HTTP status, and warnings for `Warning:` headers.
#[derive(Debug)]
pub struct WriteResult {
    pub object: Value,
    pub code: u16,
    pub warnings: Vec<String>,
    /// The object as JSON, when the write already produced it (saves serializing the
    /// reply again).
    pub raw: Option<Vec<u8>>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Serialized form kept in the store: the object without its resourceVersion (the
/// store's mod revision is the resourceVersion).
/// [`to_stored`] in the version the kind is stored in.
pub fn to_stored_for(ri: &Served, obj: &Value) -> Bytes {
    match ri.storage_api_version() {
        Some(av) => {
            let mut o = obj.clone();
            o["apiVersion"] = json!(av);
            to_stored(&o)
        }
        None => to_stored(obj),
    }
}

pub fn to_stored(obj: &Value) -> Bytes {
    // Canonical layout: apiVersion, kind, metadata first, so `stamp_stored` finds the
    // object's own metadata as the first `"metadata":{` in the bytes.
    let ordered = obj.as_object().is_some_and(|m| {
        let mut keys = m.keys();
        keys.next().map(String::as_str) == Some("apiVersion")
            && keys.next().map(String::as_str) == Some("kind")
            && keys.next().map(String::as_str) == Some("metadata")
    });
    if ordered && meta::resource_version(obj).is_none() {
        return Bytes::from(serde_json::to_vec(obj).expect("JSON values serialize"));
    }
    let src = obj.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = src.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in src {
        if !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&Value::Object(out)).expect("JSON values serialize"))
}

/// The stored bytes with `metadata.resourceVersion` spliced in, without parsing them.
/// None if the bytes are not in `to_stored`'s canonical layout.
pub fn stamp_stored(value: &[u8], rev: Revision) -> Option<Vec<u8>> {
    const NEEDLE: &[u8] = b"\"metadata\":{";
    let at = value.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    // Only apiVersion and kind (plain strings) may precede the object's metadata.
    if value[..at].iter().filter(|b| **b == b'{').count() != 2 {
        return None;
    }
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(value.len() + rv.len() + 1);
    out.extend_from_slice(&value[..at]);
    out.extend_from_slice(rv.as_bytes());
    if value.get(at) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&value[at..]);
    Some(out)
}

/// Parses a stored object and stamps its resourceVersion.
pub fn from_bytes(value: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("corrupt stored object: {e}")))?;
    meta::set_resource_version(&mut v, rev);
    Ok(v)
}

pub fn from_stored(s: &Stored) -> Result<Value, ApiError> {
    from_bytes(&s.value, s.rev)
}

fn from_kv(kv: &KeyValue) -> Result<Value, ApiError> {
    from_bytes(&kv.value, kv.mod_revision)
}

pub fn store_error(e: StoreError, t: &Target) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(&t.ri.group, &t.ri.plural, t.name()),
        StoreError::AlreadyExists => ApiError::already_exists(&t.ri.group, &t.ri.plural, t.name()),
        StoreError::Conflict { .. } => ApiError::modified(&t.ri.group, &t.ri.plural, t.name()),
        StoreError::Compacted { compact_revision } => ApiError::expired(format!(
            "required revision has been compacted (compacted at {compact_revision})"
        )),
        // No Retry-After: a full or read-only disk is for an operator to fix, and
        // client-go would spend ten retries on it before saying so.
        StoreError::Unavailable(why) => ApiError::service_unavailable(format!(
            "storage is not taking writes, reads still work: {why}"
        )),
        other => ApiError::internal(format!("storage error: {other}")),
    }
}

/// Whether two versions of an object are equal apart from `metadata.resourceVersion`
/// (maps compare regardless of key order).
fn same_but_version(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter().all(|(k, va)| match (k.as_str(), b.get(k)) {
            ("metadata", Some(vb)) => match (va.as_object(), vb.as_object()) {
                (Some(ma), Some(mb)) => {
                    let rest = |m: &Map<String, Value>| {
                        m.len() - usize::from(m.contains_key("resourceVersion"))
                    };
                    rest(ma) == rest(mb)
                        && ma
                            .iter()
                            .filter(|(k, _)| k.as_str() != "resourceVersion")
                            .all(|(k, v)| mb.get(k) == Some(v))
                }
                _ => va == vb,
            },
            (_, Some(vb)) => va == vb,
            (_, None) => false,
        })
}

/// ObjectMeta's maps and lists are `omitempty` in Kubernetes: an emptied one (the last
/// annotation removed) is not kept as `{}`.
fn drop_empty_metadata(obj: &mut Value) {
    let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for k in [
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match m.get(k) {
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(k);
        }
    }
}

/// Kinds whose `metadata.generation` tracks spec changes.
fn tracks_generation(ri: &Served) -> bool {
    ri.custom.is_some()
        || matches!(
            (&*ri.group, &*ri.plural),
            ("apps", _)
                | ("batch", _)
                | ("autoscaling", _)
                | ("policy", _)
                | ("networking.k8s.io", "networkpolicies" | "ingresses")
                | ("", "replicationcontrollers" | "pods")
        )
}

/// Checks `apiVersion`/`kind` of a body against the endpoint and fills them when absent.
pub fn check_type_meta(ri: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let (api_version, kind) = meta::type_meta(obj);
    let (api_version, kind) = (api_version.map(str::to_string), kind.map(str::to_string));
    if let Some(k) = &kind
        && *k != ri.kind
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version
                .as_deref()
                .map(|a| format!("{a}, Kind={k}"))
                .unwrap_or_else(|| format!("Kind={k}")),
            format_args!("{}, Kind={}", ri.api_version(), ri.kind)
        )));
    }
    if let Some(av) = &api_version {
        let (g, _v) = split_api_version(av);
        if g != ri.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                ri.api_version()
            )));
        }
    }
    let o = obj.as_object_mut().expect("decoded bodies are objects");
    o.insert("apiVersion".into(), json!(ri.api_version()));
    o.insert("kind".into(), json!(ri.kind));
    Ok(())
}

fn check_namespace(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    if t.ri.namespaced() {
        let ns = t.namespace.as_deref().ok_or_else(|| {
            ApiError::bad_request("a namespace is required for namespaced resources")
        })?;
        match meta::namespace(obj) {
            Some(body_ns) if body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => meta::set(obj, "namespace", json!(ns)),
        }
    } else if meta::namespace(obj).is_some() {
        // Cluster-scoped objects carry no namespace.
        meta::remove(obj, "namespace");
    }
    Ok(())
}

/// Refuses a body that would not decode as its kind (a string where a map goes), in
/// the words kube-apiserver's decoder uses; nothing stored may fail a typed client.
pub fn check_decodes(ri: &Served, obj: &Value) -> Result<(), ApiError> {
    match crate::strategy::type_mismatch(ri, obj) {
        None => Ok(()),
        Some(m) => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {why}",
            kind = ri.kind,
            version = ri.version,
            why = m.decoder_message()
        ))),
    }
}

/// Strict/Warn field validation of a decoded body.
pub fn field_validation(
    ri: &Served,
    obj: &Value,
    raw: Option<&[u8]>,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = crate::strategy::unknown_fields(ri, obj)
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if let Some(raw) = raw {
        problems.extend(
            skiff_openapi::duplicate_fields(raw)
                .into_iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
    }
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = ri.kind,
            version = ri.version,
        ))),
        _ => Ok(problems),
    }
}

impl ApiServer {
    /// A consistent read of one object from the store.
    pub async fn get_object(&self, t: &Target) -> Result<Value, ApiError> {
        match self
            .store
            .get(&t.key())
            .await
            .map_err(|e| store_error(e, t))?
        {
            Some(kv) => from_kv(&kv),
            None => Err(ApiError::not_found(&t.ri.group, &t.ri.plural, t.name())),
        }
    }

    /// Reads an object of another kind (namespaces, services) by key.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Value>, ApiError> {
        match self
            .store
            .get(key)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            Some(kv) => Ok(Some(from_kv(&kv)?)),
            None => Ok(None),
        }
    }

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
            kinds::admit_priority(self, &mut obj, &name)?;
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
            Some(self.alloc_lock.lock().await)
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
            skiff_patch::record_update(
                None,
                &mut obj,
                mgr,
                &ri.api_version(),
                &now_rfc3339(),
                None,
            );
        }
        if opts.dry_run {
            return Ok(WriteResult {
                object: obj,
                code: 201,
                warnings,
                raw: None,
            });
        }
        let stored = to_stored_for(ri, &obj);
        let rev = self
            .store
            .create(&t.key(), stored.clone())
            .await
            .map_err(|e| store_error(e, &t))?;
        meta::set_resource_version(&mut obj, rev);
        self.settle_policy(ri, rev).await;
        kinds::after_create(self, ri, &obj).await;
        Ok(WriteResult {
            object: obj,
            code: 201,
            warnings,
            raw: (!ri.converts())
                .then(|| stamp_stored(&stored, rev))
                .flatten(),
        })
    }

    fn admission_request<'a>(
        &self,
        t: &'a Target,
        operation: Operation,
        object: Option<Value>,
        old: Option<&'a Value>,
        opts: &'a WriteOptions,
    ) -> crate::dynamic_admission::Request<'a> {
        crate::dynamic_admission::Request {
            t,
            operation,
            object,
            old,
            opts,
        }
    }

    async fn check_namespace_accepts(
        &self,
        ns: &str,
        ri: &ResourceInfo,
        name: &str,
    ) -> Result<(), ApiError> {
        let ns_ri = crate::registry::builtin("", "namespaces");
        let key = ns_ri.key(None, ns);
        // The watch cache answers almost always; a namespace created a moment ago may not
        // have reached it yet, so a miss is confirmed against the store.
        let nsobj = match self.cache.get(&key) {
            // Nearly always: a namespace not being deleted, told without parsing it.
            Some(s) if !kinds::contains(&s.value, b"deletionTimestamp") => return Ok(()),
            Some(s) => Some(from_stored(&s)?),
            None => self.get_raw(&key).await?,
        };
        match nsobj {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(nsobj) if meta::deletion_timestamp(&nsobj).is_some() => Err(ApiError::forbidden(
                &ri.group,
                &ri.plural,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

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
            let stored = to_stored_for(&t.ri, &new);
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
    fn prepare_update(
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
            skiff_patch::record_update(
                Some(current),
                &mut new,
                mgr,
                &ri.api_version(),
                &now_rfc3339(),
                t.sub.map(Subresource::name),
            );
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
            let guard = self.alloc_lock.lock().await;
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
                    kinds::allocate_on_update(self, &mut new)?;
                }
                deleted_after = meta::deletion_timestamp(&new).is_some()
                    && meta::finalizers(&new).is_empty()
                    && !kinds::waits_for_kubelet(&t.ri, &new);
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
    async fn write_existing_admitted<F>(
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
    async fn write_decided(
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

    /// DELETE of one object.
    pub async fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<WriteResult, ApiError> {
        let ri = &t.ri;
        kinds::admit_delete(ri, t.name())?;
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
            let plan = kinds::deletion_plan(ri, &current, opts);
            match plan {
                kinds::DeletionPlan::Immediate => {
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
                kinds::DeletionPlan::Mark(mut marked) => {
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
                        .update(&t.key(), to_stored_for(ri, &marked), kv.mod_revision)
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
                kinds::DeletionPlan::AlreadyPending => {
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

    /// Pod Security Admission: pods refused or warned about, workloads warned about,
    /// namespace labels checked. Returns the warnings.
    fn admit_pod_security(
        &self,
        t: &Target,
        obj: &Value,
        old: Option<&Value>,
        user: &UserInfo,
    ) -> Result<Vec<String>, ApiError> {
        let ns = t.namespace.as_deref().unwrap_or("");
        let who = user.username.as_str();
        match (&*t.ri.group, &*t.ri.plural, t.sub) {
            ("", "namespaces", None) => {
                crate::podsecurity::check_namespace(obj, old)?;
                // On updates the warnings come after the write (they read the pods).
                let created = old.is_none();
                Ok(crate::podsecurity::exempt_namespace_warning(self, obj)
                    .filter(|_| created)
                    .into_iter()
                    .collect())
            }
            ("", "pods", None) => {
                let name = meta::name(obj).unwrap_or_default();
                crate::podsecurity::admit_pod(self, who, (ns, name), obj, old)
            }
            (_, _, None) => Ok(crate::podsecurity::warn_workload(self, who, &t.ri, ns, obj)),
            _ => Ok(Vec::new()),
        }
    }

    /// Roles and bindings grant no more than their writer holds (or may escalate/bind).
    /// NodeRestriction on a write by a node.
    fn admit_node(
        &self,
        user: &UserInfo,
        t: &Target,
        operation: skiff_nodeauth::Operation,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let w = crate::nodeauth::Write {
            operation,
            group: &t.ri.group,
            resource: &t.ri.plural,
            subresource: t.sub.map(Subresource::name).unwrap_or(""),
            namespace: t.namespace.as_deref().unwrap_or(""),
            name: t.name(),
            object,
            old,
        };
        crate::nodeauth::admit(self, user, &w)
    }

    fn check_escalation(
        &self,
        t: &Target,
        obj: &Value,
        old: Option<&Value>,
        user: &UserInfo,
    ) -> Result<(), ApiError> {
        let grant = crate::rbac::Grant {
            ri: &t.ri,
            namespace: t.namespace.as_deref().unwrap_or(""),
            name: t.name(),
            obj,
            old,
        };
        crate::rbac::check_escalation(&self.rbac, self.authorizer.as_ref(), user, &grant)
    }

    /// A role or binding written is in force when the write returns: the policy follows
    /// the watch cache, so wait for the cache to have it (a script that binds a role and
    /// then acts on it must not race the cache).
    async fn settle_policy(&self, ri: &ResourceInfo, rev: Revision) {
        if ri.group == crate::rbac::GROUP {
            self.cache.wait_for(rev, Duration::from_secs(5)).await;
        }
    }

    /// Waits until the watch cache has everything the store acknowledged so far.
    pub async fn sync_cache(&self) -> Result<Revision, ApiError> {
        let rev = self
            .store
            .current_revision()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if !self.cache.wait_for(rev, Duration::from_secs(5)).await {
            return Err(ApiError::timeout(
                "Timeout: the watch cache did not catch up with storage",
            ));
        }
        Ok(rev)
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

/// `metav1.DeleteOptions`, from the body and the query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    /// Who deletes (admission checks it); None for the server's own deletions.
    pub user: Option<UserInfo>,
}

impl DeleteOptions {
    pub fn from_body(body: &Value) -> Result<Self, ApiError> {
        let mut o = DeleteOptions::default();
        if let Some(g) = body.get("gracePeriodSeconds") {
            o.grace_period_seconds =
                Some(g.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?);
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            o.set_propagation(p)?;
        }
        if let Some(orphan) = body.get("orphanDependents").and_then(Value::as_bool) {
            o.propagation_policy.get_or_insert_with(|| {
                if orphan {
                    "Orphan".into()
                } else {
                    "Background".into()
                }
            });
        }
        if let Some(pre) = body.get("preconditions") {
            o.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            o.precondition_rv = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(d) = body.get("dryRun").and_then(Value::as_array) {
            o.dry_run = dry_run_values(d.iter().filter_map(Value::as_str))?;
        }
        Ok(o)
    }

    pub fn set_propagation(&mut self, p: &str) -> Result<(), ApiError> {
        match p {
            "Orphan" | "Background" | "Foreground" => {
                self.propagation_policy = Some(p.to_string());
                Ok(())
            }
            other => Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                &[FieldError::not_supported(
                    "propagationPolicy",
                    json!(other),
                    &["Foreground", "Background", "Orphan"],
                )],
            )),
        }
    }
}

pub fn dry_run_values<'a>(vals: impl Iterator<Item = &'a str>) -> Result<bool, ApiError> {
    let mut dry = false;
    for v in vals {
        match v {
            "All" => dry = true,
            "" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                )));
            }
        }
    }
    Ok(dry)
}

pub fn parse_rv(s: &str) -> Result<Revision, ApiError> {
    s.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(new) != strip(old)
}

pub(crate) fn random_suffix() -> String {
    // Kubernetes' generateName alphabet: no vowels, no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Opaque continue token: the revision the first page was served at and the last key.
pub fn encode_continue(rev: Revision, last_key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: ensure the continue token came from a list response",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rev, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_matches_parsing() {
        for obj in [
            json!({"metadata": {"name": "a"}, "apiVersion": "v1", "kind": "ConfigMap", "data": {"metadata": "{x"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"template": {"metadata": {"name": "t"}}}}),
        ] {
            let stored = to_stored(&obj);
            let stamped: Value =
                serde_json::from_slice(&stamp_stored(&stored, 42).unwrap()).unwrap();
            assert_eq!(stamped, from_bytes(&stored, 42).unwrap());
            assert_eq!(stamped["metadata"]["resourceVersion"], "42");
        }
        assert!(stamp_stored(br#"{"spec":{"metadata":{}}}"#, 1).is_none());
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/registry/pods/default/a");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/pods/default/a".to_string())
        );
        assert_eq!(decode_continue("!!!").unwrap_err().code, 400);
        assert_eq!(decode_continue("e30").unwrap_err().code, 400);
    }

    #[test]
    fn spec_change_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let c = json!({"metadata": {}, "spec": {"replicas": 2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
    }

    #[test]
    fn type_meta_mismatch_is_rejected() {
        let ri = crate::registry::builtin("", "pods");
        let mut ok = json!({"metadata": {}});
        check_type_meta(&ri, &mut ok).unwrap();
        assert_eq!(ok["kind"], "Pod");
        let mut bad = json!({"apiVersion": "apps/v1", "kind": "Pod"});
        assert_eq!(check_type_meta(&ri, &mut bad).unwrap_err().code, 400);
        let mut bad2 = json!({"apiVersion": "v1", "kind": "Service"});
        assert_eq!(check_type_meta(&ri, &mut bad2).unwrap_err().code, 400);
    }
}
