//! What is being admitted: kube's `admission.Attributes`, as plain data.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The admission operation (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The wire form (`CREATE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The requesting user, as authentication established it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// authentication.k8s.io/v1 UserInfo JSON (empty fields left out, as Go's omitempty).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if !self.username.is_empty() {
            m.insert("username".into(), json!(self.username));
        }
        if !self.uid.is_empty() {
            m.insert("uid".into(), json!(self.uid));
        }
        if !self.groups.is_empty() {
            m.insert("groups".into(), json!(self.groups));
        }
        if !self.extra.is_empty() {
            m.insert("extra".into(), json!(self.extra));
        }
        Value::Object(m)
    }
}

/// Group, version and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Gvk {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }
    pub(crate) fn to_json(&self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

/// Group, version and resource (plural).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }
    pub(crate) fn to_json(&self) -> Value {
        json!({"group": self.group, "version": self.version, "resource": self.resource})
    }
    /// `pods`, `deployments.apps`: how errors name the resource.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
    pub(crate) fn is_namespaces(&self) -> bool {
        self.group.is_empty() && self.version == "v1" && self.resource == "namespaces"
    }
}

/// What is being admitted (kube's `admission.Attributes`).
///
/// `namespace` is, as kube-apiserver sets it, the namespace's own name for requests on
/// a Namespace object, and empty for other cluster-scoped objects.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub kind: Gvk,
    pub resource: Gvr,
    pub sub_resource: String,
    pub name: String,
    pub namespace: String,
    pub operation: Operation,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    /// CreateOptions/UpdateOptions/DeleteOptions (with apiVersion and kind), as kube
    /// puts them in `request.options`.
    pub options: Option<Value>,
    pub dry_run: bool,
    pub user: UserInfo,
}

/// kube's `IsExemptAdmissionConfigurationResource`: webhooks and policies never see
/// the objects that configure them (matched by kind, any version).
pub fn exempt(kind: &Gvk) -> bool {
    kind.group == "admissionregistration.k8s.io"
        && matches!(
            kind.kind.as_str(),
            "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_kinds_are_exempt() {
        let k = |g: &str, kind: &str| Gvk::new(g, "v1", kind);
        assert!(exempt(&k(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration"
        )));
        assert!(exempt(&k(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding"
        )));
        assert!(!exempt(&k("", "Pod")));
        assert!(!exempt(&k("apps", "ValidatingWebhookConfiguration")));
    }
}
