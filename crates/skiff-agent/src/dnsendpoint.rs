//! This node's endpoint of the `kube-dns` Service: an EndpointSlice of its own naming the
//! node's DNS address, so that `internalTrafficPolicy: Local` sends each node's queries
//! to the DNS on that node. The slice is owned by the Node: it goes when the node does.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use std::net::IpAddr;
use std::time::Duration;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// Neither the EndpointSlice controller's nor the mirroring controller's: they leave
/// slices managed by others alone.
pub const MANAGED_BY: &str = "node-agent.skiff.io";

/// The slice for `node` (whose uid owns it) with the DNS at `ip`.
pub fn slice(node: &str, node_uid: &str, ip: IpAddr) -> EndpointSlice {
    let port = |name: &str, protocol: &str, port: i32| EndpointPort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port: Some(port),
        ..Default::default()
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{SERVICE}-{node}")),
            namespace: Some(NAMESPACE.into()),
            labels: Some(
                [
                    ("kubernetes.io/service-name", SERVICE),
                    ("endpointslice.kubernetes.io/managed-by", MANAGED_BY),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.into(),
                uid: node_uid.into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        address_type: if ip.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: vec![Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(node.into()),
            ..Default::default()
        }],
        ports: Some(vec![
            port("dns", "UDP", 53),
            port("dns-tcp", "TCP", 53),
            port("metrics", "TCP", 9153),
        ]),
    }
}

/// Applies the slice (server-side apply, so a restart rewrites nothing that holds),
/// retrying until it is written.
pub async fn publish(client: &kube::Client, node: &str, ip: IpAddr) {
    let nodes: Api<Node> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let params = PatchParams::apply(MANAGED_BY).force();
    let mut backoff = Duration::from_millis(200);
    loop {
        let done = match nodes.get(node).await {
            Ok(n) => {
                let s = slice(node, n.metadata.uid.as_deref().unwrap_or(""), ip);
                let name = s.metadata.name.clone().unwrap_or_default();
                slices
                    .patch(&name, &params, &Patch::Apply(&s))
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "publishing the node's DNS endpoint; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slice_names_the_node_dns_and_is_owned_by_the_node() {
        let s = slice("lab-1", "uid-1", "10.42.1.1".parse().unwrap());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["metadata"]["name"], "kube-dns-lab-1");
        assert_eq!(
            v["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(v["endpoints"][0]["addresses"][0], "10.42.1.1");
        assert_eq!(v["endpoints"][0]["nodeName"], "lab-1");
        let ports: Vec<String> = s
            .ports
            .unwrap()
            .iter()
            .map(|p| format!("{}/{}", p.port.unwrap(), p.protocol.as_deref().unwrap()))
            .collect();
        assert_eq!(ports, ["53/UDP", "53/TCP", "9153/TCP"]);
    }
}
