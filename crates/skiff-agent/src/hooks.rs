//! Container lifecycle hooks, as kubelet runs them: `postStart` right after the
//! container starts (a failure kills it: `PostStartHookError`), `preStop` before it is
//! stopped, out of the same grace period. Handlers are exec, httpGet and sleep;
//! tcpSocket is accepted and does nothing, as in Kubernetes.

use crate::probe::{self, Action};
use crate::runtime::Runtime;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    Run(Action),
    Sleep(Duration),
}

/// The container's `lifecycle.<which>` handler (`postStart` or `preStop`).
pub fn hook(container: &Value, which: &str) -> Option<Hook> {
    let h = &container["lifecycle"][which];
    if !h.is_object() {
        return None;
    }
    if let Some(secs) = h["sleep"]["seconds"].as_u64() {
        return Some(Hook::Sleep(Duration::from_secs(secs)));
    }
    probe::action(h, container).map(Hook::Run)
}

/// Runs `hook` for the container `id`; the error is kubelet's message for the event.
pub async fn run(
    runtime: &dyn Runtime,
    id: &str,
    hook: &Hook,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    match hook {
        Hook::Sleep(d) => {
            tokio::time::sleep((*d).min(timeout)).await;
            Ok(())
        }
        Hook::Run(Action::Tcp { .. }) => Ok(()),
        Hook::Run(Action::Exec(cmd)) => match runtime.exec_sync(id, cmd.clone(), timeout).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => Err(format!(
                "command '{}' exited with {code}: {out}",
                cmd.join(" ")
            )),
            Err(e) => Err(e.to_string()),
        },
        Hook::Run(a @ (Action::Http { .. } | Action::Grpc { .. })) => {
            probe::run_network(a, pod_ip, timeout).await
        }
    }
}

/// Runs the container's preStop hook, if any, within `grace` seconds; returns the grace
/// left for the stop itself (at least 2 s, as kubelet keeps). A failure is an event.
pub async fn pre_stop(
    runtime: &dyn Runtime,
    recorder: &skiff_kube::events::Recorder,
    pod: &Value,
    container: &Value,
    id: &str,
    pod_ip: &str,
    grace: i64,
) -> i64 {
    let Some(h) = hook(container, "preStop") else {
        return grace;
    };
    let t = Instant::now();
    let limit = Duration::from_secs(grace.max(0) as u64);
    match tokio::time::timeout(limit, run(runtime, id, &h, pod_ip, limit)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => recorder.record(
            pod,
            "Warning",
            "FailedPreStopHook",
            format!(
                "PreStopHook failed: {e} (container {})",
                container["name"].as_str().unwrap_or("")
            ),
        ),
        Err(_) => recorder.record(
            pod,
            "Warning",
            "FailedPreStopHook",
            format!(
                "PreStopHook did not finish within the {grace}s grace period (container {})",
                container["name"].as_str().unwrap_or("")
            ),
        ),
    }
    (grace - t.elapsed().as_secs() as i64).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handlers_are_read_as_kubernetes_defines_them() {
        let c = json!({
            "name": "c",
            "ports": [{"name": "http", "containerPort": 8080}],
            "lifecycle": {
                "postStart": {"exec": {"command": ["sh", "-c", "echo hi"]}},
                "preStop": {"httpGet": {"path": "/stop", "port": "http"}}
            }
        });
        assert_eq!(
            hook(&c, "postStart"),
            Some(Hook::Run(Action::Exec(vec![
                "sh".into(),
                "-c".into(),
                "echo hi".into()
            ])))
        );
        match hook(&c, "preStop") {
            Some(Hook::Run(Action::Http { port, path, .. })) => {
                assert_eq!((port, path.as_str()), (8080, "/stop"))
            }
            other => panic!("{other:?}"),
        }
        let s = json!({"lifecycle": {"preStop": {"sleep": {"seconds": 5}}}});
        assert_eq!(
            hook(&s, "preStop"),
            Some(Hook::Sleep(Duration::from_secs(5)))
        );
        assert_eq!(hook(&json!({}), "preStop"), None);
    }
}
