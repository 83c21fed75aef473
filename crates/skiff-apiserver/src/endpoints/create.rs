//! POST: a new object, a virtual review, or a create-only subresource (binding,
//! eviction, token).

use super::call::{Call, Object};
use super::{binding, eviction};
use crate::codec::field_validation;
use crate::decode::BodyFormat;
use crate::request::{WriteOptions, storage_target};
use crate::respond::{respond, write_response};
use axum::body::Body;
use axum::response::Response;
use skiff_types::{ApiError, Subresource};

pub async fn serve(call: &Call<'_>, body: Body) -> Result<Response, ApiError> {
    let object = call.read_object(body).await?;
    let opts = call.write_options()?;
    let t = &call.t;
    match t.sub {
        Some(Subresource::Binding) => binding::serve(call, object.obj, opts).await,
        Some(Subresource::Eviction) => eviction::serve(call, object.obj, &opts).await,
        Some(Subresource::Token) => token(call, object, &opts).await,
        Some(_) => Err(not_supported(call)),
        None if t.ri.virtual_create_only => {
            let review = crate::reviews::review(call.api, t, call.user, object.obj)?;
            Ok(respond(&call.headers, 201, &review, &[]))
        }
        None if t.name.is_some() => Err(not_supported(call)),
        None => create(call, object, &opts).await,
    }
}

async fn create(
    call: &Call<'_>,
    object: Object,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let t = &call.t;
    let warnings = if object.format == BodyFormat::Protobuf {
        Vec::new()
    } else {
        field_validation(
            &t.ri,
            &object.obj,
            object.duplicates_source(),
            opts.field_validation,
        )?
    };
    let obj = if t.ri.is_storage_alias() {
        crate::views::to_storage(&t.ri, &object.obj)
    } else {
        object.obj
    };
    let res = call.api.create(&storage_target(t), obj, opts).await?;
    if !opts.dry_run {
        crate::namespace_defaults::after_create(call.api, &t.ri, &res.object).await;
    }
    Ok(write_response(&call.headers, t, res, &warnings))
}

/// `serviceaccounts/<name>/token`. NodeRestriction: a node's tokens are bound to its
/// own pods.
async fn token(call: &Call<'_>, object: Object, opts: &WriteOptions) -> Result<Response, ApiError> {
    let write = crate::nodeauth::Write::create_sub(&call.t, "token", &object.obj);
    crate::nodeauth::admit(call.api, call.user, &write)?;
    let tr = crate::serviceaccount::token_request(call.api, &call.t, object.obj, opts).await?;
    Ok(respond(&call.headers, 201, &tr, &[]))
}

fn not_supported(call: &Call<'_>) -> ApiError {
    ApiError::method_not_supported(&call.t.ri.group, &call.t.ri.plural, "create")
}
