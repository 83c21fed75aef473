use super::hash::TemplateKey;
use super::rollout::plan;
use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn deploy(replicas: i64, surge: Value, unavailable: Value) -> Deployment {
    from(
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2, "annotations": {"kubernetes.io/change-cause": "v2"}},
        "spec": {"replicas": replicas, "revisionHistoryLimit": 1, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
    )
}

fn spec(d: &mut Deployment) -> &mut k8s_openapi::api::apps::v1::DeploymentSpec {
    d.spec.as_mut().unwrap()
}

fn at(t: &str) -> Time {
    Time(t.parse().unwrap())
}

fn with_status(mut rs: ReplicaSet, replicas: i32, available: i32) -> ReplicaSet {
    rs.status = Some(from(
        json!({"replicas": replicas, "readyReplicas": available, "availableReplicas": available}),
    ));
    rs
}

fn rs_for(
    d: &Deployment,
    image: &str,
    replicas: i64,
    available: i32,
    rev: i64,
    created: &str,
) -> ReplicaSet {
    let mut t = d.clone();
    spec(&mut t).template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    let mut rs = new_replica_set(&t, replicas, rev);
    rs.metadata.creation_timestamp = Some(at(created));
    with_status(rs, replicas as i32, available)
}

fn size(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().unwrap().replicas.unwrap()
}

#[test]
fn fenceposts_round_as_kubernetes() {
    assert_eq!(fenceposts(&deploy(10, json!("25%"), json!("25%"))), (3, 2));
    assert_eq!(fenceposts(&deploy(1, json!("25%"), json!("25%"))), (1, 0));
    assert_eq!(fenceposts(&deploy(4, json!(0), json!(0))), (0, 1));
    assert_eq!(fenceposts(&deploy(4, json!("2"), json!(1))), (2, 1));
}

#[test]
fn hash_is_stable_and_template_matching_ignores_it() {
    let d = deploy(3, json!(1), json!(0));
    let key = |rs: &ReplicaSet| TemplateKey::of(rs_template(rs));
    let dkey = TemplateKey::of(Some(&d.spec.as_ref().unwrap().template));
    let a = dkey.hash(0);
    assert_eq!(a, dkey.hash(0));
    assert_ne!(a, dkey.hash(1));
    assert!(
        a.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    );
    let rs = new_replica_set(&d, 3, 1);
    assert_eq!(name(&rs), format!("web-{a}"));
    let selector = &rs.spec.as_ref().unwrap().selector;
    assert_eq!(selector.match_labels.as_ref().unwrap()[HASH_LABEL], a);
    assert_eq!(annotation(&rs, "kubernetes.io/change-cause"), Some("v2"));
    assert_eq!(annotation(&rs, MAX_REPLICAS), Some("4"));
    assert_eq!(key(&rs), dkey);
    let other = rs_for(&d, "nginx:1", 3, 3, 1, "2026-01-01T00:00:00Z");
    assert_ne!(key(&other), dkey);
    // Zero values are absent values, as in Go.
    let mut zeros = rs.clone();
    let template = zeros.spec.as_mut().unwrap().template.as_mut().unwrap();
    template.spec.as_mut().unwrap().containers[0].stdin = Some(false);
    template.metadata.as_mut().unwrap().generation = Some(0);
    assert_eq!(key(&zeros), dkey);
    assert_eq!(key(&zeros).hash(0), a);
}

/// Read through its type, a template hashes as its stored JSON did, so ReplicaSets
/// made before keep matching (and keep their names).
#[test]
fn a_typed_template_hashes_as_its_json() {
    let raw = json!({"metadata": {"labels": {"app": "web", "tier": "front"}, "annotations": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:2", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
            "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "securityContext": {}, "volumes": [{"name": "v", "emptyDir": {}}]}});
    let typed: PodTemplateSpec = from(raw.clone());
    // The value an independent reading of the algorithm gives for this JSON.
    assert_eq!(template_hash(&raw, 0), "5d685bd77f");
    assert_eq!(template_hash(&raw, 1), "785d78d47d");
    assert_eq!(TemplateKey::of(Some(&typed)).hash(0), "5d685bd77f");
    assert_eq!(TemplateKey::of(Some(&typed)).hash(1), "785d78d47d");
}

#[test]
fn rolling_update_steps_within_surge_and_unavailability() {
    // 4 replicas, maxSurge 1, maxUnavailable 0: one new pod at a time.
    let d = deploy(4, json!(1), json!(0));
    let old = rs_for(&d, "nginx:1", 4, 4, 1, "2026-01-01T00:00:00Z");
    let w = plan(&d, &[&old], false);
    let created = w.create.expect("a new ReplicaSet");
    assert_eq!(size(&created), 1);
    assert_eq!(annotation(&created, REVISION), Some("2"));
    // The new pod is not available yet: the old set may not shrink.
    let mut new = created.clone();
    new.metadata.creation_timestamp = Some(at("2026-01-01T00:01:00Z"));
    let new = with_status(new, 1, 0);
    let w = plan(&d, &[&old, &new], false);
    assert!(w.scale.is_empty(), "{:?}", w.scale);
    // Once it is, one old pod goes.
    let new = with_status(new, 1, 1);
    let w = plan(&d, &[&old, &new], false);
    assert_eq!(w.scale.get(name(&old)).map(|s| s.0), Some(3));
    // And with room under the surge again, the new set grows.
    let mut old3 = old.clone();
    old3.spec.as_mut().unwrap().replicas = Some(3);
    let w = plan(&d, &[&old3, &new], false);
    assert_eq!(w.scale.get(name(&new)).map(|s| s.0), Some(2));
}

#[test]
fn unavailable_budget_scales_old_down_first() {
    // 4 replicas, maxSurge 0, maxUnavailable 2.
    let d = deploy(4, json!(0), json!(2));
    let old = rs_for(&d, "nginx:1", 4, 4, 1, "2026-01-01T00:00:00Z");
    let w = plan(&d, &[&old], false);
    assert_eq!(size(&w.create.unwrap()), 0);
    let mut new = new_replica_set(&d, 0, 2);
    new.metadata.creation_timestamp = Some(at("2026-01-01T00:01:00Z"));
    let w = plan(&d, &[&old, &new], false);
    assert_eq!(w.scale.get(name(&old)).map(|s| s.0), Some(2));
}

#[test]
fn proportional_scaling_mid_rollout() {
    let d = deploy(10, json!(3), json!(2));
    let mut old = rs_for(&d, "nginx:1", 8, 8, 1, "2026-01-01T00:00:00Z");
    let mut new = new_replica_set(&d, 5, 2);
    new.metadata.creation_timestamp = Some(at("2026-01-01T00:01:00Z"));
    for rs in [&mut old, &mut new] {
        let a = rs.metadata.annotations.get_or_insert_with(Default::default);
        a.insert(DESIRED_REPLICAS.into(), "10".into());
        a.insert(MAX_REPLICAS.into(), "13".into());
    }
    let mut bigger = d.clone();
    spec(&mut bigger).replicas = Some(20);
    let ru = spec(&mut bigger).strategy.as_mut().unwrap();
    ru.rolling_update.as_mut().unwrap().max_surge = Some(IntOrString::Int(6));
    assert!(is_scaling_event(&bigger, &[&old, &new]));
    let steps: BTreeMap<String, i64> = scale_step(&bigger, Some(&new), &[&old, &new])
        .into_iter()
        .collect();
    // 13 → 26 allowed: each set doubles.
    assert_eq!(steps[name(&old)], 16);
    assert_eq!(steps[name(&new)], 10);
}

#[test]
fn recreate_empties_old_then_waits_for_its_pods() {
    let mut d = deploy(3, json!(null), json!(null));
    spec(&mut d).strategy = Some(from(json!({"type": "Recreate"})));
    let old = rs_for(&d, "nginx:1", 3, 3, 1, "2026-01-01T00:00:00Z");
    let w = plan(&d, &[&old], false);
    assert!(w.create.is_none());
    assert_eq!(w.scale.get(name(&old)).map(|s| s.0), Some(0));
    let mut empty = old.clone();
    empty.spec.as_mut().unwrap().replicas = Some(0);
    assert!(plan(&d, &[&empty], true).create.is_none());
    assert_eq!(size(&plan(&d, &[&empty], false).create.unwrap()), 3);
}

#[test]
fn status_conditions_and_history() {
    let d = deploy(2, json!(1), json!(0));
    let new = rs_for(&d, "nginx:2", 2, 2, 3, "2026-01-01T00:02:00Z");
    let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
    let s = status(&d, Some(&new), &[&new], None, now);
    assert_eq!(s.updated_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(2));
    let conds = s.conditions.unwrap();
    assert_eq!(
        (conds[0].type_.as_str(), conds[0].status.as_str()),
        ("Available", "True")
    );
    assert_eq!(conds[1].reason.as_deref(), Some("NewReplicaSetAvailable"));
    // Stuck past the deadline.
    let mut stuck = d.clone();
    stuck.status = Some(from(
        json!({"replicas": 2, "updatedReplicas": 2, "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    ));
    spec(&mut stuck).progress_deadline_seconds = Some(60);
    let half = rs_for(&d, "nginx:2", 2, 0, 3, "2026-01-01T00:02:00Z");
    assert!(timed_out(&stuck, now));
    let s = status(&stuck, Some(&half), &[&half], None, now);
    let conds = s.conditions.unwrap();
    assert_eq!(conds[1].reason.as_deref(), Some("ProgressDeadlineExceeded"));
    assert_eq!(conds[0].status, "False");
    // Within the deadline it is not timed out.
    spec(&mut stuck).progress_deadline_seconds = Some(600);
    assert!(!timed_out(&stuck, now));
    // revisionHistoryLimit 1: of two empty old sets, the older revision goes.
    let r1 = rs_for(&d, "nginx:0", 0, 0, 1, "2026-01-01T00:00:00Z");
    let r2 = rs_for(&d, "nginx:1", 0, 0, 2, "2026-01-01T00:01:00Z");
    assert_eq!(
        history_to_delete(&d, &[&r2, &r1]),
        vec![name(&r1).to_string()]
    );
}

/// The status carries what `kubectl rollout status` and `get deployments` read, as the
/// API spells it.
#[test]
fn the_status_serializes_as_kubernetes_spells_it() {
    let d = deploy(2, json!(1), json!(0));
    let new = rs_for(&d, "nginx:2", 2, 1, 3, "2026-01-01T00:02:00Z");
    let now: Timestamp = "2026-01-01T00:05:00.75Z".parse().unwrap();
    let s = serde_json::to_value(status(&d, Some(&new), &[&new], None, now)).unwrap();
    assert_eq!(s["observedGeneration"], 2);
    assert_eq!(s["unavailableReplicas"], 1);
    assert_eq!(s["readyReplicas"], 1);
    assert_eq!(s["conditions"][0]["lastUpdateTime"], "2026-01-01T00:05:00Z");
    assert_eq!(s["conditions"][1]["reason"], "ReplicaSetUpdated");
}
