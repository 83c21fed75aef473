//! Property tests of the request body decoders (`decode.rs`): JSON, YAML and protobuf
//! bodies, arbitrary or valid ones mutated, are decoded to an object or refused with a
//! 400, never a panic; JSON and YAML written from a value decode back to it; and the
//! content negotiation reading `Content-Type` and `Accept` takes any header.
//!
//! They run in plain `cargo test` (so in CI through scripts/test.sh) with a bounded number
//! of cases each; `PROPTEST_CASES=100000 cargo test -p skiff-apiserver --test properties`
//! searches deeper.

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Map, Value, json};
use skiff_apiserver::decode::{
    BodyFormat, body_format, decode_object, decode_object_noting_duplicates, wanted, wants_yaml,
};
use std::collections::BTreeMap;

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

const FORMATS: [BodyFormat; 3] = [BodyFormat::Json, BodyFormat::Yaml, BodyFormat::Protobuf];

/// What every decoder promises: an object, or a 400.
fn check(body: &[u8], format: BodyFormat) -> Result<(), TestCaseError> {
    match decode_object_noting_duplicates(body, format) {
        Ok((v, _)) => prop_assert!(v.is_object(), "{:?} gave {}", format, v),
        Err(e) => prop_assert_eq!(e.code, 400, "{:?}: {}", format, e.message),
    }
    Ok(())
}

// ---------------------------------------------------------------- valid bodies

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    labels: BTreeMap<String, String>,
    containers: Vec<(String, String, Vec<i32>)>,
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        "[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?",
        prop::collection::btree_map("[a-z]{1,5}", "[a-zA-Z0-9]{0,5}", 0..3),
        prop::collection::vec(
            (
                "[a-z]{1,6}",
                "[a-z]{1,6}(:[0-9]{1,2})?",
                prop::collection::vec(1i32..65536, 0..3),
            ),
            1..3,
        ),
    )
        .prop_map(|(name, labels, containers)| Pod {
            name,
            labels,
            containers,
        })
}

impl Pod {
    fn json(&self) -> Value {
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|(name, image, ports)| {
                let mut c = json!({"name": name, "image": image});
                if !ports.is_empty() {
                    c["ports"] = ports
                        .iter()
                        .map(|p| json!({"containerPort": p, "protocol": "TCP"}))
                        .collect();
                }
                c
            })
            .collect();
        // Empty collections left out, as Go's omitempty (and so protobuf) leaves them.
        let mut metadata = json!({"name": self.name, "namespace": "default"});
        if !self.labels.is_empty() {
            metadata["labels"] = json!(self.labels);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": containers, "restartPolicy": "Always"},
        })
    }

    fn protobuf(&self) -> Vec<u8> {
        let pod = core::Pod {
            metadata: Some(meta::ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some("default".into()),
                labels: self.labels.clone(),
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                containers: self
                    .containers
                    .iter()
                    .map(|(name, image, ports)| core::Container {
                        name: Some(name.clone()),
                        image: Some(image.clone()),
                        ports: ports
                            .iter()
                            .map(|p| core::ContainerPort {
                                container_port: Some(*p),
                                protocol: Some("TCP".into()),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                restart_policy: Some("Always".into()),
                ..Default::default()
            }),
            status: None,
        };
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
            }),
            raw: Some(pod.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = b"k8s\0".to_vec();
        out.extend(unknown.encode_to_vec());
        out
    }

    /// The pod in each format, as kubectl and client-go send it.
    fn bodies(&self) -> [(BodyFormat, Vec<u8>); 4] {
        let v = self.json();
        [
            (BodyFormat::Json, serde_json::to_vec(&v).unwrap()),
            (BodyFormat::Json, serde_json::to_vec_pretty(&v).unwrap()),
            (
                BodyFormat::Yaml,
                serde_yaml_ng::to_string(&v).unwrap().into_bytes(),
            ),
            (BodyFormat::Protobuf, self.protobuf()),
        ]
    }
}

/// Pieces of JSON and YAML syntax worth splicing into a body.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\n",
    "- ",
    "  ",
    "\t",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!map ",
    "!!set ",
    "? ",
    "|",
    ">-",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\\u0000",
    "\\ud800",
    "1e999",
    "-0",
    "null",
    "~",
    "#",
    "\u{feff}",
    "\u{0}",
    "9999999999999999999999",
    "0x1f",
    ".inf",
    ".nan",
    "'",
    "\\",
    "@",
    "`",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Splice(prop::sample::Index, &'static str),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        (at(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (at(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (at(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (at(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Mutation::Splice(i, t)),
        at().prop_map(Mutation::Truncate),
    ]
}

fn mutate(body: &mut Vec<u8>, m: &Mutation) {
    let len = body.len();
    match m {
        _ if len == 0 => {}
        Mutation::Flip(i, bit) => body[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) => body[i.index(len)] = *b,
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            body.drain(at..(at + n).min(len));
        }
        Mutation::Splice(i, t) => {
            let at = i.index(len + 1);
            body.splice(at..at, t.bytes());
        }
        Mutation::Truncate(i) => body.truncate(i.index(len)),
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_are_decoded_or_refused(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for format in FORMATS {
            check(&body, format)?;
        }
        let _ = skiff_protobuf::decode(&body);
    }

    #[test]
    fn arbitrary_text_is_decoded_or_refused(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop_oneof![
                    prop::sample::select(TOKENS).prop_map(str::to_string),
                    "[a-z0-9]{1,4}",
                ],
                0..24,
            )
            .prop_map(|t| t.concat()),
        ]
    ) {
        for format in FORMATS {
            check(text.as_bytes(), format)?;
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// A valid pod in each format, mutated byte by byte and by spliced syntax.
    #[test]
    fn mutated_valid_bodies_are_decoded_or_refused(
        pod in pod(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        for (format, body) in pod.bodies() {
            // Unmutated, each decodes to the pod.
            prop_assert_eq!(decode_object(&body, format).unwrap(), pod.json(), "{:?}", format);
            let mut body = body;
            for m in &mutations {
                mutate(&mut body, m);
                check(&body, format)?;
            }
        }
    }
}

// ---------------------------------------------------------------- round trips

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z][a-zA-Z0-9]{0,6}",
        1 => ".{0,6}",
        1 => prop::sample::select(vec!["", "-", "null", "true", "~", "1", "<<", "? x", "a: b", "#"])
            .prop_map(str::to_string),
    ]
}

/// JSON values; `floats` off keeps to integers. Floats are decimals of a few digits:
/// serde_json's default float parsing is best-effort in the last place for others.
fn json_value(floats: bool) -> impl Strategy<Value = Value> {
    let number = if floats {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (any::<i32>(), 1..4).prop_map(|(n, k)| Value::from(f64::from(n) / 10f64.powi(k))),
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
        ]
        .boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "null",
            "~",
            "true",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "1",
            "0x1f",
            "1e3",
            ".inf",
            "-",
            "- a",
            ": ",
            "#",
            "'",
            "\"",
            "\n",
            " a ",
            "<<",
            "=",
            "0o7",
            "1_000",
            "2024-01-01",
            "12:30",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_object(floats: bool) -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value(floats)), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

proptest! {
    #![proptest_config(config(1000))]

    /// A JSON body decodes to the value written, with no duplicate noted.
    #[test]
    fn json_bodies_round_trip(v in json_object(true)) {
        let body = serde_json::to_vec(&v).unwrap();
        let (got, dups) = decode_object_noting_duplicates(&body, BodyFormat::Json).unwrap();
        prop_assert_eq!(got, v);
        prop_assert!(!dups);
    }

    /// A key written twice in any object of a JSON body is noted, and the last one wins,
    /// as Go's decoder has it.
    #[test]
    fn json_duplicate_keys_are_noted(
        v in json_object(true),
        k in key(),
        first in json_value(true),
        last in json_value(true),
        nested in any::<bool>(),
    ) {
        let k_json = serde_json::to_string(&k).unwrap();
        let rest = serde_json::to_string(&v).unwrap();
        let rest = rest.strip_prefix('{').unwrap();
        let sep = if rest == "}" { "" } else { "," };
        let dup = format!("{{{k_json}:{first},{k_json}:{last}{sep}{rest}");
        let (body, want) = if nested {
            (format!("{{\"outer\":{dup}}}"), None)
        } else {
            (dup, Some(()))
        };
        let (got, dups) = decode_object_noting_duplicates(body.as_bytes(), BodyFormat::Json)
            .map_err(|e| TestCaseError::fail(format!("{body}: {}", e.message)))?;
        prop_assert!(dups, "{}", body);
        let obj = if want.is_some() { &got } else { &got["outer"] };
        if !v.as_object().unwrap().contains_key(&k) {
            prop_assert_eq!(&obj[&k], &last, "{}", body);
        }
    }

    /// A YAML body written from a value decodes back to it.
    #[test]
    fn yaml_bodies_round_trip(v in json_object(false)) {
        let body = serde_yaml_ng::to_string(&v).unwrap();
        let got = decode_object(body.as_bytes(), BodyFormat::Yaml)
            .map_err(|e| TestCaseError::fail(format!("{body:?}: {}", e.message)))?;
        prop_assert_eq!(got, v, "{:?}", body);
    }
}

// ---------------------------------------------------------------- content negotiation

proptest! {
    #![proptest_config(config(1000))]

    /// Any `Content-Type` and `Accept` is read without a panic, and parameters after the
    /// media type do not change the body format.
    #[test]
    fn media_types_are_read_from_any_header(
        media in prop_oneof![
            prop::sample::select(vec![
                "application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
                "text/yaml", "*/*", "", "text/plain",
            ])
            .prop_map(str::to_string),
            "[ -~]{0,24}",
        ],
        params in "(;[ a-z=\"-]{0,10}){0,3}",
        accept in "[ -~]{0,60}",
    ) {
        let with = format!("{media}{params}");
        if !media.contains(';') {
            prop_assert_eq!(body_format(&with), body_format(&media));
        }
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&accept) {
            headers.insert(http::header::ACCEPT, v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&with) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        let _ = (wanted(&headers), wants_yaml(&headers));
        prop_assert_eq!(
            body_format(&skiff_apiserver::decode::content_type(&headers)),
            if headers.contains_key(http::header::CONTENT_TYPE) { body_format(&with) } else { body_format("") }
        );
    }
}
