//! Behaviour of [`Schema`] end to end: each case is denied (or changed) with the
//! offending part and allowed (or unchanged) without it.

use crate::{ListType, Schema};
use serde_json::{Value, json};

fn schema(spec_props: Value) -> Schema {
    let s = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": spec_props}}
    });
    Schema::compile(&s, "spec.versions[0].schema.openAPIV3Schema").unwrap()
}

fn messages(s: &Schema, obj: Value, old: Option<Value>) -> Vec<String> {
    s.validate(&obj, old.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn openapi_errors_are_worded_as_kube() {
    let s = schema(json!({
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
        "ratio": {"type": "number", "multipleOf": 0.5},
        "when": {"type": "string", "format": "date-time"},
    }));
    let cases = [
        (
            json!({"replicas": "x"}),
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
        ),
        (
            json!({"replicas": 11}),
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        ),
        (
            json!({"replicas": 0}),
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ),
        (
            json!({"mode": "x"}),
            r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#,
        ),
        (
            json!({"name": "abcd"}),
            "spec.name: Too long: may not be more than 3 bytes",
        ),
        (
            json!({"name": "AB"}),
            r#"spec.name: Invalid value: "AB": spec.name in body should match '^[a-z]+$'"#,
        ),
        (
            json!({"tags": ["a", "b", "c"]}),
            "spec.tags: Too many: must have at most 2 items",
        ),
        (
            json!({"ratio": 0.7}),
            "spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5",
        ),
        (
            json!({"when": "noon"}),
            r#"spec.when: Invalid value: "noon": spec.when in body must be of type date-time: "noon""#,
        ),
    ];
    for (spec, want) in cases {
        let got = messages(&s, json!({"spec": spec.clone()}), None);
        assert!(got.iter().any(|m| m == want), "{spec}: {got:?}");
    }
    let ok = json!({"spec": {"replicas": 3, "mode": "a", "name": "ab", "tags": ["a"], "ratio": 1.5, "when": "2024-01-02T03:04:05Z"}});
    assert_eq!(messages(&s, ok, None), Vec::<String>::new());
}

#[test]
fn required_and_nullable() {
    let s = Schema::compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
            "properties": {"size": {"type": "integer"}, "note": {"type": "string", "nullable": true}, "other": {"type": "string"}}}}}),
        "",
    )
    .unwrap();
    assert_eq!(
        messages(&s, json!({"spec": {}}), None)[0],
        "spec.size: Required value"
    );
    assert_eq!(
        messages(&s, json!({"spec": {"size": 1, "note": null}}), None),
        Vec::<String>::new()
    );
    let got = messages(&s, json!({"spec": {"size": 1, "other": null}}), None);
    assert_eq!(
        got[0],
        r#"spec.other: Invalid value: "null": spec.other in body must be of type string: "null""#
    );
}

#[test]
fn int_or_string() {
    let s = schema(json!({"port": {"x-kubernetes-int-or-string": true}}));
    for ok in [json!(80), json!("http")] {
        assert!(s.validate(&json!({"spec": {"port": ok}}), None).is_empty());
    }
    let got = messages(&s, json!({"spec": {"port": true}}), None);
    assert_eq!(
        got[0],
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
    );
    let any_of = schema(json!({"port": {"x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]}}));
    assert!(
        any_of
            .validate(&json!({"spec": {"port": "x"}}), None)
            .is_empty()
    );
}

#[test]
fn pruning_reports_paths() {
    let s = schema(json!({
        "known": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                 "properties": {"typed": {"type": "object", "properties": {"x": {"type": "string"}}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }));
    let mut obj = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "bogus": 1, "labels": {"a": "b"}},
        "spec": {"known": "k", "extra": 1, "items": [{"a": "x", "b": "y"}],
                 "free": {"anything": {"deep": 1}, "typed": {"x": "1", "y": 2}},
                 "labels": {"any": "thing"}},
        "status": {"x": 1}
    });
    let removed = s.prune(&mut obj);
    assert_eq!(
        removed,
        vec![
            "metadata.bogus",
            "spec.extra",
            "spec.free.typed.y",
            "spec.items[0].b",
            "status"
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"known": "k", "items": [{"a": "x"}],
                     "free": {"anything": {"deep": 1}, "typed": {"x": "1"}},
                     "labels": {"any": "thing"}}
        })
    );
    let mut clean = obj.clone();
    assert!(s.prune(&mut clean).is_empty());
    assert_eq!(clean, obj);
}

#[test]
fn preserve_unknown_fields_nesting() {
    let s = Schema::compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"strict": {"type": "object", "properties": {"a": {"type": "string"}}}}}}}),
        "",
    )
    .unwrap();
    let mut obj = json!({"spec": {"loose": {"x": 1}, "strict": {"a": "1", "b": 2}}});
    assert_eq!(s.prune(&mut obj), vec!["spec.strict.b"]);
    assert_eq!(
        obj,
        json!({"spec": {"loose": {"x": 1}, "strict": {"a": "1"}}})
    );
}

#[test]
fn embedded_resource() {
    let s = schema(
        json!({"template": {"type": "object", "x-kubernetes-embedded-resource": true,
        "x-kubernetes-preserve-unknown-fields": true}}),
    );
    let got = messages(&s, json!({"spec": {"template": {"kind": "Pod"}}}), None);
    assert_eq!(got[0], "spec.template.apiVersion: Required value");
    // No CEL rules in this schema: nothing to say about unchecked rules.
    assert_eq!(got.len(), 1);
    let ok = json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}}});
    assert!(s.validate(&ok, None).is_empty());
    let mut pruned = json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}}}});
    assert_eq!(s.prune(&mut pruned), vec!["spec.template.metadata.junk"]);
    assert_eq!(pruned["spec"]["template"]["metadata"], json!({"name": "p"}));
}

#[test]
fn list_type_map_and_set_duplicates() {
    let s = schema(json!({
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {"type": "object", "required": ["port", "protocol"],
                      "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"}}}},
        "names": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
    }));
    let dup = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}], "names": ["a", "a"]}});
    let mut got = messages(&s, dup, None);
    got.sort();
    assert_eq!(
        got,
        vec![
            r#"spec.names[1]: Duplicate value: "a""#,
            r#"spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}"#,
        ]
    );
    let ok = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}], "names": ["a", "b"]}});
    assert!(s.validate(&ok, None).is_empty());
    assert_eq!(
        s.list_type(&["spec", "ports"]),
        Some(ListType::Map(vec!["port".into(), "protocol".into()]))
    );
    assert_eq!(s.list_type(&["spec", "names"]), Some(ListType::Set));
    assert_eq!(s.list_type(&["spec", "ports", "*", "port"]), None);
}

#[test]
fn defaults_nested_and_in_items() {
    let s = schema(json!({
        "replicas": {"type": "integer", "default": 1},
        "config": {"type": "object", "default": {}, "properties": {
            "mode": {"type": "string", "default": "auto"},
            "level": {"type": "integer"}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "weight": {"type": "integer", "default": 10}}}},
        "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "on": {"type": "boolean", "default": true}}}},
        "gone": {"type": "string"},
    }));
    let mut obj = json!({"spec": {"items": [{}, {"weight": 3}], "byName": {"a": {}}, "config": null, "gone": null}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({"items": [{"weight": 10}, {"weight": 3}], "byName": {"a": {"on": true}},
               "config": {"mode": "auto"}, "replicas": 1})
    );
    let mut set = json!({"spec": {"replicas": 5, "config": {"mode": "manual"}}});
    s.apply_defaults(&mut set);
    assert_eq!(set["spec"]["replicas"], json!(5));
    assert_eq!(set["spec"]["config"], json!({"mode": "manual"}));
}

fn cel_schema(rules: Value) -> Schema {
    Schema::compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": rules,
            "properties": {"replicas": {"type": "integer"}, "min": {"type": "integer"}, "name": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self.startsWith('a')", "message": "must start with a"}]}}}}}),
        "",
    )
    .unwrap()
}

#[test]
fn cel_rules_and_messages() {
    let s = cel_schema(json!([
        {"rule": "self.replicas >= self.min", "messageExpression": "'replicas ' + string(self.replicas) + ' below min'"},
        {"rule": "!has(self.name) || self.name.size() < 5"},
        {"rule": "self.replicas != 7", "reason": "FieldValueForbidden", "fieldPath": ".replicas", "message": "not seven"},
    ]));
    let got = messages(&s, json!({"spec": {"replicas": 1, "min": 2}}), None);
    assert_eq!(
        got,
        vec!["spec: Invalid value: \"object\": replicas 1 below min"]
    );
    let got = messages(
        &s,
        json!({"spec": {"replicas": 3, "min": 2, "name": "bcdefg"}}),
        None,
    );
    assert_eq!(
        got,
        vec![
            "spec: Invalid value: \"object\": failed rule: !has(self.name) || self.name.size() < 5",
            r#"spec.name: Invalid value: "string": must start with a"#,
        ]
    );
    let got = messages(&s, json!({"spec": {"replicas": 7, "min": 2}}), None);
    assert_eq!(got, vec!["spec.replicas: Forbidden: not seven"]);
    assert!(
        s.validate(
            &json!({"spec": {"replicas": 3, "min": 2, "name": "ab"}}),
            None
        )
        .is_empty()
    );
}

#[test]
fn transition_rule_with_message_expression() {
    let s = cel_schema(json!([{
        "rule": "self.replicas >= oldSelf.replicas",
        "messageExpression": "'replicas may not decrease from ' + string(oldSelf.replicas)"
    }]));
    let new = json!({"spec": {"replicas": 2, "min": 0}});
    assert!(
        s.validate(&new, None).is_empty(),
        "transition rules skip on create"
    );
    let old = json!({"spec": {"replicas": 3, "min": 0}});
    assert_eq!(
        messages(&s, new.clone(), Some(old)),
        vec!["spec: Invalid value: \"object\": replicas may not decrease from 3"]
    );
    let older = json!({"spec": {"replicas": 1, "min": 0}});
    assert!(s.validate(&new, Some(&older)).is_empty());
}

#[test]
fn optional_old_self_runs_on_create() {
    let s = cel_schema(json!([{
        "rule": "!oldSelf.hasValue() || self.replicas >= oldSelf.value().replicas",
        "optionalOldSelf": true, "message": "no decrease"
    }, {"rule": "oldSelf.hasValue() || self.replicas < 100", "optionalOldSelf": true, "message": "too big to start"}]));
    assert_eq!(
        messages(&s, json!({"spec": {"replicas": 200}}), None),
        vec!["spec: Invalid value: \"object\": too big to start"]
    );
    assert!(
        s.validate(&json!({"spec": {"replicas": 5}}), None)
            .is_empty()
    );
    let old = json!({"spec": {"replicas": 9}});
    assert_eq!(
        messages(&s, json!({"spec": {"replicas": 5}}), Some(old)),
        vec!["spec: Invalid value: \"object\": no decrease"]
    );
}

#[test]
fn cel_library_functions() {
    let s = Schema::compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "xs": {"type": "array", "items": {"type": "integer"},
                "x-kubernetes-validations": [
                    {"rule": "self.isSorted()", "message": "sorted"},
                    {"rule": "self.sum() < 10", "message": "sum"},
                    {"rule": "self.size() == 0 || self.max() < 5", "message": "max"},
                    {"rule": "self.all(x, x >= 0)", "message": "all"}]},
            "s": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self.lowerAscii() == self && self.matches('^[a-z-]+$') && self.split('-').size() <= 2", "message": "str"}]}}}}}),
        "",
    )
    .unwrap();
    assert!(
        s.validate(&json!({"spec": {"xs": [1, 2, 3], "s": "ab-cd"}}), None)
            .is_empty()
    );
    let got = messages(&s, json!({"spec": {"xs": [3, 2, 7], "s": "Ab-cd-e"}}), None);
    assert_eq!(
        got,
        vec![
            "spec.xs: Invalid value: \"array\": sorted",
            "spec.xs: Invalid value: \"array\": sum",
            "spec.xs: Invalid value: \"array\": max",
            r#"spec.s: Invalid value: "string": str"#,
        ]
    );
}

#[test]
fn list_map_items_correlate_for_transition_rules() {
    let s = Schema::compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}},
                    "x-kubernetes-validations": [{"rule": "self.v >= oldSelf.v", "message": "v decreased"}]}}}}}}),
        "",
    )
    .unwrap();
    let old = json!({"spec": {"items": [{"name": "a", "v": 5}, {"name": "b", "v": 1}]}});
    let new = json!({"spec": {"items": [{"name": "b", "v": 2}, {"name": "a", "v": 4}, {"name": "c", "v": 0}]}});
    assert_eq!(
        messages(&s, new, Some(old.clone())),
        vec!["spec.items[1]: Invalid value: \"object\": v decreased"]
    );
    let fine = json!({"spec": {"items": [{"name": "b", "v": 2}, {"name": "a", "v": 5}]}});
    assert!(s.validate(&fine, Some(&old)).is_empty());
}

#[test]
fn blocking_errors_skip_rules() {
    let s = cel_schema(json!([{"rule": "self.replicas > 100", "message": "big"}]));
    let got = messages(&s, json!({"spec": {"replicas": "x"}}), None);
    assert_eq!(got.len(), 2);
    assert!(got[1].contains("some validation rules were not checked"));
    assert_eq!(
        messages(&s, json!({"spec": {"replicas": 1}}), None),
        vec!["spec: Invalid value: \"object\": big"]
    );
}

#[test]
fn compile_errors() {
    let base = "spec.versions[0].schema.openAPIV3Schema";
    let cases = [
        (
            json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array"}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[a].items: Required value: must be specified",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "default": 5}}}),
            r#"spec.versions[0].schema.openAPIV3Schema.properties[a].default: Invalid value: "integer":  in body must be of type string: "integer""#,
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}),
            "spec.versions[0].schema.openAPIV3Schema.properties[a].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
        ),
        (
            json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.x >"}]}),
            "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule: Invalid value",
        ),
        (
            json!({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.a == oldSelf.a"}]}}}}),
            "oldSelf cannot be used on the uncorrelatable portion of the schema within spec.versions[0].schema.openAPIV3Schema.properties[xs]",
        ),
    ];
    for (bad, want) in cases {
        let errs = Schema::compile(&bad, base).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(msgs.iter().any(|m| m.contains(want)), "{bad}: {msgs:?}");
    }
    let good = json!({"type": "object", "properties": {"a": {"type": "string", "default": "x"},
        "xs": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
               "items": {"type": "object", "required": ["k"], "properties": {"k": {"type": "string"}}}}},
        "x-kubernetes-validations": [{"rule": "has(self.a)"}]});
    assert!(Schema::compile(&good, base).is_ok());
}

#[test]
fn value_at_scale_paths() {
    let obj = json!({"spec": {"replicas": 3}, "status": {}});
    assert_eq!(Schema::value_at(&obj, ".spec.replicas"), Some(&json!(3)));
    assert_eq!(Schema::value_at(&obj, ".status.replicas"), None);
    assert_eq!(Schema::value_at(&obj, "spec"), None);
}

#[test]
fn schema_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Schema>();
}

#[test]
fn metadata_item_paths_of_removed_fields() {
    let s = schema(json!({}));
    let mut obj = json!({"metadata": {"name": "w",
        "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u", "x": 1}],
        "managedFields": [{"manager": "m"}, {"manager": "n", "bogus": {}}]}});
    assert_eq!(
        s.prune(&mut obj),
        vec![
            "metadata.managedFields[1].bogus",
            "metadata.ownerReferences[0].x"
        ]
    );
    assert_eq!(obj["metadata"]["managedFields"][1], json!({"manager": "n"}));
}

/// Asserts that `a` and `b` report the same for every object, with no old object and
/// with each of `objs[olds]`; returns how many errors they reported.
fn same_reports(a: &Schema, b: &Schema, objs: &[Value], olds: &[usize]) -> usize {
    let mut reported = 0;
    for obj in objs {
        let olds = std::iter::once(None).chain(olds.iter().map(|&i| Some(&objs[i])));
        for old in olds {
            let got = messages(a, obj.clone(), old.cloned());
            assert_eq!(
                got,
                messages(b, obj.clone(), old.cloned()),
                "{obj} (old {old:?})"
            );
            reported += got.len();
        }
    }
    reported
}

/// Marks every node's rules as reading all of `self` and `oldSelf`: the conversion
/// before rules were analysed, which narrowed conversion must not be told apart from.
fn read_everything(n: &mut crate::node::Node) {
    use crate::cel::RuleReads;
    n.rule_reads = RuleReads::everything();
    for p in n.properties.values_mut() {
        read_everything(p);
    }
    if let Some(i) = n.items.as_deref_mut() {
        read_everything(i);
    }
}

#[test]
fn narrowed_cel_values_evaluate_as_whole_ones() {
    let rules = json!([
        {"rule": "self.a >= 1 && self.a__dash__b != 'x'", "messageExpression": "'a is ' + string(self.a)"},
        {"rule": "!has(self.o) || !has(self.o.p) || self.o.p.size() < 3"},
        {"rule": "self.o.q == 1"},
        {"rule": "self.s.t == 1"},
        {"rule": "self.__namespace__ == 'n'"},
        {"rule": "self.m.k == 'v' && self.l.exists(x, x == 2)"},
        {"rule": "self.a >= oldSelf.a", "message": "a may not shrink"},
        {"rule": "!oldSelf.hasValue() || self.o == oldSelf.value().o", "optionalOldSelf": true},
        {"rule": "size(self) < 8"},
    ]);
    let root = json!({"type": "object",
    "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('w') && self.kind == 'Widget'"}],
    "properties": {"spec": {"type": "object", "x-kubernetes-validations": rules, "properties": {
        "a": {"type": "integer"}, "a-b": {"type": "string"}, "s": {"type": "string"},
        "namespace": {"type": "string"},
        "o": {"type": "object", "properties": {"p": {"type": "string"}, "q": {"type": "integer"}}},
        "m": {"type": "object", "additionalProperties": {"type": "string"}},
        "l": {"type": "array", "items": {"type": "integer"}},
    }}}});
    let narrowed = Schema::compile(&root, "").unwrap();
    let mut whole = Schema::compile(&root, "").unwrap();
    read_everything(std::sync::Arc::get_mut(&mut whole.root).expect("not shared"));
    let objs = [
        json!({"kind": "Widget", "metadata": {"name": "w1"}, "spec": {"a": 2, "a-b": "y", "s": "z",
            "namespace": "n", "o": {"p": "ab", "q": 1}, "m": {"k": "v"}, "l": [1, 2]}}),
        json!({"kind": "Gadget", "metadata": {"name": "x"}, "spec": {"a": 0, "a-b": "x",
            "o": {"p": "abcd"}, "m": {"j": "v"}, "l": []}}),
        json!({"kind": "Widget", "metadata": {"name": "w2"}, "spec": {"o": {}}}),
    ];
    let checked = same_reports(&narrowed, &whole, &objs, &[0, 1]);
    // The cases do fail rules, in all the ways above.
    assert!(checked > 20, "{checked}");
}

#[test]
fn unknown_fields_are_what_prune_reports() {
    let s = schema(json!({
        "known": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                 "properties": {"typed": {"type": "object", "properties": {"x": {"type": "string"}}},
                                "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }));
    let objs = [
        json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "w"}, "spec": {"known": "k"}}),
        json!({"metadata": {"name": "w", "bogus": 1}}),
        json!({"metadata": {"managedFields": [{"manager": "m", "x": 1}]}}),
        json!({"metadata": {"managedFields": [{"manager": "m"}], "labels": {"a": "b"}}}),
        json!({"spec": {"extra": 1}}),
        json!({"spec": {"items": [{"a": "x"}, {"a": "x", "b": "y"}]}}),
        json!({"spec": {"items": [{"a": "x"}], "labels": {"any": "thing"}}}),
        json!({"spec": {"free": {"anything": {"deep": 1}, "typed": {"x": "1"}}}}),
        json!({"spec": {"free": {"typed": {"x": "1", "y": 2}}}}),
        json!({"spec": {"free": {"list": [{"x": "1", "y": 2}]}}}),
        json!({"status": {"x": 1}}),
    ];
    for obj in objs {
        let want = s.prune(&mut obj.clone());
        assert_eq!(s.unknown_fields(&obj), want, "{obj}");
    }
}

/// Takes every rule off the fast path: what cel-rust alone says.
fn without_fast_path(n: &mut crate::node::Node) {
    for r in &mut n.rules {
        r.fast = None;
    }
    for p in n.properties.values_mut() {
        without_fast_path(p);
    }
    if let Some(i) = n.items.as_deref_mut() {
        without_fast_path(i);
    }
    if let Some(crate::node::Additional::Schema(s)) = &mut n.additional {
        without_fast_path(s);
    }
}

fn count_fast(n: &crate::node::Node) -> usize {
    let here = n.rules.iter().filter(|r| r.fast.is_some()).count();
    let below: usize = n.properties.values().map(count_fast).sum();
    here + below + n.items.as_deref().map_or(0, count_fast)
}

/// Rules the fast path takes, and rules it must leave to cel-rust, in one schema.
fn fast_path_schema() -> Value {
    let rules = json!([
        // Evaluated on the fast path.
        {"rule": "self.i >= self.j && self.i - self.j < 10 && self.i * 2 != 7 && -self.i < 0"},
        {"rule": "self.i / 2 == 1 && self.i % 2 == 0", "message": "i is not 2"},
        {"rule": "self.i / self.zero == 0"},
        {"rule": "self.i * 9223372036854775807 > 0"},
        {"rule": "self.d > 0.5 && self.d + 1.0 < 3.0 && self.d * 2.0 != 3.0"},
        {"rule": "self.n == 1.0", "message": "n is not 1"},
        {"rule": "self.n == 1"},
        {"rule": "self.i == 2.0"},
        {"rule": "self.i < 3u"},
        {"rule": "self.s < 'b' && self.s != '' && self.s.size() == 3 && size(self.s) <= 3"},
        {"rule": "self.b == true && self.b != false"},
        {"rule": "self.b < true"},
        {"rule": "!has(self.o) || !has(self.o.p) || self.o.p.size() < 3"},
        {"rule": "has(self.o.p) ? self.o.p == 'ab' : self.i > 0"},
        {"rule": "self.mode in ['Fast', 'Safe']"},
        {"rule": "self.i in [1, 2, 3]"},
        {"rule": "self.i in [1, 'x']"},
        {"rule": "self.absent == 1 || self.i == 2"},
        {"rule": "self.i == 2 || self.absent == 1"},
        {"rule": "self.absent == 1 && false"},
        {"rule": "self.nul == null && has(self.nul)"},
        {"rule": "self.nul.x == 1"},
        {"rule": "size(self.m) == 1 && self.m.k == 'v' && has(self.m.k)"},
        {"rule": "size(self.l) == 2 && self.l.size() > 0"},
        {"rule": "size(self.free) >= 1 && self.m.k == 'v'"},
        {"rule": "self.i >= oldSelf.i", "message": "i may not shrink"},
        {"rule": "self.j < self.i"},
        {"rule": "self.i <= self.j"},
        {"rule": "self.i > self.j"},
        {"rule": "self.j >= self.i"},
        {"rule": "has(self.o) && has(self.j)"},
        {"rule": "self.s.size() > 3"},
        {"rule": "!(self.j >= self.i)"},
        {"rule": "self.nul == 0"},
        // Left to cel-rust.
        {"rule": "self.__namespace__ == 'n'"},
        {"rule": "self.a__dash__b != 'x'"},
        {"rule": "size(self) < 30"},
        {"rule": "self.l.exists(x, x == 2)"},
        {"rule": "self.s.startsWith('a')"},
        {"rule": "self.s + 'x' == 'abcx'"},
        {"rule": "!oldSelf.hasValue() || self.i == oldSelf.value().i", "optionalOldSelf": true},
    ]);
    json!({"type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('w') && self.kind == 'Widget'"},
        {"rule": "has(self.spec) && self.spec.i > 0"},
        {"rule": "has(self.metadata.generateName)"},
        {"rule": "self.embedded.kind == 'K'"},
    ],
    "properties": {"metadata": {"type": "object", "properties": {"generateName": {"type": "string"}}},
    "spec": {"type": "object", "x-kubernetes-validations": rules, "properties": {
        "i": {"type": "integer"}, "j": {"type": "integer"}, "zero": {"type": "integer"},
        "absent": {"type": "integer"},
        "d": {"type": "number"}, "n": {"type": "number"}, "s": {"type": "string"},
        "b": {"type": "boolean"}, "mode": {"type": "string"}, "a-b": {"type": "string"},
        "namespace": {"type": "string"},
        "nul": {"type": "object", "nullable": true, "properties": {"x": {"type": "integer"}}},
        "o": {"type": "object", "properties": {"p": {"type": "string"}}},
        "m": {"type": "object", "additionalProperties": {"type": "string"}},
        "l": {"type": "array", "items": {"type": "integer"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }}, "embedded": {"type": "object", "x-kubernetes-embedded-resource": true,
        "x-kubernetes-preserve-unknown-fields": true}}})
}

#[test]
fn the_fast_path_agrees_with_cel() {
    let root = fast_path_schema();
    let fast = Schema::compile(&root, "").unwrap();
    let mut slow = Schema::compile(&root, "").unwrap();
    without_fast_path(std::sync::Arc::get_mut(&mut slow.root).expect("not shared"));
    // Compiled for the fast path: the first 34 rules of spec, `size(self)` (whose object
    // with properties it then leaves to cel-rust) and the root's last three.
    assert_eq!(count_fast(&fast.root), 38);
    assert_eq!(count_fast(&slow.root), 0);
    let objs = [
        json!({"kind": "Widget", "metadata": {"name": "w1"}, "spec": {"i": 2, "j": 1, "zero": 0,
            "d": 1.25, "n": 1, "s": "abc", "b": true, "mode": "Fast", "a-b": "y", "namespace": "n",
            "nul": null, "o": {"p": "ab"}, "m": {"k": "v"}, "l": [1, 2], "free": {"anything": 1}},
            "embedded": {"apiVersion": "v1", "kind": "K", "metadata": {"name": "e", "labels": {"a": "b"}}}}),
        json!({"kind": "Gadget", "metadata": {"name": "x"}, "spec": {"i": 9_223_372_036_854_775_807_i64,
            "j": -9_223_372_036_854_775_807_i64, "zero": 0, "d": 0.25, "n": 2.5, "s": "ßéx", "b": false,
            "mode": "Slow", "a-b": "x", "nul": {"x": 1}, "o": {"p": "abcd"}, "m": {},
            "l": [], "free": {"anything": "1", "more": [1]}}}),
        json!({"kind": "Widget", "metadata": {"name": "w2", "generateName": "w", "labels": {"a": "b"}}, "spec": {"i": 0, "o": {}, "s": "",
            "nul": {}, "m": {"k": "w", "j": "v"}, "free": {}}}),
        json!({"kind": "Widget", "metadata": {"name": "w3"}, "spec": {"i": 1, "j": 1, "d": 1,
            "n": 1.0, "s": "a\u{1F600}b", "b": true, "mode": "Safe", "zero": 1}}),
        json!({"kind": "Widget", "metadata": {"name": "w4"}}),
    ];
    let failures = same_reports(&fast, &slow, &objs, &[0, 1, 3]);
    // The objects fail rules in all the ways above, and pass them too.
    assert!(failures > 100, "{failures}");
    let ok = &objs[0];
    assert!(fast.validate(ok, Some(ok)).len() < 20);
}

#[test]
fn plain_rules_are_evaluated_on_the_fast_path() {
    // The shape of most CRDs' rules: both must be taken, and hold, without cel-rust.
    let s = Schema::compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.replicas >= self.minReplicas", "message": "replicas below minReplicas"},
                {"rule": "!has(self.group0) || !has(self.group0.field0) || self.group0.field0.size() < 100"},
            ],
            "properties": {"replicas": {"type": "integer"}, "minReplicas": {"type": "integer"},
                "group0": {"type": "object", "properties": {"field0": {"type": "string"}}}}}}}),
        "",
    )
    .unwrap();
    let spec = &s.root.properties["spec"];
    assert!(spec.rules.iter().all(|r| r.fast.is_some()));
    let obj = json!({"replicas": 3, "minReplicas": 1, "group0": {"field0": "a"}});
    let scope = crate::cel::fast::Scope::new(spec, &obj, None, false);
    assert!(spec.rules.iter().all(|r| scope.holds(r.fast.as_ref())));
    let bad = json!({"replicas": 0, "minReplicas": 1});
    let scope = crate::cel::fast::Scope::new(spec, &bad, None, false);
    assert!(!scope.holds(spec.rules[0].fast.as_ref()));
}

#[test]
fn undefined_fields_fail_compilation() {
    let schema = |rule: Value| {
        json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [rule],
        "properties": {
            "a": {"type": "integer"}, "a-b": {"type": "string"},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "ios": {"x-kubernetes-int-or-string": true},
            "items": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "res": {"type": "object", "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true},
        }}}})
    };
    let detail = |rule: Value| -> Option<String> {
        let errs = Schema::compile(&schema(rule), "s").err()?;
        assert_eq!(errs.len(), 1, "{errs:?}");
        Some(format!("{}: {}", errs[0].field, errs[0].detail))
    };
    // What the schema exposes compiles.
    for ok in [
        "self.a > 0 && self.a__dash__b != ''",
        "self.m.anything == 'x' && has(self.m.other)",
        "size(self.free) == 0 && self.ios == 1",
        "self.items.all(i, i.k == 'x') && self.items[0].k == 'y'",
        "self.res.kind == 'Pod' && self.res.metadata.name != ''",
        "self.a >= oldSelf.a",
    ] {
        assert_eq!(detail(json!({"rule": ok})), None, "{ok}");
    }
    let undefined = |rule: &str, col: usize, field: &str| {
        format!(
            "s.properties[spec].x-kubernetes-validations[0].rule: compilation failed: \
             ERROR: <input>:1:{col}: undefined field '{field}'\n | {rule}\n | {}^",
            ".".repeat(col - 1)
        )
    };
    for (rule, col, field) in [
        ("self.foo > 0", 5, "foo"),
        ("has(self.foo)", 4, "foo"),
        ("self.free.x == 1", 10, "x"),
        ("self.items.all(i, i.bad == 1)", 20, "bad"),
        ("self.items[0].bad == 'y'", 14, "bad"),
        ("self.res.metadata.labels.x == 'y'", 18, "labels"),
        ("self.a > oldSelf.b", 17, "b"),
    ] {
        let got = detail(json!({"rule": rule}));
        assert_eq!(got.as_deref(), Some(undefined(rule, col, field).as_str()));
    }
    let got = detail(json!({"rule": "self.a > 0", "messageExpression": "'a is ' + self.x"}));
    assert_eq!(
        got.as_deref(),
        Some(
            "s.properties[spec].x-kubernetes-validations[0].messageExpression: messageExpression \
             compilation failed: ERROR: <input>:1:15: undefined field 'x'\n | 'a is ' + self.x\n | \
             ..............^"
        )
    );
    // Syntax errors are shown as cel-go shows them, too.
    let got = detail(json!({"rule": "self.a >"})).unwrap();
    assert!(
        got.contains("compilation failed: ERROR: <input>:1:"),
        "{got}"
    );
    assert!(got.contains("\n | self.a >\n | "), "{got}");
}
