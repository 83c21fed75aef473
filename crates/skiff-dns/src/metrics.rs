//! Prometheus text on `/metrics`, in CoreDNS's metric names so dashboards and alerts
//! written for kube-dns keep working: requests by protocol, family and type, responses
//! by rcode and the plugin CoreDNS would credit (`kubernetes`, `forward`, `cache`),
//! request durations, cache hits, misses and entries, and per-upstream forwards.
//! Counters are plain atomics bumped on the query path (no locks, no allocation).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::TcpListener;

/// Query types CoreDNS reports by name; the rest are `other`.
const TYPES: [&str; 13] = [
    "A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "HTTPS", "SVCB", "ANY", "other",
];
/// Rcodes by value; 17 stands for any other.
const RCODES: [&str; 18] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
    "BADVERS", "other",
];
/// CoreDNS's request duration buckets: 0.25 ms doubling sixteen times.
const BUCKETS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// Who answered, as CoreDNS's `plugin` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// The server itself (FORMERR, NOTIMP, overload).
    Server,
    Kubernetes,
    Forward,
    Cache,
}

const PLUGINS: [&str; 4] = ["", "kubernetes", "forward", "cache"];

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// Every counter the server keeps.
pub struct Metrics {
    server: String,
    /// `[proto][family][type]`.
    requests: [[[AtomicU64; TYPES.len()]; 2]; 2],
    /// `[plugin][rcode]`.
    responses: [[AtomicU64; RCODES.len()]; PLUGINS.len()],
    /// `[type][bucket]`, then the `+Inf` count and the sum in nanoseconds.
    durations: [[AtomicU64; BUCKETS]; TYPES.len()],
    duration_count: [AtomicU64; TYPES.len()],
    duration_nanos: [AtomicU64; TYPES.len()],
    /// `[success, denial]`.
    cache_hits: [AtomicU64; 2],
    cache_misses: AtomicU64,
    cache_entries: [AtomicU64; 2],
    upstreams: Vec<Upstream>,
}

struct Upstream {
    to: SocketAddr,
    requests: AtomicU64,
    failures: AtomicU64,
    responses: [AtomicU64; RCODES.len()],
}

/// Index of a query type in [`TYPES`].
pub fn type_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        5 => 2,
        15 => 3,
        2 => 4,
        12 => 5,
        6 => 6,
        33 => 7,
        16 => 8,
        65 => 9,
        64 => 10,
        255 => 11,
        _ => 12,
    }
}

fn rcode_index(rcode: u16) -> usize {
    usize::from(rcode).min(RCODES.len() - 1)
}

impl Metrics {
    /// `server` is CoreDNS's `dns://<addr>` label; `upstreams` get a counter each.
    pub fn new(server: String, upstreams: &[SocketAddr]) -> Metrics {
        Metrics {
            server,
            requests: std::array::from_fn(|_| std::array::from_fn(|_| counters())),
            responses: std::array::from_fn(|_| counters()),
            durations: std::array::from_fn(|_| counters()),
            duration_count: counters(),
            duration_nanos: counters(),
            cache_hits: counters(),
            cache_misses: AtomicU64::new(0),
            cache_entries: counters(),
            upstreams: upstreams
                .iter()
                .map(|to| Upstream {
                    to: *to,
                    requests: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    responses: counters(),
                })
                .collect(),
        }
    }

    pub fn request(&self, proto: Proto, ipv6: bool, qtype: u16) {
        let p = usize::from(proto == Proto::Tcp);
        self.requests[p][usize::from(ipv6)][type_index(qtype)].fetch_add(1, Relaxed);
    }

    /// One reply sent: its rcode, who made it, and how long it took since the request.
    pub fn response(&self, plugin: Plugin, rcode: u16, qtype: u16, took: Duration) {
        self.responses[plugin as usize][rcode_index(rcode)].fetch_add(1, Relaxed);
        let t = type_index(qtype);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // Bucket i's bound is 0.25 ms × 2^i; counts are cumulative when rendered.
        let mut bound = 250_000u64;
        for b in &self.durations[t] {
            if nanos <= bound {
                b.fetch_add(1, Relaxed);
                break;
            }
            bound *= 2;
        }
        self.duration_count[t].fetch_add(1, Relaxed);
        self.duration_nanos[t].fetch_add(nanos, Relaxed);
    }

    pub fn cache_hit(&self, denial: bool) {
        self.cache_hits[usize::from(denial)].fetch_add(1, Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }

    pub fn cache_entries(&self, success: usize, denial: usize) {
        self.cache_entries[0].store(success as u64, Relaxed);
        self.cache_entries[1].store(denial as u64, Relaxed);
    }

    pub fn forward_request(&self, upstream: usize) {
        if let Some(u) = self.upstreams.get(upstream) {
            u.requests.fetch_add(1, Relaxed);
        }
    }

    pub fn forward_response(&self, upstream: usize, rcode: u16) {
        if let Some(u) = self.upstreams.get(upstream) {
            u.responses[rcode_index(rcode)].fetch_add(1, Relaxed);
        }
    }

    /// An upstream that did not answer (timeout, refused, garbage).
    pub fn forward_failure(&self, upstream: usize) {
        if let Some(u) = self.upstreams.get(upstream) {
            u.failures.fetch_add(1, Relaxed);
        }
    }

    /// The exposition text (format 0.0.4); series never touched are left out.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_responses(&mut out);
        self.render_durations(&mut out);
        self.render_cache(&mut out);
        self.render_forward(&mut out);
        out
    }

    fn render_requests(&self, out: &mut String) {
        head(
            out,
            "coredns_dns_requests_total",
            "counter",
            "Counter of DNS requests made per zone, protocol and family.",
        );
        for (p, proto) in ["udp", "tcp"].iter().enumerate() {
            for (f, family) in ["1", "2"].iter().enumerate() {
                for (t, ty) in TYPES.iter().enumerate() {
                    let v = self.requests[p][f][t].load(Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "coredns_dns_requests_total{{server=\"{}\",zone=\".\",view=\"\",proto=\"{proto}\",family=\"{family}\",type=\"{ty}\"}} {v}",
                            self.server
                        );
                    }
                }
            }
        }
    }

    fn render_responses(&self, out: &mut String) {
        head(
            out,
            "coredns_dns_responses_total",
            "counter",
            "Counter of response status codes.",
        );
        for (p, plugin) in PLUGINS.iter().enumerate() {
            for (r, rcode) in RCODES.iter().enumerate() {
                let v = self.responses[p][r].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "coredns_dns_responses_total{{server=\"{}\",zone=\".\",view=\"\",rcode=\"{rcode}\",plugin=\"{plugin}\"}} {v}",
                        self.server
                    );
                }
            }
        }
    }

    fn render_durations(&self, out: &mut String) {
        let name = "coredns_dns_request_duration_seconds";
        head(
            out,
            name,
            "histogram",
            "Histogram of the time (in seconds) each request took per zone.",
        );
        for (t, ty) in TYPES.iter().enumerate() {
            let count = self.duration_count[t].load(Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!(
                "server=\"{}\",zone=\".\",view=\"\",type=\"{ty}\"",
                self.server
            );
            let (mut cumulative, mut bound) = (0, 0.00025f64);
            for b in &self.durations[t] {
                cumulative += b.load(Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                bound *= 2.0;
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let secs = self.duration_nanos[t].load(Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {secs}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }

    fn render_cache(&self, out: &mut String) {
        let s = &self.server;
        head(
            out,
            "coredns_cache_entries",
            "gauge",
            "The number of elements in the cache.",
        );
        for (i, ty) in ["success", "denial"].iter().enumerate() {
            let v = self.cache_entries[i].load(Relaxed);
            let _ = writeln!(
                out,
                "coredns_cache_entries{{server=\"{s}\",type=\"{ty}\",zones=\".\",view=\"\"}} {v}"
            );
        }
        head(
            out,
            "coredns_cache_hits_total",
            "counter",
            "The count of cache hits.",
        );
        for (i, ty) in ["success", "denial"].iter().enumerate() {
            let v = self.cache_hits[i].load(Relaxed);
            let _ = writeln!(
                out,
                "coredns_cache_hits_total{{server=\"{s}\",type=\"{ty}\",zones=\".\",view=\"\"}} {v}"
            );
        }
        head(
            out,
            "coredns_cache_misses_total",
            "counter",
            "The count of cache misses.",
        );
        let v = self.cache_misses.load(Relaxed);
        let _ = writeln!(
            out,
            "coredns_cache_misses_total{{server=\"{s}\",zones=\".\",view=\"\"}} {v}"
        );
    }

    fn render_forward(&self, out: &mut String) {
        if self.upstreams.is_empty() {
            return;
        }
        head(
            out,
            "coredns_forward_requests_total",
            "counter",
            "Counter of requests made per upstream.",
        );
        for u in &self.upstreams {
            let v = u.requests.load(Relaxed);
            let _ = writeln!(out, "coredns_forward_requests_total{{to=\"{}\"}} {v}", u.to);
        }
        head(
            out,
            "coredns_forward_responses_total",
            "counter",
            "Counter of responses received per upstream.",
        );
        for u in &self.upstreams {
            for (r, rcode) in RCODES.iter().enumerate() {
                let v = u.responses[r].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "coredns_forward_responses_total{{to=\"{}\",rcode=\"{rcode}\"}} {v}",
                        u.to
                    );
                }
            }
        }
        head(
            out,
            "coredns_forward_healthcheck_failures_total",
            "counter",
            "Counter of upstreams that did not answer.",
        );
        for u in &self.upstreams {
            let v = u.failures.load(Relaxed);
            let _ = writeln!(
                out,
                "coredns_forward_healthcheck_failures_total{{to=\"{}\"}} {v}",
                u.to
            );
        }
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, usually: back off rather than spin.
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let m = m.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&m, &req)) }
            });
            // A scraper that half-closes after its request (`nc`) still gets the answer.
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, metrics.render()),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_coredns_names() {
        let up: SocketAddr = "192.0.2.1:53".parse().unwrap();
        let m = Metrics::new("dns://:53".into(), &[up]);
        m.request(Proto::Udp, false, 1);
        m.request(Proto::Tcp, true, 33);
        m.response(Plugin::Kubernetes, 3, 1, Duration::from_micros(100));
        m.response(Plugin::Forward, 0, 33, Duration::from_millis(3));
        m.cache_hit(true);
        m.cache_miss();
        m.cache_entries(4, 1);
        m.forward_request(0);
        m.forward_response(0, 0);
        m.forward_failure(7);
        let text = m.render();
        for want in [
            r#"coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="udp",family="1",type="A"} 1"#,
            r#"coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="tcp",family="2",type="SRV"} 1"#,
            r#"coredns_dns_responses_total{server="dns://:53",zone=".",view="",rcode="NXDOMAIN",plugin="kubernetes"} 1"#,
            r#"coredns_dns_request_duration_seconds_bucket{server="dns://:53",zone=".",view="",type="A",le="0.00025"} 1"#,
            r#"coredns_dns_request_duration_seconds_bucket{server="dns://:53",zone=".",view="",type="SRV",le="0.002"} 0"#,
            r#"coredns_dns_request_duration_seconds_bucket{server="dns://:53",zone=".",view="",type="SRV",le="0.004"} 1"#,
            r#"coredns_dns_request_duration_seconds_count{server="dns://:53",zone=".",view="",type="SRV"} 1"#,
            r#"coredns_cache_hits_total{server="dns://:53",type="denial",zones=".",view=""} 1"#,
            r#"coredns_cache_entries{server="dns://:53",type="success",zones=".",view=""} 4"#,
            r#"coredns_cache_misses_total{server="dns://:53",zones=".",view=""} 1"#,
            r#"coredns_forward_requests_total{to="192.0.2.1:53"} 1"#,
            r#"coredns_forward_responses_total{to="192.0.2.1:53",rcode="NOERROR"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
        }
        assert!(
            !text.contains("type=\"AAAA\""),
            "untouched series are left out"
        );
    }
}
