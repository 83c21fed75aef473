//! GET of one object, of its status, or of its Scale; as a Table when asked.

use super::call::Call;
use crate::decode::Wanted;
use crate::request::Target;
use crate::respond::{json_ok, respond};
use crate::views::present;
use axum::response::Response;
use skiff_types::{ApiError, Subresource, meta};

pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let t = &call.t;
    let obj = call.api.get_object(t).await?;
    let obj = crate::conversion::for_request(call.api, &t.ri, obj).await?;
    let obj = if t.sub == Some(Subresource::Scale) {
        crate::scale::to_scale(&t.ri, &obj)
    } else {
        obj
    };
    let wanted = call.wanted();
    if wanted == Wanted::Table && t.sub.is_none() {
        return Ok(json_ok(&table(call, t, obj)));
    }
    Ok(respond(&call.headers, 200, &present(t, obj, wanted), &[]))
}

fn table(call: &Call<'_>, t: &Target, obj: serde_json::Value) -> serde_json::Value {
    let rv = meta::resource_version(&obj).unwrap_or("").to_string();
    let shaped = present(t, obj, Wanted::Object);
    let include = call.q.map.get("includeObject").map(String::as_str);
    crate::strategy::table(
        &t.ri,
        &[shaped],
        include.unwrap_or("Metadata"),
        &rv,
        None,
        chrono::Utc::now(),
    )
}
