use super::jsonpath::{Node, parse, to_rfc9535};
use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn column(name: &str, type_: &str, priority: i32, json_path: &str) -> CustomColumn {
    CustomColumn {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority,
        json_path: json_path.into(),
    }
}

/// cert-manager's Certificate columns (deploy/crds/cert-manager.io_certificates.yaml).
fn certificate_columns() -> Vec<CustomColumn> {
    vec![
        column(
            "Ready",
            "string",
            0,
            r#".status.conditions[?(@.type == "Ready")].status"#,
        ),
        column("Secret", "string", 0, ".spec.secretName"),
        column("Issuer", "string", 1, ".spec.issuerRef.name"),
        column(
            "Status",
            "string",
            1,
            r#".status.conditions[?(@.type == "Ready")].message"#,
        ),
        CustomColumn {
            description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.".into(),
            ..column("Age", "date", 0, ".metadata.creationTimestamp")
        },
    ]
}

fn certificate(status: Value) -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "example-com", "namespace": "default", "creationTimestamp": "2025-01-01T11:55:00Z"},
        "spec": {"secretName": "example-com-tls", "dnsNames": ["example.com", "www.example.com"],
                 "issuerRef": {"name": "ca-issuer", "kind": "Issuer"}},
        "status": status,
    })
}

fn cells(columns: &[CustomColumn], o: &Value) -> Vec<Value> {
    let t = custom_table(columns, std::slice::from_ref(o), "None", "1", None, now());
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

#[test]
fn certificate_table() {
    let ready = certificate(json!({"conditions": [
        {"type": "Issuing", "status": "False", "message": "done"},
        {"type": "Ready", "status": "True", "message": "Certificate is up to date and has not expired"},
    ]}));
    let t = custom_table(
        &certificate_columns(),
        std::slice::from_ref(&ready),
        "Metadata",
        "42",
        Some("next"),
        now(),
    );
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Name", "Ready", "Secret", "Issuer", "Status", "Age"]
    );
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][3]["priority"], 1);
    assert_eq!(t["columnDefinitions"][5]["type"], "date");
    assert_eq!(
        t["columnDefinitions"][1]["description"],
        r#"Custom resource definition column (in JSONPath format): .status.conditions[?(@.type == "Ready")].status"#
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "example-com",
            "True",
            "example-com-tls",
            "ca-issuer",
            "Certificate is up to date and has not expired",
            "5m"
        ])
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "42", "continue": "next"})
    );
}

#[test]
fn missing_values_are_null_cells() {
    let fresh = certificate(json!(null));
    assert_eq!(
        cells(&certificate_columns(), &fresh),
        [
            json!("example-com"),
            Value::Null,
            json!("example-com-tls"),
            json!("ca-issuer"),
            Value::Null,
            json!("5m")
        ]
    );
}

#[test]
fn default_age_column() {
    let t = custom_table(&[], &[certificate(json!({}))], "None", "1", None, now());
    assert_eq!(t["columnDefinitions"][1]["name"], "Age");
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    assert_eq!(t["rows"][0]["cells"], json!(["example-com", "5m"]));
    assert!(t["rows"][0].get("object").is_none());
}

#[test]
fn typed_cells() {
    let o = json!({"metadata": {"name": "x"}, "spec": {
        "int": 7, "float": 2.9, "big": 1234567.0, "tiny": 0.00001, "whole": 3.0, "text": "5",
        "yes": true, "list": ["a", "b"], "map": {"z": 1, "a": "<b>"}, "nothing": null,
        "when": "2024-12-29T12:00:00Z", "bad": "yesterday", "empty": "", "zero": "0001-01-01T00:00:00Z",
        "items": [{"n": "first"}, {"n": "second"}]}});
    let cases = [
        ("integer", ".spec.int", json!(7)),
        ("integer", ".spec.float", json!(2)),
        ("integer", ".spec.text", Value::Null),
        ("number", ".spec.int", json!(7)),
        ("number", ".spec.float", json!(2.9)),
        ("number", ".spec.whole", json!(3)),
        ("boolean", ".spec.yes", json!(true)),
        ("boolean", ".spec.text", Value::Null),
        ("date", ".spec.when", json!("3d")),
        ("date", ".spec.bad", json!("<invalid>")),
        ("date", ".spec.empty", json!("<unknown>")),
        ("date", ".spec.zero", json!("<unknown>")),
        ("date", ".spec.int", Value::Null),
        ("string", ".spec.int", json!("7")),
        ("string", ".spec.float", json!("2.9")),
        ("string", ".spec.big", json!("1.234567e+06")),
        ("string", ".spec.tiny", json!("1e-05")),
        ("string", ".spec.whole", json!("3")),
        ("string", ".spec.yes", json!("true")),
        ("string", ".spec.list", json!(r#"["a","b"]"#)),
        (
            "string",
            ".spec.map",
            json!(r#"{"a":"\u003cb\u003e","z":1}"#),
        ),
        ("string", ".spec.nothing", json!("<no value>")),
        ("string", ".spec.items[*].n", json!("first")),
        ("string", ".spec.items[-1].n", json!("second")),
        ("string", ".spec.items[5].n", Value::Null),
        ("string", ".spec.list[0]", json!("a")),
        ("string", ".spec.absent", Value::Null),
        ("date", ".spec.absent", Value::Null),
        ("frobnicate", ".spec.int", Value::Null),
    ];
    for (type_, path, want) in cases {
        let got = cells(&[column("C", type_, 0, path)], &o);
        assert_eq!(got[1], want, "{type_} {path}");
    }
}

#[test]
fn client_go_syntax() {
    let o = json!({"metadata": {"name": "x", "annotations": {"cert-manager.io/issuer-name": "ca"}},
        "status": {"conditions": [{"type": "A", "status": "1"}, {"type": "Ready", "status": "True"}],
                   "n": 3, "items": [{"v": 1}, {"v": 5}]}});
    let cases = [
        (
            r".metadata.annotations.cert-manager\.io/issuer-name",
            json!("ca"),
        ),
        (
            ".metadata.annotations['cert-manager.io/issuer-name']",
            Value::Null,
        ),
        (".status['n']", json!("3")),
        (
            ".status.conditions[?(@.type=='Ready')].status",
            json!("True"),
        ),
        (".status.conditions[?(@.type!=\"A\")].type", json!("Ready")),
        (".status.items[?(@.v>2)].v", json!("5")),
        (".status.conditions[?(@.status)].type", json!("A")),
        // The root's own `status` comes first, as in client-go's walk.
        (
            "..status",
            json!(
                r#"{"conditions":[{"status":"1","type":"A"},{"status":"True","type":"Ready"}],"items":[{"v":1},{"v":5}],"n":3}"#
            ),
        ),
        ("..conditions[1].status", json!("True")),
        (".status.conditions[0,1].type", json!("A")),
        (".status.conditions[1:].type", json!("Ready")),
        (".status.conditions[*].type", json!("A")),
        (".status.items[?(@.v==5)].v", json!("5")),
    ];
    for (path, want) in cases {
        assert_eq!(check_json_path(path), Ok(()), "{path}");
        let got = cells(&[column("C", "string", 0, path)], &o);
        assert_eq!(got[1], want, "{path}");
    }
}

#[test]
fn unparsable_path_drops_that_column_and_the_rest() {
    let columns = [
        column("A", "string", 0, ".spec.a"),
        column("B", "string", 0, ".spec.b["),
        column("C", "string", 0, ".spec.c"),
    ];
    let t = custom_table(
        &columns,
        &[json!({"metadata": {"name": "x"}, "spec": {"a": "1"}})],
        "None",
        "1",
        None,
        now(),
    );
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 2);
    assert_eq!(t["rows"][0]["cells"], json!(["x", "1"]));
}

#[test]
fn json_path_checks() {
    let err = |p: &str| check_json_path(p).unwrap_err();
    assert_eq!(err(""), "must not be empty");
    assert_eq!(
        err("status.phase"),
        "must be a simple json path starting with ."
    );
    assert_eq!(err(".a[0"), "unterminated array");
    assert_eq!(err(".a[x]"), "invalid array index x");
    assert_eq!(err(".a[?(@.x==1]"), "unterminated filter");
    assert_eq!(err(".a[?(@.x==1)"), "unclosed array expect ]");
    assert_eq!(err(".a....b"), "invalid multiple recursive descent");
    assert_eq!(err(".a[-]"), "array index - is not a number");
    assert_eq!(err(".a 1.2.3"), "cannot parse number 1.2.3");
    assert_eq!(err(".a #"), "unrecognized character in action: U+0023 '#'");
    assert_eq!(err(r#".a["x]"#), r#"invalid array index "x"#);
    assert_eq!(err(".a \"x"), "unterminated quoted string");
    for ok in [
        ".",
        ".spec.replicas",
        ".status.conditions[?(@.type==\"Ready\")].status",
        ".a[*]",
        ".a[1:2:3]",
    ] {
        assert_eq!(check_json_path(ok), Ok(()), "{ok}");
    }
}

#[test]
fn parses_like_client_go() {
    let nodes = |p: &str| match parse(&format!("{{{p}}}")).unwrap().remove(0) {
        super::jsonpath::Top::Action(n) => n,
        t => panic!("{t:?}"),
    };
    assert_eq!(
        nodes(".a.b"),
        [Node::Field("a".into()), Node::Field("b".into())]
    );
    assert_eq!(nodes(".a.*"), [Node::Field("a".into()), Node::Wildcard]);
    assert_eq!(
        to_rfc9535(&nodes(r#".status.conditions[?(@.type=="Ready")].status"#)).unwrap(),
        r#"$['status']['conditions'][?@['type']=="Ready"]['status']"#
    );
    assert_eq!(
        to_rfc9535(&nodes(".a[0]..b[1:]")).unwrap(),
        "$['a'][0]..['b'][1:]"
    );
    assert_eq!(to_rfc9535(&nodes(".a[1:2:3]")), None);
    assert_eq!(to_rfc9535(&nodes(".a \"text\"")), None);
}

/// Prometheus' columns (example/prometheus-operator-crd/monitoring.coreos.com_prometheuses.yaml).
#[test]
fn prometheus_columns() {
    let columns = [
        column("Version", "string", 0, ".spec.version"),
        column("Desired", "integer", 0, ".spec.replicas"),
        column("Ready", "integer", 0, ".status.availableReplicas"),
        column(
            "Reconciled",
            "string",
            0,
            ".status.conditions[?(@.type == 'Reconciled')].status",
        ),
        column(
            "Available",
            "string",
            0,
            ".status.conditions[?(@.type == 'Available')].status",
        ),
        column("Age", "date", 0, ".metadata.creationTimestamp"),
        column("Paused", "boolean", 1, ".status.paused"),
    ];
    let p = json!({"metadata": {"name": "k8s", "creationTimestamp": "2024-12-01T12:00:00Z"},
        "spec": {"version": "v3.5.0", "replicas": 2},
        "status": {"availableReplicas": 1, "paused": false, "conditions": [
            {"type": "Available", "status": "Degraded"}, {"type": "Reconciled", "status": "True"}]}});
    assert_eq!(
        cells(&columns, &p),
        json!(["k8s", "v3.5.0", 2, 1, "True", "Degraded", "31d", false])
            .as_array()
            .unwrap()
            .clone()
    );
}
