//! The `Store` on etcd v3 (`etcd-client`): keys as kube-apiserver lays them out
//! (`/registry/...`), mod revision as resourceVersion, create as a transaction on
//! `create_revision == 0`, compare-and-swap on `mod_revision`, prefix ranges with
//! paging, watches from a revision with previous values (a broken stream is resumed from
//! the last revision seen; a compacted one ends with [`Error::Compacted`]), and
//! compaction through etcd's API with the compacted revision kept, as kube-apiserver
//! keeps it, in `compact_rev_key` (outside `/`, so no watch of the registry sees it).

use crate::{Error, Event, EventKind, KeyValue, RangeResult, Result, Revision, Store};
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::time::Duration;

/// Where kube-apiserver records the last compaction.
const COMPACT_KEY: &str = "compact_rev_key";

/// How to reach etcd: endpoints, and TLS material (PEM) when they are `https://`.
#[derive(Clone, Debug, Default)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

pub struct EtcdStore {
    client: Client,
    /// Bumped to have every watch ask etcd for a progress notification.
    progress: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

fn engine(e: etcd_client::Error) -> Error {
    match &e {
        // Unreachable, leaderless, or the connection lost mid-request (Cancelled):
        // writes fail now and work again once it is back.
        etcd_client::Error::TransportError(_) => Error::Unavailable(format!("etcd: {e}")),
        etcd_client::Error::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) || connection_lost(s) =>
        {
            Error::Unavailable(format!("etcd: {}", s.message()))
        }
        _ => Error::Engine(format!("etcd: {e}")),
    }
}

/// A status tonic made of a broken connection (code Unknown, "transport error", e.g. a
/// broken pipe when etcd was killed under an open connection): retryable as well.
fn connection_lost(s: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn kv(k: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: Bytes::copy_from_slice(k.value()),
        create_revision: k.create_revision(),
        mod_revision: k.mod_revision(),
    }
}

/// The smallest key after every key starting with `prefix` (etcd's `"\0"` for all keys).
fn range_end(prefix: &str) -> Vec<u8> {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return b;
        }
    }
    vec![0]
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map(|h| h.revision()).unwrap_or(0)
}

impl EtcdStore {
    /// Connects (lazily: an etcd that is down now is retried by every request).
    pub async fn connect(cfg: &EtcdConfig) -> Result<EtcdStore> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(ca) = &cfg.ca {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca));
            if let (Some(c), Some(k)) = (&cfg.cert, &cfg.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(c, k));
            }
            opts = opts.with_tls(tls);
        }
        let endpoints: Vec<String> = cfg
            .endpoints
            .iter()
            .map(|e| {
                e.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .to_string()
            })
            .collect();
        let client = Client::connect(&endpoints, Some(opts))
            .await
            .map_err(engine)?;
        let (progress, _) = tokio::sync::watch::channel(0);
        Ok(EtcdStore {
            client,
            progress: std::sync::Arc::new(progress),
        })
    }

    async fn txn_get(
        &self,
        key: &str,
        when: Compare,
        then: TxnOp,
    ) -> Result<(bool, Revision, Vec<TxnOpResponse>)> {
        let txn = etcd_client::Txn::new()
            .when([when])
            .and_then([then])
            .or_else([TxnOp::get(key, None)]);
        let r = self.client.kv_client().txn(txn).await.map_err(engine)?;
        Ok((r.succeeded(), header_rev(r.header()), r.op_responses()))
    }
}

/// The current value a failed compare-and-swap found: Conflict, or NotFound if none.
fn lost(ops: Vec<TxnOpResponse>) -> Error {
    let current = ops.into_iter().find_map(|o| match o {
        TxnOpResponse::Get(g) => g.kvs().first().map(kv),
        _ => None,
    });
    match current {
        Some(c) => Error::Conflict { current: Some(c) },
        None => Error::NotFound,
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let r = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(engine)?;
        Ok(r.kvs().first().map(kv))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<RangeResult> {
        let start = match start_after {
            Some(s) => format!("{s}\0"),
            None => prefix.to_string(),
        };
        let mut opts = GetOptions::new().with_range(range_end(prefix));
        if let Some(l) = limit {
            opts = opts.with_limit(l as i64);
        }
        let r = self
            .client
            .kv_client()
            .get(start, Some(opts))
            .await
            .map_err(engine)?;
        Ok(RangeResult {
            kvs: r.kvs().iter().map(kv).collect(),
            more: r.more(),
            revision: header_rev(r.header()),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let opts = GetOptions::new()
            .with_range(range_end(prefix))
            .with_count_only();
        let r = self
            .client
            .kv_client()
            .get(prefix, Some(opts))
            .await
            .map_err(engine)?;
        Ok(r.count())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let when = Compare::create_revision(key, CompareOp::Equal, 0);
        let (ok, rev, _) = self
            .txn_get(key, when, TxnOp::put(key, value.to_vec(), None))
            .await?;
        if ok {
            Ok(rev)
        } else {
            Err(Error::AlreadyExists)
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let when = Compare::mod_revision(key, CompareOp::Equal, expected);
        let (ok, rev, ops) = self
            .txn_get(key, when, TxnOp::put(key, value.to_vec(), None))
            .await?;
        if ok { Ok(rev) } else { Err(lost(ops)) }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let when = match expected {
            Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let del = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        let (ok, rev, ops) = self.txn_get(key, when, del).await?;
        if !ok {
            return Err(lost(ops));
        }
        let prev = ops.into_iter().find_map(|o| match o {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(kv),
            _ => None,
        });
        prev.map(|p| (rev, p)).ok_or(Error::NotFound)
    }

    async fn watch(
        &self,
        prefix: &str,
        after_revision: Revision,
    ) -> Result<BoxStream<'static, Result<Event>>> {
        let compacted = self.compacted_revision().await?;
        if after_revision < compacted {
            return Err(Error::Compacted {
                compact_revision: compacted,
            });
        }
        Ok(resuming_watch(
            self.client.clone(),
            prefix.to_string(),
            after_revision,
            self.progress.subscribe(),
        ))
    }

    /// The revision, with every watch asked to report progress up to it: etcd's
    /// revision also moves with writes outside a watched prefix, and a reader waiting
    /// for it would otherwise wait for an event that never comes (kube-apiserver's
    /// consistent reads from its cache do the same).
    async fn current_revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only();
        let r = self
            .client
            .kv_client()
            .get(COMPACT_KEY, Some(opts))
            .await
            .map_err(engine)?;
        // Asked after the read, so the progress each watch reports covers it.
        self.progress.send_modify(|n| *n += 1);
        Ok(header_rev(r.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // Recorded first, so a reader never sees history missing below an older mark.
        let mut kv = self.client.kv_client();
        kv.put(COMPACT_KEY, revision.to_string(), None)
            .await
            .map_err(engine)?;
        let opts = etcd_client::CompactionOptions::new().with_physical();
        match kv.compact(revision, Some(opts)).await {
            Ok(_) => Ok(()),
            // Someone (etcd's own auto-compaction) got there first.
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("compacted") => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let r = self
            .client
            .kv_client()
            .get(COMPACT_KEY, None)
            .await
            .map_err(engine)?;
        Ok(r.kvs()
            .first()
            .and_then(|k| std::str::from_utf8(k.value()).ok()?.parse().ok())
            .unwrap_or(0))
    }
}

fn progress_event(rev: Revision) -> Event {
    Event {
        kind: EventKind::Progress,
        kv: KeyValue {
            key: String::new(),
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: rev,
        },
        prev: None,
        revision: rev,
    }
}

fn event(e: &etcd_client::Event) -> Option<Event> {
    let cur = kv(e.kv()?);
    let prev = e.prev_kv().map(kv);
    Some(match e.event_type() {
        etcd_client::EventType::Put => Event {
            kind: EventKind::Put,
            revision: cur.mod_revision,
            kv: cur,
            prev,
        },
        etcd_client::EventType::Delete => {
            // etcd's delete carries no value: the last one is the previous value's.
            let last = prev.clone().unwrap_or_else(|| cur.clone());
            Event {
                kind: EventKind::Delete,
                revision: cur.mod_revision,
                kv: KeyValue {
                    mod_revision: cur.mod_revision,
                    ..last
                },
                prev,
            }
        }
    })
}

/// A watch that outlives broken connections: it starts again after the last revision
/// it delivered. A compacted start ends it with `Compacted`.
fn resuming_watch(
    client: Client,
    prefix: String,
    after: Revision,
    mut progress: tokio::sync::watch::Receiver<u64>,
) -> BoxStream<'static, Result<Event>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event>>(1024);
    tokio::spawn(async move {
        let mut last = after;
        let mut pause = Duration::from_millis(100);
        loop {
            let opts = WatchOptions::new()
                .with_range(range_end(&prefix))
                .with_start_revision(last + 1)
                .with_prev_key()
                .with_progress_notify();
            let stream = client
                .watch_client()
                .watch(prefix.as_str(), Some(opts))
                .await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch could not start; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let resp = tokio::select! {
                    r = stream.next() => r,
                    changed = progress.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if let Err(e) = stream.request_progress().await {
                            tracing::warn!(error = %e, "etcd progress request failed");
                        }
                        continue;
                    }
                };
                let Some(resp) = resp else { break };
                let resp = match resp {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, last, "etcd watch broke; resuming");
                        break;
                    }
                };
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        let _ = tx
                            .send(Err(Error::Compacted {
                                compact_revision: resp.compact_revision(),
                            }))
                            .await;
                        return;
                    }
                    break;
                }
                pause = Duration::from_millis(100);
                let rev = header_rev(resp.header());
                if resp.events().is_empty() && !resp.created() && rev > last {
                    // A progress notification: nothing under the prefix up to `rev`.
                    last = rev;
                    if tx.send(Ok(progress_event(rev))).await.is_err() {
                        return;
                    }
                    continue;
                }
                for e in resp.events().iter().filter_map(event) {
                    last = e.revision;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_unavailable_and_other_unknowns_are_not() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let broken = tonic::Status::from_error(Box::new(io));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        let e = engine(etcd_client::Error::GRpcStatus(broken));
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let other = tonic::Status::unknown("something else");
        let e = engine(etcd_client::Error::GRpcStatus(other));
        assert!(matches!(e, Error::Engine(_)), "{e:?}");
    }
}
