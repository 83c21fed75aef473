//! Label selectors with Kubernetes' full syntax (k8s.io/apimachinery/pkg/labels):
//! `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma = AND.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotEquals | Op::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

fn check_key(k: &str) -> Result<(), String> {
    let errs = crate::names::qualified_name(k);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("key: Invalid value: {k:?}: {}", errs.join("; ")))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    let errs = crate::names::label_value(v);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "values[0]: Invalid value: {v:?}: {}",
            errs.join("; ")
        ))
    }
}

impl Selector {
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses the string form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Selector { requirements: reqs })
    }

    /// From a `metav1.LabelSelector` (matchLabels + matchExpressions).
    pub fn from_label_selector(v: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("matchLabels[{k}] must be a string"))?;
                check_key(k)?;
                check_value(val)?;
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![val.to_string()],
                });
            }
        }
        for e in v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            check_key(&key)?;
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                o => return Err(format!("{o:?} is not a valid label selector operator")),
            };
            match op {
                Op::In | Op::NotIn if values.is_empty() => {
                    return Err("for 'in', 'notin' operators, values set can't be empty".into());
                }
                Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                    return Err("values set must be empty for exists and does not exist".into());
                }
                _ => {}
            }
            reqs.push(Requirement { key, op, values });
        }
        Ok(Selector { requirements: reqs })
    }
}

/// Kubernetes' `labels.Selector.String()`: requirements sorted by key, values sorted.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut reqs: Vec<&Requirement> = self.requirements.iter().collect();
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        let parts: Vec<String> = reqs
            .into_iter()
            .map(|r| {
                let mut vals = r.values.clone();
                vals.sort();
                match r.op {
                    Op::Equals => format!("{}={}", r.key, vals.join(",")),
                    Op::NotEquals => format!("{}!={}", r.key, vals.join(",")),
                    Op::In => format!("{} in ({})", r.key, vals.join(",")),
                    Op::NotIn => format!("{} notin ({})", r.key, vals.join(",")),
                    Op::Exists => r.key.clone(),
                    Op::DoesNotExist => format!("!{}", r.key),
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unexpected ')' in selector {s:?}"));
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("found '(', expected: ')' in selector {s:?}"));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_requirement(p: &str) -> Result<Requirement, String> {
    if let Some(k) = p.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Requirement {
            key: k.to_string(),
            op: Op::DoesNotExist,
            values: vec![],
        });
    }
    for (tok, op) in [("!=", Op::NotEquals), ("==", Op::Equals), ("=", Op::Equals)] {
        if let Some((k, v)) = p.split_once(tok) {
            let (k, v) = (k.trim(), v.trim());
            check_key(k)?;
            check_value(v)?;
            return Ok(Requirement {
                key: k.to_string(),
                op,
                values: vec![v.to_string()],
            });
        }
    }
    let words: Vec<&str> = p.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = words[0].trim();
        let rest = words[1].trim();
        let (op, list) = if let Some(r) = rest.strip_prefix("notin") {
            (Op::NotIn, r)
        } else if let Some(r) = rest.strip_prefix("in") {
            (Op::In, r)
        } else {
            return Err(format!(
                "found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
            ));
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("found '{list}', expected: '('"))?;
        check_key(key)?;
        // `()` is an empty set; otherwise every item counts, empty ones too: Kubernetes
        // reads `(,web)` as the empty value and `web`.
        if inner.trim().is_empty() {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        for v in &values {
            check_value(v)?;
        }
        return Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        });
    }
    check_key(p)?;
    Ok(Requirement {
        key: p.to_string(),
        op: Op::Exists,
        values: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches() {
        let cases = [
            ("app=web", &[("app", "web")][..], true),
            ("app==web", &[("app", "db")][..], false),
            ("app!=web", &[("app", "db")][..], true),
            ("app!=web", &[][..], true),
            ("tier in (fe, be)", &[("tier", "be")][..], true),
            ("tier notin (fe,be)", &[("tier", "be")][..], false),
            ("app", &[("app", "")][..], true),
            ("!app", &[("app", "x")][..], false),
            (
                "app=web,tier in (fe)",
                &[("app", "web"), ("tier", "fe")][..],
                true,
            ),
            ("app=web,tier in (fe)", &[("app", "web")][..], false),
            ("", &[][..], true),
        ];
        for (sel, labels, want) in cases {
            assert_eq!(
                Selector::parse(sel).unwrap().matches(&l(labels)),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for s in [
            "a in (",
            "a in ()",
            "a foo (b)",
            "Bad Key=x",
            "a=b c",
            "a=(x",
        ] {
            assert!(Selector::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn prints_like_kubernetes() {
        let s = Selector::from_label_selector(&json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]}]})).unwrap();
        assert_eq!(s.to_string(), "a=1,b=2,c in (x,y)");
        assert_eq!(
            Selector::parse("!x, y notin (b,a)").unwrap().to_string(),
            "!x,y notin (a,b)"
        );
    }

    #[test]
    fn from_label_selector_json() {
        let s = Selector::from_label_selector(&json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]})).unwrap();
        assert!(s.matches(&l(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "db")])));
        assert!(
            Selector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            )
            .is_err()
        );
    }
}
