use super::*;
use serde_json::json;

fn node(name: &str, cpu: &str, mem: &str, extra: Value) -> Value {
    let mut n = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {}, "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}});
    if let Some(l) = extra.get("labels").and_then(Value::as_object) {
        for (k, v) in l {
            n["metadata"]["labels"][k] = v.clone();
        }
    }
    if let Some(t) = extra.get("taints") {
        n["spec"]["taints"] = t.clone();
    }
    if extra.get("unschedulable").is_some() {
        n["spec"]["unschedulable"] = json!(true);
    }
    n
}

fn pod(spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
    }
    json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

fn bound(node: &str, cpu: &str) -> Value {
    json!({"metadata": {"name": format!("on-{node}"), "namespace": "default"}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": "Running"}})
}

#[test]
fn filters_and_messages() {
    let gpu_taint = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    let nodes = vec![
        node("small", "500m", "1Gi", json!({})),
        node("gpu-1", "8", "16Gi", json!({"taints": gpu_taint})),
        node("gpu-2", "8", "16Gi", json!({"taints": gpu_taint})),
    ];
    let snap = Snapshot::build(&nodes, &[]);
    let big = pod(
        json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}]}),
    );
    let err = schedule(&big, &snap).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}."
    );
    assert_eq!(
        schedule(&big, &Snapshot::default())
            .unwrap_err()
            .to_string(),
        "no nodes available to schedule pods"
    );
    let tolerant = pod(
        json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}], "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    assert!(schedule(&tolerant, &snap).unwrap().starts_with("gpu-"));
}

#[test]
fn each_filter() {
    type Case = (&'static str, Value, Value, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "nodeName",
            node("a", "1", "1Gi", json!({})),
            pod(json!({"nodeName": "b"})),
            Some("node(s) didn't match the requested node name"),
        ),
        (
            "cordoned",
            node("a", "1", "1Gi", json!({"unschedulable": true})),
            pod(json!({})),
            Some("node(s) were unschedulable"),
        ),
        (
            "cordon tolerated",
            node("a", "1", "1Gi", json!({"unschedulable": true})),
            pod(
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
            ),
            None,
        ),
        (
            "nodeSelector",
            node("a", "1", "1Gi", json!({"labels": {"disk": "hdd"}})),
            pod(json!({"nodeSelector": {"disk": "ssd"}})),
            Some("node(s) didn't match Pod's node affinity/selector"),
        ),
        (
            "nodeSelector ok",
            node("a", "1", "1Gi", json!({"labels": {"disk": "ssd"}})),
            pod(json!({"nodeSelector": {"disk": "ssd"}})),
            None,
        ),
        (
            "affinity Gt",
            node("a", "1", "1Gi", json!({"labels": {"cores": "4"}})),
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]}}}}),
            ),
            Some("node(s) didn't match Pod's node affinity/selector"),
        ),
        (
            "affinity NotIn / OR of terms",
            node("a", "1", "1Gi", json!({"labels": {"zone": "z1"}})),
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}, {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]}}}}),
            ),
            None,
        ),
        (
            "matchFields name",
            node("a", "1", "1Gi", json!({})),
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}),
            ),
            Some("node(s) didn't match Pod's node affinity/selector"),
        ),
        (
            "NoExecute taint",
            node(
                "a",
                "1",
                "1Gi",
                json!({"taints": [{"key": "k", "effect": "NoExecute"}]}),
            ),
            pod(json!({})),
            Some("node(s) had untolerated taint {k: }"),
        ),
        (
            "PreferNoSchedule does not filter",
            node(
                "a",
                "1",
                "1Gi",
                json!({"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}),
            ),
            pod(json!({})),
            None,
        ),
        (
            "Exists tolerates all",
            node(
                "a",
                "1",
                "1Gi",
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            ),
            pod(json!({"tolerations": [{"operator": "Exists"}]})),
            None,
        ),
        (
            "memory",
            node("a", "1", "64Mi", json!({})),
            pod(
                json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "128Mi"}}}]}),
            ),
            Some("Insufficient memory"),
        ),
        (
            "extended resource",
            node("a", "1", "1Gi", json!({})),
            pod(
                json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"example.com/gpu": "1"}}}]}),
            ),
            Some("Insufficient example.com/gpu"),
        ),
    ];
    for (name, n, p, want) in cases {
        let snap = Snapshot::build(&[n], &[]);
        match (schedule(&p, &snap), want) {
            (Ok(_), None) => {}
            (Err(e), Some(w)) => assert_eq!(
                e.reasons.keys().next().map(String::as_str),
                Some(w),
                "{name}"
            ),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn init_containers_and_pods_count_and_ports() {
    // Effective request: max(sum of app containers, largest init container).
    let p = PodInfo::from_json(&pod(json!({
        "initContainers": [{"name": "i", "image": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "500m"}}}, {"name": "b", "image": "i", "resources": {"requests": {"cpu": "500m"}}}]
    })));
    assert_eq!(p.requests.get("cpu"), 2000);
    let mut full = node("a", "4", "1Gi", json!({}));
    full["status"]["allocatable"]["pods"] = json!("1");
    let snap = Snapshot::build(&[full], &[bound("a", "100m")]);
    assert_eq!(
        schedule(&pod(json!({})), &snap).unwrap_err().to_string(),
        "0/1 nodes are available: 1 Too many pods."
    );
    let hp = |port: i64| json!({"metadata": {"name": "x", "namespace": "d"}, "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": port}]}]}});
    let snap = Snapshot::build(&[node("a", "4", "1Gi", json!({}))], &[hp(8080)]);
    let mut want = hp(8080);
    want["spec"].as_object_mut().unwrap().remove("nodeName");
    assert_eq!(
        schedule(&want, &snap)
            .unwrap_err()
            .reasons
            .keys()
            .next()
            .unwrap(),
        "node(s) didn't have free ports for the requested pod ports"
    );
    let mut other = hp(9090);
    other["spec"].as_object_mut().unwrap().remove("nodeName");
    assert!(schedule(&other, &snap).is_ok());
    // Finished pods free their resources.
    let mut done = bound("a", "4");
    done["status"]["phase"] = json!("Succeeded");
    let snap = Snapshot::build(&[node("a", "4", "1Gi", json!({}))], &[done]);
    assert!(schedule(&pod(json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}]})), &snap).is_ok());
}

#[test]
fn scores_prefer_emptier_preferred_and_untainted_nodes() {
    let nodes = vec![
        node("busy", "4", "8Gi", json!({})),
        node("idle", "4", "8Gi", json!({})),
    ];
    let snap = Snapshot::build(&nodes, &[bound("busy", "3")]);
    assert_eq!(schedule(&pod(json!({})), &snap).unwrap(), "idle");
    let nodes = vec![
        node("a", "4", "8Gi", json!({})),
        node("b", "4", "8Gi", json!({"labels": {"zone": "z2"}})),
    ];
    let snap = Snapshot::build(&nodes, &[]);
    let pref = pod(
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]}}}),
    );
    assert_eq!(schedule(&pref, &snap).unwrap(), "b");
    let nodes = vec![
        node(
            "a",
            "4",
            "8Gi",
            json!({"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}),
        ),
        node("b", "4", "8Gi", json!({})),
    ];
    assert_eq!(
        schedule(&pod(json!({})), &Snapshot::build(&nodes, &[])).unwrap(),
        "b"
    );
    // Equally good nodes: Kubernetes picks one of the best at random (selectHost), so
    // all that is certain is that it is one of them, from wherever the search starts.
    let nodes = vec![
        node("n2", "4", "8Gi", json!({})),
        node("n1", "4", "8Gi", json!({})),
        node("n3", "4", "8Gi", json!({})),
    ];
    let snap = Snapshot::build(&nodes, &[bound("n3", "3")]);
    for start in 0..nodes.len() {
        let (chosen, _) = schedule_from(&pod(json!({})), &snap, start).unwrap();
        assert!(
            ["n1", "n2"].contains(&chosen.as_str()),
            "start {start}: {chosen} is not one of the best"
        );
    }
}

fn zoned(name: &str, zone: &str) -> Value {
    node(name, "8", "16Gi", json!({"labels": {"zone": zone}}))
}

fn placed(name: &str, node: &str, labels: Value, spec_extra: Value) -> Value {
    let mut spec = json!({"nodeName": node, "containers": [{"name": "c", "image": "i"}]});
    for (k, v) in spec_extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec, "status": {"phase": "Running"}})
}

fn with(labels: Value, spec: Value) -> Value {
    let mut p = pod(spec);
    p["metadata"]["labels"] = labels;
    p
}

#[test]
fn pod_affinity_and_anti_affinity() {
    let nodes = vec![zoned("a1", "a"), zoned("b1", "b")];
    let pods = vec![placed("db", "a1", json!({"app": "db"}), json!({}))];
    let snap = Snapshot::build(&nodes, &pods);
    let near_db = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}});
    assert_eq!(
        schedule(&pod(json!({"affinity": near_db})), &snap).unwrap(),
        "a1"
    );
    let away = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}});
    assert_eq!(
        schedule(&pod(json!({"affinity": away})), &snap).unwrap(),
        "b1"
    );
    // Nothing matches anywhere and the pod does not match itself: unschedulable.
    let lonely = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}]}});
    let err = schedule(&pod(json!({"affinity": lonely.clone()})), &snap).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
    );
    // ...but the first pod of a group that matches its own term may go anywhere.
    assert!(
        schedule(
            &with(json!({"app": "cache"}), json!({"affinity": lonely})),
            &snap
        )
        .is_ok()
    );
    // An existing pod's anti-affinity keeps matching pods out of its zone.
    let guard = placed(
        "guard",
        "b1",
        json!({"app": "guard"}),
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}}),
    );
    let snap = Snapshot::build(&nodes, &[guard]);
    let web = with(
        json!({"app": "web"}),
        json!({"nodeSelector": {"zone": "b"}}),
    );
    let err = schedule(&web, &snap).unwrap_err();
    assert!(
        err.reasons
            .contains_key("node(s) didn't satisfy existing pods anti-affinity rules"),
        "{err}"
    );
    // Preferred affinity steers without forbidding.
    let pref = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}});
    let snap = Snapshot::build(&nodes, &pods);
    assert_eq!(
        schedule(&pod(json!({"affinity": pref})), &snap).unwrap(),
        "a1"
    );
}

#[test]
fn topology_spread_and_owner_spreading() {
    let nodes = vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let pods = vec![
        placed("w1", "a1", json!({"app": "web"}), json!({})),
        placed("w2", "a2", json!({"app": "web"}), json!({})),
    ];
    let snap = Snapshot::build(&nodes, &pods);
    let spread = json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
    // Zone a has 2, zone b has 0: only b keeps the skew within 1.
    assert_eq!(
        schedule(
            &with(
                json!({"app": "web"}),
                json!({"topologySpreadConstraints": spread.clone()})
            ),
            &snap
        )
        .unwrap(),
        "b1"
    );
    let only_a = with(
        json!({"app": "web"}),
        json!({"topologySpreadConstraints": spread, "nodeSelector": {"zone": "a"}}),
    );
    let err = schedule(&only_a, &snap).unwrap_err();
    assert!(
        err.reasons
            .contains_key("node(s) didn't match pod topology spread constraints"),
        "{err}"
    );
    // Pods of one owner spread over nodes even without constraints.
    let owned = |name: &str, node: &str| {
        let mut p = placed(name, node, json!({"app": "rs"}), json!({}));
        p["metadata"]["ownerReferences"] = json!([{"uid": "rs-1", "controller": true, "kind": "ReplicaSet", "name": "rs", "apiVersion": "apps/v1"}]);
        p
    };
    let snap = Snapshot::build(&[zoned("n1", "a"), zoned("n2", "a")], &[owned("r1", "n1")]);
    let mut next = owned("r2", "");
    next["spec"].as_object_mut().unwrap().remove("nodeName");
    assert_eq!(schedule(&next, &snap).unwrap(), "n2");
}

#[test]
fn preemption_picks_fewest_lowest_victims() {
    let prio = |name: &str, node: &str, cpu: &str, p: i64| {
        let mut x = bound(node, cpu);
        x["metadata"]["name"] = json!(name);
        x["spec"]["priority"] = json!(p);
        x
    };
    let nodes = vec![
        node("n1", "1", "4Gi", json!({})),
        node("n2", "1", "4Gi", json!({})),
    ];
    let pods = vec![
        prio("low-a", "n1", "400m", 1),
        prio("low-b", "n1", "400m", 1),
        prio("mid", "n2", "900m", 5),
    ];
    let snap = Snapshot::build(&nodes, &pods);
    let mut high = pod(
        json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m"}}}]}),
    );
    high["spec"]["priority"] = json!(10);
    assert!(schedule(&high, &snap).is_err());
    // n1 needs one low victim (the other is reprieved); n2 would need the mid one.
    let plan = preempt(&high, &snap).unwrap();
    assert_eq!(plan.node, "n1");
    assert_eq!(plan.victims.len(), 1);
    assert!(plan.victims[0].1.starts_with("low-"));
    // Equal or higher priority pods are never victims.
    let mut peer = high.clone();
    peer["spec"]["priority"] = json!(1);
    assert!(preempt(&peer, &snap).is_none());
    high["spec"]["preemptionPolicy"] = json!("Never");
    assert!(preempt(&high, &snap).is_none());
}

#[test]
fn incremental_snapshot_matches_a_rebuild() {
    let nodes = vec![
        node("a", "1", "1Gi", json!({})),
        node("b", "1", "1Gi", json!({})),
    ];
    let mut snap = Snapshot::build(&nodes, &[]);
    // A pod bound to a node that is not known yet is counted once the node shows up.
    snap.set_pod(&bound("c", "300m"));
    snap.set_pod(&bound("a", "400m"));
    snap.set_node(&node("c", "1", "1Gi", json!({})));
    assert_eq!(snap.node("c").unwrap().requested.get("cpu"), 300);
    assert_eq!(snap.node("a").unwrap().requested.get("cpu"), 400);
    // Moving, finishing and removing pods gives the requests back.
    let mut moved = bound("a", "400m");
    moved["spec"]["nodeName"] = json!("b");
    snap.set_pod(&moved);
    assert_eq!(snap.node("a").unwrap().requested.get("cpu"), 0);
    assert_eq!(snap.node("b").unwrap().pod_count, 1);
    let mut done = moved.clone();
    done["status"]["phase"] = json!("Succeeded");
    snap.set_pod(&done);
    assert_eq!(snap.node("b").unwrap().pod_count, 0);
    assert!(!snap.is_placed("default", "on-a"));
    // Updating a node keeps its pods; removing one keeps the index right.
    let mut tainted = node("c", "2", "1Gi", json!({}));
    tainted["spec"]["unschedulable"] = json!(true);
    snap.set_node(&tainted);
    assert!(snap.node("c").unwrap().unschedulable);
    assert_eq!(snap.node("c").unwrap().pod_count, 1);
    snap.remove_node("a");
    assert!(snap.node("a").is_none());
    assert_eq!(snap.node("c").unwrap().name, "c");
    assert_eq!(snap.node("b").unwrap().name, "b");
    // Anti-affinity pods are tracked through moves and removals.
    let anti = placed(
        "x",
        "b",
        json!({"app": "x"}),
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
    );
    snap.set_pod(&anti);
    assert!(snap.any_anti_affinity);
    snap.unplace("default", "x");
    assert!(!snap.any_anti_affinity);
}

#[test]
fn partial_search_like_kubernetes() {
    assert_eq!(feasible_nodes_to_find(50), 50);
    assert_eq!(feasible_nodes_to_find(100), 100);
    assert_eq!(feasible_nodes_to_find(1000), 420);
    assert_eq!(feasible_nodes_to_find(5000), 500);
    assert_eq!(feasible_nodes_to_find(100_000), 5000);
    let nodes: Vec<Value> = (0..1000)
        .map(|i| node(&format!("n{i:04}"), "4", "8Gi", json!({})))
        .collect();
    let snap = Snapshot::build(&nodes, &[]);
    let (_, examined) = schedule_from(&pod(json!({})), &snap, 990).unwrap();
    assert_eq!(examined, 420);
    // A pod that fits nowhere is checked against every node, for the full message.
    let big = pod(
        json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "64"}}}]}),
    );
    let err = schedule_from(&big, &snap, 7).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/1000 nodes are available: 1000 Insufficient cpu."
    );
}
