#![no_main]
//! The patch engine on arbitrary documents and patches: errors are fine, panics are not.
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // First line: the document; rest: the patch.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (Ok(doc), Ok(patch)) = (serde_json::from_slice::<Value>(&data[..split]), serde_json::from_slice::<Value>(data.get(split + 1..).unwrap_or(&[]))) else {
        return;
    };
    let _ = skiff_patch::json_patch(&doc, &patch);
    let _ = skiff_patch::merge_patch(&doc, &patch);
    for (g, k) in [("", "Pod"), ("apps", "Deployment"), ("", "Service"), ("", "ConfigMap")] {
        let _ = skiff_patch::strategic_merge_patch(&doc, &patch, g, k);
        let _ = skiff_patch::server_side_apply(Some(&doc), &patch, g, k, "fuzz", false, "2024-01-01T00:00:00Z");
    }
});
