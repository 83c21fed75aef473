//! Field selectors (`a=b`, `a==b`, `a!=b`, comma = AND; `\,` `\=` `\\` escapes) and the
//! fields each kind exposes to them (pkg/registry/*/strategy.go `GetAttrs`, and the field
//! label conversions in pkg/apis/*/v1/conversion.go).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if esc {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                Some(n) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{n}"
                    ));
                }
                None => return Err("invalid field selector: unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_escaped(s, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            reqs.push(Requirement {
                field: field.trim().to_string(),
                value: unescape(value.trim())?,
                negate,
            });
        }
        Ok(Selector { requirements: reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = fields(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }
}

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Fields a kind supports beyond metadata.name and metadata.namespace.
pub fn kind_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "secrets") => &["type"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        _ => &[],
    }
}

/// The value of a selectable field of an object (the events.k8s.io view of events is
/// computed from the stored core fields).
pub fn field_value(group: &str, resource: &str, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return s(&obj["metadata"]["name"]),
        "metadata.namespace" => return s(&obj["metadata"]["namespace"]),
        _ => {}
    }
    if !kind_fields(group, resource).contains(&field) {
        return None;
    }
    match (group, resource, field) {
        ("", "pods", "spec.hostNetwork") => Some(
            obj["spec"]["hostNetwork"]
                .as_bool()
                .unwrap_or(false)
                .to_string(),
        ),
        ("", "pods", "status.podIPs") => Some(
            obj["status"]["podIPs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i["ip"].as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        ),
        ("", "events", "source") => s(&obj["source"]["component"]),
        ("", "nodes", "spec.unschedulable") => Some(
            obj["spec"]["unschedulable"]
                .as_bool()
                .unwrap_or(false)
                .to_string(),
        ),
        ("events.k8s.io", "events", f) => {
            let core = match f {
                "reportingController" => "reportingComponent".to_string(),
                f => f.replacen("regarding.", "involvedObject.", 1),
            };
            dotted(obj, &core)
        }
        (_, _, f) => dotted(obj, f),
    }
}

fn dotted(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for p in path.split('.') {
        cur = cur.get(p)?;
    }
    s(cur)
}

/// Kubernetes' error for an unsupported field.
pub fn check_supported(group: &str, resource: &str, selector: &Selector) -> Result<(), String> {
    for r in &selector.requirements {
        if r.field == "metadata.name"
            || r.field == "metadata.namespace"
            || kind_fields(group, resource).contains(&r.field.as_str())
        {
            continue;
        }
        return Err(format!("field label not supported: {}", r.field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubectl_describe_event_selector() {
        let sel = Selector::parse(
            "involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=u-1",
        )
        .unwrap();
        check_supported("", "events", &sel).unwrap();
        let ev = json!({"involvedObject": {"name": "web", "namespace": "default", "uid": "u-1"}});
        assert!(sel.matches(&|f| field_value("", "events", &ev, f)));
        let other =
            json!({"involvedObject": {"name": "web", "namespace": "default", "uid": "u-2"}});
        assert!(!sel.matches(&|f| field_value("", "events", &other, f)));
    }

    #[test]
    fn pods_and_negation_and_escapes() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = |sel: &str| {
            Selector::parse(sel)
                .unwrap()
                .matches(&|x| field_value("", "pods", &pod, x))
        };
        assert!(f("spec.nodeName=n1"));
        assert!(f("spec.nodeName!=n2,status.phase=Running"));
        assert!(!f("status.phase==Pending"));
        assert!(f("spec.schedulerName="));
        assert_eq!(
            Selector::parse(r"metadata.name=a\,b").unwrap().requirements[0].value,
            "a,b"
        );
        assert!(Selector::parse("nonsense").is_err());
        assert_eq!(
            check_supported("", "pods", &Selector::parse("spec.bogus=x").unwrap()).unwrap_err(),
            "field label not supported: spec.bogus"
        );
    }
}
