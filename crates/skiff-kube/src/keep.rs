//! Which parts of a JSON object to keep, as a tree of field names: the shape of an
//! informer transform that drops what its readers never look at.

use serde_json::Value;

/// What to keep of a value.
#[derive(Debug)]
pub enum Keep {
    /// The whole value.
    All,
    /// Of an object, only these fields, each kept as its own `Keep` says. Anything that is
    /// not an object is kept whole.
    Fields(&'static [(&'static str, Keep)]),
    /// Of an array, every element as the `Keep` says. Anything else is kept whole.
    Each(&'static Keep),
}

impl Keep {
    /// Drops from `v` what this does not keep. An object is rebuilt rather than
    /// filtered in place, so it does not keep the capacity of the fields it lost.
    pub fn prune(&self, v: &mut Value) {
        match (self, v) {
            (Keep::Fields(fields), Value::Object(m)) => {
                *m = std::mem::take(m)
                    .into_iter()
                    .filter_map(|(name, mut child)| {
                        let (_, keep) = fields.iter().find(|(f, _)| *f == name)?;
                        keep.prune(&mut child);
                        Some((name, child))
                    })
                    .collect();
            }
            (Keep::Each(keep), Value::Array(items)) => {
                items.iter_mut().for_each(|i| keep.prune(i));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static SHAPE: Keep = Keep::Fields(&[
        ("name", Keep::All),
        ("labels", Keep::All),
        ("items", Keep::Each(&Keep::Fields(&[("a", Keep::All)]))),
        ("nested", Keep::Fields(&[("x", Keep::All)])),
    ]);

    #[test]
    fn keeps_the_named_fields_in_order_and_drops_the_rest() {
        let mut v = json!({
            "nested": {"x": {"deep": [1, 2]}, "y": 2},
            "drop": {"big": [1, 2, 3]},
            "items": [{"a": 1, "b": 2}, {"b": 3}, 7],
            "name": "n",
            "labels": {"k": "v", "l": "w"},
        });
        SHAPE.prune(&mut v);
        assert_eq!(
            v,
            json!({
                "nested": {"x": {"deep": [1, 2]}},
                "items": [{"a": 1}, {}, 7],
                "name": "n",
                "labels": {"k": "v", "l": "w"},
            })
        );
        let order: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(order, ["nested", "items", "name", "labels"]);
    }

    #[test]
    fn values_of_another_shape_are_kept_whole() {
        for v in [json!(null), json!("s"), json!([1, {"drop": 1}])] {
            let mut pruned = v.clone();
            SHAPE.prune(&mut pruned);
            assert_eq!(pruned, v);
        }
        let mut v = json!({"items": {"not": "an array"}, "nested": null});
        SHAPE.prune(&mut v);
        assert_eq!(v, json!({"items": {"not": "an array"}, "nested": null}));
    }
}
