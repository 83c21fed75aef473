use super::decide::Time;
use super::*;
use serde_json::json;

fn sync_of(j: &Value, pods: &[&Value], now: Time) -> Plan {
    reconcile(&typed_job(j).unwrap(), pods, now)
}

fn status(p: &Plan) -> Value {
    serde_json::to_value(&p.status).unwrap()
}

fn job(spec: Value) -> Value {
    let mut j = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": {"parallelism": 2, "completions": 5, "backoffLimit": 2, "completionMode": "NonIndexed",
            "template": {"metadata": {"labels": {"job-name": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {}});
    for (k, v) in spec.as_object().unwrap() {
        j["spec"][k] = v.clone();
    }
    j
}

fn pod(name: &str, phase: &str, tracked: bool, exit: Option<i64>) -> Value {
    let mut p = json!({"metadata": {"name": name, "uid": format!("{name}-uid"), "namespace": "default"},
        "status": {"phase": phase}});
    if tracked {
        p["metadata"]["finalizers"] = json!([TRACKING]);
    }
    if let Some(code) = exit {
        p["status"]["containerStatuses"] = json!([{"name": "c", "state": {"terminated": {"exitCode": code, "finishedAt": "2026-01-01T00:00:00Z"}}}]);
    }
    p
}

fn now() -> Time {
    "2026-01-01T00:00:05Z".parse().unwrap()
}

#[test]
fn a_finished_job_waits_out_its_whole_ttl() {
    let mut j = job(json!({"ttlSecondsAfterFinished": 2}));
    j["status"] = json!({"startTime": "2026-01-01T00:00:00Z", "conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": "2026-01-01T00:00:05Z"}]});
    let at = |ms: i64| now() + chrono::Duration::milliseconds(ms);
    // 1.1 s left is not "1 s, truncated to 0": the job stays.
    let p = sync_of(&j, &[], at(900));
    assert!(!p.delete_job);
    assert_eq!(p.requeue, Some(2));
    let p = sync_of(&j, &[], at(1990));
    assert!(!p.delete_job);
    assert_eq!(p.requeue, Some(1));
    assert!(sync_of(&j, &[], at(2000)).delete_job);
}

#[test]
fn starts_up_to_parallelism() {
    let p = sync_of(&job(json!({})), &[], now());
    assert_eq!(p.create.len(), 2);
    assert_eq!(status(&p)["startTime"], "2026-01-01T00:00:05Z");
    assert_eq!(status(&p)["active"], 0);
}

#[test]
fn results_are_recorded_then_released_then_counted() {
    let j = job(json!({}));
    let done = pod("a", "Succeeded", true, Some(0));
    let run = pod("b", "Running", true, None);
    let p = sync_of(&j, &[&done, &run], now());
    assert_eq!(
        status(&p)["uncountedTerminatedPods"]["succeeded"],
        json!(["a-uid"])
    );
    assert!(p.release.is_empty(), "released before the status held it");
    assert_eq!(p.create.len(), 1);
    // Next sync: recorded, so it is released.
    let mut j2 = j.clone();
    j2["status"] = status(&p);
    let p2 = sync_of(&j2, &[&done, &run], now());
    assert_eq!(p2.release, vec!["a"]);
    assert_eq!(status(&p2)["succeeded"], 0);
    // Released: counted.
    let mut j3 = j2.clone();
    j3["status"] = status(&p2);
    let released = pod("a", "Succeeded", false, Some(0));
    let p3 = sync_of(&j3, &[&released, &run], now());
    assert_eq!(status(&p3)["succeeded"], 1);
    assert_eq!(
        status(&p3)["uncountedTerminatedPods"]["succeeded"],
        json!([])
    );
}

#[test]
fn completes_and_fails_as_kubernetes() {
    let mut j = job(json!({"completions": 2}));
    j["status"] = json!({"succeeded": 2, "startTime": "2026-01-01T00:00:00Z"});
    let p = sync_of(&j, &[], now());
    let st = status(&p);
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
    assert!(status(&p)["completionTime"].is_string());

    let mut j = job(json!({}));
    j["status"] = json!({"failed": 3, "startTime": "2026-01-01T00:00:00Z"});
    let p = sync_of(&j, &[&pod("r", "Running", true, None)], now());
    assert_eq!(p.delete, vec!["r"]);
    let failed = status(&p)["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()
        .clone();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");

    let mut j = job(json!({"activeDeadlineSeconds": 3}));
    j["status"] = json!({"startTime": "2026-01-01T00:00:00Z"});
    let p = sync_of(&j, &[], now());
    assert!(
        status(&p)["conditions"]
            .to_string()
            .contains("DeadlineExceeded")
    );
}

#[test]
fn failures_back_off_before_replacement() {
    assert_eq!(
        (backoff(1), backoff(2), backoff(3), backoff(10)),
        (10, 20, 40, 360)
    );
    let j = job(json!({"parallelism": 1}));
    let f = pod("f", "Failed", true, Some(1));
    let p = sync_of(&j, &[&f], now());
    assert!(p.create.is_empty());
    assert_eq!(p.requeue, Some(5));
}

#[test]
fn pod_failure_policy_rules() {
    let j = job(json!({"podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}));
    let p42 = pod("x", "Failed", true, Some(42));
    assert!(
        matches!(failure_action(&typed_job(&j).unwrap(), &PodFacts::of(&p42)), FailureAction::FailJob(m) if m.contains("exit code 42 matching FailJob rule at index 0"))
    );
    let mut evicted = pod("y", "Failed", true, Some(137));
    evicted["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
    assert_eq!(
        failure_action(&typed_job(&j).unwrap(), &PodFacts::of(&evicted)),
        FailureAction::Ignore
    );
    assert_eq!(
        failure_action(
            &typed_job(&j).unwrap(),
            &PodFacts::of(&pod("z", "Failed", true, Some(1)))
        ),
        FailureAction::Count
    );
    let p = sync_of(&j, &[&p42], now());
    assert!(
        status(&p)["conditions"]
            .to_string()
            .contains("PodFailurePolicy")
    );
}

#[test]
fn indexed_jobs_fill_missing_indexes() {
    let j = job(json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}));
    let mut done = pod("pi-1-x", "Succeeded", true, Some(0));
    done["metadata"]["annotations"] = json!({INDEX: "1"});
    let p = sync_of(&j, &[&done], now());
    assert_eq!(p.create, vec![Some(0), Some(2)]);
    assert_eq!(status(&p)["completedIndexes"], "1");
    let pod0 = serde_json::to_value(pod_from_template(&typed_job(&j).unwrap(), Some(0))).unwrap();
    assert_eq!(pod0["metadata"]["generateName"], "pi-0-");
    assert_eq!(pod0["metadata"]["annotations"][INDEX], "0");
    assert_eq!(
        pod0["spec"]["containers"][0]["env"][0]["name"],
        "JOB_COMPLETION_INDEX"
    );
    assert_eq!(pod0["metadata"]["finalizers"][0], TRACKING);
    assert_eq!(format_indexes(&parse_indexes("0,1,2,4,6-7")), "0-2,4,6-7");
}

/// A Job stored before the pattern's status was defaulted reads with the default: the
/// pattern means the condition holds.
#[test]
fn a_job_without_defaults_reads_with_them() {
    let mut j = job(json!({"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}));
    j["spec"].as_object_mut().unwrap().remove("backoffLimit");
    let typed = typed_job(&j).expect("reads");
    assert_eq!(typed.spec.as_ref().unwrap().backoff_limit, Some(6));
    let mut evicted = pod("y", "Failed", true, Some(137));
    evicted["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
    let facts = PodFacts::of(&evicted);
    assert_eq!(failure_action(&typed, &facts), FailureAction::Ignore);
    let bare: Job = crate::typed(&j).unwrap();
    let unmatched = failure_action(&bare, &facts);
    assert_eq!(unmatched, FailureAction::Count, "read without the default");
}
