//! The runtime seam: what the pod workers need from a container runtime, in CRI's terms.
//! `CriRuntime` speaks CRI v1 to containerd (or CRI-O); tests can put a fake behind it.

use crate::criconv::{self, LABEL_POD_UID};
use crate::pod::Observed;
use skiff_cri::{Cri, cri, rpc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub type RtResult<T> = std::result::Result<T, skiff_cri::Error>;

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `containerd://1.6.20`, for the node's `containerRuntimeVersion`.
    async fn version(&self) -> RtResult<String>;
    /// Sandboxes and containers of the pod with this uid.
    async fn observe(&self, uid: &str) -> RtResult<Observed>;
    /// Uids of every pod the runtime holds something for.
    async fn pod_uids(&self) -> RtResult<HashSet<String>>;
    async fn run_sandbox(&self, cfg: cri::PodSandboxConfig) -> RtResult<String>;
    /// The image's id when present.
    async fn image_id(&self, image: &str) -> RtResult<Option<String>>;
    async fn pull(&self, image: &str, auth: Option<cri::AuthConfig>) -> RtResult<String>;
    /// The user the image runs as: a uid when numeric, else a name; neither means root.
    async fn image_user(&self, image: &str) -> RtResult<(Option<i64>, String)>;
    async fn create_and_start(
        &self,
        sandbox_id: &str,
        sandbox: cri::PodSandboxConfig,
        cfg: cri::ContainerConfig,
    ) -> RtResult<String>;
    /// Stops running containers (SIGTERM, then SIGKILL after `grace` seconds) and every
    /// sandbox of the pod, then removes them all.
    async fn remove_pod(&self, uid: &str, grace: i64) -> RtResult<()>;
    /// Stops running containers and sandboxes, keeping them (and their logs) for status.
    async fn stop_pod(&self, uid: &str, grace: i64) -> RtResult<()>;
    /// The log file of a pod's container: the newest instance, or the one before it.
    async fn log_target(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> RtResult<Option<LogTarget>>;
    async fn running(&self, container_id: &str) -> RtResult<bool>;
    /// A URL on the runtime's streaming server that runs `cmd` in the container.
    async fn exec_url(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> RtResult<String>;
    /// A URL on the runtime's streaming server attached to the container's main process.
    async fn attach_url(
        &self,
        container_id: &str,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> RtResult<String>;
    /// A URL on the runtime's streaming server that forwards to `ports` in the pod's
    /// network namespace (WebSocket: a data and an error channel per port, in order);
    /// None when the pod has no ready sandbox.
    async fn port_forward_url(
        &self,
        namespace: &str,
        pod: &str,
        ports: &[u16],
    ) -> RtResult<Option<String>>;
    /// Runs `cmd` in the container and waits (exec probes): exit code and output.
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: std::time::Duration,
    ) -> RtResult<(i32, String)>;
    /// SIGTERM, then SIGKILL after `grace` seconds.
    async fn stop_container(&self, container_id: &str, grace: i64) -> RtResult<()>;
    /// The log file of one container instance.
    async fn log_target_by_id(&self, container_id: &str) -> RtResult<Option<LogTarget>>;
    async fn remove_container(&self, container_id: &str) -> RtResult<()>;
    /// Running containers of pods and their log files, for rotation.
    async fn running_logs(&self) -> RtResult<Vec<(String, std::path::PathBuf)>>;
    /// Makes the runtime write a container's log to a fresh file at its path.
    async fn reopen_log(&self, container_id: &str) -> RtResult<()>;
    /// What the pods use of the node, as the runtime measures it.
    async fn usage(&self) -> RtResult<Usage>;
}

/// The runtime's pods and their measured use, for the statistics endpoints: its
/// sandboxes and containers (identity, start time, state) and their stats.
#[derive(Debug, Default, Clone)]
pub struct Usage {
    pub sandboxes: Vec<cri::PodSandbox>,
    pub containers: Vec<cri::Container>,
    pub container_stats: Vec<cri::ContainerStats>,
    /// Empty where the runtime does not implement `ListPodSandboxStats`.
    pub sandbox_stats: Vec<cri::PodSandboxStats>,
}

#[derive(Debug, Clone)]
pub struct LogTarget {
    pub container_id: String,
    pub path: std::path::PathBuf,
    pub running: bool,
}

pub struct CriRuntime {
    cri: Cri,
    /// The node's relist, shared by every pod worker (kubelet's PLEG): one
    /// ListPodSandbox and one ListContainers a second for the whole node.
    relist: tokio::sync::Mutex<Option<Arc<Listing>>>,
    /// Bumped after every change this agent makes, so its next look is fresh.
    generation: AtomicU64,
    /// Statuses by id, valid while the listed state is the one they were read in: a
    /// container's or sandbox's status only changes with its state.
    statuses: parking_lot::Mutex<Statuses>,
}

/// How long a relist serves before the next one.
const RELIST_PERIOD: Duration = Duration::from_secs(1);

struct Listing {
    at: Instant,
    generation: u64,
    sandboxes: Vec<cri::PodSandbox>,
    containers: Vec<cri::Container>,
}

#[derive(Default)]
struct Statuses {
    sandboxes: HashMap<String, (i32, cri::PodSandboxStatus)>,
    containers: HashMap<String, (i32, cri::ContainerStatus)>,
}

impl CriRuntime {
    pub fn new(cri: Cri) -> Self {
        CriRuntime {
            cri,
            relist: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            statuses: Default::default(),
        }
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Everything the runtime holds, at most a relist period old and never older than
    /// this agent's last change. Concurrent callers share one relist.
    async fn listing(&self) -> RtResult<Arc<Listing>> {
        let mut slot = self.relist.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(l) = slot.as_ref()
            && l.generation == generation
            && l.at.elapsed() < RELIST_PERIOD
        {
            return Ok(l.clone());
        }
        let (mut rt1, mut rt2) = (self.cri.runtime.clone(), self.cri.runtime.clone());
        let (sandboxes, containers) = futures::try_join!(
            rpc(
                "ListPodSandbox",
                rt1.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            ),
            rpc(
                "ListContainers",
                rt2.list_containers(cri::ListContainersRequest::default())
            ),
        )?;
        let l = Arc::new(Listing {
            at: Instant::now(),
            generation,
            sandboxes: sandboxes.items,
            containers: containers.containers,
        });
        {
            let mut st = self.statuses.lock();
            st.sandboxes
                .retain(|id, _| l.sandboxes.iter().any(|s| &s.id == id));
            st.containers
                .retain(|id, _| l.containers.iter().any(|c| &c.id == id));
        }
        *slot = Some(l.clone());
        Ok(l)
    }

    fn uid_filter(uid: &str) -> HashMap<String, String> {
        [(LABEL_POD_UID.to_string(), uid.to_string())].into()
    }

    async fn sandboxes(&self, uid: &str) -> RtResult<Vec<cri::PodSandbox>> {
        let mut rt = self.cri.runtime.clone();
        Ok(rpc(
            "ListPodSandbox",
            rt.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: Self::uid_filter(uid),
                    ..Default::default()
                }),
            }),
        )
        .await?
        .items)
    }

    async fn containers(&self, uid: &str) -> RtResult<Vec<cri::Container>> {
        let mut rt = self.cri.runtime.clone();
        Ok(rpc(
            "ListContainers",
            rt.list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: Self::uid_filter(uid),
                    ..Default::default()
                }),
            }),
        )
        .await?
        .containers)
    }

    /// A container's status; None once the runtime no longer has it.
    async fn status_of(&self, container_id: &str) -> RtResult<Option<cri::ContainerStatus>> {
        let mut rt = self.cri.runtime.clone();
        match rt
            .container_status(cri::ContainerStatusRequest {
                container_id: container_id.to_string(),
                verbose: false,
            })
            .await
        {
            Ok(r) => Ok(r.into_inner().status),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(skiff_cri::Error::Rpc {
                call: "ContainerStatus",
                status,
            }),
        }
    }

    async fn remove_pod_inner(&self, uid: &str, grace: i64) -> RtResult<()> {
        let (containers, sandboxes) = self.stop_all(uid, grace).await?;
        for id in containers {
            let mut rt = self.cri.runtime.clone();
            rpc(
                "RemoveContainer",
                rt.remove_container(cri::RemoveContainerRequest { container_id: id }),
            )
            .await?;
        }
        for id in sandboxes {
            let mut rt = self.cri.runtime.clone();
            rpc(
                "RemovePodSandbox",
                rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }),
            )
            .await?;
        }
        Ok(())
    }

    async fn stop_all(&self, uid: &str, grace: i64) -> RtResult<(Vec<String>, Vec<String>)> {
        let containers = self.containers(uid).await?;
        let stops = containers
            .iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .map(|c| {
                let mut rt = self.cri.runtime.clone();
                let id = c.id.clone();
                async move {
                    rpc(
                        "StopContainer",
                        rt.stop_container(cri::StopContainerRequest {
                            container_id: id,
                            timeout: grace.max(0),
                        }),
                    )
                    .await
                }
            });
        for r in futures::future::join_all(stops).await {
            r?;
        }
        let sandboxes = self.sandboxes(uid).await?;
        for sb in &sandboxes {
            let mut rt = self.cri.runtime.clone();
            rpc(
                "StopPodSandbox",
                rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                }),
            )
            .await?;
        }
        Ok((
            containers.into_iter().map(|c| c.id).collect(),
            sandboxes.into_iter().map(|s| s.id).collect(),
        ))
    }
}

#[async_trait::async_trait]
impl Runtime for CriRuntime {
    async fn version(&self) -> RtResult<String> {
        let mut c = self.cri.clone();
        let v = c.version().await?;
        Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
    }

    async fn observe(&self, uid: &str) -> RtResult<Observed> {
        let l = self.listing().await?;
        let of_pod = |labels: &HashMap<String, String>| {
            labels.get(LABEL_POD_UID).map(String::as_str) == Some(uid)
        };
        let mut sandboxes = Vec::new();
        for sb in l.sandboxes.iter().filter(|s| of_pod(&s.labels)) {
            let cached = self.statuses.lock().sandboxes.get(&sb.id).cloned();
            let status = match cached {
                Some((state, s)) if state == sb.state => Some(s),
                _ => {
                    let mut rt = self.cri.runtime.clone();
                    let st = rpc(
                        "PodSandboxStatus",
                        rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                            pod_sandbox_id: sb.id.clone(),
                            verbose: false,
                        }),
                    )
                    .await?
                    .status;
                    if let Some(s) = &st {
                        self.statuses
                            .lock()
                            .sandboxes
                            .insert(sb.id.clone(), (sb.state, s.clone()));
                    }
                    st
                }
            };
            if let Some(s) = status {
                sandboxes.push((s.created_at, criconv::sandbox_obs(&s)));
            }
        }
        let mut containers = Vec::new();
        for c in l.containers.iter().filter(|c| of_pod(&c.labels)) {
            let cached = self.statuses.lock().containers.get(&c.id).cloned();
            let status = match cached {
                Some((state, s)) if state == c.state => Some(s),
                _ => {
                    let st = self.status_of(&c.id).await?;
                    if let Some(s) = &st {
                        self.statuses
                            .lock()
                            .containers
                            .insert(c.id.clone(), (c.state, s.clone()));
                    }
                    st
                }
            };
            if let Some(s) = status {
                containers.push(criconv::container_obs(&s));
            }
        }
        Ok(criconv::observed(sandboxes, containers))
    }

    async fn pod_uids(&self) -> RtResult<HashSet<String>> {
        let mut rt = self.cri.runtime.clone();
        let items = rpc(
            "ListPodSandbox",
            rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()),
        )
        .await?
        .items;
        Ok(items
            .into_iter()
            .filter_map(|s| s.labels.get(LABEL_POD_UID).cloned())
            .collect())
    }

    async fn run_sandbox(&self, cfg: cri::PodSandboxConfig) -> RtResult<String> {
        let mut rt = self.cri.runtime.clone();
        let r = rpc(
            "RunPodSandbox",
            rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            }),
        )
        .await;
        self.changed();
        Ok(r?.pod_sandbox_id)
    }

    async fn image_id(&self, image: &str) -> RtResult<Option<String>> {
        let mut im = self.cri.images.clone();
        Ok(rpc(
            "ImageStatus",
            im.image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            }),
        )
        .await?
        .image
        .map(|i| i.id))
    }

    async fn image_user(&self, image: &str) -> RtResult<(Option<i64>, String)> {
        let mut im = self.cri.images.clone();
        let status = rpc(
            "ImageStatus",
            im.image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            }),
        )
        .await?
        .image;
        Ok(status.map_or((None, String::new()), |i| {
            (i.uid.map(|u| u.value), i.username)
        }))
    }

    async fn pull(&self, image: &str, auth: Option<cri::AuthConfig>) -> RtResult<String> {
        let mut im = self.cri.images.clone();
        Ok(rpc(
            "PullImage",
            im.pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            }),
        )
        .await?
        .image_ref)
    }

    async fn create_and_start(
        &self,
        sandbox_id: &str,
        sandbox: cri::PodSandboxConfig,
        cfg: cri::ContainerConfig,
    ) -> RtResult<String> {
        let mut rt = self.cri.runtime.clone();
        let created = rpc(
            "CreateContainer",
            rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(cfg),
                sandbox_config: Some(sandbox),
            }),
        )
        .await;
        self.changed();
        let id = created?.container_id;
        let started = rpc(
            "StartContainer",
            rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }),
        )
        .await;
        self.changed();
        started?;
        Ok(id)
    }

    async fn remove_pod(&self, uid: &str, grace: i64) -> RtResult<()> {
        let r = self.remove_pod_inner(uid, grace).await;
        self.changed();
        r
    }

    async fn stop_pod(&self, uid: &str, grace: i64) -> RtResult<()> {
        let r = self.stop_all(uid, grace).await.map(|_| ());
        self.changed();
        r
    }

    async fn log_target(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> RtResult<Option<LogTarget>> {
        let mut rt = self.cri.runtime.clone();
        let labels: HashMap<String, String> = [
            (criconv::LABEL_POD_NAMESPACE, namespace),
            (criconv::LABEL_POD_NAME, pod),
            (criconv::LABEL_CONTAINER_NAME, container),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut found = rpc(
            "ListContainers",
            rt.list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            }),
        )
        .await?
        .containers;
        found.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map_or(0, |m| m.attempt)));
        // As kubelet: "previous" is the last terminated instance, which is the newest one
        // while a crashed container waits to restart.
        let newest_exited = found
            .first()
            .is_some_and(|c| c.state == cri::ContainerState::ContainerExited as i32);
        let index = usize::from(previous && !newest_exited);
        let Some(c) = found.get(index) else {
            return Ok(None);
        };
        if previous && c.state != cri::ContainerState::ContainerExited as i32 {
            return Ok(None);
        }
        Ok(self.status_of(&c.id).await?.map(to_log_target))
    }

    async fn exec_url(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> RtResult<String> {
        let mut rt = self.cri.runtime.clone();
        Ok(rpc(
            "Exec",
            rt.exec(cri::ExecRequest {
                container_id: container_id.to_string(),
                cmd,
                tty,
                stdin,
                stdout,
                // With a TTY, stderr is the terminal: CRI rejects asking for both.
                stderr: stderr && !tty,
            }),
        )
        .await?
        .url)
    }

    async fn attach_url(
        &self,
        container_id: &str,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> RtResult<String> {
        let mut rt = self.cri.runtime.clone();
        Ok(rpc(
            "Attach",
            rt.attach(cri::AttachRequest {
                container_id: container_id.to_string(),
                tty,
                stdin,
                stdout,
                stderr: stderr && !tty,
            }),
        )
        .await?
        .url)
    }

    async fn port_forward_url(
        &self,
        namespace: &str,
        pod: &str,
        ports: &[u16],
    ) -> RtResult<Option<String>> {
        let mut rt = self.cri.runtime.clone();
        let labels: HashMap<String, String> = [
            (criconv::LABEL_POD_NAMESPACE, namespace),
            (criconv::LABEL_POD_NAME, pod),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ready = rpc(
            "ListPodSandbox",
            rt.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels,
                    state: Some(cri::PodSandboxStateValue {
                        state: cri::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            }),
        )
        .await?
        .items
        .into_iter()
        .max_by_key(|s| s.created_at);
        let Some(sandbox) = ready else {
            return Ok(None);
        };
        // The streaming server's WebSocket form takes its ports from this request.
        Ok(Some(
            rpc(
                "PortForward",
                rt.port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: sandbox.id,
                    port: ports.iter().map(|p| i32::from(*p)).collect(),
                }),
            )
            .await?
            .url,
        ))
    }

    async fn running_logs(&self) -> RtResult<Vec<(String, std::path::PathBuf)>> {
        let mut rt = self.cri.runtime.clone();
        let running = rpc(
            "ListContainers",
            rt.list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            }),
        )
        .await?
        .containers;
        let mut out = Vec::new();
        for c in running
            .into_iter()
            .filter(|c| c.labels.contains_key(LABEL_POD_UID))
        {
            if let Some(st) = self.status_of(&c.id).await?
                && !st.log_path.is_empty()
            {
                out.push((c.id, st.log_path.into()));
            }
        }
        Ok(out)
    }

    async fn usage(&self) -> RtResult<Usage> {
        let listing = self.listing().await?;
        let (mut rt1, mut rt2) = (self.cri.runtime.clone(), self.cri.runtime.clone());
        let (containers, sandboxes) = futures::join!(
            rpc(
                "ListContainerStats",
                rt1.list_container_stats(cri::ListContainerStatsRequest::default())
            ),
            rpc(
                "ListPodSandboxStats",
                rt2.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
            ),
        );
        let sandbox_stats = match sandboxes {
            Ok(r) => r.stats,
            // containerd before 1.7 has only per-container stats; pods are their sum.
            Err(skiff_cri::Error::Rpc { status, .. })
                if status.code() == tonic::Code::Unimplemented =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        Ok(Usage {
            sandboxes: listing.sandboxes.clone(),
            containers: listing.containers.clone(),
            container_stats: containers?.stats,
            sandbox_stats,
        })
    }

    async fn reopen_log(&self, container_id: &str) -> RtResult<()> {
        let mut rt = self.cri.runtime.clone();
        rpc(
            "ReopenContainerLog",
            rt.reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: container_id.to_string(),
            }),
        )
        .await?;
        Ok(())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: std::time::Duration,
    ) -> RtResult<(i32, String)> {
        let mut rt = self.cri.runtime.clone();
        let r = rpc(
            "ExecSync",
            rt.exec_sync(cri::ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd,
                timeout: timeout.as_secs().max(1) as i64,
            }),
        )
        .await?;
        let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&r.stderr));
        Ok((r.exit_code, out))
    }

    async fn stop_container(&self, container_id: &str, grace: i64) -> RtResult<()> {
        let mut rt = self.cri.runtime.clone();
        let r = rpc(
            "StopContainer",
            rt.stop_container(cri::StopContainerRequest {
                container_id: container_id.to_string(),
                timeout: grace.max(0),
            }),
        )
        .await
        .map(|_| ());
        self.changed();
        r
    }

    async fn log_target_by_id(&self, container_id: &str) -> RtResult<Option<LogTarget>> {
        Ok(self.status_of(container_id).await?.map(to_log_target))
    }

    async fn remove_container(&self, container_id: &str) -> RtResult<()> {
        // The log file is kubelet's to remove, not the runtime's.
        if let Ok(Some(s)) = self.status_of(container_id).await
            && !s.log_path.is_empty()
        {
            let _ = std::fs::remove_file(&s.log_path);
        }
        let mut rt = self.cri.runtime.clone();
        let r = rpc(
            "RemoveContainer",
            rt.remove_container(cri::RemoveContainerRequest {
                container_id: container_id.to_string(),
            }),
        )
        .await
        .map(|_| ());
        self.changed();
        r
    }

    async fn running(&self, container_id: &str) -> RtResult<bool> {
        Ok(self
            .status_of(container_id)
            .await?
            .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32))
    }
}

fn to_log_target(s: cri::ContainerStatus) -> LogTarget {
    LogTarget {
        running: s.state == cri::ContainerState::ContainerRunning as i32,
        container_id: s.id,
        path: s.log_path.into(),
    }
}
