//! Server-side apply and field ownership (`metadata.managedFields`, FieldsV1 encoding),
//! following sigs.k8s.io/structured-merge-diff's model: every manager owns a set of
//! fields; an apply merges the applied configuration, removes fields the same manager
//! applied before and no longer does (unless someone else owns them), and refuses to
//! change a field another manager owns to a different value unless forced.

use crate::lastapplied;
use crate::shape::{Keys, ListMerge, Shape};
use crate::smp;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// `.spec.containers[name="web"].image`
    pub field: String,
}

#[derive(thiserror::Error, Debug)]
pub enum ApplyError {
    /// Other managers own fields the apply would change; retry with force or drop them.
    #[error("Apply failed with {} conflict(s)", .0.len())]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is malformed.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
pub struct ApplyOutcome {
    pub object: Value,
    pub managed_fields: Vec<Value>,
}

/// A set of field paths as a tree; `member` marks a path that is itself in the set.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// FieldsV1 JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.to_json());
            }
        }
        Value::Object(m)
    }

    pub fn from_json(v: &Value) -> FieldSet {
        let mut s = FieldSet::default();
        let Some(m) = v.as_object() else { return s };
        if m.is_empty() {
            s.member = true;
        }
        for (k, c) in m {
            if k == "." {
                s.member = true;
            } else {
                s.children.insert(k.clone(), FieldSet::from_json(c));
            }
        }
        s
    }

    /// Paths of every member.
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.walk(prefix, out);
            prefix.pop();
        }
    }

    /// Members with nothing below them: the fields whose values can conflict.
    pub fn leaves(&self) -> Vec<Vec<String>> {
        self.members()
            .into_iter()
            .filter(|p| self.node(p).is_some_and(|n| n.children.is_empty()))
            .collect()
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((h, t)) => self.children.get(h)?.node(t),
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((h, t)) => self.children.get(h).is_some_and(|c| c.contains(t)),
        }
    }

    /// True if the set holds `path` or anything below it.
    pub fn touches(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.is_empty(),
            Some((h, t)) => self.children.get(h).is_some_and(|c| c.touches(t)),
        }
    }

    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((h, t)) => self.children.entry(h.clone()).or_default().insert(t),
        }
    }

    pub fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((h, t)) => {
                if let Some(c) = self.children.get_mut(h) {
                    c.remove(t);
                    if c.is_empty() {
                        self.children.remove(h);
                    }
                }
            }
        }
    }
}

/// Which parts of an object a field set covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Everything but status (main resource writes).
    Main,
    /// Only status (status subresource writes).
    Status,
}

const META_KEPT: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

pub(crate) fn collect_root(v: &Value, ty: &dyn Shape, part: Part) -> FieldSet {
    let mut set = FieldSet::default();
    let Some(m) = v.as_object() else { return set };
    for (k, c) in m {
        match (k.as_str(), part) {
            ("apiVersion" | "kind", _) => continue,
            ("status", Part::Main) => continue,
            ("status", Part::Status) => {}
            (_, Part::Status) => continue,
            ("metadata", Part::Main) => {
                let node = set.children.entry("f:metadata".into()).or_default();
                for (mk, mv) in c.as_object().into_iter().flatten() {
                    if META_KEPT.contains(&mk.as_str()) {
                        let meta = ty.child("metadata").and_then(|t| t.child(mk));
                        collect_value(
                            mv,
                            meta,
                            node.children.entry(format!("f:{mk}")).or_default(),
                            1,
                        );
                    }
                }
                if node.is_empty() {
                    set.children.remove("f:metadata");
                }
                continue;
            }
            _ => {}
        }
        collect_value(
            c,
            ty.child(k),
            set.children.entry(format!("f:{k}")).or_default(),
            1,
        );
    }
    set
}

fn collect_value(v: &Value, meta: Option<&dyn Shape>, node: &mut FieldSet, depth: usize) {
    if depth > 64 {
        node.member = true;
        return;
    }
    match v {
        // An atomic map is one field, owned whole.
        Value::Object(m) if !m.is_empty() && !meta.is_some_and(|s| s.atomic_map()) => {
            for (k, c) in m {
                collect_value(
                    c,
                    meta.and_then(|t| t.child(k)),
                    node.children.entry(format!("f:{k}")).or_default(),
                    depth + 1,
                );
            }
        }
        Value::Array(items) => match meta.map_or(ListMerge::Atomic, |s| s.list_merge()) {
            ListMerge::Map(keys) => {
                let item_ty = meta.and_then(|s| s.item());
                for it in items {
                    let child = node.children.entry(item_key(it, keys)).or_default();
                    child.member = true;
                    for (ik, iv) in it.as_object().into_iter().flatten() {
                        collect_value(
                            iv,
                            item_ty.and_then(|t| t.child(ik)),
                            child.children.entry(format!("f:{ik}")).or_default(),
                            depth + 1,
                        );
                    }
                }
            }
            ListMerge::Set => {
                for it in items {
                    node.children.entry(format!("v:{it}")).or_default().member = true;
                }
            }
            ListMerge::Atomic => node.member = true,
        },
        _ => node.member = true,
    }
}

/// The field-set element of a list-map item, `k:{"name":"web","port":80}`: its key
/// fields sorted by name, as structured-merge-diff serializes a key (an absent key
/// field is `null`).
fn item_key(item: &Value, keys: Keys) -> String {
    let k: Map<String, Value> = keys
        .sorted()
        .into_iter()
        .map(|name| {
            let v = item.get(name).cloned().unwrap_or(Value::Null);
            (name.to_string(), v)
        })
        .collect();
    format!("k:{}", Value::Object(k))
}

/// The value at a field path, if present.
pub(crate) fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = step(cur, p)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, p: &str) -> Option<&'a Value> {
    if let Some(f) = p.strip_prefix("f:") {
        cur.get(f)
    } else if let Some(k) = p.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array()?
            .iter()
            .find(|it| keys.iter().all(|(kk, kv)| it.get(kk) == Some(kv)))
    } else if let Some(x) = p.strip_prefix("v:") {
        let want: Value = serde_json::from_str(x).ok()?;
        cur.as_array()?.iter().find(|it| **it == want)
    } else {
        None
    }
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parent_path {
        let next = if let Some(f) = p.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = p.strip_prefix("k:") {
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|it| keys.iter().all(|(kk, kv)| it.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(keys), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|it| !keys.iter().all(|(kk, kv)| it.get(kk) == Some(kv)));
        }
    } else if let Some(x) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(x), cur.as_array_mut())
    {
        a.retain(|it| *it != want);
    }
}

/// Whether a path is the merge key field of a list item (`k:{"name":"web"}` then
/// `f:name`): it goes with its item, never alone, or the item could not be found again.
fn is_item_key(path: &[String]) -> bool {
    let [.., item, field] = path else {
        return false;
    };
    let (Some(keys), Some(field)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|keys| keys.contains_key(field))
}

/// `.spec.containers[name="web"].image`, as Kubernetes prints conflicting fields.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let inner: Vec<String> = keys.iter().map(|(a, b)| format!("{a}={b}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(x) = p.strip_prefix("v:") {
            s.push_str(&format!("[={x}]"));
        }
    }
    s
}

struct Entry {
    raw: Map<String, Value>,
    set: FieldSet,
}

fn entries(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o["metadata"]["managedFields"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_object().cloned())
        .map(|raw| {
            let set = FieldSet::from_json(raw.get("fieldsV1").unwrap_or(&Value::Null));
            Entry { raw, set }
        })
        .collect()
}

fn entry_is(e: &Entry, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
    e.raw.get("manager").and_then(Value::as_str) == Some(manager)
        && e.raw.get("operation").and_then(Value::as_str) == Some(operation)
        && e.raw.get("subresource").and_then(Value::as_str) == subresource
}

fn render(list: Vec<Entry>) -> Vec<Value> {
    list.into_iter()
        .filter(|e| !e.set.is_empty())
        .map(|mut e| {
            e.raw.insert("fieldsType".into(), json!("FieldsV1"));
            e.raw.insert("fieldsV1".into(), e.set.to_json());
            Value::Object(e.raw)
        })
        .collect()
}

fn set_managed(obj: &mut Value, mf: &[Value]) {
    // Only an object has metadata to keep them in.
    if !obj.is_object() {
        return;
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if mf.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(mf.to_vec());
    }
}

/// Server-side apply of a built-in kind (or of a custom kind merged as untyped JSON).
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    group: &str,
    kind: &str,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<ApplyOutcome, ApplyError> {
    let ty = crate::schema::root(group, kind);
    server_side_apply_with(live, applied, ty, manager, force, now)
}

/// Server-side apply merging lists and maps as `shape` (the object's root) says.
pub fn server_side_apply_with(
    live: Option<&Value>,
    applied: &Value,
    ty: &dyn Shape,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<ApplyOutcome, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let new_set = collect_root(applied, ty, Part::Main);
    let mut list = entries(live);
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string();

    // Conflicts with other managers over fields whose value would change.
    let mut conflicts = Vec::new();
    if let Some(live) = live {
        for e in list.iter().filter(|e| !entry_is(e, manager, "Apply", None)) {
            for p in new_set.leaves() {
                if e.set.contains(&p) && get_at(live, &p) != get_at(applied, &p) {
                    conflicts.push((
                        e.raw
                            .get("manager")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        p,
                    ));
                }
            }
        }
    }
    let mut force = force;
    if !conflicts.is_empty() && !force {
        // Fields client-side apply left to kubectl are kubectl's to take.
        let allowed = live
            .filter(|_| manager == lastapplied::KUBECTL)
            .and_then(|l| lastapplied::allowed_conflicts(l, ty));
        let refused: Vec<Conflict> = conflicts
            .iter()
            .filter(|(_, p)| !allowed.as_ref().is_some_and(|a| a.contains(p)))
            .map(|(m, p)| Conflict {
                manager: m.clone(),
                field: path_string(p),
            })
            .collect();
        if !refused.is_empty() {
            return Err(ApplyError::Conflicts(refused));
        }
        force = true;
    }

    // Merge the applied configuration into the live object.
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut merged = smp::apply(
        &base,
        &smp::strip(applied, 0).map_err(|e| ApplyError::Invalid(e.to_string()))?,
        ty,
    )
    .map_err(|e| ApplyError::Invalid(e.to_string()))?;

    // Fields this manager applied before and no longer applies go, unless someone else has them.
    if let Some(prev) = list.iter().find(|e| entry_is(e, manager, "Apply", None)) {
        let mut gone: Vec<Vec<String>> = prev
            .set
            .members()
            .into_iter()
            .filter(|p| !new_set.contains(p) && !is_item_key(p))
            .collect();
        // Deepest first, so list items go after their fields.
        gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in gone {
            let others = list
                .iter()
                .any(|e| !entry_is(e, manager, "Apply", None) && e.set.touches(&p));
            if !others && !new_set.touches(&p) {
                remove_at(&mut merged, &p);
                // Maps left empty by the removal go too, unless someone owns them.
                let mut parent = p.clone();
                while parent.len() > 1 {
                    parent.pop();
                    let empty = get_at(&merged, &parent)
                        .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
                    let owned =
                        list.iter().any(|e| e.set.contains(&parent)) || new_set.touches(&parent);
                    if !empty || owned {
                        break;
                    }
                    remove_at(&mut merged, &parent);
                }
            }
        }
    }

    // Ownership: ours is the new set; forced fields leave their previous owners.
    if force {
        for (_, p) in &conflicts {
            for e in list.iter_mut() {
                if !entry_is(e, manager, "Apply", None) {
                    e.set.remove(p);
                }
            }
        }
    }
    let ours = Entry {
        raw: json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now}).as_object().cloned().unwrap_or_default(),
        set: new_set,
    };
    match list
        .iter()
        .position(|e| entry_is(e, manager, "Apply", None))
    {
        Some(i) => list[i] = ours,
        None => list.push(ours),
    }
    let mf = render(list);
    set_managed(&mut merged, &mf);
    if manager == lastapplied::KUBECTL {
        lastapplied::keep_in_step(&mut merged, applied);
    }
    Ok(ApplyOutcome {
        object: merged,
        managed_fields: mf,
    })
}

/// Records an ordinary write (create, update, patch) by `manager`: the fields it set or
/// changed become its own (operation Update) and leave other managers.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) {
    let (group, kind) = {
        let av = new.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let g = av.split_once('/').map(|(g, _)| g).unwrap_or("").to_string();
        (
            g,
            new.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    let ty = crate::schema::root(&group, &kind);
    record_update_with(old, new, ty, manager, api_version, now, subresource);
}

/// Records an ordinary write as [`record_update`] does, with the fields of lists and maps
/// as `shape` (the object's root) says.
pub fn record_update_with(
    old: Option<&Value>,
    new: &mut Value,
    ty: &dyn Shape,
    manager: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) {
    let part = if subresource == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let new_set = collect_root(new, ty, part);
    // Leaves whose value changed, and containers (list items) that did not exist before.
    let leaves = new_set.leaves();
    let changed: Vec<Vec<String>> = new_set
        .members()
        .into_iter()
        .filter(|p| match old {
            None => true,
            Some(o) if leaves.contains(p) => get_at(o, p) != get_at(new, p),
            Some(o) => get_at(o, p).is_none(),
        })
        .collect();
    let mut list = entries(Some(new));
    if list.is_empty() {
        list = entries(old);
    }
    // Fields that no longer exist belong to nobody.
    for e in list.iter_mut() {
        for p in e.set.members() {
            if get_at(new, &p).is_none() {
                e.set.remove(&p);
            }
        }
    }
    if changed.is_empty() {
        let mf = render(list);
        set_managed(new, &mf);
        return;
    }
    for e in list.iter_mut() {
        if !entry_is(e, manager, "Update", subresource) {
            for p in &changed {
                e.set.remove(p);
            }
        }
    }
    let idx = match list
        .iter()
        .position(|e| entry_is(e, manager, "Update", subresource))
    {
        Some(i) => i,
        None => {
            let mut raw =
                json!({"manager": manager, "operation": "Update", "apiVersion": api_version})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
            if let Some(s) = subresource {
                raw.insert("subresource".into(), json!(s));
            }
            list.push(Entry {
                raw,
                set: FieldSet::default(),
            });
            list.len() - 1
        }
    };
    list[idx].raw.insert("time".into(), json!(now));
    list[idx]
        .raw
        .insert("apiVersion".into(), json!(api_version));
    for p in &changed {
        list[idx].set.insert(p);
    }
    let mf = render(list);
    set_managed(new, &mf);
}
