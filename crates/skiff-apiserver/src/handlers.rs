//! HTTP front: authentication, routing of Kubernetes' URL space onto the generic object
//! pipeline, content negotiation, and the non-resource endpoints.

use crate::auth::{Attributes, Decision, UserInfo};
use crate::decode::{self, BodyFormat, Wanted};
use crate::discovery;
use crate::object::{
    DeleteOptions, FieldValidation, Target, WriteOptions, WriteResult, dry_run_values, from_stored,
};
use crate::registry::Snapshot;
use crate::server::ApiServer;
use crate::watch::{self, Filter, WatchParams};
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_types::{ApiError, Subresource, meta};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn router(api: Arc<ApiServer>) -> Router {
    Router::new().fallback(move |req: Request<Body>| {
        let api = api.clone();
        async move { handle(api, req).await }
    })
}

/// Query parameters; repeated keys keep the last value except where noted.
pub struct Query {
    pub map: BTreeMap<String, String>,
    pub dry_run: Vec<String>,
}

fn parse_query(q: Option<&str>) -> Query {
    let mut map = BTreeMap::new();
    let mut dry_run = Vec::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        if k == "dryRun" {
            dry_run.push(v.to_string());
        }
        map.insert(k.into_owned(), v.into_owned());
    }
    Query { map, dry_run }
}

async fn handle(api: Arc<ApiServer>, req: Request<Body>) -> Response {
    // A joining server has no identity yet: its paths are answered before any.
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if req.method() == Method::GET
        && let Some(r) = crate::serverjoin::serve(&api, req.uri().path(), authorization)
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
        crate::audit::Record::begin(a, &api.registry.snapshot(), &req, who.as_ref().ok())
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

/// What authorizers and the audit policy see of a request, and where it routes (None:
/// outside the resource API).
pub(crate) fn request_attributes(
    served: &Snapshot,
    user: UserInfo,
    req: &Request<Body>,
) -> (Attributes, Option<PathInfo>) {
    let path = req.uri().path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method();
    if let Some(t) = crate::metricsapi::target(&segs) {
        // Served here, not by the registry's kinds, but authorized as resources.
        let attrs = Attributes {
            user,
            verb: t.verb().to_string(),
            group: crate::metricsapi::GROUP.to_string(),
            resource: t.resource.to_string(),
            subresource: String::new(),
            namespace: t.namespace.unwrap_or_default(),
            name: t.name.unwrap_or_default(),
            path: None,
            field_selector: fields_of(req),
        };
        return (attrs, None);
    }
    if let Some(r) = crate::request_info::parse(&segs, method)
        && served.remote(r.group, r.version).is_some()
    {
        // An extension API server's: authorized here as a resource, served there.
        let attrs = Attributes {
            user,
            verb: r.verb.to_string(),
            group: r.group.to_string(),
            resource: r.resource.to_string(),
            subresource: r.subresource.unwrap_or("").to_string(),
            namespace: r.namespace.unwrap_or("").to_string(),
            name: r.name.unwrap_or("").to_string(),
            path: None,
            field_selector: fields_of(req),
        };
        return (attrs, None);
    }
    let Some(info) = parse_resource_path(served, &segs, method) else {
        let verb = method.as_str().to_lowercase();
        return (
            Attributes::non_resource(user, &verb, &path_or_root(path)),
            None,
        );
    };
    let t = &info.target;
    let attrs = Attributes {
        user,
        verb: verb_of(&info, req).to_string(),
        group: t.ri.group.to_string(),
        resource: t.ri.plural.to_string(),
        subresource: t.sub.map(|s| s.name().to_string()).unwrap_or_default(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
        path: None,
        field_selector: fields_of(req),
    };
    (attrs, Some(info))
}

/// The `fieldSelector` of a request, if any.
fn fields_of(req: &Request<Body>) -> Option<String> {
    parse_query(req.uri().query())
        .map
        .get("fieldSelector")
        .filter(|s| !s.is_empty())
        .cloned()
}

/// The authorization decision of a request, carried on its response for the audit log.
#[derive(Debug, Clone)]
pub struct AuthzOutcome {
    pub allowed: bool,
    pub reason: String,
}

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

/// `list` with `?watch=true` is a watch.
fn verb_of(info: &PathInfo, req: &Request<Body>) -> &'static str {
    let watching = parse_query(req.uri().query())
        .map
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    if info.verb == "list" && watching {
        "watch"
    } else {
        info.verb
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
    if let Some(r) = crate::secrets_encryption::serve(api, &method, &segs).await {
        let resp = match r {
            Ok(v) => json_ok(&v),
            Err(e) => error_response(&e),
        };
        return ("", String::new(), resp);
    }
    // Non-resource endpoints.
    if method == Method::GET {
        let nr = match segs.as_slice() {
            ["version"] => Some(json_ok(&json!({
                "major": crate::KUBE_MAJOR, "minor": crate::KUBE_MINOR, "gitVersion": crate::KUBE_GIT_VERSION,
                "gitCommit": env!("CARGO_PKG_VERSION"), "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "rust", "compiler": "rustc", "platform": format!("linux/{}", std::env::consts::ARCH),
            }))),
            ["healthz"]
            | ["livez"]
            | ["readyz"]
            | ["healthz", _]
            | ["livez", _]
            | ["readyz", _] => Some(health(api, segs[0])),
            ["metrics"] => Some(text(
                StatusCode::OK,
                api.metrics.render() + &api.flow.render() + &api.cache.footprint().render(),
                "text/plain; version=0.0.4",
            )),
            ["api"] => Some(match discovery::aggregated_version(&accept) {
                Some(v) => aggregated(discovery::aggregated(&api.registry.snapshot(), true, v), v),
                None => json_ok(&discovery::api_versions(&api.advertise.to_string())),
            }),
            ["apis"] => Some(match discovery::aggregated_version(&accept) {
                Some(v) => aggregated(discovery::aggregated(&api.registry.snapshot(), false, v), v),
                None => json_ok(&discovery::api_group_list(&api.registry.snapshot())),
            }),
            ["api", "v1"] => {
                discovery::resource_list(&api.registry.snapshot(), "", "v1").map(|d| json_ok(&d))
            }
            ["apis", crate::metricsapi::GROUP, crate::metricsapi::VERSION] => {
                Some(json_ok(&crate::metricsapi::resource_list()))
            }
            [
                "apis",
                crate::metricsapi::GROUP,
                crate::metricsapi::VERSION,
                ..,
            ] => Some(match crate::metricsapi::target(&segs) {
                Some(t) => crate::metricsapi::serve(api, &t, req.uri().query()),
                None => error_response(&ApiError::path_not_found()),
            }),
            ["apis", g] => Some(
                discovery::api_group_doc(&api.registry.snapshot(), g)
                    .map(|d| json_ok(&d))
                    .unwrap_or_else(|| error_response(&ApiError::path_not_found())),
            ),
            ["apis", g, v] => Some(
                discovery::resource_list(&api.registry.snapshot(), g, v)
                    .map(|d| json_ok(&d))
                    .unwrap_or_else(|| error_response(&ApiError::path_not_found())),
            ),
            // Service account token discovery, for relying parties outside the cluster.
            [".well-known", "openid-configuration"] => Some(json_ok(&json!({
                "issuer": crate::serviceaccount::ISSUER,
                "jwks_uri": format!("https://{}/openid/v1/jwks", api.advertise),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }))),
            ["openid", "v1", "jwks"] => Some(json_ok(&api.pki.service_account_key.jwks())),
            // kubectl's client-side validation (always used for a v1/List) reads v2.
            ["openapi", "v2"] => {
                let (ct, doc) = skiff_openapi::v2_document(&accept);
                let mut r = Response::new(Body::from(doc));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                Some(r)
            }
            ["openapi", "v3"] => Some(json_ok(&api.openapi.index(&api.registry.snapshot()))),
            ["openapi", "v3", rest @ ..] => Some(
                match api
                    .openapi
                    .document(&api.registry.snapshot(), &rest.join("/"))
                {
                    Some(doc) => {
                        let mut r = Response::new(Body::from(doc.as_ref().clone()));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        r
                    }
                    None => error_response(&ApiError::path_not_found()),
                },
            ),
            _ => None,
        };
        if let Some(r) = nr {
            return ("get", String::new(), r);
        }
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
    let mut resp = match serve_resource(api, &user, info, req).await {
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

/// The path as authorizers see it: `/` for the root, no trailing slash otherwise.
fn path_or_root(trimmed: &str) -> String {
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

pub(crate) struct PathInfo {
    pub(crate) target: Target,
    verb: &'static str,
    /// For `nodes/<name>/proxy/<path>`: `/<path>`.
    proxy_path: String,
}

/// Maps `/api/v1/...` and `/apis/<g>/<v>/...` onto a target and a Kubernetes verb.
fn parse_resource_path(served: &Snapshot, segs: &[&str], method: &Method) -> Option<PathInfo> {
    let crate::request_info::RequestInfo {
        group,
        version,
        namespace,
        resource,
        name,
        subresource: sub,
        verb,
        proxy_path,
    } = crate::request_info::parse(segs, method)?;
    let ri = served.get(group, version, resource)?;
    if namespace.is_some() && !ri.namespaced() {
        return None;
    }
    let sub = match sub {
        None => None,
        Some("finalize") if ri.plural == "namespaces" => Some(Subresource::Status),
        Some(s) => {
            let s = Subresource::from_name(s)?;
            if !ri.has_subresource(s) {
                return None;
            }
            Some(s)
        }
    };
    Some(PathInfo {
        target: Target {
            ri,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            sub,
        },
        verb,
        proxy_path,
    })
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut too_large = false;
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("error reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > crate::MAX_BODY_BYTES {
                too_large = true;
                // Keep reading (and dropping) a bounded amount so the client, still
                // sending, gets the 413 instead of a reset connection.
                if seen > 8 * crate::MAX_BODY_BYTES {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&data);
        }
    }
    if too_large {
        return Err(ApiError::too_large(crate::MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    match q.map.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(o) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {o:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

fn write_options(q: &Query, user: &UserInfo) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: dry_run_values(q.dry_run.iter().map(String::as_str))?,
        field_manager: q.map.get("fieldManager").cloned().filter(|s| !s.is_empty()),
        field_validation: field_validation(q)?,
        user: user.clone(),
    })
}

async fn serve_resource(
    api: &Arc<ApiServer>,
    user: &UserInfo,
    info: PathInfo,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let q = parse_query(parts.uri.query());
    let headers = std::mem::take(&mut parts.headers);
    let t = info.target;
    if t.sub == Some(Subresource::Proxy) {
        let node = t.name.clone().unwrap_or_default();
        parts.headers = headers;
        let req = Request::from_parts(parts, body);
        return crate::agentproxy::proxy(api, &node, &info.proxy_path, req).await;
    }
    let wanted = decode::wanted(&headers);
    let watch_requested = info.verb == "watch"
        || (info.verb == "list"
            && matches!(q.map.get("watch").map(String::as_str), Some("true" | "1")));

    match t.sub {
        Some(sub @ (Subresource::Exec | Subresource::Attach | Subresource::PortForward))
            if matches!(info.verb, "get" | "create") =>
        {
            let pod = api
                .get_object(&Target {
                    sub: None,
                    ..t.clone()
                })
                .await?;
            parts.headers = headers;
            let req = Request::from_parts(parts, body);
            return match sub {
                Subresource::PortForward => crate::portforward::portforward(api, &pod, req).await,
                _ => crate::nodeproxy::exec(api, &pod, sub == Subresource::Attach, req).await,
            };
        }
        Some(Subresource::Log) if info.verb == "get" => {
            let pod = api
                .get_object(&Target {
                    sub: None,
                    ..t.clone()
                })
                .await?;
            return crate::nodeproxy::logs(api, &pod, parts.uri.query()).await;
        }
        Some(
            Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward,
        ) => {
            return node_proxy_unavailable(api, &t).await;
        }
        Some(Subresource::Token) if info.verb != "create" => {
            return Err(ApiError::method_not_supported(
                &t.ri.group,
                "serviceaccounts/token",
                "create",
            ));
        }
        _ => {}
    }

    if watch_requested {
        return serve_watch(api, t, &q, wanted);
    }
    match info.verb {
        "get" => {
            let obj = api.get_object(&t).await?;
            let obj = if t.sub == Some(Subresource::Scale) {
                crate::scale::to_scale(&t.ri, &obj)
            } else {
                obj
            };
            if wanted == Wanted::Table && t.sub.is_none() {
                let shaped = watch::present(&t, obj.clone(), Wanted::Object);
                let rv = meta::resource_version(&obj).unwrap_or("").to_string();
                let include = q
                    .map
                    .get("includeObject")
                    .map(String::as_str)
                    .unwrap_or("Metadata");
                return Ok(json_ok(&crate::strategy::table(
                    &t.ri,
                    &[shaped],
                    include,
                    &rv,
                    None,
                    chrono::Utc::now(),
                )));
            }
            Ok(respond(
                &headers,
                200,
                &watch::present(&t, obj, wanted),
                &[],
            ))
        }
        "list" => serve_list(api, &t, &q, &headers, wanted).await,
        "create" => {
            let raw = read_body(body).await?;
            let ct = decode::content_type(&headers);
            let format =
                decode::body_format(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let (obj, dups) = decode::decode_object_noting_duplicates(&raw, format)?;
            let opts = write_options(&q, user)?;
            match t.sub {
                Some(Subresource::Binding) => {
                    let binding = obj;
                    let name = t.name().to_string();
                    api.write_existing(
                        &t,
                        None,
                        &WriteOptions {
                            field_manager: None,
                            ..opts.clone()
                        },
                        |cur| crate::kinds::apply_binding(cur, &binding, &name),
                    )
                    .await?;
                    Ok(respond(
                        &headers,
                        201,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                        &[],
                    ))
                }
                Some(Subresource::Eviction) => {
                    let mut dopts =
                        DeleteOptions::from_body(obj.get("deleteOptions").unwrap_or(&Value::Null))?;
                    dopts.dry_run |= opts.dry_run;
                    dopts.user = Some(user.clone());
                    let pod_t = Target {
                        sub: None,
                        ..t.clone()
                    };
                    let eviction = crate::nodeauth::Write::create_sub(&t, "eviction", &obj);
                    crate::nodeauth::admit(api, user, &eviction)?;
                    let pod = api.get_object(&pod_t).await?;
                    crate::kinds::check_disruption_budgets(api, &pod).await?;
                    api.delete(&pod_t, &dopts).await?;
                    Ok(respond(
                        &headers,
                        201,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                        &[],
                    ))
                }
                Some(Subresource::Token) => {
                    // NodeRestriction: a node's tokens are bound to its own pods.
                    let token = crate::nodeauth::Write::create_sub(&t, "token", &obj);
                    crate::nodeauth::admit(api, user, &token)?;
                    let tr = crate::serviceaccount::token_request(api, &t, obj, &opts).await?;
                    Ok(respond(&headers, 201, &tr, &[]))
                }
                Some(_) => Err(ApiError::method_not_supported(
                    &t.ri.group,
                    &t.ri.plural,
                    "create",
                )),
                None if t.ri.virtual_create_only => Ok(respond(
                    &headers,
                    201,
                    &crate::reviews::review(api, &t, user, obj)?,
                    &[],
                )),
                None if t.name.is_some() => Err(ApiError::method_not_supported(
                    &t.ri.group,
                    &t.ri.plural,
                    "create",
                )),
                None => {
                    let obj = if t.ri.is_storage_alias() {
                        crate::kinds::v1_event_to_core(&obj)
                    } else {
                        obj
                    };
                    let warnings = if format == BodyFormat::Protobuf {
                        Vec::new()
                    } else {
                        crate::object::field_validation(
                            &t.ri,
                            &obj,
                            (format == BodyFormat::Json && dups).then_some(&raw[..]),
                            opts.field_validation,
                        )?
                    };
                    let storage_t = storage_target(&t);
                    let res = api.create(&storage_t, obj, &opts).await?;
                    Ok(write_response(&headers, &t, res, &warnings))
                }
            }
        }
        "update" => {
            let raw = read_body(body).await?;
            let ct = decode::content_type(&headers);
            let format =
                decode::body_format(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let (obj, dups) = decode::decode_object_noting_duplicates(&raw, format)?;
            let opts = write_options(&q, user)?;
            let warnings = if t.sub.is_none() && format != BodyFormat::Protobuf {
                crate::object::field_validation(
                    &t.ri,
                    &obj,
                    (format == BodyFormat::Json && dups).then_some(&raw[..]),
                    opts.field_validation,
                )?
            } else {
                Vec::new()
            };
            let st = storage_target(&t);
            let obj = if t.ri.is_storage_alias() {
                crate::kinds::v1_event_to_core(&obj)
            } else {
                obj
            };
            let res = if t.sub == Some(Subresource::Scale) {
                let name = t.name().to_string();
                let pre = meta::resource_version(&obj)
                    .map(crate::object::parse_rv)
                    .transpose()?;
                api.write_existing(&st, pre, &opts, |cur| {
                    crate::scale::from_scale(&t.ri, cur, &obj, &name)
                })
                .await?
            } else {
                api.update(&st, obj, &opts).await?
            };
            Ok(write_response(&headers, &t, res, &warnings))
        }
        "patch" => {
            let raw = read_body(body).await?;
            let opts = write_options(&q, user)?;
            let res =
                crate::patching::patch(api, &storage_target(&t), &headers, &raw, &q, opts).await?;
            Ok(write_response(&headers, &t, res, &[]))
        }
        "delete" => {
            let raw = read_body(body).await?;
            let mut dopts = if raw.iter().all(u8::is_ascii_whitespace) {
                DeleteOptions::default()
            } else {
                DeleteOptions::from_body(&decode::decode_object(&raw, BodyFormat::Json)?)?
            };
            apply_delete_query(&mut dopts, &q)?;
            dopts.user = Some(user.clone());
            let res = api.delete(&storage_target(&t), &dopts).await?;
            Ok(write_response(&headers, &t, res, &[]))
        }
        "deletecollection" => {
            let raw = read_body(body).await?;
            let mut dopts = if raw.iter().all(u8::is_ascii_whitespace) {
                DeleteOptions::default()
            } else {
                DeleteOptions::from_body(&decode::decode_object(&raw, BodyFormat::Json)?)?
            };
            apply_delete_query(&mut dopts, &q)?;
            dopts.user = Some(user.clone());
            let (l, f) = watch::parse_selectors(&t, &q.map)?;
            api.sync_cache().await?;
            let filter = Filter {
                t: &t,
                labels: &l,
                fields: &f,
            };
            let (objs, rev, _) =
                api.cache
                    .list(&t.ri.prefix(t.namespace.as_deref()), None, None, &|s| {
                        filter.matches_stored(s)
                    });
            let mut items = Vec::new();
            for s in objs {
                let Ok(obj) = from_stored(&s) else { continue };
                let one = Target {
                    name: meta::name(&obj).map(str::to_string),
                    // A cluster-wide deletecollection of a namespaced kind spans namespaces.
                    namespace: meta::namespace(&obj)
                        .map(str::to_string)
                        .or(t.namespace.clone()),
                    ..storage_target(&t)
                };
                match api.delete(&one, &dopts).await {
                    Ok(r) => items.push(r.object),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({"kind": t.ri.list_kind(), "apiVersion": t.ri.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items});
            Ok(respond(&headers, 200, &list, &[]))
        }
        _ => Err(ApiError::method_not_supported(
            &t.ri.group,
            &t.ri.plural,
            info.verb,
        )),
    }
}

/// events.k8s.io objects live in core events' storage.
fn storage_target(t: &Target) -> Target {
    if t.ri.is_storage_alias() {
        Target {
            ri: crate::registry::builtin("", "events"),
            ..t.clone()
        }
    } else {
        t.clone()
    }
}

fn apply_delete_query(d: &mut DeleteOptions, q: &Query) -> Result<(), ApiError> {
    if let Some(g) = q.map.get("gracePeriodSeconds") {
        d.grace_period_seconds = Some(g.parse().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds: invalid value {g:?}"))
        })?);
    }
    if let Some(p) = q.map.get("propagationPolicy") {
        d.set_propagation(p)?;
    }
    if !q.dry_run.is_empty() {
        d.dry_run = dry_run_values(q.dry_run.iter().map(String::as_str))?;
    }
    Ok(())
}

async fn node_proxy_unavailable(api: &ApiServer, t: &Target) -> Result<Response, ApiError> {
    let pod = api
        .get_object(&Target {
            sub: None,
            ..t.clone()
        })
        .await?;
    let name = t.name();
    match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        None => Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        ))),
        Some(node) => Err(ApiError::service_unavailable(format!(
            "no node agent is connected for node {node:?}"
        ))),
    }
}

fn serve_watch(
    api: &Arc<ApiServer>,
    t: Target,
    q: &Query,
    wanted: Wanted,
) -> Result<Response, ApiError> {
    let (l, f) = watch::parse_selectors(&t, &q.map)?;
    let from = match q.map.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(crate::object::parse_rv(rv)?),
    };
    let send_initial = matches!(
        q.map.get("sendInitialEvents").map(String::as_str),
        Some("true")
    );
    let timeout =
        match q.map.get("timeoutSeconds") {
            Some(s) => Duration::from_secs(s.parse().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds: invalid value {s:?}"))
            })?),
            None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
        };
    let bookmarks = matches!(
        q.map.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let params = WatchParams {
        from,
        send_initial_events: send_initial || from.is_none(),
        labels: l,
        fields: f,
        timeout,
        bookmarks,
        wanted,
    };
    let body = watch::start(api.clone(), t, params)?;
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

async fn serve_list(
    api: &Arc<ApiServer>,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    wanted: Wanted,
) -> Result<Response, ApiError> {
    let st = storage_target(t);
    let (l, f) = watch::parse_selectors(t, &q.map)?;
    let limit = match q.map.get("limit") {
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("limit: invalid value {s:?}")))?,
        )
        .filter(|l| *l > 0)
        .map(|l| l as usize),
        None => None,
    };
    let (start_after, token_rev) = match q.map.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (rev, key) = crate::object::decode_continue(c)?;
            (Some(key), Some(rev))
        }
        None => (None, None),
    };
    match (
        q.map.get("resourceVersion").map(String::as_str),
        q.map.get("resourceVersionMatch").map(String::as_str),
    ) {
        (Some("0"), _) => {}
        (None | Some(""), _) => {
            api.sync_cache().await?;
        }
        (Some(rv), m) => {
            let rv = crate::object::parse_rv(rv)?;
            if m == Some("Exact") && rv != api.cache.revision() {
                return Err(ApiError::expired(format!(
                    "resourceVersion {rv} is not the current revision; exact historical lists are not served"
                )));
            }
            if !api.cache.wait_for(rv, Duration::from_secs(3)).await {
                let mut e = ApiError::timeout(format!(
                    "Timeout: Too large resource version: {rv}, current: {}",
                    api.cache.revision()
                ));
                e.causes = vec![
                    json!({"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}),
                ];
                e.retry_after_seconds = Some(1);
                return Err(e);
            }
        }
    }
    let filter = Filter {
        t: &st,
        labels: &l,
        fields: &f,
    };
    let prefix = st.ri.prefix(st.namespace.as_deref());
    let (objs, rev, more) = api
        .cache
        .list(&prefix, start_after.as_deref(), limit, &|s| {
            filter.matches_stored(s)
        });
    let list_rev = token_rev.unwrap_or(rev);
    let cont = if more {
        objs.last()
            .map(|s| crate::object::encode_continue(list_rev, &s.key))
    } else {
        None
    };
    let mut metadata = json!({"resourceVersion": list_rev.to_string()});
    if let Some(c) = &cont {
        metadata["continue"] = json!(c);
        let remaining = api
            .cache
            .list(&prefix, objs.last().map(|s| s.key.as_str()), None, &|s| {
                filter.matches_stored(s)
            })
            .0
            .len();
        metadata["remainingItemCount"] = json!(remaining);
    }
    let list = ListOut {
        t: t.clone(),
        objs,
        metadata,
        list_rev,
        cont,
        wanted,
        yaml: decode::wants_yaml(headers),
        include: q.map.get("includeObject").cloned(),
    };
    if list.objs.len() < BLOCKING_LIST_ITEMS {
        return list.render();
    }
    tokio::task::spawn_blocking(move || list.render())
        .await
        .map_err(|e| ApiError::internal(format!("rendering a list: {e}")))?
}

/// Lists of at least this many objects are rendered on a blocking thread: a Table of
/// thousands of pods is tens of milliseconds of CPU, and the async workers must stay
/// free for TLS handshakes, Lease renewals and the requests of the other lanes.
const BLOCKING_LIST_ITEMS: usize = 200;

/// A list's objects, read from the cache, and how to write them out.
struct ListOut {
    t: Target,
    objs: Vec<Arc<crate::cache::Stored>>,
    metadata: Value,
    list_rev: skiff_store::Revision,
    cont: Option<String>,
    wanted: Wanted,
    yaml: bool,
    /// `includeObject` of a Table.
    include: Option<String>,
}

impl ListOut {
    fn render(self) -> Result<Response, ApiError> {
        let ListOut {
            t,
            objs,
            metadata,
            list_rev,
            cont,
            wanted,
            yaml,
            include,
        } = self;
        let t = &t;
        if wanted == Wanted::Object && !t.ri.converts() && !yaml {
            // Fast path: splice the stored bytes into the list, stamping each resourceVersion,
            // without building a JSON tree per object (lists of 30,000 pods stay cheap).
            let mut body =
                Vec::with_capacity(objs.iter().map(|s| s.value.len() + 32).sum::<usize>() + 256);
            body.extend_from_slice(
                format!(
                    "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
                    json!(t.ri.list_kind()),
                    json!(t.ri.api_version()),
                    metadata
                )
                .as_bytes(),
            );
            for (i, s) in objs.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                match crate::object::stamp_stored(&s.value, s.rev) {
                    Some(b) => body.extend_from_slice(&b),
                    None => body.extend_from_slice(
                        &serde_json::to_vec(&from_stored(s)?).expect("serializable"),
                    ),
                }
            }
            body.extend_from_slice(b"]}");
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        let mut items = Vec::with_capacity(objs.len());
        for s in &objs {
            items.push(watch::present(
                t,
                from_stored(s)?,
                if wanted == Wanted::Table {
                    Wanted::Object
                } else {
                    wanted
                },
            ));
        }
        if wanted == Wanted::Table {
            let include = include.as_deref().unwrap_or("Metadata");
            return Ok(json_ok(&crate::strategy::table(
                &t.ri,
                &items,
                include,
                &list_rev.to_string(),
                cont.as_deref(),
                chrono::Utc::now(),
            )));
        }
        let (kind, api_version) = if wanted == Wanted::PartialObjectMetadata {
            (
                "PartialObjectMetadataList".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (t.ri.list_kind(), t.ri.api_version())
        };
        let list =
            json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items});
        Ok(respond_as(yaml, 200, &list, &[]))
    }
}

fn write_response(
    headers: &HeaderMap,
    t: &Target,
    res: WriteResult,
    extra_warnings: &[String],
) -> Response {
    if let Some(raw) = res
        .raw
        .filter(|_| t.sub.is_none() && !t.ri.converts() && !decode::wants_yaml(headers))
    {
        let mut warnings = res.warnings;
        warnings.extend_from_slice(extra_warnings);
        return respond_bytes(res.code, raw, "application/json", &warnings);
    }
    let obj = if t.sub == Some(Subresource::Scale)
        && res.object.get("kind").and_then(Value::as_str) != Some("Scale")
    {
        crate::scale::to_scale(&t.ri, &res.object)
    } else if t.ri.converts() && res.object.get("kind").and_then(Value::as_str) != Some("Status") {
        watch::present(t, res.object, Wanted::Object)
    } else {
        res.object
    };
    let mut warnings = res.warnings;
    warnings.extend_from_slice(extra_warnings);
    respond(headers, res.code, &obj, &warnings)
}

fn respond(headers: &HeaderMap, code: u16, v: &Value, warnings: &[String]) -> Response {
    respond_as(decode::wants_yaml(headers), code, v, warnings)
}

fn respond_as(yaml: bool, code: u16, v: &Value, warnings: &[String]) -> Response {
    let (body, ct) = if yaml {
        (
            serde_yaml_ng::to_string(v).unwrap_or_default().into_bytes(),
            "application/yaml",
        )
    } else {
        (
            serde_json::to_vec(v).expect("serializable"),
            "application/json",
        )
    };
    respond_bytes(code, body, ct, warnings)
}

fn respond_bytes(code: u16, body: Vec<u8>, ct: &'static str, warnings: &[String]) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    add_warnings(&mut r, warnings);
    r
}

/// `Warning: 299 - "<text>"` headers, as kube-apiserver writes them.
fn add_warnings(r: &mut Response, warnings: &[String]) {
    for w in warnings {
        let msg = format!("299 - {:?}", w);
        if let Ok(h) = HeaderValue::from_str(&msg) {
            r.headers_mut().append("Warning", h);
        }
    }
}

pub fn json_ok(v: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).expect("serializable")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn aggregated(v: Value, version: &str) -> Response {
    let mut r = json_ok(&v);
    let ct = if version == "v2" {
        discovery::AGGREGATED_V2
    } else {
        discovery::AGGREGATED_V2BETA1
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn text(code: StatusCode, body: String, ct: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// `/livez` says the process serves; `/readyz` also that bootstrap is done and the
/// store takes writes (a full or read-only disk makes it fail, with the reason, until
/// a write succeeds again).
fn health(api: &ApiServer, which: &str) -> Response {
    let failed = if which != "readyz" {
        None
    } else if !*api.ready.borrow() {
        Some("[-]bootstrap not finished".to_string())
    } else {
        api.store
            .write_failure()
            .map(|why| format!("[-]storage failed: {why}"))
    };
    match failed {
        Some(check) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{check}\nreadyz check failed\n"),
            "text/plain; charset=utf-8",
        ),
        None => text(StatusCode::OK, "ok".into(), "text/plain; charset=utf-8"),
    }
}

pub fn error_response(e: &ApiError) -> Response {
    if e.code >= 500 {
        tracing::warn!(code = e.code, message = %e.message, "request failed");
    }
    // Newline-terminated, as Go's JSON encoder writes it.
    let mut body = serde_json::to_vec(&e.to_status()).expect("serializable");
    body.push(b'\n');
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = e.retry_after_seconds
        && let Ok(h) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, h);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plural, namespace, name, subresource, verb)
    type Parsed = (
        String,
        Option<String>,
        Option<String>,
        Option<&'static str>,
        &'static str,
    );

    fn p(path: &str, m: Method) -> Option<Parsed> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let served = crate::registry::Registry::default().snapshot();
        parse_resource_path(&served, &segs, &m).map(|i| {
            (
                i.target.ri.plural.to_string(),
                i.target.namespace,
                i.target.name,
                i.target.sub.map(Subresource::name),
                i.verb,
            )
        })
    }

    #[test]
    fn url_space() {
        assert_eq!(
            p("/api/v1/namespaces/default/pods", Method::GET),
            Some(("pods".into(), Some("default".into()), None, None, "list"))
        );
        assert_eq!(
            p("/api/v1/namespaces/default/pods/x/status", Method::PUT),
            Some((
                "pods".into(),
                Some("default".into()),
                Some("x".into()),
                Some("status"),
                "update"
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/kube-system", Method::GET),
            Some((
                "namespaces".into(),
                None,
                Some("kube-system".into()),
                None,
                "get"
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/foo/status", Method::PUT),
            Some((
                "namespaces".into(),
                None,
                Some("foo".into()),
                Some("status"),
                "update"
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/foo/finalize", Method::PUT),
            Some((
                "namespaces".into(),
                None,
                Some("foo".into()),
                Some("status"),
                "update"
            ))
        );
        assert_eq!(
            p("/api/v1/pods", Method::GET),
            Some(("pods".into(), None, None, None, "list"))
        );
        assert_eq!(
            p(
                "/apis/apps/v1/namespaces/d/deployments/web/scale",
                Method::PATCH
            )
            .unwrap()
            .3,
            Some("scale")
        );
        assert_eq!(
            p("/api/v1/watch/namespaces/d/pods", Method::GET).unwrap().4,
            "watch"
        );
        assert_eq!(
            p("/api/v1/namespaces/d/pods", Method::DELETE).unwrap().4,
            "deletecollection"
        );
        assert!(p("/apis/apps/v2/deployments", Method::GET).is_none());
        assert!(p("/api/v1/namespaces/d/nodes", Method::GET).is_none());
        assert!(p("/api/v1/namespaces/d/pods/x/bogus", Method::GET).is_none());
        assert!(p("/api/v1/namespaces/d/configmaps/x/scale", Method::GET).is_none());
    }
}
