//! The agent's client-side load balancer, as k3s runs one on 127.0.0.1:6444: the
//! agent's clients dial it, and it carries each connection (TLS and all, untouched) to a
//! server that answers, starting from the one that answered last. It knows the server
//! the agent was started with and learns every other one from the `kubernetes`
//! Service's Endpoints, so when a server dies the next connection goes to a live one
//! (a refused connection moves on at once, a silent one after a second).

use parking_lot::RwLock;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Balancer {
    /// The servers in the order they are tried; the first is the one the agent was
    /// started with until the Endpoints say otherwise.
    servers: Arc<RwLock<Vec<SocketAddr>>>,
    /// Index of the server that answered last.
    current: Arc<AtomicUsize>,
    local: SocketAddr,
    /// The server the agent was started with, always kept: the Endpoints name servers
    /// by their advertised address, which this machine may not reach (a server bound to
    /// loopback), and k3s keeps its default server the same way.
    initial: SocketAddr,
}

impl Balancer {
    /// Listens on `listen` (port 0: any) and balances over `initial`.
    pub async fn start(
        listen: SocketAddr,
        initial: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<Balancer> {
        let listener = TcpListener::bind(listen).await?;
        let lb = Balancer {
            servers: Arc::new(RwLock::new(vec![initial])),
            current: Arc::new(AtomicUsize::new(0)),
            local: listener.local_addr()?,
            initial,
        };
        let me = lb.clone();
        tokio::spawn(async move {
            loop {
                let (conn, _) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
                    },
                    _ = stop.changed() => return,
                };
                let me = me.clone();
                tokio::spawn(async move { me.carry(conn).await });
            }
        });
        tracing::info!(listen = %lb.local, server = %initial, "API load balancer started");
        Ok(lb)
    }

    /// The URL the agent's clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    pub fn servers(&self) -> Vec<SocketAddr> {
        self.servers.read().clone()
    }

    /// Replaces the servers (the first connection after goes where it went before, if
    /// that server is still listed).
    pub fn set_servers(&self, mut servers: Vec<SocketAddr>) {
        servers.sort();
        servers.dedup();
        if !servers.contains(&self.initial) {
            servers.push(self.initial);
        }
        let mut cur = self.servers.write();
        if *cur == servers {
            return;
        }
        let last = cur.get(self.current.load(Ordering::Relaxed)).copied();
        let at = last
            .and_then(|l| servers.iter().position(|s| *s == l))
            .unwrap_or(0);
        tracing::info!(?servers, "API servers");
        *cur = servers;
        self.current.store(at, Ordering::Relaxed);
    }

    /// A connection to the first server that answers, from the one that answered last.
    async fn dial(&self) -> Option<TcpStream> {
        let servers = self.servers();
        let start = self.current.load(Ordering::Relaxed);
        for k in 0..servers.len() {
            let i = (start + k) % servers.len();
            match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(servers[i])).await {
                Ok(Ok(s)) => {
                    if i != start {
                        tracing::warn!(server = %servers[i], "API server changed: the last one did not answer");
                    }
                    self.current.store(i, Ordering::Relaxed);
                    let _ = s.set_nodelay(true);
                    return Some(s);
                }
                _ => continue,
            }
        }
        None
    }

    async fn carry(&self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        let Some(mut server) = self.dial().await else {
            tracing::warn!("no API server answers");
            return;
        };
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }

    /// Keeps the servers as the `kubernetes` Endpoints list them (read with `client`).
    pub async fn follow(self, client: kube::Client, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let req = http::Request::get("/api/v1/namespaces/default/endpoints/kubernetes")
                .body(Vec::new())
                .expect("valid request");
            if let Ok(ep) = client.request::<serde_json::Value>(req).await {
                let servers = from_endpoints(&ep);
                if !servers.is_empty() {
                    self.set_servers(servers);
                }
            }
        }
    }
}

/// Every address × port of an Endpoints object.
pub fn from_endpoints(ep: &serde_json::Value) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in ep["subsets"].as_array().into_iter().flatten() {
        for a in s["addresses"].as_array().into_iter().flatten() {
            for p in s["ports"].as_array().into_iter().flatten() {
                let ip = a["ip"].as_str().and_then(|ip| ip.parse().ok());
                let port = p["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_give_every_address_and_port() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 6443}]},
                                    {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 7443}]}]});
        let got: Vec<String> = from_endpoints(&ep).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.1:7443"]);
    }

    /// A server that answers every connection with its name.
    async fn named(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let _ = c.write_all(name.as_bytes()).await;
            }
        });
        (addr, task)
    }

    async fn ask(lb: &Balancer) -> String {
        let mut c = TcpStream::connect(lb.local).await.unwrap();
        let mut s = String::new();
        let _ = c.read_to_string(&mut s).await;
        s
    }

    #[tokio::test]
    async fn connections_move_to_a_live_server_when_the_current_one_dies() {
        let (a, a_task) = named("a").await;
        let (b, _b_task) = named("b").await;
        let (_tx, stop) = watch::channel(false);
        let lb = Balancer::start("127.0.0.1:0".parse().unwrap(), a, stop)
            .await
            .unwrap();
        assert_eq!(ask(&lb).await, "a");
        lb.set_servers(vec![b]);
        assert_eq!(lb.servers().len(), 2, "the server it started with is kept");
        assert_eq!(ask(&lb).await, "a", "stays where it was");
        a_task.abort();
        let _ = a_task.await;
        let t = std::time::Instant::now();
        assert_eq!(ask(&lb).await, "b");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(ask(&lb).await, "b", "and stays there");
    }
}
