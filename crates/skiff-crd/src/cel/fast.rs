//! A fast path for the rules most CRDs carry (field reads, presence tests, comparisons,
//! logic, integer arithmetic, `size()`, `in` a literal list), evaluated on the JSON
//! itself.
//!
//! cel-rust builds a boxed CEL value for every part of `self` a rule reads, joins
//! qualified names into strings to look them up, and builds an overload error before
//! every comparison: for a custom object with two plain rules that was most of what its
//! create cost beyond a ConfigMap's (`skiff bench crd-cost`). A rule that holds needs
//! none of it.
//!
//! This path only ever answers "holds". A rule it does not compile, a value of a type
//! it leaves alone, anything that would be an error, and every rule that does not
//! hold go to cel-rust, so failures are reported exactly as cel-rust reports them. On
//! what it does evaluate it follows cel-rust (and `to_val`'s view of the object), which
//! the tests check by evaluating the same rules on the same objects both ways.

use super::escaped;
use crate::node::Node;
use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, operators};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// A rule compiled for the fast path.
#[derive(Debug)]
pub(crate) enum Fast {
    Lit(Lit),
    This,
    Old,
    Select(Box<Fast>, String),
    Has(Box<Fast>, String),
    Not(Box<Fast>),
    Neg(Box<Fast>),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Cond(Box<[Fast; 3]>),
    Cmp(Cmp, Box<Fast>, Box<Fast>),
    Arith(Arith, Box<Fast>, Box<Fast>),
    Size(Box<Fast>),
    In(Box<Fast>, Vec<Lit>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The rule `e` on the fast path, if every part of it has one.
pub(crate) fn compile(e: &IdedExpr) -> Option<Fast> {
    let sub = |e: &IdedExpr| compile(e).map(Box::new);
    Some(match &e.expr {
        Expr::Literal(l) => Fast::Lit(literal(l)?),
        Expr::Ident(n) if n == "self" => Fast::This,
        Expr::Ident(n) if n == "oldSelf" => Fast::Old,
        // A field whose CEL name is escaped (or reserved) is left to cel-rust.
        Expr::Select(s) if matches!(escaped(&s.field), Some(Cow::Borrowed(_))) => {
            let (operand, field) = (sub(&s.operand)?, s.field.clone());
            match s.test {
                true => Fast::Has(operand, field),
                false => Fast::Select(operand, field),
            }
        }
        Expr::Call(c) => call(c)?,
        _ => return None,
    })
}

fn call(c: &CallExpr) -> Option<Fast> {
    let arg = |i: usize| compile(c.args.get(i)?).map(Box::new);
    let (name, target, n) = (c.func_name.as_str(), c.target.as_deref(), c.args.len());
    if let (Some(op), None, 2) = (binary(name), target, n) {
        let (a, b) = (arg(0)?, arg(1)?);
        return Some(match op {
            Binary::And => Fast::And(a, b),
            Binary::Or => Fast::Or(a, b),
            Binary::Cmp(op) => Fast::Cmp(op, a, b),
            Binary::Arith(op) => Fast::Arith(op, a, b),
        });
    }
    match (name, target, n) {
        (operators::LOGICAL_NOT, None, 1) => Some(Fast::Not(arg(0)?)),
        (operators::NEGATE, None, 1) => Some(Fast::Neg(arg(0)?)),
        (operators::CONDITIONAL, None, 3) => Some(Fast::Cond(Box::new([
            compile(&c.args[0])?,
            compile(&c.args[1])?,
            compile(&c.args[2])?,
        ]))),
        ("size", None, 1) => Some(Fast::Size(arg(0)?)),
        ("size", Some(t), 0) => Some(Fast::Size(Box::new(compile(t)?))),
        (operators::IN, None, 2) => Some(Fast::In(arg(0)?, literal_list(&c.args[1])?)),
        _ => None,
    }
}

enum Binary {
    And,
    Or,
    Cmp(Cmp),
    Arith(Arith),
}

fn binary(name: &str) -> Option<Binary> {
    Some(match name {
        operators::LOGICAL_AND => Binary::And,
        operators::LOGICAL_OR => Binary::Or,
        operators::EQUALS => Binary::Cmp(Cmp::Eq),
        operators::NOT_EQUALS => Binary::Cmp(Cmp::Ne),
        operators::LESS => Binary::Cmp(Cmp::Lt),
        operators::LESS_EQUALS => Binary::Cmp(Cmp::Le),
        operators::GREATER => Binary::Cmp(Cmp::Gt),
        operators::GREATER_EQUALS => Binary::Cmp(Cmp::Ge),
        operators::ADD => Binary::Arith(Arith::Add),
        operators::SUBSTRACT => Binary::Arith(Arith::Sub),
        operators::MULTIPLY => Binary::Arith(Arith::Mul),
        operators::DIVIDE => Binary::Arith(Arith::Div),
        operators::MODULO => Binary::Arith(Arith::Rem),
        _ => return None,
    })
}

fn literal(l: &LiteralValue) -> Option<Lit> {
    Some(match l {
        LiteralValue::Null => Lit::Null,
        LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
        LiteralValue::Int(i) => Lit::Int(*i.inner()),
        LiteralValue::UInt(u) => Lit::UInt(*u.inner()),
        LiteralValue::Double(d) => Lit::Double(*d.inner()),
        LiteralValue::String(s) => Lit::Str(s.inner().to_string()),
        LiteralValue::Bytes(_) => return None,
    })
}

/// A list literal of literals of one type (what `x in [...]` compares by plain equality).
fn literal_list(e: &IdedExpr) -> Option<Vec<Lit>> {
    let Expr::List(l) = &e.expr else { return None };
    if !l.optional_indices.is_empty() {
        return None;
    }
    let items = l
        .elements
        .iter()
        .map(|x| match &x.expr {
            Expr::Literal(v) => literal(v),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let same = items
        .windows(2)
        .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
    same.then_some(items)
}

/// A value as a rule sees it, borrowed from the object or the rule.
#[derive(Clone, Copy, Debug, PartialEq)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(&'a str),
    Obj(Obj<'a>),
    List(&'a [Value]),
}

/// An object under its schema node (`None`: no schema, every key a field).
#[derive(Clone, Copy, Debug)]
struct Obj<'a> {
    m: &'a Map<String, Value>,
    n: Option<&'a Node>,
    /// A resource (the root, or an embedded resource), whose metadata CEL sees only
    /// in part: its fields go to cel-rust.
    resource: bool,
}

/// Objects are never equal here: comparing them is left to cel-rust.
impl PartialEq for Obj<'_> {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

/// Whether a JSON number is a CEL double under `n` (else an int), as `to_val` decides.
pub(crate) fn is_double(x: &Number, n: Option<&Node>) -> bool {
    n.is_some_and(|n| n.ty == "number") || x.as_i64().is_none()
}

fn from_json<'a>(v: &'a Value, n: Option<&'a Node>, root: bool) -> V<'a> {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(x) if is_double(x, n) => V::Double(x.as_f64().unwrap_or(0.0)),
        Value::Number(x) => V::Int(x.as_i64().unwrap_or_default()),
        Value::String(s) => V::Str(s),
        Value::Array(a) => V::List(a),
        Value::Object(m) => V::Obj(Obj {
            m,
            n,
            resource: n.is_some_and(|n| root || n.embedded),
        }),
    }
}

/// What a field lookup found: the field, no such field, or a case left to cel-rust.
enum Field<'a> {
    Found(V<'a>),
    Absent,
}

impl<'a> Obj<'a> {
    /// Raw maps (additionalProperties, or no schema) name fields by their keys.
    fn raw(&self) -> Option<Option<&'a Node>> {
        let Some(n) = self.n else {
            return Some(None);
        };
        match n.additional_schema() {
            Some(ap) => Some(Some(ap)),
            None if n.properties.is_empty() && !self.resource => Some(None),
            None => None,
        }
    }

    fn field(&self, name: &str) -> Option<Field<'a>> {
        if self.resource && ["apiVersion", "kind", "metadata"].contains(&name) {
            return None;
        }
        let (v, n) = match self.raw() {
            Some(n) => (self.m.get(name), n),
            None => {
                let p = self.n.and_then(|n| n.properties.get(name));
                (self.m.get(name).filter(|_| p.is_some()), p)
            }
        };
        Some(match v {
            Some(v) => Field::Found(from_json(v, n, false)),
            None => Field::Absent,
        })
    }

    fn size(&self) -> Option<usize> {
        (self.raw().is_some() && !self.resource).then_some(self.m.len())
    }
}

/// `self` and `oldSelf` for a node's rules.
pub(crate) struct Scope<'a> {
    this: V<'a>,
    old: Option<V<'a>>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(
        node: &'a Node,
        value: &'a Value,
        old: Option<&'a Value>,
        root: bool,
    ) -> Self {
        Scope {
            this: from_json(value, Some(node), root),
            old: old.map(|o| from_json(o, Some(node), root)),
        }
    }

    /// Whether the rule is known to hold (false: not known here; ask cel-rust).
    pub(crate) fn holds(&self, rule: Option<&Fast>) -> bool {
        rule.is_some_and(|f| self.eval(f) == Some(V::Bool(true)))
    }

    fn eval(&self, f: &'a Fast) -> Option<V<'a>> {
        match f {
            Fast::Lit(l) => Some(lit(l)),
            Fast::This => Some(self.this),
            Fast::Old => self.old,
            Fast::Select(o, name) => match self.object(o)?.field(name)? {
                Field::Found(v) => Some(v),
                Field::Absent => None,
            },
            Fast::Has(o, name) => {
                let found = matches!(self.object(o)?.field(name)?, Field::Found(_));
                Some(V::Bool(found))
            }
            Fast::Not(x) => Some(V::Bool(!self.bool(x)?)),
            Fast::Neg(x) => match self.eval(x)? {
                V::Int(i) => i.checked_neg().map(V::Int),
                V::Double(d) => Some(V::Double(-d)),
                _ => None,
            },
            Fast::And(a, b) => self.logic(a, b, false),
            Fast::Or(a, b) => self.logic(a, b, true),
            Fast::Cond(c) => match self.bool(&c[0])? {
                true => self.eval(&c[1]),
                false => self.eval(&c[2]),
            },
            Fast::Cmp(op, a, b) => compare(*op, self.eval(a)?, self.eval(b)?).map(V::Bool),
            Fast::Arith(op, a, b) => arith(*op, self.eval(a)?, self.eval(b)?),
            Fast::Size(x) => size(self.eval(x)?),
            Fast::In(x, list) => {
                let v = self.eval(x)?;
                let want = list.first().map(lit)?;
                (std::mem::discriminant(&v) == std::mem::discriminant(&want))
                    .then(|| V::Bool(list.iter().any(|l| lit(l) == v)))
            }
        }
    }

    fn object(&self, f: &'a Fast) -> Option<Obj<'a>> {
        match self.eval(f)? {
            V::Obj(o) => Some(o),
            _ => None,
        }
    }

    fn bool(&self, f: &'a Fast) -> Option<bool> {
        match self.eval(f)? {
            V::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// `a && b` (`short` false) or `a || b` (`short` true), as cel-rust evaluates them:
    /// `short` on either side decides, whatever the other is.
    fn logic(&self, a: &'a Fast, b: &'a Fast, short: bool) -> Option<V<'a>> {
        let left = self.bool(a);
        if left == Some(short) {
            return Some(V::Bool(short));
        }
        let right = self.bool(b)?;
        match (left, right) {
            (_, r) if r == short => Some(V::Bool(short)),
            (Some(_), r) => Some(V::Bool(r)),
            (None, _) => None,
        }
    }
}

fn lit(l: &Lit) -> V<'_> {
    match l {
        Lit::Null => V::Null,
        Lit::Bool(b) => V::Bool(*b),
        Lit::Int(i) => V::Int(*i),
        Lit::UInt(u) => V::UInt(*u),
        Lit::Double(d) => V::Double(*d),
        Lit::Str(s) => V::Str(s),
    }
}

/// Comparisons of two values of one type; others (cel-rust's mixed numbers,
/// heterogeneous equality) go to cel-rust.
fn compare(op: Cmp, a: V, b: V) -> Option<bool> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(&y)),
        (V::UInt(x), V::UInt(y)) => Some(x.cmp(&y)),
        (V::Double(x), V::Double(y)) => x.partial_cmp(&y),
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) if matches!(op, Cmp::Eq | Cmp::Ne) => Some(x.cmp(&y)),
        (V::Null, V::Null) if matches!(op, Cmp::Eq | Cmp::Ne) => Some(Ordering::Equal),
        _ => return None,
    };
    // NaN: unordered, and unequal to itself; leave it to cel-rust.
    let ord = ord?;
    Some(match op {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    })
}

/// Integer arithmetic that neither overflows nor divides by zero, and double sums and
/// products; anything else (an error, a string or list sum) goes to cel-rust.
fn arith<'a>(op: Arith, a: V<'a>, b: V<'a>) -> Option<V<'a>> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Div => x.checked_div(y),
            Arith::Rem => x.checked_rem(y),
        }
        .map(V::Int),
        (V::UInt(x), V::UInt(y)) => match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Div => x.checked_div(y),
            Arith::Rem => x.checked_rem(y),
        }
        .map(V::UInt),
        (V::Double(x), V::Double(y)) => match op {
            Arith::Add => Some(V::Double(x + y)),
            Arith::Sub => Some(V::Double(x - y)),
            Arith::Mul => Some(V::Double(x * y)),
            Arith::Div | Arith::Rem => None,
        },
        _ => None,
    }
}

fn size(v: V) -> Option<V> {
    let n = match v {
        V::Str(s) => s.chars().count(),
        V::List(l) => l.len(),
        V::Obj(o) => o.size()?,
        _ => return None,
    };
    i64::try_from(n).ok().map(V::Int)
}
