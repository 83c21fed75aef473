//! Who a request acts as: the user its client certificate or bearer token names;
//! `system:anonymous` when it presents no credentials and asks for a public endpoint
//! (as kube-apiserver's anonymous authenticator limited to the health and version
//! paths); and then, if it carries `Impersonate-*` headers, the user it impersonates,
//! once the authorizer allows the `impersonate` verb on each part.

use crate::auth::Identity;
use crate::auth::{Attributes, Decision, UserInfo, forbidden};
use crate::conn::ConnUser;
use crate::state::ApiServer;
use axum::body::Body;
use hyper::{HeaderMap, Request, header};
use skiff_types::ApiError;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
const SA_PREFIX: &str = "system:serviceaccount:";

/// The paths anonymous requests may reach (what `system:public-info-viewer` grants).
fn public_path(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz", "/version"]
        .iter()
        .any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

fn anonymous() -> UserInfo {
    UserInfo {
        username: ANONYMOUS.into(),
        uid: String::new(),
        groups: vec![UNAUTHENTICATED.into()],
    }
}

/// The request's identity, or the 401/403/400 to answer with.
pub fn identify(api: &ApiServer, req: &Request<Body>) -> Result<Identity, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let cert_user = req.extensions().get::<ConnUser>().and_then(|c| c.0.clone());
    // Certificates first, as kube-apiserver's union authenticator orders them.
    let user = match (cert_user, token) {
        (Some(u), _) => u,
        (None, Some(t)) => api
            .token_authenticators
            .iter()
            .find_map(|a| a.authenticate(t))
            .ok_or_else(ApiError::unauthorized)?,
        (None, None) if api.anonymous_auth && public_path(req.uri().path()) => anonymous(),
        (None, None) => return Err(ApiError::unauthorized()),
    };
    let acting = impersonate(api, &user, req.headers())?;
    Ok(match acting {
        Some(other) => Identity {
            user: other,
            impersonator: Some(user),
        },
        None => Identity {
            user,
            impersonator: None,
        },
    })
}

fn header_values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The user named by `Impersonate-User`/`-Group`/`-Uid`/`-Extra-*`, each part
/// authorized for `user`; None when there are none.
fn impersonate(
    api: &ApiServer,
    user: &UserInfo,
    h: &HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    let name = h.get("impersonate-user").and_then(|v| v.to_str().ok());
    let groups = header_values(h, "impersonate-group");
    let uid = h.get("impersonate-uid").and_then(|v| v.to_str().ok());
    let extras: Vec<(String, &str)> = h
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("impersonate-extra-")?;
            Some((key.to_string(), v.to_str().ok()?))
        })
        .collect();
    let Some(name) = name else {
        if !groups.is_empty() || uid.is_some() || !extras.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups, uid or extra without impersonating a user",
            ));
        }
        return Ok(None);
    };
    let check = |resource: &str, sub: &str, namespace: &str, obj: &str| {
        let attrs = Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            // users, groups and serviceaccounts are core; uids and extras are not.
            group: if matches!(resource, "uids" | "userextras") {
                "authentication.k8s.io".into()
            } else {
                String::new()
            },
            resource: resource.into(),
            subresource: sub.into(),
            namespace: namespace.into(),
            name: obj.into(),
            path: None,
            field_selector: None,
        };
        match api.authorizer.authorize(&attrs) {
            Decision::Allow(_) => Ok(()),
            d => Err(forbidden(&attrs, &d)),
        }
    };
    let mut groups: Vec<String> = groups.into_iter().map(str::to_string).collect();
    match name.strip_prefix(SA_PREFIX).and_then(|r| r.split_once(':')) {
        Some((ns, sa)) => {
            check("serviceaccounts", "", ns, sa)?;
            if groups.is_empty() {
                groups = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check("users", "", "", name)?,
    }
    for g in &groups {
        check("groups", "", "", g)?;
    }
    if let Some(u) = uid {
        check("uids", "", "", u)?;
    }
    for (k, v) in &extras {
        check("userextras", k, "", v)?;
    }
    let marker = if name == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !groups.iter().any(|g| g == marker) {
        groups.push(marker.into());
    }
    Ok(Some(UserInfo {
        username: name.to_string(),
        uid: uid.unwrap_or_default().to_string(),
        groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::public_path;

    #[test]
    fn only_the_health_and_version_paths_are_public() {
        for p in [
            "/healthz",
            "/livez",
            "/readyz/ping",
            "/version",
            "/version/",
        ] {
            assert!(public_path(p), "{p}");
        }
        for p in [
            "/",
            "/api",
            "/api/v1/pods",
            "/healthzz",
            "/metrics",
            "/versions",
        ] {
            assert!(!public_path(p), "{p}");
        }
    }
}
