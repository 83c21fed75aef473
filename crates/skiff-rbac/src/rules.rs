//! Whether one policy rule covers one request, as kube-apiserver's RBAC matches them
//! (`rbac/v1` helpers `VerbMatches`, `APIGroupMatches`, `ResourceMatches`,
//! `ResourceNameMatches`, `NonResourceURLMatches`).

use k8s_openapi::api::rbac::v1::PolicyRule;

/// `*` in verbs, groups, resources and non-resource URLs.
pub const ALL: &str = "*";

/// What a request asks, as an authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    pub target: Target<'a>,
}

/// A resource (possibly a subresource, possibly one named object) or a URL path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    Resource {
        group: &'a str,
        resource: &'a str,
        subresource: &'a str,
        /// Empty for cluster-scoped kinds and for requests across namespaces.
        namespace: &'a str,
        /// Empty for lists, watches and creates without a name.
        name: &'a str,
    },
    Path(&'a str),
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == ALL || v == want)
}

/// Whether `rule` allows `req`.
pub fn allows(rule: &PolicyRule, req: &Request<'_>) -> bool {
    if !has(&rule.verbs, req.verb) {
        return false;
    }
    match &req.target {
        Target::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            has(rule.api_groups.as_deref().unwrap_or_default(), group)
                && resource_matches(rule, resource, subresource)
                && name_matches(rule, name)
        }
        Target::Path(path) => rule
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|u| url_matches(u, path)),
    }
}

/// `pods`, `pods/log`, `*`, and `*/scale` (any resource's scale subresource).
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| {
            if r == ALL {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            let combined = r
                .strip_prefix(resource)
                .and_then(|rest| rest.strip_prefix('/'));
            combined == Some(subresource) || r.strip_prefix("*/") == Some(subresource)
        })
}

/// No names in the rule: any object. Otherwise only those; a request without a name
/// (list, create) is not covered by a rule that names objects.
fn name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

/// `*`, the path itself, or a prefix ending in `*` (`/healthz/*`).
fn url_matches(rule_url: &str, path: &str) -> bool {
    if rule_url == ALL || rule_url == path {
        return true;
    }
    rule_url
        .strip_suffix('*')
        .is_some_and(|prefix| path.starts_with(prefix))
}

/// kube-apiserver's 403 message for a request no authorizer allowed:
/// `User "x" cannot list resource "pods" in API group "" in the namespace "y"`.
pub fn forbidden_message(req: &Request<'_>) -> String {
    let user = req.user;
    let verb = req.verb;
    match &req.target {
        Target::Path(path) => format!("User {user:?} cannot {verb} path {path:?}"),
        Target::Resource {
            group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let what = if subresource.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}/{subresource}")
            };
            if namespace.is_empty() {
                format!(
                    "User {user:?} cannot {verb} resource {what:?} in API group {group:?} at the cluster scope"
                )
            } else {
                format!(
                    "User {user:?} cannot {verb} resource {what:?} in API group {group:?} in the namespace {namespace:?}"
                )
            }
        }
    }
}
