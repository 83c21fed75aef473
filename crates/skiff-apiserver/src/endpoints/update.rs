//! PUT of an object, its status, or its Scale.

use super::call::Call;
use crate::codec::field_validation;
use crate::decode::BodyFormat;
use crate::request::{parse_rv, storage_target};
use crate::respond::write_response;
use axum::body::Body;
use axum::response::Response;
use skiff_types::{ApiError, Subresource, meta};

pub async fn serve(call: &Call<'_>, body: Body) -> Result<Response, ApiError> {
    let object = call.read_object(body).await?;
    let opts = call.write_options()?;
    let t = &call.t;
    let warnings = if t.sub.is_none() && object.format != BodyFormat::Protobuf {
        field_validation(
            &t.ri,
            &object.obj,
            object.duplicates_source(),
            opts.field_validation,
        )?
    } else {
        Vec::new()
    };
    let obj = if t.ri.is_storage_alias() {
        crate::views::to_storage(&t.ri, &object.obj)
    } else {
        object.obj
    };
    let st = storage_target(t);
    let res = if t.sub == Some(Subresource::Scale) {
        let name = t.name().to_string();
        let pre = meta::resource_version(&obj).map(parse_rv).transpose()?;
        call.api
            .write_existing(&st, pre, &opts, |cur| {
                crate::scale::from_scale(&t.ri, cur, &obj, &name)
            })
            .await?
    } else {
        call.api.update(&st, obj, &opts).await?
    };
    Ok(write_response(&call.headers, t, res, &warnings))
}
