//! Escalation prevention: whether the rules a user holds cover the rules they are
//! granting (a Role they write, or the role a binding they write refers to), as
//! kube-apiserver's `validation.Covers` and `ConfirmNoEscalation` decide and word it.

use crate::rules::ALL;
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::collections::BTreeSet;

fn single(verb: &str) -> Vec<String> {
    vec![verb.to_string()]
}

/// One rule per verb × group × resource × name (or per verb × URL): the smallest
/// grants, each of which the owner must hold.
fn atoms(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            out.push(PolicyRule {
                verbs: single(verb),
                non_resource_urls: Some(single(url)),
                ..PolicyRule::default()
            });
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let names: Vec<Option<&String>> = match rule.resource_names.as_deref() {
                    None | Some([]) => vec![None],
                    Some(ns) => ns.iter().map(Some).collect(),
                };
                for name in names {
                    out.push(PolicyRule {
                        verbs: single(verb),
                        api_groups: Some(single(group)),
                        resources: Some(single(resource)),
                        resource_names: name.map(|n| single(n)),
                        non_resource_urls: None,
                    });
                }
            }
        }
    }
    out
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == ALL || v == want)
}

/// `*`, the resource itself, or `*/sub` for a subresource `x/sub`.
fn has_resource(owner: &[String], want: &str) -> bool {
    owner.iter().any(|r| {
        r == ALL
            || r == want
            || r.strip_prefix("*/")
                .is_some_and(|sub| want.split_once('/').is_some_and(|(_, s)| s == sub))
    })
}

fn has_url(owner: &[String], want: &str) -> bool {
    owner.iter().any(|u| {
        u == ALL
            || u == want
            || u.strip_suffix('*')
                .is_some_and(|prefix| want.starts_with(prefix))
    })
}

/// Whether `owner` covers the single grant `atom`.
fn covers_atom(owner: &PolicyRule, atom: &PolicyRule) -> bool {
    if !has(&owner.verbs, &atom.verbs[0]) {
        return false;
    }
    if let Some([url]) = atom.non_resource_urls.as_deref() {
        return has_url(owner.non_resource_urls.as_deref().unwrap_or_default(), url);
    }
    let (Some([group]), Some([resource])) = (atom.api_groups.as_deref(), atom.resources.as_deref())
    else {
        return false;
    };
    let names_ok = match owner.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => atom
            .resource_names
            .as_deref()
            .is_some_and(|n| names.contains(&n[0])),
    };
    has(owner.api_groups.as_deref().unwrap_or_default(), group)
        && has_resource(owner.resources.as_deref().unwrap_or_default(), resource)
        && names_ok
}

/// The grants of `servant` that no rule of `owner` covers (empty: no escalation).
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(atoms)
        .filter(|a| !owner.iter().any(|o| covers_atom(o, a)))
        .collect()
}

/// Atoms that differ only in verb become one rule again, verbs in the order met.
fn compact(atoms: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for a in atoms {
        let same = out.iter_mut().find(|r| {
            r.api_groups == a.api_groups
                && r.resources == a.resources
                && r.resource_names == a.resource_names
                && r.non_resource_urls == a.non_resource_urls
        });
        match same {
            Some(r) if !r.verbs.contains(&a.verbs[0]) => r.verbs.push(a.verbs[0].clone()),
            Some(_) => {}
            None => out.push(a),
        }
    }
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`.
pub fn compact_string(r: &PolicyRule) -> String {
    let parts: Vec<String> = [
        ("APIGroups", r.api_groups.as_deref()),
        ("Resources", r.resources.as_deref()),
        ("NonResourceURLs", r.non_resource_urls.as_deref()),
        ("ResourceNames", r.resource_names.as_deref()),
        ("Verbs", Some(r.verbs.as_slice())),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.filter(|v| !v.is_empty())
            .map(|v| format!("{k}:{}", go_quoted(v)))
    })
    .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The reason a write that would grant `missing` is refused (after the
/// `<resource> "<name>" is forbidden: ` prefix).
pub fn escalation_message(user: &str, groups: &[String], missing: Vec<PolicyRule>) -> String {
    let lines: BTreeSet<String> = compact(missing).iter().map(compact_string).collect();
    format!(
        "user {user:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quoted(groups),
        lines.into_iter().collect::<Vec<_>>().join("\n")
    )
}

/// Full authority: what setting an aggregation rule requires.
pub fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            verbs: single(ALL),
            api_groups: Some(single(ALL)),
            resources: Some(single(ALL)),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: single(ALL),
            non_resource_urls: Some(single(ALL)),
            ..PolicyRule::default()
        },
    ]
}
