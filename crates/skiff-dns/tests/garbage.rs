//! No input crashes the query path: random bytes and valid queries with bytes flipped go
//! through decode → answer → encode, as the server runs them.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use skiff_catalog::Shared;
use skiff_dns::wire::{self, Request};
use skiff_dns::{Config, Index, Outcome, answer};
use skiff_kube::reflect::Change;

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn index() -> Index {
    let shared = Shared::default();
    shared.apply_services(Change::reset(vec![
        json!({"metadata": {"name": "web", "namespace": "d"},
               "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "http", "port": 80}]}}),
        json!({"metadata": {"name": "db", "namespace": "d"},
               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        json!({"metadata": {"name": "ext", "namespace": "d"},
               "spec": {"type": "ExternalName", "externalName": "web.d.svc.cluster.local"}}),
    ]));
    shared.apply_slices(Change::reset(vec![json!({
        "metadata": {"name": "db-a", "namespace": "d", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432}],
        "endpoints": [{"addresses": ["10.42.0.5"], "hostname": "db-0"}]})]));
    let mut index = Index::from_config(&Config::default()).unwrap();
    index.rebuild(&shared.read(), 1);
    index
}

fn run(index: &Index, packet: &[u8], out: &mut Vec<u8>) {
    match wire::decode(packet) {
        Request::Drop => {}
        Request::Malformed(m) => assert!(wire::encode(&m, 512, out)),
        Request::Query(q) => match answer(index, &q) {
            Outcome::Reply(m) | Outcome::Chase { reply: m, .. } => {
                wire::encode(&m, wire::udp_limit(&q), out);
            }
            Outcome::Forward => {}
        },
    }
}

#[test]
fn random_and_mangled_packets_never_panic() {
    let index = index();
    let mut rng = Rng(0x5eed);
    let mut out = Vec::new();
    let names = [
        "web.d.svc.cluster.local.",
        "_pg._tcp.db.d.svc.cluster.local.",
        "db-0.db.d.svc.cluster.local.",
        "ext.d.svc.cluster.local.",
        "1-2-3-4.d.pod.cluster.local.",
        "1.0.43.10.in-addr.arpa.",
        "cluster.local.",
        "example.com.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::PTR,
        RecordType::ANY,
        RecordType::NS,
    ];
    for i in 0..20_000u32 {
        let mut q = Message::new(i as u16, MessageType::Query, OpCode::Query);
        let name = Name::from_ascii(names[i as usize % names.len()]).unwrap();
        q.add_query(Query::query(name, types[i as usize % types.len()]));
        if i % 2 == 0 {
            q.set_edns(Edns::new());
        }
        let mut packet = q.to_vec().unwrap();
        run(&index, &packet, &mut out);
        for _ in 0..(1 + rng.next() % 4) {
            let at = (rng.next() as usize) % packet.len();
            packet[at] = rng.next() as u8;
        }
        run(&index, &packet, &mut out);
        packet.truncate((rng.next() as usize) % (packet.len() + 1));
        run(&index, &packet, &mut out);
        let junk: Vec<u8> = (0..rng.next() % 600).map(|_| rng.next() as u8).collect();
        run(&index, &junk, &mut out);
    }
}
