//! `skiff bench dns`: the node's cluster DNS against dnsmasq serving the same names from
//! a hosts file, on the same node namespace, each server pinned to one core (CPU 0) and
//! `dnsperf` on the other (CPU 1), alternating, for a fixed time per run. skiff's DNS is
//! queried at the node's pod gateway address (`10.42.N.1:53`), where pods' queries to
//! the `kube-dns` Service end after the proxy's DNAT; the Service address itself is run
//! too, for the cost of the DNAT. Figures are printed side by side with the goals.

use super::netlab::{self, Lab, LabInfo, sock};
use super::{client_for, cpu_seconds, rss_kib};
use anyhow::{Context, anyhow, bail, ensure};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct DnsBenchOptions {
    pub skiff: PathBuf,
    /// Services (names) the servers hold.
    pub services: usize,
    /// Seconds per dnsperf run.
    pub seconds: u64,
    /// Rounds; each runs every server once, the first two in alternating order.
    pub rounds: usize,
    /// dnsperf `-c`: clients (sockets).
    pub clients: usize,
    /// dnsperf `-q`: queries outstanding at most.
    pub outstanding: usize,
    /// Service creates in flight while the Services are made.
    pub concurrency: usize,
}

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// dnsmasq listens on the node namespace's own loopback.
const DNSMASQ_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;
const KUBE_DNS: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
const GOAL_QPS: f64 = 17_000.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Skiff,
    Dnsmasq,
    SkiffVip,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Skiff => "skiff (agent's cluster DNS)",
            Target::Dnsmasq => "dnsmasq (hosts file)",
            Target::SkiffVip => "skiff via kube-dns ClusterIP",
        }
    }
}

struct Run {
    target: Target,
    addr: SocketAddr,
    round: usize,
    qps: f64,
    sent: u64,
    lost: u64,
    noerror_pct: f64,
    rcodes: String,
    /// The server process's CPU over the run, in cores.
    cpu: f64,
    /// How busy CPU 0 (the server's) and CPU 1 (dnsperf's) were over the run, in cores.
    busy: [f64; 2],
}

struct Report {
    services: usize,
    runs: Vec<Run>,
    notes: Vec<String>,
    /// The agent's RSS with no Services of ours, and with all of them.
    rss_kib: [u64; 2],
    problems: Vec<String>,
}

pub async fn dns(opts: DnsBenchOptions) -> anyhow::Result<()> {
    netlab::preflight(&[
        ("dnsperf", "dnsperf"),
        (DNSMASQ, "dnsmasq-base"),
        ("taskset", "util-linux"),
    ])?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    ensure!(
        cores >= 2,
        "needs two cores (server on CPU 0, dnsperf on CPU 1); this machine has {cores}"
    );
    ensure!(
        opts.services > 0 && opts.rounds > 0,
        "--services and --rounds must be at least 1"
    );
    println!(
        "skiff bench dns: {} Services; dnsperf -c {} -q {} for {} s per run on CPU 1, the server pinned to CPU 0; {} rounds",
        opts.services, opts.clients, opts.outstanding, opts.seconds, opts.rounds
    );
    println!("{}", netlab::load_note());
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut lab = Lab::create(&opts.skiff)?;
    let result = tokio::select! {
        r = run(&mut lab, &opts) => r,
        _ = sigint.recv() => Err(anyhow!("interrupted")),
    };
    match result {
        Ok(report) => {
            report.print();
            eprintln!("taking the node down");
            drop(lab);
            Ok(())
        }
        Err(e) => {
            lab.print_log_tails();
            eprintln!(
                "--- tail of dnsmasq.log ---\n{}",
                lab.log_tail("dnsmasq.log")
            );
            eprintln!("taking the node down");
            drop(lab);
            Err(e)
        }
    }
}

async fn run(lab: &mut Lab, opts: &DnsBenchOptions) -> anyhow::Result<Report> {
    eprintln!(
        "node namespace {}: server and agent starting (data in {})",
        lab.node_ns(),
        lab.dir().display()
    );
    lab.start_agent().await?;
    let info = lab.info()?;
    let netns = info.netns_path();
    let (n, conc) = (opts.services, opts.concurrency);
    let (gateway, ips, rss) = {
        let info = info.clone();
        netlab::in_netns(netns.clone(), move || setup(info, n, conc)).await?
    };
    let names: Vec<(String, Ipv4Addr)> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (netlab::service_fqdn(i), *ip))
        .collect();
    let skiff_addr = sock(gateway, 53);
    let vip_addr = sock(KUBE_DNS, 53);
    let dnsmasq_addr = sock(DNSMASQ_ADDR, 53);

    // The same names for both: a shuffled query file, and a hosts file for dnsmasq.
    let queries = lab.dir().join("queries.txt");
    let hosts = lab.dir().join("hosts");
    let mut order: Vec<usize> = (0..names.len()).collect();
    netlab::shuffle(&mut order, 0x5eed);
    let q: String = order
        .iter()
        .map(|&i| format!("{} A\n", names[i].0))
        .collect();
    std::fs::write(&queries, q)?;
    let h: String = names.iter().map(|(n, ip)| format!("{ip} {n}\n")).collect();
    std::fs::write(&hosts, h)?;

    let dnsmasq = lab
        .command("taskset")
        .args(["-c", "0", DNSMASQ])
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--log-facility=-",
            "--bind-interfaces",
            "--port=53",
            "--cache-size=10000",
        ])
        .arg(format!("--listen-address={DNSMASQ_ADDR}"))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(lab.dir().join("dnsmasq.log"))?)
        .spawn()
        .context("starting dnsmasq")?;
    let dnsmasq_pid = lab.adopt(dnsmasq);

    // Real answers from both (not REFUSED or NXDOMAIN), for the same names.
    let mut sample: Vec<(String, Ipv4Addr)> = names.clone();
    netlab::shuffle(&mut sample, 99);
    sample.truncate(50);
    let mut notes = Vec::new();
    let vip_ok = {
        let sample = sample.clone();
        netlab::blocking_in_netns(netns.clone(), move || {
            wait_answers(dnsmasq_addr, &sample[..1], Duration::from_secs(20))?;
            check_answers(dnsmasq_addr, &sample).context("dnsmasq")?;
            check_answers(skiff_addr, &sample).context("skiff's DNS at the gateway")?;
            Ok(check_answers(vip_addr, &sample[..5]).err())
        })
        .await?
    };
    let mut targets = vec![Target::Skiff, Target::Dnsmasq];
    match vip_ok {
        None => targets.push(Target::SkiffVip),
        Some(e) => notes.push(format!(
            "queries to the kube-dns ClusterIP {vip_addr} failed ({e:#}); that row is left out"
        )),
    }
    eprintln!(
        "both servers answer the {} names (checked 50 at random); pinning the agent (pid {}) to CPU 0",
        names.len(),
        info.agent_pid
    );
    pin(info.agent_pid, "0")?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        let mut order = targets.clone();
        if round % 2 == 1 {
            order.swap(0, 1);
        }
        for t in order {
            let (addr, pid) = match t {
                Target::Skiff => (skiff_addr, info.agent_pid),
                Target::Dnsmasq => (dnsmasq_addr, dnsmasq_pid),
                Target::SkiffVip => (vip_addr, info.agent_pid),
            };
            eprintln!(
                "round {}: {} at {addr}, {} s",
                round + 1,
                t.label(),
                opts.seconds
            );
            let cpu0 = cpu_seconds(pid);
            let stat0 = cpu_stat();
            let t0 = Instant::now();
            let out = dnsperf(&info, addr, &queries, opts).await?;
            let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
            let stat1 = cpu_stat();
            let mut r =
                parse_dnsperf(&out).with_context(|| format!("reading dnsperf's output:\n{out}"))?;
            r.target = t;
            r.addr = addr;
            r.round = round + 1;
            r.cpu = cpu;
            for (i, b) in r.busy.iter_mut().enumerate() {
                if let (Some(a), Some(z)) = (stat0.get(i), stat1.get(i)) {
                    *b = (z.0 - a.0) as f64 / ((z.1 - a.1) as f64).max(1.0);
                }
            }
            runs.push(r);
        }
    }
    Ok(Report {
        services: names.len(),
        runs,
        notes,
        rss_kib: rss,
        problems: lab.log_problems("agent.log"),
    })
}

/// Services `svc-0..n`; waits until the node's DNS answers the last one. Returns the
/// gateway address (where it serves) and the ClusterIPs.
async fn setup(
    info: LabInfo,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Ipv4Addr, Vec<Ipv4Addr>, [u64; 2])> {
    let client = client_for(&info.kubeconfig).await?;
    let gateway = netlab::wait_node_ready(&client).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss0 = rss_kib(info.agent_pid);
    eprintln!("node Ready (pod gateway {gateway}); creating {n} Services");
    let t0 = Instant::now();
    let ips = netlab::create_services(&client, 0..n, concurrency).await?;
    eprintln!("  created in {:.1} s", t0.elapsed().as_secs_f64());
    let last = vec![(netlab::service_fqdn(n - 1), ips[n - 1])];
    let server = sock(gateway, 53);
    netlab::blocking_in_netns(info.netns_path(), move || {
        wait_answers(server, &last, Duration::from_secs(300))
    })
    .await?;
    eprintln!(
        "  all in the node's DNS after {:.1} s; letting the node settle",
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok((gateway, ips, [rss0, rss_kib(info.agent_pid)]))
}

/// Pins every thread of `pid` to `cpus` (`taskset -a -p -c`).
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .context("running taskset")?;
    ensure!(
        out.status.success(),
        "taskset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn dnsperf(
    info: &LabInfo,
    addr: SocketAddr,
    queries: &Path,
    opts: &DnsBenchOptions,
) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("taskset");
    cmd.args(["-c", "1", "nsenter"])
        .arg(format!("--net={}", info.netns_path().display()))
        .args(["--", "dnsperf", "-s"])
        .arg(addr.ip().to_string())
        .args(["-p", &addr.port().to_string(), "-d"])
        .arg(queries)
        .args([
            "-l",
            &opts.seconds.to_string(),
            "-c",
            &opts.clients.to_string(),
            "-q",
            &opts.outstanding.to_string(),
        ])
        .process_group(0)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(opts.seconds + 30), cmd.output())
        .await
        .context("dnsperf did not finish")?
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "dnsperf failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

fn parse_dnsperf(out: &str) -> anyhow::Result<Run> {
    let field = |name: &str| -> Option<&str> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
    };
    let first_num = |s: &str| -> Option<f64> { s.split_whitespace().next()?.parse().ok() };
    let qps = field("Queries per second:")
        .and_then(first_num)
        .context("no \"Queries per second\"")?;
    let sent = field("Queries sent:").and_then(first_num).unwrap_or(0.0) as u64;
    let lost = field("Queries lost:").and_then(first_num).unwrap_or(0.0) as u64;
    let rcodes = field("Response codes:").unwrap_or("").to_string();
    // "NOERROR 123 (100.00%), NXDOMAIN 4 (0.00%)"
    let noerror_pct = rcodes
        .split(',')
        .find_map(|p| {
            let p = p.trim().strip_prefix("NOERROR ")?;
            let pct = p.split('(').nth(1)?.trim_end_matches([')', '%', ' ']);
            pct.parse::<f64>().ok()
        })
        .unwrap_or(0.0);
    Ok(Run {
        target: Target::Skiff,
        addr: sock(Ipv4Addr::UNSPECIFIED, 0),
        round: 0,
        qps,
        sent,
        lost,
        noerror_pct,
        rcodes,
        cpu: 0.0,
        busy: [0.0; 2],
    })
}

/// Per CPU, from /proc/stat: (busy ticks, all ticks).
fn cpu_stat() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            let total: u64 = f.iter().take(8).sum();
            // user nice system idle iowait irq softirq steal
            let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// A one-question `A` query over UDP: (response code, the A records).
fn query_a(server: SocketAddr, name: &str, id: u16) -> anyhow::Result<(u8, Vec<Ipv4Addr>)> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(server)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    let mut buf = [0u8; 1500];
    let mut last = None;
    for _ in 0..3 {
        s.send(&q)?;
        match s.recv(&mut buf) {
            Ok(n) => return parse_answer(&buf[..n], id),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow!("no answer"), anyhow::Error::from))
        .with_context(|| format!("querying {server} for {name}"))
}

fn parse_answer(m: &[u8], id: u16) -> anyhow::Result<(u8, Vec<Ipv4Addr>)> {
    ensure!(m.len() >= 12, "short reply");
    ensure!(
        u16::from_be_bytes([m[0], m[1]]) == id,
        "reply for another query"
    );
    let rcode = m[3] & 0x0f;
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let an = u16::from_be_bytes([m[6], m[7]]);
    let mut at = 12;
    let skip_name = |mut at: usize| -> anyhow::Result<usize> {
        loop {
            let len = *m.get(at).context("truncated name")? as usize;
            if len == 0 {
                return Ok(at + 1);
            }
            if len & 0xc0 == 0xc0 {
                return Ok(at + 2);
            }
            at += 1 + len;
        }
    };
    for _ in 0..qd {
        at = skip_name(at)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..an {
        at = skip_name(at)?;
        let rr = m.get(at..at + 10).context("truncated record")?;
        let (ty, len) = (
            u16::from_be_bytes([rr[0], rr[1]]),
            u16::from_be_bytes([rr[8], rr[9]]) as usize,
        );
        at += 10;
        let data = m.get(at..at + len).context("truncated data")?;
        if ty == 1 && len == 4 {
            ips.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += len;
    }
    Ok((rcode, ips))
}

/// Each name answers NOERROR with exactly its address.
fn check_answers(server: SocketAddr, names: &[(String, Ipv4Addr)]) -> anyhow::Result<()> {
    for (i, (name, want)) in names.iter().enumerate() {
        let (rcode, ips) = query_a(server, name, 0x4000 + i as u16)?;
        if rcode != 0 || ips != [*want] {
            bail!("{server} answered {name} with rcode {rcode} and {ips:?}, not {want}");
        }
    }
    Ok(())
}

fn wait_answers(
    server: SocketAddr,
    names: &[(String, Ipv4Addr)],
    within: Duration,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        match check_answers(server, names) {
            Ok(()) => return Ok(()),
            Err(e) if t0.elapsed() > within => {
                return Err(e.context(format!("not answering within {within:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

impl Report {
    fn print(&self) {
        println!();
        println!(
            "{:<29} {:<14} {:>5} {:>9} {:>9} {:>5} {:>8} {:>7} {:>12} {:>6} {:>6}",
            "server",
            "address",
            "round",
            "queries/s",
            "sent",
            "lost",
            "NOERROR",
            "srv CPU",
            "q/s per core",
            "CPU0",
            "CPU1"
        );
        for r in &self.runs {
            println!(
                "{:<29} {:<14} {:>5} {:>9.0} {:>9} {:>5} {:>7.2}% {:>6.0}% {:>12.0} {:>5.0}% {:>5.0}%",
                r.target.label(),
                r.addr.to_string(),
                r.round,
                r.qps,
                r.sent,
                r.lost,
                r.noerror_pct,
                r.cpu * 100.0,
                r.qps / r.cpu.max(1e-9),
                r.busy[0] * 100.0,
                r.busy[1] * 100.0
            );
            if r.noerror_pct < 99.9 {
                println!("    response codes: {}", r.rcodes);
            }
        }
        let mean = |t: Target, f: fn(&Run) -> f64| {
            let v: Vec<f64> = self.runs.iter().filter(|r| r.target == t).map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let qps = |r: &Run| r.qps;
        let per_core = |r: &Run| r.qps / r.cpu.max(1e-9);
        let cpu = |r: &Run| r.cpu;
        println!();
        println!(
            "{:<40} {:>12} {:>10} {:>16}",
            "mean of the runs", "queries/s", "srv CPU", "q/s per core"
        );
        let rows = [Target::Skiff, Target::Dnsmasq, Target::SkiffVip];
        for t in rows {
            if let (Some(q), Some(c), Some(p)) = (mean(t, qps), mean(t, cpu), mean(t, per_core)) {
                println!(
                    "{:<40} {:>12.0} {:>9.0}% {:>16.0}",
                    t.label(),
                    q,
                    c * 100.0,
                    p
                );
            }
        }
        let (sq, dq) = (
            mean(Target::Skiff, qps).unwrap_or(0.0),
            mean(Target::Dnsmasq, qps).unwrap_or(0.0),
        );
        let (sp, dp) = (
            mean(Target::Skiff, per_core).unwrap_or(0.0),
            mean(Target::Dnsmasq, per_core).unwrap_or(0.0),
        );
        println!(
            "{:<40} {:>11.2}x {:>10} {:>15.2}x   (goal >= 1.0)",
            "skiff / dnsmasq",
            sq / dq.max(1e-9),
            "",
            sp / dp.max(1e-9)
        );
        println!(
            "{:<40} {:>11.2}x {:>10} {:>15.2}x   (goal >= 1.0)",
            "skiff / 17,000 q/s per core",
            sq / GOAL_QPS,
            "",
            sp / GOAL_QPS
        );
        println!(
            "  {} names (svc-i.default.svc.cluster.local A, shuffled); skiff queried at the node's pod gateway address,",
            self.services
        );
        println!(
            "  where pods' queries to kube-dns end after the proxy's DNAT; dnsmasq on the node namespace's 127.0.0.1;"
        );
        println!(
            "  srv CPU: the server process's CPU over the run (the whole agent for skiff), pinned to CPU 0; dnsperf on CPU 1;"
        );
        println!(
            "  q/s per core = queries/s / srv CPU: what one core of the server would answer; when srv CPU is well under 100%"
        );
        println!(
            "  the run was bound by dnsperf's core (CPU1 busy), not by the server, and queries/s is only a lower bound;"
        );
        println!(
            "  lost: queries dnsperf had no answer to within its 5 s timeout (dropped, as when a socket buffer overflows)"
        );
        println!(
            "agent RSS: {:.1} MB with no Services of ours, {:.1} MB with {} (no endpoints), {:+.1} MB",
            self.rss_kib[0] as f64 / 1024.0,
            self.rss_kib[1] as f64 / 1024.0,
            self.services,
            (self.rss_kib[1] as f64 - self.rss_kib[0] as f64) / 1024.0
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        super::proxy::print_problems(&self.problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dnsperf_statistics() {
        let out = "Statistics:\n\n  Queries sent:         986082\n  Queries completed:    985958 (99.99%)\n  Queries lost:         124 (0.01%)\n\n  Response codes:       NOERROR 985950 (100.00%), NXDOMAIN 8 (0.00%)\n  Average packet size:  request 45, response 61\n  Run time (s):         10.001\n  Queries per second:   98588.11\n";
        let r = parse_dnsperf(out).unwrap();
        assert_eq!((r.sent, r.lost), (986082, 124));
        assert!((r.qps - 98588.11).abs() < 1e-6);
        assert!((r.noerror_pct - 100.0).abs() < 1e-9);
        assert!(parse_dnsperf("no statistics").is_err());
    }

    #[test]
    fn reads_an_a_answer() {
        // id 7, response NOERROR, 1 question, 1 answer (name as a pointer to the question).
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 43, 0, 9]);
        assert_eq!(
            parse_answer(&m, 7).unwrap(),
            (0, vec![Ipv4Addr::new(10, 43, 0, 9)])
        );
        assert!(parse_answer(&m, 8).is_err());
        m[3] = 0x83; // NXDOMAIN
        assert_eq!(parse_answer(&m, 7).unwrap().0, 3);
    }
}
