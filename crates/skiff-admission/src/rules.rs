//! admissionregistration.k8s.io/v1 `RuleWithOperations`, matched as kube's
//! predicates/rules matcher does (scope, operation, group, version, resource/subresource).

use crate::attributes::{Attributes, Gvr};
use serde::Deserialize;

/// One rule of a webhook or of a policy's matchConstraints.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub api_versions: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (the default).
    #[serde(default)]
    pub scope: Option<String>,
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

fn split_resource(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap_or((s, ""))
}

impl Rule {
    /// Whether the rule matches `a` with its resource taken as `resource`.
    pub(crate) fn matches(&self, a: &Attributes, resource: &Gvr) -> bool {
        self.scope_matches(a, resource)
            && self.operation_matches(a)
            && exact_or_wildcard(&self.api_groups, &resource.group)
            && exact_or_wildcard(&self.api_versions, &resource.version)
            && self.resource_matches(&resource.resource, &a.sub_resource)
    }

    fn scope_matches(&self, a: &Attributes, resource: &Gvr) -> bool {
        match self.scope.as_deref() {
            None | Some("*") => true,
            Some("Namespaced") => !resource.is_namespaces() && !a.namespace.is_empty(),
            Some("Cluster") => resource.is_namespaces() || a.namespace.is_empty(),
            Some(_) => false,
        }
    }

    fn operation_matches(&self, a: &Attributes) -> bool {
        self.operations
            .iter()
            .any(|o| o == "*" || o == a.operation.as_str())
    }

    fn resource_matches(&self, res: &str, sub: &str) -> bool {
        self.resources.iter().any(|r| {
            let (r, s) = split_resource(r);
            (r == "*" || r == res) && (s == "*" || s == sub)
        })
    }

    /// resourceNames (policies only): empty matches every name.
    pub(crate) fn name_matches(&self, a: &Attributes) -> bool {
        self.resource_names.is_empty() || self.resource_names.contains(&a.name)
    }
}
