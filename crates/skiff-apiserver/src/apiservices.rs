//! APIService objects as the watch cache sees them (kept for the aggregator's loop and
//! proxy, which wake on every change).

use crate::cache::{EventType, Observer, Stored};
use crate::registry::builtin;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::sync::Notify;

pub(crate) const GROUP: &str = "apiregistration.k8s.io";

pub(crate) const PLURAL: &str = "apiservices";

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiService {
    pub(crate) metadata: Meta,
    pub(crate) spec: Spec,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Meta {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spec {
    #[serde(default)]
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) service: Option<ServiceRef>,
    #[serde(default)]
    pub(crate) ca_bundle: Option<String>,
    #[serde(default)]
    #[serde(rename = "insecureSkipTLSVerify")]
    pub(crate) insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct ServiceRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) port: Option<i32>,
}

impl ServiceRef {
    /// The name extension servers' certificates carry (`<svc>.<ns>.svc`).
    pub(crate) fn host(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

/// The APIServices as the cache sees them; wakes the loop on change.
#[derive(Default)]
pub struct Aggregator {
    pub(crate) services: parking_lot::Mutex<BTreeMap<String, (ApiService, Value)>>,
    pub(crate) changed: Notify,
    /// Connections to the extension servers, shared by proxied requests and checks.
    pub(crate) client: crate::extension_client::ExtensionClient,
}

impl Aggregator {
    pub fn prefixes(&self) -> Vec<String> {
        vec![builtin(GROUP, PLURAL).prefix(None)]
    }
}

impl Observer for Aggregator {
    fn observe(&self, kind: EventType, obj: &Stored) {
        let mut all = self.services.lock();
        match kind {
            EventType::Deleted => {
                let name = obj.key.rsplit('/').next().unwrap_or("");
                all.remove(name);
            }
            _ => {
                let Ok(v) = serde_json::from_slice::<Value>(&obj.value) else {
                    return;
                };
                if let Ok(s) = serde_json::from_value::<ApiService>(v.clone()) {
                    all.insert(s.metadata.name.clone(), (s, v));
                }
            }
        }
        self.changed.notify_one();
    }
}
