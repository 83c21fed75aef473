//! Mutating/ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1) read into
//! [`Webhook`]s, with v1 defaults applied and matchConditions compiled.

use crate::celenv::{self, Expr};
use crate::rules::Rule;
use crate::selector::Selector;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// What to do when a call fails (or a matchCondition errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// How rules match requests made through other group/versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchPolicy {
    Exact,
    Equivalent,
}

/// `sideEffects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideEffects {
    None,
    NoneOnDryRun,
    /// `Some`, `Unknown` (v1beta1 values): refused for dry-run requests.
    Other(String),
}

/// `reinvocationPolicy` (mutating webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReinvocationPolicy {
    Never,
    IfNeeded,
}

/// Where the webhook is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientConfig {
    Url(String),
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
    },
}

/// One matchCondition, compiled.
#[derive(Debug, Clone)]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
    pub(crate) expr: Expr,
}

/// One webhook of a configuration, parsed and its matchConditions compiled.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    /// The configuration's `metadata.name`.
    pub configuration: String,
    pub mutating: bool,
    pub client: ClientConfig,
    /// The PEM CA bundle (decoded from `caBundle`); empty means system roots.
    pub ca_bundle: Vec<u8>,
    pub rules: Vec<Rule>,
    pub failure_policy: FailurePolicy,
    pub match_policy: MatchPolicy,
    pub namespace_selector: Selector,
    pub object_selector: Selector,
    pub side_effects: Option<SideEffects>,
    pub timeout_seconds: u32,
    pub admission_review_versions: Vec<String>,
    pub reinvocation_policy: ReinvocationPolicy,
    pub match_conditions: Vec<MatchCondition>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub metadata: RawMeta,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawMeta {
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawWebhook {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub client_config: RawClientConfig,
    #[serde(default)]
    pub rules: Vec<Value>,
    pub failure_policy: Option<String>,
    pub match_policy: Option<String>,
    pub namespace_selector: Option<Value>,
    pub object_selector: Option<Value>,
    pub side_effects: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub admission_review_versions: Option<Vec<String>>,
    pub reinvocation_policy: Option<String>,
    #[serde(default)]
    pub match_conditions: Vec<RawMatchCondition>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawClientConfig {
    pub url: Option<String>,
    pub service: Option<RawService>,
    pub ca_bundle: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawService {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    pub path: Option<String>,
    pub port: Option<i64>,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct RawMatchCondition {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub expression: String,
}

/// Reads a Mutating (`mutating`) or ValidatingWebhookConfiguration into its webhooks,
/// in order, with v1 defaults (failurePolicy Fail, matchPolicy Equivalent, selectors
/// `{}`, timeoutSeconds 10, reinvocationPolicy Never, service port 443).
pub fn parse_configuration(obj: &Value, mutating: bool) -> Result<Vec<Webhook>, String> {
    let raw: RawConfig = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    raw.webhooks
        .into_iter()
        .map(|w| parse_webhook(w, &raw.metadata.name, mutating))
        .collect()
}

fn parse_webhook(w: RawWebhook, config: &str, mutating: bool) -> Result<Webhook, String> {
    let ctx = |e: String| format!("webhook {:?}: {e}", w.name);
    let rules = w
        .rules
        .iter()
        .map(|r| serde_json::from_value(r.clone()).map_err(|e| ctx(e.to_string())))
        .collect::<Result<Vec<Rule>, _>>()?;
    let match_conditions = w
        .match_conditions
        .iter()
        .map(|c| {
            Ok(MatchCondition {
                name: c.name.clone(),
                expression: c.expression.clone(),
                expr: celenv::compile(&c.expression).map_err(ctx)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Webhook {
        client: client_config(&w.client_config).map_err(ctx)?,
        ca_bundle: ca_bundle(&w.client_config).map_err(ctx)?,
        rules,
        failure_policy: match w.failure_policy.as_deref() {
            Some("Ignore") => FailurePolicy::Ignore,
            _ => FailurePolicy::Fail,
        },
        match_policy: match w.match_policy.as_deref() {
            Some("Exact") => MatchPolicy::Exact,
            _ => MatchPolicy::Equivalent,
        },
        namespace_selector: Selector::parse(w.namespace_selector.as_ref()).map_err(ctx)?,
        object_selector: Selector::parse(w.object_selector.as_ref()).map_err(ctx)?,
        side_effects: w.side_effects.as_deref().map(|s| match s {
            "None" => SideEffects::None,
            "NoneOnDryRun" => SideEffects::NoneOnDryRun,
            other => SideEffects::Other(other.to_string()),
        }),
        timeout_seconds: w.timeout_seconds.unwrap_or(10).clamp(1, 30) as u32,
        admission_review_versions: w.admission_review_versions.clone().unwrap_or_default(),
        reinvocation_policy: match w.reinvocation_policy.as_deref() {
            Some("IfNeeded") if mutating => ReinvocationPolicy::IfNeeded,
            _ => ReinvocationPolicy::Never,
        },
        match_conditions,
        configuration: config.to_string(),
        mutating,
        name: w.name,
    })
}

pub(crate) fn client_config(c: &RawClientConfig) -> Result<ClientConfig, String> {
    match (&c.url, &c.service) {
        (Some(u), None) => Ok(ClientConfig::Url(u.clone())),
        (None, Some(s)) => Ok(ClientConfig::Service {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            path: s.path.clone().unwrap_or_default(),
            port: u16::try_from(s.port.unwrap_or(443)).map_err(|e| e.to_string())?,
        }),
        _ => Err("exactly one of url or service is required".into()),
    }
}

pub(crate) fn ca_bundle(c: &RawClientConfig) -> Result<Vec<u8>, String> {
    match c.ca_bundle.as_deref() {
        None | Some("") => Ok(Vec::new()),
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("caBundle: {e}")),
    }
}
