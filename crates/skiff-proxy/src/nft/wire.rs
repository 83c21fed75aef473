//! nf_tables netlink messages: a batch (`NFNL_MSG_BATCH_BEGIN`, one message per
//! operation, `NFNL_MSG_BATCH_END`) that the kernel applies as one transaction, and
//! the acknowledgements that come back. Attributes as libnftnl writes them (the
//! kernel's `include/uapi/linux/netfilter/nf_tables.h` numbers them).

use super::script::{Elem, Expr, Obj, Op, Verdict};
use crate::config::Family;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 2;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

/// `NFPROTO_*`
fn nfproto(f: Family) -> u8 {
    match f {
        Family::V4 => 2,
        Family::V6 => 10,
    }
}

/// One netlink message being written: nested attributes are closed in order.
struct Msg<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    nests: Vec<usize>,
}

impl<'a> Msg<'a> {
    /// `nlmsghdr` then `nfgenmsg` (family, version 0, `res_id` big-endian).
    fn new(buf: &'a mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let start = buf.len();
        buf.extend(0u32.to_ne_bytes());
        buf.extend(ty.to_ne_bytes());
        buf.extend(flags.to_ne_bytes());
        buf.extend(seq.to_ne_bytes());
        buf.extend(0u32.to_ne_bytes());
        buf.extend([family, 0]);
        buf.extend(res_id.to_be_bytes());
        Msg {
            buf,
            start,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend((len as u16).to_ne_bytes());
        self.buf.extend(ty.to_ne_bytes());
        self.buf.extend(data);
        self.pad();
        self
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data)
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    fn nest(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend(0u16.to_ne_bytes());
        self.buf.extend((ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            // Kept short enough by `split`.
            debug_assert!(self.buf.len() - at <= usize::from(u16::MAX));
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(self) {
        let len = (self.buf.len() - self.start) as u32;
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// A batch ready to send.
pub struct Batch {
    pub bytes: Vec<u8>,
    /// Each message's sequence number and the operation it is (or is part of).
    pub seqs: Vec<(u32, usize)>,
}

impl Batch {
    /// The sequence number of the last message, the one acknowledged.
    pub fn last(&self) -> u32 {
        self.seqs.last().map_or(0, |(s, _)| *s)
    }

    /// The operation a message is part of.
    pub fn op_of(&self, seq: u32) -> Option<usize> {
        self.seqs.iter().find(|(s, _)| *s == seq).map(|(_, i)| *i)
    }
}

/// Elements per message: an attribute's length is 16 bits, and an element takes at
/// most about 300 bytes (a 16-byte key, a verdict with a 255-byte chain name).
const ELEMENTS_PER_MESSAGE: usize = 200;

/// `ops` as one transaction, messages numbered from `seq + 1`; the last message asks
/// for an acknowledgement (errors come back whatever the flags), so its arrival means
/// the batch was committed or refused.
pub fn batch(ops: &[Op], seq: u32) -> Batch {
    let mut bytes = Vec::new();
    Msg::new(
        &mut bytes,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    )
    .finish();
    let parts: Vec<(usize, Op)> = ops
        .iter()
        .enumerate()
        .flat_map(|(i, op)| split(op).into_iter().map(move |p| (i, p)))
        .collect();
    let mut seqs = Vec::new();
    for (n, (i, op)) in parts.iter().enumerate() {
        let s = seq.wrapping_add(1 + n as u32);
        let ack = if n + 1 == parts.len() { NLM_F_ACK } else { 0 };
        let (ty, flags) = kind(op);
        let family = nfproto(obj(op).family);
        let ty = NFNL_SUBSYS_NFTABLES << 8 | ty;
        let mut m = Msg::new(&mut bytes, ty, NLM_F_REQUEST | flags | ack, s, family, 0);
        body(&mut m, op, s);
        m.finish();
        seqs.push((s, *i));
    }
    let end = seq.wrapping_add(1 + parts.len() as u32);
    Msg::new(
        &mut bytes,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        end,
        0,
        NFNL_SUBSYS_NFTABLES,
    )
    .finish();
    Batch { bytes, seqs }
}

/// An operation as messages: long element lists in several.
fn split(op: &Op) -> Vec<Op> {
    match op {
        Op::AddElements { set, elems } => elems
            .chunks(ELEMENTS_PER_MESSAGE)
            .map(|c| Op::AddElements {
                set: set.clone(),
                elems: c.to_vec(),
            })
            .collect(),
        Op::DeleteElements { set, keys } => keys
            .chunks(ELEMENTS_PER_MESSAGE)
            .map(|c| Op::DeleteElements {
                set: set.clone(),
                keys: c.to_vec(),
            })
            .collect(),
        _ => vec![op.clone()],
    }
}

fn kind(op: &Op) -> (u16, u16) {
    match op {
        Op::AddChain(_) => (NFT_MSG_NEWCHAIN, NLM_F_CREATE),
        Op::FlushChain(_) => (NFT_MSG_DELRULE, 0),
        Op::DeleteChain(_) => (NFT_MSG_DELCHAIN, 0),
        Op::AddSet { .. } => (NFT_MSG_NEWSET, NLM_F_CREATE),
        Op::DeleteSet(_) => (NFT_MSG_DELSET, 0),
        Op::AddRule { .. } => (NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND),
        Op::AddElements { .. } => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
        Op::DeleteElements { .. } => (NFT_MSG_DELSETELEM, 0),
    }
}

fn obj(op: &Op) -> &Obj {
    match op {
        Op::AddChain(o) | Op::FlushChain(o) | Op::DeleteChain(o) | Op::DeleteSet(o) => o,
        Op::AddSet { set, .. } | Op::AddElements { set, .. } | Op::DeleteElements { set, .. } => {
            set
        }
        Op::AddRule { chain, .. } => chain,
    }
}

// NFTA_CHAIN_*, NFTA_RULE_*, NFTA_SET_*, NFTA_SET_ELEM_LIST_*: the table is 1 in all.
const TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
const SET_NAME: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;

/// `seq` doubles as the id of a set added (unique in the batch).
fn body(m: &mut Msg, op: &Op, seq: u32) {
    let o = obj(op);
    m.str(TABLE, &o.table);
    match op {
        Op::AddChain(_) | Op::DeleteChain(_) => {
            m.str(CHAIN_NAME, &o.name);
        }
        Op::FlushChain(_) => {
            m.str(RULE_CHAIN, &o.name);
        }
        Op::DeleteSet(_) => {
            m.str(SET_NAME, &o.name);
        }
        Op::AddSet { timeout_ms, .. } => add_set(m, o, *timeout_ms, seq),
        Op::AddRule { exprs, .. } => {
            m.str(RULE_CHAIN, &o.name).nest(RULE_EXPRESSIONS);
            for e in exprs {
                expr(m, e);
            }
            m.end();
        }
        Op::AddElements { elems, .. } => elements(m, o, elems.iter()),
        Op::DeleteElements { keys, .. } => {
            let elems: Vec<Elem> = keys
                .iter()
                .map(|k| Elem {
                    key: k.clone(),
                    verdict: None,
                })
                .collect();
            elements(m, o, elems.iter());
        }
    }
}

/// An address set with `flags dynamic,timeout` and a default timeout, as nft
/// declares it (key type and its byte order in the user data, for listing).
fn add_set(m: &mut Msg, o: &Obj, timeout_ms: u64, id: u32) {
    const NFT_SET_TIMEOUT: u32 = 0x10;
    const NFT_SET_EVAL: u32 = 0x20;
    // nft's datatype ids and lengths: ipv4_addr 7, ipv6_addr 8.
    let (key_type, key_len) = match o.family {
        Family::V4 => (7, 4),
        Family::V6 => (8, 16),
    };
    // NFTNL_UDATA_SET_KEYBYTEORDER (0), 4 bytes: BYTEORDER_BIG_ENDIAN (2).
    let mut udata = vec![0, 4];
    udata.extend(2u32.to_ne_bytes());
    m.str(SET_NAME, &o.name)
        .u32(3, NFT_SET_TIMEOUT | NFT_SET_EVAL)
        .u32(4, key_type)
        .u32(5, key_len)
        .u32(10, id)
        .attr(11, &timeout_ms.to_be_bytes())
        .attr(13, &udata);
}

fn elements<'e>(m: &mut Msg, o: &Obj, elems: impl Iterator<Item = &'e Elem>) {
    m.str(2, &o.name).nest(ELEM_LIST_ELEMENTS);
    for (i, e) in elems.enumerate() {
        // { NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }, NFTA_SET_ELEM_DATA }, numbered
        // from 1 as libnftnl does (the kernel reads them in order, whatever the type).
        m.nest(i as u16 + 1).nest(1).attr(1, &e.key).end();
        if let Some(v) = &e.verdict {
            m.nest(2);
            verdict(m, v);
            m.end();
        }
        m.end();
    }
    m.end();
}

/// `NFTA_DATA_VERDICT { CODE, CHAIN }`
fn verdict(m: &mut Msg, v: &Verdict) {
    m.nest(2).u32(1, v.code as u32);
    if let Some(c) = &v.chain {
        m.str(2, c);
    }
    m.end();
}

/// `NFTA_DATA_VALUE`
fn value(m: &mut Msg, ty: u16, data: &[u8]) {
    m.nest(ty).attr(1, data).end();
}

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;

/// `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }`, attributes as
/// nft sets them (`nf_tables.h` numbers each expression's).
fn expr(m: &mut Msg, e: &Expr) {
    m.nest(1).str(1, name(e)).nest(2);
    match e {
        Expr::Payload { base, offset, len } => {
            m.u32(1, REG_1).u32(2, *base).u32(3, *offset).u32(4, *len);
        }
        Expr::Bitwise { mask } => {
            m.u32(1, REG_1).u32(2, REG_1).u32(3, mask.len() as u32);
            value(m, 4, mask);
            value(m, 5, &vec![0; mask.len()]);
        }
        Expr::Cmp { neq, data } => {
            m.u32(1, REG_1).u32(2, u32::from(*neq));
            value(m, 3, data);
        }
        // NFT_META_L4PROTO
        Expr::MetaL4proto => {
            m.u32(2, 16).u32(1, REG_1);
        }
        // NFT_NG_RANDOM, offset 0
        Expr::Numgen { modulus } => {
            m.u32(1, REG_1).u32(2, *modulus).u32(3, 1).u32(4, 0);
        }
        // NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_F_SADDR
        Expr::FibSaddrType => {
            m.u32(3, 1).u32(2, 3).u32(1, REG_1);
        }
        Expr::Lookup { set } => {
            m.u32(2, REG_1).str(1, set);
        }
        // NFT_DYNSET_OP_UPDATE
        Expr::DynsetUpdate { set } => {
            m.u32(4, REG_1).u32(3, 1).str(1, set);
        }
        Expr::Immediate { reg, data } => {
            m.u32(1, *reg);
            value(m, 2, data);
        }
        Expr::Verdict(v) => {
            m.u32(1, REG_VERDICT).nest(2);
            verdict(m, v);
            m.end();
        }
        // NFT_NAT_DNAT; address in reg 1, port in reg 2; NF_NAT_RANGE_PROTO_SPECIFIED
        Expr::Dnat { family } => {
            m.u32(1, 1)
                .u32(2, u32::from(nfproto(*family)))
                .u32(3, REG_1)
                .u32(5, 2)
                .u32(7, 2);
        }
    }
    m.end().end();
}

fn name(e: &Expr) -> &'static str {
    match e {
        Expr::Payload { .. } => "payload",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Cmp { .. } => "cmp",
        Expr::MetaL4proto => "meta",
        Expr::Numgen { .. } => "numgen",
        Expr::FibSaddrType => "fib",
        Expr::Lookup { .. } => "lookup",
        Expr::DynsetUpdate { .. } => "dynset",
        Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
        Expr::Dnat { .. } => "nat",
    }
}

/// The acknowledgements in a buffer of replies: `(sequence, errno)` (0 for success).
pub fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let word = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let len = word(at) as usize;
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let seq = word(at + 8);
        if ty == NLMSG_ERROR && at + 20 <= buf.len() {
            out.push((seq, -(word(at + 16) as i32)));
        }
        if len < 16 {
            break;
        }
        at += len.div_ceil(4) * 4;
    }
    out
}

#[cfg(test)]
mod tests;
