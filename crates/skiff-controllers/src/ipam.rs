//! Node IPAM: every node gets a `/24` `podCIDR` from the cluster's pod range
//! (10.42.0.0/16), kept for the node's life.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeSet, HashMap, HashSet};
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

/// Which nodes hold which ranges and which still need one, kept change by change: a
/// fleet of thousands of nodes heartbeating must not cost a scan per event.
#[derive(Debug, Default)]
pub struct Ranges {
    owner: HashMap<u8, String>,
    of_node: HashMap<String, u8>,
    needy: BTreeSet<String>,
}

impl Ranges {
    pub fn apply(&mut self, c: Change) {
        match c {
            Change::Reset(items) => {
                *self = Ranges::default();
                for n in &items {
                    self.set(n);
                }
            }
            Change::Apply(n) => self.set(&n),
            Change::Delete(n) => {
                let name = reflect::key(&n);
                self.needy.remove(&name);
                if let Some(o) = self.of_node.remove(&name) {
                    self.owner.remove(&o);
                }
            }
        }
    }

    fn set(&mut self, n: &Value) {
        let name = reflect::key(n);
        match n["spec"]["podCIDR"].as_str().filter(|c| !c.is_empty()) {
            Some(cidr) => {
                self.needy.remove(&name);
                if let Some(o) = third_octet(cidr) {
                    self.owner.insert(o, name.clone());
                    self.of_node.insert(name, o);
                }
            }
            None if !self.of_node.contains_key(&name) => {
                self.needy.insert(name);
            }
            // Assigned here a moment ago; the watch has not caught up yet.
            None => {}
        }
    }

    /// The next node to give a range to, and the range, while any are free.
    pub fn next(&self) -> Option<(String, String)> {
        let used: HashSet<u8> = self.owner.keys().copied().collect();
        let node = self.needy.iter().next()?;
        Some((node.clone(), next_free(&used)?))
    }

    fn given(&mut self, node: &str, cidr: &str) {
        self.needy.remove(node);
        if let Some(o) = third_octet(cidr) {
            self.owner.insert(o, node.to_string());
            self.of_node.insert(node.to_string(), o);
        }
    }
}

pub async fn run(
    client: kube::Client,
    informers: skiff_kube::informer::Informers,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut rx = informers.watch("/api/v1/nodes");
    let mut ranges = Ranges::default();
    loop {
        tokio::select! {
            c = rx.recv() => match c {
                Some(c) => ranges.apply(c),
                None => return,
            },
            _ = shutdown.changed() => return,
        }
        while let Ok(c) = rx.try_recv() {
            ranges.apply(c);
        }
        while let Some((name, cidr)) = ranges.next() {
            let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => tracing::info!(node = %name, %cidr, "assigned pod CIDR"),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "pod CIDR not assigned");
                    break;
                }
            }
            ranges.given(&name, &cidr);
        }
    }
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

    #[test]
    fn ranges_follow_the_nodes() {
        let node = |name: &str, cidr: Option<&str>| json!({"metadata": {"name": name}, "spec": cidr.map(|c| json!({"podCIDR": c})).unwrap_or(json!({}))});
        let mut r = Ranges::default();
        r.apply(Change::reset(vec![
            node("a", Some("10.42.0.0/24")),
            node("b", None),
        ]));
        assert_eq!(r.next(), Some(("b".into(), "10.42.1.0/24".into())));
        r.given("b", "10.42.1.0/24");
        // The stale event from before the patch does not make b needy again.
        r.apply(Change::apply(node("b", None)));
        assert_eq!(r.next(), None);
        r.apply(Change::delete(node("a", Some("10.42.0.0/24"))));
        r.apply(Change::apply(node("c", None)));
        assert_eq!(r.next(), Some(("c".into(), "10.42.0.0/24".into())));
        // With every range taken, nodes wait.
        let mut full = Ranges::default();
        full.apply(Change::reset(
            (0..256)
                .map(|i| node(&format!("n{i}"), Some(&format!("10.42.{i}.0/24"))))
                .collect(),
        ));
        full.apply(Change::apply(node("late", None)));
        assert_eq!(full.next(), None);
    }
}
