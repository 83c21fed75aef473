//! `x-kubernetes-validations`: rules read and compiled with the schema, evaluated with
//! `self` (and `oldSelf` for transition rules) bound to the value at their node, errors
//! worded as apiextensions' CEL validator words them.
//!
//! Kubernetes' CEL environment is approximated on cel-rust: the standard library with
//! its macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`), `matches`,
//! the strings and lists extensions (`lowerAscii`, `upperAscii`, `split`, `join`, `trim`,
//! `replace`, `indexOf` on strings, `slice`, `flatten`, `sort` …) and kube's list
//! additions `isSorted`, `sum`, `min`, `max`. Not provided: `url()`, `quantity()`,
//! `ip()`, `cidr()`, `semver()`, list `indexOf`; strings with formats date-time,
//! duration and byte stay strings. cel-rust does not type-check: [`check`] finds what
//! kube's checker reports most, fields the schema does not expose ("undefined field"),
//! when the CRD is written; other type errors (`self.name > 1`) show only when a rule
//! is evaluated, and no cost limits are estimated or enforced.
//!
//! Rules that hold are mostly found so on the fast path ([`fast`]), without building
//! CEL values; cel-rust evaluates the rest, and every rule that fails.

mod check;
pub(crate) mod fast;
mod reads;

use crate::node::Node;
use crate::path::{child, index};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelOptional, CelString,
};
use cel::common::value::Val;
use cel::extractors::This;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use reads::Reads;
use serde_json::{Value, json};
use skiff_types::{FieldError, FieldErrorType};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// One rule of `x-kubernetes-validations`, compiled.
pub(crate) struct Rule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub reason: Option<String>,
    pub field_path: String,
    pub optional_old_self: Option<bool>,
    /// The rule as kube shows it in errors about it.
    pub raw: Value,
    pub program: Option<Program>,
    pub compile_error: Option<String>,
    pub message_program: Option<Program>,
    pub message_compile_error: Option<String>,
    pub uses_old_self: bool,
    /// What the rule and its messageExpression read of `self` and of `oldSelf`.
    pub reads: RuleReads,
    /// The rule on the fast path, when all of it has one (see [`fast`]).
    pub fast: Option<fast::Fast>,
}

/// What rules read of `self` and of `oldSelf` (see [`reads`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RuleReads {
    pub this: Reads,
    pub old: Reads,
}

impl RuleReads {
    fn add(&mut self, p: &Program) {
        self.this.merge(&reads::of(p.expression(), "self"));
        self.old.merge(&reads::of(p.expression(), "oldSelf"));
    }

    /// All of both, as if no rule had been analysed.
    #[cfg(test)]
    pub(crate) fn everything() -> RuleReads {
        RuleReads {
            this: Reads::everything(),
            old: Reads::everything(),
        }
    }

    /// What all of `rules` read: the values bound once for all of a node's rules.
    pub(crate) fn union(rules: &[Rule]) -> RuleReads {
        let mut r = RuleReads::default();
        for rule in rules {
            r.this.merge(&rule.reads.this);
            r.old.merge(&rule.reads.old);
        }
        r
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("rule", &self.rule).finish()
    }
}

const REASONS: [&str; 4] = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// Parse errors as cel-go renders them (` | ` before the line and the caret).
fn shown(e: &cel::ParseErrors) -> String {
    let issues: Vec<String> = e
        .errors
        .iter()
        .map(|x| {
            let source = x.source_info.as_ref().map_or("", |i| i.source.as_str());
            let pos = (x.pos.0.max(1) as usize, x.pos.1.max(1) as usize);
            check::issue(source, pos, &x.msg)
        })
        .collect();
    issues.join("\n")
}

/// The shared CEL environment (compiling and evaluating).
pub(crate) fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Both extensions only add overloads; failing to add one would be a bug here.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Arc::new(env)
    })
}

fn text(m: &serde_json::Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Rule {
    /// Reads (and compiles) a rule; shape problems go to `errs`.
    pub(crate) fn read(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Rule {
        let empty = serde_json::Map::new();
        let m = v.as_object().unwrap_or_else(|| {
            errs.push(FieldError::invalid(path, v.clone(), "must be an object"));
            &empty
        });
        let rule = text(m, "rule");
        let message_expression = text(m, "messageExpression");
        let mut r = Rule {
            message: text(m, "message"),
            reason: m.get("reason").and_then(Value::as_str).map(str::to_string),
            field_path: text(m, "fieldPath"),
            optional_old_self: m.get("optionalOldSelf").and_then(Value::as_bool),
            raw: json!({
                "rule": rule,
                "message": text(m, "message"),
                "messageExpression": message_expression,
                "reason": m.get("reason").cloned().unwrap_or(Value::Null),
                "fieldPath": text(m, "fieldPath"),
                "optionalOldSelf": m.get("optionalOldSelf").cloned().unwrap_or(Value::Null),
            }),
            program: None,
            compile_error: None,
            message_program: None,
            message_compile_error: None,
            uses_old_self: false,
            reads: RuleReads::default(),
            fast: None,
            rule,
            message_expression,
        };
        r.compile();
        r
    }

    fn compile(&mut self) {
        if !self.rule.trim().is_empty() {
            match env().compile(&self.rule) {
                Ok(p) => {
                    self.uses_old_self = p.references().has_variable("oldSelf");
                    self.reads.add(&p);
                    // An optional oldSelf is an optional value, which the fast path
                    // does not have.
                    if self.optional_old_self != Some(true) {
                        self.fast = fast::compile(p.expression());
                    }
                    self.program = Some(p);
                }
                Err(e) => self.compile_error = Some(format!("compilation failed: {}", shown(&e))),
            }
        }
        if !self.message_expression.trim().is_empty() {
            match env().compile(&self.message_expression) {
                Ok(p) => {
                    self.reads.add(&p);
                    self.message_program = Some(p)
                }
                Err(e) => {
                    self.message_compile_error = Some(format!(
                        "messageExpression compilation failed: {}",
                        shown(&e)
                    ))
                }
            }
        }
    }

    /// The CRD-level checks of the rule's fields (apiextensions' validation.go).
    pub(crate) fn check(&self, path: &str, errs: &mut Vec<FieldError>) {
        let msg = self.message.trim();
        let has_nl = |s: &str| s.contains('\n');
        if self.rule.trim().is_empty() {
            errs.push(FieldError::required(
                child(path, "rule"),
                "rule is not specified",
            ));
        } else if !self.message.is_empty() && msg.is_empty() {
            errs.push(FieldError::invalid(
                child(path, "message"),
                json!(self.message),
                "must be non-empty if specified",
            ));
        } else if has_nl(msg) {
            errs.push(FieldError::invalid(
                child(path, "message"),
                json!(self.message),
                "must not contain line breaks",
            ));
        } else if has_nl(self.rule.trim()) && msg.is_empty() {
            errs.push(FieldError::required(
                child(path, "message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if !self.message_expression.is_empty() && self.message_expression.trim().is_empty() {
            errs.push(FieldError::required(
                child(path, "messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = self.reason.as_deref().filter(|r| !REASONS.contains(r)) {
            errs.push(FieldError::not_supported(
                child(path, "reason"),
                json!(reason),
                &REASONS,
            ));
        }
        if !self.field_path.is_empty() && self.field_path.trim().is_empty() {
            errs.push(FieldError::invalid(
                child(path, "fieldPath"),
                json!(self.field_path),
                "must be non-empty if specified",
            ));
        }
        if has_nl(&self.field_path) {
            errs.push(FieldError::invalid(
                child(path, "fieldPath"),
                json!(self.field_path),
                "must not contain line breaks",
            ));
        }
    }

    /// Compilation problems (fields the schema at `node` does not expose among them),
    /// and oldSelf where it cannot be correlated.
    pub(crate) fn check_compiled(
        &self,
        path: &str,
        (node, resource): (&Node, bool),
        uncorrelatable: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        let optional = self.optional_old_self == Some(true);
        let undefined = |p: &Option<Program>| {
            let p = p.as_ref()?;
            check::undefined_fields(p.expression(), p.source_info(), node, resource, optional)
        };
        let rule_error = self
            .compile_error
            .clone()
            .or_else(|| undefined(&self.program).map(|e| format!("compilation failed: {e}")));
        if let Some(e) = rule_error {
            errs.push(FieldError::invalid(
                child(path, "rule"),
                self.raw.clone(),
                e,
            ));
        }
        let message_error = self.message_compile_error.clone().or_else(|| {
            undefined(&self.message_program)
                .map(|e| format!("messageExpression compilation failed: {e}"))
        });
        if let Some(e) = message_error {
            errs.push(FieldError::invalid(
                child(path, "messageExpression"),
                self.raw.clone(),
                e,
            ));
        }
        if self.program.is_none() {
            return;
        }
        if self.uses_old_self {
            if let Some(p) = uncorrelatable {
                errs.push(FieldError::invalid(
                    child(path, "rule"),
                    json!(self.rule),
                    format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {p}"),
                ));
            }
        } else if let Some(o) = self.optional_old_self {
            errs.push(FieldError::invalid(
                child(path, "optionalOldSelf"),
                json!(o),
                "may not be set if oldSelf is not used in rule",
            ));
        }
    }

    /// `message` trimmed, or `failed rule: <rule>`.
    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.rule_error_string())
        } else {
            self.message.trim().to_string()
        }
    }

    fn rule_error_string(&self) -> String {
        if self.message.is_empty() {
            self.rule.trim().to_string()
        } else {
            self.message.trim().to_string()
        }
    }
}

/// kube's `x-kubernetes-validations` property-name escaping: `None` when the name
/// cannot be accessed from CEL at all; borrowed when escaping leaves it as it is (the
/// common case, which then costs no allocation).
fn escaped(name: &str) -> Option<Cow<'_, str>> {
    const RESERVED: [&str; 22] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
        "__proto__",
    ];
    if RESERVED.contains(&name) {
        return Some(Cow::Owned(format!("__{name}__")));
    }
    let ok_first = |c: char| c.is_ascii_alphabetic() || "_.-/".contains(c);
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
    let mut chars = name.chars();
    if !chars.next().is_some_and(ok_first) || !chars.all(ok_rest) {
        return None;
    }
    if !name.contains(['.', '-', '/']) && !name.contains("__") {
        return Some(Cow::Borrowed(name));
    }
    Some(Cow::Owned(
        name.replace("__", "__underscores__")
            .replace('.', "__dot__")
            .replace('-', "__dash__")
            .replace('/', "__slash__"),
    ))
}

/// A CEL value, borrowing the JSON's strings.
type CelVal<'a> = Box<dyn Val + 'a>;

/// Map entries under construction; only the fields `reads` reads are converted.
struct Entries<'a, 'r> {
    reads: &'r Reads,
    map: HashMap<CelMapKey<'a>, CelVal<'a>>,
}

impl<'a> Entries<'a, '_> {
    fn new(reads: &Reads) -> Entries<'a, '_> {
        Entries {
            reads,
            map: HashMap::new(),
        }
    }

    /// Adds `name` (a CEL name) if it is read, converting `v` under `n`.
    fn add(&mut self, name: Cow<'a, str>, v: &'a Value, n: Option<&Node>) {
        if let Some(r) = self.reads.field(&name) {
            self.insert(name, to_val(v, n, false, r));
        }
    }

    fn insert(&mut self, name: Cow<'a, str>, v: CelVal<'a>) {
        self.map.insert(CelMapKey::String(CelString::from(name)), v);
    }

    fn done(self) -> CelVal<'a> {
        Box::new(CelMap::from(self.map))
    }
}

/// A JSON value as CEL sees it under schema `n` (`root`: a resource root, whose
/// metadata shows only name and generateName), with only the parts `reads` reads:
/// the unread fields of objects are left out (lists and scalars convert whole).
pub(crate) fn to_val<'a>(v: &'a Value, n: Option<&Node>, root: bool, reads: &Reads) -> CelVal<'a> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(x) if fast::is_double(x, n) => {
            Box::new(CelDouble::from(x.as_f64().unwrap_or(0.0)))
        }
        Value::Number(x) => Box::new(CelInt::from(x.as_i64().unwrap_or_default())),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(a) => {
            let items = n.and_then(|n| n.items.as_deref());
            let all = Reads::everything();
            let list: Vec<CelVal<'a>> = a.iter().map(|x| to_val(x, items, false, &all)).collect();
            Box::new(CelList::from(list))
        }
        Value::Object(m) => object_to_val(m, n, root, reads),
    }
}

fn object_to_val<'a>(
    m: &'a serde_json::Map<String, Value>,
    n: Option<&Node>,
    root: bool,
    reads: &Reads,
) -> CelVal<'a> {
    let mut out = Entries::new(reads);
    let Some(n) = n else {
        raw_fields(m, None, &mut out);
        return out.done();
    };
    let resource = root || n.embedded;
    if resource {
        resource_fields(m, &mut out);
    }
    if let Some(ap) = n.additional_schema() {
        raw_fields(m, Some(ap), &mut out);
    } else if n.properties.is_empty() && !resource {
        raw_fields(m, None, &mut out);
    } else {
        property_fields(m, n, resource, &mut out);
    }
    out.done()
}

/// The fields of a map (or of an object without properties), named by their keys.
fn raw_fields<'a>(
    m: &'a serde_json::Map<String, Value>,
    n: Option<&Node>,
    out: &mut Entries<'a, '_>,
) {
    let Some(named) = out.reads.named() else {
        for (k, v) in m {
            out.add(Cow::Borrowed(k), v, n);
        }
        return;
    };
    // Only the fields read, found by name: an object may have many more.
    for (name, r) in named {
        if let Some((k, v)) = m.get_key_value(name) {
            out.insert(Cow::Borrowed(k), to_val(v, n, false, r));
        }
    }
}

/// The fields of an object with properties, named as kube escapes them; fields the
/// schema does not name, and those CEL cannot name, are left out.
fn property_fields<'a>(
    m: &'a serde_json::Map<String, Value>,
    n: &Node,
    resource: bool,
    out: &mut Entries<'a, '_>,
) {
    let is_meta = |k: &str| resource && ["apiVersion", "kind", "metadata"].contains(&k);
    // A name escaping leaves as it is can only be the CEL name of the field of that
    // very name (escaping changes a name into one with `__`): those are looked up
    // directly, not by escaping every field of the object.
    let direct = out.reads.named().filter(|named| {
        named
            .keys()
            .all(|k| matches!(escaped(k), Some(Cow::Borrowed(_))))
    });
    if let Some(named) = direct {
        for (name, r) in named {
            if let (Some((k, v)), Some(p)) = (m.get_key_value(name), n.properties.get(name))
                && !is_meta(k)
            {
                out.insert(Cow::Borrowed(k), to_val(v, Some(p), false, r));
            }
        }
        return;
    }
    for (k, v) in m {
        let Some(p) = n.properties.get(k) else {
            continue;
        };
        if is_meta(k) {
            continue;
        }
        if let Some(name) = escaped(k) {
            out.add(name, v, Some(p));
        }
    }
}

/// A resource's apiVersion, kind, and metadata showing only name and generateName.
fn resource_fields<'a>(m: &'a serde_json::Map<String, Value>, out: &mut Entries<'a, '_>) {
    for k in ["apiVersion", "kind"] {
        if let Some(v) = m.get(k) {
            out.add(Cow::Borrowed(k), v, None);
        }
    }
    if let Some(Value::Object(meta)) = m.get("metadata")
        && let Some(r) = out.reads.field("metadata")
    {
        let mut names = Entries::new(r);
        for k in ["name", "generateName"] {
            if let Some(v) = meta.get(k) {
                names.add(Cow::Borrowed(k), v, None);
            }
        }
        let key = CelMapKey::String(CelString::from("metadata"));
        out.map.insert(key, names.done());
    }
}

/// Kubernetes' list library functions cel-rust lacks.
fn add_kube_functions(ctx: &mut Context) {
    let _ = ctx.add_function(
        "isSorted",
        |This(l): This<Arc<Vec<Cel>>>| -> Result<bool, ExecutionError> {
            for w in l.windows(2) {
                match w[0].partial_cmp(&w[1]) {
                    Some(std::cmp::Ordering::Greater) => return Ok(false),
                    Some(_) => {}
                    None => {
                        return Err(ExecutionError::function_error(
                            "isSorted",
                            "values not comparable",
                        ));
                    }
                }
            }
            Ok(true)
        },
    );
    let _ = ctx.add_function(
        "sum",
        |This(l): This<Arc<Vec<Cel>>>| -> Result<Cel, ExecutionError> { sum(&l) },
    );
    let _ = ctx.add_function("min", |This(l): This<Arc<Vec<Cel>>>| {
        extreme(&l, "min", std::cmp::Ordering::Less)
    });
    let _ = ctx.add_function("max", |This(l): This<Arc<Vec<Cel>>>| {
        extreme(&l, "max", std::cmp::Ordering::Greater)
    });
}

fn sum(l: &[Cel]) -> Result<Cel, ExecutionError> {
    let (mut i, mut f, mut float) = (0i64, 0f64, false);
    for v in l {
        match v {
            Cel::Int(x) => {
                i = i
                    .checked_add(*x)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?
            }
            Cel::UInt(x) => i += *x as i64,
            Cel::Float(x) => {
                float = true;
                f += x
            }
            _ => return Err(ExecutionError::function_error("sum", "no such overload")),
        }
    }
    Ok(if float {
        Cel::Float(f + i as f64)
    } else {
        Cel::Int(i)
    })
}

fn extreme(l: &[Cel], name: &str, want: std::cmp::Ordering) -> Result<Cel, ExecutionError> {
    let mut best = l.first().ok_or_else(|| {
        ExecutionError::function_error(name, format!("{name} called on empty list"))
    })?;
    for v in &l[1..] {
        match v.partial_cmp(best) {
            Some(o) if o == want => best = v,
            Some(_) => {}
            None => {
                return Err(ExecutionError::function_error(
                    name,
                    "values not comparable",
                ));
            }
        }
    }
    Ok(best.clone())
}

/// What evaluation needs besides the node: the base context and the values.
pub(crate) struct Eval<'a> {
    pub path: &'a str,
    pub node: &'a Node,
    pub value: &'a Value,
    pub old: Option<&'a Value>,
    pub root: bool,
}

/// Evaluates the rules of `e.node` on its value, appending failures to `errs`.
pub(crate) fn evaluate(e: &Eval, errs: &mut Vec<FieldError>) {
    if e.value.is_null() || e.node.rules.is_empty() {
        return;
    }
    // Rules the fast path shows to hold need no CEL values at all.
    let quick = fast::Scope::new(e.node, e.value, e.old, e.root);
    let holds = |r: &Rule| quick.holds(r.fast.as_ref());
    let Some(first) = e.node.rules.iter().position(|r| !holds(r)) else {
        return;
    };
    // Converted once for all the node's rules, only the parts they read, borrowing the
    // JSON's strings.
    let reads = &e.node.rule_reads;
    let this = to_val(e.value, Some(e.node), e.root, &reads.this);
    let old = e.old.map(|o| to_val(o, Some(e.node), e.root, &reads.old));
    BASE.with(|base| {
        // The base binds nothing, so it may stand for one whose values live as long
        // as the object's.
        let base: &Context<'_, '_> = base;
        let mut ctx = base.new_inner_scope();
        ctx.add_variable_as_val("self", this);
        if let Some(o) = &old {
            ctx.add_variable_as_val("oldSelf", o.clone());
        }
        for rule in e.node.rules[first..].iter().filter(|r| !holds(r)) {
            if let Some(err) = evaluate_rule(&ctx, rule, e, old.as_ref()) {
                errs.push(err);
            }
        }
    });
}

thread_local! {
    /// The environment with Kubernetes' functions, built once per thread: every rule
    /// evaluates in a scope of its own above it.
    static BASE: Context<'static, 'static> = {
        let mut base = Context::with_env(env().clone());
        add_kube_functions(&mut base);
        base
    };
}

/// One rule in `ctx`, where `self` (and `oldSelf` when there is one) are bound.
fn evaluate_rule<'v>(
    ctx: &Context<'_, 'v>,
    rule: &Rule,
    e: &Eval,
    old: Option<&CelVal<'v>>,
) -> Option<FieldError> {
    if let Some(c) = &rule.compile_error {
        return Some(FieldError::new(
            FieldErrorType::Invalid,
            e.path,
            Some(json!(e.node.ty)),
            format!("rule compile error: {c}"),
        ));
    }
    let program = rule.program.as_ref()?;
    let optional = rule.optional_old_self == Some(true);
    if rule.uses_old_self && old.is_none() && !optional {
        return None;
    }
    let result = if optional {
        let mut inner = ctx.new_inner_scope();
        bind_optional_old_self(&mut inner, old);
        program.execute(&inner)
    } else {
        program.execute(ctx)
    };
    let detail = match result {
        Ok(Cel::Bool(true)) => return None,
        Ok(_) => None,
        Err(err) => Some(runtime_error(&err, rule)),
    };
    // kube 1.33 shows the schema's type as the value (`Invalid value: "object": …`).
    let shown = Some(json!(e.node.ty));
    let path = rule_path(e.path, &rule.field_path);
    if let Some(d) = detail {
        return Some(FieldError::new(FieldErrorType::Invalid, path, shown, d));
    }
    let detail = rule
        .message_program
        .as_ref()
        .and_then(|p| message(p, ctx))
        .unwrap_or_else(|| rule.message_or_default());
    Some(for_reason(rule.reason.as_deref(), path, shown, detail))
}

/// `oldSelf` as an optional, for rules with `optionalOldSelf: true`.
fn bind_optional_old_self<'v>(ctx: &mut Context<'_, 'v>, old: Option<&CelVal<'v>>) {
    let opt = match old {
        Some(o) => CelOptional::of(o.clone()),
        None => CelOptional::none(),
    };
    ctx.add_variable_as_val("oldSelf", Box::new(opt));
}

/// A messageExpression's result, if it evaluates to a usable string.
fn message(p: &Program, ctx: &Context) -> Option<String> {
    match p.execute(ctx) {
        Ok(Cel::String(s)) => {
            let t = s.trim();
            (!t.is_empty() && !t.contains('\n')).then(|| t.to_string())
        }
        _ => None,
    }
}

fn runtime_error(err: &ExecutionError, rule: &Rule) -> String {
    let rule_s = rule.rule_error_string();
    match err {
        ExecutionError::NoSuchOverload(_) => format!(
            "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {rule_s}"
        ),
        ExecutionError::NoSuchKey(k) => format!("no such key: {k} evaluating rule: {rule_s}"),
        other => format!("{other} evaluating rule: {rule_s}"),
    }
}

/// The node's path, with the rule's fieldPath (`.spec.x`, `['a.b']`) appended.
fn rule_path(base: &str, field_path: &str) -> String {
    let fp = field_path.trim();
    if fp.is_empty() {
        return base.to_string();
    }
    let normalized = fp
        .trim_start_matches('.')
        .replace("['", "[")
        .replace("']", "]");
    child(base, &normalized)
}

fn for_reason(
    reason: Option<&str>,
    path: String,
    value: Option<Value>,
    detail: String,
) -> FieldError {
    match reason {
        Some("FieldValueForbidden") => FieldError::forbidden(path, detail),
        Some("FieldValueRequired") => FieldError::required(path, detail),
        Some("FieldValueDuplicate") => FieldError::new(FieldErrorType::Duplicate, path, value, ""),
        _ => FieldError::new(FieldErrorType::Invalid, path, value, detail),
    }
}

/// Walks `value` under `node` evaluating every rule, correlating `old` as kube does:
/// object fields by name (unless the map type is uncorrelatable), list-type=map items
/// by their keys, nothing for other lists.
pub(crate) fn validate_tree(
    node: &Node,
    path: &str,
    value: &Value,
    old: Option<&Value>,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    if value.is_null() || !node.below.rules {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    evaluate(
        &Eval {
            path,
            node,
            value,
            old,
            root,
        },
        errs,
    );
    match value {
        Value::Object(m) => {
            let correlatable = matches!(
                node.map_type.as_deref(),
                None | Some("granular") | Some("atomic")
            );
            for (k, v) in m {
                let (sub, named) = match (node.properties.get(k), node.additional_schema()) {
                    (Some(s), _) => (s, true),
                    (None, Some(s)) => (s, false),
                    _ => continue,
                };
                // No path to build for a field with no rules under it.
                if v.is_null() || !sub.below.rules {
                    continue;
                }
                let p = if named {
                    child(path, k)
                } else {
                    crate::path::key(path, k)
                };
                let o = old.and_then(|o| o.get(k)).filter(|_| correlatable);
                validate_tree(sub, &p, v, o, false, errs);
            }
        }
        Value::Array(items) => {
            let Some(item_node) = node.items.as_deref().filter(|n| n.below.rules) else {
                return;
            };
            let olds = old.and_then(Value::as_array);
            for (i, v) in items.iter().enumerate() {
                let o = olds.and_then(|olds| correlate_item(node, v, olds));
                validate_tree(item_node, &index(path, i), v, o, false, errs);
            }
        }
        _ => {}
    }
}

/// The old item with the same map keys, for list-type=map lists.
fn correlate_item<'a>(node: &Node, item: &Value, olds: &'a [Value]) -> Option<&'a Value> {
    if node.list_type.as_deref() != Some("map") || node.list_map_keys.is_empty() {
        return None;
    }
    let keys = &node.list_map_keys;
    let key_of = |v: &Value| keys.iter().map(|k| v.get(k).cloned()).collect::<Vec<_>>();
    let want = key_of(item);
    olds.iter().find(|o| o.is_object() && key_of(o) == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        for (name, want) in [
            ("foo", Some("foo")),
            ("a-b", Some("a__dash__b")),
            ("a.b", Some("a__dot__b")),
            ("a__b", Some("a__underscores__b")),
            ("namespace", Some("__namespace__")),
            ("1x", None),
        ] {
            assert_eq!(escaped(name).as_deref(), want, "{name}");
        }
    }
}
