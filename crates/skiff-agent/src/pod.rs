//! The pure core of pod syncing, as kubelet's `computePodActions` and status generation:
//! from a Pod (JSON) and what the runtime reports about it, the next actions and the
//! status to publish. No IO here; `kubelet.rs` carries the actions out.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A container instance as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerObs {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub state: CState,
    pub exit_code: i32,
    /// The runtime's reason for an exit (`OOMKilled`, `Completed`, `Error`).
    pub reason: String,
    pub message: String,
    pub started_at: String,
    pub finished_at: String,
    pub image_ref: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SandboxObs {
    pub id: String,
    pub ready: bool,
    pub ip: String,
    pub attempt: u32,
}

/// Everything observed of one pod: what the runtime holds, and probe results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Newest first.
    pub sandboxes: Vec<SandboxObs>,
    pub containers: Vec<ContainerObs>,
    /// Per running container with probes: (started, ready) by its startup and readiness
    /// probes. A running container without an entry is started and ready.
    pub probed: BTreeMap<String, (bool, bool)>,
}

impl Observed {
    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerObs> {
        self.containers
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| c.attempt)
    }

    /// The instance before the newest, for `lastState`.
    pub fn previous(&self, name: &str) -> Option<&ContainerObs> {
        let latest = self.latest(name)?.attempt;
        self.containers
            .iter()
            .filter(|c| c.name == name && c.attempt < latest)
            .max_by_key(|c| c.attempt)
    }

    pub fn ready_sandbox(&self) -> Option<&SandboxObs> {
        self.sandboxes.first().filter(|s| s.ready)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop every container and sandbox of the pod (before a new sandbox).
    KillPod,
    CreateSandbox {
        attempt: u32,
    },
    /// Ensure the image, create and start the container.
    StartContainer {
        name: String,
        init: bool,
        attempt: u32,
    },
}

/// A container that should run but waits, and why (`CrashLoopBackOff`, `ErrImagePull`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

pub fn restart_policy(pod: &Value) -> &str {
    pod["spec"]["restartPolicy"].as_str().unwrap_or("Always")
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

pub fn app_names(pod: &Value) -> Vec<String> {
    names(pod, "containers")
}

pub fn init_names(pod: &Value) -> Vec<String> {
    names(pod, "initContainers")
}

/// Whether an exited container should run again under the pod's restart policy.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

fn succeeded(c: Option<&ContainerObs>) -> bool {
    c.is_some_and(|c| c.state == CState::Exited && c.exit_code == 0)
}

/// The next actions for a pod that is not being deleted. `in_backoff(name)` tells whether
/// container `name` is still in its restart back-off.
pub fn compute_actions(
    pod: &Value,
    obs: &Observed,
    in_backoff: &dyn Fn(&str) -> bool,
) -> Vec<Action> {
    let policy = restart_policy(pod);
    if obs.ready_sandbox().is_none() {
        let mut out = Vec::new();
        if !obs.sandboxes.is_empty() {
            out.push(Action::KillPod);
        }
        // A pod that never restarts and whose containers ran does not get a new sandbox.
        if policy == "Never" && !obs.containers.is_empty() {
            return out;
        }
        if pod_finished(pod, obs) {
            return out;
        }
        let attempt = obs.sandboxes.first().map_or(0, |s| s.attempt + 1);
        out.push(Action::CreateSandbox { attempt });
        return out;
    }
    // Init containers, one at a time and in order.
    for name in init_names(pod) {
        let latest = obs.latest(&name);
        if succeeded(latest) {
            continue;
        }
        return match latest {
            None => vec![Action::StartContainer {
                name,
                init: true,
                attempt: 0,
            }],
            Some(c) if c.state == CState::Exited => {
                if policy == "Never" || in_backoff(&name) {
                    vec![]
                } else {
                    vec![Action::StartContainer {
                        name,
                        init: true,
                        attempt: c.attempt + 1,
                    }]
                }
            }
            Some(_) => vec![],
        };
    }
    let mut out = Vec::new();
    for name in app_names(pod) {
        match obs.latest(&name) {
            None => out.push(Action::StartContainer {
                name,
                init: false,
                attempt: 0,
            }),
            Some(c) if c.state == CState::Exited || c.state == CState::Created => {
                if should_restart(policy, c.exit_code) && !in_backoff(&name) {
                    out.push(Action::StartContainer {
                        name,
                        init: false,
                        attempt: c.attempt + 1,
                    });
                }
            }
            Some(_) => {}
        }
    }
    out
}

/// Exited instances older than the previous one of each container: kubelet keeps one
/// dead instance per container (for `logs --previous` and `lastState`) and removes the rest.
pub fn garbage(obs: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    for c in &obs.containers {
        let newest = obs.latest(&c.name).map_or(0, |l| l.attempt);
        if c.state == CState::Exited && c.attempt + 1 < newest {
            out.push(c.id.clone());
        }
    }
    out
}

/// All containers ended and none will run again.
pub fn pod_finished(pod: &Value, obs: &Observed) -> bool {
    matches!(phase(pod, obs), "Succeeded" | "Failed")
}

/// The pod phase as kubelet's `getPhase` derives it.
pub fn phase(pod: &Value, obs: &Observed) -> &'static str {
    let policy = restart_policy(pod);
    for name in init_names(pod) {
        let latest = obs.latest(&name);
        if succeeded(latest) {
            continue;
        }
        if let Some(c) = latest
            && c.state == CState::Exited
            && policy == "Never"
        {
            return "Failed";
        }
        return "Pending";
    }
    let (mut running, mut waiting_n, mut stopped, mut ok) = (0, 0, 0, 0);
    let apps = app_names(pod);
    for name in &apps {
        match obs.latest(name) {
            Some(c) if c.state == CState::Running => running += 1,
            Some(c) if c.state == CState::Exited => {
                stopped += 1;
                if c.exit_code == 0 {
                    ok += 1;
                }
            }
            // Waiting after a previous run counts as stopped, as in kubelet.
            Some(c) if c.attempt > 0 => stopped += 1,
            _ => waiting_n += 1,
        }
    }
    if waiting_n > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == ok {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// What kubelet reports for an ended container: `Completed`, `Error`, or the runtime's
/// own reason (`OOMKilled`).
fn terminated(c: &ContainerObs) -> Value {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": c.exit_code,
        "reason": reason,
        "startedAt": c.started_at,
        "finishedAt": c.finished_at,
        "containerID": format!("containerd://{}", c.id),
    });
    if !c.message.is_empty() {
        t["message"] = json!(c.message);
    }
    t
}

fn container_status(spec: &Value, obs: &Observed, waiting: &BTreeMap<String, Waiting>) -> Value {
    let name = spec["name"].as_str().unwrap_or("");
    let image = spec["image"].as_str().unwrap_or("");
    let latest = obs.latest(name);
    let mut s = json!({
        "name": name,
        "image": image,
        "imageID": latest.map_or("", |c| c.image_ref.as_str()),
        "ready": false,
        "started": false,
        "restartCount": latest.map_or(0, |c| c.attempt),
        "lastState": {},
    });
    if let Some(c) = latest {
        s["containerID"] = json!(format!("containerd://{}", c.id));
    }
    let state = match (latest, waiting.get(name)) {
        (_, Some(w)) => json!({"waiting": {"reason": w.reason, "message": w.message}}),
        (Some(c), None) if c.state == CState::Running => {
            let (started, ready) = obs.probed.get(name).copied().unwrap_or((true, true));
            s["ready"] = json!(started && ready);
            s["started"] = json!(started);
            json!({"running": {"startedAt": c.started_at}})
        }
        (Some(c), None) if c.state == CState::Exited => json!({"terminated": terminated(c)}),
        _ => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    s["state"] = state;
    // The last run, when the current one is not it (waiting to restart) or a newer exists.
    let last = match (latest, waiting.contains_key(name)) {
        (Some(c), true) if c.state == CState::Exited => Some(c),
        _ => obs.previous(name).filter(|p| p.state == CState::Exited),
    };
    if let Some(l) = last {
        s["lastState"] = json!({"terminated": terminated(l)});
    }
    s
}

fn condition(prev: &Value, ty: &str, ok: bool, reason: &str, message: &str, now: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = prev["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty);
    let since = match old {
        Some(o) if o["status"] == status => o["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c =
        json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
    if !ok && !reason.is_empty() {
        c["reason"] = json!(reason);
        if !message.is_empty() {
            c["message"] = json!(message);
        }
    }
    c
}

/// The pod status kubelet would publish. `waiting` holds containers that wait with a
/// reason; `host_ip` is the node's address; `now` an RFC 3339 time.
pub fn status(
    pod: &Value,
    obs: &Observed,
    waiting: &BTreeMap<String, Waiting>,
    host_ip: &str,
    now: &str,
) -> Value {
    let prev = &pod["status"];
    let phase = phase(pod, obs);
    let specs = |f: &str| -> Vec<Value> {
        pod["spec"][f]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| container_status(c, obs, waiting))
            .collect()
    };
    let inits = specs("initContainers");
    let mut apps = specs("containers");
    let init_pending: Vec<String> = init_names(pod)
        .into_iter()
        .filter(|n| !succeeded(obs.latest(n)))
        .collect();
    if !init_pending.is_empty() {
        for s in &mut apps {
            s["state"] = json!({"waiting": {"reason": "PodInitializing"}});
        }
    }
    let unready: Vec<String> = apps
        .iter()
        .filter(|s| s["ready"] != true)
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let finished = matches!(phase, "Succeeded" | "Failed");
    let (ready_reason, ready_msg) = if finished {
        ("PodCompleted".to_string(), String::new())
    } else {
        (
            "ContainersNotReady".to_string(),
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    };
    let sandbox = obs.ready_sandbox();
    let mut conditions = vec![
        condition(
            prev,
            "PodReadyToStartContainers",
            sandbox.is_some(),
            "",
            "",
            now,
        ),
        condition(
            prev,
            "Initialized",
            init_pending.is_empty(),
            "ContainersNotInitialized",
            &format!(
                "containers with incomplete status: [{}]",
                init_pending.join(" ")
            ),
            now,
        ),
        condition(
            prev,
            "Ready",
            unready.is_empty() && !finished,
            &ready_reason,
            &ready_msg,
            now,
        ),
        condition(
            prev,
            "ContainersReady",
            unready.is_empty() && !finished,
            &ready_reason,
            &ready_msg,
            now,
        ),
    ];
    if let Some(ps) = prev["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
    {
        conditions.push(ps.clone());
    }
    let mut st = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": prev["startTime"].as_str().unwrap_or(now),
        "containerStatuses": apps,
    });
    if !inits.is_empty() {
        st["initContainerStatuses"] = json!(inits);
    }
    // The IP stays reported after the pod ends, as kubelet keeps it.
    let ip = sandbox
        .map(|s| s.ip.clone())
        .filter(|ip| !ip.is_empty())
        .or_else(|| prev["podIP"].as_str().map(str::to_string));
    if let Some(ip) = ip {
        st["podIP"] = json!(ip);
        st["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(q) = prev["qosClass"].as_str() {
        st["qosClass"] = json!(q);
    }
    st
}

#[cfg(test)]
mod tests;
