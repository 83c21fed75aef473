//! Names of the per-Service chains and sets: stable (the same Service port always gets
//! the same name, so an incremental sync can find what it wrote before) and valid nft
//! identifiers, as kube-proxy builds them: a hash prefix, then `ns/svc/proto/port`.
//!
//! nft identifiers are `[A-Za-z_.][A-Za-z0-9_./-]*`; namespace, Service and port names
//! are `[a-z0-9-]`, so they go in as they are, with `/` between them (the hash's base32
//! letters start every name). The kernel caps names at 255 bytes (`NFT_NAME_MAXLEN` is
//! 256 with the NUL; checked on kernel 6.18: 255 loads, 256 is `ERANGE`), so a long
//! name is cut and ends in `...`; the hash over the whole name keeps cut names apart.

use ring::digest::{SHA256, digest};
use skiff_catalog::{Protocol, ServiceKey};
use std::net::IpAddr;

/// The kernel's limit on a chain or set name, in bytes.
pub const NAME_MAX: usize = 255;

/// The longest prefix put before a base name (`endpoint-`, `external-`, `affinity-`).
const PREFIX_MAX: usize = 9;

/// The identity of one Service port, from which its chain names derive.
pub fn port_base(key: &ServiceKey, proto: Protocol, port_name: &str) -> String {
    hashed(&format!(
        "{}/{}/{}/{}",
        key.namespace,
        key.name,
        proto.lower(),
        port_name
    ))
}

/// The identity of one endpoint of one Service port.
pub fn endpoint_base(
    key: &ServiceKey,
    proto: Protocol,
    port_name: &str,
    ip: IpAddr,
    port: u16,
) -> String {
    // `:` is not allowed in a name: IPv6 addresses are written with dots.
    let ip = ip.to_string().replace(':', ".");
    hashed(&format!(
        "{}/{}/{}/{}__{}/{}",
        key.namespace,
        key.name,
        proto.lower(),
        port_name,
        ip,
        port
    ))
}

/// The shard (of `n`) holding a Service's chains: a hash of its key, so stable across
/// restarts and spread evenly whatever the names.
pub fn shard(key: &ServiceKey, n: u16) -> u16 {
    let h = digest(
        &SHA256,
        format!("{}/{}", key.namespace, key.name).as_bytes(),
    );
    let b = h.as_ref();
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (v % u32::from(n.max(1))) as u16
}

/// `HASH8-name`, cut to fit behind the longest prefix.
fn hashed(name: &str) -> String {
    let h = digest(&SHA256, name.as_bytes());
    let mut out = base32_prefix(h.as_ref());
    out.push('-');
    out.push_str(name);
    let max = NAME_MAX - PREFIX_MAX;
    if out.len() > max {
        // Names are ASCII, so any byte index is a char boundary.
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

/// The first eight base32 (RFC 4648) characters of `bytes` (40 bits).
fn base32_prefix(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits = bytes[..5]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (0..8)
        .map(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char)
        .collect()
}

pub fn service_chain(base: &str) -> String {
    format!("service-{base}")
}

pub fn local_chain(base: &str) -> String {
    format!("local-{base}")
}

pub fn external_chain(base: &str) -> String {
    format!("external-{base}")
}

pub fn endpoint_chain(base: &str) -> String {
    format!("endpoint-{base}")
}

pub fn affinity_set(base: &str) -> String {
    format!("affinity-{base}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_hashed_and_valid() {
        let key = ServiceKey::new("default", "web");
        let a = port_base(&key, Protocol::Tcp, "http");
        assert_eq!(a, port_base(&key, Protocol::Tcp, "http"));
        assert!(a.ends_with("-default/web/tcp/http"), "{a}");
        assert_eq!(a.len(), 8 + 1 + "default/web/tcp/http".len());
        assert!(
            a[..8]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_ne!(a[..8], port_base(&key, Protocol::Udp, "http")[..8]);
        let e = endpoint_base(&key, Protocol::Tcp, "", "fd00::1".parse().unwrap(), 80);
        assert!(e.ends_with("-default/web/tcp/__fd00..1/80"), "{e}");
    }

    #[test]
    fn long_names_are_cut_and_stay_distinct() {
        // The longest real name (63-byte namespace and Service, 15-byte port name,
        // a full IPv6 address) fits: cutting is only a guard.
        let key = ServiceKey::new(&"n".repeat(63), &"s".repeat(63));
        let ip: IpAddr = "fd00:1234:5678:9abc:def0:1234:5678:9abc".parse().unwrap();
        let a = endpoint_base(&key, Protocol::Sctp, &"p".repeat(15), ip, 65535);
        assert!(endpoint_chain(&a).len() <= NAME_MAX && !a.ends_with("..."));
        let (x, y) = (
            hashed(&"x".repeat(300)),
            hashed(&format!("{}y", "x".repeat(299))),
        );
        assert!(x.ends_with("...") && endpoint_chain(&x).len() == NAME_MAX);
        assert_ne!(x, y, "the hash tells cut names apart");
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let key = |i: usize| ServiceKey::new("default", &format!("s{i}"));
        assert_eq!(shard(&key(1), 16), shard(&key(1), 16));
        let mut counts = [0usize; 16];
        for i in 0..1600 {
            counts[usize::from(shard(&key(i), 16))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (60..=140).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn base32_matches_rfc4648() {
        // "foobar" → MZXW6YTBOI (RFC 4648 test vector).
        assert_eq!(base32_prefix(b"fooba"), "MZXW6YTB");
    }
}
