//! What the proxy needs to know about its node and cluster: node name (which endpoints
//! are local), the cluster CIDRs (which traffic comes from pods), the service CIDRs
//! (addresses no Service holds are dropped, never routed away), and where the health
//! servers listen.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// An address family, and so one nftables table (`ip` or `ip6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The nft table family, and the payload keyword for addresses (`ip saddr`).
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The nft address type in set and map declarations.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// Loopback, which never takes NodePort traffic.
    pub fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1",
        }
    }
}

/// An address block, `10.42.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid CIDR {0:?}")]
pub struct BadCidr(String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// Pod addresses, at most one block per family (kube-proxy's `--cluster-cidr`):
    /// traffic from outside them to a cluster IP is masqueraded, and pods reaching an
    /// external address of an `externalTrafficPolicy: Local` Service short-circuit.
    pub cluster_cidrs: Vec<Cidr>,
    /// Service addresses: traffic to one no Service holds is dropped.
    pub service_cidrs: Vec<Cidr>,
    /// The node's own addresses; an IPv6 one makes the `ip6` table exist from the start.
    pub node_ips: Vec<IpAddr>,
    /// kube-proxy's `/healthz` (and `/livez`) server; `None` for none.
    pub healthz_address: Option<SocketAddr>,
    /// Where the per-Service health check servers (`healthCheckNodePort`) listen.
    pub health_check_ip: IpAddr,
    /// `/healthz` turns 503 when a queued change has waited longer than this.
    pub health_timeout: Duration,
    /// How long a burst of changes is gathered into one transaction.
    pub batch_delay: Duration,
    /// Remove the tables when `run` stops (kube-proxy leaves them for its next start;
    /// skiff's agent stops its pods with it).
    pub cleanup_on_stop: bool,
    /// How many tables the per-Service chains are spread over (1 to
    /// `rules::MAX_SHARDS`; see `rules`): more make each change's commit cheaper
    /// (the kernel validates only the tables a change touches), fewer make a
    /// connection's first packet cross fewer NAT chains (one per shard).
    pub shards: u16,
}

impl Config {
    /// skiff's defaults: pods in 10.42.0.0/16, Services in 10.43.0.0/16, `/healthz` on
    /// 10256 as kube-proxy's.
    pub fn new(node_name: &str) -> Config {
        Config {
            node_name: node_name.to_string(),
            cluster_cidrs: vec![Cidr {
                addr: [10, 42, 0, 0].into(),
                prefix: 16,
            }],
            service_cidrs: vec![Cidr {
                addr: [10, 43, 0, 0].into(),
                prefix: 16,
            }],
            node_ips: Vec::new(),
            healthz_address: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            health_check_ip: [0, 0, 0, 0].into(),
            health_timeout: Duration::from_secs(60),
            batch_delay: Duration::from_millis(5),
            cleanup_on_stop: true,
            shards: 16,
        }
    }

    pub fn cluster_cidr(&self, family: Family) -> Option<&Cidr> {
        self.cluster_cidrs.iter().find(|c| c.family() == family)
    }

    /// `shards`, kept within what the tables allow.
    pub fn shard_count(&self) -> u16 {
        self.shards.clamp(1, crate::rules::MAX_SHARDS)
    }

    pub fn service_cidrs(&self, family: Family) -> impl Iterator<Item = &Cidr> {
        self.service_cidrs
            .iter()
            .filter(move |c| c.family() == family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_print() {
        let c: Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(c.family(), Family::V4);
        assert_eq!("fd00::/48".parse::<Cidr>().unwrap().family(), Family::V6);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
    }
}
