//! What each line of an incremental transaction reads as, and what is left to nft.

use super::*;

fn one(line: &str) -> Op {
    let ops = parse(line).unwrap_or_else(|| panic!("parses: {line}"));
    assert_eq!(ops.len(), 1);
    ops.into_iter().next().unwrap().1
}

fn exprs(rule: &str) -> Vec<Expr> {
    match one(&format!("add rule ip t c {rule}")) {
        Op::AddRule { exprs, .. } => exprs,
        other => panic!("{other:?}"),
    }
}

fn obj(name: &str) -> Obj {
    Obj {
        family: Family::V4,
        table: "skiff-proxy-3".into(),
        name: name.into(),
    }
}

fn payload(base: u32, offset: u32, len: u32) -> Expr {
    Expr::Payload { base, offset, len }
}

fn eq(data: &[u8]) -> Expr {
    Expr::Cmp {
        neq: false,
        data: data.to_vec(),
    }
}

fn goto(chain: &str) -> Expr {
    Expr::Verdict(Verdict {
        code: NFT_GOTO,
        chain: Some(chain.into()),
    })
}

#[test]
fn chains_and_sets_by_name() {
    let name = "endpoint-TL4O7HSG-default/s0/tcp/p__10.42.0.2/8080";
    assert_eq!(
        one(&format!("add chain ip skiff-proxy-3 {name}")),
        Op::AddChain(obj(name))
    );
    assert_eq!(
        one(&format!("flush chain ip skiff-proxy-3 {name}")),
        Op::FlushChain(obj(name))
    );
    assert_eq!(
        one(&format!("delete chain ip skiff-proxy-3 {name}")),
        Op::DeleteChain(obj(name))
    );
    assert_eq!(
        one(
            "add set ip skiff-proxy-3 aff { type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }"
        ),
        Op::AddSet {
            set: obj("aff"),
            timeout_ms: 600_000
        }
    );
    assert_eq!(
        one("delete set ip skiff-proxy-3 aff"),
        Op::DeleteSet(obj("aff"))
    );
}

#[test]
fn the_masquerade_check_of_a_service_chain() {
    // /16: the prefix's two bytes compared; /17: the address masked first.
    let tcp = [6];
    let want = |saddr: Vec<Expr>| {
        let mut v = vec![
            payload(NETWORK_HEADER, 16, 4),
            eq(&[10, 43, 0, 10]),
            Expr::MetaL4proto,
            eq(&tcp),
            payload(TRANSPORT_HEADER, 2, 2),
            eq(&80u16.to_be_bytes()),
        ];
        v.extend(saddr);
        v.push(Expr::Verdict(Verdict {
            code: NFT_JUMP,
            chain: Some("mark-for-masquerade".into()),
        }));
        v
    };
    let neq = |data: &[u8]| Expr::Cmp {
        neq: true,
        data: data.to_vec(),
    };
    assert_eq!(
        exprs("ip daddr 10.43.0.10 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"),
        want(vec![payload(NETWORK_HEADER, 12, 2), neq(&[10, 42])])
    );
    assert_eq!(
        exprs("ip daddr 10.43.0.10 tcp dport 80 ip saddr != 10.42.0.0/17 jump mark-for-masquerade"),
        want(vec![
            payload(NETWORK_HEADER, 12, 4),
            Expr::Bitwise {
                mask: vec![255, 255, 128, 0]
            },
            neq(&[10, 42, 0, 0]),
        ])
    );
}

#[test]
fn the_random_choice_affinity_and_fib() {
    assert_eq!(
        exprs("numgen random mod 3 == 0 goto e"),
        [Expr::Numgen { modulus: 3 }, eq(&[0; 4]), goto("e")]
    );
    assert_eq!(exprs("goto e"), [goto("e")]);
    assert_eq!(
        exprs("ip saddr @aff goto e"),
        [
            payload(NETWORK_HEADER, 12, 4),
            Expr::Lookup { set: "aff".into() },
            goto("e")
        ]
    );
    assert_eq!(
        exprs("update @aff { ip saddr }"),
        [
            payload(NETWORK_HEADER, 12, 4),
            Expr::DynsetUpdate { set: "aff".into() }
        ]
    );
    assert_eq!(
        exprs("fib saddr type local goto e"),
        [Expr::FibSaddrType, eq(&2u32.to_ne_bytes()), goto("e")]
    );
}

#[test]
fn dnat_in_both_families() {
    assert_eq!(
        exprs("meta l4proto udp dnat to 10.42.0.5:53"),
        [
            Expr::MetaL4proto,
            eq(&[17]),
            Expr::Immediate {
                reg: 1,
                data: vec![10, 42, 0, 5]
            },
            Expr::Immediate {
                reg: 2,
                data: vec![0, 53]
            },
            Expr::Dnat { family: Family::V4 },
        ]
    );
    let Op::AddRule { exprs, .. } =
        one("add rule ip6 t c meta l4proto sctp dnat to [fd00:42::5]:8080")
    else {
        panic!()
    };
    let addr: std::net::Ipv6Addr = "fd00:42::5".parse().unwrap();
    assert_eq!(
        exprs[2],
        Expr::Immediate {
            reg: 1,
            data: addr.octets().to_vec()
        }
    );
    assert_eq!(exprs[1], eq(&[132]));
    assert_eq!(exprs[4], Expr::Dnat { family: Family::V6 });
}

#[test]
fn elements_are_keyed_as_the_kernel_stores_them() {
    let Op::AddElements { elems, .. } = one(
        "add element ip t service-ips { 10.43.0.10 . tcp . 80 : goto service-a, 10.43.0.11 . udp . 53 : drop }",
    ) else {
        panic!()
    };
    // Each part of a concatenation padded to 32 bits.
    assert_eq!(elems[0].key, [10, 43, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]);
    assert_eq!(
        elems[0].verdict,
        Some(Verdict {
            code: NFT_GOTO,
            chain: Some("service-a".into())
        })
    );
    assert_eq!(elems[1].verdict.as_ref().unwrap().code, NF_DROP);
    let Op::AddElements { elems, .. } = one("add element ip t cluster-ips { 10.43.0.10 }") else {
        panic!()
    };
    assert_eq!(elems[0].key, [10, 43, 0, 10]);
    assert_eq!(elems[0].verdict, None);
    let Op::DeleteElements { keys, .. } =
        one("delete element ip t service-nodeports { tcp . 30080, udp . 30053 }")
    else {
        panic!()
    };
    assert_eq!(keys[0], [6, 0, 0, 0, 0x75, 0x80, 0, 0]);
    let Op::DeleteElements { keys, .. } =
        one("delete element ip6 t service-ips { fd00:43::10 . tcp . 80 }")
    else {
        panic!()
    };
    assert_eq!(keys[0].len(), 24);
}

#[test]
fn anything_else_goes_to_nft() {
    for script in [
        // Full loads: tables, hooks, maps, base rules.
        "add table ip skiff-proxy",
        "delete table ip skiff-proxy",
        "add chain ip t nat-output { type nat hook output priority -100 ; policy accept ; }",
        "add map ip t m { type ipv4_addr : verdict ; }",
        "add rule ip t services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add rule ip t masquerading masquerade fully-random",
        "add rule ip t c ct state new jump d",
        // Shapes near ours that it does not know.
        "add rule ip t c ip saddr != @aff goto d",
        "add rule ip t c ip saddr 10.0.0.0/0 goto d",
        "add rule ip t c ip6 saddr fd00::1 goto d",
        "add rule ip t c goto d drop",
        "add rule ip t c dnat to 10.0.0.1:80 goto d",
        "add rule ip t c",
        "add set ip t s { type ipv4_addr ; }",
        "add set ip6 t s { type ipv4_addr ; flags dynamic,timeout ; timeout 1s ; }",
        "add element ip t m { 10.0.0.1 : continue }",
        "delete element ip t m { 10.0.0.1 : drop }",
        "add element ip6 t m { 10.0.0.1 }",
        "add chain ip t \"quoted\"",
        "add chain inet t c",
        // One line outside the subset sends the whole script.
        "add chain ip t c\nadd table ip t",
    ] {
        assert_eq!(parse(script), None, "{script}");
    }
    assert_eq!(parse(""), Some(vec![]));
}

#[test]
fn every_line_keeps_its_number() {
    let ops = parse("add chain ip t a\n\nflush chain ip t a\n").unwrap();
    let lines: Vec<usize> = ops.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [0, 2]);
}
