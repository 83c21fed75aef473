//! Server-side table printing: the `meta.k8s.io/v1 Table` kubectl prints verbatim, with
//! the columns and cell formats of Kubernetes' `pkg/printers/internalversion/printers.go`.
//! Pure functions of JSON objects and a `now`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

mod storage;
pub use storage::is_default_class;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

const fn col(
    name: &'static str,
    type_: &'static str,
    priority: i32,
    description: &'static str,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.",
);
const CONTAINERS: Column = col(
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
const IMAGES: Column = col(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = col("Selector", "string", 1, "Label selector for pods.");

/// Columns for a resource; kinds without a printer get Kubernetes' default (Name, Created At).
pub fn columns(group: &str, resource: &str) -> Vec<Column> {
    if group == "storage.k8s.io"
        && let Some(c) = storage::columns(resource)
    {
        return c;
    }
    match (group, resource) {
        ("", "pods") => vec![
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
        ("", "nodes") => vec![
            NAME,
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            AGE,
            col(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            col(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            col(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            col(
                "OS-Image",
                "string",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            col(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            col(
                "Container-Runtime",
                "string",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        ("", "namespaces") => vec![
            NAME,
            col("Status", "string", 0, "The status of the namespace"),
            AGE,
        ],
        ("", "services") => vec![
            NAME,
            col(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            col(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            col(
                "External-IP",
                "string",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            col(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            col(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ("", "endpoints") => vec![
            NAME,
            col("Endpoints", "string", 0, "Endpoints of the service"),
            AGE,
        ],
        ("", "configmaps") => vec![
            NAME,
            col(
                "Data",
                "string",
                0,
                "Number of data entries in the ConfigMap",
            ),
            AGE,
        ],
        ("", "secrets") => vec![
            NAME,
            col("Type", "string", 0, "The type of the secret"),
            col("Data", "string", 0, "The number of entries in the secret"),
            AGE,
        ],
        ("", "serviceaccounts") => vec![
            NAME,
            col(
                "Secrets",
                "string",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col("Last Seen", "string", 0, "Time when last Event occurred"),
            col(
                "Type",
                "string",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            col(
                "Reason",
                "string",
                0,
                "This should be a short, machine understandable string that gives the reason for this event being generated.",
            ),
            col(
                "Object",
                "string",
                0,
                "The object that this event is about.",
            ),
            col(
                "Subobject",
                "string",
                1,
                "Object field path this event is about.",
            ),
            col("Source", "string", 1, "The component reporting this event."),
            col(
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
            ),
            col("First Seen", "string", 1, "Time when first Event occurred"),
            col(
                "Count",
                "string",
                1,
                "The number of times this event has occurred.",
            ),
            col("Name", "string", 1, "Name of the event"),
        ],
        ("", "limitranges")
        | ("rbac.authorization.k8s.io", "roles")
        | ("rbac.authorization.k8s.io", "clusterroles") => vec![
            NAME,
            col(
                "Created At",
                "date",
                0,
                "Time at which the object was created",
            ),
        ],
        ("", "resourcequotas") => vec![
            NAME,
            AGE,
            col(
                "Request",
                "string",
                0,
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            col(
                "Limit",
                "string",
                0,
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            col(
                "Capacity",
                "string",
                0,
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            col(
                "Access Modes",
                "string",
                0,
                "accessModes contains all ways the volume can be mounted.",
            ),
            col(
                "Reclaim Policy",
                "string",
                0,
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            col(
                "Status",
                "string",
                0,
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            col(
                "Claim",
                "string",
                0,
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            col(
                "StorageClass",
                "string",
                0,
                "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            ),
            col(
                "VolumeAttributesClass",
                "string",
                0,
                "Name of VolumeAttributesClass to which this persistent volume belongs.",
            ),
            col(
                "Reason",
                "string",
                0,
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
            AGE,
            col(
                "VolumeMode",
                "string",
                1,
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            col(
                "Status",
                "string",
                0,
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            col(
                "Volume",
                "string",
                0,
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            col(
                "Capacity",
                "string",
                0,
                "capacity represents the actual resources of the underlying volume.",
            ),
            col(
                "Access Modes",
                "string",
                0,
                "accessModes contains the desired access modes the volume should have.",
            ),
            col(
                "StorageClass",
                "string",
                0,
                "storageClassName is the name of the StorageClass required by the claim.",
            ),
            col(
                "VolumeAttributesClass",
                "string",
                0,
                "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            ),
            AGE,
            col(
                "VolumeMode",
                "string",
                1,
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        ("", "podtemplates") => vec![
            NAME,
            col(
                "Containers",
                "string",
                0,
                "Names of each container in the template.",
            ),
            col(
                "Images",
                "string",
                0,
                "Images referenced by each container in the template.",
            ),
            col(
                "Pod Labels",
                "string",
                0,
                "The labels for the pod template.",
            ),
        ],
        ("", "replicationcontrollers") | ("apps", "replicasets") => vec![
            NAME,
            col(
                "Desired",
                "integer",
                0,
                "Replicas is the number of desired replicas.",
            ),
            col(
                "Current",
                "integer",
                0,
                "Replicas is the most recently observed number of replicas.",
            ),
            col(
                "Ready",
                "integer",
                0,
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "deployments") => vec![
            NAME,
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col(
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            col(
                "Available",
                "string",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "daemonsets") => vec![
            NAME,
            col(
                "Desired",
                "integer",
                0,
                "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
            ),
            col(
                "Current",
                "integer",
                0,
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            col(
                "Ready",
                "integer",
                0,
                "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
            ),
            col(
                "Up-to-date",
                "integer",
                0,
                "The total number of nodes that are running updated daemon pod",
            ),
            col(
                "Available",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            ),
            col(
                "Node Selector",
                "string",
                0,
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "statefulsets") => vec![
            NAME,
            col("Ready", "string", 0, "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "controllerrevisions") => vec![
            NAME,
            col("Controller", "string", 0, "Controller of the object"),
            col(
                "Revision",
                "integer",
                0,
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ],
        ("batch", "jobs") => vec![
            NAME,
            col("Status", "string", 0, "Status of the job."),
            col(
                "Completions",
                "string",
                0,
                "The completion status of the job.",
            ),
            col(
                "Duration",
                "string",
                0,
                "Time required to complete the job.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "cronjobs") => vec![
            NAME,
            col(
                "Schedule",
                "string",
                0,
                "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            ),
            col(
                "Timezone",
                "string",
                0,
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            ),
            col(
                "Suspend",
                "boolean",
                0,
                "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
            ),
            col(
                "Active",
                "integer",
                0,
                "A list of pointers to currently running jobs.",
            ),
            col(
                "Last Schedule",
                "string",
                0,
                "Information when was the last time the job was successfully scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            NAME,
            col("Reference", "string", 0, "Reference to the target object"),
            col(
                "Targets",
                "string",
                0,
                "The current and target value of the metrics",
            ),
            col(
                "MinPods",
                "string",
                0,
                "Lower limit for the number of pods that can be set by the autoscaler, default 1.",
            ),
            col(
                "MaxPods",
                "integer",
                0,
                "Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.",
            ),
            col(
                "Replicas",
                "integer",
                0,
                "Current number of replicas of pods managed by this autoscaler.",
            ),
            AGE,
        ],
        ("networking.k8s.io", "networkpolicies") => vec![
            NAME,
            col(
                "Pod-Selector",
                "string",
                0,
                "podSelector selects the pods to which this NetworkPolicy object applies.",
            ),
            AGE,
        ],
        ("networking.k8s.io", "ingresses") => vec![
            NAME,
            col(
                "Class",
                "string",
                0,
                "The name of the IngressClass resource.",
            ),
            col(
                "Hosts",
                "string",
                0,
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            col(
                "Address",
                "string",
                0,
                "Address is a list containing ingress points for the load-balancer",
            ),
            col(
                "Ports",
                "string",
                0,
                "Ports of TLS configurations that open",
            ),
            AGE,
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            NAME,
            col(
                "Controller",
                "string",
                0,
                "Controller that is responsible for handling this class",
            ),
            col(
                "Parameters",
                "string",
                0,
                "A reference to a resource with additional parameters",
            ),
            AGE,
        ],
        ("policy", "poddisruptionbudgets") => vec![
            NAME,
            col(
                "Min Available",
                "string",
                0,
                "The minimum number of pods that must be available simultaneously.",
            ),
            col(
                "Max Unavailable",
                "string",
                0,
                "The maximum number of pods that may be unavailable simultaneously.",
            ),
            col(
                "Allowed Disruptions",
                "integer",
                0,
                "Calculated number of pods that may be disrupted at this time",
            ),
            AGE,
        ],
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => vec![
            NAME,
            col("Role", "string", 0, "Role to which this binding refers"),
            AGE,
            col("Users", "string", 1, "Users in the binding"),
            col("Groups", "string", 1, "Groups in the binding"),
            col(
                "ServiceAccounts",
                "string",
                1,
                "ServiceAccounts in the binding",
            ),
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            NAME,
            col("Value", "integer", 0, "The value of this priority class."),
            col(
                "Global-Default",
                "boolean",
                0,
                "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
            ),
            AGE,
            col(
                "PreemptionPolicy",
                "string",
                0,
                "PreemptionPolicy is the Policy for preempting pods with lower priority.",
            ),
        ],
        ("certificates.k8s.io", "certificatesigningrequests") => vec![
            NAME,
            AGE,
            col(
                "SignerName",
                "string",
                0,
                "Name of the signer that will issue the certificate",
            ),
            col(
                "Requestor",
                "string",
                0,
                "Name of the user who made the request",
            ),
            col(
                "RequestedDuration",
                "string",
                0,
                "Requested duration of the certificate",
            ),
            col("Condition", "string", 0, "Status of the request"),
        ],
        ("coordination.k8s.io", "leases") => vec![
            NAME,
            col("Holder", "string", 0, "The holder of the lease"),
            AGE,
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            NAME,
            col("AddressType", "string", 0, "The IP protocol for this slice"),
            col("Ports", "string", 0, "The ports for this slice"),
            col("Endpoints", "string", 0, "First N endpoints for this slice"),
            AGE,
        ],
        _ => vec![
            NAME,
            col(
                "Created At",
                "date",
                0,
                "Time at which the object was created",
            ),
        ],
    }
}

fn str_of<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_of(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// kubectl's CSR condition: Denied, Approved or Pending, then Failed and Issued.
fn csr_condition(o: &Value) -> String {
    let has = |t: &str| {
        o["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t))
    };
    let mut s = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        s.push_str(",Failed");
    }
    if o["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        s.push_str(",Issued");
    }
    s
}

fn since(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// `metav1.FormatLabelSelector`.
pub fn format_label_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        let mut kv: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        kv.sort();
        parts.extend(kv);
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let vals: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    if parts.is_empty()
        && sel.is_object()
        && sel.get("matchLabels").is_none()
        && sel.get("matchExpressions").is_none()
        && !sel.as_object().is_some_and(|o| o.is_empty())
    {
        return "<none>".into();
    }
    none_if_empty(parts.join(","))
}

fn map_selector(m: &Value) -> String {
    let mut kv: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    kv.sort();
    none_if_empty(kv.join(","))
}

fn template_containers(pod_spec: &Value) -> (String, String) {
    let cs = pod_spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .map(|c| c["image"].as_str().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

fn pod_row(p: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &p["spec"];
    let status = &p["status"];
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut total = spec["containers"].as_array().map(Vec::len).unwrap_or(0);
    let mut ready = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable: Option<DateTime<Utc>> = None;
    let phase = status["phase"].as_str().unwrap_or("");
    let mut reason = status["reason"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_string();
    for c in status["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let init_specs = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
    };
    total += init_specs
        .iter()
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    let later = |cur: Option<DateTime<Utc>>, t: Option<DateTime<Utc>>| match (cur, t) {
        (Some(a), Some(b)) if b > a => Some(b),
        (None, b) => b,
        (a, _) => a,
    };
    let mut initializing = false;
    for (i, c) in status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        let term_at = c["lastState"]["terminated"]["finishedAt"]
            .as_str()
            .and_then(parse_time);
        last_restart = later(last_restart, term_at);
        let name = c["name"].as_str().unwrap_or("");
        let is_r = restartable(name);
        if is_r {
            restartable_restarts += c["restartCount"].as_i64().unwrap_or(0);
            last_restartable = later(last_restartable, term_at);
        }
        let term = &c["state"]["terminated"];
        let waiting = &c["state"]["waiting"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        } else if is_r && c["started"] == json!(true) {
            if c["ready"] == json!(true) {
                ready += 1;
            }
            continue;
        } else if term.is_object() {
            reason = match term["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if term["signal"].as_i64().unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", term["signal"])
                }
                None => format!("Init:ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
            };
        } else if let Some(r) = waiting["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }
    let initialized = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable;
        let mut has_running = false;
        let statuses = status["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            last_restart = later(
                last_restart,
                c["lastState"]["terminated"]["finishedAt"]
                    .as_str()
                    .and_then(parse_time),
            );
            let waiting = &c["state"]["waiting"];
            let term = &c["state"]["terminated"];
            if let Some(r) = waiting["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(r) = term["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if term.is_object() {
                reason = if term["signal"].as_i64().unwrap_or(0) != 0 {
                    format!("Signal:{}", term["signal"])
                } else {
                    format!("ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0))
                };
            } else if c["ready"] == json!(true) && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let ready_cond = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            reason = if ready_cond {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let deleting = p["metadata"]["deletionTimestamp"].is_string();
    if deleting && status["reason"] == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts_str = match (restarts, last_restart) {
        (0, _) | (_, None) => restarts.to_string(),
        (n, Some(t)) => format!("{n} ({} ago)", human_duration(now - t)),
    };
    let ip = status["podIPs"][0]["ip"]
        .as_str()
        .or(status["podIP"].as_str())
        .unwrap_or("");
    let gates = spec["readinessGates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let t = gates
            .iter()
            .filter(|g| {
                status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            })
            .count();
        format!("{t}/{}", gates.len())
    };
    vec![
        json!(str_of(p, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(since(str_of(p, "/metadata/creationTimestamp"), now)),
        json!(none_if_empty(ip.to_string())),
        json!(none_if_empty(str_of(p, "/spec/nodeName").to_string())),
        json!(none_if_empty(
            str_of(p, "/status/nominatedNodeName").to_string()
        )),
        json!(gates_str),
    ]
}

fn node_row(n: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let conds = n["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut status = match conds.iter().find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if n["spec"]["unschedulable"] == json!(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in n["metadata"]["labels"].as_object().into_iter().flatten() {
        if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
            if !r.is_empty() {
                roles.push(r.to_string());
            }
        } else if k == "kubernetes.io/role"
            && let Some(r) = v.as_str().filter(|r| !r.is_empty())
        {
            roles.push(r.to_string());
        }
    }
    roles.sort();
    roles.dedup();
    let addr = |t: &str| {
        n["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = &n["status"]["nodeInfo"];
    vec![
        json!(str_of(n, "/metadata/name")),
        json!(status),
        json!(none_if_empty(roles.join(","))),
        json!(since(str_of(n, "/metadata/creationTimestamp"), now)),
        json!(str_of(info, "/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(none_if_empty(str_of(info, "/osImage").to_string()).replace("<none>", "<unknown>")),
        json!(
            none_if_empty(str_of(info, "/kernelVersion").to_string())
                .replace("<none>", "<unknown>")
        ),
        json!(
            none_if_empty(str_of(info, "/containerRuntimeVersion").to_string())
                .replace("<none>", "<unknown>")
        ),
    ]
}

fn service_row(s: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &s["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let cluster_ip = none_if_empty(spec["clusterIP"].as_str().unwrap_or("").to_string());
    let ext_ips: Vec<&str> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => none_if_empty(ext_ips.join(",")),
        "LoadBalancer" => {
            let mut lb: Vec<String> = s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i["ip"]
                        .as_str()
                        .or(i["hostname"].as_str())
                        .map(str::to_string)
                })
                .collect();
            lb.extend(ext_ips.iter().map(|s| s.to_string()));
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => spec["externalName"].as_str().unwrap_or("").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    vec![
        json!(str_of(s, "/metadata/name")),
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(none_if_empty(ports.join(","))),
        json!(since(str_of(s, "/metadata/creationTimestamp"), now)),
        json!(map_selector(&spec["selector"])),
    ]
}

fn endpoints_row(e: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(str_of(e, "/metadata/name")),
        json!(format_endpoints(&e["subsets"])),
        json!(since(str_of(e, "/metadata/creationTimestamp"), now)),
    ]
}

/// kubectl's formatEndpoints: `ip:port` for each port of each subset, the first three
/// and "+ N more..."; `<none>` without subsets, nothing when none is ready.
fn format_endpoints(subsets: &Value) -> String {
    const MAX: usize = 3;
    let Some(subsets) = subsets.as_array().filter(|s| !s.is_empty()) else {
        return "<none>".into();
    };
    let (mut list, mut count, mut more) = (Vec::new(), 0, false);
    for ss in subsets {
        let ips: Vec<&str> = ss["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["ip"].as_str().unwrap_or(""))
            .collect();
        let ports: Vec<i64> = ss["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["port"].as_i64().unwrap_or(0))
            .collect();
        // A headless Service without ports lists bare addresses.
        let per_port: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.into_iter().map(Some).collect()
        };
        for port in per_port {
            count += ips.len();
            for ip in &ips {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(match port {
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                    None => ip.to_string(),
                });
            }
        }
    }
    let shown = list.join(",");
    if more {
        format!("{shown} + {} more...", count - MAX)
    } else {
        shown
    }
}

/// kubectl's listWithMoreString: the first three, "+ N more...", `<unset>` for none.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX)
    } else if items.is_empty() {
        "<unset>".into()
    } else {
        items.join(",")
    }
}

fn event_row(e: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Core and events.k8s.io shapes.
    let io = if e["involvedObject"].is_object() {
        &e["involvedObject"]
    } else {
        &e["regarding"]
    };
    let first = e["firstTimestamp"]
        .as_str()
        .or(e["deprecatedFirstTimestamp"].as_str())
        .or(e["eventTime"].as_str())
        .unwrap_or("");
    let last = e["lastTimestamp"]
        .as_str()
        .or(e["deprecatedLastTimestamp"].as_str())
        .or(e["series"]["lastObservedTime"].as_str())
        .or(e["eventTime"].as_str())
        .unwrap_or(first);
    let count = e["count"]
        .as_i64()
        .or(e["deprecatedCount"].as_i64())
        .or(e["series"]["count"].as_i64())
        .unwrap_or(1);
    let source = e["source"]["component"]
        .as_str()
        .or(e["reportingComponent"].as_str())
        .or(e["reportingController"].as_str())
        .unwrap_or("");
    let host = e["source"]["host"].as_str().unwrap_or("");
    let source = if host.is_empty() {
        source.to_string()
    } else {
        format!("{source}, {host}")
    };
    let message = e["message"].as_str().or(e["note"].as_str()).unwrap_or("");
    vec![
        json!(since(last, now)),
        json!(str_of(e, "/type")),
        json!(str_of(e, "/reason")),
        json!(format!(
            "{}/{}",
            io["kind"].as_str().unwrap_or("").to_lowercase(),
            io["name"].as_str().unwrap_or("")
        )),
        json!(str_of(io, "/fieldPath")),
        json!(source),
        json!(message.trim()),
        json!(since(first, now)),
        json!(count.to_string()),
        json!(str_of(e, "/metadata/name")),
    ]
}

/// kubectl's TARGETS: each Resource metric as `name: current/target`, two at most.
fn hpa_targets(o: &Value) -> String {
    let specs = o["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = o["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut list = Vec::new();
    for (i, m) in specs.iter().take(2).enumerate() {
        let cur = statuses.get(i).map(|s| &s["resource"]["current"]);
        let r = &m["resource"];
        if m["type"] != "Resource" || !r.is_object() {
            list.push("<unknown>".to_string());
            continue;
        }
        let name = r["name"].as_str().unwrap_or("");
        let t = &r["target"];
        if let Some(avg) = t["averageValue"].as_str() {
            let current = cur
                .and_then(|c| c["averageValue"].as_str())
                .unwrap_or("<unknown>");
            list.push(format!("{name}: {current}/{avg}"));
        } else {
            let current = cur
                .and_then(|c| c["averageUtilization"].as_i64())
                .map_or("<unknown>".to_string(), |u| format!("{u}%"));
            let target = t["averageUtilization"]
                .as_i64()
                .map_or("<auto>".to_string(), |u| format!("{u}%"));
            list.push(format!("{name}: {current}/{target}"));
        }
    }
    let mut out = list.join(", ");
    if specs.len() > 2 {
        out.push_str(&format!(" + {} more...", specs.len() - 2));
    }
    out
}

fn job_row(j: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let completions = match j["spec"]["completions"].as_i64() {
        Some(c) => format!("{}/{c}", int_of(j, "/status/succeeded")),
        None => {
            let p = j["spec"]["parallelism"].as_i64().unwrap_or(0);
            if p > 1 {
                format!("{}/1 of {p}", int_of(j, "/status/succeeded"))
            } else {
                format!("{}/1", int_of(j, "/status/succeeded"))
            }
        }
    };
    let start = j["status"]["startTime"].as_str().and_then(parse_time);
    let end = j["status"]["completionTime"].as_str().and_then(parse_time);
    let duration = match (start, end) {
        (Some(s), Some(e)) => human_duration(e - s),
        (Some(s), None) => human_duration(now - s),
        _ => String::new(),
    };
    let conds = j["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| {
        conds
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    let status = if has("Failed") {
        "Failed"
    } else if has("Complete") {
        "Complete"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (c, i) = template_containers(&j["spec"]["template"]["spec"]);
    vec![
        json!(str_of(j, "/metadata/name")),
        json!(status),
        json!(completions),
        json!(duration),
        json!(since(str_of(j, "/metadata/creationTimestamp"), now)),
        json!(c),
        json!(i),
        json!(format_label_selector(&j["spec"]["selector"])),
    ]
}

fn cronjob_row(c: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last = match c["status"]["lastScheduleTime"].as_str() {
        Some(t) => since(t, now),
        None => "<none>".into(),
    };
    let (cs, is) = template_containers(&c["spec"]["jobTemplate"]["spec"]["template"]["spec"]);
    let suspend = c["spec"]["suspend"].as_bool().unwrap_or(false);
    vec![
        json!(str_of(c, "/metadata/name")),
        json!(str_of(c, "/spec/schedule")),
        json!(none_if_empty(str_of(c, "/spec/timeZone").to_string())),
        json!(if suspend { "True" } else { "False" }),
        json!(c["status"]["active"].as_array().map(Vec::len).unwrap_or(0)),
        json!(last),
        json!(since(str_of(c, "/metadata/creationTimestamp"), now)),
        json!(cs),
        json!(is),
        json!(format_label_selector(
            &c["spec"]["jobTemplate"]["spec"]["selector"]
        )),
    ]
}

fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            o => o,
        })
        .collect();
    modes.join(",")
}

/// One row of cells for an object.
pub fn row(group: &str, resource: &str, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    if group == "storage.k8s.io"
        && let Some(r) = storage::row(resource, o, now)
    {
        return r;
    }
    let name = json!(str_of(o, "/metadata/name"));
    let created = str_of(o, "/metadata/creationTimestamp");
    let age = json!(since(created, now));
    match (group, resource) {
        ("", "pods") => pod_row(o, now),
        ("", "nodes") => node_row(o, now),
        ("", "namespaces") => vec![name, json!(str_of(o, "/status/phase")), age],
        ("", "services") => service_row(o, now),
        ("", "endpoints") => endpoints_row(o, now),
        ("", "configmaps") => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(n.to_string()), age]
        }
        ("", "secrets") => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![
                name,
                json!(o["type"].as_str().unwrap_or("Opaque")),
                json!(n.to_string()),
                age,
            ]
        }
        ("", "serviceaccounts") => vec![
            name,
            json!(
                o["secrets"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0)
                    .to_string()
            ),
            age,
        ],
        ("", "events") | ("events.k8s.io", "events") => event_row(o, now),
        ("", "limitranges")
        | ("rbac.authorization.k8s.io", "roles")
        | ("rbac.authorization.k8s.io", "clusterroles") => vec![name, json!(created)],
        ("", "resourcequotas") => {
            let hard = &o["status"]["hard"];
            let used = &o["status"]["used"];
            let mut req = Vec::new();
            let mut lim = Vec::new();
            for (k, v) in hard.as_object().into_iter().flatten() {
                let entry = format!(
                    "{k}: {}/{}",
                    used[k].as_str().unwrap_or("0"),
                    v.as_str().unwrap_or("")
                );
                if k.starts_with("limits.") {
                    lim.push(entry)
                } else {
                    req.push(entry)
                }
            }
            vec![name, age, json!(req.join(", ")), json!(lim.join(", "))]
        }
        ("", "persistentvolumes") => {
            let claim = match (
                o["spec"]["claimRef"]["namespace"].as_str(),
                o["spec"]["claimRef"]["name"].as_str(),
            ) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                _ => String::new(),
            };
            vec![
                name,
                json!(str_of(o, "/spec/capacity/storage")),
                json!(access_modes(&o["spec"]["accessModes"])),
                json!(str_of(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(str_of(o, "/status/phase")),
                json!(claim),
                json!(str_of(o, "/spec/storageClassName")),
                json!(none_if_empty(
                    str_of(o, "/spec/volumeAttributesClassName").to_string()
                )),
                json!(str_of(o, "/status/reason")),
                age,
                json!(str_of(o, "/spec/volumeMode")),
            ]
        }
        ("", "persistentvolumeclaims") => vec![
            name,
            json!(str_of(o, "/status/phase")),
            json!(str_of(o, "/spec/volumeName")),
            json!(str_of(o, "/status/capacity/storage")),
            json!(access_modes(&o["status"]["accessModes"])),
            json!(str_of(o, "/spec/storageClassName")),
            json!(none_if_empty(
                str_of(o, "/spec/volumeAttributesClassName").to_string()
            )),
            age,
            json!(str_of(o, "/spec/volumeMode")),
        ],
        ("", "podtemplates") => {
            let (c, i) = template_containers(&o["template"]["spec"]);
            let labels = map_selector(&o["template"]["metadata"]["labels"]);
            vec![name, json!(c), json!(i), json!(labels)]
        }
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            let (c, i) = template_containers(&o["spec"]["template"]["spec"]);
            let sel = if resource == "replicasets" {
                format_label_selector(&o["spec"]["selector"])
            } else {
                map_selector(&o["spec"]["selector"])
            };
            vec![
                name,
                json!(o["spec"]["replicas"].as_i64().unwrap_or(1)),
                json!(int_of(o, "/status/replicas")),
                json!(int_of(o, "/status/readyReplicas")),
                age,
                json!(c),
                json!(i),
                json!(sel),
            ]
        }
        ("apps", "deployments") => {
            let (c, i) = template_containers(&o["spec"]["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int_of(o, "/status/readyReplicas"),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                )),
                json!(int_of(o, "/status/updatedReplicas").to_string()),
                json!(int_of(o, "/status/availableReplicas").to_string()),
                age,
                json!(c),
                json!(i),
                json!(format_label_selector(&o["spec"]["selector"])),
            ]
        }
        ("apps", "daemonsets") => {
            let (c, i) = template_containers(&o["spec"]["template"]["spec"]);
            vec![
                name,
                json!(int_of(o, "/status/desiredNumberScheduled")),
                json!(int_of(o, "/status/currentNumberScheduled")),
                json!(int_of(o, "/status/numberReady")),
                json!(int_of(o, "/status/updatedNumberScheduled")),
                json!(int_of(o, "/status/numberAvailable")),
                json!(map_selector(&o["spec"]["template"]["spec"]["nodeSelector"])),
                age,
                json!(c),
                json!(i),
                json!(format_label_selector(&o["spec"]["selector"])),
            ]
        }
        ("apps", "statefulsets") => {
            let (c, i) = template_containers(&o["spec"]["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int_of(o, "/status/readyReplicas"),
                    o["spec"]["replicas"].as_i64().unwrap_or(1)
                )),
                age,
                json!(c),
                json!(i),
            ]
        }
        ("apps", "controllerrevisions") => {
            let owner = o["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["controller"] == json!(true));
            let ctrl = owner
                .map(|r| {
                    format!(
                        "{}/{}",
                        r["kind"].as_str().unwrap_or("").to_lowercase(),
                        r["name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(ctrl), json!(int_of(o, "/revision")), age]
        }
        ("batch", "jobs") => job_row(o, now),
        ("batch", "cronjobs") => cronjob_row(o, now),
        ("autoscaling", "horizontalpodautoscalers") => {
            let r = &o["spec"]["scaleTargetRef"];
            let targets = hpa_targets(o);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                )),
                json!(targets),
                json!(
                    o["spec"]["minReplicas"]
                        .as_i64()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "<unset>".into())
                ),
                json!(int_of(o, "/spec/maxReplicas")),
                json!(int_of(o, "/status/currentReplicas")),
                age,
            ]
        }
        ("networking.k8s.io", "networkpolicies") => vec![
            name,
            json!(format_label_selector(&o["spec"]["podSelector"])),
            age,
        ],
        ("networking.k8s.io", "ingresses") => {
            let hosts: Vec<&str> = o["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["host"].as_str())
                .collect();
            let addrs: Vec<&str> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            let ports = if o["spec"]["tls"].as_array().is_some_and(|t| !t.is_empty()) {
                "80, 443"
            } else {
                "80"
            };
            vec![
                name,
                json!(none_if_empty(
                    str_of(o, "/spec/ingressClassName").to_string()
                )),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }),
                json!(addrs.join(",")),
                json!(ports),
                age,
            ]
        }
        ("networking.k8s.io", "ingressclasses") => {
            let p = &o["spec"]["parameters"];
            let params = if p.is_object() {
                format!(
                    "{}/{}",
                    p["kind"].as_str().unwrap_or(""),
                    p["name"].as_str().unwrap_or("")
                )
            } else {
                "<none>".into()
            };
            vec![
                name,
                json!(str_of(o, "/spec/controller")),
                json!(params),
                age,
            ]
        }
        ("policy", "poddisruptionbudgets") => {
            let show = |v: &Value| match v {
                Value::Null => "N/A".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![
                name,
                json!(show(&o["spec"]["minAvailable"])),
                json!(show(&o["spec"]["maxUnavailable"])),
                json!(int_of(o, "/status/disruptionsAllowed")),
                age,
            ]
        }
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            let subjects = o["subjects"].as_array().cloned().unwrap_or_default();
            let pick = |kind: &str| {
                subjects
                    .iter()
                    .filter(|s| s["kind"] == kind)
                    .map(|s| {
                        if kind == "ServiceAccount" {
                            format!(
                                "{}/{}",
                                s["namespace"].as_str().unwrap_or(""),
                                s["name"].as_str().unwrap_or("")
                            )
                        } else {
                            s["name"].as_str().unwrap_or("").to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    o["roleRef"]["kind"].as_str().unwrap_or(""),
                    o["roleRef"]["name"].as_str().unwrap_or("")
                )),
                age,
                json!(pick("User")),
                json!(pick("Group")),
                json!(pick("ServiceAccount")),
            ]
        }
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name,
            json!(int_of(o, "/value")),
            json!(o["globalDefault"].as_bool().unwrap_or(false)),
            age,
            json!(
                o["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
            ),
        ],
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(str_of(o, "/spec/holderIdentity")), age]
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            let duration = o["spec"]["expirationSeconds"]
                .as_i64()
                .map_or("<none>".to_string(), |s| {
                    human_duration(chrono::Duration::seconds(s))
                });
            vec![
                name,
                age,
                json!(str_of(o, "/spec/signerName")),
                json!(str_of(o, "/spec/username")),
                json!(duration),
                json!(csr_condition(o)),
            ]
        }
        ("discovery.k8s.io", "endpointslices") => {
            // kubectl's formatDiscoveryPorts and formatDiscoveryEndpoints.
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(name)) => name.to_string(),
                    (None, None) => "*".to_string(),
                })
                .collect();
            let eps: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| {
                    e["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            vec![
                name,
                json!(str_of(o, "/addressType")),
                json!(list_with_more(ports)),
                json!(list_with_more(eps)),
                age,
            ]
        }
        _ => vec![name, json!(created)],
    }
}

/// Row objects carry metadata (`Metadata`, default), the whole object (`Object`) or nothing.
fn row_object(o: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => o.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

/// The whole Table.
pub fn table(
    group: &str,
    resource: &str,
    objs: &[Value],
    include_object: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let cols: Vec<Value> = columns(group, resource)
        .into_iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut r = json!({"cells": row(group, resource, o, now)});
            let obj = row_object(o, include_object);
            if !obj.is_null() {
                r["object"] = obj;
            }
            r
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": cols, "rows": rows})
}

#[cfg(test)]
mod tests;
