//! One resource request as its endpoint sees it.

use crate::auth::UserInfo;
use crate::decode::{self, BodyFormat, Wanted};
use crate::request::{Query, Target, WriteOptions, write_options};
use crate::state::ApiServer;
use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use skiff_types::ApiError;
use std::sync::Arc;

pub struct Call<'a> {
    pub api: &'a Arc<ApiServer>,
    pub user: &'a UserInfo,
    pub t: Target,
    pub q: Query,
    pub headers: HeaderMap,
}

/// A write's body, decoded.
pub struct Object {
    pub obj: Value,
    pub raw: Bytes,
    pub format: BodyFormat,
    /// The JSON had a key twice (field validation reports it).
    pub dups: bool,
}

impl Object {
    /// The raw JSON, when duplicate fields must be reported from it.
    pub fn duplicates_source(&self) -> Option<&[u8]> {
        (self.format == BodyFormat::Json && self.dups).then_some(&self.raw[..])
    }
}

impl Call<'_> {
    pub fn wanted(&self) -> Wanted {
        decode::wanted(&self.headers)
    }

    pub fn write_options(&self) -> Result<WriteOptions, ApiError> {
        write_options(&self.q, self.user)
    }

    /// The body media types the kind takes (custom kinds have no protobuf form).
    fn body_types(&self) -> &'static [&'static str] {
        match self.t.ri.custom {
            Some(_) => &["application/json", "application/yaml"],
            None => &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
        }
    }

    /// Reads and decodes an object body in the format its Content-Type names.
    pub async fn read_object(&self, body: Body) -> Result<Object, ApiError> {
        let raw = decode::read_body(body).await?;
        let ct = decode::content_type(&self.headers);
        let format = decode::body_format(&ct)
            .filter(|f| *f != BodyFormat::Protobuf || self.t.ri.custom.is_none())
            .ok_or_else(|| ApiError::unsupported_media_type(self.body_types()))?;
        let (obj, dups) = decode::decode_for_kind(&raw, format, &self.t.ri.kind)?;
        Ok(Object {
            obj,
            raw,
            format,
            dups,
        })
    }
}
