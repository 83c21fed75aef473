//! The node's statistics as kubelet serves them on its port: the Summary API
//! (`/stats/summary`), the resource metrics (`/metrics/resource`) that metrics-server
//! and skiff's metrics API scrape, and the agent's own `/metrics`. Measured when asked,
//! at most once a second: the runtime's CRI stats for pods and containers, `/proc` and
//! the data directory's filesystem for the node.

pub mod host;
pub mod prom;
pub mod serve;
pub mod summary;

use crate::runtime::Runtime;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use summary::{Rates, Summary};

/// Readings younger than this are served again rather than measured anew.
const FRESH: Duration = Duration::from_secs(1);

pub struct Stats {
    node: String,
    dir: PathBuf,
    runtime: Arc<dyn Runtime>,
    rates: parking_lot::Mutex<Rates>,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Summary>)>>,
}

impl Stats {
    pub fn new(node: &str, dir: PathBuf, runtime: Arc<dyn Runtime>) -> Arc<Stats> {
        Arc::new(Stats {
            node: node.to_string(),
            dir,
            runtime,
            rates: Default::default(),
            last: Default::default(),
        })
    }

    pub async fn summary(&self) -> Result<Arc<Summary>, skiff_cri::Error> {
        let mut last = self.last.lock().await;
        if let Some((at, s)) = last.as_ref()
            && at.elapsed() < FRESH
        {
            return Ok(s.clone());
        }
        let usage = self.runtime.usage().await?;
        let dir = self.dir.clone();
        let host = tokio::task::spawn_blocking(move || host::read(&dir))
            .await
            .unwrap_or_default();
        let now = chrono::Utc::now();
        let s = Arc::new(summary::build(
            &self.node,
            &host,
            &usage,
            &mut self.rates.lock(),
            now,
        ));
        *last = Some((Instant::now(), s.clone()));
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
