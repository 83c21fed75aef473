//! A compiled schema as the shape server-side apply merges custom objects by, as kube
//! builds structured-merge-diff types from a CRD's structural schema:
//! `x-kubernetes-list-type` `map` (by all `x-kubernetes-list-map-keys`), `set` and
//! `atomic` (also the default), `x-kubernetes-map-type` `atomic` or `granular`.

use crate::Schema;
use crate::node::Node;
use skiff_patch::{Keys, ListMerge, Shape};

/// A compiled schema's root as a [`skiff_patch::Shape`]; borrowed from the [`Schema`].
#[derive(Clone, Copy, Debug)]
pub struct PatchShape<'a>(&'a Node);

impl Schema {
    /// The shape for [`skiff_patch::server_side_apply_with`] and
    /// [`skiff_patch::record_update_with`] on objects of this schema.
    pub fn patch_shape(&self) -> PatchShape<'_> {
        PatchShape(&self.root)
    }
}

impl Shape for PatchShape<'_> {
    fn child(&self, name: &str) -> Option<&dyn Shape> {
        match name {
            // A CRD schema says little of metadata; kube merges it as ObjectMeta
            // (finalizers a set, ownerReferences by uid).
            "metadata" => Some(&skiff_patch::schema::METADATA),
            _ => Shape::child(self.0, name),
        }
    }
}

impl Shape for Node {
    fn child(&self, name: &str) -> Option<&dyn Shape> {
        self.field(name).map(|n| n as &dyn Shape)
    }

    fn item(&self) -> Option<&dyn Shape> {
        self.items.as_deref().map(|n| n as &dyn Shape)
    }

    fn list_merge(&self) -> ListMerge<'_> {
        match self.list_type.as_deref() {
            Some("set") => ListMerge::Set,
            // Compilation rejects a map list without keys; keyless, it can only be atomic.
            Some("map") if !self.list_map_keys.is_empty() => {
                ListMerge::Map(Keys::Many(&self.list_map_keys))
            }
            _ => ListMerge::Atomic,
        }
    }

    fn atomic_map(&self) -> bool {
        self.map_type.as_deref() == Some("atomic")
    }
}

#[cfg(test)]
mod tests {
    use crate::Schema;
    use serde_json::{Value, json};
    use skiff_patch::{ApplyError, Conflict, server_side_apply_with};

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn schema() -> Schema {
        let s = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "routes": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "host"],
                            "items": {
                                "type": "object",
                                "required": ["port", "host"],
                                "properties": {
                                    "host": {"type": "string"},
                                    "port": {"type": "integer"},
                                    "backend": {"type": "string"}
                                }
                            }
                        },
                        "tags": {
                            "type": "array",
                            "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}
                        },
                        "args": {"type": "array", "items": {"type": "string"}},
                        "selector": {
                            "type": "object",
                            "x-kubernetes-map-type": "atomic",
                            "additionalProperties": {"type": "string"}
                        }
                    }
                }
            }
        });
        Schema::compile(&s, "spec.versions[0].schema.openAPIV3Schema").unwrap()
    }

    fn cr(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": spec})
    }

    fn apply(s: &Schema, live: Option<&Value>, spec: Value, manager: &str) -> Value {
        server_side_apply_with(live, &cr(spec), &s.patch_shape(), manager, false, NOW)
            .unwrap()
            .object
    }

    #[test]
    fn applies_merge_by_the_schemas_list_and_map_types() {
        let s = schema();
        let a = apply(
            &s,
            None,
            json!({
                "routes": [{"host": "a", "port": 80, "backend": "x"}],
                "tags": ["t1"],
                "args": ["--a"],
                "selector": {"app": "a"}
            }),
            "alice",
        );
        assert_eq!(
            a["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {
                "f:routes": {r#"k:{"host":"a","port":80}"#: {
                    ".": {}, "f:host": {}, "f:port": {}, "f:backend": {}
                }},
                "f:tags": {r#"v:"t1""#: {}},
                "f:args": {},
                "f:selector": {}
            }})
        );
        let b = apply(
            &s,
            Some(&a),
            json!({"routes": [{"host": "a", "port": 443, "backend": "y"}], "tags": ["t2"]}),
            "bob",
        );
        assert_eq!(
            b["spec"]["routes"],
            json!([
                {"host": "a", "port": 80, "backend": "x"},
                {"host": "a", "port": 443, "backend": "y"}
            ])
        );
        assert_eq!(b["spec"]["tags"], json!(["t1", "t2"]));

        // Alice's atomic list and map conflict with Bob changing them.
        let err = server_side_apply_with(
            Some(&b),
            &cr(json!({"args": ["--b"], "selector": {"app": "b"}})),
            &s.patch_shape(),
            "bob",
            false,
            NOW,
        )
        .unwrap_err();
        let ApplyError::Conflicts(c) = err else {
            panic!("expected conflicts, got {err:?}")
        };
        let conflict = |field: &str| Conflict {
            manager: "alice".into(),
            field: field.into(),
        };
        assert_eq!(c, vec![conflict(".spec.args"), conflict(".spec.selector")]);
        let forced = server_side_apply_with(
            Some(&b),
            &cr(json!({"args": ["--b"], "selector": {"env": "b"}})),
            &s.patch_shape(),
            "bob",
            true,
            NOW,
        )
        .unwrap()
        .object;
        assert_eq!(forced["spec"]["args"], json!(["--b"]));
        assert_eq!(forced["spec"]["selector"], json!({"env": "b"}));
    }
}
