//! The node's service proxy, kube-proxy's job, on nftables: from the catalog's Services
//! and EndpointSlices, the rules that send Service traffic (cluster IPs, node ports,
//! external and load-balancer IPs) to endpoints, in tables of its own (`ip
//! skiff-proxy` and its shards `ip skiff-proxy-N`, and the same in `ip6` when there is
//! IPv6), never touching the host's other rules. Modelled on kube-proxy's nftables
//! mode.
//!
//! - [`rules`] is the pure core: what each Service should have, and the incremental
//!   transaction from what was applied (see its docs for the layout).
//! - [`nft`] and [`conntrack`] run transactions and UDP conntrack cleanups behind
//!   traits (recording fakes for tests); [`health`] serves kube-proxy's health
//!   endpoints; [`run`] ties them to the catalog.
//!
//! # nft text, netlink batches, shard tables
//!
//! Transactions are written as `nft` scripts, as kube-proxy's knftables does it: the
//! text is what an operator reads with `nft list ruleset` and what the unit tests
//! compare against. Full loads and cleanups (hooks, maps, `delete table`) run through
//! `nft -f -`, so nft resolves, checks and encodes them. An incremental sync's text
//! stays in a small subset (chains added, flushed, deleted; rules of the shapes
//! [`rules`] writes; elements; affinity sets), which [`NftCommand`] sends to the
//! kernel itself as one netlink batch, each expression the one nft makes of the same
//! text (checked byte for byte against nft's own messages, and against `nft` applying
//! the same transactions in a namespace of its own, `tests/netlink.rs`).
//!
//! Why, measured at 10,000 Services (kernel 6.18, nft 1.0.6, 2 cores): two costs made
//! every change 130–160 ms whatever it changed, and the 100 ms p99 target held only up
//! to about 3,000 Services.
//!
//! - nft 1.0.6 lists every chain and set of the ruleset into its cache before any
//!   `add rule`, `add element`, `delete element` or `delete chain` (50–80 ms for
//!   30,000 chains; the kernel's chain dump grows quadratically), and there is no way
//!   around it in the language: an `nft -i` kept running lists it all again before
//!   each command, since every commit (its own too) changes the ruleset's
//!   generation, and each of its lines is a transaction of its own. Only `add chain
//!   … { rules }`, `add map … { elements = … }` and `flush` skip the listing, which
//!   leaves deletions out. A batch of our own lists nothing: the proxy knows what it
//!   wrote.
//! - At each commit that adds a jump, a `dnat` or a verdict element, the kernel
//!   validates the jump graph of each table the commit touches, from every base
//!   chain through every map element: 50–60 ms for one table of 10,000 Services,
//!   netlink or not. So the Services' chains are spread over 16 shard tables (see
//!   [`rules`]), and a change validates one: 5 ms.
//!
//! Closing a `NETLINK_NETFILTER` socket after a commit waits for nf_tables' clean-up
//! of it (an RCU grace period, 4–16 ms), so the socket stays open between batches.
//! No netlink crate does it: rustables 0.9 (pure Rust) has no `numgen`, `fib` or
//! `dynset` expression and is GPL-3.0, nftnl 0.9 binds the C libnftnl; the subset
//! here is small enough to encode with `nix`'s safe socket calls and check against
//! nft directly.
//!
//! `tests/scale.rs` measures it (the real runner in namespaces of its own, Services of
//! two endpoints each, one endpoint replaced per change, from the catalog change to
//! the end of the transaction that applied it; the 5 ms `batch_delay` included), every
//! variant in one run:
//! `SKPX_SERVICES=10000 cargo test --release -p skiff-proxy --test scale -- --ignored --nocapture`
//!
//! | Services | executor, shards          | full load | change → applied p50 / p90 / p99 | transaction alone p50 / p99 |
//! |---------:|---------------------------|----------:|---------------------------------:|----------------------------:|
//! | 1,000    | `nft -f`, 1 (as before)   | 0.23 s    | 37 / 54 / 68 ms                  | 31 / 62 ms                  |
//! | 1,000    | `nft -f`, 16              | 0.35 s    | 42 / 50 / 90 ms                  | 36 / 84 ms                  |
//! | 1,000    | netlink, 1                | 0.23 s    | 10 / 14 / 17 ms                  | 3.8 / 10 ms                 |
//! | 1,000    | netlink, 16 (the default) | 0.23 s    | 7.1 / 9.8 / 12 ms                | 0.8 / 5.9 ms                |
//! | 10,000   | `nft -f`, 1 (as before)   | 2.3 s     | 152 / 174 / 205 ms               | 146 / 199 ms                |
//! | 10,000   | `nft -f`, 16              | 2.3 s     | 137 / 178 / 275 ms               | 131 / 268 ms                |
//! | 10,000   | netlink, 1                | 2.4 s     | 54 / 61 / 67 ms                  | 48 / 60 ms                  |
//! | 10,000   | netlink, 16 (the default) | 2.1 s     | 13 / 14 / 22 ms                  | 6.5 / 16 ms                 |
//!
//! (One run per size, on a shared 2-core machine; "as before" is the old executor on
//! one table, the old layout's cost. The code before this change, measured the same
//! day by the old version of the test: 47 / 93 / 157 ms at 1,000 and 184 / 248 / 305
//! ms at 10,000.) Shards cost a connection's first packet one NAT chain each: with 16,
//! a loop of local connections through 10,000 Services ran about 3% slower than with
//! one table, within the noise of that test.

pub mod config;
pub mod conntrack;
pub mod health;
pub mod nft;
pub mod rules;
mod runner;

pub use config::{Cidr, Config, Family};
pub use conntrack::{Conntrack, ConntrackCommand, RecordingConntrack};
pub use nft::{Nft, NftCli, NftCommand, RecordingNft};
pub use rules::diff::Flush;
pub use runner::{cleanup, run};

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {0}: {1}")]
    Spawn(String, #[source] std::io::Error),
    #[error("nft failed (exit {status:?}): {stderr}")]
    Nft { status: Option<i32>, stderr: String },
    #[error("cannot talk to nf_tables over netlink: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("nf_tables refused the transaction at `{line}`: {source}")]
    Refused {
        line: String,
        #[source]
        source: std::io::Error,
    },
    #[error("conntrack failed (exit {status:?}): {stderr}")]
    Conntrack { status: Option<i32>, stderr: String },
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
