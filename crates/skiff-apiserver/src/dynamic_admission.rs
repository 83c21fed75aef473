//! Dynamic admission in the object pipeline: Mutating/ValidatingWebhookConfigurations
//! and ValidatingAdmissionPolicies with their bindings, kept parsed by a watch-cache
//! observer and run through `skiff_admission` at kube-apiserver's points — mutating
//! webhooks after the built-in mutating plugins, then (after the kind's own validation)
//! policies and validating webhooks.

use crate::cache::{EventType, Observer, Stored, WatchCache};
use crate::registry::{Served, Snapshot, builtin};
use crate::request::{Target, WriteOptions};
use serde_json::{Value, json};
use skiff_admission::{
    Attributes, Binding, Dispatcher, Gvk, Gvr, MatchContext, Operation, ParamKind, ParamSource,
    Policy, PolicyContext, Selector, UserInfo, Webhook,
};
use skiff_types::{ApiError, meta};
use std::collections::BTreeMap;
use std::sync::Arc;

const GROUP: &str = "admissionregistration.k8s.io";
const KINDS: [&str; 4] = [
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
];

/// What was parsed of one configuration object.
enum Parsed {
    Hooks { mutating: bool, hooks: Vec<Webhook> },
    Policy(Box<Policy>),
    Binding(Box<Binding>),
}

/// The parsed configurations, by store key, and the webhook caller.
pub struct DynamicAdmission {
    parsed: parking_lot::RwLock<BTreeMap<String, Arc<Parsed>>>,
    dispatcher: Dispatcher,
    cache: Arc<WatchCache>,
}

impl DynamicAdmission {
    pub fn new(cache: Arc<WatchCache>) -> Self {
        DynamicAdmission {
            parsed: Default::default(),
            dispatcher: Dispatcher::new(Arc::new(crate::services::CacheResolver(cache.clone()))),
            cache,
        }
    }

    /// A conversion-webhook client on the same connections and Service resolution.
    pub fn converter(&self) -> skiff_admission::Converter {
        self.dispatcher.converter()
    }

    pub fn prefixes(&self) -> Vec<String> {
        KINDS
            .iter()
            .map(|p| builtin(GROUP, p).prefix(None))
            .collect()
    }

    /// Whether any webhook or policy is configured (none: the pipeline skips this).
    pub fn active(&self) -> bool {
        !self.parsed.read().is_empty()
    }

    fn hooks(&self, want_mutating: bool) -> Vec<Webhook> {
        let parsed = self.parsed.read();
        let mut out = Vec::new();
        for p in parsed.values() {
            if let Parsed::Hooks { mutating, hooks } = p.as_ref()
                && *mutating == want_mutating
            {
                out.extend(hooks.iter().cloned());
            }
        }
        out
    }

    fn policies(&self) -> (Vec<Policy>, Vec<Binding>) {
        let parsed = self.parsed.read();
        let (mut ps, mut bs) = (Vec::new(), Vec::new());
        for p in parsed.values() {
            match p.as_ref() {
                Parsed::Policy(p) => ps.push((**p).clone()),
                Parsed::Binding(b) => bs.push((**b).clone()),
                Parsed::Hooks { .. } => {}
            }
        }
        (ps, bs)
    }
}

impl Observer for DynamicAdmission {
    fn observe(&self, kind: EventType, obj: &Stored) {
        let mut parsed = self.parsed.write();
        if kind == EventType::Deleted {
            parsed.remove(&obj.key);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&obj.value) else {
            return;
        };
        let plural = obj
            .key
            .trim_start_matches("/registry/")
            .split('/')
            .next()
            .unwrap_or("");
        let p = match plural {
            "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => {
                let mutating = plural.starts_with("mutating");
                skiff_admission::parse_configuration(&v, mutating)
                    .map(|hooks| Parsed::Hooks { mutating, hooks })
                    .map_err(|e| e.to_string())
            }
            "validatingadmissionpolicies" => skiff_admission::parse_policy(&v)
                .map(|p| Parsed::Policy(Box::new(p)))
                .map_err(|e| format!("{e:?}")),
            _ => skiff_admission::parse_binding(&v).map(|b| Parsed::Binding(Box::new(b))),
        };
        match p {
            Ok(p) => {
                parsed.insert(obj.key.clone(), Arc::new(p));
            }
            Err(e) => {
                tracing::warn!(key = %obj.key, error = %e, "admission configuration not usable");
                parsed.remove(&obj.key);
            }
        }
    }
}

/// One request as admission sees it.
pub struct Request<'a> {
    pub t: &'a Target,
    pub operation: Operation,
    pub object: Option<Value>,
    pub old: Option<&'a Value>,
    pub opts: &'a WriteOptions,
}

fn attributes(r: &Request) -> Attributes {
    let ri = &r.t.ri;
    let (kind, sub) = match r.t.sub {
        None => (Gvk::new(&ri.group, &ri.version, &ri.kind), String::new()),
        Some(s) => {
            let (g, v, k) = s
                .response_kind()
                .unwrap_or((&ri.group, &ri.version, &ri.kind));
            (Gvk::new(g, v, k), s.name().to_string())
        }
    };
    let options_kind = match r.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let name = r
        .object
        .as_ref()
        .or(r.old)
        .and_then(meta::name)
        .unwrap_or(r.t.name())
        .to_string();
    let namespace = match (&*ri.group, &*ri.plural) {
        ("", "namespaces") => name.clone(),
        _ => r.t.namespace.clone().unwrap_or_default(),
    };
    Attributes {
        kind,
        resource: Gvr::new(&ri.group, &ri.version, &ri.plural),
        sub_resource: sub,
        name,
        namespace,
        operation: r.operation,
        object: r.object.clone(),
        old_object: r.old.cloned(),
        options: Some(json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1"})),
        dry_run: r.opts.dry_run,
        user: UserInfo {
            username: r.opts.user.username.clone(),
            uid: r.opts.user.uid.clone(),
            groups: r.opts.user.groups.clone(),
            extra: BTreeMap::new(),
        },
    }
}

/// The other versions of a custom resource serve the same objects (matchPolicy
/// Equivalent); built-in kinds have one version each here.
fn equivalents(served: &Snapshot, r: &Gvr) -> Vec<(Gvr, Gvk)> {
    served
        .all()
        .filter(|s| {
            s.custom.is_some()
                && s.group == r.group
                && s.plural == r.resource
                && s.version != r.version
        })
        .map(|s| {
            (
                Gvr::new(&s.group, &s.version, &s.plural),
                Gvk::new(&s.group, &s.version, &s.kind),
            )
        })
        .collect()
}

impl DynamicAdmission {
    fn namespace_object(&self, ns: &str) -> Option<Value> {
        let key = builtin("", "namespaces").key(None, ns);
        let s = self.cache.get(&key)?;
        serde_json::from_slice(&s.value).ok()
    }

    /// Mutating webhooks; returns the object as they left it and their warnings.
    pub async fn mutate(
        &self,
        served: &Snapshot,
        r: Request<'_>,
    ) -> Result<(Option<Value>, Vec<String>), ApiError> {
        let hooks = self.hooks(true);
        if hooks.is_empty() {
            return Ok((r.object, Vec::new()));
        }
        let mut a = attributes(&r);
        let ns = self.namespace_object(&a.namespace);
        let labels = ns
            .as_ref()
            .map(|n| meta::string_map(n.pointer("/metadata/labels")));
        let eq = |g: &Gvr| equivalents(served, g);
        let ctx = MatchContext {
            namespace_labels: labels.as_ref(),
            equivalent: &eq,
        };
        let out = self
            .dispatcher
            .mutate(&hooks, &mut a, ctx)
            .await
            .map_err(|e| e.status())?;
        Ok((out.object.or(r.object), out.warnings))
    }

    /// ValidatingAdmissionPolicies, then validating webhooks; their warnings.
    pub async fn validate(
        &self,
        served: &Snapshot,
        r: Request<'_>,
    ) -> Result<Vec<String>, ApiError> {
        let a = attributes(&r);
        let ns = self.namespace_object(&a.namespace);
        let eq = |g: &Gvr| equivalents(served, g);
        let (policies, bindings) = self.policies();
        let mut warnings = Vec::new();
        if !policies.is_empty() {
            let params = Params {
                served,
                cache: &self.cache,
            };
            let ctx = PolicyContext {
                namespace: ns.as_ref(),
                equivalent: &eq,
                params: &params,
            };
            let out = skiff_admission::evaluate_policies(&policies, &bindings, &a, ctx)
                .map_err(|e| e.status())?;
            warnings.extend(out.warnings);
        }
        let hooks = self.hooks(false);
        if !hooks.is_empty() {
            let labels = ns
                .as_ref()
                .map(|n| meta::string_map(n.pointer("/metadata/labels")));
            let ctx = MatchContext {
                namespace_labels: labels.as_ref(),
                equivalent: &eq,
            };
            let out = self
                .dispatcher
                .validate(&hooks, &a, ctx)
                .await
                .map_err(|e| e.status())?;
            warnings.extend(out.warnings);
        }
        Ok(warnings)
    }
}

/// Policy params read from the watch cache.
struct Params<'a> {
    served: &'a Snapshot,
    cache: &'a WatchCache,
}

impl Params<'_> {
    fn kind(&self, k: &ParamKind) -> Option<Arc<Served>> {
        let (group, version) = skiff_types::registry::split_api_version(&k.api_version);
        self.served
            .all()
            .find(|r| r.group == group && r.version == version && r.kind == k.kind)
            .cloned()
    }
}

impl ParamSource for Params<'_> {
    fn namespaced(&self, kind: &ParamKind) -> Option<bool> {
        self.kind(kind).map(|r| r.namespaced())
    }

    fn get(&self, kind: &ParamKind, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        let r = self
            .kind(kind)
            .ok_or_else(|| format!("{} is not served", kind.kind))?;
        let ns = (!namespace.is_empty()).then_some(namespace);
        Ok(self
            .cache
            .get(&r.key(ns, name))
            .and_then(|s| serde_json::from_slice(&s.value).ok()))
    }

    fn list(
        &self,
        kind: &ParamKind,
        namespace: &str,
        sel: &Selector,
    ) -> Result<Vec<Value>, String> {
        let r = self
            .kind(kind)
            .ok_or_else(|| format!("{} is not served", kind.kind))?;
        let ns = (!namespace.is_empty()).then_some(namespace);
        let (items, _, _) = self.cache.list(&r.prefix(ns), None, None, &|_| true);
        Ok(items
            .iter()
            .filter_map(|s| serde_json::from_slice::<Value>(&s.value).ok())
            .filter(|o| sel.matches(&meta::string_map(o.pointer("/metadata/labels"))))
            .collect())
    }
}
