//! DELETE of one object, and of a collection (each member deleted as one would be).

use super::call::Call;
use crate::codec::from_stored;
use crate::decode::{self, BodyFormat};
use crate::request::{DeleteOptions, Target, apply_delete_query, storage_target};
use crate::respond::{respond, write_response};
use crate::watch::{Filter, parse_selectors};
use axum::body::Body;
use axum::response::Response;
use serde_json::json;
use skiff_types::{ApiError, meta};

pub async fn one(call: &Call<'_>, body: Body) -> Result<Response, ApiError> {
    let opts = options(call, body).await?;
    let mut res = call.api.delete(&storage_target(&call.t), &opts).await?;
    res.object = crate::conversion::for_request(call.api, &call.t.ri, res.object).await?;
    Ok(write_response(&call.headers, &call.t, res, &[]))
}

pub async fn collection(call: &Call<'_>, body: Body) -> Result<Response, ApiError> {
    let opts = options(call, body).await?;
    let t = &call.t;
    let (labels, fields) = parse_selectors(t, &call.q.map)?;
    call.api.sync_cache().await?;
    let filter = Filter {
        t,
        labels: &labels,
        fields: &fields,
    };
    let prefix = t.ri.prefix(t.namespace.as_deref());
    let (objs, rev, _) = call
        .api
        .cache
        .list(&prefix, None, None, &|s| filter.matches_stored(s));
    let mut items = Vec::new();
    for s in objs {
        let Ok(obj) = from_stored(&s) else { continue };
        let one = Target {
            name: meta::name(&obj).map(str::to_string),
            // A cluster-wide deletecollection of a namespaced kind spans namespaces.
            namespace: meta::namespace(&obj)
                .map(str::to_string)
                .or(t.namespace.clone()),
            ..storage_target(t)
        };
        match call.api.delete(&one, &opts).await {
            Ok(r) => items.push(r.object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    if crate::conversion::by_webhook(&t.ri) {
        items = crate::conversion::all(call.api, &t.ri, items, &t.ri.api_version()).await?;
    }
    let list = json!({"kind": t.ri.list_kind(), "apiVersion": t.ri.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items});
    Ok(respond(&call.headers, 200, &list, &[]))
}

/// DeleteOptions from the body (if any), then the query.
async fn options(call: &Call<'_>, body: Body) -> Result<DeleteOptions, ApiError> {
    let raw = decode::read_body(body).await?;
    let mut opts = if raw.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        DeleteOptions::from_body(&decode::decode_object(&raw, BodyFormat::Json)?)?
    };
    apply_delete_query(&mut opts, &call.q)?;
    opts.user = Some(call.user.clone());
    Ok(opts)
}
