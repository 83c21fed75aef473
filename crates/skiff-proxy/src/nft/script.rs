//! The part of nft's language that incremental transactions use (`rules::diff`
//! renders nothing else), read back into nf_tables operations for the netlink
//! executor: chains added, flushed, deleted; affinity sets added and deleted; rules
//! of the shapes `rules` writes; map and set elements added and deleted.
//!
//! Each expression is the one nft 1.0.6 itself generates for the same text (taken
//! from `nft --debug=netlink,mnl`; `tests/netns.rs` checks it against `nft`), so what
//! an operator lists is what the text says. Anything outside the subset parses to
//! `None` and the whole script goes to `nft -f` instead: full loads (hooks, maps,
//! `delete table`) always do.

use crate::config::Family;
use std::net::IpAddr;

/// A table's object: chain, set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obj {
    pub family: Family,
    pub table: String,
    pub name: String,
}

/// One command of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddChain(Obj),
    /// Deletes the chain's rules.
    FlushChain(Obj),
    DeleteChain(Obj),
    /// An address set with `flags dynamic,timeout` (client affinity).
    AddSet {
        set: Obj,
        timeout_ms: u64,
    },
    DeleteSet(Obj),
    AddRule {
        chain: Obj,
        exprs: Vec<Expr>,
    },
    AddElements {
        set: Obj,
        elems: Vec<Elem>,
    },
    DeleteElements {
        set: Obj,
        keys: Vec<Vec<u8>>,
    },
}

/// A set element: its key as the kernel stores it, and its verdict in a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub key: Vec<u8>,
    pub verdict: Option<Verdict>,
}

/// A verdict: code as `NFTA_VERDICT_CODE` has it, and the chain of a jump or goto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: i32,
    pub chain: Option<String>,
}

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;

/// Where a payload is read from (`NFT_PAYLOAD_*_HEADER`).
pub const NETWORK_HEADER: u32 = 1;
pub const TRANSPORT_HEADER: u32 = 2;

/// One nf_tables expression. Every value goes through register 1 (the port of a
/// `dnat` through 2), as nft allocates them for these rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    /// `reg1 = reg1 & mask` (xor zero).
    Bitwise {
        mask: Vec<u8>,
    },
    Cmp {
        neq: bool,
        data: Vec<u8>,
    },
    /// `meta l4proto`.
    MetaL4proto,
    /// `numgen random mod N`.
    Numgen {
        modulus: u32,
    },
    /// `fib saddr type`.
    FibSaddrType,
    Lookup {
        set: String,
    },
    /// `update @set { key }`.
    DynsetUpdate {
        set: String,
    },
    /// A value into register `reg`.
    Immediate {
        reg: u32,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    /// `dnat to` the address in register 1 and port in register 2.
    Dnat {
        family: Family,
    },
}

/// The operations of `script`, with the line each comes from; `None` when any line
/// is outside the subset.
pub fn parse(script: &str) -> Option<Vec<(usize, Op)>> {
    script
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Some((i, parse_line(l)?)))
        .collect()
}

fn parse_line(line: &str) -> Option<Op> {
    let t: Vec<&str> = line.split_whitespace().collect();
    let obj = obj(t.get(2..5)?)?;
    let rest = &t[5..];
    match (t[0], t[1]) {
        ("add", "chain") if rest.is_empty() => Some(Op::AddChain(obj)),
        ("flush", "chain") if rest.is_empty() => Some(Op::FlushChain(obj)),
        ("delete", "chain") if rest.is_empty() => Some(Op::DeleteChain(obj)),
        ("delete", "set") if rest.is_empty() => Some(Op::DeleteSet(obj)),
        ("add", "set") => add_set(obj, rest),
        ("add", "rule") => {
            let exprs = rule(obj.family, rest)?;
            Some(Op::AddRule { chain: obj, exprs })
        }
        ("add", "element") => {
            let elems = elements(obj.family, rest, true)?;
            Some(Op::AddElements { set: obj, elems })
        }
        ("delete", "element") => {
            let elems = elements(obj.family, rest, false)?;
            let keys = elems.into_iter().map(|e| e.key).collect();
            Some(Op::DeleteElements { set: obj, keys })
        }
        _ => None,
    }
}

/// `FAMILY TABLE NAME`, names as `rules` makes them (nft would need quotes for
/// anything else).
fn obj(t: &[&str]) -> Option<Obj> {
    let family = match t[0] {
        "ip" => Family::V4,
        "ip6" => Family::V6,
        _ => return None,
    };
    (identifier(t[1]) && identifier(t[2])).then(|| Obj {
        family,
        table: t[1].to_string(),
        name: t[2].to_string(),
    })
}

fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
}

/// `{ type ADDR ; flags dynamic,timeout ; timeout Ns ; }`
fn add_set(set: Obj, t: &[&str]) -> Option<Op> {
    let addr = match set.family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    let want = [
        "{",
        "type",
        addr,
        ";",
        "flags",
        "dynamic,timeout",
        ";",
        "timeout",
    ];
    if t.len() != 11 || t[..8] != want || t[9..] != [";", "}"] {
        return None;
    }
    let secs: u64 = t[8].strip_suffix('s')?.parse().ok()?;
    Some(Op::AddSet {
        set,
        timeout_ms: secs.checked_mul(1000)?,
    })
}

/// `{ KEY [: VERDICT], ... }`: keys of addresses, protocols and ports, concatenated
/// with ` . `.
fn elements(family: Family, t: &[&str], values: bool) -> Option<Vec<Elem>> {
    let body = t.join(" ");
    let body = body.strip_prefix("{ ")?.strip_suffix(" }")?;
    body.split(", ")
        .map(|e| {
            let (key, verdict) = match e.split_once(" : ") {
                Some((k, v)) if values => (k, Some(verdict(v)?)),
                Some(_) => return None,
                None => (e, None),
            };
            Some(Elem {
                key: key_bytes(family, key)?,
                verdict,
            })
        })
        .collect()
}

fn verdict(v: &str) -> Option<Verdict> {
    let t: Vec<&str> = v.split_whitespace().collect();
    let (code, chain) = match t[..] {
        ["drop"] => (NF_DROP, None),
        ["accept"] => (NF_ACCEPT, None),
        ["jump", c] if identifier(c) => (NFT_JUMP, Some(c.to_string())),
        ["goto", c] if identifier(c) => (NFT_GOTO, Some(c.to_string())),
        _ => return None,
    };
    Some(Verdict { code, chain })
}

/// A key as the kernel has it: in a concatenation every part takes whole 32-bit
/// registers (padded with zeros), a lone value its own size.
fn key_bytes(family: Family, key: &str) -> Option<Vec<u8>> {
    let parts: Vec<Vec<u8>> = key
        .split(" . ")
        .map(|p| key_part(family, p))
        .collect::<Option<_>>()?;
    if parts.len() == 1 {
        return parts.into_iter().next();
    }
    let mut out = Vec::new();
    for mut p in parts {
        p.resize(p.len().div_ceil(4) * 4, 0);
        out.extend(p);
    }
    Some(out)
}

fn key_part(family: Family, p: &str) -> Option<Vec<u8>> {
    if let Some(proto) = proto(p) {
        return Some(vec![proto]);
    }
    if let Ok(port) = p.parse::<u16>() {
        return Some(port.to_be_bytes().to_vec());
    }
    address(family, p)
}

fn proto(p: &str) -> Option<u8> {
    match p {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

/// An address of `family`, in network order.
fn address(family: Family, s: &str) -> Option<Vec<u8>> {
    match (family, s.parse::<IpAddr>().ok()?) {
        (Family::V4, IpAddr::V4(a)) => Some(a.octets().to_vec()),
        (Family::V6, IpAddr::V6(a)) => Some(a.octets().to_vec()),
        _ => None,
    }
}

/// A rule's matches and statements, in order; the verdict, if any, last.
fn rule(family: Family, t: &[&str]) -> Option<Vec<Expr>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if matches!(out.last(), Some(Expr::Verdict(_) | Expr::Dnat { .. })) {
            return None;
        }
        i += term(family, &t[i..], &mut out)?;
    }
    (!out.is_empty()).then_some(out)
}

/// One match or statement at the start of `t`: how many tokens it took.
fn term(family: Family, t: &[&str], out: &mut Vec<Expr>) -> Option<usize> {
    let f = family_keyword(family);
    match t {
        [kw, field, rest @ ..] if *kw == f => address_match(family, field, rest, out),
        [p, "dport", port, ..] if proto(p).is_some() => {
            out.push(Expr::MetaL4proto);
            out.push(cmp(false, vec![proto(p)?]));
            out.push(Expr::Payload {
                base: TRANSPORT_HEADER,
                offset: 2,
                len: 2,
            });
            out.push(cmp(false, port.parse::<u16>().ok()?.to_be_bytes().to_vec()));
            Some(3)
        }
        ["meta", "l4proto", p, ..] => {
            out.push(Expr::MetaL4proto);
            out.push(cmp(false, vec![proto(p)?]));
            Some(3)
        }
        ["numgen", "random", "mod", m, "==", v, ..] => {
            out.push(Expr::Numgen {
                modulus: m.parse().ok().filter(|m| *m > 0)?,
            });
            // numgen's value is in host order.
            out.push(cmp(false, v.parse::<u32>().ok()?.to_ne_bytes().to_vec()));
            Some(6)
        }
        ["fib", "saddr", "type", "local", ..] => {
            out.push(Expr::FibSaddrType);
            // RTN_LOCAL, in host order.
            out.push(cmp(false, 2u32.to_ne_bytes().to_vec()));
            Some(4)
        }
        ["update", set, "{", kw, "saddr", "}", ..] if *kw == f => {
            out.push(addr_payload(family, "saddr")?);
            out.push(Expr::DynsetUpdate { set: set_ref(set)? });
            Some(6)
        }
        ["dnat", "to", target, ..] => {
            dnat(family, target, out)?;
            Some(3)
        }
        [v @ ("jump" | "goto"), c, ..] => {
            out.push(Expr::Verdict(verdict(&format!("{v} {c}"))?));
            Some(2)
        }
        [v @ ("drop" | "accept"), ..] => {
            out.push(Expr::Verdict(verdict(v)?));
            Some(1)
        }
        _ => None,
    }
}

fn family_keyword(family: Family) -> &'static str {
    family.nft()
}

fn cmp(neq: bool, data: Vec<u8>) -> Expr {
    Expr::Cmp { neq, data }
}

/// `@name` → `name`.
fn set_ref(s: &str) -> Option<String> {
    s.strip_prefix('@')
        .filter(|n| identifier(n))
        .map(str::to_string)
}

/// Where `saddr` and `daddr` are in the network header.
fn addr_payload(family: Family, field: &str) -> Option<Expr> {
    let (offset, len) = match (family, field) {
        (Family::V4, "saddr") => (12, 4),
        (Family::V4, "daddr") => (16, 4),
        (Family::V6, "saddr") => (8, 16),
        (Family::V6, "daddr") => (24, 16),
        _ => return None,
    };
    Some(Expr::Payload {
        base: NETWORK_HEADER,
        offset,
        len,
    })
}

/// `ip saddr [!=] VALUE`: an address, a prefix or `@set`.
fn address_match(family: Family, field: &str, t: &[&str], out: &mut Vec<Expr>) -> Option<usize> {
    let (neq, value) = match t {
        ["!=", v, ..] => (true, *v),
        [v, ..] => (false, *v),
        [] => return None,
    };
    let Expr::Payload { base, offset, len } = addr_payload(family, field)? else {
        return None;
    };
    if let Some(set) = value.strip_prefix('@') {
        if neq {
            return None;
        }
        out.push(Expr::Payload { base, offset, len });
        out.push(Expr::Lookup {
            set: set_ref(&format!("@{set}"))?,
        });
    } else if let Some((addr, prefix)) = value.split_once('/') {
        let bytes = address(family, addr)?;
        let prefix: u32 = prefix.parse().ok().filter(|p| (1..=len * 8).contains(p))?;
        out.extend(prefix_match(base, offset, len, bytes, prefix, neq));
    } else {
        out.push(Expr::Payload { base, offset, len });
        out.push(cmp(neq, address(family, value)?));
    }
    // The keyword and field, `!=`, the value.
    Some(if neq { 4 } else { 3 })
}

/// nft's prefix match: whole bytes compare only the prefix's bytes; otherwise the
/// address is masked first.
fn prefix_match(
    base: u32,
    offset: u32,
    len: u32,
    addr: Vec<u8>,
    prefix: u32,
    neq: bool,
) -> Vec<Expr> {
    if prefix.is_multiple_of(8) {
        let n = prefix / 8;
        return vec![
            Expr::Payload {
                base,
                offset,
                len: n,
            },
            cmp(neq, addr[..n as usize].to_vec()),
        ];
    }
    let mask: Vec<u8> = (0..len)
        .map(|i| {
            let bits = prefix.saturating_sub(i * 8).min(8);
            (0xffu16 << (8 - bits)) as u8
        })
        .collect();
    let masked = addr.iter().zip(&mask).map(|(a, m)| a & m).collect();
    vec![
        Expr::Payload { base, offset, len },
        Expr::Bitwise { mask },
        cmp(neq, masked),
    ]
}

/// `dnat to ADDR:PORT` (`[ADDR]:PORT` for IPv6).
fn dnat(family: Family, target: &str, out: &mut Vec<Expr>) -> Option<()> {
    let (addr, port) = target.rsplit_once(':')?;
    let addr = match family {
        Family::V4 => addr,
        Family::V6 => addr.strip_prefix('[')?.strip_suffix(']')?,
    };
    let port: u16 = port.parse().ok()?;
    out.push(Expr::Immediate {
        reg: 1,
        data: address(family, addr)?,
    });
    out.push(Expr::Immediate {
        reg: 2,
        data: port.to_be_bytes().to_vec(),
    });
    out.push(Expr::Dnat { family });
    Some(())
}

#[cfg(test)]
mod tests;
