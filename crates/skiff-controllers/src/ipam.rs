//! Node IPAM: every node gets a `/24` `podCIDR` from the cluster's pod range
//! (10.42.0.0/16), kept for the node's life.

use crate::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::HashSet;
use tokio::sync::watch;

pub const CLUSTER_CIDR_PREFIX: [u8; 2] = [10, 42];

/// The first free /24 (10.42.N.0/24), or None when all 256 are taken.
pub fn next_free(used: &HashSet<u8>) -> Option<String> {
    (0..=255u8).find(|n| !used.contains(n)).map(|n| {
        format!(
            "{}.{}.{n}.0/24",
            CLUSTER_CIDR_PREFIX[0], CLUSTER_CIDR_PREFIX[1]
        )
    })
}

fn third_octet(cidr: &str) -> Option<u8> {
    let ip = cidr.split('/').next()?;
    let o: Vec<&str> = ip.split('.').collect();
    (o.len() == 4 && o[0] == "10" && o[1] == "42")
        .then(|| o[2].parse().ok())
        .flatten()
}

pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Node> = Api::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    loop {
        tokio::select! {
            ev = stream.next() => if ev.is_none() { return },
            _ = shutdown.changed() => return,
        }
        if let Err(e) = assign(&api).await {
            tracing::warn!(error = %e, "node IPAM round failed");
        }
    }
}

async fn assign(api: &Api<Node>) -> Result<()> {
    let nodes = api.list(&ListParams::default()).await?.items;
    let mut used: HashSet<u8> = nodes
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
        .filter_map(third_octet)
        .collect();
    for n in &nodes {
        if n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() {
            continue;
        }
        let Some(cidr) = next_free(&used) else {
            tracing::debug!(node = %n.metadata.name.as_deref().unwrap_or(""), "pod CIDR range exhausted");
            continue;
        };
        let name = n.metadata.name.clone().unwrap_or_default();
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if let Some(o) = third_octet(&cidr) {
            used.insert(o);
        }
        tracing::info!(node = %name, %cidr, "assigned pod CIDR");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_the_first_free_slash_24() {
        let mut used = HashSet::new();
        assert_eq!(next_free(&used).unwrap(), "10.42.0.0/24");
        used.insert(0);
        used.insert(2);
        assert_eq!(next_free(&used).unwrap(), "10.42.1.0/24");
        assert_eq!(third_octet("10.42.7.0/24"), Some(7));
        assert_eq!(third_octet("10.43.7.0/24"), None);
        let all: HashSet<u8> = (0..=255).collect();
        assert!(next_free(&all).is_none());
    }
}
