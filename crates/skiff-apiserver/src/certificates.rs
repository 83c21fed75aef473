//! `certificates.k8s.io/v1` CertificateSigningRequests in the API server, as
//! kube-apiserver's CSR strategy and its admission plugins treat them: the requester's
//! identity is recorded from the request (never the body); `spec` is fixed at create;
//! `approval` moves only the Approved/Denied conditions and needs `approve` on the
//! signer (CertificateApproval); `status` keeps those conditions and issuing a
//! certificate needs `sign` on the signer (CertificateSigning); the
//! `kube-apiserver-client` signer never issues for `system:masters`
//! (CertificateSubjectRestriction). Approving and signing are controllers'
//! (`skiff-controllers::certificates`).

use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use serde_json::{Value, json};
use skiff_types::registry::Subresource;
use skiff_types::{ApiError, FieldError};

pub const GROUP: &str = "certificates.k8s.io";
pub const PLURAL: &str = "certificatesigningrequests";

pub fn is_csr(group: &str, plural: &str) -> bool {
    group == GROUP && plural == PLURAL
}

/// At create: who asked is whoever made the request; there is no status yet.
pub fn prepare_create(obj: &mut Value, user: &UserInfo) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    spec["username"] = json!(user.username);
    spec["groups"] = json!(user.groups);
    match user.uid.as_str() {
        "" => spec.as_object_mut().map(|s| s.remove("uid")),
        uid => {
            spec["uid"] = json!(uid);
            None
        }
    };
    spec.as_object_mut().map(|s| s.remove("extra"));
    obj.as_object_mut().map(|o| o.remove("status"));
}

/// The object an update stores: the main resource changes only metadata, `approval`
/// only the Approved/Denied conditions, `status` everything else of the status.
pub fn prepare_update(sub: Option<Subresource>, current: &Value, incoming: &Value) -> Value {
    let approval = |c: &Value| matches!(c["type"].as_str(), Some("Approved" | "Denied"));
    let conditions = |v: &Value| -> Vec<Value> {
        v["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut new = current.clone();
    match sub {
        Some(Subresource::Approval) => {
            let mut cs: Vec<Value> = conditions(incoming)
                .into_iter()
                .filter(|c| approval(c))
                .collect();
            cs.extend(conditions(current).into_iter().filter(|c| !approval(c)));
            new["status"]["conditions"] = json!(cs);
        }
        Some(Subresource::Status) => {
            new["status"] = incoming.get("status").cloned().unwrap_or(json!({}));
            let mut cs: Vec<Value> = conditions(current)
                .into_iter()
                .filter(|c| approval(c))
                .collect();
            cs.extend(conditions(incoming).into_iter().filter(|c| !approval(c)));
            new["status"]["conditions"] = json!(cs);
        }
        _ => new["metadata"] = incoming["metadata"].clone(),
    }
    if new["status"]["conditions"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        new["status"]
            .as_object_mut()
            .map(|s| s.remove("conditions"));
    }
    new
}

/// `certificates.k8s.io/v1` validation (the 422 causes).
pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &obj["spec"];
    match spec["request"].as_str() {
        None | Some("") => errs.push(FieldError::required("spec.request", "")),
        Some(b64) => {
            use base64::Engine;
            let why = match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(pem) => skiff_pki::csr::parse_request(&pem).err(),
                Err(_) => Some("PEM block type must be CERTIFICATE REQUEST".to_string()),
            };
            if let Some(why) = why {
                errs.push(FieldError::invalid("spec.request", json!("<omitted>"), why));
            }
        }
    }
    signer_name(&mut errs, spec["signerName"].as_str());
    match spec["usages"].as_array() {
        None => errs.push(FieldError::required("spec.usages", "")),
        Some(us) if us.is_empty() => errs.push(FieldError::required("spec.usages", "")),
        Some(us) => {
            for (i, u) in us.iter().enumerate() {
                let s = u.as_str().unwrap_or_default();
                if !skiff_pki::csr::KNOWN_USAGES.contains(&s) {
                    errs.push(FieldError::not_supported(
                        format!("spec.usages[{i}]"),
                        u.clone(),
                        skiff_pki::csr::KNOWN_USAGES,
                    ));
                }
            }
        }
    }
    if let Some(secs) = spec["expirationSeconds"].as_i64()
        && secs < 600
    {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            json!(secs),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    conditions(&mut errs, obj, old);
    errs
}

/// `<domain>/<path>`, as `ValidateSignerName`.
fn signer_name(errs: &mut Vec<FieldError>, name: Option<&str>) {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        errs.push(FieldError::required("spec.signerName", ""));
        return;
    };
    let ok = name.split_once('/').is_some_and(|(domain, path)| {
        domain.contains('.')
            && domain
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            && !path.is_empty()
    });
    if !ok {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    } else if name == "kubernetes.io/legacy-unknown" {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(name),
            "the legacy signerName is not allowed via this API version",
        ));
    }
}

fn has(o: &Value, ty: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty))
}

fn conditions(errs: &mut Vec<FieldError>, obj: &Value, old: Option<&Value>) {
    let cs = obj["status"]["conditions"].as_array();
    for (i, c) in cs.into_iter().flatten().enumerate() {
        let path = format!("status.conditions[{i}]");
        match c["type"].as_str() {
            None | Some("") => errs.push(FieldError::required(format!("{path}.type"), "")),
            Some("Approved" | "Denied" | "Failed") if c["status"] != "True" => {
                errs.push(FieldError::not_supported(
                    format!("{path}.status"),
                    c["status"].clone(),
                    &["True"],
                ));
            }
            _ => {}
        }
    }
    if has(obj, "Approved") && has(obj, "Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            obj["status"]["conditions"].clone(),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    let Some(old) = old else { return };
    for ty in ["Approved", "Denied", "Failed"] {
        if has(old, ty) && !has(obj, ty) {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type \"{ty}\""),
            ));
        }
    }
    let cert = |o: &Value| {
        o["status"]["certificate"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    if !cert(old).is_empty() && cert(old) != cert(obj) {
        errs.push(FieldError::forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        ));
    }
    if !cert(obj).is_empty() && !has(obj, "Approved") {
        errs.push(FieldError::invalid(
            "status.certificate",
            json!("<certificate data>"),
            "certificate can only be set once the request is approved",
        ));
    }
}

/// The admission plugins' checks on a write of `new` (over `old` on updates).
pub fn admit(
    authz: &dyn Authorizer,
    user: &UserInfo,
    sub: Option<Subresource>,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let signer = new["spec"]["signerName"].as_str().unwrap_or_default();
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let forbid = |why: String| ApiError::forbidden(GROUP, PLURAL, name, &why);
    match (sub, old) {
        (None, None) => subject_restriction(new, signer).map_err(forbid),
        (Some(Subresource::Approval), Some(old)) => {
            let moved = ["Approved", "Denied"]
                .iter()
                .any(|t| has(new, t) != has(old, t));
            if moved && !may(authz, user, "approve", signer) {
                return Err(forbid(format!(
                    "user not permitted to approve requests with signerName \"{signer}\""
                )));
            }
            Ok(())
        }
        (Some(Subresource::Status), Some(old)) => {
            let cert = |o: &Value| o["status"]["certificate"].clone();
            if cert(new) != cert(old) && !may(authz, user, "sign", signer) {
                return Err(forbid(format!(
                    "user not permitted to sign requests with signerName \"{signer}\""
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// CertificateSubjectRestriction: no `system:masters` certificates through the API.
fn subject_restriction(csr: &Value, signer: &str) -> Result<(), String> {
    if signer != "kubernetes.io/kube-apiserver-client" {
        return Ok(());
    }
    use base64::Engine;
    let pem = csr["spec"]["request"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    match skiff_pki::csr::parse_request(&pem) {
        Ok(info)
            if info
                .organizations
                .iter()
                .any(|o| o == crate::auth::PRIVILEGED_GROUP) =>
        {
            Err(format!(
                "use of {signer} signer with system:masters group is not allowed"
            ))
        }
        _ => Ok(()),
    }
}

/// Whether `user` may `verb` (approve, sign) the signer, by its name or `<domain>/*`.
fn may(authz: &dyn Authorizer, user: &UserInfo, verb: &str, signer: &str) -> bool {
    let wildcard = signer
        .split_once('/')
        .map(|(d, _)| format!("{d}/*"))
        .unwrap_or_default();
    [signer.to_string(), wildcard].into_iter().any(|name| {
        let attrs = Attributes {
            user: user.clone(),
            verb: verb.into(),
            group: GROUP.into(),
            resource: "signers".into(),
            subresource: String::new(),
            namespace: String::new(),
            name,
            path: None,
            field_selector: None,
        };
        matches!(authz.authorize(&attrs), Decision::Allow(_))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(signer: &str) -> Value {
        use base64::Engine;
        let (_, pem) =
            skiff_pki::csr::new_request("system:node:n1", &["system:nodes"], &[], &[]).unwrap();
        json!({
            "metadata": {"name": "c"},
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "signerName": signer,
                "usages": ["digital signature", "client auth"],
                "username": "mallory",
            },
            "status": {"certificate": "x"},
        })
    }

    #[test]
    fn the_requester_is_recorded_from_the_request() {
        let mut o = csr("kubernetes.io/kube-apiserver-client-kubelet");
        let user = UserInfo {
            username: "system:bootstrap:abc123".into(),
            uid: String::new(),
            groups: vec!["system:bootstrappers".into()],
        };
        prepare_create(&mut o, &user);
        assert_eq!(o["spec"]["username"], "system:bootstrap:abc123");
        assert_eq!(o["spec"]["groups"], json!(["system:bootstrappers"]));
        assert!(o.get("status").is_none());
        assert!(validate(&o, None).is_empty(), "{:?}", validate(&o, None));
    }

    #[test]
    fn validation_names_the_field() {
        let mut o = csr("nodomain");
        o["spec"]["request"] = json!("aGVsbG8=");
        o["spec"]["usages"] = json!(["client auth", "flying"]);
        o["spec"]["expirationSeconds"] = json!(60);
        o.as_object_mut().unwrap().remove("status");
        let fields: Vec<String> = validate(&o, None).iter().map(|e| e.to_string()).collect();
        let all = fields.join("\n");
        for want in [
            "spec.request: Invalid value: \"<omitted>\": PEM block type must be CERTIFICATE REQUEST",
            "spec.signerName: Invalid value: \"nodomain\"",
            "spec.usages[1]: Unsupported value: \"flying\"",
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
        ] {
            assert!(all.contains(want), "{want} not in\n{all}");
        }
        o["spec"]["signerName"] = json!("kubernetes.io/legacy-unknown");
        let all: Vec<String> = validate(&o, None).iter().map(|e| e.to_string()).collect();
        let want = "spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version";
        assert!(all.join("\n").contains(want), "{want} not in\n{all:?}");
    }

    #[test]
    fn approval_moves_only_approval_conditions_and_status_keeps_them() {
        let cur = json!({"metadata": {"name": "c"}, "spec": {"signerName": "a.b/c"}, "status": {}});
        let approve = json!({"metadata": {"name": "c"}, "spec": {"signerName": "evil"},
            "status": {"certificate": "forged", "conditions": [
                {"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]}});
        let n = prepare_update(Some(Subresource::Approval), &cur, &approve);
        assert_eq!(n["spec"]["signerName"], "a.b/c");
        assert!(n["status"].get("certificate").is_none());
        assert_eq!(
            n["status"]["conditions"],
            json!([{"type": "Approved", "status": "True"}])
        );
        let sign = json!({"status": {"certificate": "CERT", "conditions": []}});
        let n2 = prepare_update(Some(Subresource::Status), &n, &sign);
        assert_eq!(n2["status"]["certificate"], "CERT");
        assert_eq!(
            n2["status"]["conditions"],
            json!([{"type": "Approved", "status": "True"}])
        );
    }

    #[test]
    fn an_issued_certificate_is_final() {
        let old = json!({"status": {"certificate": "A", "conditions": [{"type": "Approved", "status": "True"}]}});
        let new = json!({"status": {"certificate": "B", "conditions": [{"type": "Approved", "status": "True"}]}});
        let mut errs = Vec::new();
        conditions(&mut errs, &new, Some(&old));
        assert_eq!(
            errs[0].to_string(),
            "status.certificate: Forbidden: updates may not modify existing certificate content"
        );
        let mut errs = Vec::new();
        conditions(&mut errs, &json!({"status": {}}), Some(&old));
        assert!(
            errs[0]
                .to_string()
                .contains("may not remove a condition of type \"Approved\"")
        );
    }
}
