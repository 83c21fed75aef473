//! An audit policy (`audit.k8s.io/v1` `Policy`) and the level it gives a request: the
//! first rule that matches decides, no match is `None`, as kube-apiserver's policy
//! checker decides. Pure.

use crate::auth::Attributes;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    pub omit_stages: Option<Vec<Stage>>,
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

impl Policy {
    /// Reads a policy file's YAML (or JSON), refusing what kube-apiserver refuses.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let p: Policy = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if p.kind != "Policy" || !p.api_version.starts_with("audit.k8s.io/") {
            return Err(format!(
                "expected kind Policy of audit.k8s.io, got {} {}",
                p.api_version, p.kind
            ));
        }
        for (i, r) in p.rules.iter().enumerate() {
            if !r.non_resource_urls.is_empty()
                && (!r.resources.is_empty() || !r.namespaces.is_empty())
            {
                return Err(format!(
                    "rules[{i}]: rules cannot apply to both regular resources and non-resource URLs"
                ));
            }
        }
        Ok(p)
    }

    pub fn decide(&self, a: &Attributes) -> Decision {
        match self.rules.iter().find(|r| matches(r, a)) {
            Some(r) => {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.iter().flatten().copied());
                Decision {
                    level: r.level,
                    omit_stages: omit,
                    omit_managed_fields: r.omit_managed_fields.unwrap_or(self.omit_managed_fields),
                }
            }
            None => Decision {
                level: Level::None,
                omit_stages: Vec::new(),
                omit_managed_fields: false,
            },
        }
    }
}

fn matches(r: &Rule, a: &Attributes) -> bool {
    let any = |list: &[String], want: &str| list.is_empty() || list.iter().any(|x| x == want);
    if !any(&r.users, &a.user.username) || !any(&r.verbs, &a.verb) {
        return false;
    }
    if !r.user_groups.is_empty() && !a.user.groups.iter().any(|g| r.user_groups.contains(g)) {
        return false;
    }
    match &a.path {
        Some(path) => {
            r.resources.is_empty()
                && r.namespaces.is_empty()
                && (r.non_resource_urls.is_empty()
                    || r.non_resource_urls.iter().any(|u| url_matches(u, path)))
        }
        None => {
            r.non_resource_urls.is_empty()
                && any(&r.namespaces, &a.namespace)
                && (r.resources.is_empty() || r.resources.iter().any(|g| resource_matches(g, a)))
        }
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// kube's `ruleMatchesResource`: `pods`, `pods/log`, `*`, `*/status`, `pods/*`, limited
/// to `resourceNames` when given.
fn resource_matches(g: &GroupResources, a: &Attributes) -> bool {
    if g.group != a.group {
        return false;
    }
    if !g.resource_names.is_empty() && !g.resource_names.contains(&a.name) {
        return false;
    }
    if g.resources.is_empty() {
        return true;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    g.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
            || r.strip_suffix("/*") == Some(a.resource.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;

    fn req(user: &str, groups: &[&str], verb: &str, res: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            user: UserInfo {
                username: user.into(),
                uid: String::new(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            verb: verb.into(),
            group: String::new(),
            resource: res.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: "x".into(),
            path: None,
            field_selector: None,
        }
    }

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/exec", "*/status"]
  omitStages: [ResponseStarted]
- level: Request
  userGroups: ["system:authenticated"]
  namespaces: ["team"]
- level: Metadata
"#;

    #[test]
    fn the_first_matching_rule_decides() {
        let p = Policy::parse(POLICY).unwrap();
        let level = |a: &Attributes| p.decide(a).level;
        assert_eq!(
            level(&req("system:kube-proxy", &[], "watch", "pods", "", "")),
            Level::None
        );
        assert_eq!(
            level(&req("system:kube-proxy", &[], "list", "pods", "", "")),
            Level::Metadata
        );
        assert_eq!(
            level(&req(
                "u",
                &["system:authenticated"],
                "get",
                "secrets",
                "",
                "team"
            )),
            Level::Metadata
        );
        assert_eq!(
            level(&req("u", &[], "create", "pods", "exec", "a")),
            Level::RequestResponse
        );
        assert_eq!(
            level(&req("u", &[], "update", "nodes", "status", "")),
            Level::RequestResponse
        );
        assert_eq!(
            level(&req(
                "u",
                &["system:authenticated"],
                "create",
                "pods",
                "",
                "team"
            )),
            Level::Request
        );
        assert_eq!(
            level(&req(
                "u",
                &["system:authenticated"],
                "create",
                "pods",
                "",
                "dev"
            )),
            Level::Metadata
        );
        let mut health = req("u", &[], "get", "", "", "");
        health.path = Some("/healthz/ping".into());
        assert_eq!(level(&health), Level::None);
        health.path = Some("/metrics".into());
        assert_eq!(level(&health), Level::Metadata);
        let d = p.decide(&req("u", &[], "create", "pods", "exec", "a"));
        assert_eq!(
            d.omit_stages,
            [Stage::RequestReceived, Stage::ResponseStarted]
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(Policy::parse("apiVersion: v1\nkind: ConfigMap\n").is_err());
        let both = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/x]\n  namespaces: [a]\n";
        assert!(Policy::parse(both).unwrap_err().contains("both"));
        let typo = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n";
        assert!(Policy::parse(typo).is_err());
    }
}
