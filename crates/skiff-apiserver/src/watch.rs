//! Watch streams served from the watch cache: newline-delimited JSON events, with
//! selector transitions, bookmarks, 410 Expired and `timeoutSeconds`.

use crate::cache::{Attrs, CacheEvent, EventType, Stored, TooOld};
use crate::codec::from_stored;
use crate::decode::Wanted;
use crate::request::Target;
use crate::state::ApiServer;
use crate::views::present;
use axum::body::Body;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_store::Revision;
use skiff_types::{ApiError, meta};
use skiff_validation::{fields, labels};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct WatchParams {
    /// None: send the current state first.
    pub from: Option<Revision>,
    pub send_initial_events: bool,
    pub labels: labels::Selector,
    pub fields: fields::Selector,
    pub timeout: Duration,
    pub bookmarks: bool,
    pub wanted: Wanted,
}

/// Object-level filter shared by list and watch.
pub struct Filter<'a> {
    pub t: &'a Target,
    pub labels: &'a labels::Selector,
    pub fields: &'a fields::Selector,
}

impl Filter<'_> {
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty() && self.t.name.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(n) = &self.t.name
            && meta::name(obj) != Some(n.as_str())
        {
            return false;
        }
        if !self.labels.is_empty() {
            let l = meta::string_map(obj.get("metadata").and_then(|m| m.get("labels")));
            if !self.labels.matches(&l) {
                return false;
            }
        }
        if !self.fields.is_empty() {
            let ri = &self.t.ri;
            let f = |field: &str| crate::strategy::field_value(ri, obj, field);
            if !self.fields.matches(&f) {
                return false;
            }
        }
        true
    }

    /// The same test on precomputed attributes.
    pub fn matches_attrs(&self, a: &Attrs) -> bool {
        if let Some(n) = &self.t.name
            && a.field("metadata.name").as_deref() != Some(n.as_str())
        {
            return false;
        }
        if !self.labels.is_empty() && !self.labels.matches(&a.labels) {
            return false;
        }
        self.fields.is_empty() || self.fields.matches(&|f: &str| a.field(f))
    }

    /// The filter on a stored object, for lists and watches alike: labels and selectable
    /// fields come from the object's cached [`Attrs`], parsed once per stored version.
    pub fn matches_stored(&self, s: &Stored) -> bool {
        if self.is_everything() {
            return true;
        }
        let ri = &self.t.ri;
        if ri.is_storage_alias() || (ri.custom.is_some() && !self.fields.is_empty()) {
            // The cached attributes use the stored kind's field names, not the alias's,
            // and know no CRD's selectableFields.
            return serde_json::from_slice::<Value>(&s.value).is_ok_and(|v| self.matches(&v));
        }
        s.attrs(&ri.group, &ri.plural)
            .is_some_and(|a| self.matches_attrs(a))
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("serializable");
    b.push(b'\n');
    Bytes::from(b)
}

fn expired_event(e: &TooOld) -> Bytes {
    let st = ApiError::expired(format!(
        "too old resource version: {} ({})",
        e.requested, e.oldest
    ))
    .to_status();
    line("ERROR", &st)
}

/// A watcher whose client has taken nothing for this long (its buffer full all that
/// time) is cut off: the stream ends, the client watches again from its last
/// resourceVersion, or relists if that has left the cache, and meanwhile nothing of the
/// cache is held for it (kube's cacher likewise closes unresponsive watchers).
const SLOW_WATCHER: Duration = Duration::from_secs(10);

/// Bytes of events a watch may have queued that its connection has not taken yet (one
/// line larger than this still goes, alone): with hyper's own write buffer, what a
/// stalled client can make the server hold, whatever the size of the objects.
const WATCH_BUFFER_BYTES: usize = 1 << 20;

type Line = (Bytes, tokio::sync::OwnedSemaphorePermit);

/// Queues a line for the client; false once the watch is over (client gone or cut off).
async fn send(out: &Out, line: Bytes) -> bool {
    let queued = async {
        let cost = line.len().clamp(1, WATCH_BUFFER_BYTES) as u32;
        let permit = out.budget.clone().acquire_many_owned(cost).await.ok()?;
        out.tx.send((line, permit)).await.ok()
    };
    match tokio::time::timeout(SLOW_WATCHER, queued).await {
        Ok(sent) => sent.is_some(),
        Err(_) => {
            let resource = &*out.resource;
            tracing::info!(
                resource,
                "watcher took nothing for {SLOW_WATCHER:?}; cut off"
            );
            out.api.metrics.watcher_terminated(resource);
            false
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        self.api
            .metrics
            .watches
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where a watch's lines go.
struct Out {
    tx: mpsc::Sender<Line>,
    budget: Arc<tokio::sync::Semaphore>,
    api: Arc<ApiServer>,
    resource: skiff_types::registry::Str,
}

/// Starts a watch and returns its streaming body.
pub fn start(api: Arc<ApiServer>, t: Target, p: WatchParams) -> Result<Body, ApiError> {
    // A single-object watch (`fieldSelector=metadata.name=x` or /watch/.../name) is still
    // a prefix watch; the filter narrows it.
    let prefix = t.ri.prefix(t.namespace.as_deref());
    let initial_wanted = p.from.is_none() || p.send_initial_events;
    let watcher = api.cache.watch(
        &prefix,
        if initial_wanted && p.from.is_none() {
            None
        } else {
            p.from
        },
    );
    let (tx, rx) = mpsc::channel::<Line>(256);
    let budget = Arc::new(tokio::sync::Semaphore::new(WATCH_BUFFER_BYTES));
    match watcher {
        Err(too_old) => {
            let permit = budget.clone().try_acquire_owned().expect("fresh budget");
            let _ = tx.try_send((expired_event(&too_old), permit));
        }
        Ok(mut w) => {
            tokio::spawn(async move {
                api.metrics
                    .watches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let out = Out {
                    tx,
                    budget,
                    api,
                    resource: t.ri.plural.clone(),
                };
                let filter = Filter {
                    t: &t,
                    labels: &p.labels,
                    fields: &p.fields,
                };
                let raw_ok = p.wanted == Wanted::Object && !t.ri.converts();
                let mut columns_sent = false;
                let mut emit = |kind: EventType, obj: Value| -> Bytes {
                    let shaped = present(&t, obj, p.wanted);
                    let object = if p.wanted == Wanted::Table {
                        let mut tbl = crate::strategy::table(
                            &t.ri,
                            &[shaped],
                            "Metadata",
                            "",
                            None,
                            chrono::Utc::now(),
                        );
                        if columns_sent {
                            tbl["columnDefinitions"] = json!([]);
                        }
                        columns_sent = true;
                        tbl
                    } else {
                        shaped
                    };
                    line(kind.as_str(), &object)
                };
                let deadline = tokio::time::sleep(p.timeout);
                tokio::pin!(deadline);
                if initial_wanted {
                    for s in std::mem::take(&mut w.initial) {
                        if raw_ok
                            && filter.is_everything()
                            && let Some(b) = crate::codec::stamp_stored(&s.value, s.rev)
                        {
                            if !send(&out, line_raw("ADDED", &b)).await {
                                return;
                            }
                            continue;
                        }
                        let Ok(obj) = from_stored(&s) else { continue };
                        if !filter.matches(&obj) {
                            continue;
                        }
                        let Some(obj) = converted(&out, &t, obj).await else {
                            return;
                        };
                        if !send(&out, emit(EventType::Added, obj)).await {
                            return;
                        }
                    }
                    if p.send_initial_events && p.bookmarks {
                        let mut bm = bookmark(&t, w.initial_rev);
                        bm["metadata"]["annotations"] =
                            json!({"k8s.io/initial-events-end": "true"});
                        if !send(&out, line("BOOKMARK", &bm)).await {
                            return;
                        }
                    }
                }
                let mut bookmark_tick = tokio::time::interval(Duration::from_secs(60));
                bookmark_tick.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut deadline => return,
                        _ = out.tx.closed() => return,
                        _ = bookmark_tick.tick(), if p.bookmarks => {
                            if !send(&out, line("BOOKMARK", &bookmark(&t, w.last_revision()))).await { return; }
                        }
                        batch = w.next_batch() => match batch {
                            Err(too_old) => { send(&out, expired_event(&too_old)).await; return; }
                            Ok(events) if events.is_empty() => return,
                            Ok(events) => for ev in events {
                                let Some((kind, which)) = transition(&filter, &ev) else { continue };
                                let (s, rev) = match (which, &ev.prev) {
                                    (Which::Previous, Some(prev)) => (prev, ev.rev),
                                    _ => (&ev.obj, ev.obj.rev),
                                };
                                // Plain objects go out as the stored bytes with their
                                // resourceVersion spliced in; other shapes are built.
                                let raw = (raw_ok).then(|| crate::codec::stamp_stored(&s.value, rev)).flatten();
                                let line = match raw {
                                    Some(b) => line_raw(kind.as_str(), &b),
                                    None => match crate::codec::from_bytes(&s.value, rev) {
                                        Ok(obj) => match converted(&out, &t, obj).await {
                                            Some(obj) => emit(kind, obj),
                                            None => return,
                                        },
                                        Err(_) => continue,
                                    },
                                };
                                if !send(&out, line).await {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
    }
    // A line's bytes leave the budget when hyper takes them.
    let lines = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        |(line, _permit)| Ok::<_, std::io::Error>(line),
    );
    Ok(Body::from_stream(lines))
}

/// The object in the watch's version; None (after an ERROR event, as kube ends a watch
/// whose objects cannot be converted) when its conversion webhook fails.
async fn converted(out: &Out, t: &Target, obj: Value) -> Option<Value> {
    match crate::conversion::for_request(&out.api, &t.ri, obj).await {
        Ok(obj) => Some(obj),
        Err(e) => {
            send(out, line("ERROR", &e.to_status())).await;
            None
        }
    }
}

fn bookmark(t: &Target, rev: Revision) -> Value {
    let kind = if t.ri.is_storage_alias() {
        "Event"
    } else {
        &t.ri.kind
    };
    json!({"kind": kind, "apiVersion": t.ri.api_version(), "metadata": {"resourceVersion": rev.to_string()}})
}

/// Which version of the object an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    /// The object before the change: it left the filter.
    Previous,
}

/// What a change looks like through a filter: objects entering it are ADDED, leaving it
/// DELETED (Kubernetes' watch cache semantics). Selectors read each stored version's
/// cached attributes; an unfiltered watch parses nothing.
fn transition(filter: &Filter<'_>, ev: &CacheEvent) -> Option<(EventType, Which)> {
    let everything = filter.is_everything();
    let matches = |s: &Stored| filter.matches_stored(s);
    let cur_ok = everything || matches(&ev.obj);
    let prev_ok = match &ev.prev {
        Some(prev) if ev.kind == EventType::Modified && !everything => {
            let ok = matches(prev);
            if ok && !cur_ok {
                return Some((EventType::Deleted, Which::Previous));
            }
            ok
        }
        _ => true,
    };
    match ev.kind {
        EventType::Added if cur_ok => Some((EventType::Added, Which::Current)),
        EventType::Modified if cur_ok && prev_ok => Some((EventType::Modified, Which::Current)),
        EventType::Modified if cur_ok => Some((EventType::Added, Which::Current)),
        EventType::Deleted if cur_ok => Some((EventType::Deleted, Which::Current)),
        _ => None,
    }
}

/// `{"type":…,"object":…}` around an object's JSON bytes, without parsing them.
fn line_raw(kind: &str, object: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object.len() + 32);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(object);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

/// Parses list/watch selectors, with Kubernetes' 400 messages.
pub fn parse_selectors(
    t: &Target,
    q: &BTreeMap<String, String>,
) -> Result<(labels::Selector, fields::Selector), ApiError> {
    let l = match q.get("labelSelector") {
        Some(s) => labels::Selector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => labels::Selector::everything(),
    };
    let f = match q.get("fieldSelector") {
        Some(s) => {
            let sel = fields::Selector::parse(s).map_err(ApiError::bad_request)?;
            crate::strategy::check_fields(&t.ri, &sel).map_err(ApiError::bad_request)?;
            sel
        }
        None => fields::Selector::parse("").map_err(ApiError::bad_request)?,
    };
    Ok((l, f))
}
