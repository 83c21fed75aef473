//! The Pod Security Standards as Pod Security Admission applies them: the
//! `pod-security.kubernetes.io/*` namespace labels read into a policy (enforce, audit,
//! warn, each a level and a version), every check of the baseline and restricted
//! levels (`checks`), and the messages kube-apiserver answers with. The rules are
//! those of Kubernetes 1.33, which skiff serves: `latest` and any newer version mean
//! them. Pure.

pub mod checks;
pub mod config;

use checks::{PodView, Violation};
use k8s_openapi::api::core::v1::PodSpec;
use std::collections::BTreeMap;

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// The newest rules known: `latest` and later versions evaluate as this minor.
pub const LATEST_MINOR: u32 = 33;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

/// `latest`, or `v1.N` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Latest,
    Minor(u32),
}

impl Version {
    pub(crate) fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let n = s.strip_prefix("v1.")?;
        let ok = !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'));
        ok.then(|| n.parse().ok().map(Version::Minor)).flatten()
    }

    /// Whether the rules of this version include those of 1.`minor`.
    pub fn at_least(self, minor: u32) -> bool {
        match self {
            Version::Latest => LATEST_MINOR >= minor,
            Version::Minor(m) => m.min(LATEST_MINOR) >= minor,
        }
    }

    fn text(self) -> String {
        match self {
            Version::Latest => "latest".into(),
            Version::Minor(m) => format!("v1.{m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.name(), self.version.text())
    }
}

const PRIVILEGED: LevelVersion = LevelVersion {
    level: Level::Privileged,
    version: Version::Latest,
};

/// A namespace's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enforce: PRIVILEGED,
            audit: PRIVILEGED,
            warn: PRIVILEGED,
        }
    }
}

/// A bad label: the field (`metadata.labels[<key>]`), its value, what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    pub field: String,
    pub value: String,
    pub detail: &'static str,
}

impl Policy {
    pub fn is_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    /// The policy of a namespace from its labels, over `defaults`; bad labels fall back
    /// (enforce to restricted, audit and warn to privileged, versions to latest) and are
    /// reported.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: Policy,
    ) -> (Policy, Vec<LabelError>) {
        let mut p = defaults;
        let mut errs = Vec::new();
        let mut read = |mode: &str, lv: &mut LevelVersion, fallback: Level| {
            let key = format!("{LABEL_PREFIX}{mode}");
            if let Some(v) = labels.get(&key) {
                lv.level = Level::parse(v).unwrap_or_else(|| {
                    errs.push(LabelError {
                        field: format!("metadata.labels[{key}]"),
                        value: v.clone(),
                        detail: "must be one of privileged, baseline, restricted",
                    });
                    fallback
                });
            }
            let key = format!("{key}-version");
            if let Some(v) = labels.get(&key) {
                lv.version = Version::parse(v).unwrap_or_else(|| {
                    errs.push(LabelError {
                        field: format!("metadata.labels[{key}]"),
                        value: v.clone(),
                        detail: "must be \"latest\" or \"v1.x\"",
                    });
                    Version::Latest
                });
            }
        };
        read("enforce", &mut p.enforce, Level::Restricted);
        read("audit", &mut p.audit, Level::Privileged);
        read("warn", &mut p.warn, Level::Privileged);
        // A namespace that only enforces also warns at that level (workloads get told).
        let enforce_set = labels.contains_key(&format!("{LABEL_PREFIX}enforce"));
        let enforce_ok = enforce_set && !errs.iter().any(|e| e.field.ends_with("enforce]"));
        if !labels.contains_key(&format!("{LABEL_PREFIX}warn"))
            && enforce_ok
            && p.enforce.level > p.warn.level
        {
            p.warn.level = p.enforce.level;
            if !labels.contains_key(&format!("{LABEL_PREFIX}warn-version")) {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errs)
    }
}

/// What a pod's metadata and spec violate at `lv` (none at privileged).
pub fn evaluate(
    lv: LevelVersion,
    annotations: &BTreeMap<String, String>,
    spec: &PodSpec,
) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let view = PodView { annotations, spec };
    checks::checks(lv.level == Level::Restricted, lv.version)
        .into_iter()
        .filter_map(|c| c(&view, lv.version))
        .collect()
}

/// `reason (detail), reason (detail)`.
pub fn details(v: &[Violation]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|x| {
            if x.detail.is_empty() {
                x.reason.clone()
            } else {
                format!("{} ({})", x.reason, x.detail)
            }
        })
        .collect();
    parts.join(", ")
}

/// `reason, reason` (the namespace dry run's summary).
pub fn reasons(v: &[Violation]) -> String {
    v.iter()
        .map(|x| x.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The enforce refusal after `pods "x" is forbidden: `.
pub fn violates(lv: LevelVersion, v: &[Violation]) -> String {
    format!("violates PodSecurity \"{lv}\": {}", details(v))
}

/// The warning (and audit annotation) text.
pub fn would_violate(lv: LevelVersion, v: &[Violation]) -> String {
    format!("would violate PodSecurity \"{lv}\": {}", details(v))
}

#[cfg(test)]
mod tests;
