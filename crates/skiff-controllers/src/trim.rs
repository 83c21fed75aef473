//! What the controller manager keeps of pods and nodes: its shared informers drop every
//! other field before the objects are shared (client-go's informer transforms, which
//! kube-controller-manager uses to strip managed fields). A decoded pod costs ~23 KB as
//! a `serde_json::Value` and ~10 KB trimmed; at 10,000 pods that is 130 MB.
//!
//! The lists are exactly what the loops subscribed to these collections read (replicaset,
//! daemonset, statefulset, job, disruption, endpoints, endpointslice, podgc, persistentvolume; ipam,
//! nodelifecycle, certificates, servicelb, ingressstatus), including everything they send back: pod
//! `ownerReferences` and `finalizers` whole, and `resourceVersion` as their precondition;
//! node taints and conditions whole. A loop that starts reading another field adds it
//! here; the test below runs the loops on whole and trimmed objects and compares.

use crate::Informers;
use serde_json::Value;
use skiff_kube::keep::Keep::{self, All, Each, Fields};

pub const PODS: &str = "/api/v1/pods";
pub const NODES: &str = "/api/v1/nodes";

static POD: Keep = Fields(&[
    ("apiVersion", All),
    ("kind", All),
    (
        "metadata",
        Fields(&[
            ("name", All),
            ("namespace", All),
            ("uid", All),
            ("resourceVersion", All),
            ("creationTimestamp", All),
            ("deletionTimestamp", All),
            ("labels", All),
            ("ownerReferences", All),
            ("finalizers", All),
            (
                "annotations",
                Fields(&[
                    (crate::podfacts::POD_DELETION_COST, All),
                    (crate::job::INDEX, All),
                ]),
            ),
        ]),
    ),
    (
        "spec",
        Fields(&[
            ("nodeName", All),
            ("hostname", All),
            ("subdomain", All),
            // How a DaemonSet's unbound pod names its node.
            (
                "affinity",
                Fields(&[(
                    "nodeAffinity",
                    Fields(&[("requiredDuringSchedulingIgnoredDuringExecution", All)]),
                )]),
            ),
            // The claims pods use, which the PVC protection keeps.
            (
                "volumes",
                Each(&Fields(&[("name", All), ("persistentVolumeClaim", All)])),
            ),
            // Named target ports, and sidecars among the init containers.
            (
                "containers",
                Each(&Fields(&[("name", All), ("ports", All)])),
            ),
            (
                "initContainers",
                Each(&Fields(&[
                    ("name", All),
                    ("restartPolicy", All),
                    ("ports", All),
                ])),
            ),
        ]),
    ),
    (
        "status",
        Fields(&[
            ("phase", All),
            ("reason", All),
            ("podIP", All),
            ("podIPs", All),
            (
                "conditions",
                Each(&Fields(&[
                    ("type", All),
                    ("status", All),
                    ("lastTransitionTime", All),
                ])),
            ),
            (
                "containerStatuses",
                Each(&Fields(&[
                    ("name", All),
                    ("restartCount", All),
                    ("state", All),
                ])),
            ),
        ]),
    ),
]);

static NODE: Keep = Fields(&[
    ("apiVersion", All),
    ("kind", All),
    (
        "metadata",
        Fields(&[
            ("name", All),
            ("uid", All),
            ("resourceVersion", All),
            ("creationTimestamp", All),
            ("labels", All),
            (
                "annotations",
                Fields(&[(skiff_ingress::class::NODE_ANNOTATION, All)]),
            ),
        ]),
    ),
    (
        "spec",
        Fields(&[
            ("taints", All),
            ("podCIDR", All),
            ("podCIDRs", All),
            ("unschedulable", All),
        ]),
    ),
    (
        "status",
        Fields(&[
            ("conditions", All),
            ("addresses", All),
            ("allocatable", All),
        ]),
    ),
]);

pub fn pod(o: &mut Value) {
    POD.prune(o)
}

pub fn node(o: &mut Value) {
    NODE.prune(o)
}

/// The controller manager's shared informers, pods and nodes trimmed.
pub fn informers(client: kube::Client) -> Informers {
    Informers::new(client)
        .with_transform(PODS, pod)
        .with_transform(NODES, node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointutil::{PodInfo, decode};
    use crate::{daemonset, job, nodelifecycle, owner, podfacts, podgc, replicaset, statefulset};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::collections::{HashMap, HashSet};

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:10:00Z";

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-01T00:20:00Z".parse().unwrap()
    }

    /// A pod as the API serves it, with everything a kubelet and admission add.
    fn full_pod(name: &str, owner: Option<(&str, &str)>, phase: &str, ready: bool) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "resourceVersion": "42", "generation": 1, "creationTimestamp": T0,
                "generateName": "x-",
                "labels": {"app": "web", "controller-revision-hash": "r1"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                    "controller.kubernetes.io/pod-deletion-cost": "5"
                },
            },
            "spec": {
                "nodeName": "n1",
                "hostname": name, "subdomain": "web",
                "containers": [{
                    "name": "app", "image": "busybox", "imagePullPolicy": "Always",
                    "command": ["sleep", "3600"], "env": [{"name": "A", "value": "b"}],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "10m"}},
                    "volumeMounts": [{"name": "tok", "mountPath": "/var/run/secrets"}],
                    "terminationMessagePath": "/dev/termination-log"
                }],
                "initContainers": [{
                    "name": "sidecar", "image": "busybox", "restartPolicy": "Always",
                    "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
                }],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}],
                "volumes": [{"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
                "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "serviceAccountName": "default", "priority": 0
            },
            "status": {
                "phase": phase,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": T0},
                    {"type": "Ready", "status": if ready { "True" } else { "False" },
                     "lastProbeTime": null, "lastTransitionTime": T1, "reason": "r", "message": "m"}
                ],
                "containerStatuses": [{
                    "name": "app", "image": "busybox", "imageID": "sim://busybox",
                    "containerID": "containerd://1", "ready": ready, "started": true,
                    "restartCount": 2, "lastState": {}, "state": {"running": {"startedAt": T0}}
                }],
                "hostIP": "198.18.0.1", "hostIPs": [{"ip": "198.18.0.1"}],
                "podIP": "10.42.0.7", "podIPs": [{"ip": "10.42.0.7"}],
                "qosClass": "Burstable", "startTime": T0
            }
        });
        if let Some((kind, owner)) = owner {
            p["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": format!("uid-{owner}"),
                "controller": true, "blockOwnerDeletion": true
            }]);
        }
        p
    }

    fn pods() -> Vec<Value> {
        let mut terminating = full_pod("web-c", Some(("ReplicaSet", "web")), "Running", true);
        terminating["metadata"]["deletionTimestamp"] = json!(T1);
        let mut unbound = full_pod("web-d", Some(("ReplicaSet", "web")), "Pending", false);
        unbound["spec"].as_object_mut().unwrap().remove("nodeName");
        let mut failed = full_pod("job-0", Some(("Job", "job")), "Failed", false);
        failed["metadata"]["finalizers"] = json!([job::TRACKING]);
        failed["metadata"]["annotations"][job::INDEX] = json!("0");
        failed["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "DisruptionTarget", "status": "True", "reason": "x"}));
        failed["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 42, "finishedAt": T1, "reason": "Error"}});
        let mut done = full_pod("job-1", Some(("Job", "job")), "Succeeded", false);
        done["metadata"]["finalizers"] = json!([job::TRACKING]);
        done["metadata"]["annotations"][job::INDEX] = json!("1");
        done["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 0, "finishedAt": T1}});
        let mut daemon = full_pod("ds-a", Some(("DaemonSet", "ds")), "Pending", false);
        daemon["spec"].as_object_mut().unwrap().remove("nodeName");
        daemon["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}});
        let mut evicted = full_pod("ev", None, "Failed", false);
        evicted["status"]["reason"] = json!("Evicted");
        evicted["spec"]["nodeName"] = json!("gone");
        vec![
            full_pod("web-a", Some(("ReplicaSet", "web")), "Running", true),
            full_pod("web-b", Some(("ReplicaSet", "web")), "Running", false),
            terminating,
            unbound,
            full_pod("lone", None, "Running", true),
            failed,
            done,
            daemon,
            evicted,
            full_pod("db-0", Some(("StatefulSet", "db")), "Running", true),
            full_pod("db-1", Some(("StatefulSet", "db")), "Pending", false),
        ]
    }

    fn full_node(name: &str, ready: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
                         "creationTimestamp": T0,
                         "annotations": {"a": "b", skiff_ingress::class::NODE_ANNOTATION: "80,443"},
                         "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "z1",
                                    "svccontroller.k3s.cattle.io/enablelb": "true"}},
            "spec": {"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24"],
                     "taints": [{"key": "node.kubernetes.io/out-of-service", "value": "x", "effect": "NoExecute", "timeAdded": T0}]},
            "status": {
                "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "ok",
                                "lastHeartbeatTime": T1, "lastTransitionTime": T0}],
                "addresses": [{"type": "InternalIP", "address": "198.18.0.1"}, {"type": "Hostname", "address": name}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"},
                "images": [{"names": ["busybox"], "sizeBytes": 1}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
            }
        })
    }

    fn trimmed(items: &[Value], t: Transform) -> Vec<Value> {
        items
            .iter()
            .map(|o| {
                let mut o = o.clone();
                t(&mut o);
                o
            })
            .collect()
    }
    type Transform = fn(&mut Value);

    /// Everything the pod-reading loops decide from `pods` and `nodes`.
    fn decisions(pods: &[Value], nodes: &[Value]) -> Vec<String> {
        let p: Vec<&Value> = pods.iter().collect();
        let n: Vec<&Value> = nodes.iter().collect();
        let rs = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
            "spec": {"replicas": 2, "minReadySeconds": 30, "selector": {"matchLabels": {"app": "web"}}}});
        let job = json!({"metadata": {"name": "job", "namespace": "ns", "uid": "uid-job"},
            "spec": {"completions": 3, "parallelism": 2, "completionMode": "Indexed", "backoffLimit": 6, "template": {"spec": {"containers": []}},
                     "podFailurePolicy": {"rules": [
                         {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                         {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}},
            "status": {"startTime": T0}});
        let ds = json!({"metadata": {"name": "ds", "namespace": "ns", "uid": "uid-ds"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": []}}}});
        let set = json!({"metadata": {"name": "db", "namespace": "ns", "uid": "uid-db"},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "web"}}, "template": {}}});
        let pdb = json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
        let by_name: HashMap<&str, &Value> = n
            .iter()
            .map(|n| (n["metadata"]["name"].as_str().unwrap(), *n))
            .collect();
        let mut sorted = p.clone();
        podfacts::sort_for_deletion(&mut sorted);
        let mut out = vec![
            format!(
                "{:?}",
                replicaset::reconcile(&crate::typed(&rs).unwrap(), &rs, &p, now())
            ),
            format!(
                "{:?}",
                job::reconcile(&crate::typed(&job).unwrap(), &p, now())
            ),
            format!(
                "{:?}",
                daemonset::reconcile(&crate::typed(&ds).unwrap(), "r1", &n, &p, now())
            ),
            format!(
                "{:?}",
                statefulset::reconcile(&crate::typed(&set).unwrap(), "r1", "r1", &p, now())
            ),
            format!("{:?}", skiff_validation::disruption::budget(&pdb, &p)),
            format!(
                "{:?}",
                podgc::plan(&p, &by_name, &HashSet::new(), 1)
                    .iter()
                    .map(|(p, why)| (reflect_key(p), format!("{why:?}")))
                    .collect::<Vec<_>>()
            ),
            format!(
                "{:?}",
                sorted.iter().map(|p| reflect_key(p)).collect::<Vec<_>>()
            ),
        ];
        for p in pods {
            out.push(format!("{:?}", owner::controller_of(p)));
            out.push(format!(
                "{:?}",
                decode::<Pod>(p).map(|p| PodInfo::from_pod(&p))
            ));
            out.push(format!(
                "{:?}",
                job::failure_action(
                    &crate::typed(&job).unwrap(),
                    &crate::podfacts::PodFacts::of(p)
                )
            ));
            out.push(format!(
                "{}",
                podfacts::PodFacts::of(p).is_available(30, now())
            ));
        }
        for n in nodes {
            let lease = Some(now());
            out.push(format!(
                "{:?}",
                nodelifecycle::health(n, lease, now(), std::time::Duration::from_secs(40))
            ));
            let conditions = n["status"]["conditions"].as_array().unwrap();
            out.push(format!(
                "{:?}",
                nodelifecycle::unknown_conditions(conditions, T0, T1)
            ));
            out.push(format!(
                "{:?}",
                daemonset::eligibility(&crate::typed(&ds).unwrap(), n)
            ));
            out.push(format!("{:?}", skiff_scheduler::NodeInfo::from_json(n)));
            let typed = decode::<Node>(n).unwrap();
            out.push(format!("{:?}", crate::servicelb::LbNode::from_node(&typed)));
            let serving = crate::ingressstatus::IngressNode::from_node(&typed);
            out.push(format!("{serving:?}"));
            out.push(format!("{:?}", n["spec"]["taints"]));
        }
        out
    }

    fn reflect_key(p: &Value) -> String {
        skiff_kube::reflect::key(p)
    }

    #[test]
    fn the_loops_decide_the_same_on_trimmed_objects() {
        let (pods, nodes) = (
            pods(),
            vec![full_node("n1", "True"), full_node("n2", "False")],
        );
        let whole = decisions(&pods, &nodes);
        let small = decisions(&trimmed(&pods, pod), &trimmed(&nodes, node));
        for (w, s) in whole.iter().zip(&small) {
            assert_eq!(w, s);
        }
        // The comparison can tell: without pod IPs the endpoints would change.
        let mut no_ips = trimmed(&pods, pod);
        no_ips.iter_mut().for_each(|p| {
            p["status"].as_object_mut().unwrap().remove("podIPs");
            p["status"].as_object_mut().unwrap().remove("podIP");
        });
        assert_ne!(whole, decisions(&no_ips, &nodes));
    }

    #[test]
    fn trimming_drops_what_no_loop_reads() {
        let mut p = pods()[5].clone();
        let before = serde_json::to_vec(&p).unwrap().len();
        pod(&mut p);
        let after = serde_json::to_vec(&p).unwrap().len();
        assert!(p["spec"].get("tolerations").is_none());
        // Of volumes, only what the PVC protection reads: names and claims.
        for v in p["spec"]["volumes"].as_array().into_iter().flatten() {
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert!(
                keys.iter()
                    .all(|k| *k == "name" || *k == "persistentVolumeClaim"),
                "{v}"
            );
        }
        assert!(
            p["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        assert_eq!(p["metadata"]["annotations"][job::INDEX], "0");
        assert_eq!(
            p["spec"]["containers"][0],
            json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]})
        );
        assert!(after * 10 < before * 6, "{before} -> {after} bytes");
        let mut n = full_node("n1", "True");
        node(&mut n);
        assert!(n["status"].get("nodeInfo").is_none() && n["status"].get("images").is_none());
        assert_eq!(
            n["metadata"]["annotations"],
            json!({skiff_ingress::class::NODE_ANNOTATION: "80,443"})
        );
        assert_eq!(
            n["spec"]["taints"][0]["timeAdded"], T0,
            "taints are written back whole"
        );
    }
}
