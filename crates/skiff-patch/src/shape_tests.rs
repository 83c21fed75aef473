//! Server-side apply driven by a run-time shape (as a CRD's structural schema gives one):
//! multi-key map lists, sets, atomic lists and atomic maps.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;

/// A run-time shape: one value's merge facts and its children.
#[derive(Default)]
struct Node {
    fields: BTreeMap<&'static str, Node>,
    item: Option<Box<Node>>,
    set: bool,
    keys: Vec<String>,
    atomic_map: bool,
}

impl Shape for Node {
    fn child(&self, name: &str) -> Option<&dyn Shape> {
        self.fields.get(name).map(|n| n as &dyn Shape)
    }
    fn item(&self) -> Option<&dyn Shape> {
        self.item.as_deref().map(|n| n as &dyn Shape)
    }
    fn list_merge(&self) -> ListMerge<'_> {
        match (self.set, self.keys.is_empty()) {
            (true, _) => ListMerge::Set,
            (false, false) => ListMerge::Map(Keys::Many(&self.keys)),
            (false, true) => ListMerge::Atomic,
        }
    }
    fn atomic_map(&self) -> bool {
        self.atomic_map
    }
}

/// The root: its own fields, and `metadata` as every object has it.
struct Root(Node);

impl Shape for Root {
    fn child(&self, name: &str) -> Option<&dyn Shape> {
        match name {
            "metadata" => Some(&schema::METADATA),
            _ => self.0.child(name),
        }
    }
}

/// `spec.entries`: a map list keyed by `port` then `name`; `spec.tags`: a set;
/// `spec.ports`: atomic (no list type); `spec.selector`: an atomic map; `spec.labels`: a
/// granular map.
fn shape() -> Root {
    let entries = Node {
        keys: vec!["port".into(), "name".into()],
        item: Some(Box::default()),
        ..Node::default()
    };
    let tags = Node {
        set: true,
        ..Node::default()
    };
    let selector = Node {
        atomic_map: true,
        ..Node::default()
    };
    let spec = Node {
        fields: BTreeMap::from([
            ("entries", entries),
            ("tags", tags),
            ("ports", Node::default()),
            ("selector", selector),
            ("labels", Node::default()),
        ]),
        ..Node::default()
    };
    Root(Node {
        fields: BTreeMap::from([("spec", spec)]),
        ..Node::default()
    })
}

const NOW: &str = "2024-01-01T00:00:00Z";

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

fn apply(live: Option<&Value>, spec: Value, manager: &str, force: bool) -> Value {
    server_side_apply_with(live, &cr(spec), &shape(), manager, force, NOW)
        .unwrap()
        .object
}

fn conflicts(live: &Value, spec: Value, manager: &str) -> Vec<Conflict> {
    match server_side_apply_with(Some(live), &cr(spec), &shape(), manager, false, NOW) {
        Err(ApplyError::Conflicts(c)) => c,
        other => panic!("expected conflicts, got {other:?}"),
    }
}

fn fields_of(obj: &Value, manager: &str) -> Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn two_managers_keep_their_entries_of_a_multi_key_map_list() {
    let a = apply(
        None,
        json!({"entries": [{"name": "x", "port": 1, "v": "a"}]}),
        "a",
        false,
    );
    let b = apply(
        Some(&a),
        json!({"entries": [{"name": "x", "port": 2, "v": "b"}]}),
        "b",
        false,
    );
    assert_eq!(
        b["spec"]["entries"],
        json!([{"name": "x", "port": 1, "v": "a"}, {"name": "x", "port": 2, "v": "b"}])
    );
    // Key fields sorted by name, as structured-merge-diff writes them.
    assert_eq!(
        fields_of(&b, "a"),
        json!({"f:spec": {"f:entries": {r#"k:{"name":"x","port":1}"#: {
            ".": {}, "f:name": {}, "f:port": {}, "f:v": {}
        }}}})
    );
    assert!(fields_of(&b, "b")["f:spec"]["f:entries"][r#"k:{"name":"x","port":2}"#].is_object());

    // Changing b's entry conflicts; the path names both keys.
    let c = conflicts(
        &b,
        json!({"entries": [{"name": "x", "port": 2, "v": "z"}]}),
        "a",
    );
    assert_eq!(
        c,
        vec![Conflict {
            manager: "b".into(),
            field: r#".spec.entries[name="x",port=2].v"#.into()
        }]
    );

    // a dropping its entry removes it and leaves b's.
    let a2 = apply(Some(&b), json!({"entries": []}), "a", false);
    assert_eq!(
        a2["spec"]["entries"],
        json!([{"name": "x", "port": 2, "v": "b"}])
    );
}

#[test]
fn set_lists_merge_and_drop_what_their_applier_drops() {
    let a = apply(None, json!({"tags": ["x", "y"]}), "a", false);
    let b = apply(Some(&a), json!({"tags": ["z", "x"]}), "b", false);
    assert_eq!(b["spec"]["tags"], json!(["x", "y", "z"]));
    assert_eq!(
        fields_of(&b, "a"),
        json!({"f:spec": {"f:tags": {r#"v:"x""#: {}, r#"v:"y""#: {}}}})
    );
    // "x" stays: b applies it too.
    let a2 = apply(Some(&b), json!({"tags": []}), "a", false);
    assert_eq!(a2["spec"]["tags"], json!(["x", "z"]));
}

#[test]
fn atomic_lists_are_replaced_and_owned_whole() {
    let a = apply(None, json!({"ports": [1, 2]}), "a", false);
    assert_eq!(fields_of(&a, "a"), json!({"f:spec": {"f:ports": {}}}));
    let a2 = apply(Some(&a), json!({"ports": [3]}), "a", false);
    assert_eq!(a2["spec"]["ports"], json!([3]));

    let c = conflicts(&a2, json!({"ports": [4]}), "b");
    assert_eq!(
        c,
        vec![Conflict {
            manager: "a".into(),
            field: ".spec.ports".into()
        }]
    );
    let b = apply(Some(&a2), json!({"ports": [4]}), "b", true);
    assert_eq!(b["spec"]["ports"], json!([4]));
    assert_eq!(fields_of(&b, "a"), Value::Null);
    assert_eq!(fields_of(&b, "b"), json!({"f:spec": {"f:ports": {}}}));
}

#[test]
fn atomic_maps_are_replaced_and_owned_whole_granular_ones_merge() {
    let a = apply(
        None,
        json!({"selector": {"x": "1", "y": "2"}, "labels": {"x": "1"}}),
        "a",
        false,
    );
    assert_eq!(
        fields_of(&a, "a"),
        json!({"f:spec": {"f:selector": {}, "f:labels": {"f:x": {}}}})
    );
    let c = conflicts(&a, json!({"selector": {"z": "3"}}), "b");
    assert_eq!(
        c,
        vec![Conflict {
            manager: "a".into(),
            field: ".spec.selector".into()
        }]
    );
    let b = apply(
        Some(&a),
        json!({"selector": {"z": "3"}, "labels": {"z": "3"}}),
        "b",
        true,
    );
    assert_eq!(b["spec"]["selector"], json!({"z": "3"}));
    assert_eq!(b["spec"]["labels"], json!({"x": "1", "z": "3"}));
    assert_eq!(
        fields_of(&b, "a"),
        json!({"f:spec": {"f:labels": {"f:x": {}}}})
    );
}

#[test]
fn updates_record_fields_by_the_shape() {
    let old = cr(json!({"ports": [1], "entries": [{"name": "x", "port": 1, "v": "a"}]}));
    let mut new = cr(json!({"ports": [2], "entries": [{"name": "x", "port": 1, "v": "b"}]}));
    record_update_with(
        Some(&old),
        &mut new,
        &shape(),
        "ctl",
        "example.com/v1",
        NOW,
        None,
    );
    assert_eq!(
        fields_of(&new, "ctl"),
        json!({"f:spec": {
            "f:entries": {r#"k:{"name":"x","port":1}"#: {"f:v": {}}},
            "f:ports": {}
        }})
    );
}

#[test]
fn metadata_keeps_its_built_in_merge_for_custom_shapes() {
    let a = apply(None, json!({}), "a", false);
    let mut with_fin = cr(json!({}));
    with_fin["metadata"]["finalizers"] = json!(["f1"]);
    let a = server_side_apply_with(Some(&a), &with_fin, &shape(), "a", false, NOW)
        .unwrap()
        .object;
    with_fin["metadata"]["finalizers"] = json!(["f2"]);
    let b = server_side_apply_with(Some(&a), &with_fin, &shape(), "b", false, NOW)
        .unwrap()
        .object;
    assert_eq!(b["metadata"]["finalizers"], json!(["f1", "f2"]));
}
