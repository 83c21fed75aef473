//! Conformance checks every backend must pass, and a real etcd member for tests that
//! need one (Debian's `etcd-server`).

use crate::{Error, EventKind, Store};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

/// Panics on the first semantic difference from etcd's model.
pub async fn conformance(s: Arc<dyn Store>) {
    // create / get / CAS update / delete
    let r1 = s.create("/r/a", b("1")).await.unwrap();
    assert!(matches!(
        s.create("/r/a", b("x")).await,
        Err(Error::AlreadyExists)
    ));
    let kv = s.get("/r/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, &kv.value[..]),
        (r1, r1, &b"1"[..])
    );
    let r2 = s.update("/r/a", b("2"), r1).await.unwrap();
    assert!(r2 > r1);
    match s.update("/r/a", b("3"), r1).await {
        Err(Error::Conflict { current: Some(c) }) => assert_eq!(c.mod_revision, r2),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert!(matches!(
        s.update("/r/none", b("x"), 1).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        s.delete("/r/a", Some(r1)).await,
        Err(Error::Conflict { .. })
    ));
    let (r3, last) = s.delete("/r/a", Some(r2)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(&last.value[..], b"2");
    assert!(s.get("/r/a").await.unwrap().is_none());
    assert!(matches!(s.delete("/r/a", None).await, Err(Error::NotFound)));

    // range with prefix / start_after / limit
    for k in ["/p/a", "/p/b", "/p/c", "/pz", "/q/a"] {
        s.create(k, b(k)).await.unwrap();
    }
    let all = s.range("/p/", None, None).await.unwrap();
    assert_eq!(
        all.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        ["/p/a", "/p/b", "/p/c"]
    );
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await.unwrap());
    let page = s.range("/p/", None, Some(2)).await.unwrap();
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more);
    let rest = s.range("/p/", Some("/p/b"), Some(2)).await.unwrap();
    assert_eq!(
        rest.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        ["/p/c"]
    );
    assert!(!rest.more);
    assert_eq!(s.count("/p/").await.unwrap(), 3);

    // watch: replay from a revision, then live, in order, without gaps or duplicates
    let from = s.current_revision().await.unwrap();
    s.create("/w/1", b("1")).await.unwrap();
    let mut w = s.watch("/w/", from).await.unwrap();
    let writers = 8;
    let each = 50;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let st = s.clone();
        tasks.push(tokio::spawn(async move {
            let s = st;
            let key = format!("/w/k{i}");
            let mut rev = s.create(&key, b("0")).await.unwrap();
            for j in 1..each {
                rev = s.update(&key, b(&j.to_string()), rev).await.unwrap();
            }
            s.delete(&key, Some(rev)).await.unwrap();
        }));
        // A write outside the prefix must not show up.
        s.create(&format!("/x/{i}"), b("x")).await.unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = 1 + writers * (each + 1);
    let mut last = from;
    let mut seen = 0;
    while seen < expected {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        assert!(
            ev.revision > last,
            "out of order: {} after {}",
            ev.revision,
            last
        );
        assert!(ev.kv.key.starts_with("/w/"));
        if ev.kind == EventKind::Delete {
            assert_eq!(
                &ev.kv.value[..],
                (each - 1).to_string().as_bytes(),
                "delete carries the last value"
            );
        }
        last = ev.revision;
        seen += 1;
    }

    // compaction
    let now = s.current_revision().await.unwrap();
    s.compact(now - 1).await.unwrap();
    assert!(s.compacted_revision().await.unwrap() >= now - 1);
    assert!(matches!(
        s.watch("/", 1).await.err(),
        Some(Error::Compacted { .. })
    ));
    assert!(
        s.get("/p/a").await.unwrap().is_some(),
        "compaction keeps current values"
    );
    let mut w2 = s.watch("/", now).await.unwrap();
    s.create("/after", b("1")).await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), w2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.kv.key, "/after");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether the member on `port` answers `/health` with `"health":"true"` (it has a
/// leader and serves requests).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let ask = || -> std::io::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    };
    ask().is_ok_and(|a| a.contains(r#""health":"true""#))
}

/// One etcd member on loopback ports of its own, its data under `dir`; killed (by its
/// PID) when dropped.
pub struct Etcd {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
    client: u16,
    peer: u16,
}

impl Etcd {
    pub fn start(dir: std::path::PathBuf) -> Etcd {
        let mut e = Etcd {
            child: None,
            dir,
            client: free_port(),
            peer: free_port(),
        };
        e.spawn();
        e
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Starts the member (again, on the same ports and data) and waits until it is
    /// healthy. Its port opens before it has bootstrapped: a member killed in between
    /// can come back unable to elect itself, so a test must not kill it before then.
    pub fn spawn(&mut self) {
        let (c, p) = (self.client, self.peer);
        let log = std::fs::File::create(self.dir.join("etcd.log")).expect("etcd log");
        let child = std::process::Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                &format!("--listen-client-urls=http://127.0.0.1:{c}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{c}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
                &format!("--initial-cluster=test=http://127.0.0.1:{p}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server) runs; scripts/deps.sh --tests installs it");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !healthy(c) {
            assert!(
                std::time::Instant::now() < deadline,
                "etcd did not become healthy; its log:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// What the member wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
