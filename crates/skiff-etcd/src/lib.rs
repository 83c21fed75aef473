//! The etcd member a server runs with `--cluster-init`, as k3s embeds one: Debian's
//! `etcd` binary supervised like the agent's containerd (generated flags, restarted with
//! back-off, stopped with the server and killed if the server dies), its data under
//! `<data-dir>/db/etcd`, client and peer ports of its own so several servers fit on one
//! machine, and mutual TLS on both from certificates the cluster CA signs.
//! A member dies with its server, as k3s' in-process etcd does: it runs under util-linux'
//! `setpriv --pdeathsig KILL` (a parent-death signal without `unsafe` here). One left
//! anyway is stopped by the next start on the same data dir.

pub mod members;
pub mod snapshot;

use skiff_pki::ClusterPki;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("certificates: {0}")]
    Pki(String),
    #[error("etcd: {0}")]
    Etcd(String),
    #[error(
        "this server's etcd member was removed from the cluster; to join again, delete {0} and start with --server and --token"
    )]
    Removed(PathBuf),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One member: who it is and where it listens.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    /// `<data-dir>/db/etcd`.
    pub data_dir: PathBuf,
    /// Certificates and keys, `<data-dir>/tls/etcd`.
    pub tls_dir: PathBuf,
    /// The address other members and servers reach this one on.
    pub advertise: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
    /// `(name, peer URL)` of the members of the cluster this one joins, itself included;
    /// empty for the first member of a new cluster.
    pub join: Vec<(String, String)>,
    /// More of etcd's flags, `name=value` (k3s' `--etcd-arg`), after skiff's own: etcd
    /// takes the last of a repeated flag, so these override.
    pub extra: Vec<String>,
}

impl Member {
    /// The member of the server whose data dir is `data_dir`, as a client on its
    /// machine reaches it (commands run beside a server: snapshots, membership).
    pub fn of_server(data_dir: &Path, client_port: u16) -> Member {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "skiff".into());
        Member {
            name: host,
            data_dir: data_dir.join("db").join("etcd"),
            tls_dir: data_dir.join("tls").join("etcd"),
            advertise: IpAddr::from([127, 0, 0, 1]),
            client_port,
            peer_port: 0,
            join: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}", sock(self.advertise, self.peer_port))
    }

    pub fn client_url(&self) -> String {
        format!("https://{}", sock(self.advertise, self.client_port))
    }

    /// Where this server's own API server talks to its member.
    pub fn local_client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn tls(&self, f: &str) -> String {
        self.tls_dir.join(f).display().to_string()
    }

    /// etcd's command line for this member.
    pub fn args(&self) -> Vec<String> {
        let mut listen_client = vec![self.local_client_url()];
        if !self.advertise.is_loopback() {
            listen_client.push(self.client_url());
        }
        let (cluster, state) = if self.join.is_empty() {
            (format!("{}={}", self.name, self.peer_url()), "new")
        } else {
            let all: Vec<String> = self.join.iter().map(|(n, u)| format!("{n}={u}")).collect();
            (all.join(","), "existing")
        };
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", listen_client.join(",")),
            format!("--advertise-client-urls={}", self.client_url()),
            format!("--listen-peer-urls={}", self.peer_url()),
            format!("--initial-advertise-peer-urls={}", self.peer_url()),
            format!("--initial-cluster={cluster}"),
            format!("--initial-cluster-state={state}"),
            "--client-cert-auth".into(),
            format!("--trusted-ca-file={}", self.tls("ca.crt")),
            format!("--cert-file={}", self.tls("server.crt")),
            format!("--key-file={}", self.tls("server.key")),
            "--peer-client-cert-auth".into(),
            format!("--peer-trusted-ca-file={}", self.tls("ca.crt")),
            format!("--peer-cert-file={}", self.tls("peer.crt")),
            format!("--peer-key-file={}", self.tls("peer.key")),
            // Revisions are compacted by the API server, as with SQLite.
            "--auto-compaction-retention=0".into(),
            // A dead leader is replaced in 0.6-1.2 s rather than etcd's 1-2 s, so writes
            // through the other servers resume within the 2 s failover goal; still six
            // heartbeats (etcd's 100 ms) of slack before a busy leader is deposed.
            "--election-timeout=600".into(),
            "--logger=zap".into(),
        ];
        args.extend(
            self.extra
                .iter()
                .map(|a| format!("--{}", a.trim_start_matches('-'))),
        );
        args
    }

    /// The member's certificates, made once from the cluster CA: serving and peer
    /// certificates for its addresses, and the client certificate the API server uses.
    pub fn ensure_certs(&self, pki: &ClusterPki) -> Result<()> {
        std::fs::create_dir_all(&self.tls_dir)?;
        let dns = vec!["localhost".to_string(), self.name.clone()];
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
        if !ips.contains(&self.advertise) {
            ips.push(self.advertise);
        }
        let pki_err = |e: skiff_pki::Error| Error::Pki(e.to_string());
        write_once(&self.tls_dir, "ca.crt", None, || {
            Ok((pki.ca_cert_pem.clone(), String::new()))
        })?;
        write_once(&self.tls_dir, "server.crt", Some("server.key"), || {
            pki.issue_serving_cert(&dns, &ips).map_err(pki_err)
        })?;
        write_once(&self.tls_dir, "peer.crt", Some("peer.key"), || {
            pki.issue_peer_cert(&dns, &ips).map_err(pki_err)
        })?;
        write_once(&self.tls_dir, "client.crt", Some("client.key"), || {
            pki.issue_client_cert("skiff-etcd-client", &[], 3650)
                .map_err(pki_err)
        })
    }

    /// How the API server reaches its member.
    pub fn store_config(&self) -> Result<skiff_store::EtcdConfig> {
        let read = |f: &str| std::fs::read(self.tls_dir.join(f));
        Ok(skiff_store::EtcdConfig {
            endpoints: vec![self.local_client_url()],
            ca: Some(read("ca.crt")?),
            cert: Some(read("client.crt")?),
            key: Some(read("client.key")?),
        })
    }
}

/// Adds `me` to the cluster whose member answers at `client_url` (as the member list's
/// newest) and returns the `(name, peer URL)` of every member, `me` included, for its
/// first start. The client certificate is `me`'s own, from the shared CA.
pub async fn add_member(client_url: &str, me: &Member) -> Result<Vec<(String, String)>> {
    let mut client = connect_to(client_url, me).await?;
    // etcd refuses a new member while one it has is not yet active (its strict
    // reconfiguration check: "unhealthy cluster"), as right after another joined.
    let mut tries = 0;
    let resp = loop {
        match client.member_add([me.peer_url()], None).await {
            Ok(r) => break r,
            Err(e) if tries < RECONFIG_TRIES && refused_for_now(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(Error::Etcd(format!("{client_url}: {e}"))),
        }
    };
    Ok(resp
        .member_list()
        .iter()
        .map(|m| {
            let peer = m.peer_urls().first().cloned().unwrap_or_default();
            // The member just added has no name until it starts: it is `me`.
            let name = match m.name() {
                "" => me.name.clone(),
                n => n.to_string(),
            };
            (name, peer)
        })
        .collect())
}

/// Seconds a membership change is retried while etcd refuses it for now.
pub(crate) const RECONFIG_TRIES: u32 = 30;

/// etcd's strict reconfiguration check refuses a membership change until every member
/// has been connected for a while ("unhealthy cluster"), as right after a join.
pub(crate) fn refused_for_now(e: &etcd_client::Error) -> bool {
    e.to_string().contains("unhealthy cluster")
}

/// A client of the member, with its own client certificate.
pub(crate) async fn connect(me: &Member) -> Result<etcd_client::Client> {
    connect_to(&me.local_client_url(), me).await
}

async fn connect_to(client_url: &str, me: &Member) -> Result<etcd_client::Client> {
    let cfg = me.store_config()?;
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(
            cfg.ca.unwrap_or_default(),
        ))
        .identity(etcd_client::Identity::from_pem(
            cfg.cert.unwrap_or_default(),
            cfg.key.unwrap_or_default(),
        ));
    let opts = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5));
    let endpoint = client_url.trim_start_matches("https://");
    etcd_client::Client::connect([endpoint], Some(opts))
        .await
        .map_err(|e| Error::Etcd(format!("{client_url}: {e}")))
}

/// Whether the member's data dir already holds a member (joined or started before).
pub fn has_data(me: &Member) -> bool {
    me.data_dir.join("member").exists()
}

/// Marks a member's first start until it has answered a request. etcd opens its client
/// port before it has bootstrapped; a member killed in between can come back unable to
/// elect itself and never answer (seen with Debian's etcd 3.4 killed right after its
/// port opened). Data with the mark is from such a start: nothing was ever written.
fn bootstrap_mark(me: &Member) -> PathBuf {
    me.data_dir.with_extension("bootstrapping")
}

/// Call before the member starts: marks a first start.
pub fn begin_bootstrap(me: &Member) -> Result<()> {
    if !has_data(me) {
        std::fs::write(bootstrap_mark(me), b"")?;
    }
    Ok(())
}

/// Call once the member has answered: its data is a member's from now on.
pub fn bootstrapped(me: &Member) -> Result<()> {
    match std::fs::remove_file(bootstrap_mark(me)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Moves aside the data of a first member whose first start never answered (so it
/// starts afresh), returning where it went; data without the mark is never touched.
pub fn set_aside_unfinished(me: &Member) -> Result<Option<PathBuf>> {
    if !(has_data(me) && bootstrap_mark(me).exists()) {
        return Ok(None);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = me.data_dir.with_extension(format!("unfinished-{secs}"));
    std::fs::rename(&me.data_dir, &aside)?;
    Ok(Some(aside))
}

fn sock(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

fn write_once(
    dir: &Path,
    cert: &str,
    key: Option<&str>,
    make: impl FnOnce() -> Result<(String, String)>,
) -> Result<()> {
    if dir.join(cert).exists() && key.is_none_or(|k| dir.join(k).exists()) {
        return Ok(());
    }
    let (c, k) = make()?;
    skiff_pki::write_private(&dir.join(cert), c.as_bytes())?;
    if let Some(kf) = key {
        skiff_pki::write_private(&dir.join(kf), k.as_bytes())?;
    }
    Ok(())
}

/// Runs the member until `shutdown`, restarting it when it exits (1 s doubling to 30 s),
/// unless it says it was removed from the cluster. A member left by a server that died
/// is stopped first.
pub async fn supervise(member: Member, shutdown: watch::Receiver<bool>) -> Result<()> {
    std::fs::create_dir_all(&member.data_dir)?;
    stop_leftovers(&member.data_dir).await;
    tracing::info!(client = %member.client_url(), "starting the etcd member");
    let removed = |out: &str| match members::says_removed(out) {
        true => Err(Error::Removed(member.data_dir.clone())),
        false => Ok(()),
    };
    let command = || {
        let mut cmd = etcd_command();
        cmd.args(member.args());
        cmd
    };
    let log = member.data_dir.with_extension("log");
    skiff_supervise::supervise("etcd", &log, command, removed, STOP_GRACE, shutdown).await
}

/// How long a member gets to stop after SIGTERM.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// `etcd`, killed when the thread that starts it dies (a runtime worker, which lives as
/// long as the server), under `setpriv` where util-linux has it.
pub(crate) fn etcd_command() -> tokio::process::Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if !Path::new(SETPRIV).exists() {
        return tokio::process::Command::new("etcd");
    }
    let mut cmd = tokio::process::Command::new(SETPRIV);
    cmd.args(["--pdeathsig", "KILL", "--", "etcd"]);
    cmd
}

/// Stops an etcd an earlier run left on this data dir (SIGTERM, SIGKILL after 10 s).
async fn stop_leftovers(data_dir: &Path) {
    let want = format!("--data-dir={}", data_dir.display());
    for pid in skiff_supervise::running("etcd", |args| args.contains(&want.as_bytes())) {
        tracing::warn!(pid, "etcd left running by an earlier server; stopping it");
        skiff_supervise::stop_leftover("etcd", pid, STOP_GRACE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(join: Vec<(String, String)>) -> Member {
        Member {
            name: "s1".into(),
            data_dir: "/d/db/etcd".into(),
            tls_dir: "/d/tls/etcd".into(),
            advertise: IpAddr::from([10, 0, 0, 5]),
            client_port: 2379,
            peer_port: 2380,
            join,
            extra: vec!["election-timeout=700".into()],
        }
    }

    #[test]
    fn a_first_member_starts_a_cluster_of_its_own_with_tls_everywhere() {
        let a = member(vec![]).args();
        for want in [
            "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379",
            "--listen-peer-urls=https://10.0.0.5:2380",
            "--initial-cluster=s1=https://10.0.0.5:2380",
            "--initial-cluster-state=new",
            "--client-cert-auth",
            "--peer-client-cert-auth",
            "--peer-cert-file=/d/tls/etcd/peer.crt",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        // `--etcd-arg` comes after skiff's own flag: etcd takes the last.
        let timeouts: Vec<&String> = a
            .iter()
            .filter(|x| x.starts_with("--election-timeout"))
            .collect();
        assert_eq!(
            timeouts,
            ["--election-timeout=600", "--election-timeout=700"]
        );
    }

    #[test]
    fn a_joining_member_names_the_whole_cluster() {
        let a = member(vec![
            ("s0".into(), "https://10.0.0.4:2380".into()),
            ("s1".into(), "https://10.0.0.5:2380".into()),
        ])
        .args();
        assert!(a.contains(
            &"--initial-cluster=s0=https://10.0.0.4:2380,s1=https://10.0.0.5:2380".to_string()
        ));
        assert!(a.contains(&"--initial-cluster-state=existing".to_string()));
    }

    #[test]
    fn only_data_of_an_unanswered_first_start_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut me = member(vec![]);
        me.data_dir = dir.path().join("etcd");
        let data = me.data_dir.join("member");
        // A first start that answered keeps its data.
        begin_bootstrap(&me).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        bootstrapped(&me).unwrap();
        assert_eq!(set_aside_unfinished(&me).unwrap(), None);
        begin_bootstrap(&me).unwrap();
        assert!(
            !bootstrap_mark(&me).exists(),
            "a restart is not a first start"
        );
        // One that never answered is moved aside.
        std::fs::write(bootstrap_mark(&me), b"").unwrap();
        let aside = set_aside_unfinished(&me).unwrap().unwrap();
        assert!(aside.join("member").exists() && !data.exists());
    }
}
