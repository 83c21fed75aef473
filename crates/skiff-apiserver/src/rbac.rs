//! RBAC in the API server: the policy, kept from the watch cache as it applies each
//! change (so a role written is in force before the write returns); the RBAC
//! authorizer on it; the escalation checks on writes of roles and bindings (made
//! whatever the authorization modes, as kube-apiserver's RBAC storage makes them); and
//! the rules a `SelfSubjectRulesReview` lists.

use crate::auth::{Attributes, Authorizer, Decision, PRIVILEGED_GROUP, UserInfo};
use crate::cache::{EventType, Observer, Stored};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_rbac::escalation::{escalation_message, full_authority, uncovered};
use skiff_rbac::{Policy, policy};
use skiff_types::ApiError;
use skiff_types::registry::ResourceInfo;

pub const GROUP: &str = "rbac.authorization.k8s.io";

#[derive(Clone, Copy)]
enum Kind {
    ClusterRole,
    Role,
    ClusterRoleBinding,
    RoleBinding,
}

const KINDS: [(&str, Kind); 4] = [
    ("clusterroles", Kind::ClusterRole),
    ("roles", Kind::Role),
    ("clusterrolebindings", Kind::ClusterRoleBinding),
    ("rolebindings", Kind::RoleBinding),
];

/// The cluster's RBAC policy, and the authorizer that reads it.
pub struct Rbac {
    policy: RwLock<Policy>,
    /// Store prefix of each RBAC kind.
    prefixes: Vec<(String, Kind)>,
}

impl Default for Rbac {
    fn default() -> Self {
        let prefixes = KINDS
            .iter()
            .map(|(plural, k)| {
                let ri = crate::registry::builtin(GROUP, plural);
                (ri.prefix(None), *k)
            })
            .collect();
        Rbac {
            policy: RwLock::new(Policy::default()),
            prefixes,
        }
    }
}

fn parse<T: DeserializeOwned>(obj: &Stored) -> Option<T> {
    serde_json::from_slice(&obj.value)
        .inspect_err(
            |e| tracing::warn!(key = %obj.key, error = %e, "RBAC object left out of the policy"),
        )
        .ok()
}

/// Namespace and name of a stored object from its key (`<prefix>[<ns>/]<name>`).
fn key_parts<'a>(key: &'a str, prefix: &str) -> (&'a str, &'a str) {
    let rest = &key[prefix.len()..];
    rest.split_once('/').unwrap_or(("", rest))
}

impl Rbac {
    pub fn prefixes(&self) -> Vec<String> {
        self.prefixes.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Every rule granted to `user` in `namespace` (cluster-wide ones included).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        self.policy
            .read()
            .rules_for(&user.username, &user.groups, namespace)
    }

    fn set(&self, kind: Kind, obj: &Stored) {
        let mut p = self.policy.write();
        match kind {
            Kind::ClusterRole => parse(obj).map(|r: ClusterRole| p.set_cluster_role(r)),
            Kind::Role => parse(obj).map(|r: Role| p.set_role(r)),
            Kind::ClusterRoleBinding => {
                parse(obj).map(|b: ClusterRoleBinding| p.set_cluster_role_binding(b))
            }
            Kind::RoleBinding => parse(obj).map(|b: RoleBinding| p.set_role_binding(b)),
        };
    }

    fn remove(&self, kind: Kind, ns: &str, name: &str) {
        let mut p = self.policy.write();
        match kind {
            Kind::ClusterRole => p.remove_cluster_role(name),
            Kind::Role => p.remove_role(ns, name),
            Kind::ClusterRoleBinding => p.remove_cluster_role_binding(name),
            Kind::RoleBinding => p.remove_role_binding(ns, name),
        }
    }
}

impl Observer for Rbac {
    fn observe(&self, kind: EventType, obj: &Stored) {
        let Some((prefix, k)) = self
            .prefixes
            .iter()
            .find(|(p, _)| obj.key.starts_with(p.as_str()))
        else {
            return;
        };
        match kind {
            EventType::Deleted => {
                let (ns, name) = key_parts(&obj.key, prefix);
                self.remove(*k, ns, name);
            }
            EventType::Added | EventType::Modified => self.set(*k, obj),
        }
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        match self.policy.read().authorize(&attrs.rbac_request()) {
            policy::Decision::Allow(why) => Decision::Allow(why),
            policy::Decision::NoOpinion => Decision::NoOpinion(String::new()),
        }
    }
}

/// A write of a role or binding, as the escalation check sees it.
pub struct Grant<'a> {
    pub ri: &'a ResourceInfo,
    pub namespace: &'a str,
    pub name: &'a str,
    pub obj: &'a Value,
    /// The stored object on an update.
    pub old: Option<&'a Value>,
}

/// Only what the garbage collector changes (owners, finalizers): never an escalation.
fn only_gc_fields(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(new) == strip(old)
}

/// Refuses a role or binding that grants more than its writer holds, unless the writer
/// may `escalate` (roles) or `bind` (the binding's role), as kube-apiserver does.
pub fn check_escalation(
    rbac: &Rbac,
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    g: &Grant<'_>,
) -> Result<(), ApiError> {
    if g.ri.group != GROUP
        || user.groups.iter().any(|x| x == PRIVILEGED_GROUP)
        || g.old.is_some_and(|old| only_gc_fields(g.obj, old))
    {
        return Ok(());
    }
    let forbid = |why: String| ApiError::forbidden(GROUP, &g.ri.plural, g.name, &why);
    let allowed = |verb: &str, plural: &str, name: &str| {
        let attrs = Attributes {
            user: user.clone(),
            verb: verb.into(),
            group: GROUP.into(),
            resource: plural.into(),
            subresource: String::new(),
            namespace: g.namespace.into(),
            name: name.into(),
            path: None,
            field_selector: None,
        };
        matches!(authorizer.authorize(&attrs), Decision::Allow(_))
    };
    let held = || rbac.rules_for(user, g.namespace);
    let refuse_missing = |wanted: &[PolicyRule]| {
        let missing = uncovered(&held(), wanted);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(forbid(escalation_message(
                &user.username,
                &user.groups,
                missing,
            )))
        }
    };
    match &*g.ri.plural {
        "roles" | "clusterroles" => {
            if allowed("escalate", &g.ri.plural, g.name) {
                return Ok(());
            }
            let rules: Vec<PolicyRule> = field(g.obj, "rules").unwrap_or_default();
            refuse_missing(&rules)?;
            let aggregates = |v: &Value| v.get("aggregationRule").is_some_and(|a| !a.is_null());
            if (aggregates(g.obj) || g.old.is_some_and(aggregates))
                && !uncovered(&held(), &full_authority()).is_empty()
            {
                return Err(forbid(
                    "must have cluster-admin privileges to use the aggregationRule".into(),
                ));
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let Some(role) = field::<RoleRef>(g.obj, "roleRef") else {
                return Ok(()); // validation names the missing roleRef
            };
            let role_plural = if role.kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed("bind", role_plural, &role.name) {
                return Ok(());
            }
            let rules = rbac.policy.read().role_rules(g.namespace, &role).cloned();
            match rules {
                Some(rules) => refuse_missing(&rules),
                None => Err(forbid(format!(
                    "{role_plural}.{GROUP} {:?} not found",
                    role.name
                ))),
            }
        }
        _ => Ok(()),
    }
}

fn field<T: DeserializeOwned>(obj: &Value, name: &str) -> Option<T> {
    obj.get(name)
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// `status` of a SelfSubjectRulesReview: the requester's rules in `namespace`.
pub fn rules_review(rbac: &Rbac, user: &UserInfo, namespace: &str) -> Value {
    let rules = rbac.rules_for(user, namespace);
    let (urls, resources): (Vec<&PolicyRule>, Vec<&PolicyRule>) = rules
        .iter()
        .partition(|r| r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()));
    let resource_rules: Vec<Value> = resources
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "verbs": r.verbs,
                "apiGroups": r.api_groups.clone().unwrap_or_default(),
                "resources": r.resources.clone().unwrap_or_default(),
            });
            if let Some(n) = r.resource_names.as_ref().filter(|n| !n.is_empty()) {
                v["resourceNames"] = serde_json::json!(n);
            }
            v
        })
        .collect();
    let non_resource_rules: Vec<Value> = urls
        .iter()
        .map(|r| serde_json::json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    serde_json::json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    })
}
