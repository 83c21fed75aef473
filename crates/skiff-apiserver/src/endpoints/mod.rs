//! The resource API's endpoints, one file per verb and per subresource that is more
//! than a read or write of its object. Each takes what its verb needs from the request,
//! asks the generic store (`rest`) and writes the response; none calls another verb's
//! file, and none reaches back into the router.

mod binding;
mod call;
mod connect;
mod create;
mod delete;
mod eviction;
mod get;
mod list;
mod patch;
mod update;
mod watch;

use crate::attributes::PathInfo;
use crate::auth::UserInfo;
use crate::request::parse_query;
use crate::state::ApiServer;
use axum::body::Body;
use axum::response::Response;
use call::Call;
use http::Request;
use skiff_types::{ApiError, Subresource};
use std::sync::Arc;

/// Serves an authorized request for a served resource.
pub(crate) async fn serve(
    api: &Arc<ApiServer>,
    user: &UserInfo,
    info: PathInfo,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    if let Some(sub) = info.target.sub.filter(|s| connect::handles(*s)) {
        return connect::serve(api, info, sub, req).await;
    }
    let (parts, body) = req.into_parts();
    let call = Call {
        api,
        user,
        q: parse_query(parts.uri.query()),
        headers: parts.headers,
        t: info.target,
    };
    if call.t.sub == Some(Subresource::Token) && info.verb != "create" {
        return Err(ApiError::method_not_supported(
            &call.t.ri.group,
            "serviceaccounts/token",
            "create",
        ));
    }
    if info.verb == "watch" || (info.verb == "list" && call.q.watching()) {
        return watch::serve(&call);
    }
    match info.verb {
        "get" => get::serve(&call).await,
        "list" => list::serve(&call).await,
        "create" => create::serve(&call, body).await,
        "update" => update::serve(&call, body).await,
        "patch" => patch::serve(&call, body).await,
        "delete" => delete::one(&call, body).await,
        "deletecollection" => delete::collection(&call, body).await,
        verb => Err(ApiError::method_not_supported(
            &call.t.ri.group,
            &call.t.ri.plural,
            verb,
        )),
    }
}
