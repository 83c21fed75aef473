//! The host side of the pod network, through iproute2 (`ip`, `bridge`) and `nft`: the
//! pod bridge with its gateway address, routes to other nodes' pod CIDRs (marked with a
//! protocol number of our own, so a restarted agent finds and prunes what it left), the
//! VXLAN device with its neighbours and forwarding entries, and the egress table.
//!
//! Few and rare operations (one per node joining or leaving), so the `ip` command is
//! enough: netlink would save a fork per change and add a dependency.

use crate::podnet::{Cidr, Route, VXLAN_DEVICE, VXLAN_ID, VXLAN_OVERHEAD, VXLAN_PORT, Vtep};
use std::collections::BTreeSet;
use std::io::{Error, Result};
use std::net::Ipv4Addr;

/// The route protocol that marks skiff's routes (`ip route show proto 83`).
pub const ROUTE_PROTO: &str = "83";

async fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::other(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn ip(args: &[&str]) -> Result<String> {
    run("ip", args).await
}

/// Runs an nftables script as one transaction.
pub async fn nft(script: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The egress table replaced whole, in one transaction.
pub async fn set_egress(table: &str) -> Result<()> {
    nft(&format!(
        "table ip skiff-egress\ndelete table ip skiff-egress\n{table}"
    ))
    .await
}

pub async fn remove_egress() {
    let _ = nft("table ip skiff-egress\ndelete table ip skiff-egress\n").await;
}

/// Forwarding on, and bridged pod traffic through netfilter (replies from a pod on the
/// same bridge must meet the conntrack entry of the Service NAT that reached it).
pub fn enable_forwarding() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    let brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::path::Path::new(brnf).exists() {
        std::fs::write(brnf, "1")?;
    }
    Ok(())
}

/// The pod bridge, up, with the node's gateway address, before the first pod: the
/// node's DNS listens there. The CNI bridge plugin adopts it as it is.
///
/// Its MAC address is set, not left to the kernel: a bridge whose address was never set
/// takes the lowest of its ports', so a pod's veth joining could change it, and pods
/// that had the gateway's old address in their ARP caches would send their replies to
/// the node into the void for seconds (an Ingress or Service request in flight hangs).
pub async fn ensure_bridge(name: &str, cidr: Cidr, mtu: Option<u32>) -> Result<()> {
    if ip(&["link", "show", name]).await.is_err() {
        ip(&["link", "add", name, "type", "bridge"]).await?;
    }
    ip(&["link", "set", name, "address", &gateway_mac(cidr.gateway())]).await?;
    let addr = format!("{}/{}", cidr.gateway(), cidr.len);
    ip(&["addr", "replace", &addr, "dev", name]).await?;
    if let Some(mtu) = mtu {
        ip(&["link", "set", name, "mtu", &mtu.to_string()]).await?;
    }
    ip(&["link", "set", name, "up"]).await?;
    Ok(())
}

/// A locally administered unicast MAC naming the gateway's address (`0a:58:` and its
/// four bytes, as Kubernetes network plugins derive pod MACs from IPs).
fn gateway_mac(ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// `cidr` routed to the (local) bridge in place of its unreachable route.
pub async fn route_to_bridge(cidr: &str, bridge: &str) -> Result<()> {
    ip(&["route", "replace", cidr, "dev", bridge])
        .await
        .map(drop)
}

/// The routes skiff put in the main table.
pub async fn routes() -> Result<BTreeSet<Route>> {
    let out = ip(&["-j", "route", "show", "proto", ROUTE_PROTO]).await?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let dst = if dst.contains('/') {
                Cidr::parse(dst)?
            } else {
                Cidr::parse(&format!("{dst}/32"))?
            };
            Some(Route {
                dst,
                via: r["gateway"].as_str()?.parse().ok()?,
                dev: r["dev"]
                    .as_str()
                    .filter(|d| *d == VXLAN_DEVICE)
                    .map(str::to_string),
            })
        })
        .collect())
}

fn route_args<'a>(r: &'a Route, dst: &'a str, via: &'a str) -> Vec<&'a str> {
    let mut a = vec![dst, "via", via, "proto", ROUTE_PROTO];
    if let Some(dev) = &r.dev {
        a.extend(["dev", dev.as_str(), "onlink"]);
    }
    a
}

pub async fn replace_route(r: &Route) -> Result<()> {
    let (dst, via) = (r.dst.to_string(), r.via.to_string());
    let mut args = vec!["route", "replace"];
    args.extend(route_args(r, &dst, &via));
    ip(&args).await.map(drop)
}

pub async fn delete_route(r: &Route) -> Result<()> {
    let (dst, via) = (r.dst.to_string(), r.via.to_string());
    let mut args = vec!["route", "del"];
    args.extend(route_args(r, &dst, &via));
    ip(&args).await.map(drop)
}

/// The interface holding `addr` (the VXLAN device sends through it).
fn interface_of(addr: Ipv4Addr) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        let v4 = a.address.as_ref()?.as_sockaddr_in()?.ip();
        (v4 == addr).then_some(a.interface_name)
    })
}

/// A link's attributes from `ip -j link show` (netlink: right in any network namespace,
/// where /sys/class/net may show another's).
fn link(dev: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("ip")
        .args(["-j", "link", "show", "dev", dev])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.first().cloned()
}

fn mtu_of(dev: &str) -> Option<u32> {
    link(dev)?["mtu"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
}

/// The MTU pods get with VXLAN: the underlying interface's less the encapsulation.
pub fn vxlan_mtu(node_ip: Ipv4Addr) -> u32 {
    interface_of(node_ip)
        .and_then(|d| mtu_of(&d))
        .unwrap_or(1500)
        .saturating_sub(VXLAN_OVERHEAD)
}

/// The VXLAN device over the interface of `node_ip`, addressed with the node CIDR's
/// network address (as flannel's VTEP), up; returns its MAC, which peers need.
pub async fn ensure_vxlan(node_ip: Ipv4Addr, cidr: Cidr) -> Result<String> {
    let parent = interface_of(node_ip)
        .ok_or_else(|| Error::other(format!("no interface holds the node address {node_ip}")))?;
    if ip(&["link", "show", VXLAN_DEVICE]).await.is_err() {
        let (id, port, local) = (
            VXLAN_ID.to_string(),
            VXLAN_PORT.to_string(),
            node_ip.to_string(),
        );
        ip(&[
            "link",
            "add",
            VXLAN_DEVICE,
            "type",
            "vxlan",
            "id",
            &id,
            "local",
            &local,
            "dev",
            &parent,
            "dstport",
            &port,
            "nolearning",
        ])
        .await?;
    }
    let mtu = vxlan_mtu(node_ip).to_string();
    ip(&["link", "set", VXLAN_DEVICE, "mtu", &mtu]).await?;
    let addr = format!("{}/32", cidr.network());
    ip(&["addr", "replace", &addr, "dev", VXLAN_DEVICE]).await?;
    ip(&["link", "set", VXLAN_DEVICE, "up"]).await?;
    link(VXLAN_DEVICE)
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .ok_or_else(|| Error::other(format!("{VXLAN_DEVICE} has no MAC address")))
}

pub async fn replace_vtep(v: &Vtep) -> Result<()> {
    let (ip_, node) = (v.ip.to_string(), v.node_ip.to_string());
    ip(&[
        "neigh",
        "replace",
        &ip_,
        "lladdr",
        &v.mac,
        "dev",
        VXLAN_DEVICE,
        "nud",
        "permanent",
    ])
    .await?;
    run(
        "bridge",
        &[
            "fdb",
            "replace",
            &v.mac,
            "dev",
            VXLAN_DEVICE,
            "dst",
            &node,
            "self",
            "permanent",
        ],
    )
    .await
    .map(drop)
}

pub async fn delete_vtep(v: &Vtep) -> Result<()> {
    let (ip_, node) = (v.ip.to_string(), v.node_ip.to_string());
    let _ = ip(&["neigh", "del", &ip_, "dev", VXLAN_DEVICE]).await;
    run(
        "bridge",
        &[
            "fdb",
            "del",
            &v.mac,
            "dev",
            VXLAN_DEVICE,
            "dst",
            &node,
            "self",
        ],
    )
    .await
    .map(drop)
}

/// Everything above, at a clean stop: routes, the VXLAN device, the egress table.
pub async fn remove_all() {
    if let Ok(rs) = routes().await {
        for r in rs {
            let _ = delete_route(&r).await;
        }
    }
    let _ = ip(&["link", "del", VXLAN_DEVICE]).await;
    remove_egress().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bridge_mac_is_unicast_local_and_names_the_gateway() {
        let mac = super::gateway_mac(std::net::Ipv4Addr::new(10, 42, 3, 1));
        assert_eq!(mac, "0a:58:0a:2a:03:01");
        let first = u8::from_str_radix(&mac[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10, "locally administered, not multicast");
    }
}
