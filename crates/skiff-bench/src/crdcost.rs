//! `skiff bench crd-cost`: the per-object cost of what the API server does to a custom
//! object on create (prune, defaults, validation with CEL, managedFields), on the CRD
//! `skiff bench extensions` creates (about 1,000 lines of YAML and two CEL rules), beside
//! a ConfigMap's. Pure CPU, no server: where `bench extensions`' gap comes from.

use serde_json::{Value, json};
use skiff_crd::Schema;
use std::hint::black_box;
use std::time::Instant;

/// The `openAPIV3Schema` of the bench's Widget CRD.
fn widget_schema() -> Value {
    crate::extensions::big_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// A widget as the server holds it after its own defaulting.
fn widget(i: usize) -> Value {
    json!({"apiVersion": "bench.skiff.io/v1", "kind": "Widget",
        "metadata": {"name": format!("w-{i}"), "namespace": "default",
            "uid": "8d5b1c9e-4b1f-4c5e-9a43-2f0e2b7c1d11", "generation": 1,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{"manager": "bench", "operation": "Update", "apiVersion": "bench.skiff.io/v1",
                "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}, "f:mode": {}}}}]},
        "spec": {"replicas": 3, "mode": "Fast", "group0": {"field0": "a", "field1": "b"}, "group1": {"field2": "c"}}})
}

/// Times `f`, unless `CASE` names another case (to profile one at a time).
fn time(what: &str, n: usize, mut f: impl FnMut(usize)) {
    if std::env::var("CASE").is_ok_and(|c| c != what) {
        return;
    }
    for i in 0..n / 10 {
        f(i);
    }
    // The best of several runs: the machine is shared, and noise only adds.
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        for i in 0..n / 7 {
            f(i);
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / (n / 7) as f64);
    }
    let us = best;
    println!("{what:<28} {us:>7.2} µs");
}

/// Prints the per-object cost of each step (best of seven runs each).
pub fn crd_cost() {
    let schema = Schema::compile(&widget_schema(), "").expect("schema compiles");
    let n = 200_000;
    let objs: Vec<Value> = (0..64).map(widget).collect();
    let mut prepared = objs[0].clone();
    schema.prune(&mut prepared);
    schema.apply_defaults(&mut prepared);
    assert!(schema.validate(&prepared, None).is_empty());
    time("clone (baseline)", n, |i| {
        black_box(objs[i % 64].clone());
    });
    time("clone + prune", n, |i| {
        black_box(schema.prune(&mut objs[i % 64].clone()));
    });
    time("unknown_fields", n, |i| {
        black_box(schema.unknown_fields(&objs[i % 64]));
    });
    time("clone + apply_defaults", n, |i| {
        let mut o = objs[i % 64].clone();
        schema.apply_defaults(&mut o);
        black_box(o);
    });
    time("validate", n, |_| {
        black_box(schema.validate(&prepared, None));
    });
    let mut plain = widget_schema();
    plain["properties"]["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("x-kubernetes-validations");
    let plain = Schema::compile(&plain, "").expect("schema compiles");
    time("validate without rules", n, |_| {
        black_box(plain.validate(&prepared, None));
    });
    time("validate (update)", n, |_| {
        black_box(schema.validate(&prepared, Some(&prepared)));
    });
    // Beside the schema's work, a create records managedFields: from the schema's shape
    // for a custom object, from the built-in table for a ConfigMap.
    let data: serde_json::Map<String, Value> = (0..6)
        .map(|i| (format!("key{i}"), json!(format!("value-{i}-abcdefgh"))))
        .collect();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm-1", "namespace": "default", "uid": "8d5b1c9e-4b1f-4c5e-9a43-2f0e2b7c1d11",
            "creationTimestamp": "2025-01-01T00:00:00Z"}, "data": data});
    let now = "2025-01-01T00:00:00Z";
    let mut fresh = prepared.clone();
    fresh["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("managedFields");
    time("record_update: widget", n, |_| {
        let mut o = fresh.clone();
        let shape = schema.patch_shape();
        skiff_patch::record_update_with(None, &mut o, &shape, "m", "bench.skiff.io/v1", now, None);
        black_box(o);
    });
    time("record_update: ConfigMap", n, |_| {
        let mut o = cm.clone();
        skiff_patch::record_update(None, &mut o, "m", "v1", now, None);
        black_box(o);
    });
    time("clone ConfigMap", n, |_| {
        black_box(cm.clone());
    });
    time("create: schema's whole part", n, |i| {
        // What a create costs: field validation looks for unknown fields, decoding
        // prunes and defaults, then validation.
        black_box(schema.unknown_fields(&objs[i % 64]));
        let mut o = objs[i % 64].clone();
        schema.prune(&mut o);
        schema.apply_defaults(&mut o);
        black_box(schema.validate(&o, None));
    });
}
