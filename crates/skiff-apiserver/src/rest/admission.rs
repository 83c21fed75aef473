//! The built-in admission plugins the store calls around a write (NamespaceLifecycle,
//! RBAC escalation, NodeRestriction, Pod Security) and the request dynamic admission
//! (webhooks, policies) sees.

use crate::auth::UserInfo;
use crate::codec::from_stored;
use crate::request::{Target, WriteOptions};
use crate::state::ApiServer;
use serde_json::Value;
use skiff_admission::Operation;
use skiff_store::Revision;
use skiff_types::ResourceInfo;
use skiff_types::Subresource;
use skiff_types::{ApiError, meta};
use std::time::Duration;

impl ApiServer {
    pub(super) fn admission_request<'a>(
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

    pub(super) async fn check_namespace_accepts(
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
            Some(s) if !crate::request::contains(&s.value, b"deletionTimestamp") => return Ok(()),
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

    /// Pod Security Admission: pods refused or warned about, workloads warned about,
    /// namespace labels checked. Returns the warnings.
    pub(super) fn admit_pod_security(
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
    pub(super) fn admit_node(
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

    pub(super) fn check_escalation(
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
    pub(super) async fn settle_policy(&self, ri: &ResourceInfo, rev: Revision) {
        if ri.group == crate::rbac::GROUP {
            self.cache.wait_for(rev, Duration::from_secs(5)).await;
        }
    }
}
