#![no_main]
//! Every body decoder the API server has: JSON, YAML and protobuf. None may panic.
use libfuzzer_sys::fuzz_target;
use skiff_apiserver::decode::{decode_for_kind, decode_object, BodyFormat};

fuzz_target!(|data: &[u8]| {
    let _ = decode_object(data, BodyFormat::Json);
    let _ = decode_object(data, BodyFormat::Yaml);
    let _ = decode_object(data, BodyFormat::Protobuf);
    let _ = decode_for_kind(data, BodyFormat::Json, "Pod");
    let _ = decode_for_kind(data, BodyFormat::Yaml, "Pod");
    let _ = skiff_protobuf::decode(data);
});
