//! The cluster DNS every node agent serves itself (there is no CoreDNS pod): Kubernetes
//! DNS-Based Service Discovery (specification 1.1.0) answered as CoreDNS's `kubernetes`
//! plugin answers it in `pods insecure` mode, from the node's [`skiff_catalog::Shared`];
//! every other name is forwarded to the host's resolvers through a cache.
//!
//! The core is pure: [`zone::Index`] (names → Services, kept current per changed Service)
//! and [`answer::answer`] (a query and the index → the reply), with [`wire`] for the bytes
//! (FORMERR, truncation). IO sits at the edges: [`server`] (UDP and TCP), [`forward`]
//! (upstreams and their cache), [`replies`] (replies to cluster names kept per
//! index generation), [`metrics`] (Prometheus text in CoreDNS's names).

pub mod answer;
pub mod forward;
pub mod metrics;
pub mod replies;
pub mod resolv;
pub mod reverse;
pub mod server;
pub mod wire;
pub mod zone;

pub use answer::{Outcome, answer};
pub use resolv::upstreams_from_resolv_conf;
pub use server::{Server, bind, serve};
pub use zone::Index;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// How the cluster DNS is set up; [`Config::default`] is the usual cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
    /// Each address is served over both UDP and TCP.
    pub listen_udp_tcp: Vec<SocketAddr>,
    /// Where `/metrics` is served (the kube-dns Service's 9153 port), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Resolvers for names outside the cluster, tried in turn (see
    /// [`upstreams_from_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
    /// The Service and pod CIDRs: their reverse zones are answered here, not forwarded.
    pub reverse_cidrs: Vec<Cidr>,
    /// TTL of cluster records (CoreDNS's `ttl`, 5 by default).
    pub ttl: u32,
    /// Forwarded answers kept at most.
    pub cache_entries: usize,
    /// How long one upstream is waited for before the next is tried.
    pub upstream_timeout: Duration,
    /// How long a TCP connection may sit idle between queries.
    pub tcp_idle: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            domain: "cluster.local".into(),
            listen_udp_tcp: Vec::new(),
            metrics: None,
            upstreams: Vec::new(),
            reverse_cidrs: vec![
                Cidr::new(IpAddr::from([10, 43, 0, 0]), 16),
                Cidr::new(IpAddr::from([10, 42, 0, 0]), 16),
            ],
            ttl: 5,
            cache_entries: 10_000,
            upstream_timeout: Duration::from_secs(2),
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// An IP prefix such as `10.43.0.0/16`; the address is kept with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The prefix is capped at the family's width.
    pub fn new(addr: IpAddr, prefix: u8) -> Cidr {
        let prefix = prefix.min(width(addr));
        Cidr {
            addr: masked(addr, prefix),
            prefix,
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr`'s first `prefix` bits are this prefix's.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && masked(addr, self.prefix) == self.addr
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cidr, Error> {
        let bad = || Error::Cidr(s.to_string());
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if prefix > width(addr) {
            return Err(bad());
        }
        Ok(Cidr::new(addr, prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn width(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// `addr` with every bit after the first `prefix` cleared.
pub(crate) fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::from(Ipv4Addr::from(u32::from(a) & keep))
        }
        IpAddr::V6(a) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::from(Ipv6Addr::from(u128::from(a) & keep))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cluster domain {0:?}")]
    Domain(String),
    #[error("invalid CIDR {0:?}")]
    Cidr(String),
    #[error("no address to serve DNS on")]
    NoListen,
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_mask_and_contain() {
        let c: Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(c.contains("10.43.200.1".parse().unwrap()));
        assert!(!c.contains("10.44.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let v6: Cidr = "fd00:43::/112".parse().unwrap();
        assert!(v6.contains("fd00:43::abcd".parse().unwrap()));
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
