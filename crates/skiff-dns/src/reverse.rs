//! Where a reverse name (`in-addr.arpa`, `ip6.arpa`) falls among the reverse zones of
//! the Service and pod CIDRs: the cluster DNS is authoritative there, and forwards every
//! other reverse name. Pure.
//!
//! A CIDR's reverse zone is its prefix rounded up to a whole label (8 bits for IPv4, 4
//! for IPv6): `10.43.0.0/16` is `43.10.in-addr.arpa.`; a `/12` is sixteen `/16` zones,
//! each with its own apex.

use crate::Cidr;
use hickory_proto::rr::Name;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A reverse name inside one of the zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Labels of the zone's apex (the name's suffix that is the zone).
    pub apex_labels: usize,
    pub spot: Spot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spot {
    /// A whole address: a PTR may live here.
    Address(IpAddr),
    /// The zone's apex: SOA and NS.
    Apex,
    /// Part of an address, below the apex: an empty non-terminal.
    Inner,
    /// Not an address (a label that is no octet or nibble, or too many labels).
    Invalid,
}

/// Where `name` falls, or none when it is no reverse name of these zones.
pub fn locate(cidrs: &[Cidr], name: &Name) -> Option<Located> {
    let mut labels = name.iter().rev();
    if !labels.next()?.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let family = labels.next()?;
    let v4 = if family.eq_ignore_ascii_case(b"in-addr") {
        true
    } else if family.eq_ignore_ascii_case(b"ip6") {
        false
    } else {
        return None;
    };
    let (unit, width) = if v4 { (8u32, 32u32) } else { (4, 128) };
    let (mut value, mut known, mut invalid) = (0u128, 0u32, false);
    for label in labels {
        match (known < width).then(|| unit_value(label, v4)).flatten() {
            Some(v) => {
                value = (value << unit) | u128::from(v);
                known += unit;
            }
            None => {
                invalid = true;
                break;
            }
        }
    }
    let bits = value.checked_shl(width - known).unwrap_or(0);
    let addr = if v4 {
        IpAddr::from(Ipv4Addr::from(u32::try_from(bits).unwrap_or(0)))
    } else {
        IpAddr::from(Ipv6Addr::from(bits))
    };
    let cidr = cidrs
        .iter()
        .find(|c| c.addr().is_ipv4() == v4 && known >= zone_bits(c, unit) && c.contains(addr))?;
    let zone = zone_bits(cidr, unit);
    let spot = if invalid {
        Spot::Invalid
    } else if known == width {
        Spot::Address(addr)
    } else if known == zone {
        Spot::Apex
    } else {
        Spot::Inner
    };
    Some(Located {
        apex_labels: 2 + (zone / unit) as usize,
        spot,
    })
}

fn zone_bits(c: &Cidr, unit: u32) -> u32 {
    u32::from(c.prefix()).div_ceil(unit) * unit
}

/// An octet in canonical decimal, or one hex nibble.
fn unit_value(label: &[u8], v4: bool) -> Option<u8> {
    if !v4 {
        return match label {
            [c] => (*c as char).to_digit(16).and_then(|d| u8::try_from(d).ok()),
            _ => None,
        };
    }
    let canonical = !label.is_empty()
        && label.len() <= 3
        && label.iter().all(u8::is_ascii_digit)
        && (label.len() == 1 || label[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(label).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cidrs: &[&str], name: &str) -> Option<Located> {
        let cidrs: Vec<Cidr> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        locate(&cidrs, &Name::from_ascii(name).unwrap())
    }

    #[test]
    fn reverse_names_fall_in_their_zone_or_outside() {
        let z = &["10.43.0.0/16", "10.42.0.0/16", "fd00:43::/112"];
        let addr = |s: &str| Spot::Address(s.parse().unwrap());
        let cases: &[(&str, Option<(usize, Spot)>)] = &[
            ("10.0.43.10.in-addr.arpa.", Some((4, addr("10.43.0.10")))),
            ("5.0.42.10.IN-ADDR.ARPA.", Some((4, addr("10.42.0.5")))),
            ("43.10.in-addr.arpa.", Some((4, Spot::Apex))),
            ("0.43.10.in-addr.arpa.", Some((4, Spot::Inner))),
            ("x.0.43.10.in-addr.arpa.", Some((4, Spot::Invalid))),
            ("1.10.0.43.10.in-addr.arpa.", Some((4, Spot::Invalid))),
            ("010.0.43.10.in-addr.arpa.", Some((4, Spot::Invalid))),
            ("10.in-addr.arpa.", None),
            ("8.8.8.8.in-addr.arpa.", None),
            ("10.0.44.10.in-addr.arpa.", None),
            ("example.com.", None),
            ("in-addr.arpa.", None),
            ("3.4.0.0.0.0.d.f.ip6.arpa.", None),
        ];
        for (name, want) in cases {
            let got = at(z, name).map(|l| (l.apex_labels, l.spot));
            assert_eq!(got, *want, "{name}");
        }
        // ip6.arpa: 32 nibbles, the /112 apex 28 of them down.
        let v6 = Name::from("fd00:43::a".parse::<IpAddr>().unwrap()).to_ascii();
        let got = at(z, &v6).unwrap();
        assert_eq!((got.apex_labels, got.spot), (30, addr("fd00:43::a")));
        let apex = Name::from_ascii(&v6).unwrap().trim_to(30).to_ascii();
        assert_eq!(at(z, &apex).map(|l| l.spot), Some(Spot::Apex));
        let upper = Name::from_ascii(&v6).unwrap().trim_to(29).to_ascii();
        assert_eq!(at(z, &upper), None);
        // A /12 rounds up to /16 zones, each its own apex.
        let wide = &["10.32.0.0/12"];
        assert_eq!(
            at(wide, "40.10.in-addr.arpa.").map(|l| l.spot),
            Some(Spot::Apex)
        );
        assert_eq!(at(wide, "48.10.in-addr.arpa."), None);
    }
}
