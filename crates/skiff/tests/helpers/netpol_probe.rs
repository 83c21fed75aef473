//! The server and prober inside the pods of `tests/netpol_model.rs` (busybox has no UDP
//! client or server and knows no SCTP). That test builds it with rustc, statically
//! linked, std only, and puts it in the pods' image as `/bin/netpol-probe`.
//!
//! - `netpol-probe serve NAME` answers on TCP and UDP ports 80 and 81 with NAME, and
//!   answers SCTP INIT chunks to ports 80 and 81 with an INIT ACK whose state cookie is
//!   NAME.
//! - `netpol-probe probe MILLIS FIRST TARGET...` tries every TARGET (`IP:PROTO:PORT`,
//!   PROTO one of tcp, udp, sctp) at once and prints one line per target, in order:
//!   `IP PROTO PORT ANSWER`, ANSWER being the NAME that answered or `-` if none did
//!   within MILLIS milliseconds. The UDP and SCTP probes of the k-th target go from
//!   source port FIRST + k (FIRST 0: any port). A caller that never repeats a port makes
//!   every probe a new flow: a datagram of a flow conntrack already knows (an earlier
//!   probe that used the same ports and was answered) is "established" and passes
//!   whatever the policies say now, as a TCP connection that is already open would.
//!
//! SCTP is spoken on raw sockets, because the kernel it was written for has no SCTP
//! (`CONFIG_IP_SCTP` unset, no modules): the probe is a real SCTP packet (common header,
//! CRC32c, an INIT chunk) that netfilter and conntrack see as SCTP, and the answer is an
//! INIT ACK carrying the verification tag conntrack expects of a reply. No association
//! is set up beyond that, which is all a policy decides on (the first packet of a flow).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const PORTS: [u16; 2] = [80, 81];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("serve"), Some(name)) => serve(name),
        (Some("probe"), Some(millis)) if args.len() > 3 => probe(
            Duration::from_millis(millis.parse().expect("MILLIS")),
            args[3].parse().expect("FIRST"),
            &args[4..],
        ),
        _ => {
            eprintln!("usage: netpol-probe serve NAME | probe MILLIS FIRST IP:PROTO:PORT...");
            std::process::exit(2);
        }
    }
}

fn serve(name: &str) {
    let mut threads = Vec::new();
    for port in PORTS {
        let tcp = TcpListener::bind(("0.0.0.0", port)).expect("tcp listen");
        let answer = format!("{name}\n");
        threads.push(std::thread::spawn(move || {
            for s in tcp.incoming().flatten() {
                let mut s = s;
                let _ = s.write_all(answer.as_bytes());
            }
        }));
        let udp = UdpSocket::bind(("0.0.0.0", port)).expect("udp bind");
        let answer = name.to_string();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(answer.as_bytes(), from);
                }
            }
        }));
    }
    match raw_sctp() {
        Ok(fd) => {
            let name = name.to_string();
            threads.push(std::thread::spawn(move || sctp_answer(fd, &name)));
        }
        Err(e) => eprintln!("no SCTP answers: {e}"),
    }
    println!("serving as {name}");
    for t in threads {
        let _ = t.join();
    }
}

fn probe(wait: Duration, first: u16, targets: &[String]) {
    let deadline = Instant::now() + wait;
    let threads: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let t = t.clone();
            let from = if first == 0 {
                0
            } else {
                first.wrapping_add(k as u16)
            };
            std::thread::spawn(move || {
                let mut f = t.split(':');
                let (ip, proto, port) = (f.next(), f.next(), f.next());
                let ip: Ipv4Addr = ip.and_then(|i| i.parse().ok()).expect("IP");
                let port: u16 = port.and_then(|p| p.parse().ok()).expect("PORT");
                let answer = match proto {
                    Some("tcp") => tcp(ip, port, deadline),
                    Some("udp") => udp(ip, port, from, deadline),
                    Some("sctp") => sctp(ip, port, from, deadline),
                    _ => panic!("PROTO of {t}"),
                };
                format!(
                    "{ip} {} {port} {}",
                    proto.unwrap(),
                    answer.unwrap_or_else(|| "-".into())
                )
            })
        })
        .collect();
    for t in threads {
        println!("{}", t.join().unwrap());
    }
}

fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn tcp(ip: Ipv4Addr, port: u16, deadline: Instant) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((ip, port)), left(deadline)?).ok()?;
    s.set_read_timeout(Some(left(deadline)?)).ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    Some(answer.trim().to_string()).filter(|a| !a.is_empty())
}

fn udp(ip: Ipv4Addr, port: u16, from: u16, deadline: Instant) -> Option<String> {
    let s = UdpSocket::bind(("0.0.0.0", from))
        .or_else(|_| UdpSocket::bind(("0.0.0.0", 0)))
        .ok()?;
    s.connect((ip, port)).ok()?;
    let mut buf = [0u8; 1500];
    // A few tries: a datagram may go before the neighbour is resolved.
    while let Some(rest) = left(deadline) {
        let _ = s.send(b"?");
        s.set_read_timeout(Some(rest.min(Duration::from_millis(300))))
            .ok()?;
        if let Ok(n) = s.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    }
    None
}

fn random() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
    );
    (h.finish() as u32).max(1)
}

// Raw sockets, which std does not offer: glibc's calls, declared here.
#[repr(C)]
struct SockaddrIn {
    family: u16,
    port: u16,
    addr: [u8; 4],
    zero: [u8; 8],
}

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

unsafe extern "C" {
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn sendto(
        fd: i32,
        buf: *const u8,
        len: usize,
        flags: i32,
        addr: *const SockaddrIn,
        addrlen: u32,
    ) -> isize;
    fn recvfrom(
        fd: i32,
        buf: *mut u8,
        len: usize,
        flags: i32,
        addr: *mut SockaddrIn,
        addrlen: *mut u32,
    ) -> isize;
    fn setsockopt(fd: i32, level: i32, name: i32, val: *const Timeval, len: u32) -> i32;
}

const AF_INET: i32 = 2;
const SOCK_RAW: i32 = 3;
const IPPROTO_SCTP: i32 = 132;
const SOL_SOCKET: i32 = 1;
const SO_RCVTIMEO: i32 = 20;

/// A raw IPv4 socket for protocol 132: it receives every SCTP packet for this network
/// namespace (IP header included) and sends SCTP packets the kernel puts an IP header on.
fn raw_sctp() -> std::io::Result<OwnedFd> {
    let fd = unsafe { socket(AF_INET, SOCK_RAW, IPPROTO_SCTP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_to(fd: &OwnedFd, to: Ipv4Addr, packet: &[u8]) {
    let addr = SockaddrIn {
        family: AF_INET as u16,
        port: 0,
        addr: to.octets(),
        zero: [0; 8],
    };
    let size = std::mem::size_of::<SockaddrIn>() as u32;
    unsafe {
        sendto(
            fd.as_raw_fd(),
            packet.as_ptr(),
            packet.len(),
            0,
            &addr,
            size,
        )
    };
}

/// The next packet (source address, the IP packet's payload), or None on timeout.
fn receive(fd: &OwnedFd, buf: &mut [u8], wait: Duration) -> Option<(Ipv4Addr, usize, usize)> {
    let tv = Timeval {
        sec: wait.as_secs() as i64,
        usec: i64::from(wait.subsec_micros()).max(1000),
    };
    let size = std::mem::size_of::<Timeval>() as u32;
    unsafe { setsockopt(fd.as_raw_fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, size) };
    let mut from = SockaddrIn {
        family: 0,
        port: 0,
        addr: [0; 4],
        zero: [0; 8],
    };
    let mut len = std::mem::size_of::<SockaddrIn>() as u32;
    let n = unsafe {
        recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            0,
            &mut from,
            &mut len,
        )
    };
    let n = usize::try_from(n).ok()?;
    let header = usize::from(buf.first()? & 0x0f) * 4;
    (n >= header + 12).then_some((Ipv4Addr::from(from.addr), header, n))
}

/// SCTP's CRC32c (Castagnoli, reflected), as RFC 9260 appendix A computes it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A packet of one chunk: common header (ports, verification tag, checksum) and the
/// chunk (type, flags 0, length, `body`).
fn packet(src: u16, dst: u16, vtag: u32, chunk: u8, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + body.len());
    p.extend(src.to_be_bytes());
    p.extend(dst.to_be_bytes());
    p.extend(vtag.to_be_bytes());
    p.extend([0; 4]);
    p.push(chunk);
    p.push(0);
    p.extend(((4 + body.len()) as u16).to_be_bytes());
    p.extend(body);
    let sum = crc32c(&p);
    // The checksum goes on the wire in the CRC's own (little-endian) byte order.
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

/// An INIT or INIT ACK body: initiate tag, window, one stream each way, initial TSN,
/// then `params`.
fn init_body(tag: u32, params: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(tag.to_be_bytes());
    b.extend(65_536u32.to_be_bytes());
    b.extend(1u16.to_be_bytes());
    b.extend(1u16.to_be_bytes());
    b.extend(random().to_be_bytes());
    b.extend(params);
    b
}

const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const STATE_COOKIE: u16 = 7;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn sctp_answer(fd: OwnedFd, name: &str) {
    let mut cookie = name.as_bytes().to_vec();
    while !cookie.len().is_multiple_of(4) {
        cookie.push(0);
    }
    let mut param = Vec::new();
    param.extend(STATE_COOKIE.to_be_bytes());
    param.extend(((4 + cookie.len()) as u16).to_be_bytes());
    param.extend(&cookie);
    let mut buf = [0u8; 2048];
    loop {
        let Some((from, at, n)) = receive(&fd, &mut buf, Duration::from_secs(3600)) else {
            continue;
        };
        let s = &buf[at..n];
        if s.len() < 32 || s[12] != INIT || !PORTS.contains(&be16(s, 2)) {
            continue;
        }
        let (their_port, our_port, their_tag) = (be16(s, 0), be16(s, 2), be32(s, 16));
        let ack = packet(
            our_port,
            their_port,
            their_tag,
            INIT_ACK,
            &init_body(random(), &param),
        );
        send_to(&fd, from, &ack);
    }
}

fn sctp(ip: Ipv4Addr, port: u16, from: u16, deadline: Instant) -> Option<String> {
    let fd = raw_sctp().ok()?;
    let ours = if from == 0 {
        32_768 + (random() % 28_000) as u16
    } else {
        from
    };
    let tag = random();
    let init = packet(ours, port, 0, INIT, &init_body(tag, &[]));
    let mut buf = [0u8; 2048];
    let mut next_send = Instant::now();
    while left(deadline).is_some() {
        if Instant::now() >= next_send {
            send_to(&fd, ip, &init);
            next_send = Instant::now() + Duration::from_millis(300);
        }
        let wait = left(deadline)?.min(Duration::from_millis(100));
        let Some((from, at, n)) = receive(&fd, &mut buf, wait) else {
            continue;
        };
        let s = &buf[at..n];
        // Their INIT ACK to our INIT: ports swapped, our tag, a state cookie first.
        if from != ip
            || s.len() < 36
            || (be16(s, 0), be16(s, 2), be32(s, 4)) != (port, ours, tag)
            || s[12] != INIT_ACK
            || be16(s, 32) != STATE_COOKIE
        {
            continue;
        }
        let len = usize::from(be16(s, 34)).clamp(4, s.len() - 32);
        let cookie = &s[36..32 + len];
        let name: Vec<u8> = cookie.iter().copied().take_while(|b| *b != 0).collect();
        return Some(String::from_utf8_lossy(&name).into_owned());
    }
    None
}
