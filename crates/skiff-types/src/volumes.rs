//! Names the persistent-volume machinery shares: the annotations and finalizers
//! Kubernetes' binder, scheduler, provisioners and protection controllers agree on, and
//! skiff's built-in local-path provisioner and its default StorageClass.

/// Set by the scheduler on a WaitForFirstConsumer claim: the node its pod goes to.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set by the binder on a claim to be provisioned: who provisions it.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set by a provisioner on the volume it made.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set by the binder on a claim once both halves of the binding are written.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set by the binder on whichever half it bound (not the user's pre-binding).
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// The built-in provisioner: a directory per volume on the node the pod went to.
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// Its StorageClass, the cluster's default (as k3s ships rancher's local-path).
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The StorageClass annotation that makes a class the default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
