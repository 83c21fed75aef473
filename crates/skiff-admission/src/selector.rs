//! metav1.LabelSelector, read and matched as `LabelSelectorAsSelector` does.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<RawRequirement>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct RawRequirement {
    #[serde(default)]
    key: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

impl Selector {
    /// Parses a `metav1.LabelSelector` (`None` or `{}` selects everything).
    pub fn parse(v: Option<&Value>) -> Result<Selector, String> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Selector::default());
        };
        let raw: Raw = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let mut reqs: Vec<Requirement> = raw
            .match_labels
            .into_iter()
            .map(|(key, val)| Requirement {
                key,
                op: Op::In,
                values: vec![val],
            })
            .collect();
        for r in raw.match_expressions {
            reqs.push(requirement(r)?);
        }
        Ok(Selector { reqs })
    }

    /// True for the selector that selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| {
            let v = labels.get(&r.key);
            match r.op {
                Op::In => v.is_some_and(|v| r.values.contains(v)),
                Op::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
}

fn requirement(r: RawRequirement) -> Result<Requirement, String> {
    let op = match r.operator.as_str() {
        "In" => Op::In,
        "NotIn" => Op::NotIn,
        "Exists" => Op::Exists,
        "DoesNotExist" => Op::DoesNotExist,
        other => return Err(format!("{other:?} is not a valid label selector operator")),
    };
    let needs_values = matches!(op, Op::In | Op::NotIn);
    if needs_values && r.values.is_empty() {
        return Err("for 'in', 'notin' operators, values set can't be empty".into());
    }
    if !needs_values && !r.values.is_empty() {
        return Err("values set must be empty for exists and does not exist".into());
    }
    Ok(Requirement {
        key: r.key,
        op,
        values: r.values,
    })
}

/// The labels of an object (`metadata.labels`), empty when it has none.
pub(crate) fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    skiff_types::meta::string_map(obj.get("metadata").and_then(|m| m.get("labels")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators() {
        let s = Selector::parse(Some(&json!({
            "matchLabels": {"a": "1"},
            "matchExpressions": [
                {"key": "b", "operator": "NotIn", "values": ["x"]},
                {"key": "c", "operator": "DoesNotExist"}
            ]
        })))
        .unwrap();
        let l = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(s.matches(&l(&[("a", "1")])));
        assert!(s.matches(&l(&[("a", "1"), ("b", "y")])));
        assert!(!s.matches(&l(&[("a", "1"), ("b", "x")])));
        assert!(!s.matches(&l(&[("a", "1"), ("c", "")])));
        assert!(!s.matches(&l(&[])));
        assert!(Selector::parse(Some(&json!({}))).unwrap().is_empty());
        assert!(
            Selector::parse(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            ))
            .is_err()
        );
    }
}
