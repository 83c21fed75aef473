//! The one part of cel-go's type-checking that apiextensions users meet most: a rule
//! naming a field its schema does not expose is a compile error when the CRD is
//! written ("undefined field 'foo'"), not a "no such key" on every object later.
//! cel-rust has no checker, so this walks the rule against the schema as
//! `SchemaDeclType` declares it: an object exposes its properties that have a type
//! (escaped as CEL names; not the fields x-kubernetes-preserve-unknown-fields keeps),
//! a resource root also `apiVersion`, `kind` and `metadata.name`/`generateName`; a map
//! (additionalProperties) any key. Anything whose type is not known this way (a
//! function's result, int-or-string, an optional) is not checked further.
//!
//! Errors are worded and placed as cel-go's `Issues.String()` places them.

use super::escaped;
use crate::node::Node;
use cel::common::ast::{Expr, IdedExpr, SourceInfo, operators};
use std::borrow::Cow;

/// What the checker knows of an expression's type.
#[derive(Clone, Copy)]
enum Ty<'a> {
    /// Not known here: nothing below it is checked.
    Dyn,
    Object(&'a Node, bool),
    /// A resource's metadata as rules see it: `name` and `generateName`.
    Meta,
    Map(&'a Node),
    List(&'a Node),
    Scalar,
}

/// The CEL type of values under `n` (`resource`: a resource root), `None` when
/// apiextensions does not expose them.
fn decl(n: &Node, resource: bool) -> Option<Ty<'_>> {
    if n.int_or_string {
        return Some(Ty::Dyn);
    }
    match n.ty.as_str() {
        "array" => {
            let items = n.items.as_deref()?;
            decl(items, items.embedded)?;
            Some(Ty::List(items))
        }
        "object" => match n.additional_schema() {
            Some(ap) => decl(ap, ap.embedded).map(|_| Ty::Map(ap)),
            None => Some(Ty::Object(n, resource)),
        },
        "string" | "boolean" | "number" | "integer" => Some(Ty::Scalar),
        _ => None,
    }
}

/// The type of field `name` (a CEL name) of `t`; `Err` when it is undefined.
fn field<'a>(t: Ty<'a>, name: &str) -> Result<Ty<'a>, ()> {
    match t {
        Ty::Object(_, true) if name == "apiVersion" || name == "kind" => Ok(Ty::Scalar),
        Ty::Object(_, true) if name == "metadata" => Ok(Ty::Meta),
        Ty::Object(n, _) => n
            .properties
            .iter()
            .find(|(k, _)| escaped(k).as_deref() == Some(name))
            .and_then(|(_, p)| decl(p, p.embedded))
            .ok_or(()),
        Ty::Meta if name == "name" || name == "generateName" => Ok(Ty::Scalar),
        Ty::Meta => Err(()),
        Ty::Map(v) => Ok(decl(v, v.embedded).unwrap_or(Ty::Dyn)),
        Ty::Dyn | Ty::List(_) | Ty::Scalar => Ok(Ty::Dyn),
    }
}

/// Variables in scope: `self`, `oldSelf`, and comprehension variables.
struct Scope<'a> {
    vars: Vec<(&'a str, Ty<'a>)>,
    /// Selections of undefined fields: (expression id, field).
    undefined: Vec<(u64, &'a str)>,
}

impl<'a> Scope<'a> {
    fn var(&self, name: &str) -> Ty<'a> {
        let found = self.vars.iter().rev().find(|(n, _)| *n == name);
        found.map_or(Ty::Dyn, |(_, t)| *t)
    }

    fn infer(&mut self, e: &'a IdedExpr) -> Ty<'a> {
        match &e.expr {
            Expr::Ident(name) => self.var(name),
            Expr::Select(s) => {
                let operand = self.infer(&s.operand);
                field(operand, &s.field).unwrap_or_else(|()| {
                    self.undefined.push((e.id, &s.field));
                    Ty::Dyn
                })
            }
            Expr::Call(c) => {
                let target = c.target.as_deref().map(|t| self.infer(t));
                let args: Vec<Ty> = c.args.iter().map(|a| self.infer(a)).collect();
                match (c.func_name.as_str(), target, args.as_slice()) {
                    (operators::INDEX, None, [Ty::List(items), _]) => {
                        decl(items, items.embedded).unwrap_or(Ty::Dyn)
                    }
                    (operators::INDEX, None, [Ty::Map(v), _]) => {
                        decl(v, v.embedded).unwrap_or(Ty::Dyn)
                    }
                    _ => Ty::Dyn,
                }
            }
            Expr::Comprehension(c) => {
                let range = self.infer(&c.iter_range);
                let (first, second) = match range {
                    Ty::List(items) => {
                        let elem = decl(items, items.embedded).unwrap_or(Ty::Dyn);
                        match c.iter_var2 {
                            Some(_) => (Ty::Scalar, elem),
                            None => (elem, Ty::Dyn),
                        }
                    }
                    Ty::Map(v) => (Ty::Scalar, decl(v, v.embedded).unwrap_or(Ty::Dyn)),
                    _ => (Ty::Dyn, Ty::Dyn),
                };
                self.infer(&c.accu_init);
                let depth = self.vars.len();
                self.vars.push((&c.iter_var, first));
                if let Some(v2) = &c.iter_var2 {
                    self.vars.push((v2, second));
                }
                self.vars.push((&c.accu_var, Ty::Dyn));
                for x in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.infer(x);
                }
                self.vars.truncate(depth);
                Ty::Dyn
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.infer(x);
                }
                Ty::Dyn
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.infer(&me.key);
                        self.infer(&me.value);
                    }
                }
                Ty::Dyn
            }
            Expr::Literal(_) => Ty::Scalar,
            Expr::Struct(_) | Expr::Unspecified => Ty::Dyn,
        }
    }
}

/// cel-go's rendering of the undefined fields `expr` selects from `self` (and
/// `oldSelf`, unless it is optional) at `node`, or `None` when there are none.
pub(crate) fn undefined_fields(
    expr: &IdedExpr,
    info: &SourceInfo,
    node: &Node,
    resource: bool,
    optional_old_self: bool,
) -> Option<String> {
    let this = decl(node, resource).unwrap_or(Ty::Dyn);
    let old = if optional_old_self { Ty::Dyn } else { this };
    let mut scope = Scope {
        vars: vec![("self", this), ("oldSelf", old)],
        undefined: Vec::new(),
    };
    scope.infer(expr);
    let mut issues: Vec<((usize, usize), String)> = scope
        .undefined
        .iter()
        .filter_map(|(id, f)| {
            let (start, _) = info.offset_for(*id)?;
            Some((
                position(&info.source, start as usize),
                format!("undefined field '{f}'"),
            ))
        })
        .collect();
    issues.sort_by_key(|(pos, _)| *pos);
    let shown: Vec<String> = issues
        .iter()
        .map(|(pos, msg)| issue(&info.source, *pos, msg))
        .collect();
    (!shown.is_empty()).then(|| shown.join("\n"))
}

/// The 1-based line and column (in characters) of byte `offset` of `source`.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// One issue as cel-go shows it: location, message, then the line and a caret.
pub(crate) fn issue(source: &str, (line, col): (usize, usize), msg: &str) -> String {
    let mut out = format!("ERROR: <input>:{line}:{col}: {msg}");
    if let Some(text) = source.lines().nth(line.saturating_sub(1)) {
        let text: Cow<str> = if text.contains('\t') {
            Cow::Owned(text.replace('\t', " "))
        } else {
            Cow::Borrowed(text)
        };
        out.push_str(&format!(
            "\n | {text}\n | {}^",
            ".".repeat(col.saturating_sub(1))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(rule: &str) -> Vec<(usize, usize)> {
        let p = crate::cel::env().compile(rule).unwrap();
        let mut out = Vec::new();
        fn walk(e: &IdedExpr, info: &SourceInfo, out: &mut Vec<(usize, usize)>) {
            if let Expr::Select(s) = &e.expr {
                let (start, _) = info.offset_for(e.id).unwrap();
                out.push(position(&info.source, start as usize));
                walk(&s.operand, info, out);
            }
            if let Expr::Call(c) = &e.expr {
                c.args.iter().for_each(|a| walk(a, info, out));
            }
        }
        walk(p.expression(), p.source_info(), &mut out);
        out
    }

    #[test]
    fn selections_are_placed_at_their_dot() {
        assert_eq!(
            positions("self.metadata.creationTimestamp"),
            [(1, 14), (1, 5)]
        );
        assert_eq!(positions("has(self.foo)"), [(1, 4)]);
        assert_eq!(positions("1 < 2 &&\n  self.foo > 0"), [(2, 7)]);
    }
}
