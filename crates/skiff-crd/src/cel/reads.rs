//! Which parts of `self` and `oldSelf` a rule can read, found statically in its
//! expression, so that evaluation converts only those parts of the object to CEL values
//! (a schema of hundreds of fields whose rules read two of them converts two).
//!
//! Only chains of field selections from the variable (`self.a.b`, `has(self.a.b)`) are
//! narrowed: the last field of a chain is read whole. Any other use of the variable
//! (`self == oldSelf`, `self.all(…)`, `self['a']`, `size(self)`) reads all of it. A
//! comprehension variable that shadows `self` only makes the reads larger, never
//! smaller, so the result stays a superset of what evaluation touches.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use std::collections::BTreeMap;

/// The parts of one variable read: all of it, or some fields (by their CEL names), each
/// with the parts of it read. Nothing read is no fields and not `all`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Reads {
    all: bool,
    fields: BTreeMap<String, Reads>,
}

/// What an object's field converts as: not at all, or with these reads.
static ALL: Reads = Reads {
    all: true,
    fields: BTreeMap::new(),
};

impl Reads {
    /// Everything: what a rule that cannot be analysed reads.
    pub(crate) fn everything() -> Reads {
        Reads {
            all: true,
            fields: BTreeMap::new(),
        }
    }

    /// The reads of the field `name` (by its CEL name), `None` when it is not read.
    pub(crate) fn field(&self, name: &str) -> Option<&Reads> {
        if self.all {
            Some(&ALL)
        } else {
            self.fields.get(name)
        }
    }

    /// The fields read (CEL names, with what is read of each), unless all of it is.
    pub(crate) fn named(&self) -> Option<&BTreeMap<String, Reads>> {
        (!self.all).then_some(&self.fields)
    }

    /// Adds what `other` reads.
    pub(crate) fn merge(&mut self, other: &Reads) {
        if self.all || other.all {
            *self = Reads::everything();
            return;
        }
        for (k, r) in &other.fields {
            self.fields.entry(k.clone()).or_default().merge(r);
        }
    }

    /// Marks the field chain `path` (outermost first) read, its last field whole.
    fn mark(&mut self, path: &[&str]) {
        let mut at = self;
        for seg in path {
            if at.all {
                return;
            }
            at = at.fields.entry((*seg).to_string()).or_default();
        }
        *at = Reads::everything();
    }
}

/// What `expr` reads of the variable `var`.
pub(crate) fn of(expr: &IdedExpr, var: &str) -> Reads {
    let mut reads = Reads::default();
    walk(expr, var, &mut reads);
    reads
}

fn walk(e: &IdedExpr, var: &str, reads: &mut Reads) {
    if let Some(path) = chain(e, var) {
        reads.mark(&path);
        return;
    }
    match &e.expr {
        // A name that merely resembles the variable (`.self`) is read whole, to be safe.
        Expr::Ident(name) if name.trim_start_matches('.') == var => reads.mark(&[]),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        Expr::Select(s) => walk(&s.operand, var, reads),
        Expr::Call(c) => {
            c.target.iter().for_each(|t| walk(t, var, reads));
            c.args.iter().for_each(|a| walk(a, var, reads));
        }
        Expr::List(l) => l.elements.iter().for_each(|x| walk(x, var, reads)),
        Expr::Map(m) => m
            .entries
            .iter()
            .for_each(|x| walk_entry(&x.expr, var, reads)),
        Expr::Struct(s) => s
            .entries
            .iter()
            .for_each(|x| walk_entry(&x.expr, var, reads)),
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk(x, var, reads);
            }
        }
    }
}

fn walk_entry(e: &EntryExpr, var: &str, reads: &mut Reads) {
    match e {
        EntryExpr::StructField(f) => walk(&f.value, var, reads),
        EntryExpr::MapEntry(m) => {
            walk(&m.key, var, reads);
            walk(&m.value, var, reads);
        }
    }
}

/// The fields of `var.a.b…` (or of `has(var.a.b)`), outermost first, if `e` is such a
/// chain.
fn chain<'e>(e: &'e IdedExpr, var: &str) -> Option<Vec<&'e str>> {
    let mut fields = Vec::new();
    let mut at = e;
    loop {
        match &at.expr {
            // Only the outermost selection may be a presence test: `has(…).f` selects
            // on a bool, not on the variable.
            Expr::Select(s) if !s.test || fields.is_empty() => {
                fields.push(s.field.as_str());
                at = &s.operand;
            }
            Expr::Ident(name) if name == var => break,
            _ => return None,
        }
    }
    fields.reverse();
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(src: &str, var: &str) -> Reads {
        let p = crate::cel::env().compile(src).expect("compiles");
        of(p.expression(), var)
    }

    fn fields(r: &Reads) -> Vec<String> {
        let mut out = Vec::new();
        flatten(r, "", &mut out);
        out
    }

    fn flatten(r: &Reads, at: &str, out: &mut Vec<String>) {
        if r.all {
            out.push(format!("{at}*"));
        }
        for (k, sub) in &r.fields {
            flatten(sub, &format!("{at}{k}."), out);
        }
    }

    #[test]
    fn field_chains_are_narrowed() {
        let r = reads(
            "self.replicas >= self.minReplicas && (!has(self.g) || self.g.f.size() < 3)",
            "self",
        );
        assert_eq!(fields(&r), ["g.*", "minReplicas.*", "replicas.*"]);
        assert_eq!(
            fields(&reads("self.a.b == 1 && self.a == {}", "self")),
            ["a.*"]
        );
        assert!(fields(&reads("oldSelf.x == 1", "self")).is_empty());
    }

    #[test]
    fn other_uses_read_everything() {
        for src in [
            "self == oldSelf",
            "self.all(k, k != 'x')",
            "size(self) < 3",
            "self['a'] == 1",
            "has(self.a) && self.exists(x, x == 'a')",
            "[self][0].a == 1",
            "{'k': self}.k.a == 1",
            "self.?a.orValue(1) == 1",
        ] {
            assert_eq!(reads(src, "self"), Reads::everything(), "{src}");
        }
        assert_eq!(
            reads("self.x == oldSelf.x || oldSelf == self", "oldSelf"),
            Reads::everything()
        );
    }
}
