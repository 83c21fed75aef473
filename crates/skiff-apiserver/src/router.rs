//! The HTTP front every request passes: join paths before authentication, then
//! authentication, audit, flow control and authorization, then the route: an
//! extension API server's group, `/skiff/v1/...`, the non-resource endpoints, or the
//! resource API's endpoints (`endpoints`).

use crate::attributes::request_attributes;
use crate::attributes::{PathInfo, verb_of};
use crate::auth::AuthzOutcome;
use crate::auth::{Attributes, Decision, UserInfo};
use crate::respond::add_warnings;
use crate::respond::error_response;
use crate::respond::json_ok;
use crate::state::ApiServer;
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::{Method, Request, header};
use skiff_types::ApiError;
use std::sync::Arc;
use std::time::Instant;

pub fn router(api: Arc<ApiServer>) -> Router {
    Router::new().fallback(move |req: Request<Body>| {
        let api = api.clone();
        async move { handle(api, req).await }
    })
}

async fn handle(api: Arc<ApiServer>, req: Request<Body>) -> Response {
    // A joining server has no identity yet: its paths are answered before any.
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if req.method() == Method::GET
        && let Some(r) = crate::serverjoin::serve(
            &api.data_dir,
            api.joinable.as_ref(),
            req.uri().path(),
            authorization,
        )
    {
        return match r {
            Ok(v) => json_ok(&v),
            Err(e) => error_response(&e),
        };
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let who = crate::identity::identify(&api, &req);
    let mut audit = api.audit.as_ref().and_then(|a| {
        let user = crate::audit::Record::user(who.as_ref().ok());
        let (attrs, info) = request_attributes(&api.registry.snapshot(), user, &req);
        let version = info.map(|i| i.target.ri.version.to_string());
        crate::audit::Record::begin(
            a,
            attrs,
            version.unwrap_or_default(),
            &req,
            who.as_ref().ok(),
        )
    });
    let streams = audit.as_ref().is_some_and(|r| r.long_running(&req));
    let req = match audit.as_mut() {
        Some(r) => r.take_request_body(req).await,
        None => req,
    };
    let served = async {
        match who {
            Ok(id) => route(&api, id.user, req).await,
            Err(e) => ("", String::new(), error_response(&e)),
        }
    };
    let (verb, resource, resp) = match audit {
        Some(mut r) => {
            let ((verb, resource, resp), notes) = crate::audit::gathering(served).await;
            r.annotate(notes);
            (verb, resource, r.finish(streams, resp).await)
        }
        None => served.await,
    };
    let code = resp.status().as_u16();
    // Kubernetes' metric verbs: HTTP-ish, with LIST and WATCH told apart.
    let verb_label = match verb {
        "" => method.as_str().to_string(),
        "create" => "POST".into(),
        "update" => "PUT".into(),
        "deletecollection" => "DELETE".into(),
        v => v.to_uppercase(),
    };
    api.metrics
        .observe(&verb_label, &resource, code, started.elapsed());
    tracing::debug!(%method, %path, code, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request");
    resp
}

type Routed = (&'static str, String, Response);

fn with_outcome(mut resp: Response, allowed: bool, reason: String) -> Response {
    resp.extensions_mut()
        .insert(AuthzOutcome { allowed, reason });
    resp
}

fn reason_of(d: &Decision) -> String {
    match d {
        Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r.clone(),
    }
}

async fn route(api: &Arc<ApiServer>, user: UserInfo, req: Request<Body>) -> Routed {
    let (attrs, info) = request_attributes(&api.registry.snapshot(), user.clone(), &req);
    let kind = crate::flowcontrol::kind_of(
        &attrs.verb,
        &attrs.subresource,
        req.uri().path(),
        req.uri().query(),
    );
    // Held until the response is built (a list's body is complete by then).
    let _seat = match api
        .flow
        .admit(crate::flowcontrol::lane_of(&user), kind)
        .await
    {
        Ok(seat) => seat,
        Err(e) => {
            let label = info.as_ref().map(|i| i.target.ri.plural.to_string());
            let verb = info.as_ref().map(|i| verb_of(i, &req)).unwrap_or("");
            return (verb, label.unwrap_or_default(), error_response(&e));
        }
    };
    let reason = match &info {
        None => match api.authorizer.authorize(&attrs) {
            Decision::Allow(why) => why,
            d => {
                let resp = error_response(&crate::auth::forbidden(&attrs, &d));
                return ("", String::new(), with_outcome(resp, false, reason_of(&d)));
            }
        },
        Some(info) => match authorize_resource(api, attrs) {
            Ok(why) => why,
            Err((e, why)) => {
                let label = info.target.ri.plural.to_string();
                let verb = verb_of(info, &req);
                return (verb, label, with_outcome(error_response(&e), false, why));
            }
        },
    };
    let (verb, label, resp) = route_allowed(api, user, req, info).await;
    (verb, label, with_outcome(resp, true, reason))
}

/// Serves a request the authorizer allowed.
async fn route_allowed(
    api: &Arc<ApiServer>,
    user: UserInfo,
    req: Request<Body>,
    info: Option<PathInfo>,
) -> Routed {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();

    if let ["apis", g, v, ..] = segs.as_slice()
        && let Some(remote) = api.registry.snapshot().remote(g, v).cloned()
    {
        let resp = crate::aggregator::proxy(api, &remote, &user, req).await;
        return ("", String::new(), resp);
    }
    if let Some(r) =
        crate::secrets_encryption::serve(api.encryption.as_deref(), &api.cache, &method, &segs)
            .await
    {
        let resp = match r {
            Ok(v) => json_ok(&v),
            Err(e) => error_response(&e),
        };
        return ("", String::new(), resp);
    }
    if method == Method::GET
        && let Some(r) = crate::nonresource::serve(api, &segs, &accept, req.uri().query())
    {
        return ("get", String::new(), r);
    }

    let Some(info) = info else {
        return (
            "",
            String::new(),
            error_response(&ApiError::path_not_found()),
        );
    };
    let resource_label = info.target.ri.plural.to_string();
    let verb = verb_of(&info, &req);
    let deprecation = crate::strategy::warnings(&info.target.ri);
    let mut resp = match crate::endpoints::serve(api, &user, info, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    add_warnings(&mut resp, &deprecation);
    (verb, resource_label, resp)
}

/// The chain's decision on a resource request. A WebSocket GET of exec, attach or
/// portforward also needs `create`, as Kubernetes 1.31+ checks it: reading a pod must
/// not be enough to run commands in it.
fn authorize_resource(
    api: &ApiServer,
    mut attrs: Attributes,
) -> Result<String, (ApiError, String)> {
    let upgrade = attrs.verb == "get"
        && attrs.group.is_empty()
        && attrs.resource == "pods"
        && matches!(
            attrs.subresource.as_str(),
            "exec" | "attach" | "portforward"
        );
    let mut why = match api.authorizer.authorize(&attrs) {
        Decision::Allow(why) => why,
        d => return Err((crate::auth::forbidden(&attrs, &d), reason_of(&d))),
    };
    if upgrade {
        attrs.verb = "create".into();
        match api.authorizer.authorize(&attrs) {
            Decision::Allow(w) => why = w,
            d => return Err((crate::auth::forbidden(&attrs, &d), reason_of(&d))),
        }
    }
    Ok(why)
}
