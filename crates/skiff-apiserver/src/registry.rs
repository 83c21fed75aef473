//! The kinds the API serves right now: the built-in table plus whatever
//! CustomResourceDefinitions have been established. Routing, discovery and the namespace
//! finalizer read one immutable [`Snapshot`]; the CRD controller swaps in a new one.
//! A leaf module: it knows types, not the server.

use crate::custom::CustomVersion;
use parking_lot::RwLock;
use skiff_types::registry::{RESOURCES, ResourceInfo};
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

/// One served (group, version, resource) and what the server needs to serve it.
#[derive(Debug)]
pub struct Served {
    pub info: ResourceInfo,
    /// Set for kinds a CustomResourceDefinition defines.
    pub custom: Option<Arc<CustomVersion>>,
}

impl Deref for Served {
    type Target = ResourceInfo;
    fn deref(&self) -> &ResourceInfo {
        &self.info
    }
}

impl Served {
    /// The apiVersion objects are stored with, when it is not the one served here (a
    /// CRD version other than its storage version; conversion `None` rewrites it).
    pub fn storage_api_version(&self) -> Option<String> {
        let c = self.custom.as_ref()?;
        (c.storage_version != self.version).then(|| format!("{}/{}", self.group, c.storage_version))
    }

    /// Objects are reshaped between storage and the client, so stored bytes are never
    /// sent as they are.
    pub fn converts(&self) -> bool {
        self.is_storage_alias() || self.custom.as_ref().is_some_and(|c| c.several_versions)
    }
}

pub type Resource = Arc<Served>;

static BUILTINS: LazyLock<Vec<Resource>> = LazyLock::new(|| {
    RESOURCES
        .iter()
        .map(|ri| {
            Arc::new(Served {
                info: ri.clone(),
                custom: None,
            })
        })
        .collect()
});

/// A built-in kind. Built-ins never change at run time and no CRD may shadow one, so
/// server code naming one by hand can rely on it.
pub fn builtin(group: &str, plural: &str) -> Resource {
    BUILTINS
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .unwrap_or_else(|| panic!("{plural}.{group} is not a built-in kind"))
        .clone()
}

/// Whether (group, plural) names a built-in kind.
pub fn is_builtin(group: &str, plural: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.plural == plural)
}

/// Everything served at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bumped on every change; feeds discovery and OpenAPI cache keys.
    pub generation: u64,
    /// Groups in discovery order, each with its versions, preferred first.
    groups: Vec<Group>,
    /// Group-versions served by extension API servers (APIServices).
    remote: Vec<Arc<RemoteVersion>>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub versions: Vec<GroupVersion>,
}

#[derive(Debug, Clone)]
pub struct GroupVersion {
    pub version: String,
    pub resources: Vec<Resource>,
}

impl Snapshot {
    fn with(resources: impl IntoIterator<Item = Resource>, generation: u64) -> Snapshot {
        let mut s = Snapshot {
            generation,
            ..Snapshot::default()
        };
        for r in resources {
            s.insert(r);
        }
        for g in &mut s.groups {
            g.versions
                .sort_by(|a, b| compare_versions(&a.version, &b.version));
        }
        s
    }

    fn insert(&mut self, r: Resource) {
        let gi = match self.groups.iter().position(|g| g.name == r.group) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    name: r.group.to_string(),
                    versions: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let versions = &mut self.groups[gi].versions;
        match versions.iter_mut().find(|v| v.version == r.version) {
            Some(v) => v.resources.push(r),
            None => versions.push(GroupVersion {
                version: r.version.to_string(),
                resources: vec![r],
            }),
        }
    }

    /// The resource a URL names.
    /// Every request routes through this: a walk of a few dozen entries, no allocation.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.groups
            .iter()
            .find(|g| g.name == group)?
            .versions
            .iter()
            .find(|v| v.version == version)?
            .resources
            .iter()
            .find(|r| r.plural == plural)
            .cloned()
    }

    /// Whether the group serves `plural` in any version (a URL with another version then
    /// gets a 404 rather than being treated as a non-resource path).
    pub fn any_version(&self, group: &str, plural: &str) -> Option<Resource> {
        let g = self.groups.iter().find(|g| g.name == group)?;
        g.versions
            .iter()
            .flat_map(|v| v.resources.iter())
            .find(|r| r.plural == plural)
            .cloned()
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The extension server's group-version, when an APIService has it and no local
    /// kind does (available or not).
    pub fn remote(&self, group: &str, version: &str) -> Option<&Arc<RemoteVersion>> {
        self.remote
            .iter()
            .find(|r| r.group == group && r.version == version)
    }

    /// Whether kinds of this server's own serve the group-version.
    pub fn has_version(&self, group: &str, version: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.name == group && g.versions.iter().any(|v| v.version == version))
    }

    pub fn remotes(&self) -> &[Arc<RemoteVersion>] {
        &self.remote
    }

    /// Every served resource (all versions).
    pub fn all(&self) -> impl Iterator<Item = &Resource> {
        self.groups
            .iter()
            .flat_map(|g| g.versions.iter())
            .flat_map(|v| v.resources.iter())
    }

    /// One resource per stored kind: the version objects are stored at. The namespace
    /// finalizer and the garbage collector walk these.
    pub fn stored(&self) -> impl Iterator<Item = &Resource> {
        self.all().filter(|r| {
            !r.virtual_create_only
                && !r.is_storage_alias()
                && r.custom.as_ref().is_none_or(|c| c.storage)
        })
    }
}

/// Kubernetes' version priority, highest first: GA before beta before alpha, higher
/// major then higher minor first; names that are not kube-like versions last, by name.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        match &rest[digits..] {
            "" => Some((major, 2, 0)),
            tail => {
                let (stage, n) = tail
                    .strip_prefix("beta")
                    .map(|n| (1, n))
                    .or_else(|| tail.strip_prefix("alpha").map(|n| (0, n)))?;
                Some((major, stage, n.parse().ok()?))
            }
        }
    }
    match (parse(a), parse(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sb.cmp(&sa).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// A group-version an APIService sends to an extension API server, with the resources
/// its last discovery check listed.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteVersion {
    pub group: String,
    pub version: String,
    /// The APIService's name (`v1beta1.metrics.example.com`).
    pub apiservice: String,
    /// Its APIResourceList as the extension server last answered it (empty until
    /// it has).
    pub resources: serde_json::Value,
    /// The last discovery check passed: requests go there (else 503).
    pub available: bool,
}

/// The current snapshot, swapped whole when CRDs or APIServices change.
#[derive(Debug)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
    parts: parking_lot::Mutex<(Vec<Resource>, Vec<Arc<RemoteVersion>>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            current: RwLock::new(Arc::new(Snapshot::with(BUILTINS.iter().cloned(), 1))),
            parts: Default::default(),
        }
    }
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Replaces every custom resource with `custom` (built-ins always come first and
    /// cannot be replaced; the caller has already refused conflicting names).
    pub fn set_custom(&self, custom: Vec<Resource>) {
        let mut parts = self.parts.lock();
        // The same entries (the CRD controller keeps what it built): no new generation,
        // so discovery and OpenAPI documents stay as they are.
        let same = parts.0.len() == custom.len()
            && parts.0.iter().zip(&custom).all(|(a, b)| Arc::ptr_eq(a, b));
        if same {
            return;
        }
        parts.0 = custom;
        self.rebuild(&parts);
    }

    /// Replaces the group-versions extension API servers serve.
    pub fn set_remote(&self, remote: Vec<Arc<RemoteVersion>>) {
        let mut parts = self.parts.lock();
        if parts.1 == remote {
            return;
        }
        parts.1 = remote;
        self.rebuild(&parts);
    }

    fn rebuild(&self, parts: &(Vec<Resource>, Vec<Arc<RemoteVersion>>)) {
        let mut cur = self.current.write();
        let mut next = Snapshot::with(
            BUILTINS.iter().cloned().chain(parts.0.iter().cloned()),
            cur.generation + 1,
        );
        next.remote = parts.1.clone();
        *cur = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_served_and_found() {
        let reg = Registry::default();
        let s = reg.snapshot();
        assert!(s.get("apps", "v1", "deployments").is_some());
        assert!(s.get("apps", "v2", "deployments").is_none());
        assert!(s.any_version("apps", "deployments").is_some());
        assert_eq!(builtin("", "pods").kind, "Pod");
        assert_eq!(s.groups()[0].name, "");
    }

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut v = vec![
            "v1alpha1", "foo", "v1beta2", "v2", "v1", "v10beta1", "v1beta1", "bar",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            [
                "v2", "v1", "v10beta1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"
            ]
        );
    }
}
