//! The node's part of the cluster network, started beside the pods: routes to the other
//! nodes' pod CIDRs kept current from a watch of Nodes (`podnet` decides, `iproute`
//! acts), the egress masquerade, and the node-local cluster DNS on the bridge's gateway
//! address, published as this node's endpoint of the `kube-dns` Service.

use crate::iproute;
use crate::podnet::{self, Backend, Cidr, Peer, Plan};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::serde::Deserialize;
use kube::api::{Api, Patch, PatchParams};
use skiff_kube::reflect::{self, Change};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The cluster's pod CIDR: traffic from it to anywhere else is masqueraded.
pub const CLUSTER_CIDR: &str = crate::host::POD_CIDR;

/// What the node's pod network needs, once IPAM has given the node its CIDR.
#[derive(Clone)]
pub struct PodNetwork {
    pub backend: Backend,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
    /// The node's view of Services, which the DNS answers from.
    pub catalog: Arc<skiff_catalog::Shared>,
    pub cluster_domain: String,
    /// The resolver config whose nameservers other names are forwarded to.
    pub resolv_conf: PathBuf,
}

impl PodNetwork {
    /// The MTU pods get (the VXLAN device's, or the default).
    pub fn mtu(&self) -> Option<u32> {
        (self.backend == Backend::Vxlan).then(|| iproute::vxlan_mtu(self.node_ip))
    }
}

/// Sets up the host side (bridge, egress, VXLAN device announced on the Node) and then
/// keeps the routes to other nodes until `shutdown`.
pub async fn run(
    client: kube::Client,
    net: PodNetwork,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    iproute::ensure_bridge(crate::host::BRIDGE, net.pod_cidr, net.mtu()).await?;
    // The node's own connections to cluster IPs need a route for the output hook's
    // DNAT to see them; the bridge keeps any the proxy does not take on the machine.
    iproute::route_to_bridge(crate::host::SERVICE_CIDR, crate::host::BRIDGE).await?;
    iproute::set_egress(&podnet::egress_table(CLUSTER_CIDR)).await?;
    if net.backend == Backend::Vxlan {
        let mac = iproute::ensure_vxlan(net.node_ip, net.pod_cidr).await?;
        announce_vtep(&client, &net.node_name, &mac, &mut shutdown).await;
    }
    spawn_dns(&client, &net, shutdown.clone()).await;
    let mut nodes = reflect::watch_values(client, "/api/v1/nodes", None);
    let mut peers: HashMap<String, Peer> = HashMap::new();
    // What an earlier run left is pruned by the first plan.
    let mut applied = Plan {
        routes: iproute::routes().await.unwrap_or_default(),
        ..Plan::default()
    };
    let mut retry = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            c = nodes.recv() => match c {
                Some(c) => {
                    absorb(&mut peers, c);
                    while let Ok(c) = nodes.try_recv() {
                        absorb(&mut peers, c);
                    }
                }
                None => return Ok(()),
            },
            // Put back what someone else removed, and try again what failed (the
            // failed parts are not in `applied`, so the plan below adds them).
            _ = retry.tick() => reassert(&applied).await,
            // (A stop seen while announcing the VTEP is seen here as well.)
            _ = stopped(&mut shutdown) => return Ok(()),
        }
        let list: Vec<Peer> = peers.values().cloned().collect();
        let want = podnet::plan(net.backend, &net.node_name, net.node_ip, &list);
        applied = apply(&applied, want).await;
    }
}

/// Resolves once `shutdown` says stop (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
}

fn absorb(peers: &mut HashMap<String, Peer>, change: Change) {
    let peer = |v: std::sync::Arc<serde_json::Value>| {
        Node::deserialize(&*v)
            .ok()
            .and_then(|n| Peer::from_node(&n))
    };
    match change {
        Change::Reset(items) => {
            *peers = items
                .into_iter()
                .filter_map(peer)
                .map(|p| (p.name.clone(), p))
                .collect();
        }
        Change::Apply(v) => {
            let name = reflect::names(&v).1.to_string();
            match peer(v) {
                Some(p) => peers.insert(name, p),
                None => peers.remove(&name),
            };
        }
        Change::Delete(v) => {
            peers.remove(reflect::names(&v).1);
        }
    }
}

async fn reassert(applied: &Plan) {
    for v in &applied.vteps {
        if let Err(e) = iproute::replace_vtep(v).await {
            tracing::warn!(error = %e, "restoring a VTEP");
        }
    }
    for r in &applied.routes {
        if let Err(e) = iproute::replace_route(r).await {
            tracing::warn!(error = %e, "restoring a route");
        }
    }
}

/// Carries out the difference; returns what now holds (a failed addition is left out,
/// so the next round tries it again).
async fn apply(old: &Plan, mut want: Plan) -> Plan {
    let (gone_routes, new_routes) = podnet::diff(&old.routes, &want.routes);
    let (gone_vteps, new_vteps) = podnet::diff(&old.vteps, &want.vteps);
    for r in &gone_routes {
        match iproute::delete_route(r).await {
            Ok(()) => tracing::info!(dst = %r.dst, via = %r.via, "route to a node's pods removed"),
            Err(e) => tracing::debug!(error = %e, "removing a route"),
        }
    }
    for v in &gone_vteps {
        if let Err(e) = iproute::delete_vtep(v).await {
            tracing::debug!(error = %e, "removing a VTEP");
        }
    }
    for v in &new_vteps {
        if let Err(e) = iproute::replace_vtep(v).await {
            tracing::warn!(error = %e, "adding a VTEP");
            want.vteps.remove(v);
        }
    }
    for r in &new_routes {
        match iproute::replace_route(r).await {
            Ok(()) => tracing::info!(dst = %r.dst, via = %r.via, "route to a node's pods added"),
            Err(e) => {
                tracing::warn!(error = %e, "adding a route");
                want.routes.remove(r);
            }
        }
    }
    want
}

/// Puts the VXLAN device's MAC on the Node, where the other nodes read it.
async fn announce_vtep(
    client: &kube::Client,
    node: &str,
    mac: &str,
    shutdown: &mut watch::Receiver<bool>,
) {
    let api: Api<Node> = Api::all(client.clone());
    let patch =
        serde_json::json!({"metadata": {"annotations": {podnet::VTEP_MAC_ANNOTATION: mac}}});
    loop {
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "announcing the VTEP; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The cluster DNS on the gateway address (the bridge exists by now), and this node's
/// endpoint of `kube-dns` once it serves.
async fn spawn_dns(client: &kube::Client, net: &PodNetwork, shutdown: watch::Receiver<bool>) {
    let gateway = std::net::IpAddr::V4(net.pod_cidr.gateway());
    let config = skiff_dns::Config {
        domain: net.cluster_domain.clone(),
        listen_udp_tcp: vec![SocketAddr::new(gateway, 53)],
        metrics: Some(SocketAddr::new(gateway, 9153)),
        upstreams: upstreams(&net.resolv_conf),
        ..Default::default()
    };
    let server = match skiff_dns::bind(net.catalog.clone(), config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the cluster DNS cannot start");
            return;
        }
    };
    tracing::info!(%gateway, "cluster DNS serving");
    tokio::spawn(async move {
        if let Err(e) = server.run(shutdown).await {
            tracing::error!(error = %e, "the cluster DNS stopped");
        }
    });
    let (client, node, ip) = (client.clone(), net.node_name.clone(), gateway);
    tokio::spawn(async move { crate::dnsendpoint::publish(&client, &node, ip).await });
}

fn upstreams(resolv_conf: &std::path::Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
    let stub = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    skiff_dns::upstreams_from_resolv_conf(&text, stub.as_deref())
}

/// The service proxy (kube-proxy's job) on this node's nftables. With `cleanup`, its
/// tables go when it stops; without, pods left running keep their Services.
pub fn spawn_proxy(
    catalog: Arc<skiff_catalog::Shared>,
    node_name: &str,
    node_ip: &str,
    cleanup: bool,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut config = skiff_proxy::Config::new(node_name);
    config.node_ips = node_ip.parse().into_iter().collect();
    config.cleanup_on_stop = cleanup;
    tokio::spawn(async move {
        let nft = Arc::new(skiff_proxy::NftCommand::new());
        let conntrack = Arc::new(skiff_proxy::ConntrackCommand::new());
        if let Err(e) = skiff_proxy::run(catalog, config, nft, conntrack, shutdown).await {
            tracing::error!(error = %e, "the service proxy stopped");
        }
    })
}
