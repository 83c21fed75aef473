//! client-go's JSONPath dialect (`k8s.io/client-go/util/jsonpath`), the one
//! kube-apiserver evaluates additionalPrinterColumns with: parsed as client-go's
//! `parser.go` parses it (same grammar, same errors), then evaluated by translating the
//! path into RFC 9535 for `jsonpath-rust` (see [`to_rfc9535`]).

/// One node of a parsed action, as client-go's `node.go` has them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Text(String),
    Field(String),
    Wildcard,
    Recursive,
    Array([Param; 3]),
    Union(Vec<Vec<Node>>),
    /// `op` is `exists` for `[?(@.x)]`.
    Filter {
        left: Vec<Node>,
        op: String,
        right: Vec<Node>,
    },
    Int(i64),
    Float(f64),
    Bool(bool),
    Identifier(String),
}

/// A slice bound: `[start:end:step]`; `[i]` is `[i:i+1]` with a derived end.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Param {
    pub known: bool,
    pub value: i64,
    pub derived: bool,
}

/// A template's top level: text, and actions between `{` and `}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Top {
    Text(String),
    Action(Vec<Node>),
}

/// Parses a template (`{.status.phase}`) as client-go's `jsonpath.Parse` does.
pub(crate) fn parse(text: &str) -> Result<Vec<Top>, String> {
    let mut p = Parser {
        input: text.chars().collect(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        let start = p.pos;
        while p.peek().is_some() && p.peek() != Some('{') {
            p.pos += 1;
        }
        if p.pos > start {
            out.push(Top::Text(p.slice(start, p.pos)));
        }
        if p.peek().is_none() {
            return Ok(out);
        }
        p.pos += 1;
        out.push(Top::Action(p.action()?));
    }
}

/// client-go's `parseAction`: the nodes of `{text}`.
fn parse_action(text: &str) -> Result<Vec<Node>, String> {
    match parse(&format!("{{{text}}}"))?.into_iter().next() {
        Some(Top::Action(nodes)) => Ok(nodes),
        _ => Ok(Vec::new()),
    }
}

struct Parser {
    input: Vec<char>,
    pos: usize,
}

fn is_terminator(r: Option<char>) -> bool {
    matches!(
        r,
        None | Some(' ' | '\t' | '\r' | '\n' | '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}')
    )
}

fn is_alphanumeric(r: char) -> bool {
    r == '_' || r.is_alphanumeric()
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let r = self.peek();
        self.pos += usize::from(r.is_some());
        r
    }

    fn at(&self, prefix: &str) -> bool {
        prefix
            .chars()
            .enumerate()
            .all(|(i, c)| self.input.get(self.pos + i) == Some(&c))
    }

    fn slice(&self, from: usize, to: usize) -> String {
        self.input[from..to].iter().collect()
    }

    /// Whether the character before the one just read is a backslash.
    fn escaped(&self) -> bool {
        self.pos >= 2 && self.input[self.pos - 2] == '\\'
    }

    /// `parseInsideAction` up to the closing `}`.
    fn action(&mut self) -> Result<Vec<Node>, String> {
        let mut cur = Vec::new();
        loop {
            if self.at("}") {
                self.pos += 1;
                return Ok(cur);
            } else if self.at("[?(") {
                cur.push(self.filter()?);
            } else if self.at("..") {
                self.recursive(&mut cur)?;
            } else {
                self.inside_action(&mut cur)?;
            }
        }
    }

    fn inside_action(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        let start = self.pos;
        match self.next() {
            None | Some('\r' | '\n') => return Err("unclosed action".into()),
            Some(' ' | '@' | '$') => {}
            Some('[') => cur.extend(self.array(start)?),
            Some(q @ ('"' | '\'')) => cur.push(self.quote(start, q)?),
            Some('.') => cur.push(self.field()),
            Some(r) if r == '+' || r == '-' || r.is_ascii_digit() => {
                self.pos = start;
                cur.push(self.number()?);
            }
            Some(r) if is_alphanumeric(r) => {
                self.pos = start;
                cur.push(self.identifier());
            }
            Some(r) => {
                return Err(format!(
                    "unrecognized character in action: U+{:04X} '{r}'",
                    r as u32
                ));
            }
        }
        Ok(())
    }

    fn identifier(&mut self) -> Node {
        let start = self.pos;
        while !is_terminator(self.peek()) {
            self.pos += 1;
        }
        match self.slice(start, self.pos).as_str() {
            "true" => Node::Bool(true),
            "false" => Node::Bool(false),
            v => Node::Identifier(v.to_string()),
        }
    }

    fn recursive(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        if cur.last() == Some(&Node::Recursive) {
            return Err("invalid multiple recursive descent".into());
        }
        self.pos += 2;
        cur.push(Node::Recursive);
        if self.peek().is_some_and(is_alphanumeric) {
            cur.push(self.field());
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Node, String> {
        let start = self.pos;
        if matches!(self.peek(), Some('+' | '-')) {
            self.pos += 1;
        }
        while self.peek().is_some_and(|r| r == '.' || r.is_ascii_digit()) {
            self.pos += 1;
        }
        let value = self.slice(start, self.pos);
        if let Ok(i) = value.parse::<i64>() {
            return Ok(Node::Int(i));
        }
        value
            .parse::<f64>()
            .map(Node::Float)
            .map_err(|_| format!("cannot parse number {value}"))
    }

    /// `[...]`: a union, a quoted key or an index or slice.
    fn array(&mut self, start: usize) -> Result<Vec<Node>, String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated array".into()),
                Some(']') => break,
                Some(_) => {}
            }
        }
        let text = match self.slice(start + 1, self.pos - 1) {
            t if t == "*" => ":".to_string(),
            t => t,
        };
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() > 1 {
            let union = parts
                .iter()
                .map(|s| parse_action(&format!("[{}]", s.trim_matches(' '))))
                .collect::<Result<_, _>>()?;
            return Ok(vec![Node::Union(union)]);
        }
        let quoted = text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'');
        if quoted && !text[1..text.len() - 1].contains('\'') {
            return parse_action(&format!(".{}", &text[1..text.len() - 1]));
        }
        slice_params(&text).map(|p| vec![Node::Array(p)])
    }

    /// `[?(left op right)]` or `[?(path)]`.
    fn filter(&mut self) -> Result<Node, String> {
        self.pos += 3;
        let start = self.pos;
        let (mut begin, mut end, mut pair) = (false, false, '"');
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated filter".into()),
                Some(q @ ('"' | '\'')) if !begin => (begin, pair) = (true, q),
                Some(q @ ('"' | '\'')) => end |= !self.escaped() && q == pair,
                Some(')') if begin == end => break,
                Some(_) => {}
            }
        }
        if self.next() != Some(']') {
            return Err("unclosed array expect ]".into());
        }
        let text = self.slice(start, self.pos - 2);
        match split_comparison(&text) {
            Some((l, op, r)) => Ok(Node::Filter {
                left: parse_action(l)?,
                op: op.to_string(),
                right: parse_action(r)?,
            }),
            None => Ok(Node::Filter {
                left: parse_action(&text)?,
                op: "exists".into(),
                right: Vec::new(),
            }),
        }
    }

    fn quote(&mut self, start: usize, end: char) -> Result<Node, String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated quoted string".into()),
                Some(c) if c == end && !self.escaped() => break,
                Some(_) => {}
            }
        }
        let value = self.slice(start, self.pos);
        unquote(&value)
            .map(Node::Text)
            .ok_or_else(|| format!("unquote string {value} error invalid syntax"))
    }

    /// A field name up to the next unescaped terminator; `*` is the wildcard.
    fn field(&mut self) -> Node {
        let start = self.pos;
        loop {
            match self.peek() {
                Some('\\') => self.pos = (self.pos + 2).min(self.input.len()),
                r if is_terminator(r) => break,
                _ => self.pos += 1,
            }
        }
        match self.slice(start, self.pos) {
            v if v == "*" => Node::Wildcard,
            v => Node::Field(v.replace('\\', "")),
        }
    }
}

/// client-go's filter regexp `^([^!<>=]+)([!<>=]+)(.+?)$`.
fn split_comparison(text: &str) -> Option<(&str, &str, &str)> {
    let is_op = |c: char| matches!(c, '!' | '<' | '>' | '=');
    let i = text.find(is_op).filter(|i| *i > 0)?;
    let run = text[i..].find(|c| !is_op(c)).map_or(text.len(), |n| i + n);
    // The operator run gives back its last character when nothing follows it.
    let j = if run == text.len() { run - 1 } else { run };
    (j > i).then(|| (&text[..i], &text[i..j], &text[j..]))
}

/// client-go's slice regexp `^(-?\d*)(:-?\d*)?(:-?\d*)?$` and its reading of the parts.
fn slice_params(text: &str) -> Result<[Param; 3], String> {
    let groups: Vec<&str> = text.split(':').collect();
    let number = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        digits.chars().all(|c| c.is_ascii_digit())
    };
    if groups.len() > 3 || !groups.iter().all(|g| number(g)) {
        return Err(format!("invalid array index {text}"));
    }
    let mut params = [Param::default(); 3];
    for (p, g) in params.iter_mut().zip(&groups) {
        if !g.is_empty() {
            let value = g
                .parse()
                .map_err(|_| format!("array index {g} is not a number"))?;
            *p = Param {
                known: true,
                value,
                derived: false,
            };
        }
    }
    if groups.len() == 1 {
        // `[i]` is `[i:i+1]`.
        params[1] = Param {
            known: true,
            value: params[0].value + 1,
            derived: true,
        };
    }
    Ok(params)
}

/// Go's `UnquoteExtend`: a double- or single-quoted string with Go's escapes.
fn unquote(s: &str) -> Option<String> {
    let quote = s.chars().next()?;
    let body = s.get(1..s.len().checked_sub(1)?)?;
    if !s.ends_with(quote) || s.len() < 2 {
        return None;
    }
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(unescape(&mut chars, quote)?),
            c if c == quote => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// One escape of Go's `strconv.UnquoteChar`, the backslash read.
fn unescape(chars: &mut std::str::Chars, quote: char) -> Option<char> {
    Some(match chars.next()? {
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        '\\' => '\\',
        'x' => hex(chars, 2)?,
        'u' => hex(chars, 4)?,
        'U' => hex(chars, 8)?,
        q @ ('\'' | '"') if q == quote => q,
        _ => return None,
    })
}

/// The character of the next `n` hex digits.
fn hex(chars: &mut std::str::Chars, n: usize) -> Option<char> {
    let digits: String = chars.take(n).collect();
    if digits.len() != n {
        return None;
    }
    u32::from_str_radix(&digits, 16)
        .ok()
        .and_then(char::from_u32)
}

/// The RFC 9535 query for an action's nodes, or `None` for what only client-go
/// evaluates (text, literals and identifiers outside filters, a trailing `..`, slices
/// with a step, filter operators client-go rejects); kube's cell is then null or text
/// this printer leaves null.
pub(crate) fn to_rfc9535(nodes: &[Node]) -> Option<String> {
    path("$", nodes)
}

fn path(root: &str, nodes: &[Node]) -> Option<String> {
    let mut q = root.to_string();
    let mut descend = false;
    for n in nodes {
        if *n == Node::Recursive {
            descend = true;
            continue;
        }
        q.push_str(if descend { ".." } else { "" });
        q.push_str(&segment(n)?);
        descend = false;
    }
    (!descend).then_some(q)
}

/// One bracketed segment.
fn segment(n: &Node) -> Option<String> {
    match n {
        Node::Filter { left, op, right } => filter(left, op, right),
        Node::Union(lists) => {
            let sels: Option<Vec<String>> = lists.iter().map(|l| union_member(l)).collect();
            Some(format!("[{}]", sels?.join(",")))
        }
        n => selector(n).map(|s| format!("[{s}]")),
    }
}

fn union_member(list: &[Node]) -> Option<String> {
    match list {
        [n] => selector(n),
        _ => None,
    }
}

/// A name, wildcard, index or slice selector.
fn selector(n: &Node) -> Option<String> {
    match n {
        Node::Field(name) => Some(name_literal(name)),
        Node::Wildcard => Some("*".into()),
        Node::Array([start, end, step]) => {
            if step.known {
                return None;
            }
            let bound = |p: &Param| {
                if p.known {
                    p.value.to_string()
                } else {
                    String::new()
                }
            };
            Some(if end.derived {
                start.value.to_string()
            } else {
                format!("{}:{}", bound(start), bound(end))
            })
        }
        _ => None,
    }
}

/// A member name as an RFC 9535 single-quoted string literal.
fn name_literal(name: &str) -> String {
    let mut out = String::from("'");
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn filter(left: &[Node], op: &str, right: &[Node]) -> Option<String> {
    if op == "exists" {
        return Some(format!("[?{}]", path("@", left)?));
    }
    if !matches!(op, "==" | "!=" | "<" | ">" | "<=" | ">=") {
        return None;
    }
    Some(format!("[?{}{op}{}]", operand(left)?, operand(right)?))
}

/// A filter operand: a literal or a path from the current element.
fn operand(nodes: &[Node]) -> Option<String> {
    match nodes {
        [Node::Text(s)] => serde_json::to_string(s).ok(),
        [Node::Int(i)] => Some(i.to_string()),
        [Node::Float(f)] => Some(f.to_string()),
        [Node::Bool(b)] => Some(b.to_string()),
        nodes => path("@", nodes),
    }
}
