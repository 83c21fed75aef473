//! Kubernetes dynamic admission as kube-apiserver does it: admission webhooks
//! (admissionregistration.k8s.io/v1 Mutating/ValidatingWebhookConfiguration) and
//! ValidatingAdmissionPolicy with its bindings.
//!
//! # Surface
//!
//! - [`parse_configuration`]`(obj, mutating) -> Result<Vec<Webhook>, String>` and
//!   [`validate_configuration`]`(obj, mutating) -> Vec<FieldError>` (the 422 kube gives).
//! - [`matches`]`(hook, attributes, namespace_labels, equivalent)`: kube's
//!   `ShouldCallHook` (namespace/object selectors, rules with scope, subresources and
//!   matchPolicy Equivalent, matchConditions in CEL).
//! - [`Dispatcher`]: [`Dispatcher::mutate`] (admit phase: in order, JSON patches,
//!   reinvocation) and [`Dispatcher::validate`] (validate phase: in parallel), calling
//!   webhooks over HTTPS; Services are reached through a [`Resolver`].
//! - [`parse_policy`], [`validate_policy`], [`parse_binding`] and
//!   [`evaluate_policies`]: ValidatingAdmissionPolicy with its bindings (validate phase),
//!   params read through a [`ParamSource`].
//! - [`exempt`]`(kind)`: the configuration kinds no webhook or policy sees.
//! - [`Converter`]: CRD conversion webhooks ([`ConversionWebhook`], read from a CRD's
//!   `spec.conversion.webhook`): [`Converter::convert_object`] for one object,
//!   [`Converter::convert`] for a list's items, through the same HTTPS client; failures
//!   are [`ConversionError`]s, whose [`ConversionError::status`] is kube's 500.
//! - Errors: [`AdmissionError`], whose [`AdmissionError::status`] is the `Status` the
//!   API server answers with, worded as kube words it.
//!
//! CEL is cel-rust (see `celenv` for what of kube's CEL environment is covered); the
//! `authorizer` variable is not provided.
//!
//! # Where each call belongs (kube-apiserver's admission chain)
//!
//! 1. Mutating admission: in-tree mutating plugins, then [`Dispatcher::mutate`] (the
//!    MutatingAdmissionWebhook plugin; its round 1 reinvocation runs inside the same
//!    call, so in-tree plugins are not re-run), then apply `Outcome::object`.
//! 2. Schema validation of the (mutated) object.
//! 3. Validating admission: in-tree validating plugins, [`evaluate_policies`] (the
//!    ValidatingAdmissionPolicy plugin), then [`Dispatcher::validate`].
//!
//! Callers pass: the labels (webhooks) or the Namespace object (policies) of the
//! request's namespace, `None` when it does not exist (a 404 once rules match);
//! `equivalent`, the other group/versions serving the same resource with their kinds
//! (e.g. `apps/v1 deployments` → `extensions/v1beta1 deployments`), or nothing; for
//! a Namespace request, `namespace` in [`Attributes`] is its own name. Warnings go to
//! `Warning: 299 - "<text>"` headers, audit annotations to the audit event.

mod attributes;
mod call;
mod celenv;
mod client;
mod conversion;
mod converted;
mod dispatch;
mod error;
mod matching;
mod policy;
mod policy_eval;
mod review;
mod rules;
mod selector;
mod validate;
mod webhook;

pub use attributes::{Attributes, Gvk, Gvr, Operation, UserInfo, exempt};
pub use client::{KeptConnections, Resolver, dial_error, tls_error};
pub use conversion::{ConversionWebhook, Converter};
pub use dispatch::{Dispatcher, MatchContext, Outcome};
pub use error::{AdmissionError, ConversionError};
pub use matching::{Equivalents, Matched, matches};
pub use policy::{
    AuditAnnotation, Binding, MatchResources, ParamKind, ParamRef, Policy, Validation,
    ValidationAction, Variable, parse_binding, parse_policy, validate_policy,
};
pub use policy_eval::{ParamSource, PolicyContext, PolicyOutcome, evaluate_policies};
pub use rules::Rule;
pub use selector::Selector;
pub use skiff_types::{ApiError, FieldError, StatusReason};
pub use validate::validate_configuration;
pub use webhook::{
    ClientConfig, FailurePolicy, MatchCondition, MatchPolicy, ReinvocationPolicy, SideEffects,
    Webhook, parse_configuration,
};
