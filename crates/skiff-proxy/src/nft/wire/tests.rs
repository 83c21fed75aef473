//! The messages against what nft 1.0.6 itself sends for the same lines (`golden.tsv`),
//! attribute by attribute; and the batch's framing, splitting and acknowledgements.

use super::*;
use crate::nft::script;

/// A decoded attribute: its type and either its bytes or its children.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Value(u16, Vec<u8>),
    Nest(u16, Vec<Node>),
}

fn tree(mut b: &[u8]) -> Vec<Node> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]);
        let data = &b[4..len];
        out.push(if ty & NLA_F_NESTED != 0 {
            Node::Nest(ty & !NLA_F_NESTED, tree(data))
        } else {
            Node::Value(ty, data.to_vec())
        });
        b = &b[(len.div_ceil(4) * 4).min(b.len())..];
    }
    out
}

/// Drops what nft sends and the proxy need not: set ids (the kernel finds sets by
/// name first) in `lookup` and `dynset` and in element lists, and a new set's id
/// (each numbers its own).
fn strip(nodes: &mut Vec<Node>, msg_type: u16) {
    match msg_type {
        NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM => {
            nodes.retain(|n| !matches!(n, Node::Value(4, _)));
        }
        NFT_MSG_NEWSET => nodes.retain(|n| !matches!(n, Node::Value(10, _))),
        _ => {}
    }
    for n in nodes.iter_mut() {
        if let Node::Nest(_, children) = n {
            strip_expr(children);
            for c in children.iter_mut() {
                if let Node::Nest(_, cc) = c {
                    strip_expr(cc);
                }
            }
        }
    }
}

/// In an expression (`NAME`, `DATA`): `lookup`'s `SET_ID` (4), `dynset`'s (2).
fn strip_expr(expr: &mut [Node]) {
    let id = match expr.first() {
        Some(Node::Value(1, name)) if name.starts_with(b"lookup\0") => 4,
        Some(Node::Value(1, name)) if name.starts_with(b"dynset\0") => 2,
        _ => return,
    };
    if let Some(Node::Nest(2, data)) = expr.get_mut(1) {
        data.retain(|n| !matches!(n, Node::Value(t, _) if *t == id));
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Each message of a batch: type, flags, payload.
fn messages(b: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([b[at + 4], b[at + 5]]);
        let flags = u16::from_ne_bytes([b[at + 6], b[at + 7]]);
        out.push((ty, flags, b[at + 16..at + len].to_vec()));
        at += len.div_ceil(4) * 4;
    }
    out
}

#[test]
fn messages_are_what_nft_sends_for_the_same_lines() {
    let golden = include_str!("golden.tsv");
    let mut checked = 0;
    for row in golden.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = row.split('\t').collect();
        let (line, ty, flags, payload) = (f[0], f[1], f[2], hex(f[3]));
        let ops: Vec<_> = script::parse(line)
            .unwrap_or_else(|| panic!("parses: {line}"))
            .into_iter()
            .map(|(_, op)| op)
            .collect();
        let b = batch(&ops, 100);
        let msgs = messages(&b.bytes);
        assert_eq!(msgs.len(), 3, "begin, one message, end: {line}");
        let (our_ty, our_flags, ours) = &msgs[1];
        assert_eq!(format!("{our_ty:#06x}"), ty, "{line}");
        // nft asks for no acknowledgement; a batch of ours does for its last message.
        let want_flags = u16::from_str_radix(&flags[2..], 16).unwrap() | NLM_F_ACK;
        assert_eq!(*our_flags, want_flags, "{line}");
        assert_eq!(ours[..4], payload[..4], "nfgenmsg: {line}");
        let msg_type = our_ty & 0xff;
        let (mut want, mut got) = (tree(&payload[4..]), tree(&ours[4..]));
        strip(&mut want, msg_type);
        strip(&mut got, msg_type);
        assert_eq!(got, want, "{line}");
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn a_batch_is_framed_and_numbered() {
    let ops: Vec<_> = script::parse("add chain ip t a\nflush chain ip t a\n")
        .unwrap()
        .into_iter()
        .map(|(_, op)| op)
        .collect();
    let b = batch(&ops, 7);
    let msgs = messages(&b.bytes);
    let types: Vec<u16> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(types, [0x10, 0x0a03, 0x0a08, 0x11]);
    // Begin and end name the subsystem (res_id, big-endian); only the last asks for
    // an acknowledgement.
    assert_eq!(msgs[0].2, [0, 0, 0, 10]);
    assert_eq!(msgs[1].1 & NLM_F_ACK, 0);
    assert_eq!(msgs[2].1 & NLM_F_ACK, NLM_F_ACK);
    assert_eq!(b.seqs, [(8, 0), (9, 1)]);
    assert_eq!(b.last(), 9);
    assert_eq!(b.op_of(9), Some(1));
    assert_eq!(b.bytes.len() % 4, 0);
}

#[test]
fn long_element_lists_take_several_messages() {
    let keys: Vec<String> = (0..450)
        .map(|i| format!("10.43.{}.{} . tcp . 80 : goto service-x", i / 250, i % 250))
        .collect();
    let line = format!("add element ip t m {{ {} }}", keys.join(", "));
    let ops: Vec<_> = script::parse(&line)
        .unwrap()
        .into_iter()
        .map(|(_, op)| op)
        .collect();
    let b = batch(&ops, 0);
    assert_eq!(b.seqs, [(1, 0), (2, 0), (3, 0)]);
    let msgs = messages(&b.bytes);
    let counts: Vec<usize> = msgs[1..4]
        .iter()
        .map(|(_, _, p)| match &tree(&p[4..])[2] {
            Node::Nest(3, elems) => elems.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(counts, [200, 200, 50]);
}

#[test]
fn acknowledgements_and_errors_are_read() {
    let mut buf = Vec::new();
    for (seq, err) in [(5u32, 0i32), (6, -2)] {
        buf.extend(36u32.to_ne_bytes());
        buf.extend(NLMSG_ERROR.to_ne_bytes());
        buf.extend(0u16.to_ne_bytes());
        buf.extend(seq.to_ne_bytes());
        buf.extend(0u32.to_ne_bytes());
        buf.extend(err.to_ne_bytes());
        buf.extend([0u8; 16]);
    }
    assert_eq!(acks(&buf), [(5, 0), (6, 2)]);
    assert_eq!(acks(&buf[..19]), [], "cut short");
}
