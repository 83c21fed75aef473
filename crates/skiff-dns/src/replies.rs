//! Encoded replies to cluster names, reused for the same query while the index is as it
//! was when they were built.
//!
//! Pods ask the same few names over and over (each search-path expansion included), and
//! building a reply (decode, answer, encode) costs several times what copying one does.
//! So a reply the index answered is kept under the query's bytes, its ID aside, tagged
//! with the index generation it was built from; a later query with the same bytes gets a
//! copy with its own ID while that generation is current. Every reply of the cluster
//! zone is a function of the query's bytes and the index alone (no client address, no
//! clock: TTLs are fixed), so a copy is exactly what would be built again. Replies from
//! upstreams are not kept here: the forwarder's cache keeps them with their TTLs.

use crate::metrics::Proto;
use parking_lot::RwLock;
use std::collections::HashMap;

/// The DNS header; shorter packets are never kept.
const HEADER: usize = 12;

/// What the metrics need of a kept reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub qtype: u16,
    pub rcode: u16,
}

struct Kept {
    generation: u64,
    meta: Meta,
    reply: Box<[u8]>,
}

/// At most `cap` replies per protocol (UDP replies are truncated to the query's limit,
/// TCP ones are not, so the two never share an entry).
pub struct Replies {
    cap: usize,
    by_proto: [RwLock<HashMap<Box<[u8]>, Kept>>; 2],
}

fn slot(proto: Proto) -> usize {
    match proto {
        Proto::Udp => 0,
        Proto::Tcp => 1,
    }
}

impl Replies {
    pub fn new(cap: usize) -> Replies {
        Replies {
            cap,
            by_proto: Default::default(),
        }
    }

    /// The reply kept for `query` at `generation`, with the query's ID, into `out`.
    pub fn get(
        &self,
        proto: Proto,
        query: &[u8],
        generation: u64,
        out: &mut Vec<u8>,
    ) -> Option<Meta> {
        if query.len() < HEADER {
            return None;
        }
        let map = self.by_proto[slot(proto)].read();
        let kept = map
            .get(&query[2..])
            .filter(|k| k.generation == generation)?;
        out.clear();
        out.extend_from_slice(&kept.reply);
        out[..2].copy_from_slice(&query[..2]);
        Some(kept.meta)
    }

    /// Keeps `reply` to `query`, built from the index at `generation`. When full, the
    /// replies of older generations go first, then all of them.
    pub fn put(&self, proto: Proto, query: &[u8], generation: u64, meta: Meta, reply: &[u8]) {
        if query.len() < HEADER || reply.len() < HEADER || self.cap == 0 {
            return;
        }
        let mut map = self.by_proto[slot(proto)].write();
        if map.len() >= self.cap && !map.contains_key(&query[2..]) {
            map.retain(|_, k| k.generation == generation);
            if map.len() >= self.cap {
                map.clear();
            }
        }
        map.insert(
            query[2..].into(),
            Kept {
                generation,
                meta,
                reply: reply.into(),
            },
        );
    }

    /// Replies kept, both protocols.
    pub fn len(&self) -> usize {
        self.by_proto.iter().map(|m| m.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: Meta = Meta { qtype: 1, rcode: 0 };

    /// A query-shaped packet: ID, then `body` padded to a header's length.
    fn packet(id: u16, body: &[u8]) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(body);
        p.resize(p.len().max(HEADER + 4), 0);
        p
    }

    #[test]
    fn the_same_query_gets_the_kept_reply_with_its_own_id() {
        let r = Replies::new(8);
        let reply = packet(0x1111, b"answer-bytes");
        r.put(Proto::Udp, &packet(0x1111, b"web.default"), 3, META, &reply);
        let mut out = Vec::new();
        assert_eq!(
            r.get(Proto::Udp, &packet(0xbeef, b"web.default"), 3, &mut out),
            Some(META)
        );
        assert_eq!(out[..2], [0xbe, 0xef]);
        assert_eq!(out[2..], reply[2..]);
    }

    #[test]
    fn other_bytes_another_protocol_or_a_newer_index_miss() {
        let r = Replies::new(8);
        r.put(
            Proto::Udp,
            &packet(1, b"web.default"),
            3,
            META,
            &packet(1, b"a"),
        );
        let mut out = Vec::new();
        // Case differs: the reply echoes the question as asked, so it is another query.
        assert_eq!(
            r.get(Proto::Udp, &packet(1, b"WEB.default"), 3, &mut out),
            None
        );
        assert_eq!(
            r.get(Proto::Tcp, &packet(1, b"web.default"), 3, &mut out),
            None
        );
        assert_eq!(
            r.get(Proto::Udp, &packet(1, b"web.default"), 4, &mut out),
            None
        );
        assert_eq!(r.get(Proto::Udp, &[0, 1, 2], 3, &mut out), None);
    }

    #[test]
    fn when_full_older_generations_go_first_then_everything() {
        let r = Replies::new(2);
        let reply = packet(1, b"a");
        r.put(Proto::Udp, &packet(1, b"old"), 1, META, &reply);
        r.put(Proto::Udp, &packet(1, b"new"), 2, META, &reply);
        r.put(Proto::Udp, &packet(1, b"newer"), 2, META, &reply);
        let mut out = Vec::new();
        assert!(r.get(Proto::Udp, &packet(1, b"new"), 2, &mut out).is_some());
        assert!(
            r.get(Proto::Udp, &packet(1, b"newer"), 2, &mut out)
                .is_some()
        );
        assert_eq!(r.len(), 2);
        r.put(Proto::Udp, &packet(1, b"third"), 2, META, &reply);
        assert_eq!(r.len(), 1);
        assert!(
            r.get(Proto::Udp, &packet(1, b"third"), 2, &mut out)
                .is_some()
        );
    }
}
