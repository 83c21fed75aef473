//! The node's part of the built-in Ingress controller: `skiff-ingress` on the node's
//! Service catalog, and the Node annotation that says on which ports it serves (or, both
//! ports off, that it does not), which the Ingress status controller reads.

use skiff_ingress::server::Ports;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Ingress {
    tasks: Vec<JoinHandle<()>>,
}

pub fn start(
    client: &kube::Client,
    catalog: &Arc<skiff_catalog::Shared>,
    node: &str,
    ports: Ports,
    shutdown: &watch::Receiver<bool>,
) -> Ingress {
    let announce =
        skiff_ingress::feed::announce(client.clone(), node.into(), ports, shutdown.clone());
    let mut tasks = vec![announce];
    if ports != (Ports { http: 0, https: 0 }) {
        let feed =
            skiff_ingress::feed::spawn(client.clone(), catalog.clone(), ports, shutdown.clone());
        tasks.push(feed);
    }
    Ingress { tasks }
}

impl Ingress {
    /// Waits for the listeners to close (after shutdown).
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
