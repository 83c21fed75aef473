//! The audit log (`--audit-policy-file`, `--audit-log-path`): one `audit.k8s.io/v1`
//! Event per request and stage, at the level the policy gives the request, as
//! kube-apiserver writes them: `RequestReceived` and `ResponseComplete` (and
//! `ResponseStarted` for watches and streams, whose completion is when the stream
//! ends), the authenticated and impersonated users, the object, the response status,
//! the authorization decision, and at `Request`/`RequestResponse` the request and
//! response bodies. Every response carries its `Audit-Id`.

pub mod policy;
pub mod sink;

use crate::auth::AuthzOutcome;
use crate::auth::Identity;
use crate::auth::{Attributes, UserInfo};
use axum::body::Body;
use hyper::{Request, Response, header};
use policy::{Level, Policy, Stage};
use serde::Serialize;
use serde_json::Value;
use sink::{LogConfig, Sink};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Config {
    pub policy_file: std::path::PathBuf,
    pub log: LogConfig,
}

pub struct Auditor {
    policy: Policy,
    sink: Sink,
}

impl Auditor {
    pub fn load(cfg: &Config) -> Result<Auditor, String> {
        let text = std::fs::read_to_string(&cfg.policy_file)
            .map_err(|e| format!("reading {}: {e}", cfg.policy_file.display()))?;
        let policy = Policy::parse(&text)
            .map_err(|e| format!("audit policy {}: {e}", cfg.policy_file.display()))?;
        let sink = Sink::open(cfg.log.clone())
            .map_err(|e| format!("opening {}: {e}", cfg.log.path.display()))?;
        Ok(Auditor { policy, sink })
    }
}

tokio::task_local! {
    /// Annotations admission adds to the request being served (Pod Security's verdicts).
    static NOTES: std::cell::RefCell<Vec<(&'static str, String)>>;
}

/// Adds an annotation to the audit event of the request being served; nothing when the
/// request is not audited.
pub fn annotate(key: &'static str, value: String) {
    let _ = NOTES.try_with(|n| n.borrow_mut().push((key, value)));
}

/// Runs `f` (the request's handling), gathering what it annotates.
pub async fn gathering<F: std::future::Future>(f: F) -> (F::Output, Vec<(&'static str, String)>) {
    NOTES
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let out = f.await;
            (out, NOTES.with(|n| n.take()))
        })
        .await
}

/// Body size recorded at `Request` level and above; larger bodies are left out.
const MAX_RECORDED: usize = 3 * 1024 * 1024;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
}

impl<'a> From<&'a UserInfo> for User<'a> {
    fn from(u: &'a UserInfo) -> Self {
        User {
            username: &u.username,
            uid: &u.uid,
            groups: &u.groups,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    resource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_group: &'a str,
    api_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subresource: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: Level,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: Stage,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<User<'a>>,
    #[serde(rename = "sourceIPs")]
    source_ips: [String; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<&'a Value>,
    request_received_timestamp: &'a str,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<&'static str, String>,
}

/// One request under audit, from its arrival to its last stage.
pub struct Record {
    auditor: Arc<Auditor>,
    decision: policy::Decision,
    id: String,
    received: String,
    uri: String,
    attrs: Attributes,
    api_version: String,
    impersonated: Option<UserInfo>,
    source: String,
    user_agent: Option<String>,
    request_object: Option<Value>,
    response_status: Option<Value>,
    response_object: Option<Value>,
    annotations: BTreeMap<&'static str, String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The request's `Audit-ID` if it brought a sane one, else a new one.
fn audit_id(req: &Request<Body>) -> String {
    req.headers()
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_string)
        // From the thread's RNG: no system call per request.
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        })
}

/// Watches and streams: their response starts long before it completes.
fn long_running(a: &Attributes, req: &Request<Body>) -> bool {
    a.verb == "watch"
        || matches!(
            a.subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        )
        || (a.subresource == "log" && req.uri().query().is_some_and(|q| q.contains("follow=true")))
}

impl Record {
    /// Whom the audit log names: the user who authenticated (not the one impersonated),
    /// nobody when authentication failed.
    pub fn user(who: Option<&Identity>) -> UserInfo {
        who.map(|w| w.authenticated().clone()).unwrap_or(UserInfo {
            username: String::new(),
            uid: String::new(),
            groups: Vec::new(),
        })
    }

    /// Starts auditing `req` (None: the policy says `None`): `attrs` are the request's
    /// attributes as the authenticated user's (see [`Record::user`]), `api_version` the
    /// version of the resource it is for (empty outside the resource API). `who` is
    /// None when authentication failed.
    pub fn begin(
        auditor: &Arc<Auditor>,
        attrs: Attributes,
        api_version: String,
        req: &Request<Body>,
        who: Option<&Identity>,
    ) -> Option<Record> {
        let decision = auditor.policy.decide(&attrs);
        if decision.level == Level::None {
            return None;
        }
        let source = req
            .extensions()
            .get::<crate::conn::Peer>()
            .map(|p: &crate::conn::Peer| SocketAddr::ip(&p.0).to_string())
            .unwrap_or_default();
        Some(Record {
            auditor: auditor.clone(),
            id: audit_id(req),
            received: now(),
            uri: req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            api_version,
            impersonated: who.and_then(|w| w.impersonator.is_some().then(|| w.user.clone())),
            source,
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            attrs,
            decision,
            request_object: None,
            response_status: None,
            response_object: None,
            annotations: BTreeMap::new(),
        })
    }

    fn wants(&self, level: Level) -> bool {
        self.decision.level >= level
    }

    /// At `Request` level and above, the body is kept for the log (and handed on).
    pub async fn take_request_body(&mut self, req: Request<Body>) -> Request<Body> {
        if !self.wants(Level::Request)
            || !matches!(self.attrs.verb.as_str(), "create" | "update" | "patch")
        {
            return req;
        }
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_RECORDED).await {
            Ok(b) => b,
            // Too large to record; the handler will refuse it too.
            Err(_) => return Request::from_parts(parts, Body::empty()),
        };
        // As JSON whatever it came as (kubectl sends core kinds as protobuf; patches
        // and applies as JSON or YAML).
        let ct = crate::decode::content_type(&parts.headers);
        let v = match crate::decode::body_format(&ct) {
            Some(f) => crate::decode::decode_object(&bytes, f).ok(),
            None => serde_json::from_slice(&bytes)
                .ok()
                .or_else(|| crate::decode::decode_yaml(&bytes).ok()),
        };
        self.request_object = v.map(|v| self.trimmed(v));
        Request::from_parts(parts, Body::from(bytes))
    }

    /// JSON bodies as objects (managed fields left out if the policy says so).
    fn json(&self, bytes: &[u8]) -> Option<Value> {
        Some(self.trimmed(serde_json::from_slice(bytes).ok()?))
    }

    fn trimmed(&self, mut v: Value) -> Value {
        if self.decision.omit_managed_fields
            && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("managedFields");
        }
        v
    }

    fn emit(&self, stage: Stage) {
        if self.decision.omit_stages.contains(&stage) {
            return;
        }
        let a = &self.attrs;
        let ev = Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: self.decision.level,
            audit_id: &self.id,
            stage,
            request_uri: &self.uri,
            verb: &a.verb,
            user: (&a.user).into(),
            impersonated_user: self.impersonated.as_ref().map(Into::into),
            source_ips: [self.source.clone()],
            user_agent: self.user_agent.as_deref(),
            object_ref: a.path.is_none().then(|| ObjectRef {
                resource: &a.resource,
                namespace: &a.namespace,
                name: &a.name,
                api_group: &a.group,
                api_version: &self.api_version,
                subresource: &a.subresource,
            }),
            response_status: (stage != Stage::RequestReceived)
                .then_some(self.response_status.as_ref())
                .flatten(),
            request_object: (stage != Stage::RequestReceived)
                .then_some(self.request_object.as_ref())
                .flatten(),
            response_object: (stage == Stage::ResponseComplete)
                .then_some(self.response_object.as_ref())
                .flatten(),
            request_received_timestamp: &self.received,
            stage_timestamp: if stage == Stage::RequestReceived {
                self.received.clone()
            } else {
                now()
            },
            annotations: &self.annotations,
        };
        match serde_json::to_vec(&ev) {
            Ok(line) => self.auditor.sink.write(line),
            Err(e) => tracing::error!(error = %e, "audit event not serialized"),
        }
    }

    /// Records the response and writes the events; a streamed response's completion is
    /// written when its body ends.
    pub async fn finish(mut self, req_long_running: bool, resp: Response<Body>) -> Response<Body> {
        self.emit(Stage::RequestReceived);
        if let Some(o) = resp.extensions().get::<AuthzOutcome>() {
            let decision = if o.allowed { "allow" } else { "forbid" };
            self.annotations
                .insert("authorization.k8s.io/decision", decision.into());
            self.annotations
                .insert("authorization.k8s.io/reason", o.reason.clone());
        }
        let code = resp.status().as_u16();
        let (mut parts, body) = resp.into_parts();
        if let Ok(v) = header::HeaderValue::from_str(&self.id) {
            parts.headers.insert("audit-id", v);
        }
        self.response_status = Some(serde_json::json!({"metadata": {}, "code": code}));
        if req_long_running && code < 300 {
            self.emit(Stage::ResponseStarted);
            let body = Body::new(Completes {
                inner: body,
                record: Some(self),
            });
            return Response::from_parts(parts, body);
        }
        // Errors are small Status bodies: their reason and message go in the record.
        let keep_body = code >= 400 || self.wants(Level::RequestResponse);
        let body = if keep_body {
            match axum::body::to_bytes(body, MAX_RECORDED).await {
                Ok(bytes) => {
                    self.record_body(code, &bytes);
                    Body::from(bytes)
                }
                Err(_) => Body::empty(),
            }
        } else {
            body
        };
        self.emit(Stage::ResponseComplete);
        Response::from_parts(parts, body)
    }

    fn record_body(&mut self, code: u16, bytes: &[u8]) {
        let parsed = self.json(bytes);
        if code >= 400
            && let Some(s) = parsed.as_ref().filter(|v| v["kind"] == "Status")
        {
            let mut st = serde_json::json!({"metadata": {}, "code": code});
            for k in ["status", "message", "reason", "details"] {
                if let Some(v) = s.get(k).filter(|v| !v.is_null()) {
                    st[k] = v.clone();
                }
            }
            self.response_status = Some(st);
        }
        if self.wants(Level::RequestResponse) {
            self.response_object = parsed;
        }
    }

    pub fn annotate(&mut self, notes: Vec<(&'static str, String)>) {
        self.annotations.extend(notes);
    }

    pub fn long_running(&self, req: &Request<Body>) -> bool {
        long_running(&self.attrs, req)
    }
}

/// A streamed body that writes its request's `ResponseComplete` when it ends.
struct Completes {
    inner: Body,
    record: Option<Record>,
}

impl Drop for Completes {
    fn drop(&mut self) {
        if let Some(r) = self.record.take() {
            r.emit(Stage::ResponseComplete);
        }
    }
}

impl hyper::body::Body for Completes {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
