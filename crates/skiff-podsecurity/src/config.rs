//! The admission configuration file (`--admission-control-config-file`): kube's
//! `AdmissionConfiguration` whose `PodSecurity` plugin holds a
//! `PodSecurityConfiguration` (inline, or in a file of its own) with the cluster's
//! default levels and the exempt users, runtime classes and namespaces.

use crate::{Level, LevelVersion, Policy, Version};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    pub usernames: Vec<String>,
    pub runtime_classes: Vec<String>,
    pub namespaces: Vec<String>,
}

/// The cluster-wide Pod Security settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub defaults: Policy,
    pub exemptions: Exemptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    plugins: Vec<Plugin>,
}

#[derive(Deserialize)]
struct Plugin {
    name: String,
    configuration: Option<serde_json::Value>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodSecurityConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    #[serde(default)]
    exemptions: RawExemptions,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExemptions {
    #[serde(default)]
    usernames: Vec<String>,
    #[serde(default)]
    runtime_classes: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
}

/// Where the PodSecurity plugin's configuration is: inline, or in a file (a path
/// relative to the admission configuration's directory).
pub enum Source {
    Inline(serde_json::Value),
    File(String),
    /// The file configures no PodSecurity plugin: the defaults apply.
    Absent,
}

/// Reads an `AdmissionConfiguration` and says where PodSecurity's settings are.
pub fn admission_configuration(text: &str) -> Result<Source, String> {
    let a: AdmissionConfiguration = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if a.kind != "AdmissionConfiguration" || !a.api_version.starts_with("apiserver.config.k8s.io/")
    {
        return Err(format!(
            "expected kind AdmissionConfiguration of apiserver.config.k8s.io, got {} {}",
            a.api_version, a.kind
        ));
    }
    let Some(p) = a.plugins.into_iter().find(|p| p.name == "PodSecurity") else {
        return Ok(Source::Absent);
    };
    match (p.configuration, p.path) {
        (Some(c), _) => Ok(Source::Inline(c)),
        (None, Some(path)) => Ok(Source::File(path)),
        (None, None) => Ok(Source::Absent),
    }
}

/// Reads a `PodSecurityConfiguration` (YAML or JSON, any of its versions), refusing
/// what kube-apiserver refuses, with the field named.
pub fn pod_security_configuration(v: serde_json::Value) -> Result<Config, String> {
    let c: PodSecurityConfiguration = serde_json::from_value(v).map_err(|e| e.to_string())?;
    if c.kind != "PodSecurityConfiguration"
        || !c
            .api_version
            .starts_with("pod-security.admission.config.k8s.io/")
    {
        return Err(format!(
            "expected kind PodSecurityConfiguration of pod-security.admission.config.k8s.io, got {} {}",
            c.api_version, c.kind
        ));
    }
    let mut defaults = Policy::default();
    for mode in ["enforce", "audit", "warn"] {
        let lv: &mut LevelVersion = match mode {
            "enforce" => &mut defaults.enforce,
            "audit" => &mut defaults.audit,
            _ => &mut defaults.warn,
        };
        if let Some(l) = c.defaults.get(mode).filter(|l| !l.is_empty()) {
            lv.level = Level::parse(l)
                .ok_or_else(|| format!("defaults.{mode}: Invalid value: {l:?}: must be one of privileged, baseline, restricted"))?;
        }
        if let Some(v) = c
            .defaults
            .get(&format!("{mode}-version"))
            .filter(|v| !v.is_empty())
        {
            lv.version = Version::parse(v).ok_or_else(|| {
                format!(
                    "defaults.{mode}-version: Invalid value: {v:?}: must be \"latest\" or \"v1.x\""
                )
            })?;
        }
    }
    if let Some(k) = c.defaults.keys().find(|k| {
        ![
            "enforce",
            "enforce-version",
            "audit",
            "audit-version",
            "warn",
            "warn-version",
        ]
        .contains(&k.as_str())
    }) {
        return Err(format!("defaults: unknown field {k:?}"));
    }
    let e = c.exemptions;
    for (field, list) in [
        ("usernames", &e.usernames),
        ("runtimeClasses", &e.runtime_classes),
        ("namespaces", &e.namespaces),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() {
                return Err(format!(
                    "exemptions.{field}[{i}]: Invalid value: \"\": must not be empty"
                ));
            }
            if list[..i].contains(v) {
                return Err(format!("exemptions.{field}[{i}]: Duplicate value: {v:?}"));
            }
        }
    }
    Ok(Config {
        defaults,
        exemptions: Exemptions {
            usernames: e.usernames,
            runtime_classes: e.runtime_classes,
            namespaces: e.namespaces,
        },
    })
}

pub fn parse_pod_security_configuration(text: &str) -> Result<Config, String> {
    let v: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    pod_security_configuration(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_defaults_and_exemptions_read() {
        let text = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: latest
      warn: restricted
    exemptions:
      usernames: [ci-bot]
      namespaces: [kube-system]
"#;
        let Source::Inline(v) = admission_configuration(text).unwrap() else {
            panic!("inline")
        };
        let c = pod_security_configuration(v).unwrap();
        assert_eq!(c.defaults.enforce.to_string(), "baseline:latest");
        assert_eq!(c.defaults.warn.to_string(), "restricted:latest");
        assert_eq!(c.defaults.audit.to_string(), "privileged:latest");
        assert_eq!(c.exemptions.namespaces, ["kube-system"]);
    }

    #[test]
    fn bad_settings_are_refused_with_the_field_named() {
        let bad = |d: &str| {
            parse_pod_security_configuration(&format!("apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\n{d}")).unwrap_err()
        };
        assert!(
            bad("defaults: {enforce: strict}")
                .starts_with("defaults.enforce: Invalid value: \"strict\"")
        );
        assert!(bad("defaults: {warn-version: v2}").starts_with("defaults.warn-version"));
        assert!(
            bad("exemptions: {namespaces: [a, a]}")
                .contains("exemptions.namespaces[1]: Duplicate value")
        );
        assert!(bad("exemptions: {usernames: [\"\"]}").contains("exemptions.usernames[0]"));
    }
}
