//! Messages to and from bytes, through hickory's codec: what a malformed packet gets
//! (FORMERR, or nothing), and how a reply is cut to fit a UDP payload (additional records
//! shed first, then TC with the answers that fit). Pure.

use crate::answer::reply;
use hickory_proto::op::{Header, Message, MessageType, ResponseCode, emit_message_parts};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

/// Plain DNS over UDP (RFC 1035), the floor for any payload size.
pub const UDP_MIN: u16 = 512;
/// The most a UDP reply is allowed to be, whatever the client advertises.
pub const UDP_MAX: u16 = 4096;

/// A packet read as a query.
#[derive(Debug)]
pub enum Request {
    Query(Message),
    /// Undecodable, but with a header to answer: the FORMERR for it.
    Malformed(Message),
    /// Too short, or itself a response: no answer at all (answering responses is how
    /// reflection loops start).
    Drop,
}

pub fn decode(packet: &[u8]) -> Request {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Request::Drop;
    };
    if header.message_type == MessageType::Response {
        return Request::Drop;
    }
    match Message::from_vec(packet) {
        Ok(m) => Request::Query(m),
        Err(_) => {
            let mut q = Message::new(header.id, MessageType::Query, header.op_code);
            q.metadata.recursion_desired = header.recursion_desired;
            Request::Malformed(reply(&q, ResponseCode::FormErr, false))
        }
    }
}

/// The largest UDP reply `query` may get: its EDNS payload (at least 512, at most
/// [`UDP_MAX`]), or 512 without EDNS.
pub fn udp_limit(query: &Message) -> u16 {
    query
        .edns
        .as_ref()
        .map_or(UDP_MIN, |e| e.max_payload().clamp(UDP_MIN, UDP_MAX))
}

/// Encodes `msg` into `out` in at most `limit` bytes; false if it cannot be encoded at
/// all (the caller then drops it).
pub fn encode(msg: &Message, limit: u16, out: &mut Vec<u8>) -> bool {
    let limit = usize::from(limit.max(UDP_MIN));
    if emit(msg, out) && out.len() <= limit {
        return true;
    }
    // Additional records may go without TC (RFC 2181 §9).
    if !msg.additionals.is_empty() {
        let mut lean = msg.clone();
        lean.additionals.clear();
        if emit(&lean, out) && out.len() <= limit {
            return true;
        }
    }
    truncated(msg, limit, out)
}

fn emit(msg: &Message, out: &mut Vec<u8>) -> bool {
    out.clear();
    msg.emit(&mut BinEncoder::new(out)).is_ok()
}

/// TC set, with the answers that fit beside the header, question and OPT.
fn truncated(msg: &Message, limit: usize, out: &mut Vec<u8>) -> bool {
    let opt = msg.edns.as_ref().map_or(0, |e| {
        let mut scratch = Vec::new();
        let ok = Record::from(e)
            .emit(&mut BinEncoder::new(&mut scratch))
            .is_ok();
        if ok { scratch.len() } else { 0 }
    });
    let room = u16::try_from(limit.saturating_sub(opt)).unwrap_or(u16::MAX);
    let fit = {
        out.clear();
        let mut enc = BinEncoder::new(out);
        enc.set_max_size(room);
        let none: [Record; 0] = [];
        emit_message_parts(
            &msg.metadata,
            &mut msg.queries.iter(),
            &mut msg.answers.iter(),
            &mut none.iter(),
            &mut none.iter(),
            None,
            None,
            &mut enc,
        )
        .map(|h| usize::from(h.counts.answers))
    };
    let Ok(fit) = fit else {
        return false;
    };
    let mut cut = Message::new(msg.id, msg.message_type, msg.op_code);
    cut.metadata = msg.metadata;
    cut.metadata.truncation = true;
    cut.queries = msg.queries.clone();
    cut.answers = msg.answers[..fit.min(msg.answers.len())].to_vec();
    cut.edns = msg.edns.clone();
    emit(&cut, out) && out.len() <= limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::net::Ipv4Addr;

    fn query(edns: Option<u16>) -> Message {
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("big.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            q.set_edns(e);
        }
        q
    }

    fn big_reply(q: &Message, n: u8) -> Message {
        let mut m = reply(q, ResponseCode::NoError, true);
        let owner = q.queries[0].name().clone();
        for i in 0..n {
            let a = RData::A(A(Ipv4Addr::new(10, 42, 0, i)));
            m.add_answer(Record::from_rdata(owner.clone(), 5, a.clone()));
            m.add_additional(Record::from_rdata(owner.clone(), 5, a));
        }
        m
    }

    #[test]
    fn garbage_is_formerr_or_dropped() {
        assert!(matches!(decode(&[1, 2, 3]), Request::Drop));
        // A header that promises a question it lacks.
        let bad = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'f'];
        match decode(&bad) {
            Request::Malformed(m) => {
                assert_eq!(m.id, 0xabcd);
                assert_eq!(m.response_code, ResponseCode::FormErr);
            }
            other => panic!("{other:?}"),
        }
        let mut resp = bad;
        resp[2] |= 0x80;
        assert!(
            matches!(decode(&resp), Request::Drop),
            "responses are never answered"
        );
        let good = query(None).to_vec().unwrap();
        assert!(matches!(decode(&good), Request::Query(_)));
    }

    #[test]
    fn replies_shed_additionals_then_truncate_keeping_the_opt() {
        let q = query(None);
        assert_eq!(udp_limit(&q), 512);
        assert_eq!(udp_limit(&query(Some(100))), 512);
        assert_eq!(udp_limit(&query(Some(9000))), UDP_MAX);
        let mut out = Vec::new();

        // Fits with answers only: no TC, additionals gone.
        let m = big_reply(&q, 20);
        assert!(encode(&m, 512, &mut out));
        let got = Message::from_vec(&out).unwrap();
        assert!(!got.truncation && got.answers.len() == 20 && got.additionals.is_empty());

        // Too many answers: TC with a prefix of them.
        let m = big_reply(&q, 60);
        assert!(encode(&m, 512, &mut out));
        assert!(out.len() <= 512);
        let got = Message::from_vec(&out).unwrap();
        assert!(got.truncation && !got.answers.is_empty() && got.answers.len() < 60);
        assert_eq!(got.answers[..], m.answers[..got.answers.len()]);

        // With EDNS the OPT survives the cut, and a bigger payload takes everything.
        let qe = query(Some(1232));
        let m = big_reply(&qe, 60);
        assert!(encode(&m, 512, &mut out));
        let got = Message::from_vec(&out).unwrap();
        assert!(got.truncation && got.edns.is_some());
        assert!(encode(&m, udp_limit(&qe), &mut out));
        let got = Message::from_vec(&out).unwrap();
        assert!(!got.truncation && got.answers.len() == 60);
    }
}
