//! Field selectors as apimachinery's `fields.ParseSelector` reads them: terms split on
//! unescaped commas, each `field=value`, `field==value` or `field!=value`, values
//! unescaped (`\,`, `\=`, `\\`).

use std::borrow::Cow;

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'a> {
    pub field: &'a str,
    /// `=` and `==` (kube's `selection.Equals`); false for `!=`.
    pub equals: bool,
    pub value: Cow<'a, str>,
}

/// The terms of `selector`, or `None` when it does not parse (kube then has no
/// requirements either: the authorizer ignores the parse error).
pub fn parse(selector: &str) -> Option<Vec<Requirement<'_>>> {
    split_terms(selector)
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(parse_term)
        .collect()
}

/// The value `selector` requires `field` to equal, if any (kube's `RequiresExactMatch`).
pub fn exact_match<'a>(selector: &'a str, field: &str) -> Option<Cow<'a, str>> {
    parse(selector)?
        .into_iter()
        .find(|r| r.equals && r.field == field)
        .map(|r| r.value)
}

fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in selector.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn parse_term(term: &str) -> Option<Requirement<'_>> {
    const OPERATORS: [&str; 3] = ["!=", "==", "="];
    let (i, op) = term.char_indices().find_map(|(i, _)| {
        OPERATORS
            .iter()
            .find(|op| term[i..].starts_with(**op))
            .map(|op| (i, *op))
    })?;
    Some(Requirement {
        field: &term[..i],
        equals: op != "!=",
        value: unescape(&term[i + op.len()..])?,
    })
}

fn unescape(value: &str) -> Option<Cow<'_, str>> {
    if !value.contains('\\') {
        return Some(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            e @ ('\\' | ',' | '=') => out.push(e),
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}
