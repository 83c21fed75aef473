//! Running webhooks: mutating ones in order with reinvocation, validating ones in
//! parallel (kube's mutating and validating dispatchers).

use crate::attributes::Attributes;
use crate::call::{CallError, call};
use crate::client::Resolver;
use crate::error::{self, AdmissionError};
use crate::matching::{Equivalents, Matched, matches};
use crate::webhook::{FailurePolicy, ReinvocationPolicy, Webhook};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const MUTATION_PREFIX: &str = "mutation.webhook.admission.k8s.io/";
const PATCH_PREFIX: &str = "patch.webhook.admission.k8s.io/";
const MUTATION_FAILED_OPEN: &str = "failed-open.mutation.webhook.admission.k8s.io/";
const VALIDATING_FAILED_OPEN: &str = "failed-open.validating.webhook.admission.k8s.io/";

/// What admission added to the response and the audit event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `Warning:` headers, in order.
    pub warnings: Vec<String>,
    /// Audit annotations (`<webhook>/<key>`, `mutation.webhook.admission.k8s.io/...`).
    /// `patch.webhook.admission.k8s.io/...` ones belong in audit events of level
    /// Request or above only.
    pub audit_annotations: BTreeMap<String, String>,
    /// The object after mutation (`mutate` only; `None` when there is none).
    pub object: Option<Value>,
}

impl Outcome {
    fn absorb(&mut self, hook: &Webhook, r: &crate::review::Response) {
        self.warnings.extend(r.warnings.iter().cloned());
        for (k, v) in &r.audit_annotations {
            self.audit_annotations
                .entry(format!("{}/{k}", hook.name))
                .or_insert_with(|| v.clone());
        }
    }
}

/// What matching needs besides the hook and the request.
#[derive(Clone, Copy)]
pub struct MatchContext<'a> {
    /// The labels of the request's namespace (`None`: it does not exist).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    pub equivalent: Equivalents<'a>,
}

/// Calls admission webhooks.
#[derive(Clone)]
pub struct Dispatcher {
    transport: Arc<crate::client::Transport>,
}

/// kube orders webhooks by configuration name, then their order in it.
fn ordered(hooks: &[Webhook]) -> Vec<&Webhook> {
    let mut v: Vec<&Webhook> = hooks.iter().collect();
    v.sort_by(|a, b| a.configuration.cmp(&b.configuration));
    v
}

struct Round {
    /// Reinvocable webhooks called so far (indexes into the ordered list).
    invoked: BTreeSet<usize>,
    /// Webhooks to call again in round 1.
    reinvoke: BTreeSet<usize>,
    changed: bool,
}

impl Dispatcher {
    pub fn new(resolver: Arc<dyn Resolver>) -> Self {
        Dispatcher {
            transport: Arc::new(crate::client::Transport::new(resolver)),
        }
    }

    /// A CRD conversion webhook client sharing this dispatcher's resolver and kept
    /// connections.
    pub fn converter(&self) -> crate::Converter {
        crate::conversion::Converter::with_transport(self.transport.clone())
    }

    /// Runs the mutating webhooks (the admit phase), applying their JSON patches to
    /// `a.object`; if any changed the object, webhooks with reinvocationPolicy
    /// IfNeeded called before that change run once more (round 1). Exempt kinds
    /// ([`crate::exempt`]) pass untouched.
    pub async fn mutate(
        &self,
        hooks: &[Webhook],
        a: &mut Attributes,
        ctx: MatchContext<'_>,
    ) -> Result<Outcome, AdmissionError> {
        let mut out = Outcome::default();
        if crate::exempt(&a.kind) {
            out.object = a.object.clone();
            return Ok(out);
        }
        let hooks = ordered(hooks);
        let mut st = Round {
            invoked: BTreeSet::new(),
            reinvoke: BTreeSet::new(),
            changed: false,
        };
        self.mutate_round(&hooks, a, ctx, 0, &mut st, &mut out)
            .await?;
        if st.changed {
            self.mutate_round(&hooks, a, ctx, 1, &mut st, &mut out)
                .await?;
        }
        out.object = a.object.clone();
        Ok(out)
    }

    async fn mutate_round(
        &self,
        hooks: &[&Webhook],
        a: &mut Attributes,
        ctx: MatchContext<'_>,
        round: usize,
        st: &mut Round,
        out: &mut Outcome,
    ) -> Result<(), AdmissionError> {
        for (i, hook) in hooks.iter().enumerate() {
            let Some(m) = matches(hook, a, ctx.namespace_labels, ctx.equivalent)? else {
                continue;
            };
            if round == 1 && !st.reinvoke.contains(&i) {
                continue;
            }
            let (changed, res) = self.mutate_one(hook, a, &m, (round, i), out).await;
            if changed {
                st.reinvoke.clone_from(&st.invoked);
                st.changed = true;
            }
            if hook.reinvocation_policy == ReinvocationPolicy::IfNeeded {
                st.invoked.insert(i);
            }
            match res {
                Ok(()) => {}
                Err(CallError::Calling(why)) if hook.failure_policy == FailurePolicy::Ignore => {
                    tracing::warn!(webhook = %hook.name, "failed calling webhook, failing open: {why}");
                    let key = format!("{MUTATION_FAILED_OPEN}round_{round}_index_{i}");
                    out.audit_annotations.insert(key, hook.name.clone());
                }
                Err(CallError::Calling(why)) => return Err(error::call_failed(&hook.name, &why)),
                Err(CallError::Final(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// One mutating call; whether it changed the object, and how it went. Records
    /// the mutation (and patch) audit annotations.
    async fn mutate_one(
        &self,
        hook: &Webhook,
        a: &mut Attributes,
        m: &Matched,
        (round, i): (usize, usize),
        out: &mut Outcome,
    ) -> (bool, Result<(), CallError>) {
        let suffix = format!("round_{round}_index_{i}");
        let res = self.patch_with(hook, a, m, out).await;
        let changed = matches!(res, Ok(Some((_, true))));
        let mutation =
            json!({"configuration": hook.configuration, "webhook": hook.name, "mutated": changed});
        out.audit_annotations
            .insert(format!("{MUTATION_PREFIX}{suffix}"), mutation.to_string());
        match res {
            Ok(Some((patch, changed))) => {
                let value = json!({"configuration": hook.configuration, "webhook": hook.name, "patch": patch, "patchType": "JSONPatch"});
                out.audit_annotations
                    .insert(format!("{PATCH_PREFIX}{suffix}"), value.to_string());
                (changed, Ok(()))
            }
            Ok(None) => (false, Ok(())),
            Err(e) => (false, Err(e)),
        }
    }

    /// Calls `hook` and applies its patch to `a.object`: the patch applied, and whether
    /// it changed the object.
    async fn patch_with(
        &self,
        hook: &Webhook,
        a: &mut Attributes,
        m: &Matched,
        out: &mut Outcome,
    ) -> Result<Option<(Value, bool)>, CallError> {
        let r = call(&self.transport, hook, a, m, a.object.as_ref()).await?;
        out.absorb(hook, &r);
        if !r.allowed {
            return Err(CallError::Final(error::webhook_denied(
                a,
                &hook.name,
                r.status.as_ref(),
            )));
        }
        let Some((bytes, ty)) = r.patch else {
            return Ok(None);
        };
        let patch: Value = serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Calling(format!(
                "received undecodable patch in webhook response: {e}"
            ))
        })?;
        if patch.as_array().is_some_and(Vec::is_empty) {
            return Ok(None);
        }
        apply_patch(hook, a, patch, &ty)
    }

    /// Runs the validating webhooks (the validate phase) in parallel; the first
    /// refusal to arrive is returned, after all have answered.
    pub async fn validate(
        &self,
        hooks: &[Webhook],
        a: &Attributes,
        ctx: MatchContext<'_>,
    ) -> Result<Outcome, AdmissionError> {
        let mut relevant = Vec::new();
        if crate::exempt(&a.kind) {
            return Ok(Outcome::default());
        }
        for hook in ordered(hooks) {
            if let Some(m) = matches(hook, a, ctx.namespace_labels, ctx.equivalent)? {
                relevant.push((hook, m));
            }
        }
        let mut calls: FuturesUnordered<_> = relevant
            .iter()
            .enumerate()
            .map(|(i, (hook, m))| async move {
                let res = call(&self.transport, hook, a, m, a.object.as_ref()).await;
                (i, *hook, res)
            })
            .collect();
        let mut out = Outcome::default();
        let mut first_err = None;
        while let Some((i, hook, res)) = calls.next().await {
            if let Err(e) = validated(hook, a, i, res, &mut out) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// One validating answer folded into `out`.
fn validated(
    hook: &Webhook,
    a: &Attributes,
    i: usize,
    res: Result<crate::review::Response, CallError>,
    out: &mut Outcome,
) -> Result<(), AdmissionError> {
    match res {
        Ok(r) => {
            out.absorb(hook, &r);
            if r.allowed {
                Ok(())
            } else {
                Err(error::webhook_denied(a, &hook.name, r.status.as_ref()))
            }
        }
        Err(CallError::Calling(why)) if hook.failure_policy == FailurePolicy::Ignore => {
            tracing::warn!(webhook = %hook.name, "failed calling webhook, failing open: {why}");
            let key = format!("{VALIDATING_FAILED_OPEN}round_0_index_{i}");
            out.audit_annotations.insert(key, hook.name.clone());
            Ok(())
        }
        Err(CallError::Calling(why)) => Err(error::call_failed(&hook.name, &why)),
        Err(CallError::Final(e)) => Err(e),
    }
}

/// Applies a JSON patch to `a.object`: the patch, and whether it changed the object.
fn apply_patch(
    hook: &Webhook,
    a: &mut Attributes,
    patch: Value,
    ty: &str,
) -> Result<Option<(Value, bool)>, CallError> {
    let Some(obj) = a.object.as_mut() else {
        return Err(CallError::Final(AdmissionError::Rejected(error::internal(
            &format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                hook.name
            ),
        ))));
    };
    if ty != "JSONPatch" {
        return Err(CallError::Calling(format!("unsupported patch type {ty:?}")));
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        CallError::Calling(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    let mut next = obj.clone();
    json_patch::patch(&mut next, &ops)
        .map_err(|e| CallError::Final(AdmissionError::Rejected(error::internal(&e.to_string()))))?;
    let changed = next != *obj;
    *obj = next;
    Ok(Some((patch, changed)))
}
