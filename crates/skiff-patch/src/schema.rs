//! Patch metadata of Kubernetes types: which lists merge, by which key, and which unions
//! retain keys. Facts from k8s.io/api `types.go` struct tags (`patchStrategy`,
//! `patchMergeKey`). Fields not listed behave as in a JSON merge patch: maps merge,
//! lists are replaced.

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// A list of maps merged by a key field (`containers` by `name`).
    Map(&'static str),
    /// A list of scalars merged as a set (`finalizers`).
    Set,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub list: Option<ListKind>,
    /// `patchStrategy:"merge,retainKeys"` (volumes).
    pub retain_keys: bool,
    /// Type of the field's value (or of the list's items).
    pub ty: Option<&'static Type>,
}

#[derive(Debug)]
pub struct Type {
    pub fields: &'static [Field],
}

impl Type {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn f(name: &'static str, ty: &'static Type) -> Field {
    Field {
        name,
        list: None,
        retain_keys: false,
        ty: Some(ty),
    }
}
const fn merge(name: &'static str, key: &'static str, ty: &'static Type) -> Field {
    Field {
        name,
        list: Some(ListKind::Map(key)),
        retain_keys: false,
        ty: Some(ty),
    }
}
const fn merge_leaf(name: &'static str, key: &'static str) -> Field {
    Field {
        name,
        list: Some(ListKind::Map(key)),
        retain_keys: false,
        ty: None,
    }
}
const fn set(name: &'static str) -> Field {
    Field {
        name,
        list: Some(ListKind::Set),
        retain_keys: false,
        ty: None,
    }
}

pub static EMPTY: Type = Type { fields: &[] };

pub static OBJECT_META: Type = Type {
    fields: &[set("finalizers"), merge_leaf("ownerReferences", "uid")],
};

pub static CONTAINER: Type = Type {
    fields: &[
        merge_leaf("ports", "containerPort"),
        merge_leaf("env", "name"),
        merge_leaf("volumeMounts", "mountPath"),
        merge_leaf("volumeDevices", "devicePath"),
    ],
};

pub static POD_SPEC: Type = Type {
    fields: &[
        merge("containers", "name", &CONTAINER),
        merge("initContainers", "name", &CONTAINER),
        merge("ephemeralContainers", "name", &CONTAINER),
        Field {
            name: "volumes",
            list: Some(ListKind::Map("name")),
            retain_keys: true,
            ty: Some(&EMPTY),
        },
        merge_leaf("imagePullSecrets", "name"),
        merge_leaf("hostAliases", "ip"),
        Field {
            name: "resourceClaims",
            list: Some(ListKind::Map("name")),
            retain_keys: true,
            ty: Some(&EMPTY),
        },
        merge_leaf("schedulingGates", "name"),
    ],
};

pub static CONDITIONS_STATUS: Type = Type {
    fields: &[merge_leaf("conditions", "type")],
};

pub static POD_STATUS: Type = Type {
    fields: &[
        merge_leaf("conditions", "type"),
        merge_leaf("podIPs", "ip"),
        merge_leaf("hostIPs", "ip"),
    ],
};

pub static POD_TEMPLATE: Type = Type {
    fields: &[f("metadata", &OBJECT_META), f("spec", &POD_SPEC)],
};

pub static POD: Type = Type {
    fields: &[
        f("metadata", &OBJECT_META),
        f("spec", &POD_SPEC),
        f("status", &POD_STATUS),
    ],
};

static TEMPLATE_SPEC: Type = Type {
    fields: &[f("template", &POD_TEMPLATE)],
};

pub static WORKLOAD: Type = Type {
    fields: &[
        f("metadata", &OBJECT_META),
        f("spec", &TEMPLATE_SPEC),
        f("status", &CONDITIONS_STATUS),
    ],
};

static JOB_TEMPLATE: Type = Type {
    fields: &[f("metadata", &OBJECT_META), f("spec", &TEMPLATE_SPEC)],
};
static CRONJOB_SPEC: Type = Type {
    fields: &[f("jobTemplate", &JOB_TEMPLATE)],
};
pub static CRONJOB: Type = Type {
    fields: &[f("metadata", &OBJECT_META), f("spec", &CRONJOB_SPEC)],
};

static SERVICE_SPEC: Type = Type {
    fields: &[merge_leaf("ports", "port")],
};
pub static SERVICE: Type = Type {
    fields: &[
        f("metadata", &OBJECT_META),
        f("spec", &SERVICE_SPEC),
        f("status", &CONDITIONS_STATUS),
    ],
};

static NODE_SPEC: Type = Type {
    fields: &[set("podCIDRs")],
};
static NODE_STATUS: Type = Type {
    fields: &[
        merge_leaf("conditions", "type"),
        merge_leaf("addresses", "type"),
    ],
};
pub static NODE: Type = Type {
    fields: &[
        f("metadata", &OBJECT_META),
        f("spec", &NODE_SPEC),
        f("status", &NODE_STATUS),
    ],
};

pub static WITH_CONDITIONS: Type = Type {
    fields: &[f("metadata", &OBJECT_META), f("status", &CONDITIONS_STATUS)],
};

pub static SERVICE_ACCOUNT: Type = Type {
    fields: &[f("metadata", &OBJECT_META), merge_leaf("secrets", "name")],
};

pub static PLAIN: Type = Type {
    fields: &[f("metadata", &OBJECT_META)],
};

static SCALE_SPEC: Type = Type { fields: &[] };
pub static SCALE: Type = Type {
    fields: &[f("metadata", &OBJECT_META), f("spec", &SCALE_SPEC)],
};

/// The root type of a kind.
pub fn root(group: &str, kind: &str) -> &'static Type {
    match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &TEMPLATE_SPEC_ROOT,
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet")
        | ("", "ReplicationController")
        | ("batch", "Job") => &WORKLOAD,
        ("batch", "CronJob") => &CRONJOB,
        ("", "Service") => &SERVICE,
        ("", "Node") => &NODE,
        ("", "Namespace" | "PersistentVolumeClaim")
        | ("autoscaling", "HorizontalPodAutoscaler")
        | ("policy", "PodDisruptionBudget") => &WITH_CONDITIONS,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("autoscaling", "Scale") => &SCALE,
        _ => &PLAIN,
    }
}

static TEMPLATE_SPEC_ROOT: Type = Type {
    fields: &[f("metadata", &OBJECT_META), f("template", &POD_TEMPLATE)],
};

/// `metadata` as every object has it (finalizers a set, ownerReferences keyed by uid):
/// run-time shapes (custom resources) answer with it for their root's `metadata`.
pub static METADATA: Field = f("metadata", &OBJECT_META);
