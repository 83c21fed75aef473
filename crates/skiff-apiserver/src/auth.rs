//! Authentication results and the authorizer chain. Authentication itself happens at
//! the connection (client certificates, verified by rustls against the cluster CA) and in
//! the request (bearer tokens, through [`skiff_pki::TokenAuthenticator`]s); anonymous
//! requests and impersonation are in `identity.rs`.

use std::sync::Arc;

pub use skiff_pki::UserInfo;

/// The group whose members every authorizer chain allows (kube-apiserver's
/// `system:masters`, checked before the configured modes).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// What a request wants to do, as Kubernetes' authorizers see it.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Non-resource requests (`/healthz`, `/version`, ...) carry their path.
    pub path: Option<String>,
    /// A list's or watch's `fieldSelector` (the Node authorizer reads `metadata.name=`).
    pub field_selector: Option<String>,
}

impl Attributes {
    /// A request for a path outside the resource API.
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Attributes {
        Attributes {
            user,
            verb: verb.to_string(),
            group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            path: Some(path.to_string()),
            field_selector: None,
        }
    }

    /// The request as RBAC reads it.
    pub fn rbac_request(&self) -> skiff_rbac::Request<'_> {
        let target = match &self.path {
            Some(p) => skiff_rbac::Target::Path(p),
            None => skiff_rbac::Target::Resource {
                group: &self.group,
                resource: &self.resource,
                subresource: &self.subresource,
                namespace: &self.namespace,
                name: &self.name,
            },
        };
        skiff_rbac::Request {
            user: &self.user.username,
            groups: &self.user.groups,
            verb: &self.verb,
            target,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    /// Neither allowed nor denied; the reason (possibly empty) is kept for the 403, as
    /// kube's node authorizer explains why it did not allow.
    NoOpinion(String),
}

/// One authorizer of the chain. Must be cheap: it runs on every request.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, attrs: &Attributes) -> Decision;
}

/// `--authorization-mode` values skiff serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Node,
    Rbac,
    AlwaysAllow,
    AlwaysDeny,
}

impl Mode {
    /// kube-apiserver's comma-separated list, in order; unknown or repeated modes are
    /// refused at start as kube-apiserver refuses them.
    pub fn parse_list(s: &str) -> Result<Vec<Mode>, String> {
        let mut out = Vec::new();
        for m in s.split(',').map(str::trim) {
            let mode = match m {
                "RBAC" => Mode::Rbac,
                "Node" => Mode::Node,
                "AlwaysAllow" => Mode::AlwaysAllow,
                "AlwaysDeny" => Mode::AlwaysDeny,
                "ABAC" | "Webhook" => {
                    return Err(format!(
                        "authorization mode {m:?} is not supported by skiff yet"
                    ));
                }
                other => return Err(format!("unknown authorization mode {other:?}")),
            };
            if out.contains(&mode) {
                return Err(format!("authorization mode {m:?} given twice"));
            }
            out.push(mode);
        }
        if out.is_empty() {
            return Err("at least one authorization mode is required".into());
        }
        Ok(out)
    }
}

/// Members of `system:masters` may do anything, whatever the modes.
struct PrivilegedGroups;

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow(String::new())
    }
}

struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Deny("Everything is forbidden.".into())
    }
}

/// The authorizers in order: the first that allows or denies decides.
pub struct Chain(Vec<Arc<dyn Authorizer>>);

impl Chain {
    pub fn new(modes: &[Mode], rbac: Arc<dyn Authorizer>, node: Arc<dyn Authorizer>) -> Chain {
        let mut chain: Vec<Arc<dyn Authorizer>> = vec![Arc::new(PrivilegedGroups)];
        for m in modes {
            chain.push(match m {
                Mode::Rbac => rbac.clone(),
                Mode::Node => node.clone(),
                Mode::AlwaysAllow => Arc::new(AlwaysAllow),
                Mode::AlwaysDeny => Arc::new(AlwaysDeny),
            });
        }
        Chain(chain)
    }
}

impl Authorizer for Chain {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        let mut reasons: Vec<String> = Vec::new();
        for a in &self.0 {
            match a.authorize(attrs) {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r);
                    }
                }
                d => return d,
            }
        }
        Decision::NoOpinion(reasons.join(", "))
    }
}

/// kube-apiserver's 403 for a request the chain did not allow.
pub fn forbidden(attrs: &Attributes, decision: &Decision) -> skiff_types::ApiError {
    let mut why = skiff_rbac::forbidden_message(&attrs.rbac_request());
    if let Decision::Deny(reason) | Decision::NoOpinion(reason) = decision
        && !reason.is_empty()
    {
        why = format!("{why}: {reason}");
    }
    skiff_types::ApiError::forbidden(&attrs.group, &attrs.resource, &attrs.name, &why)
}

/// Who a request is: the user it acts as, and (when it impersonates) the user who
/// authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserInfo,
    pub impersonator: Option<UserInfo>,
}

impl Identity {
    /// The user authentication found (the audit log's `user`).
    pub fn authenticated(&self) -> &UserInfo {
        self.impersonator.as_ref().unwrap_or(&self.user)
    }
}

/// The authorization decision of a request, carried on its response for the audit log.
#[derive(Debug, Clone)]
pub struct AuthzOutcome {
    pub allowed: bool,
    pub reason: String,
}
