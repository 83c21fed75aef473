//! What a CRD asks the server to serve, read through types (only the fields the server
//! uses), and apiextensions' v1 defaulting of a CRD.

use serde::Deserialize;
use serde_json::{Value, json};

/// `spec.scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// `spec.names`, with singular and listKind defaulted as kube defaults them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    pub plural: String,
    #[serde(default)]
    pub singular: String,
    pub kind: String,
    #[serde(default)]
    pub list_kind: String,
    #[serde(default)]
    pub short_names: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// `subresources.scale`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalePaths {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    #[serde(default)]
    pub label_selector_path: Option<String>,
}

/// A version's subresources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subresources {
    pub status: bool,
    pub scale: Option<ScalePaths>,
}

/// One of `additionalPrinterColumns`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(rename = "jsonPath")]
    pub json_path: String,
}

/// One of `spec.versions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    pub deprecated: bool,
    pub deprecation_warning: Option<String>,
    /// `schema.openAPIV3Schema`, to compile with [`crate::Schema::compile`].
    pub schema: Option<Value>,
    pub subresources: Subresources,
    pub additional_printer_columns: Vec<PrinterColumn>,
    /// The selectable fields' jsonPaths (`.spec.color`).
    pub selectable_fields: Vec<String>,
}

/// `spec.conversion.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ConversionStrategy {
    None,
    Webhook,
}

/// `spec.conversion`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub strategy: ConversionStrategy,
    /// `webhook.clientConfig`, as given.
    pub webhook_client_config: Option<Value>,
    pub conversion_review_versions: Vec<String>,
}

/// A CRD's spec, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub name: String,
    pub group: String,
    pub names: Names,
    pub scope: Scope,
    pub versions: Vec<Version>,
    pub conversion: Conversion,
    pub preserve_unknown_fields: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    group: String,
    names: Names,
    scope: Scope,
    #[serde(default)]
    versions: Vec<RawVersion>,
    #[serde(default)]
    conversion: Option<RawConversion>,
    #[serde(default)]
    preserve_unknown_fields: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVersion {
    name: String,
    #[serde(default)]
    served: bool,
    #[serde(default)]
    storage: bool,
    #[serde(default)]
    deprecated: bool,
    #[serde(default)]
    deprecation_warning: Option<String>,
    #[serde(default)]
    schema: Option<RawSchema>,
    #[serde(default)]
    subresources: Option<RawSubresources>,
    #[serde(default)]
    additional_printer_columns: Vec<PrinterColumn>,
    #[serde(default)]
    selectable_fields: Vec<RawSelectable>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSchema {
    #[serde(default, rename = "openAPIV3Schema")]
    open_apiv3_schema: Option<Value>,
}

#[derive(Deserialize)]
struct RawSubresources {
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    scale: Option<ScalePaths>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSelectable {
    json_path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConversion {
    strategy: ConversionStrategy,
    #[serde(default)]
    webhook: Option<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWebhook {
    #[serde(default)]
    client_config: Option<Value>,
    #[serde(default)]
    conversion_review_versions: Vec<String>,
}

impl Definition {
    /// Reads a (defaulted or not) CRD object; names are defaulted as kube would.
    pub fn from_crd(crd: &Value) -> Result<Definition, String> {
        let spec = crd
            .get("spec")
            .ok_or("CustomResourceDefinition has no spec")?;
        let raw: RawSpec =
            serde_json::from_value(spec.clone()).map_err(|e| format!("invalid spec: {e}"))?;
        let mut names = raw.names;
        if names.singular.is_empty() {
            names.singular = names.kind.to_lowercase();
        }
        if names.list_kind.is_empty() && !names.kind.is_empty() {
            names.list_kind = format!("{}List", names.kind);
        }
        let conversion = match raw.conversion {
            None => Conversion {
                strategy: ConversionStrategy::None,
                webhook_client_config: None,
                conversion_review_versions: vec![],
            },
            Some(c) => Conversion {
                strategy: c.strategy,
                webhook_client_config: c.webhook.as_ref().and_then(|w| w.client_config.clone()),
                conversion_review_versions: c
                    .webhook
                    .map(|w| w.conversion_review_versions)
                    .unwrap_or_default(),
            },
        };
        Ok(Definition {
            name: crd
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            group: raw.group,
            names,
            scope: raw.scope,
            versions: raw.versions.into_iter().map(Version::from_raw).collect(),
            conversion,
            preserve_unknown_fields: raw.preserve_unknown_fields.unwrap_or(false),
        })
    }

    /// The version objects are stored at.
    pub fn storage_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.storage)
    }

    /// A version by name.
    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }
}

impl Version {
    fn from_raw(r: RawVersion) -> Version {
        let sub = r.subresources.unwrap_or(RawSubresources {
            status: None,
            scale: None,
        });
        Version {
            name: r.name,
            served: r.served,
            storage: r.storage,
            deprecated: r.deprecated,
            deprecation_warning: r.deprecation_warning,
            schema: r.schema.and_then(|s| s.open_apiv3_schema),
            subresources: Subresources {
                status: sub.status.is_some_and(|s| !s.is_null()),
                scale: sub.scale,
            },
            additional_printer_columns: r.additional_printer_columns,
            selectable_fields: r
                .selectable_fields
                .into_iter()
                .map(|s| s.json_path)
                .collect(),
        }
    }
}

/// apiextensions' v1 defaulting: names.singular (lower-case kind), names.listKind
/// (kind + "List"), conversion `{strategy: None}`, webhook service port 443, and
/// status.storedVersions (the storage version) when empty.
pub fn default_crd(crd: &mut Value) {
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        default_names(spec);
        match spec.get_mut("conversion") {
            None | Some(Value::Null) => {
                spec.insert("conversion".into(), json!({"strategy": "None"}));
            }
            Some(c) => {
                if let Some(svc) = c
                    .pointer_mut("/webhook/clientConfig/service")
                    .and_then(Value::as_object_mut)
                {
                    svc.entry("port").or_insert(json!(443));
                }
            }
        }
    }
    default_stored_versions(crd);
}

fn default_names(spec: &mut serde_json::Map<String, Value>) {
    let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) else {
        return;
    };
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
    if empty(names.get("singular")) {
        names.insert("singular".into(), json!(kind.to_lowercase()));
    }
    if empty(names.get("listKind")) && !kind.is_empty() {
        names.insert("listKind".into(), json!(format!("{kind}List")));
    }
}

fn default_stored_versions(crd: &mut Value) {
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage") == Some(&Value::Bool(true)))
        })
        .and_then(|v| v.get("name").cloned());
    let Some(storage) = storage else { return };
    let Some(obj) = crd.as_object_mut() else {
        return;
    };
    let status = obj.entry("status").or_insert_with(|| json!({}));
    if status.is_null() {
        *status = json!({});
    }
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let has = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has {
        status.insert("storedVersions".into(), json!([storage]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "additionalPrinterColumns": [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                    "selectableFields": [{"jsonPath": ".spec.color"}]
                }]
            }
        })
    }

    #[test]
    fn defaults_and_reads() {
        let mut c = crd();
        default_crd(&mut c);
        assert_eq!(c.pointer("/spec/names/singular"), Some(&json!("widget")));
        assert_eq!(
            c.pointer("/spec/names/listKind"),
            Some(&json!("WidgetList"))
        );
        assert_eq!(c.pointer("/spec/conversion/strategy"), Some(&json!("None")));
        assert_eq!(c.pointer("/status/storedVersions"), Some(&json!(["v1"])));
        let d = Definition::from_crd(&crd()).unwrap();
        assert_eq!(d.names.singular, "widget");
        assert_eq!(d.names.list_kind, "WidgetList");
        assert_eq!(d.scope, Scope::Namespaced);
        let v = d.storage_version().unwrap();
        assert!(v.subresources.status);
        assert_eq!(
            v.subresources.scale.as_ref().unwrap().spec_replicas_path,
            ".spec.replicas"
        );
        assert_eq!(v.additional_printer_columns[0].type_, "date");
        assert_eq!(v.selectable_fields, vec![".spec.color"]);
        assert_eq!(d.conversion.strategy, ConversionStrategy::None);
    }

    #[test]
    fn bad_scope_is_an_error() {
        let mut c = crd();
        c["spec"]["scope"] = json!("Galaxy");
        assert!(Definition::from_crd(&c).is_err());
    }
}
