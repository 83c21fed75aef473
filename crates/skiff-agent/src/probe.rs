//! Container probes as kubelet runs them: startup, liveness and readiness, each with
//! exec, httpGet or tcpSocket; initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold and failureThreshold. The counting is pure; `run` does the IO.

use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn field(self) -> &'static str {
        match self {
            Kind::Startup => "startupProbe",
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Exec(Vec<String>),
    Http {
        scheme: String,
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    /// The gRPC health checking protocol (`grpc.health.v1.Health/Check`).
    Grpc {
        port: u16,
        service: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A port by number or by the name of one of the container's ports.
fn port(v: &Value, container: &Value) -> Option<u16> {
    if let Some(n) = v.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = v.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// The action of a probe or lifecycle handler: exec, httpGet or tcpSocket.
pub fn action(p: &Value, container: &Value) -> Option<Action> {
    let action = if let Some(cmd) = p["exec"]["command"].as_array() {
        Action::Exec(
            cmd.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect(),
        )
    } else if p["httpGet"].is_object() {
        let h = &p["httpGet"];
        Action::Http {
            scheme: h["scheme"].as_str().unwrap_or("HTTP").to_ascii_lowercase(),
            host: h["host"].as_str().map(str::to_string),
            port: port(&h["port"], container)?,
            path: h["path"].as_str().unwrap_or("/").to_string(),
            headers: h["httpHeaders"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| {
                    Some((
                        x["name"].as_str()?.to_string(),
                        x["value"].as_str()?.to_string(),
                    ))
                })
                .collect(),
        }
    } else if p["tcpSocket"].is_object() {
        Action::Tcp {
            host: p["tcpSocket"]["host"].as_str().map(str::to_string),
            port: port(&p["tcpSocket"]["port"], container)?,
        }
    } else if p["grpc"].is_object() {
        Action::Grpc {
            port: u16::try_from(p["grpc"]["port"].as_u64()?).ok()?,
            service: p["grpc"]["service"].as_str().unwrap_or("").to_string(),
        }
    } else {
        return None;
    };
    Some(action)
}

/// The container's probe of `kind`, with Kubernetes' defaults (period 10 s, timeout
/// 1 s, thresholds 1 and 3). None when absent.
pub fn spec(container: &Value, kind: Kind) -> Option<Spec> {
    let p = &container[kind.field()];
    if !p.is_object() {
        return None;
    }
    let secs = |f: &str, d: u64| Duration::from_secs(p[f].as_u64().unwrap_or(d));
    let action = action(p, container)?;
    Some(Spec {
        action,
        initial_delay: secs("initialDelaySeconds", 0),
        period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
        timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
        success_threshold: p["successThreshold"].as_u64().unwrap_or(1).max(1) as u32,
        failure_threshold: p["failureThreshold"].as_u64().unwrap_or(3).max(1) as u32,
    })
}

/// kubelet's gRPC probe: connect within the timeout, then Check must answer SERVING.
async fn grpc(ip: &str, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let addr = format!("{ip}:{port}");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = tokio::time::timeout(timeout, channel.connect())
        .await
        .map_err(|_| format!("timeout: failed to connect service {addr:?} within {timeout:?}"))?
        .map_err(|e| {
            format!("timeout: failed to connect service {addr:?} within {timeout:?}: {e}")
        })?;
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    let resp = match tokio::time::timeout(timeout, HealthClient::new(channel).check(req)).await {
        Err(_) => {
            return Err(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            ));
        }
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => {
            return Err(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            ));
        }
        Ok(Err(s)) => return Err(format!("error: health rpc probe failed: {}", s.message())),
        Ok(Ok(r)) => r.into_inner(),
    };
    let status = ServingStatus::try_from(resp.status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!(
            "service unhealthy (responded with {:?})",
            status.as_str_name()
        ))
    }
}

/// Running state of one probe of one container instance.
#[derive(Debug, Clone)]
pub struct State {
    pub last_run: Option<Instant>,
    successes: u32,
    failures: u32,
    /// The current verdict: None until a threshold is crossed.
    pub result: Option<bool>,
}

impl State {
    pub fn new() -> State {
        State {
            last_run: None,
            successes: 0,
            failures: 0,
            result: None,
        }
    }

    /// Whether the probe should run now, for a container started at `started`.
    pub fn due(&self, spec: &Spec, started: Instant, now: Instant) -> bool {
        if now < started + spec.initial_delay {
            return false;
        }
        self.last_run.is_none_or(|t| now >= t + spec.period)
    }

    /// Records an outcome; returns the verdict when it changes.
    pub fn record(&mut self, spec: &Spec, ok: bool, now: Instant) -> Option<bool> {
        self.last_run = Some(now);
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= spec.success_threshold && self.result != Some(true) {
                self.result = Some(true);
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= spec.failure_threshold && self.result != Some(false) {
                self.result = Some(false);
                return Some(false);
            }
        }
        None
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs an HTTP or TCP probe against `pod_ip`; exec probes go through the runtime.
pub async fn run_network(action: &Action, pod_ip: &str, timeout: Duration) -> Result<(), String> {
    match action {
        Action::Grpc { port, service } => grpc(pod_ip, *port, service, timeout).await,
        Action::Tcp { host, port } => {
            let host = host.as_deref().unwrap_or(pod_ip);
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, *port)))
                .await
                .map_err(|_| format!("dial tcp {host}:{port}: i/o timeout"))?
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
            Ok(())
        }
        Action::Http {
            scheme,
            host,
            port,
            path,
            headers,
        } => {
            if scheme != "http" {
                return Err(format!("{scheme} probes are not supported yet"));
            }
            let host = host.as_deref().unwrap_or(pod_ip);
            let url = format!("http://{host}:{port}{path}");
            let fut = async {
                let tcp = tokio::net::TcpStream::connect((host, *port))
                    .await
                    .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: {e}"))?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .map_err(|e| format!("Get \"{url}\": {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut req = http::Request::get(path.as_str())
                    .header(http::header::HOST, format!("{host}:{port}"))
                    .header(http::header::USER_AGENT, "kube-probe/1.33");
                for (k, v) in headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let req = req
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .map_err(|e| e.to_string())?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("Get \"{url}\": {e}"))?;
                let code = resp.status().as_u16();
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            };
            tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))?
        }
        Action::Exec(_) => Err("exec probes run through the runtime".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_default_like_kubernetes() {
        let c = json!({"ports": [{"name": "web", "containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/health", "port": "web"}, "initialDelaySeconds": 3, "periodSeconds": 5},
            "readinessProbe": {"tcpSocket": {"port": 80}},
            "startupProbe": {"exec": {"command": ["cat", "/tmp/ok"]}, "failureThreshold": 30}});
        let l = spec(&c, Kind::Liveness).unwrap();
        assert_eq!(
            l.action,
            Action::Http {
                scheme: "http".into(),
                host: None,
                port: 8080,
                path: "/health".into(),
                headers: vec![]
            }
        );
        assert_eq!(
            (l.initial_delay, l.period, l.timeout),
            (
                Duration::from_secs(3),
                Duration::from_secs(5),
                Duration::from_secs(1)
            )
        );
        assert_eq!((l.success_threshold, l.failure_threshold), (1, 3));
        assert_eq!(
            spec(&c, Kind::Readiness).unwrap().action,
            Action::Tcp {
                host: None,
                port: 80
            }
        );
        assert_eq!(spec(&c, Kind::Startup).unwrap().failure_threshold, 30);
        assert!(spec(&json!({}), Kind::Liveness).is_none());
        assert!(
            spec(
                &json!({"livenessProbe": {"grpc": {"port": "named"}}}),
                Kind::Liveness
            )
            .is_none(),
            "grpc ports are numbers"
        );
    }

    #[test]
    fn thresholds_flip_the_verdict() {
        let c = json!({"livenessProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 2, "successThreshold": 1, "periodSeconds": 2, "initialDelaySeconds": 5}});
        let s = spec(&c, Kind::Liveness).unwrap();
        let t0 = Instant::now();
        let mut st = State::new();
        assert!(!st.due(&s, t0, t0 + Duration::from_secs(4)));
        assert!(st.due(&s, t0, t0 + Duration::from_secs(5)));
        assert_eq!(st.record(&s, true, t0 + Duration::from_secs(5)), Some(true));
        assert!(!st.due(&s, t0, t0 + Duration::from_secs(6)));
        assert_eq!(st.record(&s, false, t0 + Duration::from_secs(7)), None);
        assert_eq!(
            st.record(&s, false, t0 + Duration::from_secs(9)),
            Some(false)
        );
        assert_eq!(st.record(&s, false, t0 + Duration::from_secs(11)), None);
        assert_eq!(
            st.record(&s, true, t0 + Duration::from_secs(13)),
            Some(true)
        );
    }

    #[tokio::test]
    async fn grpc_probes_speak_the_health_protocol() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("db", ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let probe = |service: &str| Action::Grpc {
            port,
            service: service.into(),
        };
        let t = Duration::from_secs(2);
        assert_eq!(run_network(&probe(""), "127.0.0.1", t).await, Ok(()));
        assert_eq!(
            run_network(&probe("db"), "127.0.0.1", t).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        assert!(
            run_network(&probe("nope"), "127.0.0.1", t)
                .await
                .unwrap_err()
                .starts_with("error: health rpc probe failed")
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = closed.local_addr().unwrap().port();
        drop(closed);
        let down = Action::Grpc {
            port: gone,
            service: String::new(),
        };
        assert!(
            run_network(&down, "127.0.0.1", t)
                .await
                .unwrap_err()
                .starts_with("timeout: failed to connect service")
        );
        // The probe spec reads it as Kubernetes defines it.
        let c = serde_json::json!({"livenessProbe": {"grpc": {"port": 9000, "service": "x"}}});
        assert_eq!(
            spec(&c, Kind::Liveness).unwrap().action,
            Action::Grpc {
                port: 9000,
                service: "x".into()
            }
        );
    }
}
