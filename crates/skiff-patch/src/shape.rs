//! The shape of a type as merging needs it, behind one trait so that the static table of
//! built-in types ([`crate::schema`]) and run-time schemas (a CRD's structural schema)
//! drive the same strategic merge and server-side apply code.
//!
//! A [`Shape`] describes one value: an object (its fields' shapes), a list (how it
//! merges, its items' shape) or a scalar. `None` where a shape is expected means "nothing
//! known": objects merge field by field and lists are replaced whole, which is also what
//! kube does for a CRD list without `x-kubernetes-list-type`.

use crate::schema::{Field, ListKind, Type};

/// The merge keys of a list of maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys<'a> {
    /// One key, as the built-in table holds them (`containers` by `name`).
    One(&'a str),
    /// `x-kubernetes-list-map-keys`, in the schema's order.
    Many(&'a [String]),
}

impl<'a> Keys<'a> {
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        let (one, many) = match self {
            Keys::One(k) => (Some(k), &[][..]),
            Keys::Many(ks) => (None, ks),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }

    /// The keys sorted by name: the order of a `k:{…}` field-set element, as
    /// structured-merge-diff sorts a key's fields.
    pub fn sorted(self) -> Vec<&'a str> {
        let mut v: Vec<&str> = self.iter().collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// How a list merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMerge<'a> {
    /// Replaced whole; an applier owns it as one field (the default).
    Atomic,
    /// Scalars merged as a set; each value is its own field (`v:"a"`).
    Set,
    /// Maps merged item by item, identified by these keys (`k:{"name":"web"}`).
    Map(Keys<'a>),
}

/// The shape of one value. Everything defaults to "unknown": granular maps, atomic lists.
pub trait Shape {
    /// The shape of the object field `name` (or of a map's values).
    fn child(&self, _name: &str) -> Option<&dyn Shape> {
        None
    }
    /// The shape of a list's items.
    fn item(&self) -> Option<&dyn Shape> {
        None
    }
    /// How a list here merges.
    fn list_merge(&self) -> ListMerge<'_> {
        ListMerge::Atomic
    }
    /// `x-kubernetes-map-type: atomic`: an object here is replaced whole and owned as one
    /// field.
    fn atomic_map(&self) -> bool {
        false
    }
    /// `patchStrategy:"merge,retainKeys"`.
    fn retain_keys(&self) -> bool {
        false
    }
}

/// A built-in type is an object: its fields as the table lists them.
impl Shape for Type {
    fn child(&self, name: &str) -> Option<&dyn Shape> {
        Type::field(self, name).map(|f| f as &dyn Shape)
    }
}

/// A built-in field is the value under it: an object of `ty`, or a list of `ty` items.
impl Shape for Field {
    fn child(&self, name: &str) -> Option<&dyn Shape> {
        if self.list.is_some() {
            return None;
        }
        self.ty?.child(name)
    }
    fn item(&self) -> Option<&dyn Shape> {
        self.list?;
        self.ty.map(|t| t as &dyn Shape)
    }
    fn list_merge(&self) -> ListMerge<'_> {
        match self.list {
            Some(ListKind::Map(k)) => ListMerge::Map(Keys::One(k)),
            Some(ListKind::Set) => ListMerge::Set,
            None => ListMerge::Atomic,
        }
    }
    fn retain_keys(&self) -> bool {
        self.retain_keys
    }
}
