//! LIST from the watch cache: selectors, limit and continue, resourceVersion
//! semantics, and rendering (stored bytes spliced as they are when nothing reshapes
//! them; Tables and PartialObjectMetadata otherwise).

use super::call::Call;
use crate::codec::from_stored;
use crate::decode::{self, Wanted};
use crate::request::{Target, parse_rv, storage_target};
use crate::respond::{json_ok, respond_as};
use crate::watch::{Filter, parse_selectors};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use serde_json::{Value, json};
use skiff_types::ApiError;
use std::sync::Arc;
use std::time::Duration;

pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let (api, t, q, headers, wanted) = (call.api, &call.t, &call.q, &call.headers, call.wanted());
    let st = storage_target(t);
    let (l, f) = parse_selectors(t, &q.map)?;
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
            let (rev, key) = crate::request::decode_continue(c)?;
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
            let rv = parse_rv(rv)?;
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
            .map(|s| crate::request::encode_continue(list_rev, &s.key))
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
    // A conversion webhook is called here; everything else of a large list is built
    // off the async workers.
    let converted = match crate::conversion::by_webhook(&t.ri) {
        true => {
            Some(crate::conversion::all(api, &t.ri, list.parsed()?, &t.ri.api_version()).await?)
        }
        false => None,
    };
    if list.objs.len() < BLOCKING_LIST_ITEMS {
        return list.finish(converted);
    }
    tokio::task::spawn_blocking(move || list.finish(converted))
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
    /// The response: the stored bytes spliced when nothing reshapes them, else the
    /// objects (`converted` by a webhook already, or parsed here) in the shape asked for.
    fn finish(self, converted: Option<Vec<Value>>) -> Result<Response, ApiError> {
        if converted.is_none() && self.splices() {
            return Ok(self.spliced());
        }
        let items = match converted {
            Some(items) => items,
            None => self.parsed()?,
        };
        Ok(self.render(items))
    }

    fn parsed(&self) -> Result<Vec<Value>, ApiError> {
        self.objs.iter().map(|s| from_stored(s)).collect()
    }

    /// Plain JSON of a kind stored as served: the stored bytes go out as they are.
    fn splices(&self) -> bool {
        self.wanted == Wanted::Object && !self.t.ri.converts() && !self.yaml
    }

    /// Splices the stored bytes into the list, stamping each resourceVersion, without
    /// building a JSON tree per object (lists of 30,000 pods stay cheap).
    fn spliced(self) -> Response {
        let t = &self.t;
        let objs = &self.objs;
        let mut body =
            Vec::with_capacity(objs.iter().map(|s| s.value.len() + 32).sum::<usize>() + 256);
        body.extend_from_slice(
            format!(
                "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
                json!(t.ri.list_kind()),
                json!(t.ri.api_version()),
                self.metadata
            )
            .as_bytes(),
        );
        for (i, s) in objs.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            match crate::codec::stamp_stored(&s.value, s.rev) {
                Some(b) => body.extend_from_slice(&b),
                None => match from_stored(s) {
                    Ok(v) => body.extend_from_slice(&serde_json::to_vec(&v).expect("serializable")),
                    Err(_) => body.extend_from_slice(b"null"),
                },
            }
        }
        body.extend_from_slice(b"]}");
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    /// The list of `objects` (the parsed, converted items) in the shape asked for.
    fn render(self, objects: Vec<Value>) -> Response {
        let ListOut {
            t,
            metadata,
            list_rev,
            cont,
            wanted,
            yaml,
            include,
            ..
        } = self;
        let t = &t;
        let shape = if wanted == Wanted::Table {
            Wanted::Object
        } else {
            wanted
        };
        let items: Vec<Value> = objects
            .into_iter()
            .map(|o| crate::views::present(t, o, shape))
            .collect();
        if wanted == Wanted::Table {
            let include = include.as_deref().unwrap_or("Metadata");
            return json_ok(&crate::strategy::table(
                &t.ri,
                &items,
                include,
                &list_rev.to_string(),
                cont.as_deref(),
                chrono::Utc::now(),
            ));
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
        respond_as(yaml, 200, &list, &[])
    }
}
