//! Authentication results and the authorization seam. Authentication itself happens at
//! the connection (client certificates, verified by rustls against the cluster CA) and in
//! the request (bearer tokens, through [`skiff_pki::TokenAuthenticator`]s).

pub use skiff_pki::UserInfo;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    NoOpinion,
}

/// The seam RBAC plugs into (its own issue). Must be cheap: it runs on every request.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, attrs: &Attributes) -> Decision;
}

/// Allows every authenticated user: what skiff does until RBAC lands.
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs
            .user
            .groups
            .iter()
            .any(|g| g == "system:authenticated")
        {
            Decision::Allow("skiff allows every authenticated user until RBAC is enabled".into())
        } else {
            Decision::NoOpinion
        }
    }
}
