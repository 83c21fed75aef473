//! The upstream resolvers, read from the host's resolv.conf. Pure: the caller reads the
//! files.
//!
//! A loopback nameserver (systemd-resolved's 127.0.0.53, a dnsmasq on 127.0.0.1) is a
//! stub on the host, so it is skipped in favour of the file that names the real
//! upstreams (`/run/systemd/resolve/resolv.conf`), as kubelet and k3s do: answers from
//! a stub would depend on the host's own search domains and caches, and a stub that
//! forwards back to the cluster DNS would loop.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// The nameservers of `text`, on port 53, loopback ones skipped; when that leaves none,
/// those of `fallback_text` (also without loopback). Empty if neither names any.
pub fn upstreams_from_resolv_conf(text: &str, fallback_text: Option<&str>) -> Vec<SocketAddr> {
    let found = nameservers(text);
    if !found.is_empty() {
        return found;
    }
    fallback_text.map(nameservers).unwrap_or_default()
}

fn nameservers(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_addr) else {
            continue;
        };
        let ip = addr.ip();
        if !ip.is_loopback() && !ip.is_unspecified() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Port 53 of an address; a link-local one needs its zone as a number (`fe80::1%2`):
/// std cannot look up an interface's name.
fn parse_addr(word: &str) -> Option<SocketAddr> {
    let (ip, zone) = match word.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone.parse::<u32>().ok()?)),
        None => (word, None),
    };
    match (ip.parse::<IpAddr>().ok()?, zone) {
        (IpAddr::V6(v6), Some(scope)) => Some(SocketAddrV6::new(v6, 53, 0, scope).into()),
        (_, Some(_)) => None,
        (ip, None) => Some(SocketAddr::new(ip, 53)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_skipped_for_the_real_upstreams() {
        let stub =
            "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let real = "nameserver 192.0.2.1\nnameserver 2001:db8::1\n#nameserver 192.0.2.9\nnameserver 192.0.2.1\n";
        let want: Vec<SocketAddr> = vec![
            "192.0.2.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ];
        assert_eq!(upstreams_from_resolv_conf(stub, Some(real)), want);
        assert_eq!(upstreams_from_resolv_conf(real, None), want);
        // A mix keeps only the non-loopback ones; the fallback is not read.
        let mixed = "nameserver 127.0.0.1\nnameserver 198.51.100.7\nnameserver ::1\n";
        assert_eq!(
            upstreams_from_resolv_conf(mixed, Some(real)),
            ["198.51.100.7:53".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            upstreams_from_resolv_conf(
                "nameserver fe80::1%eth0\nnameserver fe80::2%3\nnameserver bogus\n",
                None
            ),
            ["[fe80::2%3]:53".parse::<SocketAddr>().unwrap()]
        );
        assert!(upstreams_from_resolv_conf(stub, None).is_empty());
        assert!(upstreams_from_resolv_conf(stub, Some(stub)).is_empty());
    }
}
