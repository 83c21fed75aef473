//! Pods: kubectl's Ready, Status and Restarts, as `printPod` works them out.

use crate::cells::{
    age, condition_true, human_duration, items, name, non_empty, none_if_empty, parse_time, str_of,
};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) static PODS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Ready",
            "string",
            0,
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            0,
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        col(
            "IP",
            "string",
            1,
            "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        ),
        col(
            "Node",
            "string",
            1,
            "NodeName indicates in which node this pod is scheduled.",
        ),
        col(
            "Nominated Node",
            "string",
            1,
            "nominatedNodeName is set only when this pod preempts other pods on the node.",
        ),
        col(
            "Readiness Gates",
            "string",
            1,
            "If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ],
    row: pod_row,
};

/// Restarts counted so far and when the last one happened.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<DateTime<Utc>>,
}

impl Restarts {
    fn add(&mut self, c: &Value) {
        self.count += c["restartCount"].as_i64().unwrap_or(0);
        let finished = c["lastState"]["terminated"]["finishedAt"]
            .as_str()
            .and_then(parse_time);
        self.last = match (self.last, finished) {
            (Some(a), Some(b)) if b > a => Some(b),
            (None, b) => b,
            (a, _) => a,
        };
    }

    fn cell(&self, now: DateTime<Utc>) -> String {
        match (self.count, self.last) {
            (0, _) | (_, None) => self.count.to_string(),
            (n, Some(t)) => format!("{n} ({} ago)", human_duration(now - t)),
        }
    }
}

/// What the Ready, Status and Restarts cells are made of.
struct PodState {
    ready: usize,
    reason: String,
    restarts: Restarts,
}

fn pod_row(p: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let st = pod_state(p);
    let ip = p["status"]["podIPs"][0]["ip"]
        .as_str()
        .or(p["status"]["podIP"].as_str())
        .unwrap_or("");
    let or_none = |ptr: &str| json!(none_if_empty(str_of(p, ptr).to_string()));
    vec![
        name(p),
        json!(format!("{}/{}", st.ready, total_containers(&p["spec"]))),
        json!(st.reason),
        json!(st.restarts.cell(now)),
        age(p, now),
        json!(none_if_empty(ip.to_string())),
        or_none("/spec/nodeName"),
        or_none("/status/nominatedNodeName"),
        json!(readiness_gates(p)),
    ]
}

/// App containers and restartable (sidecar) init containers.
fn total_containers(spec: &Value) -> usize {
    let sidecars = items(&spec["initContainers"])
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    spec["containers"].as_array().map(Vec::len).unwrap_or(0) + sidecars
}

fn pod_state(p: &Value) -> PodState {
    let status = &p["status"];
    let mut st = PodState {
        ready: 0,
        reason: initial_reason(status),
        restarts: Restarts::default(),
    };
    let (initializing, sidecar_restarts) = init_containers(p, &mut st);
    if !initializing || condition_true(status, "Initialized") {
        st.restarts = sidecar_restarts;
        app_containers(status, &mut st);
    }
    let deleting = p["metadata"]["deletionTimestamp"].is_string();
    let phase = status["phase"].as_str().unwrap_or("");
    if deleting && status["reason"] == "NodeLost" {
        st.reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        st.reason = "Terminating".into();
    }
    st
}

/// The pod's reason, else its phase; SchedulingGated while a scheduling gate holds it.
fn initial_reason(status: &Value) -> String {
    let gated = items(&status["conditions"])
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated");
    if gated {
        return "SchedulingGated".into();
    }
    non_empty(&status["reason"])
        .unwrap_or(status["phase"].as_str().unwrap_or(""))
        .to_string()
}

/// Walks the init containers until one holds the pod (its reason becomes the pod's).
/// Counts all their restarts into `st`; returns whether the pod is still initializing and
/// the restarts of the sidecars alone.
fn init_containers(p: &Value, st: &mut PodState) -> (bool, Restarts) {
    let specs = p["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut sidecars = Restarts::default();
    for (i, c) in items(&p["status"]["initContainerStatuses"]).enumerate() {
        st.restarts.add(c);
        let name = c["name"].as_str().unwrap_or("");
        let sidecar = specs
            .iter()
            .any(|s| s["name"] == name && s["restartPolicy"] == "Always");
        if sidecar {
            sidecars.add(c);
        }
        let term = &c["state"]["terminated"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        } else if sidecar && c["started"] == json!(true) {
            st.ready += usize::from(c["ready"] == json!(true));
            continue;
        }
        st.reason = init_reason(c, i, specs.len());
        return (true, sidecars);
    }
    (false, sidecars)
}

/// `Init:<reason>` of the init container that holds the pod, or `Init:i/n`.
fn init_reason(c: &Value, i: usize, n: usize) -> String {
    let term = &c["state"]["terminated"];
    if term.is_object() {
        return format!("Init:{}", terminated_reason(term));
    }
    match non_empty(&c["state"]["waiting"]["reason"]).filter(|r| *r != "PodInitializing") {
        Some(r) => format!("Init:{r}"),
        None => format!("Init:{i}/{n}"),
    }
}

/// A terminated container's reason, else `Signal:n`, else `ExitCode:n`.
fn terminated_reason(term: &Value) -> String {
    if let Some(r) = non_empty(&term["reason"]) {
        return r.to_string();
    }
    match term["signal"].as_i64().unwrap_or(0) {
        0 => format!("ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
        s => format!("Signal:{s}"),
    }
}

/// The app containers, last first: restarts, ready ones, and the reason of the first
/// waiting or terminated one.
fn app_containers(status: &Value, st: &mut PodState) {
    let mut has_running = false;
    let statuses = status["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in statuses.iter().rev() {
        st.restarts.add(c);
        let term = &c["state"]["terminated"];
        if let Some(r) = non_empty(&c["state"]["waiting"]["reason"]) {
            st.reason = r.to_string();
        } else if term.is_object() {
            st.reason = terminated_reason(term);
        } else if c["ready"] == json!(true) && c["state"]["running"].is_object() {
            has_running = true;
            st.ready += 1;
        }
    }
    if st.reason == "Completed" && has_running {
        st.reason = if condition_true(status, "Ready") {
            "Running".into()
        } else {
            "NotReady".into()
        };
    }
}

/// `passing/total` readiness gates, `<none>` without any.
fn readiness_gates(p: &Value) -> String {
    let gates = p["spec"]["readinessGates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".into();
    }
    let passing = gates
        .iter()
        .filter(|g| {
            items(&p["status"]["conditions"])
                .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}
