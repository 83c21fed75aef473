//! An in-memory runtime behind the `Runtime` trait: sandboxes and containers exist on
//! paper, with the IPs and exit codes they are given. Simulated nodes run pods on it
//! through the same CRI translation and status code as the real agent.

use crate::pod::{CState, ContainerObs, Observed, SandboxObs};
use crate::runtime::{LogTarget, RtResult, Runtime};
use parking_lot::Mutex;
use skiff_cri::cri;
use std::collections::{HashMap, HashSet};

#[derive(Default)]
struct PodState {
    ip: String,
    sandboxes: Vec<SandboxObs>,
    containers: Vec<ContainerObs>,
}

#[derive(Default)]
pub struct FakeRuntime {
    pods: Mutex<HashMap<String, PodState>>,
    next_id: std::sync::atomic::AtomicU64,
}

fn uid_of(labels: &HashMap<String, String>) -> String {
    labels
        .get(crate::criconv::LABEL_POD_UID)
        .cloned()
        .unwrap_or_default()
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// The address the pod's next sandbox gets.
    pub fn assign_ip(&self, uid: &str, ip: &str) {
        self.pods.lock().entry(uid.to_string()).or_default().ip = ip.to_string();
    }

    /// Ends the pod's running containers with `code`, as if their process exited.
    pub fn exit_all(&self, uid: &str, code: i32) {
        let now = crate::now();
        if let Some(p) = self.pods.lock().get_mut(uid) {
            for c in p
                .containers
                .iter_mut()
                .filter(|c| c.state == CState::Running)
            {
                c.state = CState::Exited;
                c.exit_code = code;
                c.finished_at = now.clone();
            }
        }
    }

    fn id(&self, prefix: &str) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}{n:016x}")
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> RtResult<String> {
        Ok("skiff-sim://0.1.0".into())
    }

    async fn observe(&self, uid: &str) -> RtResult<Observed> {
        Ok(self
            .pods
            .lock()
            .get(uid)
            .map(|p| Observed {
                sandboxes: p.sandboxes.iter().rev().cloned().collect(),
                containers: p.containers.clone(),
                probed: Default::default(),
            })
            .unwrap_or_default())
    }

    async fn pod_uids(&self) -> RtResult<HashSet<String>> {
        Ok(self.pods.lock().keys().cloned().collect())
    }

    async fn run_sandbox(&self, cfg: cri::PodSandboxConfig) -> RtResult<String> {
        let id = self.id("sb");
        let uid = uid_of(&cfg.labels);
        let mut pods = self.pods.lock();
        let p = pods.entry(uid).or_default();
        for s in &mut p.sandboxes {
            s.ready = false;
        }
        p.sandboxes.push(SandboxObs {
            id: id.clone(),
            ready: true,
            ip: p.ip.clone(),
            attempt: cfg.metadata.map_or(0, |m| m.attempt),
        });
        Ok(id)
    }

    async fn image_id(&self, image: &str) -> RtResult<Option<String>> {
        Ok(Some(format!("sim://{image}")))
    }

    async fn running_logs(&self) -> RtResult<Vec<(String, std::path::PathBuf)>> {
        Ok(Vec::new())
    }

    async fn reopen_log(&self, _container_id: &str) -> RtResult<()> {
        Ok(())
    }

    async fn usage(&self) -> RtResult<crate::runtime::Usage> {
        Ok(crate::runtime::Usage::default())
    }

    async fn image_user(&self, _image: &str) -> RtResult<(Option<i64>, String)> {
        Ok((None, String::new()))
    }

    async fn pull(&self, image: &str, _auth: Option<cri::AuthConfig>) -> RtResult<String> {
        Ok(format!("sim://{image}"))
    }

    async fn create_and_start(
        &self,
        _sandbox_id: &str,
        sandbox: cri::PodSandboxConfig,
        cfg: cri::ContainerConfig,
    ) -> RtResult<String> {
        let id = self.id("c");
        let uid = uid_of(&sandbox.labels);
        let meta = cfg.metadata.unwrap_or_default();
        let image = cfg.image.map(|i| i.image).unwrap_or_default();
        self.pods
            .lock()
            .entry(uid)
            .or_default()
            .containers
            .push(ContainerObs {
                id: id.clone(),
                name: meta.name,
                attempt: meta.attempt,
                state: CState::Running,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                started_at: crate::now(),
                finished_at: String::new(),
                image_ref: format!("sim://{image}"),
            });
        Ok(id)
    }

    async fn remove_pod(&self, uid: &str, _grace: i64) -> RtResult<()> {
        self.pods.lock().remove(uid);
        Ok(())
    }

    async fn stop_pod(&self, uid: &str, _grace: i64) -> RtResult<()> {
        self.exit_all(uid, 137);
        if let Some(p) = self.pods.lock().get_mut(uid) {
            for s in &mut p.sandboxes {
                s.ready = false;
            }
        }
        Ok(())
    }

    async fn log_target(
        &self,
        _namespace: &str,
        _pod: &str,
        _container: &str,
        _previous: bool,
    ) -> RtResult<Option<LogTarget>> {
        Ok(None)
    }

    async fn running(&self, container_id: &str) -> RtResult<bool> {
        Ok(self.pods.lock().values().any(|p| {
            p.containers
                .iter()
                .any(|c| c.id == container_id && c.state == CState::Running)
        }))
    }

    async fn exec_url(
        &self,
        _container_id: &str,
        _cmd: Vec<String>,
        _tty: bool,
        _stdin: bool,
        _stdout: bool,
        _stderr: bool,
    ) -> RtResult<String> {
        Err(skiff_cri::Error::Other(
            "simulated containers cannot run commands".into(),
        ))
    }

    async fn attach_url(
        &self,
        _container_id: &str,
        _tty: bool,
        _stdin: bool,
        _stdout: bool,
        _stderr: bool,
    ) -> RtResult<String> {
        Err(skiff_cri::Error::Other(
            "simulated containers have no streams to attach to".into(),
        ))
    }

    async fn port_forward_url(
        &self,
        _namespace: &str,
        _pod: &str,
        _ports: &[u16],
    ) -> RtResult<Option<String>> {
        Err(skiff_cri::Error::Other(
            "simulated pods have no network namespace to forward to".into(),
        ))
    }

    async fn exec_sync(
        &self,
        _container_id: &str,
        _cmd: Vec<String>,
        _timeout: std::time::Duration,
    ) -> RtResult<(i32, String)> {
        Ok((0, String::new()))
    }

    async fn stop_container(&self, container_id: &str, _grace: i64) -> RtResult<()> {
        let now = crate::now();
        for p in self.pods.lock().values_mut() {
            for c in p.containers.iter_mut().filter(|c| c.id == container_id) {
                c.state = CState::Exited;
                c.exit_code = 137;
                c.finished_at = now.clone();
            }
        }
        Ok(())
    }

    async fn log_target_by_id(&self, _container_id: &str) -> RtResult<Option<LogTarget>> {
        Ok(None)
    }

    async fn remove_container(&self, container_id: &str) -> RtResult<()> {
        for p in self.pods.lock().values_mut() {
            p.containers.retain(|c| c.id != container_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// The real agent's translation and status code over the fake runtime.
    #[tokio::test]
    async fn pods_run_and_finish_on_paper() {
        let rt = FakeRuntime::new();
        let pod = json!({
            "metadata": {"name": "j", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending"},
        });
        rt.assign_ip("u1", "10.42.0.7");
        let cfg = crate::criconv::sandbox_config(&pod, 0, std::path::Path::new("/sim"));
        let sb = rt.run_sandbox(cfg.clone()).await.unwrap();
        let c = crate::criconv::container_config(
            &pod,
            &pod["spec"]["containers"][0],
            "busybox",
            0,
            &[],
        );
        rt.create_and_start(&sb, cfg, c).await.unwrap();
        let obs = rt.observe("u1").await.unwrap();
        let st = crate::pod::status(&pod, &obs, &BTreeMap::new(), "198.18.0.1", "t");
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.42.0.7");
        rt.exit_all("u1", 3);
        let obs = rt.observe("u1").await.unwrap();
        let st = crate::pod::status(&pod, &obs, &BTreeMap::new(), "198.18.0.1", "t");
        assert_eq!(st["phase"], "Failed");
        assert_eq!(
            st["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
        rt.remove_pod("u1", 0).await.unwrap();
        assert!(rt.pod_uids().await.unwrap().is_empty());
    }
}
