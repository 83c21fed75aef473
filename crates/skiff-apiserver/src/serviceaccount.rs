//! ServiceAccount tokens as Kubernetes issues them: `TokenRequest`
//! (`POST …/serviceaccounts/<name>/token`, what `kubectl create token` and the kubelet
//! call), the authenticator that accepts them, and the ServiceAccount admission
//! plugin's `kube-api-access-*` volume (whose `ca.crt` comes from the
//! `kube-root-ca.crt` ConfigMap `namespace_defaults` keeps).

use crate::codec::from_stored;
use crate::request::{Target, WriteOptions};
use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_pki::{ServiceAccountKey, TokenAuthenticator, UserInfo};
use skiff_types::registry::lookup;
use skiff_types::{ApiError, FieldError};
use std::collections::HashMap;
use std::sync::Arc;

/// The issuer and the API's audience (kubeadm's and k3s' default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The admission plugin's token lifetime. Bound to a pod, such a token is valid for a
/// year but says to refresh after this (Kubernetes' `--service-account-extend-token-expiration`,
/// on by default), so clients that never re-read the file keep working.
pub const ADMISSION_EXPIRATION: i64 = 3607;
const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;
/// Clock skew tolerated on `nbf`/`exp`, as Kubernetes' validator allows.
const LEEWAY: i64 = 60;

/// What a token is bound to: its lifetime ends with the object's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The claims Kubernetes puts in a bound token (`kubernetes.io` private claims).
pub struct TokenSpec<'a> {
    pub namespace: &'a str,
    pub service_account: (&'a str, &'a str),
    pub audiences: &'a [String],
    pub bound: Option<&'a BoundObject>,
    /// The node a bound pod runs on.
    pub node: Option<(&'a str, &'a str)>,
    pub now: i64,
    pub expires: i64,
    pub warn_after: Option<i64>,
}

pub fn claims(s: &TokenSpec) -> Value {
    let mut private = json!({
        "namespace": s.namespace,
        "serviceaccount": {"name": s.service_account.0, "uid": s.service_account.1},
    });
    if let Some(b) = s.bound {
        let key = if b.kind == "Pod" { "pod" } else { "secret" };
        private[key] = json!({"name": b.name, "uid": b.uid});
    }
    if let Some((name, uid)) = s.node {
        private["node"] = json!({"name": name, "uid": uid});
    }
    if let Some(w) = s.warn_after {
        private["warnafter"] = json!(w);
    }
    json!({
        "aud": s.audiences,
        "exp": s.expires,
        "iat": s.now,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": private,
        "nbf": s.now,
        "sub": format!("system:serviceaccount:{}:{}", s.namespace, s.service_account.0),
    })
}

/// Who a token's claims name, once issuer, audience and time check out.
#[derive(Debug, PartialEq, Eq)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub bound: Option<BoundObject>,
}

/// The checks that need no lookups.
pub fn check_claims(c: &Value, audiences: &[String], now: i64) -> Result<Subject, &'static str> {
    if c["iss"] != ISSUER {
        return Err("issuer");
    }
    let aud: Vec<&str> = match &c["aud"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.iter().any(|a| audiences.iter().any(|x| x == a)) {
        return Err("audience");
    }
    let (Some(exp), nbf) = (c["exp"].as_i64(), c["nbf"].as_i64()) else {
        return Err("no expiry");
    };
    if now > exp + LEEWAY || nbf.is_some_and(|n| now + LEEWAY < n) {
        return Err("expired or not yet valid");
    }
    let k = &c["kubernetes.io"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let (namespace, name, uid) = (
        s(&k["namespace"]),
        s(&k["serviceaccount"]["name"]),
        s(&k["serviceaccount"]["uid"]),
    );
    if namespace.is_empty()
        || name.is_empty()
        || c["sub"] != format!("system:serviceaccount:{namespace}:{name}").as_str()
    {
        return Err("subject");
    }
    let bound = [("pod", "Pod"), ("secret", "Secret")]
        .into_iter()
        .find(|(key, _)| k[*key].is_object())
        .map(|(key, kind)| BoundObject {
            kind: kind.into(),
            name: s(&k[key]["name"]),
            uid: s(&k[key]["uid"]),
        });
    Ok(Subject {
        namespace,
        name,
        uid,
        bound,
    })
}

fn user_of(ns: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        username: format!("system:serviceaccount:{ns}:{name}"),
        uid: uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Accepts tokens this cluster signed while their service account (and the pod or
/// secret they are bound to) still exists as the same object.
pub struct ServiceAccountTokenAuthenticator {
    pub key: Arc<ServiceAccountKey>,
    pub cache: Arc<crate::cache::WatchCache>,
    pub audiences: Vec<String>,
    /// Tokens verified in the last seconds, as kube-apiserver's token cache keeps them:
    /// the signature check (an ECDSA verify, a quarter of a token-authenticated create's
    /// CPU) is not repeated, the objects' checks are (by revision, without parsing).
    verified: parking_lot::Mutex<HashMap<String, Verified>>,
}

/// What a verified token was found to be, and until when that holds.
struct Verified {
    sub: Subject,
    /// Unix seconds: the earlier of the token's expiry and the cache's TTL.
    until: i64,
    /// Revisions of the service account and the bound object when verified: the same
    /// revisions are the same objects, in the same state.
    revs: (i64, Option<i64>),
}

/// How far the objects' checks of a verified token may be trusted.
enum Trust {
    /// While the service account and the bound object keep these revisions.
    While((i64, Option<i64>)),
    /// For this request only (a pod being deleted stops vouching as time passes).
    Now,
}

/// How long a verified token is taken on trust (kube-apiserver: 10 s).
const VERIFIED_TTL: i64 = 10;
/// Tokens remembered at most; the memory is dropped whole when full.
const VERIFIED_MAX: usize = 4096;

impl ServiceAccountTokenAuthenticator {
    pub fn new(
        key: Arc<ServiceAccountKey>,
        cache: Arc<crate::cache::WatchCache>,
        audiences: Vec<String>,
    ) -> Self {
        ServiceAccountTokenAuthenticator {
            key,
            cache,
            audiences,
            verified: Default::default(),
        }
    }

    fn stored(&self, plural: &str, ns: &str, name: &str) -> Option<Arc<crate::cache::Stored>> {
        let ri = lookup("", plural)?;
        self.cache.get(&ri.key(Some(ns), name))
    }

    fn bound_plural(b: &BoundObject) -> &'static str {
        if b.kind == "Pod" { "pods" } else { "secrets" }
    }

    /// A token verified a moment ago whose objects have not changed since.
    fn remembered(&self, token: &str, now: i64) -> Option<UserInfo> {
        let v = self.verified.lock();
        let hit = v.get(token).filter(|h| now <= h.until)?;
        let sub = &hit.sub;
        let sa_rev = self
            .stored("serviceaccounts", &sub.namespace, &sub.name)?
            .rev;
        let bound_rev = match &sub.bound {
            Some(b) => Some(
                self.stored(Self::bound_plural(b), &sub.namespace, &b.name)?
                    .rev,
            ),
            None => None,
        };
        ((sa_rev, bound_rev) == hit.revs).then(|| user_of(&sub.namespace, &sub.name, &sub.uid))
    }

    /// The objects' checks on a freshly verified token (None: refused).
    fn objects_vouch(&self, sub: &Subject, now: i64) -> Option<Trust> {
        let sa = self.stored("serviceaccounts", &sub.namespace, &sub.name)?;
        if from_stored(&sa).ok()?["metadata"]["uid"] != sub.uid.as_str() {
            tracing::debug!(sa = %sub.name, "service account token for a deleted or recreated service account");
            return None;
        }
        let Some(b) = &sub.bound else {
            return Some(Trust::While((sa.rev, None)));
        };
        let stored = self.stored(Self::bound_plural(b), &sub.namespace, &b.name)?;
        let obj = from_stored(&stored).ok()?;
        if obj["metadata"]["uid"] != b.uid.as_str() {
            return None;
        }
        // A pod past its deletion (plus a minute's grace) no longer vouches for it.
        match obj["metadata"]["deletionTimestamp"].as_str() {
            Some(ts) => {
                let gone = chrono::DateTime::parse_from_rfc3339(ts)
                    .is_ok_and(|t| t.timestamp() + LEEWAY < now);
                (!gone).then_some(Trust::Now)
            }
            None => Some(Trust::While((sa.rev, Some(stored.rev)))),
        }
    }
}

impl TokenAuthenticator for ServiceAccountTokenAuthenticator {
    fn authenticate(&self, token: &str) -> Option<UserInfo> {
        // Not a JWT (the join token): not ours to judge.
        if token.matches('.').count() != 2 {
            return None;
        }
        let now = unix_now();
        if let Some(u) = self.remembered(token, now) {
            return Some(u);
        }
        let claims = self.key.verify(token)?;
        let sub = match check_claims(&claims, &self.audiences, now) {
            Ok(s) => s,
            Err(why) => {
                tracing::debug!(why, "service account token rejected");
                return None;
            }
        };
        let trust = self.objects_vouch(&sub, now)?;
        let user = user_of(&sub.namespace, &sub.name, &sub.uid);
        if let Trust::While(revs) = trust {
            let exp = claims["exp"].as_i64().unwrap_or(now);
            let mut v = self.verified.lock();
            if v.len() >= VERIFIED_MAX {
                v.clear();
            }
            let until = (now + VERIFIED_TTL).min(exp + LEEWAY);
            v.insert(token.to_string(), Verified { sub, until, revs });
        }
        Some(user)
    }
}

fn invalid(name: &str, errs: &[FieldError]) -> ApiError {
    ApiError::invalid("authentication.k8s.io", "TokenRequest", name, errs)
}

/// `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`.
pub async fn token_request(
    api: &ApiServer,
    t: &Target,
    mut req: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name().to_string();
    if !req.is_object() {
        req = json!({});
    }
    if let Some(kind) = req["kind"].as_str()
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (kind {kind:?} is not TokenRequest)"
        )));
    }
    let spec = &mut req["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => 3600,
        v => v.as_i64().ok_or_else(|| {
            invalid(
                &name,
                &[FieldError::invalid(
                    "spec.expirationSeconds",
                    v.clone(),
                    "must be an integer",
                )],
            )
        })?,
    };
    if expiration < 600 {
        return Err(invalid(
            &name,
            &[FieldError::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            &name,
            &[FieldError::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            )],
        ));
    }
    spec["expirationSeconds"] = json!(expiration);
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                invalid(
                    &name,
                    &[FieldError::invalid(
                        "spec.audiences",
                        spec["audiences"].clone(),
                        "must be strings",
                    )],
                )
            })?,
        _ => vec![ISSUER.to_string()],
    };
    spec["audiences"] = json!(audiences);

    let sa_t = Target {
        sub: None,
        ..t.clone()
    };
    let sa = api.get_object(&sa_t).await?;
    let sa_uid = sa["metadata"]["uid"].as_str().unwrap_or("").to_string();

    let mut bound = None;
    let mut node = None;
    if let Some(r) = spec["boundObjectRef"].as_object().cloned() {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            _ => {
                return Err(invalid(
                    &name,
                    &[FieldError::not_supported(
                        "spec.boundObjectRef.kind",
                        json!(kind),
                        &["Pod", "Secret"],
                    )],
                ));
            }
        };
        let obj_name = r.get("name").and_then(Value::as_str).unwrap_or("");
        if obj_name.is_empty() {
            return Err(invalid(
                &name,
                &[FieldError::required("spec.boundObjectRef.name", "")],
            ));
        }
        let ri = crate::registry::builtin("", plural);
        let obj = api
            .get_object(&Target {
                ri,
                namespace: Some(ns.clone()),
                name: Some(obj_name.to_string()),
                sub: None,
            })
            .await?;
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if let Some(want) = r
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::conflict(
                "",
                plural,
                obj_name,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        if kind == "Pod" {
            let pod_sa = obj["spec"]["serviceAccountName"].as_str().unwrap_or("");
            if pod_sa != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                )));
            }
            if let Some(n) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                let node_ri = crate::registry::builtin("", "nodes");
                let node_uid = api
                    .get_raw(&node_ri.key(None, n))
                    .await?
                    .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_string))
                    .unwrap_or_default();
                node = Some((n.to_string(), node_uid));
            }
        }
        spec["boundObjectRef"]["uid"] = json!(uid);
        bound = Some(BoundObject {
            kind: kind.to_string(),
            name: obj_name.to_string(),
            uid,
        });
    }

    let now = unix_now();
    let (expires, warn_after) =
        if expiration == ADMISSION_EXPIRATION && bound.as_ref().is_some_and(|b| b.kind == "Pod") {
            (now + EXTENDED_EXPIRATION, Some(now + expiration))
        } else {
            (now + expiration, None)
        };
    let token = if opts.dry_run {
        String::new()
    } else {
        let c = claims(&TokenSpec {
            namespace: &ns,
            service_account: (&name, &sa_uid),
            audiences: &audiences,
            bound: bound.as_ref(),
            node: node.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
            now,
            expires,
            warn_after,
        });
        api.pki
            .service_account_key
            .sign(&c)
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    let expiration_ts = chrono::DateTime::from_timestamp(now + expiration, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tracing::debug!(namespace = %ns, service_account = %name, bound = ?bound, "issued a service account token");
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": req["spec"],
        "status": {"token": token, "expirationTimestamp": expiration_ts},
    }))
}

/// The ServiceAccount admission plugin on pod create: the service account must exist;
/// its imagePullSecrets fill an empty list; unless automounting is off (pod, else
/// service account), a `kube-api-access-*` projected volume with a token, the cluster
/// CA and the namespace is mounted at [`MOUNT_PATH`] in every container that has
/// nothing there.
pub async fn admit_pod(api: &ApiServer, pod: &mut Value, name: &str) -> Result<(), ApiError> {
    // Mirror pods stand for static pods, which the API never ran.
    if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Ok(());
    }
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let sa_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let ri = crate::registry::builtin("", "serviceaccounts");
    let key = ri.key(Some(&ns), &sa_name);
    // The cache first (cheap, every pod create); the store for one created a moment ago.
    let sa = match api.cache.get(&key) {
        Some(s) => Some(from_stored(&s)?),
        None => api.get_raw(&key).await?,
    };
    let Some(sa) = sa else {
        return Err(ApiError::forbidden(
            "",
            "pods",
            name,
            &format!(
                "error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
            ),
        ));
    };
    let spec = &mut pod["spec"];
    if spec["imagePullSecrets"]
        .as_array()
        .is_none_or(|a| a.is_empty())
        && let Some(secrets) = sa["imagePullSecrets"].as_array().filter(|a| !a.is_empty())
    {
        spec["imagePullSecrets"] = json!(secrets);
    }
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let has_api_volume = spec["volumes"].as_array().is_some_and(|v| {
        v.iter().any(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
    });
    if has_api_volume {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", crate::request::random_suffix());
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        // `get_mut`: indexing would store `"initContainers": null` in every pod.
        let list = spec.get_mut(list).and_then(Value::as_array_mut);
        for c in list.into_iter().flatten() {
            let mounts = c
                .as_object_mut()
                .map(|o| o.entry("volumeMounts").or_insert_with(|| json!([])));
            let Some(Value::Array(mounts)) = mounts else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == MOUNT_PATH) {
                continue;
            }
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
            mounted = true;
        }
    }
    if !mounted {
        return Ok(());
    }
    let volumes = spec
        .as_object_mut()
        .map(|o| o.entry("volumes").or_insert_with(|| json!([])));
    if let Some(Value::Array(v)) = volumes {
        v.push(json!({
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": ADMISSION_EXPIRATION, "path": "token"}},
                    {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(aud: &'a [String], bound: Option<&'a BoundObject>) -> TokenSpec<'a> {
        TokenSpec {
            namespace: "default",
            service_account: ("default", "sa-uid"),
            audiences: aud,
            bound,
            node: Some(("node-1", "node-uid")),
            now: 1_000_000,
            expires: 1_003_600,
            warn_after: None,
        }
    }

    #[test]
    fn claims_round_trip_through_the_checks() {
        let aud = vec![ISSUER.to_string()];
        let pod = BoundObject {
            kind: "Pod".into(),
            name: "web".into(),
            uid: "pod-uid".into(),
        };
        let c = claims(&spec(&aud, Some(&pod)));
        assert_eq!(c["sub"], "system:serviceaccount:default:default");
        assert_eq!(c["kubernetes.io"]["node"]["name"], "node-1");
        let s = check_claims(&c, &aud, 1_000_010).unwrap();
        assert_eq!(
            s,
            Subject {
                namespace: "default".into(),
                name: "default".into(),
                uid: "sa-uid".into(),
                bound: Some(pod),
            }
        );
    }

    #[test]
    fn checks_reject_wrong_audience_issuer_time_and_subject() {
        let aud = vec![ISSUER.to_string()];
        let c = claims(&spec(&aud, None));
        assert_eq!(
            check_claims(&c, &["vault".to_string()], 1_000_010),
            Err("audience")
        );
        assert_eq!(
            check_claims(&c, &aud, 1_003_600 + LEEWAY + 1),
            Err("expired or not yet valid")
        );
        assert_eq!(
            check_claims(&c, &aud, 1_000_000 - LEEWAY - 1),
            Err("expired or not yet valid")
        );
        let mut other = c.clone();
        other["iss"] = json!("https://elsewhere");
        assert_eq!(check_claims(&other, &aud, 1_000_010), Err("issuer"));
        let mut other = c.clone();
        other["sub"] = json!("system:serviceaccount:kube-system:default");
        assert_eq!(check_claims(&other, &aud, 1_000_010), Err("subject"));
        let mut other = c;
        other["aud"] = json!(ISSUER);
        assert!(check_claims(&other, &aud, 1_000_010).is_ok());
    }
}
