//! ServiceAccount tokens for projected volumes, as kubelet's token manager keeps them:
//! requested through TokenRequest bound to the pod, cached per (service account,
//! audience, lifetime, pod), and renewed once 80 % of the lifetime the API server
//! reported has passed or the token is a day old.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    audience: String,
    expiration: i64,
    pod_uid: String,
}

#[derive(Clone, Debug)]
struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

/// Whether a token issued at `issued` and expiring at `expires` is due for renewal.
pub fn needs_refresh(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    let ttl = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    age * 5 >= ttl * 4 || age > MAX_AGE
}

/// What a pod's `serviceAccountToken` projection asks for.
#[derive(Debug)]
pub struct Want<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
    /// Empty: the API server's own audience.
    pub audience: &'a str,
    pub expiration: i64,
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

#[derive(Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<Key, Cached>>,
}

impl TokenManager {
    /// The pod's current token, requested when there is none or it is due.
    pub async fn get(&self, client: &kube::Client, w: &Want<'_>) -> Result<String, String> {
        let key = Key {
            namespace: w.namespace.into(),
            service_account: w.service_account.into(),
            audience: w.audience.into(),
            expiration: w.expiration,
            pod_uid: w.pod_uid.into(),
        };
        let now = SystemTime::now();
        let cached = self.cache.lock().get(&key).cloned();
        if let Some(c) = &cached
            && !needs_refresh(c.issued, c.expires, now)
        {
            return Ok(c.token.clone());
        }
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if w.audience.is_empty() {
                    Vec::new()
                } else {
                    vec![w.audience.to_string()]
                },
                expiration_seconds: Some(w.expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(w.pod_name.into()),
                    uid: Some(w.pod_uid.into()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), w.namespace);
        let res: Result<TokenRequest, _> = api
            .create_subresource("token", w.service_account, &PostParams::default(), &req)
            .await;
        let issued = match res {
            Ok(r) => r.status,
            // A token still valid beats none while the API server is away.
            Err(e) => {
                return match cached {
                    Some(c) if c.expires > now => {
                        tracing::warn!(error = %e, sa = w.service_account, "token renewal failed; keeping the current token");
                        Ok(c.token)
                    }
                    _ => Err(format!("failed to fetch token: {}", message(&e))),
                };
            }
        };
        let Some(status) = issued.filter(|s| !s.token.is_empty()) else {
            return Err("failed to fetch token: the API server returned none".into());
        };
        let expires = SystemTime::from(status.expiration_timestamp.0);
        self.cache.lock().insert(
            key,
            Cached {
                token: status.token.clone(),
                issued: now,
                expires,
            },
        );
        Ok(status.token)
    }

    /// Drops a gone pod's tokens.
    pub fn forget(&self, pod_uid: &str) {
        self.cache.lock().retain(|k, _| k.pod_uid != pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_four_fifths_of_the_lifetime_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert!(!needs_refresh(t0, t0 + hour, t0));
        assert!(!needs_refresh(t0, t0 + hour, t0 + hour * 79 / 100));
        assert!(needs_refresh(t0, t0 + hour, t0 + hour * 80 / 100));
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(!needs_refresh(t0, t0 + year, t0 + hour * 23));
        assert!(needs_refresh(t0, t0 + year, t0 + hour * 25));
    }
}
