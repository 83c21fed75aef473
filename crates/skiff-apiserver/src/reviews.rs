//! Review kinds answered on the spot and never stored: access reviews from the
//! authorizer, `SelfSubjectReview` and `TokenReview` from authentication.

use crate::auth::{Attributes, Decision, UserInfo};
use crate::codec::check_type_meta;
use crate::request::Target;
use crate::state::ApiServer;
use serde_json::{Value, json};
use skiff_types::ApiError;

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.username, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    v
}

fn decide(
    api: &ApiServer,
    user: UserInfo,
    spec: &Value,
    namespace_override: Option<&str>,
) -> Value {
    let attrs = if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Attributes {
            user,
            verb: s("verb"),
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: namespace_override
                .map(str::to_string)
                .unwrap_or_else(|| s("namespace")),
            name: s("name"),
            path: None,
            field_selector: None,
        }
    } else {
        let nr = spec
            .get("nonResourceAttributes")
            .cloned()
            .unwrap_or(Value::Null);
        Attributes {
            user,
            verb: nr
                .get("verb")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            path: Some(
                nr.get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            field_selector: None,
        }
    };
    match api.authorizer.authorize(&attrs) {
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(r) if r.is_empty() => json!({"allowed": false}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    }
}

/// Answers a create of a review kind.
pub fn review(
    api: &ApiServer,
    t: &Target,
    user: &UserInfo,
    mut obj: Value,
) -> Result<Value, ApiError> {
    check_type_meta(&t.ri, &mut obj)?;
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let status = match &*t.ri.kind {
        "SelfSubjectAccessReview" => decide(api, user.clone(), &spec, None),
        "LocalSubjectAccessReview" | "SubjectAccessReview" => {
            let subject = UserInfo {
                username: spec
                    .get("user")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                uid: spec
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|g| g.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            decide(api, subject, &spec, t.namespace.as_deref())
        }
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            crate::rbac::rules_review(&api.rbac, user, ns)
        }
        "SelfSubjectReview" => json!({"userInfo": user_json(user)}),
        "TokenReview" => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
            match api
                .token_authenticators
                .iter()
                .find_map(|a| a.authenticate(token))
            {
                Some(u) => json!({"authenticated": true, "user": user_json(&u)}),
                None => json!({"authenticated": false}),
            }
        }
        other => {
            return Err(ApiError::method_not_supported(&t.ri.group, other, "create"));
        }
    };
    obj["status"] = status;
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    Ok(obj)
}
