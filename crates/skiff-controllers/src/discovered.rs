//! The kinds the API serves as discovery reports them, built-ins first and custom
//! resources as CustomResourceDefinitions add them. Controllers that act on any kind
//! (the garbage collector) follow discovery rather than a fixed table, as kube's do.

use kube::discovery::{Discovery, Scope as KubeScope};
use parking_lot::RwLock;
use skiff_types::Subresource;
use skiff_types::registry::{CRUD, RESOURCES, ResourceInfo, Scope, StrList, split_api_version};
use std::borrow::Cow;
use std::sync::Arc;

/// Shared, cheaply cloned view of the served kinds.
#[derive(Clone)]
pub struct Kinds(Arc<RwLock<Vec<Arc<ResourceInfo>>>>);

impl Default for Kinds {
    /// The built-in kinds (discovery adds the rest).
    fn default() -> Self {
        let builtins = RESOURCES
            .iter()
            .filter(|r| !r.virtual_create_only && !r.is_storage_alias())
            .map(|r| Arc::new(r.clone()))
            .collect();
        Kinds(Arc::new(RwLock::new(builtins)))
    }
}

impl Kinds {
    /// The served kind an ownerReference names (its apiVersion's group, its kind).
    pub fn get(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, _) = split_api_version(api_version);
        self.0
            .read()
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.0.read().clone()
    }

    /// Asks the server again; returns the kinds not known before.
    pub async fn refresh(
        &self,
        client: &kube::Client,
    ) -> Result<Vec<Arc<ResourceInfo>>, kube::Error> {
        let d = Discovery::new(client.clone()).run().await?;
        let mut added = Vec::new();
        let mut known = self.0.write();
        for group in d.groups() {
            for (ar, caps) in group.recommended_resources() {
                if known
                    .iter()
                    .any(|r| r.group == ar.group && r.plural == ar.plural)
                {
                    continue;
                }
                let r = Arc::new(ResourceInfo {
                    group: Cow::Owned(ar.group.clone()),
                    version: Cow::Owned(ar.version.clone()),
                    kind: Cow::Owned(ar.kind.clone()),
                    plural: Cow::Owned(ar.plural.clone()),
                    singular: Cow::Owned(String::new()),
                    scope: match caps.scope {
                        KubeScope::Cluster => Scope::Cluster,
                        KubeScope::Namespaced => Scope::Namespaced,
                    },
                    short_names: StrList::Owned(Vec::new()),
                    categories: StrList::Owned(Vec::new()),
                    subresources: Cow::Owned(
                        caps.subresources
                            .iter()
                            .filter_map(|(s, _)| Subresource::from_name(&s.plural))
                            .collect(),
                    ),
                    verbs: if ["list", "watch", "delete"]
                        .iter()
                        .all(|v| caps.operations.iter().any(|o| o == v))
                    {
                        CRUD
                    } else {
                        &[]
                    },
                    storage_prefix: Cow::Borrowed(""),
                    virtual_create_only: false,
                });
                known.push(r.clone());
                added.push(r);
            }
        }
        Ok(added)
    }
}
