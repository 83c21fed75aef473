//! WATCH: parameters (resourceVersion, sendInitialEvents, timeout, bookmarks) onto a
//! stream from the watch cache (`crate::watch`).

use super::call::Call;
use crate::watch::{WatchParams, parse_selectors};
use axum::response::Response;
use http::{HeaderValue, header};
use skiff_types::ApiError;
use std::time::Duration;

pub fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let (t, q) = (call.t.clone(), &call.q);
    let (l, f) = parse_selectors(&t, &q.map)?;
    let from = match q.map.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(crate::request::parse_rv(rv)?),
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
        wanted: call.wanted(),
    };
    let body = crate::watch::start(call.api.clone(), t, params)?;
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
