//! Where the API server itself reaches a Service (an APIService's extension server, an
//! admission webhook): an ExternalName Service's name, else a ready endpoint of its
//! EndpointSlices (kube-apiserver's `--enable-aggregator-routing`: no dependence on a
//! service proxy running beside the server). Read from the watch cache.

use crate::cache::WatchCache;
use crate::registry::builtin;
use serde::Deserialize;

/// Why a Service could not be reached, worded as kube-aggregator's availability
/// controller words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("service/{name} in {namespace:?} is not present")]
    ServiceNotFound { namespace: String, name: String },
    #[error("service/{name} in {namespace:?} is not listening on port {port}")]
    ServicePortError {
        namespace: String,
        name: String,
        port: i32,
    },
    #[error(
        "endpoints for service/{name} in {namespace:?} have no addresses with port name {port_name:?}"
    )]
    MissingEndpoints {
        namespace: String,
        name: String,
        port_name: String,
    },
}

impl ResolveError {
    /// The Available condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::ServiceNotFound { .. } => "ServiceNotFound",
            ResolveError::ServicePortError { .. } => "ServicePortError",
            ResolveError::MissingEndpoints { .. } => "MissingEndpoints",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Service {
    #[serde(default)]
    spec: ServiceSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    external_name: String,
    #[serde(default)]
    ports: Vec<ServicePort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    #[serde(default)]
    name: String,
    port: i32,
}

#[derive(Deserialize, Default)]
struct SliceMeta {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct EndpointSlice {
    #[serde(default)]
    metadata: SliceMeta,
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Vec<SlicePort>,
}

#[derive(Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Conditions,
}

#[derive(Deserialize, Default)]
struct Conditions {
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct SlicePort {
    #[serde(default)]
    name: String,
    port: Option<i32>,
}

/// Host (name or address) and port to dial for `port` of Service `namespace/name`.
pub fn resolve(
    cache: &WatchCache,
    namespace: &str,
    name: &str,
    port: i32,
) -> Result<(String, u16), ResolveError> {
    let not_found = || ResolveError::ServiceNotFound {
        namespace: namespace.into(),
        name: name.into(),
    };
    let key = builtin("", "services").key(Some(namespace), name);
    let stored = cache.get(&key).ok_or_else(not_found)?;
    let svc: Service = serde_json::from_slice(&stored.value).map_err(|_| not_found())?;
    if svc.spec.type_ == "ExternalName" {
        return Ok((svc.spec.external_name, port as u16));
    }
    let sp = svc
        .spec
        .ports
        .iter()
        .find(|p| p.port == port)
        .ok_or_else(|| ResolveError::ServicePortError {
            namespace: namespace.into(),
            name: name.into(),
            port,
        })?;
    ready_endpoint(cache, namespace, name, &sp.name).ok_or_else(|| ResolveError::MissingEndpoints {
        namespace: namespace.into(),
        name: name.into(),
        port_name: sp.name.clone(),
    })
}

/// A ready address of the Service's slices with the port named `port_name`.
fn ready_endpoint(
    cache: &WatchCache,
    namespace: &str,
    name: &str,
    port_name: &str,
) -> Option<(String, u16)> {
    let prefix = builtin("discovery.k8s.io", "endpointslices").prefix(Some(namespace));
    let (slices, _, _) = cache.list(&prefix, None, None, &|_| true);
    slices.iter().find_map(|s| {
        let slice: EndpointSlice = serde_json::from_slice(&s.value).ok()?;
        if slice
            .metadata
            .labels
            .get("kubernetes.io/service-name")
            .map(String::as_str)
            != Some(name)
        {
            return None;
        }
        let port = slice.ports.iter().find(|p| p.name == port_name)?.port?;
        let ep = slice
            .endpoints
            .iter()
            .find(|e| e.conditions.ready != Some(false) && !e.addresses.is_empty())?;
        Some((ep.addresses[0].clone(), port as u16))
    })
}

/// [`resolve`] for admission webhooks: a name is looked up, so an ExternalName of
/// `localhost` works as kube's would.
pub struct CacheResolver(pub std::sync::Arc<WatchCache>);

#[async_trait::async_trait]
impl skiff_admission::Resolver for CacheResolver {
    async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<std::net::SocketAddr, String> {
        let (host, port) =
            resolve(&self.0, namespace, name, port as i32).map_err(|e| e.to_string())?;
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("no address for {host}"))
    }
}
