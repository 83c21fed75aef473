//! Ingress path matching as Kubernetes defines it (the table in the Ingress docs):
//! `Exact` is the whole path, case-sensitive; `Prefix` matches by path element (`/aaa/bb`
//! does not match `/aaa/bbb`), a trailing slash on either side ignored;
//! `ImplementationSpecific` is a plain string prefix, as Traefik (k3s' controller) reads it.
//! When several match, the longest path wins, and `Exact` over `Prefix` at equal length.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

impl PathType {
    /// `spec.rules[].http.paths[].pathType`; validation makes it required, so anything
    /// else is read as the implementation's own.
    pub fn parse(s: &str) -> PathType {
        match s {
            "Exact" => PathType::Exact,
            "Prefix" => PathType::Prefix,
            _ => PathType::ImplementationSpecific,
        }
    }
}

/// One path of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMatch {
    pub path: String,
    pub kind: PathType,
}

impl PathMatch {
    pub fn new(path: &str, kind: PathType) -> PathMatch {
        // An empty path (allowed for ImplementationSpecific) matches everything.
        let path = if path.is_empty() { "/" } else { path };
        PathMatch {
            path: path.to_string(),
            kind,
        }
    }

    /// Whether a request for `request_path` (no query) matches.
    pub fn matches(&self, request_path: &str) -> bool {
        match self.kind {
            PathType::Exact => request_path == self.path,
            PathType::ImplementationSpecific => request_path.starts_with(&self.path),
            PathType::Prefix => prefix_matches(&self.path, request_path),
        }
    }

    /// The order in which candidates are tried: longest path first, then `Exact`.
    pub fn precedence(&self, other: &PathMatch) -> Ordering {
        let len = |p: &PathMatch| p.path.trim_end_matches('/').len();
        len(other)
            .cmp(&len(self))
            .then_with(|| (other.kind == PathType::Exact).cmp(&(self.kind == PathType::Exact)))
    }
}

/// Element-wise prefix: `/foo/` and `/foo` both match `/foo`, `/foo/` and `/foo/bar`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return path.starts_with('/') || path.is_empty();
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathType::{Exact, ImplementationSpecific, Prefix};

    /// One case: the rules, a request, the rule that wins (or none).
    type Case = (
        &'static [(PathType, &'static str)],
        &'static str,
        Option<usize>,
    );

    /// The Ingress docs' examples.
    #[test]
    fn the_docs_table_of_matches() {
        let cases: &[Case] = &[
            (&[(Prefix, "/")], "/anything/at/all", Some(0)),
            (&[(Exact, "/foo")], "/foo", Some(0)),
            (&[(Exact, "/foo")], "/bar", None),
            (&[(Exact, "/foo")], "/foo/", None),
            (&[(Exact, "/foo/")], "/foo", None),
            (&[(Prefix, "/foo")], "/foo", Some(0)),
            (&[(Prefix, "/foo")], "/foo/", Some(0)),
            (&[(Prefix, "/foo/")], "/foo", Some(0)),
            (&[(Prefix, "/foo/")], "/foo/", Some(0)),
            (&[(Prefix, "/aaa/bb")], "/aaa/bbb", None),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbb", Some(0)),
            (&[(Prefix, "/aaa/bbb/")], "/aaa/bbb", Some(0)),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/", Some(0)),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/ccc", Some(0)),
            (&[(Prefix, "/aaa/bbb")], "/aaabbb", None),
            (&[(Prefix, "/"), (Prefix, "/aaa")], "/aaa/ccc", Some(1)),
            (
                &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
                "/aaa/bbb",
                Some(2),
            ),
            (
                &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
                "/ccc",
                Some(0),
            ),
            (&[(Prefix, "/aaa")], "/ccc", None),
            (&[(Prefix, "/foo"), (Exact, "/foo")], "/foo", Some(1)),
            (&[(Exact, "/foo"), (Prefix, "/foo")], "/foo", Some(0)),
            (&[(Exact, "/foo"), (Prefix, "/foo")], "/foo/x", Some(1)),
            (&[(ImplementationSpecific, "/foo")], "/foobar", Some(0)),
            (&[(ImplementationSpecific, "")], "/x", Some(0)),
        ];
        for (rules, request, want) in cases {
            let rules: Vec<_> = rules.iter().map(|(k, p)| PathMatch::new(p, *k)).collect();
            let mut order: Vec<usize> = (0..rules.len()).collect();
            order.sort_by(|a, b| rules[*a].precedence(&rules[*b]));
            let got = order.into_iter().find(|i| rules[*i].matches(request));
            assert_eq!(got, *want, "rules {rules:?}, request {request}");
        }
    }
}
