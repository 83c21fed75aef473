//! From what a family's table holds (as last applied) and what changed Services should
//! now have, the one nftables transaction that gets there, touching only what changed:
//! chains whose rules differ are rewritten, chains gone are deleted, map elements are
//! added and deleted one by one. kube-proxy's partial sync works the same way.
//!
//! A transaction is ordered so that nothing is deleted while still referenced: map
//! elements go first (they point at chains), then chains are flushed (their rules
//! point at chains and affinity sets), then sets and chains are deleted, then what is
//! new is added. All of it is one batch, which the kernel applies atomically, whatever
//! tables (base and shards, see `rules`) it touches.
//!
//! The state is updated as if the transaction succeeded; when it fails the runner
//! throws the state away and loads the whole table afresh.
//!
//! What was applied is kept as each Service's [`Source`] (the catalog's own `Arc`s of
//! the Service and its slices), not as the rules: rendering is a pure function of the
//! source and the config, so a changed Service's old rules are rendered again to be
//! compared with its new ones (tens of microseconds), and the rules of 10,000 Services
//! are never all held at once between syncs.

use super::{Frontend, Map, Place, ServiceRules, Source, UdpPort, base};
use crate::config::{Config, Family};
use skiff_catalog::ServiceKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::IpAddr;

/// What one family's table holds, by Service.
#[derive(Debug)]
pub struct Table {
    pub family: Family,
    /// How many shard tables the Services are spread over.
    shards: u16,
    /// What the rules are rendered with.
    cfg: Config,
    /// What each Service's applied rules were rendered from (only Services with rules).
    services: HashMap<ServiceKey, Source>,
    /// The Services claiming each frontend, sorted: the first has it.
    owners: HashMap<Frontend, Vec<ServiceKey>>,
}

/// One frontend touched by an update: its claim before, and the claims Services made
/// on it in this update (what the winner's claim is afterwards, unless it did not
/// change).
#[derive(Debug, Default)]
struct Touch {
    before: Option<Claim>,
    claims: Vec<Claim>,
}

/// A UDP conntrack cleanup to run once the transaction is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flush {
    /// Flows to a Service address DNATed to an endpoint that no longer serves.
    ServiceEndpoint {
        ip: IpAddr,
        port: u16,
        endpoint: IpAddr,
    },
    /// Flows to a node port DNATed to an endpoint that no longer serves.
    NodePortEndpoint {
        family: Family,
        node_port: u16,
        endpoint: IpAddr,
    },
    /// All flows to a Service address: it just got endpoints, and conntrack may hold
    /// flows from when it had none.
    ServiceIp { ip: IpAddr, port: u16 },
    /// All flows to a node port, likewise.
    NodePort { family: Family, node_port: u16 },
}

/// Two or more Services claim the same key; `winner` (first by key) has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub key: String,
    pub winner: ServiceKey,
    pub losers: Vec<ServiceKey>,
}

/// Elements of one map in one table, by (table, map).
pub type Elements<T> = BTreeMap<(Place, &'static str), Vec<T>>;

/// The operations of one transaction, kept apart by kind until rendered in a safe
/// order (see the module doc), each with the table it is in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tx {
    pub delete_elements: Elements<String>,
    /// Chains written from scratch (added if new, flushed, then filled).
    pub write_chains: Vec<(Place, String, Vec<String>)>,
    pub delete_chains: Vec<(Place, String)>,
    pub delete_sets: Vec<(Place, String)>,
    /// Affinity sets and their timeout.
    pub add_sets: Vec<(Place, String, u32)>,
    /// Keys and values (empty in a set).
    pub add_elements: Elements<(String, String)>,
}

impl Tx {
    pub fn is_empty(&self) -> bool {
        *self == Tx::default()
    }

    fn delete_element(&mut self, place: Place, map: &'static str, key: String) {
        self.delete_elements
            .entry((place, map))
            .or_default()
            .push(key);
    }

    fn add_element(&mut self, place: Place, map: &'static str, key: String, value: String) {
        self.add_elements
            .entry((place, map))
            .or_default()
            .push((key, value));
    }

    /// The `nft -f` script; `fresh` when the tables were just created (nothing to
    /// flush).
    pub fn render(&self, family: Family, fresh: bool) -> String {
        let f = family.nft();
        let mut s = String::new();
        for ((place, map), keys) in &self.delete_elements {
            for chunk in keys.chunks(1000) {
                let _ = writeln!(
                    s,
                    "delete element {f} {place} {map} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
        for (place, name, _) in &self.write_chains {
            let _ = writeln!(s, "add chain {f} {place} {name}");
            if !fresh {
                let _ = writeln!(s, "flush chain {f} {place} {name}");
            }
        }
        for (place, name) in &self.delete_chains {
            let _ = writeln!(s, "flush chain {f} {place} {name}");
        }
        for (place, name) in &self.delete_sets {
            let _ = writeln!(s, "delete set {f} {place} {name}");
        }
        for (place, name) in &self.delete_chains {
            let _ = writeln!(s, "delete chain {f} {place} {name}");
        }
        let addr = family.addr_type();
        for (place, name, timeout) in &self.add_sets {
            let _ = writeln!(
                s,
                "add set {f} {place} {name} {{ type {addr} ; flags dynamic,timeout ; timeout {timeout}s ; }}"
            );
        }
        for (place, name, rules) in &self.write_chains {
            for r in rules {
                let _ = writeln!(s, "add rule {f} {place} {name} {r}");
            }
        }
        s += &render_add_elements(family, &self.add_elements);
        s
    }
}

fn render_add_elements(family: Family, elements: &Elements<(String, String)>) -> String {
    let f = family.nft();
    let mut s = String::new();
    for ((place, map), elems) in elements {
        for chunk in elems.chunks(1000) {
            let body: Vec<String> = chunk
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k} : {v}")
                    }
                })
                .collect();
            let body = body.join(", ");
            let _ = writeln!(s, "add element {f} {place} {map} {{ {body} }}");
        }
    }
    s
}

/// What a sync found to do.
#[derive(Debug, Default)]
pub struct Plan {
    pub tx: Tx,
    /// The transaction text (with the table's fixed part first for a full sync).
    pub script: String,
    pub flushes: Vec<Flush>,
    pub conflicts: Vec<Conflict>,
}

impl Table {
    /// An empty table whose rules are rendered with `cfg`.
    pub fn new(family: Family, cfg: &Config) -> Table {
        Table {
            family,
            shards: cfg.shard_count(),
            cfg: cfg.clone(),
            services: HashMap::new(),
            owners: HashMap::new(),
        }
    }

    /// A fresh table holding `services`: the script deletes whatever table was there
    /// and builds this one, in one transaction.
    pub fn full(family: Family, cfg: &Config, services: super::Changes) -> (Table, Plan) {
        let mut table = Table::new(family, cfg);
        let mut plan = table.update(services);
        plan.script = base(family, cfg) + &plan.tx.render(family, true);
        // A restart forgets what the old table held: UDP flows are flushed only from
        // now on, as kube-proxy after a restart.
        plan.flushes.clear();
        (table, plan)
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Applies changed Services to the state; the plan's script makes the table match.
    pub fn update(&mut self, changes: super::Changes) -> Plan {
        let mut plan = Plan::default();
        let mut touched: BTreeMap<Frontend, Touch> = BTreeMap::new();
        for (key, source) in changes {
            let applied = self.services.remove(&key);
            let old = self.render(applied.as_ref());
            let new = self.render(source.as_ref());
            let place = Place::of(&key, self.shards);
            diff_sets_and_chains(&old, &new, place, &mut plan.tx);
            self.claim(&key, &old, &new, &mut touched);
            plan.flushes
                .extend(udp_flushes(&old.udp, &new.udp, self.family));
            if let Some(source) = source.filter(|_| new != ServiceRules::default()) {
                self.services.insert(key, source);
            }
        }
        for (frontend, touch) in touched {
            self.settle(&frontend, touch, &mut plan);
        }
        plan.script = plan.tx.render(self.family, false);
        plan
    }

    /// The rules `source` renders to here (none for none).
    fn render(&self, source: Option<&Source>) -> ServiceRules {
        source
            .and_then(|s| s.render(self.family, &self.cfg))
            .unwrap_or_default()
    }

    /// Moves `key`'s claims from `old` to `new`, noting what each frontend had.
    fn claim(
        &mut self,
        key: &ServiceKey,
        old: &ServiceRules,
        new: &ServiceRules,
        touched: &mut BTreeMap<Frontend, Touch>,
    ) {
        for f in old.frontends.keys().chain(new.frontends.keys()) {
            if !touched.contains_key(f) {
                let before = self.winner(f, key, old);
                touched.insert(
                    f.clone(),
                    Touch {
                        before,
                        claims: Vec::new(),
                    },
                );
            }
        }
        for f in old.frontends.keys() {
            if let Some(claims) = self.owners.get_mut(f) {
                claims.retain(|k| k != key);
                if claims.is_empty() {
                    self.owners.remove(f);
                }
            }
            if let Some(t) = touched.get_mut(f) {
                t.claims.retain(|(k, _)| k != key);
            }
        }
        for (f, v) in &new.frontends {
            let claims = self.owners.entry(f.clone()).or_default();
            if let Err(i) = claims.binary_search(key) {
                // One claimant is the rule: no room kept for more.
                claims.reserve_exact(1);
                claims.insert(i, key.clone());
            }
            if let Some(t) = touched.get_mut(f) {
                t.claims.push((key.clone(), v.clone()));
            }
        }
    }

    /// The Service that has `f` as applied, and its claim; `key`, being changed, had
    /// `old`. Another winner's claim is rendered from its source (only when Services
    /// share a frontend).
    fn winner(&self, f: &Frontend, key: &ServiceKey, old: &ServiceRules) -> Option<Claim> {
        let winner = self.owners.get(f)?.first()?;
        let claim = if winner == key {
            old.frontends.get(f)?.clone()
        } else {
            self.claim_of(winner, f)?
        };
        Some((winner.clone(), claim))
    }

    /// What `key`'s applied rules claim on `f`.
    fn claim_of(&self, key: &ServiceKey, f: &Frontend) -> Option<Vec<(Map, String)>> {
        let rules = self.render(self.services.get(key));
        rules.frontends.get(f).cloned()
    }

    /// The element changes of one frontend whose claims changed: an element moves
    /// when its value changes, or its table (the winner's shard) does.
    fn settle(&self, f: &Frontend, touch: Touch, plan: &mut Plan) {
        let claims = self.owners.get(f);
        let after = claims.and_then(|c| c.first()).and_then(|w| {
            let made = touch.claims.iter().find(|(k, _)| k == w);
            let v = match made {
                Some((_, v)) => v.clone(),
                None => self.claim_of(w, f)?,
            };
            Some((w.clone(), v))
        });
        let placed = |claim: &Option<Claim>| -> Vec<(Place, Map, String)> {
            let Some((key, v)) = claim else {
                return Vec::new();
            };
            v.iter()
                .map(|(m, val)| (m.place(key, self.shards), *m, val.clone()))
                .collect()
        };
        let (before, after) = (placed(&touch.before), placed(&after));
        for (place, map, value) in &before {
            if !after
                .iter()
                .any(|(p, m, v)| p == place && m == map && v == value)
            {
                plan.tx.delete_element(*place, map.name(), f.key.clone());
            }
        }
        for (place, map, value) in &after {
            if !before
                .iter()
                .any(|(p, m, v)| p == place && m == map && v == value)
            {
                plan.tx
                    .add_element(*place, map.name(), f.key.clone(), value.clone());
            }
        }
        if let Some(claims) = claims.filter(|c| c.len() > 1) {
            let mut keys = claims.iter().cloned();
            let winner = keys.next().unwrap_or_else(|| ServiceKey::new("", ""));
            plan.conflicts.push(Conflict {
                key: f.key.clone(),
                winner,
                losers: keys.collect(),
            });
        }
    }
}

/// A frontend's owner and what it claims: `(map, value)` pairs.
type Claim = (ServiceKey, Vec<(Map, String)>);

/// Affinity sets and chains (all in the Service's shard, `place`): only what differs
/// is written.
fn diff_sets_and_chains(old: &ServiceRules, new: &ServiceRules, place: Place, tx: &mut Tx) {
    let mut changed_set = false;
    for (name, timeout) in &new.sets {
        match old.sets.get(name) {
            Some(t) if t == timeout => {}
            Some(_) => {
                changed_set = true;
                tx.delete_sets.push((place, name.clone()));
                tx.add_sets.push((place, name.clone(), *timeout));
            }
            None => tx.add_sets.push((place, name.clone(), *timeout)),
        }
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        tx.delete_sets.push((place, name.clone()));
    }
    for (name, chain) in &new.chains {
        // A set deleted and re-added must not be referenced meanwhile: rewrite.
        if old.chains.get(name) != Some(chain) || changed_set {
            let mut rules = chain.rules.clone();
            rules.extend(choice(&chain.dispatch));
            tx.write_chains.push((place, name.clone(), rules));
        }
    }
    for name in old.chains.keys() {
        if !new.chains.contains_key(name) {
            tx.delete_chains.push((place, name.clone()));
        }
    }
}

/// A uniformly random jump to one of `targets`: the first with probability 1/N, else
/// the second with 1/(N-1), and so on (iptables mode's cascade; see the module doc of
/// `rules` for why not an anonymous `vmap`). Only a connection's first packet runs it.
pub fn choice(targets: &[String]) -> Vec<String> {
    let n = targets.len();
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| match n - i {
            1 => format!("goto {t}"),
            left => format!("numgen random mod {left} == 0 goto {t}"),
        })
        .collect()
}

/// kube-proxy's UDP conntrack cleanup: flows to endpoints that stopped serving go, and
/// a port that gets its first serving endpoints has all its flows flushed.
fn udp_flushes(
    old: &BTreeMap<String, UdpPort>,
    new: &BTreeMap<String, UdpPort>,
    family: Family,
) -> Vec<Flush> {
    let mut out = BTreeSet::new();
    for (name, o) in old {
        let n = new.get(name);
        for ep in o
            .serving
            .iter()
            .filter(|ep| !n.is_some_and(|n| n.serving.contains(ep)))
        {
            for ip in &o.ips {
                out.insert(Flush::ServiceEndpoint {
                    ip: *ip,
                    port: o.port,
                    endpoint: *ep,
                });
            }
            if let Some(node_port) = o.node_port {
                out.insert(Flush::NodePortEndpoint {
                    family,
                    node_port,
                    endpoint: *ep,
                });
            }
        }
    }
    for (name, n) in new {
        let had = old.get(name).is_some_and(|o| !o.serving.is_empty());
        if had || n.serving.is_empty() {
            continue;
        }
        for ip in &n.ips {
            out.insert(Flush::ServiceIp {
                ip: *ip,
                port: n.port,
            });
        }
        if let Some(node_port) = n.node_port {
            out.insert(Flush::NodePort { family, node_port });
        }
    }
    out.into_iter().collect()
}
