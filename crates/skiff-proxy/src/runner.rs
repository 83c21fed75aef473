//! The loop: waits for the catalog's first full list, loads the whole table, then turns
//! each burst of Service changes into one incremental transaction; after a failed
//! transaction (or on a relist) it loads the whole table again. UDP conntrack cleanup
//! and the health servers follow each applied transaction.

use crate::Error;
use crate::config::{Config, Family};
use crate::conntrack::Conntrack;
use crate::health::{ProxyHealth, ServiceHealthServers, spawn_healthz};
use crate::nft::Nft;
use crate::rules::diff::{Plan, Table};
use crate::rules::{self, Changes, Source};
use skiff_catalog::{Catalog, ServiceKey, Shared, Update};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Runs the proxy until `shutdown` turns true, then removes its tables.
pub async fn run(
    catalog: Arc<Shared>,
    config: Config,
    nft: Arc<dyn Nft>,
    conntrack: Arc<dyn Conntrack>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut updates = catalog.subscribe();
    let health = Arc::new(ProxyHealth::new(config.health_timeout));
    let _healthz = match config.healthz_address {
        Some(addr) => Some(AbortOnDrop(
            spawn_healthz(addr, health.clone())
                .await
                .map_err(|e| Error::Bind(addr, e))?
                .1,
        )),
        None => None,
    };
    if !wait_for_reset(&mut updates, &mut shutdown).await {
        // Stopped before the first sync: what an earlier run left still goes.
        if config.cleanup_on_stop {
            cleanup(&*nft).await?;
        }
        return Ok(());
    }
    let hc = ServiceHealthServers::new(config.health_check_ip, health.clone());
    let mut proxier = Proxier::new(config, nft.clone(), conntrack, health, hc);
    proxier.sync(&catalog, Batch::full()).await;
    while let Some(batch) = proxier.next_batch(&mut updates, &mut shutdown).await {
        proxier.sync(&catalog, batch).await;
    }
    if proxier.config.cleanup_on_stop {
        cleanup(&*nft).await?;
    }
    Ok(())
}

/// Removes the proxy's tables (base and shards, both families), if there.
pub async fn cleanup(nft: &dyn Nft) -> Result<(), Error> {
    let script: String = Family::ALL.into_iter().map(rules::remove_tables).collect();
    nft.run(&script).await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// True once the catalog is synced; false if stopped (or the catalog went) first.
async fn wait_for_reset(
    updates: &mut mpsc::UnboundedReceiver<Update>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            u = updates.recv() => match u {
                Some(Update::Reset) => return true,
                Some(Update::Changed(_)) => {}
                None => return false,
            },
            r = shutdown.changed() => if r.is_err() { return false },
        }
    }
}

/// What one sync covers.
#[derive(Debug, Default)]
struct Batch {
    full: bool,
    keys: BTreeSet<ServiceKey>,
}

impl Batch {
    fn full() -> Batch {
        Batch {
            full: true,
            keys: BTreeSet::new(),
        }
    }

    fn add(&mut self, u: Update) {
        match u {
            Update::Reset => self.full = true,
            Update::Changed(keys) => self.keys.extend(keys),
        }
    }
}

struct Proxier {
    config: Config,
    nft: Arc<dyn Nft>,
    conntrack: Arc<dyn Conntrack>,
    health: Arc<ProxyHealth>,
    hc: ServiceHealthServers,
    /// The applied tables; `None` for a family whose table is not there.
    v4: Option<Table>,
    v6: Option<Table>,
    /// `healthCheckNodePort` servers wanted, by Service.
    checks: HashMap<ServiceKey, (u16, usize)>,
    /// Set after a failed transaction: the next sync is a full one, at `retry_at`.
    retry: Option<(Instant, Duration)>,
}

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

impl Proxier {
    fn new(
        config: Config,
        nft: Arc<dyn Nft>,
        conntrack: Arc<dyn Conntrack>,
        health: Arc<ProxyHealth>,
        hc: ServiceHealthServers,
    ) -> Self {
        Proxier {
            config,
            nft,
            conntrack,
            health,
            hc,
            v4: None,
            v6: None,
            checks: HashMap::new(),
            retry: None,
        }
    }

    /// The next burst of changes, gathered for `batch_delay` after the first; a due
    /// retry is a full batch; `None` on shutdown.
    async fn next_batch(
        &mut self,
        updates: &mut mpsc::UnboundedReceiver<Update>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Batch> {
        let mut batch = Batch::default();
        let retry_at = self.retry.map(|(at, _)| at);
        tokio::select! {
            u = updates.recv() => batch.add(u?),
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return None;
                }
                return Some(batch);
            }
            _ = sleep_until(retry_at) => batch.full = true,
        }
        self.health.queued();
        tokio::time::sleep(self.config.batch_delay).await;
        while let Ok(u) = updates.try_recv() {
            batch.add(u);
        }
        batch.full |= self.retry.is_some_and(|(at, _)| at <= Instant::now());
        Some(batch)
    }

    async fn sync(&mut self, catalog: &Shared, batch: Batch) {
        if batch.keys.is_empty() && !batch.full {
            return;
        }
        let start = Instant::now();
        // A failed transaction left the state unknown: only a full sync is safe, and
        // only once its back-off is over (it reads the whole catalog, so the changes
        // seen meanwhile are not lost).
        if !batch.full && self.retry.is_some_and(|(at, _)| at > start) {
            return;
        }
        let full = batch.full || self.retry.is_some();
        let span = tracing::info_span!("proxy_sync", full, changed = batch.keys.len());
        let _enter = span.enter();
        let plans = {
            let c = catalog.read();
            if full {
                self.plan_full(&c)
            } else {
                self.plan_changes(&c, &batch.keys)
            }
        };
        let script: String = plans.iter().map(|p| p.script.as_str()).collect();
        let result = if script.is_empty() {
            Ok(())
        } else {
            self.nft.run(&script).await
        };
        match result {
            Ok(()) => self.applied(&plans, full, start).await,
            Err(e) => self.failed(e),
        }
    }

    fn plan_full(&mut self, c: &Catalog) -> Vec<Plan> {
        let want_v6 = self.config.node_ips.iter().any(|ip| ip.is_ipv6())
            || c.services()
                .any(|s| s.cluster_ips.iter().any(|ip| ip.is_ipv6()));
        self.checks = c
            .services()
            .filter_map(|s| {
                Some((
                    s.key.clone(),
                    rules::health_check(c, s, &self.config.node_name)?,
                ))
            })
            .collect();
        let mut plans = Vec::new();
        for family in Family::ALL {
            if family == Family::V6 && !want_v6 {
                // Removes tables left from when there were IPv6 Services.
                let gone = Plan {
                    script: rules::remove_tables(Family::V6),
                    ..Plan::default()
                };
                plans.push(gone);
                self.v6 = None;
                continue;
            }
            let changes: Changes = c
                .services()
                .map(|s| (s.key.clone(), Some(Source::new(c, s))))
                .collect();
            let (table, plan) = Table::full(family, &self.config, changes);
            *self.table(family) = Some(table);
            plans.push(plan);
        }
        plans
    }

    fn plan_changes(&mut self, c: &Catalog, keys: &BTreeSet<ServiceKey>) -> Vec<Plan> {
        let v6_appears = self.v6.is_none()
            && keys.iter().any(|k| {
                c.service(k)
                    .is_some_and(|s| s.cluster_ips.iter().any(|ip| ip.is_ipv6()))
            });
        if v6_appears {
            return self.plan_full(c);
        }
        for k in keys {
            let check = c
                .service(k)
                .and_then(|s| rules::health_check(c, s, &self.config.node_name));
            match check {
                Some(v) => self.checks.insert(k.clone(), v),
                None => self.checks.remove(k),
            };
        }
        let mut plans = Vec::new();
        for family in Family::ALL {
            let Some(table) = self.table(family).as_mut() else {
                continue;
            };
            let changes: Changes = keys.iter().map(|k| (k.clone(), Source::of(c, k))).collect();
            plans.push(table.update(changes));
        }
        plans
    }

    fn table(&mut self, family: Family) -> &mut Option<Table> {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    async fn applied(&mut self, plans: &[Plan], full: bool, start: Instant) {
        self.retry = None;
        self.health.updated();
        let tx_ms = start.elapsed().as_secs_f64() * 1000.0;
        for p in plans {
            for c in &p.conflicts {
                tracing::warn!(key = %c.key, winner = %c.winner, losers = ?c.losers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "Services claim the same address and port; the first has it");
            }
            for f in &p.flushes {
                if let Err(e) = self.conntrack.flush(f).await {
                    tracing::warn!(flush = ?f, error = %e, "conntrack cleanup failed");
                }
            }
        }
        let want = self
            .checks
            .iter()
            .map(|(k, (port, n))| (*port, (k.clone(), *n)))
            .collect();
        self.hc.sync(want).await;
        let services = self.v4.as_ref().map_or(0, |t| t.service_count())
            + self.v6.as_ref().map_or(0, |t| t.service_count());
        let sum = |f: fn(&Plan) -> usize| plans.iter().map(f).sum::<usize>();
        tracing::info!(
            full,
            services,
            chains_written = sum(|p| p.tx.write_chains.len()),
            chains_deleted = sum(|p| p.tx.delete_chains.len()),
            elements_added = sum(|p| p.tx.add_elements.values().map(Vec::len).sum()),
            elements_deleted = sum(|p| p.tx.delete_elements.values().map(Vec::len).sum()),
            conntrack_flushes = sum(|p| p.flushes.len()),
            tx_ms,
            total_ms = start.elapsed().as_secs_f64() * 1000.0,
            "service rules synced"
        );
    }

    fn failed(&mut self, e: Error) {
        let wait = self
            .retry
            .map_or(RETRY_FIRST, |(_, w)| (w * 2).min(RETRY_MAX));
        tracing::error!(error = %e, retry_in = ?wait, "service rules transaction failed; next sync is a full one");
        self.retry = Some((Instant::now() + wait, wait));
        self.v4 = None;
        self.v6 = None;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
