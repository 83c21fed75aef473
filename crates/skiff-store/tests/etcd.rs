//! The store conformance suite on a real etcd (Debian's `etcd-server`, started here on
//! ports of its own), and what SQLite never meets: a watch that survives etcd going
//! away and coming back, and a watch from a revision etcd has compacted.

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::testing::Etcd;
use skiff_store::{Error, EtcdConfig, EtcdStore, Store};
use std::sync::Arc;
use std::time::Duration;

async fn store(e: &Etcd) -> Arc<dyn Store> {
    let cfg = EtcdConfig {
        endpoints: vec![e.endpoint()],
        ..Default::default()
    };
    Arc::new(EtcdStore::connect(&cfg).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_real_etcd() {
    let e = Etcd::start(tempfile::tempdir().unwrap().keep());
    skiff_store::testing::conformance(store(&e).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_etcd_comes_back_without_gaps_or_duplicates() {
    let mut e = Etcd::start(tempfile::tempdir().unwrap().keep());
    let s = store(&e).await;
    let from = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/", from).await.unwrap();
    let r1 = s.create("/registry/a", Bytes::from("1")).await.unwrap();
    let first = w.next().await.unwrap().unwrap();
    assert_eq!((first.kv.key.as_str(), first.revision), ("/registry/a", r1));

    e.kill();
    // While etcd is down, a write fails with a retryable error, not a crash.
    let down = s.create("/registry/b", Bytes::from("x")).await;
    assert!(matches!(down, Err(Error::Unavailable(_))), "{down:?}");
    e.spawn();
    let r2 = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.update("/registry/a", Bytes::from("2"), r1).await {
                Ok(r) => return r,
                Err(Error::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await
    .expect("etcd back");
    let next = tokio::time::timeout(Duration::from_secs(30), w.next())
        .await
        .expect("the watch resumed")
        .unwrap()
        .unwrap();
    assert_eq!((next.kv.key.as_str(), next.revision), ("/registry/a", r2));
    assert_eq!(&next.prev.unwrap().value[..], b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_is_refused() {
    let e = Etcd::start(tempfile::tempdir().unwrap().keep());
    let s = store(&e).await;
    let r1 = s.create("/registry/k", Bytes::from("1")).await.unwrap();
    let r2 = s.update("/registry/k", Bytes::from("2"), r1).await.unwrap();
    // Before compaction the history is there.
    assert!(s.watch("/registry/", r1 - 1).await.is_ok());
    s.compact(r2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), r2);
    assert!(matches!(
        s.watch("/registry/", r1).await.err(),
        Some(Error::Compacted { compact_revision }) if compact_revision == r2
    ));
    assert_eq!(
        &s.get("/registry/k").await.unwrap().unwrap().value[..],
        b"2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_keeps_up_with_many_concurrent_writers() {
    let e = Etcd::start(tempfile::tempdir().unwrap().keep());
    let s = store(&e).await;
    let from = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/", from).await.unwrap();
    let value = Bytes::from(vec![b'x'; 2000]);
    let total = 3000;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (s, next, value) = (s.clone(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return last;
                }
                last = last.max(
                    s.create(&format!("/registry/k/{i:06}"), value.clone())
                        .await
                        .unwrap(),
                );
            }
        }));
    }
    let mut top = 0;
    for t in tasks {
        top = top.max(t.await.unwrap());
    }
    let mut seen = 0;
    let mut last = from;
    while last < top {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap_or_else(|_| panic!("watch stalled at {last} of {top} after {seen} events"))
            .unwrap()
            .unwrap();
        assert!(ev.revision > last);
        last = ev.revision;
        seen += 1;
    }
    assert_eq!(seen, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_reports_progress_past_writes_outside_its_prefix() {
    let e = Etcd::start(tempfile::tempdir().unwrap().keep());
    let s = store(&e).await;
    let from = s.current_revision().await.unwrap();
    let mut w = s.watch("/registry/", from).await.unwrap();
    let outside = s.create("/elsewhere/x", Bytes::from("1")).await.unwrap();
    // Reading the revision asks every watch to say how far it has come.
    assert_eq!(s.current_revision().await.unwrap(), outside);
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("progress reported")
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.kind, ev.revision),
        (skiff_store::EventKind::Progress, outside)
    );
}
