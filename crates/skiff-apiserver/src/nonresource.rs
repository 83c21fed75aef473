//! The endpoints outside the resource API: version, health, metrics, discovery,
//! service-account issuer discovery and OpenAPI documents.

use crate::discovery;
use crate::respond::{error_response, json_ok, text};
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use skiff_types::ApiError;

/// The GET endpoints outside the resource API (None: not one of them).
pub fn serve(
    api: &ApiServer,
    segs: &[&str],
    accept: &str,
    query: Option<&str>,
) -> Option<Response> {
    let served = || api.registry.snapshot();
    let accept = accept.to_string();
    match segs {
        ["version"] => Some(json_ok(&json!({
            "major": crate::KUBE_MAJOR, "minor": crate::KUBE_MINOR, "gitVersion": crate::KUBE_GIT_VERSION,
            "gitCommit": env!("CARGO_PKG_VERSION"), "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "rust", "compiler": "rustc", "platform": format!("linux/{}", std::env::consts::ARCH),
        }))),
        ["healthz"] | ["livez"] | ["readyz"] | ["healthz", _] | ["livez", _] | ["readyz", _] => {
            Some(health(api, segs[0]))
        }
        ["metrics"] => Some(text(
            StatusCode::OK,
            api.metrics.render() + &api.flow.render() + &api.cache.footprint().render(),
            "text/plain; version=0.0.4",
        )),
        ["api"] => Some(match discovery::aggregated_version(&accept) {
            Some(v) => aggregated(discovery::aggregated(&served(), true, v), v),
            None => json_ok(&discovery::api_versions(&api.advertise.to_string())),
        }),
        ["apis"] => Some(match discovery::aggregated_version(&accept) {
            Some(v) => aggregated(discovery::aggregated(&served(), false, v), v),
            None => json_ok(&discovery::api_group_list(&served())),
        }),
        ["api", "v1"] => discovery::resource_list(&served(), "", "v1").map(|d| json_ok(&d)),
        [
            "apis",
            crate::metricsgroup::GROUP,
            crate::metricsgroup::VERSION,
        ] => Some(json_ok(&crate::metricsgroup::resource_list())),
        [
            "apis",
            crate::metricsgroup::GROUP,
            crate::metricsgroup::VERSION,
            ..,
        ] => Some(match crate::metricsgroup::target(segs) {
            Some(t) => crate::metricsapi::serve(api, &t, query),
            None => error_response(&ApiError::path_not_found()),
        }),
        ["apis", g] => Some(
            discovery::api_group_doc(&served(), g)
                .map(|d| json_ok(&d))
                .unwrap_or_else(|| error_response(&ApiError::path_not_found())),
        ),
        ["apis", g, v] => Some(
            discovery::resource_list(&served(), g, v)
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
        ["openapi", "v3"] => Some(json_ok(&api.openapi.index(&served()))),
        ["openapi", "v3", rest @ ..] => {
            Some(match api.openapi.document(&served(), &rest.join("/")) {
                Some(doc) => {
                    let mut r = Response::new(Body::from(doc.as_ref().clone()));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                None => error_response(&ApiError::path_not_found()),
            })
        }
        _ => None,
    }
}

/// `/livez` says the process serves; `/readyz` also that bootstrap is done and the
/// store takes writes (a full or read-only disk makes it fail, with the reason, until
/// writes have succeeded for a while again: `Store::write_failure`).
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

pub fn aggregated(v: Value, version: &str) -> Response {
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
