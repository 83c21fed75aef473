//! The netlink executor against `nft` itself, as root: the same transactions applied
//! in two network namespaces of their own, one by netlink batches (`NftCommand`), the
//! other by `nft -f` (`NftCli`), must leave the same ruleset, down to the bytecode
//! (`nft --debug=netlink list ruleset` prints each rule's expressions). The
//! transactions are the proxy's own, for Services of every kind, both families,
//! prefixes on and off byte boundaries, affinity sets, conflicts and deletions.
//! The namespaces are deleted by a guard, even on panic.

mod common;

use common::*;
use skiff_catalog::{AddressType, Protocol, ServiceType, Shared, Slice};
use skiff_proxy::rules::{Source, diff::Table};
use skiff_proxy::{Cidr, Config, Family, Nft, NftCli, NftCommand};
use std::process::Command;

struct Netns(String);

impl Netns {
    fn new(short: &str) -> Netns {
        let name = format!("skpx-{}-nl-{short}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name} (needs root)");
        Netns(name)
    }

    fn list(&self, debug: bool) -> String {
        let mut args = vec!["netns", "exec", &self.0, "nft"];
        if debug {
            args.push("--debug=netlink");
        }
        args.extend(["list", "ruleset"]);
        let out = Command::new("ip").args(&args).output().unwrap();
        assert!(out.status.success(), "{:?}", out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The kernel dumps a hash set's elements in an order of its own (its hash is
        // seeded at random): sorted, after everything else.
        let (mut elements, mut rest): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| l.starts_with("\telement "));
        elements.sort();
        rest.extend(elements);
        rest.join("\n")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn config() -> Config {
    let mut cfg = Config::new("node-a");
    cfg.healthz_address = None;
    // Off a byte boundary in IPv4 (a mask), on one in IPv6.
    cfg.cluster_cidrs = vec![
        "10.42.0.0/17".parse::<Cidr>().unwrap(),
        "fd00:42::/64".parse().unwrap(),
    ];
    cfg.service_cidrs.push("fd00:43::/112".parse().unwrap());
    cfg
}

fn v6_slice(svc: &skiff_catalog::Service, eps: &[(&str, &str)]) -> Slice {
    let mut s = slice(svc, 8080, eps);
    s.name = format!("{}-v6", svc.key.name).into();
    s.address_type = AddressType::IPv6;
    s
}

/// Services of every kind the rules know.
fn catalog() -> (Vec<skiff_catalog::Service>, Vec<Slice>) {
    let web = service("web", "10.43.0.10", 80, Protocol::Tcp);
    let dns = service("dns", "10.43.0.53", 53, Protocol::Udp);
    let sctp = service("sctp", "10.43.0.54", 9, Protocol::Sctp);
    let empty = service("empty", "10.43.0.20", 80, Protocol::Tcp);
    let mut np = service("np", "10.43.0.30", 80, Protocol::Tcp);
    np.type_ = ServiceType::NodePort;
    np.ports[0].node_port = Some(30080);
    np.external_local = true;
    let mut lb = service("lb", "10.43.0.40", 443, Protocol::Tcp);
    lb.type_ = ServiceType::LoadBalancer;
    lb.ports[0].node_port = Some(30443);
    lb.load_balancer_ips = vec!["192.168.5.10".parse().unwrap()];
    lb.external_ips = vec!["192.168.5.11".parse().unwrap()];
    let mut sticky = service("sticky", "10.43.0.50", 80, Protocol::Tcp);
    sticky.affinity_timeout = Some(600);
    let mut local = service("local", "10.43.0.60", 80, Protocol::Tcp);
    local.internal_local = true;
    let v6 = service("v6", "fd00:43::10", 80, Protocol::Tcp);
    let two = [("10.42.0.2", "node-a"), ("10.42.0.3", "node-b")];
    let slices = vec![
        slice(&web, 8080, &two),
        slice(&dns, 5353, &two),
        slice(&sctp, 9, &two[..1]),
        slice(&np, 8080, &two),
        slice(&lb, 8443, &two[1..]),
        slice(&sticky, 8080, &two),
        slice(&local, 8080, &two),
        v6_slice(&v6, &[("fd00:42::2", "node-a"), ("fd00:42::3", "node-b")]),
    ];
    let services = vec![web, dns, sctp, empty, np, lb, sticky, local, v6];
    (services, slices)
}

/// Both families' tables as the proxy keeps them, fed from `shared`.
struct Tables {
    tables: Vec<Table>,
}

impl Tables {
    /// The full load of an empty catalog: base and shard tables, nothing else.
    fn empty(cfg: Config) -> (Tables, String) {
        let mut script = String::new();
        let mut tables = Vec::new();
        for family in Family::ALL {
            let (t, plan) = Table::full(family, &cfg, Vec::new());
            script += &plan.script;
            tables.push(t);
        }
        (Tables { tables }, script)
    }

    /// The transaction for `keys` as `shared` now has them.
    fn update(&mut self, shared: &Shared, keys: &[skiff_catalog::ServiceKey]) -> String {
        let c = shared.read();
        let mut script = String::new();
        for t in &mut self.tables {
            let changes = keys
                .iter()
                .map(|k| (k.clone(), Source::of(&c, k)))
                .collect();
            script += &t.update(changes).script;
        }
        script
    }
}

async fn apply_both(nl: &Netns, cli: &Netns, script: &str, what: &str) {
    assert!(
        NftCommand::batches(script),
        "{what}: not a batch:\n{script}"
    );
    NftCommand::in_netns(&nl.0)
        .run(script)
        .await
        .unwrap_or_else(|e| panic!("{what}: netlink: {e}\n{script}"));
    NftCli::in_netns(&cli.0)
        .run(script)
        .await
        .unwrap_or_else(|e| panic!("{what}: nft: {e}\n{script}"));
    for debug in [false, true] {
        let (a, b) = (nl.list(debug), cli.list(debug));
        if a != b {
            let diff: Vec<String> = a
                .lines()
                .zip(b.lines())
                .filter(|(x, y)| x != y)
                .take(10)
                .map(|(x, y)| format!("netlink: {x}\n    nft: {y}"))
                .collect();
            panic!("{what}: rulesets differ:\n{}", diff.join("\n"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlink_batches_leave_what_nft_makes_of_the_same_text() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let (nl, cli) = (Netns::new("a"), Netns::new("b"));
    let (mut tables, full) = Tables::empty(config());
    assert!(!NftCommand::batches(&full), "full loads go to nft");
    for ns in [&nl, &cli] {
        NftCli::in_netns(&ns.0).run(&full).await.unwrap();
    }
    let (services, slices) = catalog();
    let shared = synced(services.clone(), slices);
    let keys: Vec<_> = services.iter().map(|s| s.key.clone()).collect();
    let script = tables.update(&shared, &keys);
    apply_both(&nl, &cli, &script, "every Service added").await;

    // Endpoints change (chains written, added, deleted), one to none (elements move
    // between maps), an affinity timeout changes (its sets deleted and re-added).
    let (web, sticky, np, lb) = (&services[0], &services[6], &services[4], &services[5]);
    put_slice(&shared, slice(web, 8080, &[("10.42.0.9", "node-b")]));
    put_slice(&shared, slice(np, 8080, &[]));
    let mut sticky2 = sticky.clone();
    sticky2.affinity_timeout = Some(60);
    put_service(&shared, sticky2);
    let keys = [web.key.clone(), np.key.clone(), sticky.key.clone()];
    let script = tables.update(&shared, &keys);
    apply_both(&nl, &cli, &script, "endpoints and affinity changed").await;

    // A second Service claims the load balancer's address: the element may change
    // shard; then the first goes, and the other takes it.
    let mut lb2 = service("a-lb", "10.43.0.41", 443, Protocol::Tcp);
    lb2.external_ips = vec!["192.168.5.10".parse().unwrap()];
    put_service(&shared, lb2.clone());
    put_slice(&shared, slice(&lb2, 8443, &[("10.42.0.2", "node-a")]));
    let script = tables.update(&shared, &[lb2.key.clone()]);
    apply_both(&nl, &cli, &script, "a conflicting address").await;
    delete_service(&shared, &lb2.key);
    let script = tables.update(&shared, &[lb2.key.clone(), lb.key.clone()]);
    apply_both(&nl, &cli, &script, "the winner deleted").await;

    // Everything deleted: only the fixed part stays.
    for s in &services {
        delete_service(&shared, &s.key);
    }
    let keys: Vec<_> = services.iter().map(|s| s.key.clone()).collect();
    let script = tables.update(&shared, &keys);
    apply_both(&nl, &cli, &script, "every Service deleted").await;
    assert!(!nl.list(false).contains("default/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_changes_nothing_and_says_where() {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let ns = Netns::new("c");
    let (_, full) = Tables::empty(config());
    NftCli::in_netns(&ns.0).run(&full).await.unwrap();
    let before = ns.list(false);
    let script = "add chain ip skiff-proxy-0 fine\n\
                  add rule ip skiff-proxy-0 fine goto nowhere\n";
    let err = NftCommand::in_netns(&ns.0).run(script).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("goto nowhere"), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    assert_eq!(
        ns.list(false),
        before,
        "atomic: the chain is not there either"
    );
}
