//! Property tests of the patch engine: JSON patch, merge patch, strategic merge patch and
//! server-side apply never panic on arbitrary documents and patches, and keep the laws
//! their specifications state (RFC 6902 `test` after `add`, RFC 7386 merge patches,
//! `kubectl apply` twice changing nothing, conflicts with other managers).
//!
//! They run in plain `cargo test` (so in CI through scripts/test.sh) with a bounded number
//! of cases each; `PROPTEST_CASES=100000 cargo test -p skiff-patch --test properties`
//! searches deeper.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};
use skiff_patch::{
    ApplyError, json_patch, merge_patch, record_update, server_side_apply, strategic_merge_patch,
};
use std::collections::{BTreeMap, BTreeSet};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        // Failures are kept as named regression tests below, not as files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const NOW: &str = "2024-01-01T00:00:00Z";

/// Every kind whose patch schema differs, and one without a schema.
const KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("apps", "Deployment"),
    ("batch", "CronJob"),
    ("", "Service"),
    ("", "Node"),
    ("", "Namespace"),
    ("", "ServiceAccount"),
    ("autoscaling", "Scale"),
    ("", "PodTemplate"),
    ("", "ConfigMap"),
];

// ---------------------------------------------------------------- arbitrary JSON

/// Keys the schemas and directives give meaning to, so the engine takes its interesting
/// paths, and arbitrary ones.
fn key(directives: bool) -> BoxedStrategy<String> {
    let plain = prop::sample::select(vec![
        "metadata",
        "spec",
        "status",
        "template",
        "jobTemplate",
        "name",
        "labels",
        "finalizers",
        "ownerReferences",
        "uid",
        "containers",
        "initContainers",
        "image",
        "ports",
        "containerPort",
        "port",
        "env",
        "volumes",
        "conditions",
        "type",
        "podCIDRs",
        "secrets",
        "a",
        "b",
        "0",
        "-",
        "",
        "~1",
        "/",
    ])
    .prop_map(str::to_string);
    let directive = prop::sample::select(vec![
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/podCIDRs",
        "$bogus",
    ])
    .prop_map(str::to_string);
    if directives {
        prop_oneof![6 => plain, 2 => directive, 1 => ".{0,6}"].boxed()
    } else {
        prop_oneof![6 => plain, 1 => "[^$]{0,6}"].boxed()
    }
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite: JSON has no NaN or infinity (serde_json would make them null).
        (prop::num::f64::POSITIVE
            | prop::num::f64::NEGATIVE
            | prop::num::f64::NORMAL
            | prop::num::f64::SUBNORMAL
            | prop::num::f64::ZERO)
            .prop_map(Value::from),
        (0i64..100).prop_map(Value::from),
    ]
}

fn scalar(nulls: bool) -> BoxedStrategy<Value> {
    let s = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        number(),
        prop::sample::select(vec![
            "replace", "merge", "delete", "web", "log", "nginx", "a", "b", "",
        ])
        .prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    if nulls {
        prop_oneof![1 => Just(Value::Null), 5 => s].boxed()
    } else {
        s.boxed()
    }
}

/// Arbitrary JSON, a few levels deep.
fn json_value(nulls: bool, directives: bool) -> BoxedStrategy<Value> {
    scalar(nulls)
        .prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key(directives), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

fn json_object(nulls: bool, directives: bool) -> BoxedStrategy<Value> {
    prop::collection::vec((key(directives), json_value(nulls, directives)), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        .boxed()
}

/// JSON pointers of every value in `v`, the root (`""`) first.
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    walk(c, format!("{at}/{}", escape(k)), out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    walk(c, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

// ---------------------------------------------------------------- JSON patch operations

/// Where an operation points: at a value of the document, below one, or anywhere.
#[derive(Debug, Clone)]
enum Target {
    Existing(Index),
    Below(Index, String),
    Anywhere(String),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => any::<Index>().prop_map(Target::Existing),
        3 => (any::<Index>(), prop_oneof![
            prop::sample::select(vec!["-", "0", "1", "9", "a", "new", "~0", "~1", "~2", "01"])
                .prop_map(str::to_string),
            ".{0,4}",
        ]).prop_map(|(i, t)| Target::Below(i, t)),
        1 => prop_oneof![
            Just(String::new()),
            Just("/".to_string()),
            "(/[-a-z0-9~]{0,3}){1,3}",
            ".{0,6}",
        ].prop_map(Target::Anywhere),
    ]
}

impl Target {
    fn resolve(&self, paths: &[String]) -> String {
        match self {
            Target::Existing(i) => paths[i.index(paths.len())].clone(),
            Target::Below(i, t) => format!("{}/{t}", paths[i.index(paths.len())]),
            Target::Anywhere(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct OpTemplate {
    op: &'static str,
    path: Target,
    from: Target,
    value: Value,
    /// Leave out a member the operation needs, or add an odd one.
    malformed: u8,
    /// For a `move`: this many levels above `from` (moving a value over its own parent).
    up: usize,
}

fn op_template() -> impl Strategy<Value = OpTemplate> {
    (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "bogus",
        ]),
        target(),
        target(),
        json_value(true, false),
        0u8..16,
        prop_oneof![2 => Just(0usize), 1 => 1usize..3],
    )
        .prop_map(|(op, path, from, value, malformed, up)| OpTemplate {
            op,
            path,
            from,
            value,
            malformed,
            up,
        })
}

/// JSON patch operations against `doc`'s own paths (resolved now the document is known).
fn operations(doc: &Value, ops: &[OpTemplate]) -> Value {
    let paths = pointers(doc);
    Value::Array(
        ops.iter()
            .map(|o| {
                let mut m = Map::new();
                m.insert("op".into(), json!(o.op));
                m.insert("path".into(), json!(o.path.resolve(&paths)));
                match o.op {
                    "move" if o.up > 0 => {
                        let from = o.from.resolve(&paths);
                        let tokens: Vec<&str> = from.split('/').collect();
                        let keep = tokens.len().saturating_sub(o.up).max(1);
                        m.insert("path".into(), json!(tokens[..keep].join("/")));
                        m.insert("from".into(), json!(from));
                    }
                    "move" | "copy" => {
                        m.insert("from".into(), json!(o.from.resolve(&paths)));
                    }
                    "remove" => {}
                    _ => {
                        m.insert("value".into(), o.value.clone());
                    }
                }
                match o.malformed {
                    0 => {
                        m.remove("path");
                    }
                    1 => {
                        m.remove("value");
                        m.remove("from");
                    }
                    2 => {
                        m.insert("path".into(), o.value.clone());
                    }
                    _ => {}
                }
                Value::Object(m)
            })
            .collect(),
    )
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn json_patch_never_panics(
        doc in json_value(true, false),
        ops in prop::collection::vec(op_template(), 0..6),
    ) {
        let patch = operations(&doc, &ops);
        if let Ok(out) = json_patch(&doc, &patch) {
            // Applying nothing that failed leaves a document JSON can write again.
            prop_assert!(serde_json::to_vec(&out).is_ok());
        }
    }

    #[test]
    fn json_patch_of_arbitrary_json_never_panics(
        doc in json_value(true, false),
        patch in json_value(true, false),
    ) {
        let _ = json_patch(&doc, &patch);
        let _ = json_patch(&doc, &json!([patch]));
    }

    /// RFC 6902: after `add` of a value at a path (in an object or an array), a `test` of
    /// that path against the value succeeds, and the document has it there.
    #[test]
    fn json_patch_test_after_add_succeeds(
        doc in json_object(true, false),
        at in any::<Index>(),
        name in ".{0,6}",
        slot in any::<Index>(),
        append in any::<bool>(),
        value in json_value(true, false),
    ) {
        let containers: Vec<String> = pointers(&doc)
            .into_iter()
            .filter(|p| matches!(doc.pointer(p), Some(Value::Object(_) | Value::Array(_))))
            .collect();
        let parent = &containers[at.index(containers.len())];
        let (path, tested) = match doc.pointer(parent) {
            Some(Value::Array(a)) if append => {
                (format!("{parent}/-"), format!("{parent}/{}", a.len()))
            }
            Some(Value::Array(a)) => {
                let p = format!("{parent}/{}", slot.index(a.len() + 1));
                (p.clone(), p)
            }
            _ => {
                let p = format!("{parent}/{}", escape(&name));
                (p.clone(), p)
            }
        };
        let patch = json!([
            {"op": "add", "path": path, "value": value},
            {"op": "test", "path": tested, "value": value},
        ]);
        let out = json_patch(&doc, &patch)
            .map_err(|e| TestCaseError::fail(format!("{patch}: {e}")))?;
        prop_assert_eq!(out.pointer(&tested), Some(&value));
    }

    /// `test` of every value of a document against itself holds and changes nothing; a
    /// `remove` undoes an `add` of a new member or item.
    #[test]
    fn json_patch_test_and_add_remove_are_identities(
        doc in json_object(true, false),
        at in any::<Index>(),
        name in "[a-z]{1,4}",
        value in json_value(true, false),
    ) {
        let tests: Vec<Value> = pointers(&doc)
            .iter()
            .map(|p| json!({"op": "test", "path": p, "value": doc.pointer(p)}))
            .collect();
        prop_assert_eq!(&json_patch(&doc, &Value::Array(tests)).unwrap(), &doc);
        let containers: Vec<String> = pointers(&doc)
            .into_iter()
            .filter(|p| matches!(doc.pointer(p), Some(Value::Object(_) | Value::Array(_))))
            .collect();
        let parent = &containers[at.index(containers.len())];
        let path = match doc.pointer(parent) {
            Some(Value::Array(a)) => format!("{parent}/{}", a.len()),
            Some(Value::Object(m)) if !m.contains_key(&name) => format!("{parent}/{name}"),
            _ => return Ok(()),
        };
        let patch = json!([
            {"op": "add", "path": path, "value": value},
            {"op": "remove", "path": path},
        ]);
        prop_assert_eq!(&json_patch(&doc, &patch).unwrap(), &doc);
    }
}

/// Moving a member up over its own parent and then failing used to panic inside the
/// json-patch crate (its undo log cannot move the parent back into its child): found by
/// `json_patch_never_panics`. A failed patch is refused; the document is left as it was.
#[test]
fn json_patch_failing_after_moving_a_child_over_its_parent() {
    let doc = json!({"a": {"b": {"c": 1}}});
    for patch in [
        json!([{"op": "move", "from": "/a/b", "path": "/a"}, {"op": "test", "path": "/x", "value": 1}]),
        json!([{"op": "move", "from": "/a", "path": ""}, {"op": "remove", "path": "/nope"}]),
    ] {
        assert!(json_patch(&doc, &patch).is_err(), "{patch}");
    }
    let ok = json!([{"op": "move", "from": "/a/b", "path": "/a"}]);
    assert_eq!(json_patch(&doc, &ok).unwrap(), json!({"a": {"c": 1}}));
}

// ---------------------------------------------------------------- merge patch (RFC 7386)

/// The merge patch that takes `a` to `b` (RFC 7386 has no such function; this is its
/// inverse as the RFC defines application).
fn merge_diff(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(am), Value::Object(bm)) => {
            let mut p = Map::new();
            for k in am.keys() {
                if !bm.contains_key(k) {
                    p.insert(k.clone(), Value::Null);
                }
            }
            for (k, bv) in bm {
                match am.get(k) {
                    Some(av) if av == bv => {}
                    Some(av @ Value::Object(_)) if bv.is_object() => {
                        p.insert(k.clone(), merge_diff(av, bv));
                    }
                    _ => {
                        p.insert(k.clone(), bv.clone());
                    }
                }
            }
            Value::Object(p)
        }
        _ => b.clone(),
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn merge_patch_never_panics(doc in json_value(true, true), patch in json_value(true, true)) {
        match merge_patch(&doc, &patch) {
            Ok(_) => prop_assert!(patch.is_object()),
            Err(_) => prop_assert!(!patch.is_object()),
        }
    }

    /// Applying the difference of `a` and `b` to `a` gives `b`, for any `b` a merge patch
    /// can express (no `null` members: `null` means delete).
    #[test]
    fn merge_patch_of_the_difference_gives_the_target(
        a in json_value(true, true),
        b in json_object(false, true),
    ) {
        let p = merge_diff(&a, &b);
        prop_assert_eq!(merge_patch(&a, &p).unwrap(), b, "patch {}", p);
    }

    /// RFC 7386 application: members of the patch overlay the document (scalars and
    /// arrays replace, `null` deletes), members it does not name stay, and applying the
    /// same patch twice changes nothing more.
    #[test]
    fn merge_patch_overlays_and_is_idempotent(
        a in json_object(true, true),
        p in json_object(true, true),
    ) {
        let once = merge_patch(&a, &p).unwrap();
        let (am, pm, om) = (a.as_object().unwrap(), p.as_object().unwrap(), once.as_object().unwrap());
        for (k, v) in pm {
            match v {
                Value::Null => prop_assert!(!om.contains_key(k), "{} kept", k),
                Value::Object(_) => prop_assert!(om[k].is_object()),
                v => prop_assert_eq!(&om[k], v),
            }
        }
        for (k, v) in am {
            if !pm.contains_key(k) {
                prop_assert_eq!(&om[k], v);
            }
        }
        prop_assert_eq!(merge_patch(&once, &p).unwrap(), once);
        prop_assert_eq!(merge_patch(&a, &json!({})).unwrap(), a);
    }
}

// ---------------------------------------------------------------- strategic merge patch

/// Drops the top-level `metadata` (whose `finalizers` and `ownerReferences` merge by
/// schema in every kind).
fn without_metadata(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
    }
    v
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn strategic_merge_patch_and_apply_never_panic(
        doc in json_value(true, true),
        patch in json_value(true, true),
        force in any::<bool>(),
    ) {
        for (g, k) in KINDS {
            let _ = strategic_merge_patch(&doc, &patch, g, k);
            let _ = server_side_apply(Some(&doc), &patch, g, k, "fuzz", force, NOW);
            let _ = server_side_apply(None, &patch, g, k, "fuzz", force, NOW);
        }
    }

    #[test]
    fn record_update_never_panics(
        old in prop::option::of(json_value(true, true)),
        new in json_value(true, true),
        status in any::<bool>(),
    ) {
        let mut new = new;
        record_update(old.as_ref(), &mut new, "fuzz", "v1", NOW, status.then_some("status"));
    }

    /// Where no schema says otherwise, a strategic merge patch without directives is a
    /// JSON merge patch.
    #[test]
    fn strategic_merge_patch_without_directives_is_a_merge_patch(
        doc in json_value(true, false),
        patch in json_object(true, false).prop_map(without_metadata),
    ) {
        let smp = strategic_merge_patch(&doc, &patch, "example.com", "Widget").unwrap();
        prop_assert_eq!(smp, merge_patch(&doc, &patch).unwrap());
    }
}

// ---------------------------------------------------------------- pods, SMP and apply

#[derive(Debug, Clone)]
struct Container {
    image: String,
    ports: BTreeSet<u16>,
    env: BTreeMap<String, String>,
}

fn container() -> impl Strategy<Value = Container> {
    (
        prop::sample::select(vec!["nginx", "nginx:1.27", "busybox", "redis:7"]),
        prop::collection::btree_set(prop_oneof![Just(80u16), Just(443), 1u16..100], 0..3),
        prop::collection::btree_map("[A-Z]{1,3}", "[a-z0-9]{0,3}", 0..3),
    )
        .prop_map(|(image, ports, env)| Container {
            image: image.into(),
            ports,
            env,
        })
}

#[derive(Debug, Clone)]
struct PodConfig {
    labels: BTreeMap<String, String>,
    finalizers: BTreeSet<String>,
    containers: BTreeMap<String, Container>,
    node: Option<String>,
}

fn pod_config() -> impl Strategy<Value = PodConfig> {
    (
        prop::collection::btree_map("[a-c]", "[a-z0-9]{0,3}", 0..3),
        prop::collection::btree_set("example.com/[a-c]", 0..3),
        prop::collection::btree_map(
            prop::sample::select(vec!["web", "log", "proxy", "init"]).prop_map(str::to_string),
            container(),
            1..4,
        ),
        prop::option::of("node-[0-9]"),
    )
        .prop_map(|(labels, finalizers, containers, node)| PodConfig {
            labels,
            finalizers,
            containers,
            node,
        })
}

impl PodConfig {
    /// The manifest `kubectl apply` would send: empty collections left out.
    fn manifest(&self) -> Value {
        let mut meta = json!({"name": "p", "namespace": "default"});
        if !self.labels.is_empty() {
            meta["labels"] = json!(self.labels);
        }
        if !self.finalizers.is_empty() {
            meta["finalizers"] = json!(self.finalizers);
        }
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|(name, c)| {
                let mut v = json!({"name": name, "image": c.image});
                if !c.ports.is_empty() {
                    v["ports"] = c
                        .ports
                        .iter()
                        .map(|p| json!({"containerPort": p, "protocol": "TCP"}))
                        .collect();
                }
                if !c.env.is_empty() {
                    v["env"] = c
                        .env
                        .iter()
                        .map(|(k, x)| json!({"name": k, "value": x}))
                        .collect();
                }
                v
            })
            .collect();
        let mut spec = json!({"containers": containers});
        if let Some(n) = &self.node {
            spec["nodeName"] = json!(n);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
    }
}

fn without_managed_fields(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    v
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| (k.clone(), x.as_str().unwrap_or("?").to_string()))
        .collect()
}

fn container_names(v: &Value) -> BTreeSet<String> {
    v["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

proptest! {
    #![proptest_config(config(500))]

    /// A strategic merge patch naming a container by its merge key changes that container
    /// only, in place.
    #[test]
    fn strategic_merge_patch_merges_containers_by_name(
        pod in pod_config(),
        which in any::<Index>(),
        image in "[a-z]{1,6}:[0-9]",
    ) {
        let doc = pod.manifest();
        let names: Vec<&String> = pod.containers.keys().collect();
        let name = names[which.index(names.len())];
        let patch = json!({"spec": {"containers": [{"name": name, "image": image}]}});
        let out = strategic_merge_patch(&doc, &patch, "", "Pod").unwrap();
        let (before, after) = (
            doc["spec"]["containers"].as_array().unwrap(),
            out["spec"]["containers"].as_array().unwrap(),
        );
        prop_assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(after) {
            if &b["name"] == name {
                let mut want = b.clone();
                want["image"] = json!(image);
                prop_assert_eq!(a, &want);
            } else {
                prop_assert_eq!(a, b);
            }
        }
    }

    /// A strategic merge patch applied twice gives what it gave once.
    #[test]
    fn strategic_merge_patch_is_idempotent(live in pod_config(), patch in pod_config()) {
        let (live, patch) = (live.manifest(), patch.manifest());
        let once = strategic_merge_patch(&live, &patch, "", "Pod").unwrap();
        let twice = strategic_merge_patch(&once, &patch, "", "Pod").unwrap();
        prop_assert_eq!(twice, once);
    }

    /// `kubectl apply` twice with the same manifest changes nothing the second time.
    #[test]
    fn apply_is_idempotent(pod in pod_config()) {
        let m = pod.manifest();
        let once = server_side_apply(None, &m, "", "Pod", "kubectl", false, NOW).unwrap();
        let twice =
            server_side_apply(Some(&once.object), &m, "", "Pod", "kubectl", false, NOW).unwrap();
        prop_assert_eq!(twice.object, once.object);
        prop_assert_eq!(twice.managed_fields, once.managed_fields);
    }

    /// Applying a second manifest after a first removes what only the first applied: the
    /// labels and containers are the second manifest's.
    #[test]
    fn apply_removes_what_is_no_longer_applied(first in pod_config(), second in pod_config()) {
        let one = server_side_apply(None, &first.manifest(), "", "Pod", "kubectl", false, NOW)
            .unwrap();
        let two = server_side_apply(
            Some(&one.object), &second.manifest(), "", "Pod", "kubectl", false, NOW,
        )
        .unwrap();
        prop_assert_eq!(labels_of(&two.object), second.labels.clone());
        prop_assert_eq!(
            container_names(&two.object),
            second.containers.keys().cloned().collect::<BTreeSet<_>>()
        );
        let fresh = server_side_apply(None, &second.manifest(), "", "Pod", "kubectl", false, NOW)
            .unwrap();
        prop_assert_eq!(&two.object["spec"]["nodeName"], &fresh.object["spec"]["nodeName"]);
        // An emptied list may stay as `[]` where a fresh apply has none: the same to
        // Kubernetes, whose types omit empty lists.
        let finalizers = |v: &Value| -> BTreeSet<String> {
            v["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f.as_str().unwrap_or("?").to_string())
                .collect()
        };
        prop_assert_eq!(finalizers(&two.object), second.finalizers.clone());
        prop_assert_eq!(finalizers(&fresh.object), second.finalizers.clone());
    }

    /// A label another manager last wrote is a conflict for an apply that sets it to
    /// something else; forced, the apply wins and the label is the applier's.
    #[test]
    fn apply_conflicts_with_another_managers_label(
        pod in pod_config(),
        key in "[a-c]",
        theirs in "[a-z]{1,3}",
        ours in "[A-Z]{1,3}",
    ) {
        let mut pod = pod;
        pod.labels.insert(key.clone(), ours.clone());
        let m = pod.manifest();
        let applied = server_side_apply(None, &m, "", "Pod", "kubectl", false, NOW).unwrap();
        let old = without_managed_fields(applied.object.clone());
        let mut edited = applied.object.clone();
        edited["metadata"]["labels"][&key] = json!(theirs);
        record_update(Some(&old), &mut edited, "editor", "v1", NOW, None);
        match server_side_apply(Some(&edited), &m, "", "Pod", "kubectl", false, NOW) {
            Err(ApplyError::Conflicts(c)) => {
                prop_assert!(
                    c.iter().any(|c| c.manager == "editor" && c.field == format!(".metadata.labels.{key}")),
                    "{:?}", c
                );
            }
            other => prop_assert!(false, "no conflict: {:?}", other.map(|o| o.object)),
        }
        let forced = server_side_apply(Some(&edited), &m, "", "Pod", "kubectl", true, NOW).unwrap();
        prop_assert_eq!(&forced.object["metadata"]["labels"][&key], &json!(ours));
        prop_assert_eq!(without_managed_fields(forced.object), without_managed_fields(applied.object));
    }
}

/// A container applied before and no longer applied goes whole. Its merge key (`name`)
/// used to be removed first, so the container could not be found again and stayed
/// without a name: found by `apply_removes_what_is_no_longer_applied`.
#[test]
fn apply_removes_a_container_no_longer_applied() {
    let pod = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": name, "image": "nginx"}]},
        })
    };
    let one = server_side_apply(None, &pod("log"), "", "Pod", "kubectl", false, NOW).unwrap();
    let two = server_side_apply(
        Some(&one.object),
        &pod("web"),
        "",
        "Pod",
        "kubectl",
        false,
        NOW,
    )
    .unwrap();
    assert_eq!(
        two.object["spec"]["containers"],
        json!([{"name": "web", "image": "nginx"}])
    );
}

/// A write whose result is not an object (a JSON patch may replace the whole document)
/// has no metadata to record fields in; recording it used to panic: found by
/// `record_update_never_panics`.
#[test]
fn record_update_of_a_non_object_records_nothing() {
    for v in [json!([]), json!("x"), json!(1), json!(true)] {
        let mut new = v.clone();
        record_update(None, &mut new, "kubectl", "v1", NOW, None);
        assert_eq!(new, v);
    }
}
