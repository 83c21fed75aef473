//! The certificate controllers of kube-controller-manager, for the built-in signers:
//! `csrapproving` (a node client certificate asked for with the join token, or by the
//! node itself to renew it, is approved once a SubjectAccessReview says the requester
//! may create `certificatesigningrequests/nodeclient` or `/selfnodeclient`) and
//! `csrsigning` (approved requests to `kubernetes.io/kube-apiserver-client`,
//! `-client-kubelet` and `kubelet-serving` are checked against the signer's rules and
//! signed by the cluster CA, or marked Failed) and `csrcleaner` (requests are deleted
//! an hour after they were approved, denied or failed, a day after creation when still
//! pending, or once their certificate has expired). skiff also approves a node's
//! `kubelet-serving` request when it names only addresses its Node reports (Kubernetes
//! leaves those to the operator, k3s signs them itself), so `kubectl logs` and `exec`
//! reach agents without a manual step.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::serde::Deserialize;
use kube::api::{Api, PostParams};
use serde_json::Value;
use skiff_kube::reflect;
use skiff_pki::csr::CsrInfo;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const NODE_PREFIX: &str = "system:node:";
const NODES: &str = "system:nodes";

/// What the controllers do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Approve if the requester may create this `certificatesigningrequests` subresource.
    ApproveIfAllowed(&'static str),
    /// Approve (a node's serving certificate for its own addresses).
    Approve,
    Sign,
    /// Mark Failed with this message.
    Fail(String),
    Nothing,
}

fn has(csr: &CertificateSigningRequest, ty: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty))
}

fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// Denied, failed or issued: nothing left to do.
fn finished(csr: &CertificateSigningRequest) -> bool {
    has(csr, "Denied") || has(csr, "Failed") || issued(csr)
}

/// [`finished`] on the JSON (the informer's filter).
fn finished_json(v: &Value) -> bool {
    let status = &v["status"];
    let cond = |t: &str| {
        status["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t))
    };
    cond("Denied")
        || cond("Failed")
        || status["certificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
}

/// Usages allowed for a signer, and the one that must be present.
fn usages_ok(usages: &[String], allowed: &[&str], required: &str) -> Result<(), String> {
    for u in usages {
        if !allowed.contains(&u.as_str()) {
            return Err(format!("usage {u:?} is not allowed"));
        }
    }
    if !usages.iter().any(|u| u == required) {
        return Err(format!("usage {required:?} is required"));
    }
    Ok(())
}

/// A kubelet client certificate: `CN=system:node:<name>, O=system:nodes`, no SANs,
/// client usages (kube's `isNodeClientCert`/`ValidateKubeletClientCSR`).
pub fn check_kubelet_client(info: &CsrInfo, usages: &[String]) -> Result<(), String> {
    if info.organizations != [NODES] {
        return Err(format!("subject organization is not {NODES}"));
    }
    if !info.common_name.starts_with(NODE_PREFIX) || info.common_name.len() == NODE_PREFIX.len() {
        return Err(format!(
            "subject common name does not begin with {NODE_PREFIX}"
        ));
    }
    if !(info.dns_names.is_empty()
        && info.ip_addresses.is_empty()
        && info.emails.is_empty()
        && info.uris.is_empty())
    {
        return Err("subject alternative names are not allowed".into());
    }
    usages_ok(
        usages,
        &["digital signature", "key encipherment", "client auth"],
        "client auth",
    )
}

/// A kubelet serving certificate: the node's subject, DNS names and IPs only.
pub fn check_kubelet_serving(info: &CsrInfo, usages: &[String]) -> Result<(), String> {
    if info.organizations != [NODES] {
        return Err(format!("subject organization is not {NODES}"));
    }
    if !info.common_name.starts_with(NODE_PREFIX) {
        return Err(format!(
            "subject common name does not begin with {NODE_PREFIX}"
        ));
    }
    if !info.emails.is_empty() || !info.uris.is_empty() {
        return Err("email and URI subject alternative names are not allowed".into());
    }
    if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
        return Err("at least one DNS or IP subject alternative name is required".into());
    }
    usages_ok(
        usages,
        &["digital signature", "key encipherment", "server auth"],
        "server auth",
    )
}

/// The controllers' decision on one request. `node_addresses` gives a node's reported
/// addresses (for serving certificates).
pub fn decide(
    csr: &CertificateSigningRequest,
    info: &CsrInfo,
    node_addresses: &dyn Fn(&str) -> Option<BTreeSet<String>>,
) -> Action {
    if finished(csr) {
        return Action::Nothing;
    }
    let spec = &csr.spec;
    let usages = spec.usages.clone().unwrap_or_default();
    if has(csr, "Approved") {
        let check = match spec.signer_name.as_str() {
            KUBELET_CLIENT => check_kubelet_client(info, &usages),
            KUBELET_SERVING => check_kubelet_serving(info, &usages),
            APISERVER_CLIENT => usages_ok(
                &usages,
                &["digital signature", "key encipherment", "client auth"],
                "client auth",
            ),
            _ => return Action::Nothing,
        };
        return match check {
            Ok(()) => Action::Sign,
            Err(e) => Action::Fail(e),
        };
    }
    match spec.signer_name.as_str() {
        KUBELET_CLIENT if check_kubelet_client(info, &usages).is_ok() => {
            if spec.username.as_deref() == Some(info.common_name.as_str()) {
                Action::ApproveIfAllowed("selfnodeclient")
            } else {
                Action::ApproveIfAllowed("nodeclient")
            }
        }
        KUBELET_SERVING if own_serving_request(csr, info, node_addresses) => Action::Approve,
        _ => Action::Nothing,
    }
}

/// Asked by the node it names, for addresses that node reports.
fn own_serving_request(
    csr: &CertificateSigningRequest,
    info: &CsrInfo,
    node_addresses: &dyn Fn(&str) -> Option<BTreeSet<String>>,
) -> bool {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if check_kubelet_serving(info, &usages).is_err()
        || csr.spec.username.as_deref() != Some(info.common_name.as_str())
        || !csr.spec.groups.iter().flatten().any(|g| g == NODES)
    {
        return false;
    }
    let node = &info.common_name[NODE_PREFIX.len()..];
    let Some(known) = node_addresses(node) else {
        return false;
    };
    info.dns_names.iter().all(|d| known.contains(d))
        && info
            .ip_addresses
            .iter()
            .all(|ip| known.contains(&ip.to_string()))
}

/// Validity of a certificate signed now: kube's signer backdates by five minutes
/// (clocks disagree) and caps the life at `--cluster-signing-duration` and the request's
/// `expirationSeconds`. Short lives are backdated less, so most of a life is usable.
pub fn validity(
    now: time::OffsetDateTime,
    requested: Option<i32>,
    max: Duration,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let mut life = max;
    if let Some(s) = requested.filter(|s| *s > 0) {
        life = life.min(Duration::from_secs(s as u64));
    }
    let backdate = Duration::from_secs(300).min(life / 10);
    let nb = now - backdate;
    (nb, now + (life - backdate))
}

#[derive(Clone)]
pub struct Options {
    pub pki: Arc<skiff_pki::ClusterPki>,
    /// `--cluster-signing-duration`.
    pub signing_duration: Duration,
    /// Which of the controllers run (`csrapproving`, `csrsigning`, `csrcleaner`).
    pub approve: bool,
    pub sign: bool,
    pub clean: bool,
}

/// kube's csrcleaner deadlines: whether `csr` is due for deletion at `now`.
pub fn expired(csr: &CertificateSigningRequest, now: k8s_openapi::jiff::Timestamp) -> bool {
    use k8s_openapi::jiff::SignedDuration;
    let hour = SignedDuration::from_hours(1);
    let since = |t: Option<&Time>, d: SignedDuration| t.is_some_and(|t| t.0 + d < now);
    let cond = |ty: &str| {
        csr.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == ty))
    };
    let cert_gone = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .and_then(|c| skiff_pki::csr::validity_of(&String::from_utf8_lossy(&c.0)))
        .is_some_and(|(_, not_after)| not_after < now.as_second());
    cert_gone
        || ["Approved", "Denied", "Failed"]
            .iter()
            .any(|t| cond(t).is_some_and(|c| since(c.last_update_time.as_ref(), hour)))
        || (cond("Approved").is_none()
            && cond("Denied").is_none()
            && since(
                csr.metadata.creation_timestamp.as_ref(),
                SignedDuration::from_hours(24),
            ))
}

/// Runs both controllers until `shutdown`.
pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    opts: Options,
    mut shutdown: watch::Receiver<bool>,
) {
    use skiff_kube::informer::View;
    // Requests still to act on, and all of them for the cleaner (objects are shared
    // with the other views, not copied).
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let mut csrs_rx = informers.watch_view(path, View::only(|v| !finished_json(v)));
    let mut all_rx = informers.watch(path);
    let mut nodes_rx = informers.watch("/api/v1/nodes");
    let mut csrs: HashMap<String, Arc<Value>> = HashMap::new();
    let mut all: HashMap<String, Arc<Value>> = HashMap::new();
    let mut nodes: HashMap<String, Arc<Value>> = HashMap::new();
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let mut cleaning = tokio::time::interval(Duration::from_secs(600));
    // Requests whose write failed, tried again a second later.
    let mut retry: BTreeSet<String> = BTreeSet::new();
    let mut retry_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        // Only requests that changed are looked at again (a fleet bootstrapping sends
        // thousands); a node change may make a pending serving request approvable.
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut nodes_changed = false;
        tokio::select! {
            c = csrs_rx.recv() => match c { Some(c) => note(&mut dirty, &mut csrs, c), None => return },
            c = nodes_rx.recv() => match c {
                Some(c) => { reflect::apply_to(&mut nodes, c); nodes_changed = true; }
                None => return,
            },
            c = all_rx.recv() => match c { Some(c) => { reflect::apply_to(&mut all, c); continue; } None => return },
            _ = cleaning.tick() => {
                if opts.clean {
                    clean(&api, &all).await;
                }
                continue;
            }
            _ = retry_tick.tick(), if !retry.is_empty() => dirty.append(&mut retry),
            _ = shutdown.changed() => return,
        }
        while let Ok(c) = csrs_rx.try_recv() {
            note(&mut dirty, &mut csrs, c);
        }
        while let Ok(c) = nodes_rx.try_recv() {
            reflect::apply_to(&mut nodes, c);
            nodes_changed = true;
        }
        if nodes_changed {
            // Every request still held is pending: serving ones may now be approvable.
            dirty.extend(
                csrs.iter()
                    .filter(|(_, v)| {
                        v["spec"]["signerName"] == KUBELET_SERVING
                            && v["status"]["conditions"].is_null()
                    })
                    .map(|(k, _)| k.clone()),
            );
        }
        let addresses = |node: &str| node_addresses(&nodes, node);
        for key in dirty {
            let Some(csr) = csrs
                .get(&key)
                .and_then(|v| CertificateSigningRequest::deserialize(&**v).ok())
            else {
                continue;
            };
            if finished(&csr) {
                continue;
            }
            let Ok(info) = skiff_pki::csr::parse_request(&csr.spec.request.0) else {
                continue;
            };
            let action = decide(&csr, &info, &addresses);
            if let Err(e) = act(&client, &api, &opts, &csr, action).await {
                tracing::warn!(csr = %key, error = %e, "certificate request not handled; retrying");
                retry.insert(key);
            }
        }
    }
}

/// Applies a change, marking the requests it brings as to be looked at.
fn note(dirty: &mut BTreeSet<String>, csrs: &mut HashMap<String, Arc<Value>>, c: reflect::Change) {
    match &c {
        reflect::Change::Reset(items) => dirty.extend(items.iter().map(reflect::key)),
        reflect::Change::Apply(o) => {
            dirty.insert(reflect::key(o));
        }
        reflect::Change::Delete(_) => {}
    }
    reflect::apply_to(csrs, c);
}

/// A request as the cleaner's view holds it (metadata and conditions only).
fn cleaner_view(v: &Value) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: serde_json::from_value(v["metadata"].clone()).unwrap_or_default(),
        status: serde_json::from_value(v["status"].clone()).ok(),
        ..Default::default()
    }
}

async fn clean(api: &Api<CertificateSigningRequest>, csrs: &HashMap<String, Arc<Value>>) {
    let now = k8s_openapi::jiff::Timestamp::now();
    for (name, v) in csrs {
        if expired(&cleaner_view(v), now) {
            tracing::info!(csr = %name, "deleting an expired certificate request");
            let _ = api.delete(name, &Default::default()).await;
        }
    }
}

fn node_addresses(nodes: &HashMap<String, Arc<Value>>, node: &str) -> Option<BTreeSet<String>> {
    let n = nodes.get(node)?;
    let addrs: k8s_openapi::api::core::v1::NodeStatus =
        serde_json::from_value(n["status"].clone()).ok()?;
    Some(
        addrs
            .addresses
            .into_iter()
            .flatten()
            .map(|a| a.address)
            .collect(),
    )
}

fn condition(ty: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: ty.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

async fn act(
    client: &kube::Client,
    api: &Api<CertificateSigningRequest>,
    opts: &Options,
    csr: &CertificateSigningRequest,
    action: Action,
) -> Result<(), kube::Error> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let mut next = csr.clone();
    let status = next.status.get_or_insert_with(Default::default);
    let sub = match action {
        Action::Nothing => return Ok(()),
        Action::ApproveIfAllowed(_) | Action::Approve if !opts.approve => return Ok(()),
        Action::Sign | Action::Fail(_) if !opts.sign => return Ok(()),
        Action::ApproveIfAllowed(sub) if !allowed(client, csr, sub).await? => return Ok(()),
        Action::ApproveIfAllowed(_) => {
            let msg = "Auto approving kubelet client certificate after SubjectAccessReview.";
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(condition("Approved", "AutoApproved", msg));
            "approval"
        }
        Action::Approve => {
            let msg = "skiff: auto-approving the node's serving certificate for the addresses its Node reports.";
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(condition("Approved", "AutoApproved", msg));
            "approval"
        }
        Action::Fail(why) => {
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(condition("Failed", "SignerValidationFailure", &why));
            "status"
        }
        Action::Sign => {
            let (nb, na) = validity(
                time::OffsetDateTime::now_utc(),
                csr.spec.expiration_seconds,
                opts.signing_duration,
            );
            let pem = String::from_utf8_lossy(&csr.spec.request.0).to_string();
            let usages = csr.spec.usages.clone().unwrap_or_default();
            match opts.pki.sign_request(&pem, &usages, nb, na) {
                Ok(cert) => status.certificate = Some(k8s_openapi::ByteString(cert.into_bytes())),
                Err(e) => {
                    let why = format!("signing failed: {e}");
                    status
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(condition("Failed", "SignerValidationFailure", &why));
                }
            }
            "status"
        }
    };
    match api
        .replace_subresource(sub, &name, &PostParams::default(), &next)
        .await
    {
        // Someone else acted first: the next change brings it back.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        r => r.map(|_| ()),
    }
}

/// kube's approver asks the authorizer whether the requester may create the subresource.
async fn allowed(
    client: &kube::Client,
    csr: &CertificateSigningRequest,
    sub: &str,
) -> Result<bool, kube::Error> {
    let spec = &csr.spec;
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            groups: spec.groups.clone(),
            uid: spec.uid.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(sub.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &sar)
        .await?;
    Ok(r.status.is_some_and(|s| s.allowed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn csr(
        signer: &str,
        user: &str,
        cn: &str,
        usages: &[&str],
        sans: &[&str],
    ) -> (CertificateSigningRequest, CsrInfo) {
        let ips: Vec<std::net::IpAddr> = sans.iter().filter_map(|s| s.parse().ok()).collect();
        let dns: Vec<String> = sans
            .iter()
            .filter(|s| s.parse::<std::net::IpAddr>().is_err())
            .map(|s| s.to_string())
            .collect();
        let (_, pem) = skiff_pki::csr::new_request(cn, &[NODES], &dns, &ips).unwrap();
        let info = skiff_pki::csr::parse_request(pem.as_bytes()).unwrap();
        let mut c = CertificateSigningRequest::default();
        c.spec.request = ByteString(pem.into_bytes());
        c.spec.signer_name = signer.into();
        c.spec.username = Some(user.into());
        c.spec.groups = Some(vec![if user.starts_with(NODE_PREFIX) {
            NODES.into()
        } else {
            "system:bootstrappers".into()
        }]);
        c.spec.usages = Some(usages.iter().map(|u| u.to_string()).collect());
        (c, info)
    }

    fn approved(mut c: CertificateSigningRequest) -> CertificateSigningRequest {
        c.status = Some(Default::default());
        c.status.as_mut().unwrap().conditions = Some(vec![condition("Approved", "r", "m")]);
        c
    }

    fn no_nodes(_: &str) -> Option<BTreeSet<String>> {
        None
    }

    #[test]
    fn node_client_requests_are_approved_after_review_and_then_signed() {
        let client = ["digital signature", "client auth"];
        let (c, i) = csr(
            KUBELET_CLIENT,
            "system:bootstrap:abc",
            "system:node:n1",
            &client,
            &[],
        );
        assert_eq!(
            decide(&c, &i, &no_nodes),
            Action::ApproveIfAllowed("nodeclient")
        );
        let (c, i) = csr(
            KUBELET_CLIENT,
            "system:node:n1",
            "system:node:n1",
            &client,
            &[],
        );
        assert_eq!(
            decide(&c, &i, &no_nodes),
            Action::ApproveIfAllowed("selfnodeclient")
        );
        assert_eq!(decide(&approved(c), &i, &no_nodes), Action::Sign);
        // Not a node client certificate: left to a human, and failed once approved.
        let (c, i) = csr(
            KUBELET_CLIENT,
            "system:node:n1",
            "system:node:n1",
            &["server auth"],
            &[],
        );
        assert_eq!(decide(&c, &i, &no_nodes), Action::Nothing);
        assert!(matches!(
            decide(&approved(c), &i, &no_nodes),
            Action::Fail(_)
        ));
        let (c, i) = csr(KUBELET_CLIENT, "system:node:n1", "jane", &client, &[]);
        assert_eq!(decide(&c, &i, &no_nodes), Action::Nothing);
    }

    #[test]
    fn serving_requests_are_approved_only_for_the_nodes_own_addresses() {
        let serving = ["digital signature", "server auth"];
        let addrs = |n: &str| {
            (n == "n1").then(|| ["n1", "10.0.0.5"].iter().map(|s| s.to_string()).collect())
        };
        let (c, i) = csr(
            KUBELET_SERVING,
            "system:node:n1",
            "system:node:n1",
            &serving,
            &["n1", "10.0.0.5"],
        );
        assert_eq!(decide(&c, &i, &addrs), Action::Approve);
        let (c, i) = csr(
            KUBELET_SERVING,
            "system:node:n1",
            "system:node:n1",
            &serving,
            &["n1", "10.0.0.9"],
        );
        assert_eq!(decide(&c, &i, &addrs), Action::Nothing);
        // Another node asking for n1's certificate.
        let (c, i) = csr(
            KUBELET_SERVING,
            "system:node:n2",
            "system:node:n1",
            &serving,
            &["n1"],
        );
        assert_eq!(decide(&c, &i, &addrs), Action::Nothing);
    }

    #[test]
    fn the_cleaner_keeps_requests_an_hour_after_a_decision_and_a_day_pending() {
        use k8s_openapi::jiff::{SignedDuration, Timestamp};
        let (c, _) = csr(KUBELET_CLIENT, "u", "system:node:n", &["client auth"], &[]);
        let now = Timestamp::now();
        let ago = |h: i64| Some(Time(now - SignedDuration::from_mins(h)));
        let mut pending = c.clone();
        pending.metadata.creation_timestamp = ago(23 * 60);
        assert!(!expired(&pending, now));
        pending.metadata.creation_timestamp = ago(25 * 60);
        assert!(expired(&pending, now));
        let mut done = approved(c);
        let cond = &mut done.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
        cond.last_update_time = ago(30);
        assert!(!expired(&done, now));
        let cond = &mut done.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
        cond.last_update_time = ago(61);
        assert!(expired(&done, now));
    }

    #[test]
    fn the_views_agree_with_the_typed_checks() {
        let (c, _) = csr(KUBELET_CLIENT, "u", "system:node:n", &["client auth"], &[]);
        let mut done = approved(c.clone());
        let json = |c: &CertificateSigningRequest| serde_json::to_value(c).unwrap();
        assert!(!finished_json(&json(&c)) && !finished_json(&json(&done)));
        done.status.as_mut().unwrap().certificate = Some(ByteString(b"x".to_vec()));
        assert!(finished_json(&json(&done)));
        // An old approval expires.
        let cond = &mut done.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
        let old =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
        cond.last_update_time = Some(Time(old));
        assert!(expired(
            &cleaner_view(&json(&done)),
            k8s_openapi::jiff::Timestamp::now()
        ));
    }

    #[test]
    fn validity_is_capped_and_backdated() {
        let now = time::OffsetDateTime::now_utc();
        let year = Duration::from_secs(365 * 86400);
        let (nb, na) = validity(now, None, year);
        assert_eq!((now - nb).whole_seconds(), 300);
        assert_eq!((na - nb).whole_seconds(), year.as_secs() as i64);
        let (nb, na) = validity(now, Some(3600), year);
        assert_eq!((na - nb).whole_seconds(), 3600);
        let (nb, na) = validity(now, None, Duration::from_secs(60));
        assert_eq!((now - nb).whole_seconds(), 6);
        assert_eq!((na - nb).whole_seconds(), 60);
    }
}
