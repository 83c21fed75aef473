//! Prometheus text exposition, as much as a scrape of `/metrics/resource` needs: each
//! sample's name, labels, value and optional timestamp (milliseconds).

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub at_ms: Option<i64>,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of `text`; comments and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(sample)
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = labels_of(inner)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let at_ms = fields.next().and_then(|t| t.parse().ok());
    (!name.is_empty()).then(|| Sample {
        name: name.to_string(),
        labels,
        value,
        at_ms,
    })
}

/// `k="v",…}` and what follows the closing brace.
fn labels_of(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((out, after));
        }
        let (key, after) = s.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim().to_string(), value));
        s = &after[1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_labels_escapes_and_timestamps() {
        let text = "# HELP x y\n# TYPE x counter\ncontainer_cpu_usage_seconds_total{container=\"c\",namespace=\"d\",pod=\"p\\\"q\"} 1.5 1700000010000\nnode_cpu_usage_seconds_total 10 1700000010000\nresource_scrape_error 0\nbad line here\n";
        let s = parse(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].name, "container_cpu_usage_seconds_total");
        assert_eq!(s[0].label("pod"), Some("p\"q"));
        assert_eq!(s[0].label("container"), Some("c"));
        assert_eq!((s[0].value, s[0].at_ms), (1.5, Some(1_700_000_010_000)));
        assert_eq!((s[1].labels.len(), s[1].value), (0, 10.0));
        assert_eq!(s[2].at_ms, None);
    }
}
