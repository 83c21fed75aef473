//! Roles and bindings as the authorizer reads them: bindings indexed by subject (user or
//! group, a ServiceAccount as its user name), so a decision looks at the requester's own
//! bindings only, never at every binding in the cluster. Kept current one object at a
//! time from the watch cache.

use crate::rules::{Request, Target, allows};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A subject as requests name it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    User(String),
    Group(String),
}

impl Who {
    /// None for a subject kind RBAC does not know (it matches nobody).
    fn of(s: &Subject, binding_namespace: &str) -> Option<Who> {
        match s.kind.as_str() {
            "User" => Some(Who::User(s.name.clone())),
            "Group" => Some(Who::Group(s.name.clone())),
            "ServiceAccount" => {
                // A RoleBinding's ServiceAccount without a namespace is in the binding's.
                let ns = s.namespace.as_deref().unwrap_or(binding_namespace);
                Some(Who::User(format!("system:serviceaccount:{ns}:{}", s.name)))
            }
            _ => None,
        }
    }
}

/// One binding as the index holds it: what it grants and how to say so.
#[derive(Debug, Clone, PartialEq)]
struct Grant {
    /// `ClusterRoleBinding "x"` or `RoleBinding "ns/x"`, for the allow reason.
    binding: Arc<str>,
    role: RoleRef,
    /// Where the role's rules are (`Policy::slots`), resolved when the binding was
    /// indexed: a decision indexes a vector instead of hashing role names. None for a
    /// role kind RBAC does not know (it grants nothing).
    slot: Option<usize>,
}

type BindingKey = (String, String);

/// A role by namespace ("" for ClusterRoles) and name.
type RoleKey = (String, String);

/// The grants of one scope (a namespace, or "" for cluster bindings) by subject; looked
/// up by `&str`, so a decision allocates nothing.
#[derive(Debug, Default)]
struct Scope {
    users: HashMap<String, Vec<Grant>>,
    groups: HashMap<String, Vec<Grant>>,
}

impl Scope {
    fn slot(&mut self, w: &Who) -> &mut Vec<Grant> {
        match w {
            Who::User(n) => self.users.entry(n.clone()).or_default(),
            Who::Group(n) => self.groups.entry(n.clone()).or_default(),
        }
    }

    /// Takes out the grants of `binding`, and the subject's entry if none remain.
    fn forget(&mut self, w: &Who, binding: &Arc<str>) {
        let (map, name) = match w {
            Who::User(n) => (&mut self.users, n),
            Who::Group(n) => (&mut self.groups, n),
        };
        if let Some(gs) = map.get_mut(name) {
            gs.retain(|g| !Arc::ptr_eq(&g.binding, binding));
            if gs.is_empty() {
                map.remove(name);
            }
        }
    }
}

/// Every Role, ClusterRole and binding of the cluster.
#[derive(Debug, Default)]
pub struct Policy {
    /// The rules of every role bound or stored; None while a bound role does not exist.
    slots: Vec<Option<Arc<[PolicyRule]>>>,
    slot_of: HashMap<RoleKey, usize>,
    /// Namespace ("" for cluster bindings) → its grants by subject.
    grants: HashMap<String, Scope>,
    /// Each binding's label and subjects, to take its grants out again.
    bound: HashMap<BindingKey, (Arc<str>, Vec<Who>)>,
}

/// What RBAC says of a request: it allows, or has no opinion (it never denies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    NoOpinion,
}

/// Where a binding in `namespace` finds `role`: a ClusterRole by name, a Role in the
/// binding's own namespace.
fn role_key(namespace: &str, role: &RoleRef) -> Option<RoleKey> {
    match role.kind.as_str() {
        "ClusterRole" => Some((String::new(), role.name.clone())),
        // Only a RoleBinding (in a namespace) may refer to a Role.
        "Role" if !namespace.is_empty() => Some((namespace.to_string(), role.name.clone())),
        _ => None,
    }
}

fn rules_of(rules: Option<Vec<PolicyRule>>) -> Arc<[PolicyRule]> {
    rules.unwrap_or_default().into()
}

impl Policy {
    fn slot(&mut self, key: RoleKey) -> usize {
        let next = self.slots.len();
        let i = *self.slot_of.entry(key).or_insert(next);
        if i == next {
            self.slots.push(None);
        }
        i
    }

    fn set_rules(&mut self, key: RoleKey, rules: Option<Arc<[PolicyRule]>>) {
        let i = self.slot(key);
        self.slots[i] = rules;
    }

    pub fn set_cluster_role(&mut self, r: ClusterRole) {
        let name = r.metadata.name.unwrap_or_default();
        self.set_rules((String::new(), name), Some(rules_of(r.rules)));
    }

    pub fn remove_cluster_role(&mut self, name: &str) {
        self.set_rules((String::new(), name.to_string()), None);
    }

    pub fn set_role(&mut self, r: Role) {
        let key = (
            r.metadata.namespace.unwrap_or_default(),
            r.metadata.name.unwrap_or_default(),
        );
        self.set_rules(key, Some(rules_of(r.rules)));
    }

    pub fn remove_role(&mut self, namespace: &str, name: &str) {
        self.set_rules((namespace.to_string(), name.to_string()), None);
    }

    pub fn set_cluster_role_binding(&mut self, b: ClusterRoleBinding) {
        let name = b.metadata.name.unwrap_or_default();
        let label: Arc<str> = format!("ClusterRoleBinding {name:?}").into();
        self.bind(String::new(), name, label, b.role_ref, b.subjects);
    }

    pub fn remove_cluster_role_binding(&mut self, name: &str) {
        self.unbind(&(String::new(), name.to_string()));
    }

    pub fn set_role_binding(&mut self, b: RoleBinding) {
        let ns = b.metadata.namespace.unwrap_or_default();
        let name = b.metadata.name.unwrap_or_default();
        let label: Arc<str> = format!("RoleBinding {:?}", format!("{ns}/{name}")).into();
        self.bind(ns, name, label, b.role_ref, b.subjects);
    }

    pub fn remove_role_binding(&mut self, namespace: &str, name: &str) {
        self.unbind(&(namespace.to_string(), name.to_string()));
    }

    fn bind(
        &mut self,
        ns: String,
        name: String,
        label: Arc<str>,
        role: RoleRef,
        subjects: Option<Vec<Subject>>,
    ) {
        let key = (ns, name);
        self.unbind(&key);
        let who: Vec<Who> = subjects
            .unwrap_or_default()
            .iter()
            .filter_map(|s| Who::of(s, &key.0))
            .collect();
        let slot = role_key(&key.0, &role).map(|k| self.slot(k));
        let scope = self.grants.entry(key.0.clone()).or_default();
        for w in &who {
            scope.slot(w).push(Grant {
                binding: label.clone(),
                role: role.clone(),
                slot,
            });
        }
        self.bound.insert(key, (label, who));
    }

    fn unbind(&mut self, key: &BindingKey) {
        let Some((label, who)) = self.bound.remove(key) else {
            return;
        };
        if let Some(scope) = self.grants.get_mut(&key.0) {
            for w in &who {
                scope.forget(w, &label);
            }
            if scope.users.is_empty() && scope.groups.is_empty() {
                self.grants.remove(&key.0);
            }
        }
    }

    /// The rules a binding in `namespace` ("" for cluster bindings) grants through
    /// `role`; None when the role does not exist.
    pub fn role_rules(&self, namespace: &str, role: &RoleRef) -> Option<&Arc<[PolicyRule]>> {
        let i = *self.slot_of.get(&role_key(namespace, role)?)?;
        self.slots[i].as_ref()
    }

    fn grant_rules(&self, g: &Grant) -> Option<&Arc<[PolicyRule]>> {
        self.slots[g.slot?].as_ref()
    }

    /// The grants of the requester: cluster-wide ones, then those of `namespace`.
    fn grants_of<'a>(
        &'a self,
        user: &'a str,
        groups: &'a [String],
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Grant)> + 'a {
        let scopes = std::iter::once("").chain((!namespace.is_empty()).then_some(namespace));
        scopes
            .filter_map(|ns| Some((ns, self.grants.get(ns)?)))
            .flat_map(move |(ns, scope)| {
                let mine = scope.users.get(user).into_iter().flatten();
                let groups = groups
                    .iter()
                    .filter_map(|g| scope.groups.get(g.as_str()))
                    .flatten();
                mine.chain(groups).map(move |g| (ns, g))
            })
    }

    pub fn authorize(&self, req: &Request<'_>) -> Decision {
        let namespace = match &req.target {
            Target::Resource { namespace, .. } => *namespace,
            Target::Path(_) => "",
        };
        for (_, grant) in self.grants_of(req.user, req.groups, namespace) {
            let Some(rules) = self.grant_rules(grant) else {
                continue;
            };
            if rules.iter().any(|r| allows(r, req)) {
                return Decision::Allow(format!(
                    "RBAC: allowed by {} of {} {:?} to {}",
                    grant.binding, grant.role.kind, grant.role.name, req.user
                ));
            }
        }
        Decision::NoOpinion
    }

    /// Every rule that applies to the requester in `namespace` (cluster-wide ones
    /// included): what `kubectl auth can-i --list` shows.
    pub fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Vec<PolicyRule> {
        self.grants_of(user, groups, namespace)
            .filter_map(|(_, g)| self.grant_rules(g))
            .flat_map(|rs| rs.iter().cloned())
            .collect()
    }
}
