//! The node's own readings, from `/proc` (the agent's network namespace for interfaces)
//! and the filesystem of its data directory. Parsing is pure; `read` does the IO.

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Host {
    /// Seconds since the epoch when the machine booted.
    pub boot_time: Option<i64>,
    /// CPU time spent outside idle and iowait, all cores, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
    pub interfaces: Vec<Interface>,
    pub fs: Option<Fs>,
}

/// Bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub total: u64,
    pub free: u64,
    pub inactive_file: u64,
    pub anon: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fs {
    pub capacity: u64,
    pub free: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// USER_HZ, fixed at 100 by Linux's ABI: one tick is 10 ms.
const NS_PER_TICK: u64 = 10_000_000;

pub fn read(data_dir: &Path) -> Host {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let (cpu_ns, boot_time) = parse_stat(&stat);
    Host {
        boot_time,
        cpu_ns,
        memory: parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()),
        interfaces: parse_net_dev(&std::fs::read_to_string("/proc/net/dev").unwrap_or_default()),
        fs: fs(data_dir),
    }
}

/// The busy CPU time (user, nice, system, irq, softirq, steal) and the boot time.
pub fn parse_stat(text: &str) -> (Option<u64>, Option<i64>) {
    let mut cpu = None;
    let mut btime = None;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let t: Vec<u64> = f.filter_map(|v| v.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is in user).
                if t.len() >= 8 {
                    let busy = t[0] + t[1] + t[2] + t[5] + t[6] + t[7];
                    cpu = Some(busy * NS_PER_TICK);
                }
            }
            Some("btime") => btime = f.next().and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    (cpu, btime)
}

pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let kib = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(Memory {
        total: kib("MemTotal")? * 1024,
        free: kib("MemFree")? * 1024,
        inactive_file: kib("Inactive(file)").unwrap_or(0) * 1024,
        anon: kib("AnonPages").unwrap_or(0) * 1024,
    })
}

/// Interfaces with their counters, leaving out loopback and pods' veth ends (counted
/// in their pods).
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.starts_with("veth") {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            // Receive: bytes packets errs …(8 fields); transmit: bytes packets errs …
            (v.len() >= 11).then(|| Interface {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_errors: v[2],
                tx_bytes: v[8],
                tx_errors: v[10],
            })
        })
        .collect()
}

fn fs(dir: &Path) -> Option<Fs> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = s.fragment_size() as u64;
    Some(Fs {
        capacity: s.blocks() as u64 * frag,
        free: s.blocks_free() as u64 * frag,
        available: s.blocks_available() as u64 * frag,
        inodes: s.files() as u64,
        inodes_free: s.files_free() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat =
            "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nbtime 1700000000\n";
        assert_eq!(
            parse_stat(stat),
            (Some(161 * NS_PER_TICK), Some(1_700_000_000))
        );
        let mem = "MemTotal:       2000 kB\nMemFree:         500 kB\nMemAvailable:   1200 kB\nInactive(file):  300 kB\nAnonPages:       400 kB\n";
        assert_eq!(
            parse_meminfo(mem),
            Some(Memory {
                total: 2000 * 1024,
                free: 500 * 1024,
                inactive_file: 300 * 1024,
                anon: 400 * 1024
            })
        );
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 10 2 0 0 0 0 0 2000 20 3 0 0 0 0 0\nveth1234: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(dev),
            vec![Interface {
                name: "eth0".into(),
                rx_bytes: 1000,
                rx_errors: 2,
                tx_bytes: 2000,
                tx_errors: 3
            }]
        );
    }
}
