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
//! - [`exempt`]`(kind)`: the configuration kinds no webhook or policy sees.
//! - Errors: [`AdmissionError`], whose [`AdmissionError::status`] is the `Status` the
//!   API server answers with, worded as kube words it.
//!
//! CEL is cel-rust (see `celenv` for what of kube's CEL environment is covered); the
//! `authorizer` variable is not provided.

mod attributes;
mod call;
mod celenv;
mod client;
mod dispatch;
mod error;
mod matching;
mod review;
mod rules;
mod selector;
mod validate;
mod webhook;

pub use attributes::{Attributes, Gvk, Gvr, Operation, UserInfo, exempt};
pub use client::Resolver;
pub use dispatch::{Dispatcher, MatchContext, Outcome};
pub use error::AdmissionError;
pub use matching::{Equivalents, Matched, matches};
pub use rules::Rule;
pub use selector::Selector;
pub use skiff_types::{ApiError, FieldError, StatusReason};
pub use validate::validate_configuration;
pub use webhook::{
    ClientConfig, FailurePolicy, MatchCondition, MatchPolicy, ReinvocationPolicy, SideEffects,
    Webhook, parse_configuration,
};
