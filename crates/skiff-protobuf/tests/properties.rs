//! Property tests of the protobuf reader: any bytes after the `k8s\0` envelope, any wire
//! message under a kind it knows, and every truncation and mutation of a valid body are
//! refused or decoded, never a panic; objects encoded by `k8s-pb` (the encoder Go's
//! generated code matches) decode to the JSON Kubernetes would write.
//!
//! They run in plain `cargo test` (so in CI through scripts/test.sh) with a bounded number
//! of cases each; `PROPTEST_CASES=100000 cargo test -p skiff-protobuf --test properties`
//! searches deeper.

use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value, json};
use skiff_protobuf::decode;
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

/// Kinds whose messages reach every wire kind the table has (strings, bytes maps,
/// IntOrString, Quantity, Time, MicroTime, Duration, RawExtension, packed scalars).
const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "Node"),
    ("v1", "Event"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ControllerRevision"),
    ("batch/v1", "Job"),
    ("coordination.k8s.io/v1", "Lease"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
];

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

// ---------------------------------------------------------------- raw wire messages

/// One field of a protobuf message, in any wire type (valid or not).
#[derive(Debug, Clone)]
enum Wire {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    Nested(u32, Vec<Wire>),
    /// Wire types 3, 4, 6 and 7, which no field uses.
    Odd(u32, u8),
}

fn tag() -> impl Strategy<Value = u32> {
    // Mostly tags the schemas use, so decoding goes deep.
    prop_oneof![8 => 1u32..16, 1 => 0u32..(1 << 29)]
}

fn wire() -> impl Strategy<Value = Vec<Wire>> {
    let leaf = prop_oneof![
        (
            tag(),
            prop_oneof![
                any::<u64>(),
                0u64..3,
                Just(u64::MAX),
                Just(-62_135_596_800i64 as u64)
            ]
        )
            .prop_map(|(t, v)| Wire::Varint(t, v)),
        (tag(), any::<u64>()).prop_map(|(t, v)| Wire::Fixed64(t, v)),
        (tag(), any::<u32>()).prop_map(|(t, v)| Wire::Fixed32(t, v)),
        (
            tag(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..12),
                "[a-z0-9{}\":,\\[\\]]{0,12}".prop_map(String::into_bytes),
            ]
        )
            .prop_map(|(t, b)| Wire::Bytes(t, b)),
        (tag(), prop::sample::select(vec![3u8, 4, 6, 7])).prop_map(|(t, w)| Wire::Odd(t, w)),
    ];
    let field = leaf.prop_recursive(6, 64, 6, |inner| {
        (tag(), prop::collection::vec(inner, 0..6)).prop_map(|(t, fs)| Wire::Nested(t, fs))
    });
    prop::collection::vec(field, 0..8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode(fields: &[Wire]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        let key = |t: u32, w: u8| (u64::from(t) << 3) | u64::from(w);
        match f {
            Wire::Varint(t, v) => {
                put_varint(&mut out, key(*t, 0));
                put_varint(&mut out, *v);
            }
            Wire::Fixed64(t, v) => {
                put_varint(&mut out, key(*t, 1));
                out.extend(v.to_le_bytes());
            }
            Wire::Fixed32(t, v) => {
                put_varint(&mut out, key(*t, 5));
                out.extend(v.to_le_bytes());
            }
            Wire::Bytes(t, b) => {
                put_varint(&mut out, key(*t, 2));
                put_varint(&mut out, b.len() as u64);
                out.extend(b);
            }
            Wire::Nested(t, fs) => {
                let inner = encode(fs);
                put_varint(&mut out, key(*t, 2));
                put_varint(&mut out, inner.len() as u64);
                out.extend(inner);
            }
            Wire::Odd(t, w) => put_varint(&mut out, key(*t, *w)),
        }
    }
    out
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body);
        let mut enveloped = b"k8s\0".to_vec();
        enveloped.extend(&body);
        let _ = decode(&enveloped);
    }

    /// Arbitrary bytes as the object of every kind.
    #[test]
    fn arbitrary_raw_objects_never_panic(
        kind in prop::sample::select(KINDS),
        raw in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode(&envelope(kind.0, kind.1, raw));
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Well-formed wire messages with arbitrary fields, nested, as the object of every
    /// kind: what decodes is an object carrying its kind.
    #[test]
    fn arbitrary_wire_messages_never_panic(kind in prop::sample::select(KINDS), fields in wire()) {
        let raw = encode(&fields);
        if let Ok(v) = decode(&envelope(kind.0, kind.1, raw.clone())) {
            prop_assert_eq!(&v["apiVersion"], &json!(kind.0));
            prop_assert_eq!(&v["kind"], &json!(kind.1));
        }
        // The same fields as the envelope itself.
        let mut body = b"k8s\0".to_vec();
        body.extend(&raw);
        let _ = decode(&body);
    }
}

#[test]
fn every_kind_here_is_known() {
    for (api_version, kind) in KINDS {
        assert!(
            skiff_protobuf::is_known_kind(api_version, kind),
            "{api_version} {kind}"
        );
    }
}

// ---------------------------------------------------------------- valid objects

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?"
}

/// Seconds of a time anywhere chrono can hold, and the ones RFC 3339 can write.
fn seconds() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..253_402_300_800,
        1 => any::<i64>(),
        1 => Just(-62_135_596_800i64),
    ]
}

#[derive(Debug, Clone)]
struct PodSpec {
    name: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    created: Option<(i64, i32)>,
    grace: Option<i64>,
    containers: Vec<(String, String, Vec<i32>)>,
    node: Option<String>,
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        dns_label(),
        prop::option::of(dns_label()),
        prop::collection::btree_map("[a-z]{1,5}", "[a-zA-Z0-9]{0,5}", 0..3),
        prop::option::of((seconds(), prop_oneof![Just(0i32), any::<i32>()])),
        prop::option::of(any::<i64>()),
        prop::collection::vec(
            (
                dns_label(),
                "[a-z]{1,6}(:[0-9]{1,2})?",
                prop::collection::vec(any::<i32>(), 0..3),
            ),
            1..3,
        ),
        prop::option::of(dns_label()),
    )
        .prop_map(
            |(name, namespace, labels, created, grace, containers, node)| PodSpec {
                name,
                namespace,
                labels,
                created,
                grace,
                containers,
                node,
            },
        )
}

impl PodSpec {
    fn proto(&self) -> core::Pod {
        core::Pod {
            metadata: Some(meta::ObjectMeta {
                name: Some(self.name.clone()),
                namespace: self.namespace.clone(),
                labels: self.labels.clone(),
                creation_timestamp: self.created.map(|(seconds, nanos)| meta::Time {
                    seconds: Some(seconds),
                    nanos: Some(nanos),
                }),
                deletion_grace_period_seconds: self.grace,
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
                node_name: self.node.clone(),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// The JSON Kubernetes writes for the pod, when its times are ones RFC 3339 can write.
    fn json(&self) -> Option<Value> {
        let mut metadata = json!({"name": self.name});
        if let Some(ns) = &self.namespace {
            metadata["namespace"] = json!(ns);
        }
        if !self.labels.is_empty() {
            metadata["labels"] = json!(self.labels);
        }
        match self.created {
            // Go's zero time: unset.
            None | Some((-62_135_596_800, 0)) => {}
            Some((s, n)) => {
                if !(0..253_402_300_800).contains(&s) || !(0..1_000_000_000).contains(&n) {
                    return None;
                }
                let t = chrono::DateTime::from_timestamp(s, 0)?;
                metadata["creationTimestamp"] =
                    json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
        }
        if let Some(g) = self.grace {
            metadata["deletionGracePeriodSeconds"] = json!(g);
        }
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
        let mut spec = json!({"containers": containers});
        if let Some(n) = &self.node {
            spec["nodeName"] = json!(n);
        }
        Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}))
    }
}

fn config_map() -> impl Strategy<Value = core::ConfigMap> {
    (
        dns_label(),
        prop::collection::btree_map("[-._a-zA-Z0-9]{1,8}", ".{0,8}", 0..4),
        prop::collection::btree_map(
            "[-._a-zA-Z0-9]{1,8}",
            prop::collection::vec(any::<u8>(), 0..8),
            0..3,
        ),
    )
        .prop_map(|(name, data, binary_data)| core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: Some(name),
                ..Default::default()
            }),
            data,
            binary_data,
            immutable: None,
        })
}

fn lease() -> impl Strategy<Value = coordination::Lease> {
    (dns_label(), seconds(), any::<i32>(), any::<i32>()).prop_map(
        |(holder, secs, nanos, duration)| coordination::Lease {
            metadata: Some(meta::ObjectMeta {
                name: Some(holder.clone()),
                ..Default::default()
            }),
            spec: Some(coordination::LeaseSpec {
                holder_identity: Some(holder),
                lease_duration_seconds: Some(duration),
                renew_time: Some(meta::MicroTime {
                    seconds: Some(secs),
                    nanos: Some(nanos),
                }),
                ..Default::default()
            }),
        },
    )
}

/// A valid object of one of several kinds: its apiVersion, kind and encoding.
fn valid_object() -> impl Strategy<Value = (&'static str, &'static str, Vec<u8>)> {
    prop_oneof![
        pod_spec().prop_map(|p| ("v1", "Pod", p.proto().encode_to_vec())),
        config_map().prop_map(|c| ("v1", "ConfigMap", c.encode_to_vec())),
        lease().prop_map(|l| ("coordination.k8s.io/v1", "Lease", l.encode_to_vec())),
    ]
}

/// A change to a body: flip, overwrite, insert or delete a byte.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![any::<u8>(), Just(0x80), Just(0xff), Just(0x0a), Just(0x12)]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(body: &mut Vec<u8>, m: &Mutation) {
    let len = body.len();
    match m {
        _ if len == 0 => {}
        Mutation::Flip(i, bit) => body[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) => body[i.index(len)] = *b,
        Mutation::Insert(i, b) => body.insert(i.index(len + 1), *b),
        Mutation::Delete(i) => {
            body.remove(i.index(len));
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Every prefix of a valid body, and of its object under a whole envelope (so reads
    /// stop inside the object), is refused or decoded.
    #[test]
    fn truncations_of_valid_bodies_never_panic((api_version, kind, raw) in valid_object()) {
        let body = envelope(api_version, kind, raw.clone());
        for cut in 0..body.len() {
            let _ = decode(&body[..cut]);
        }
        for cut in 0..raw.len() {
            let _ = decode(&envelope(api_version, kind, raw[..cut].to_vec()));
        }
    }

    #[test]
    fn mutations_of_valid_bodies_never_panic(
        (api_version, kind, raw) in valid_object(),
        mutations in prop::collection::vec(mutation(), 1..6),
        whole_envelope in any::<bool>(),
    ) {
        let mut raw = raw;
        if whole_envelope {
            // Mutate the object only, under an envelope that stays valid.
            for m in &mutations {
                mutate(&mut raw, m);
                let _ = decode(&envelope(api_version, kind, raw.clone()));
            }
            return Ok(());
        }
        let mut body = envelope(api_version, kind, raw);
        for m in &mutations {
            mutate(&mut body, m);
            let _ = decode(&body);
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// A pod encoded as Go's generated code encodes it decodes to Kubernetes' JSON:
    /// names, labels, negative numbers, times (Go's zero time as unset).
    #[test]
    fn pods_decode_to_kubernetes_json(pod in pod_spec()) {
        let got = decode(&envelope("v1", "Pod", pod.proto().encode_to_vec()));
        // A time RFC 3339 cannot write is refused or written some way; either is fine.
        if let Some(want) = pod.json() {
            prop_assert_eq!(got.unwrap(), want);
        }
    }

    #[test]
    fn config_maps_decode_to_kubernetes_json(cm in config_map()) {
        use base64::Engine;
        let got = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        let mut want = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": cm.metadata.as_ref().unwrap().name},
        });
        if !cm.data.is_empty() {
            want["data"] = json!(cm.data);
        }
        if !cm.binary_data.is_empty() {
            want["binaryData"] = cm
                .binary_data
                .iter()
                .map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v))))
                .collect();
        }
        prop_assert_eq!(got, want);
    }
}
