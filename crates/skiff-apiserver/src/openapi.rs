//! `/openapi/v3`: the built-in group-versions' documents (built once per binary) and
//! those of CustomResourceDefinitions, rebuilt when the served kinds change and named in
//! the index with a content hash, so clients' caches follow CRD changes.

use crate::registry::{Resource, Snapshot};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// A document and its content hash, by path (`apis/<group>/<version>`).
type Docs = HashMap<String, (Arc<Bytes>, String)>;

/// Custom documents of one registry generation.
#[derive(Default)]
pub struct CustomDocs {
    built: Mutex<(u64, Docs)>,
}

impl CustomDocs {
    fn docs(&self, served: &Snapshot) -> Docs {
        let mut built = self.built.lock();
        if built.0 != served.generation {
            *built = (served.generation, build_all(served));
        }
        built.1.clone()
    }

    /// The index: built-in paths, then custom ones.
    pub fn index(&self, served: &Snapshot) -> Value {
        let mut index = skiff_openapi::v3_index();
        if let Some(paths) = index["paths"].as_object_mut() {
            for (path, (_, hash)) in self.docs(served) {
                paths.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
                );
            }
        }
        index
    }

    pub fn document(&self, served: &Snapshot, path: &str) -> Option<Arc<Bytes>> {
        let path = path.trim_matches('/');
        skiff_openapi::v3_document(path)
            .or_else(|| self.docs(served).get(path).map(|d| d.0.clone()))
    }
}

fn build_all(served: &Snapshot) -> Docs {
    let mut out = HashMap::new();
    for g in served.groups() {
        for v in &g.versions {
            let custom: Vec<&Resource> =
                v.resources.iter().filter(|r| r.custom.is_some()).collect();
            if custom.is_empty() {
                continue;
            }
            let kinds: Vec<skiff_openapi::custom::CustomKind> = custom
                .iter()
                .filter_map(|r| {
                    let c = r.custom.as_ref()?;
                    Some(skiff_openapi::custom::CustomKind {
                        kind: &r.kind,
                        list_kind: &c.list_kind,
                        plural: &r.plural,
                        namespaced: r.namespaced(),
                        schema: &c.raw_schema,
                    })
                })
                .collect();
            let doc = skiff_openapi::custom::custom_document(&g.name, &v.version, &kinds);
            let hash = skiff_openapi::custom::content_hash(&doc);
            out.insert(
                format!("apis/{}/{}", g.name, v.version),
                (Arc::new(doc), hash),
            );
        }
    }
    out
}
