use super::*;

fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Value {
    let c = |n: &&str| json!({"name": n, "image": format!("img-{n}")});
    json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
            "containers": apps.iter().map(c).collect::<Vec<_>>(),
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    })
}

fn sandbox() -> SandboxObs {
    SandboxObs {
        id: "sb".into(),
        ready: true,
        ip: "10.42.0.5".into(),
        attempt: 0,
    }
}

fn ctr(name: &str, attempt: u32, state: CState, code: i32) -> ContainerObs {
    ContainerObs {
        id: format!("{name}-{attempt}"),
        name: name.into(),
        attempt,
        state,
        exit_code: code,
        reason: String::new(),
        message: String::new(),
        started_at: "t1".into(),
        finished_at: "t2".into(),
        image_ref: "sha256:abc".into(),
    }
}

fn obs(containers: Vec<ContainerObs>) -> Observed {
    Observed {
        sandboxes: vec![sandbox()],
        containers,
        probed: BTreeMap::new(),
    }
}

const NO_BACKOFF: &dyn Fn(&str) -> bool = &|_| false;

#[test]
fn new_pod_gets_a_sandbox_then_its_containers() {
    let p = pod("Always", &[], &["a", "b"]);
    assert_eq!(
        compute_actions(&p, &Observed::default(), NO_BACKOFF),
        vec![Action::CreateSandbox { attempt: 0 }]
    );
    let acts = compute_actions(&p, &obs(vec![]), NO_BACKOFF);
    assert_eq!(acts.len(), 2);
    assert!(
        matches!(&acts[0], Action::StartContainer { name, init: false, attempt: 0 } if name == "a")
    );
}

#[test]
fn dead_sandbox_is_killed_and_replaced() {
    let p = pod("Always", &[], &["a"]);
    let mut o = obs(vec![ctr("a", 0, CState::Running, 0)]);
    o.sandboxes[0].ready = false;
    assert_eq!(
        compute_actions(&p, &o, NO_BACKOFF),
        vec![Action::KillPod, Action::CreateSandbox { attempt: 1 }]
    );
    // restartPolicy Never: containers ran, so no new sandbox.
    let p = pod("Never", &[], &["a"]);
    assert_eq!(compute_actions(&p, &o, NO_BACKOFF), vec![Action::KillPod]);
}

#[test]
fn init_containers_run_in_order_before_apps() {
    let p = pod("Always", &["i1", "i2"], &["a"]);
    let acts = compute_actions(&p, &obs(vec![]), NO_BACKOFF);
    assert_eq!(
        acts,
        vec![Action::StartContainer {
            name: "i1".into(),
            init: true,
            attempt: 0
        }]
    );
    let running = obs(vec![ctr("i1", 0, CState::Running, 0)]);
    assert!(compute_actions(&p, &running, NO_BACKOFF).is_empty());
    assert_eq!(phase(&p, &running), "Pending");
    let done = obs(vec![ctr("i1", 0, CState::Exited, 0)]);
    assert_eq!(
        compute_actions(&p, &done, NO_BACKOFF),
        vec![Action::StartContainer {
            name: "i2".into(),
            init: true,
            attempt: 0
        }]
    );
    let failed = obs(vec![ctr("i1", 0, CState::Exited, 1)]);
    assert_eq!(
        compute_actions(&p, &failed, NO_BACKOFF),
        vec![Action::StartContainer {
            name: "i1".into(),
            init: true,
            attempt: 1
        }]
    );
    assert!(compute_actions(&p, &failed, &|_| true).is_empty());
    let never = pod("Never", &["i1"], &["a"]);
    assert_eq!(phase(&never, &failed), "Failed");
    assert!(compute_actions(&never, &failed, NO_BACKOFF).is_empty());
}

#[test]
fn restart_policies_decide_restarts_and_phase() {
    let exited = |code| obs(vec![ctr("a", 0, CState::Exited, code)]);
    for (policy, code, restarts, ph) in [
        ("Always", 0, true, "Running"),
        ("Always", 1, true, "Running"),
        ("OnFailure", 0, false, "Succeeded"),
        ("OnFailure", 2, true, "Running"),
        ("Never", 0, false, "Succeeded"),
        ("Never", 2, false, "Failed"),
    ] {
        let p = pod(policy, &[], &["a"]);
        let acts = compute_actions(&p, &exited(code), NO_BACKOFF);
        assert_eq!(!acts.is_empty(), restarts, "{policy} exit {code}");
        if restarts {
            assert_eq!(
                acts[0],
                Action::StartContainer {
                    name: "a".into(),
                    init: false,
                    attempt: 1
                }
            );
            assert!(
                compute_actions(&p, &exited(code), &|_| true).is_empty(),
                "back-off holds"
            );
        }
        assert_eq!(phase(&p, &exited(code)), ph, "{policy} exit {code}");
    }
}

#[test]
fn status_reports_states_conditions_and_ip() {
    let p = pod("Always", &[], &["a", "b"]);
    let o = obs(vec![
        ctr("a", 0, CState::Running, 0),
        ctr("b", 1, CState::Exited, 1),
        ctr("b", 0, CState::Exited, 1),
    ]);
    let mut waiting = BTreeMap::new();
    waiting.insert(
        "b".to_string(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting failed container=b pod=p_default(u1)".into(),
        },
    );
    let st = status(&p, &o, &waiting, "192.0.2.1", "now");
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["podIP"], "10.42.0.5");
    assert_eq!(st["hostIP"], "192.0.2.1");
    let a = &st["containerStatuses"][0];
    assert_eq!(a["state"]["running"]["startedAt"], "t1");
    assert_eq!(a["ready"], true);
    assert_eq!(a["containerID"], "containerd://a-0");
    let b = &st["containerStatuses"][1];
    assert_eq!(b["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(b["restartCount"], 1);
    assert_eq!(b["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(b["lastState"]["terminated"]["reason"], "Error");
    let cond = |t: &str| {
        st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(cond("Ready")["status"], "False");
    assert_eq!(
        cond("Ready")["message"],
        "containers with unready status: [b]"
    );
    assert_eq!(cond("PodReadyToStartContainers")["status"], "True");
    assert_eq!(cond("PodScheduled")["status"], "True");
}

#[test]
fn completed_pods_report_completed_and_keep_transition_times() {
    let p = pod("Never", &[], &["a"]);
    let o = obs(vec![ctr("a", 0, CState::Exited, 0)]);
    let st = status(&p, &o, &BTreeMap::new(), "192.0.2.1", "t9");
    assert_eq!(st["phase"], "Succeeded");
    assert_eq!(
        st["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "PodCompleted");
    // Unchanged conditions keep their transition time on the next report.
    let mut again = p.clone();
    again["status"] = st.clone();
    let st2 = status(&again, &o, &BTreeMap::new(), "192.0.2.1", "t10");
    assert_eq!(st, st2);
}

#[test]
fn containers_wait_for_init_as_pod_initializing() {
    let p = pod("Always", &["i"], &["a"]);
    let st = status(
        &p,
        &obs(vec![ctr("i", 0, CState::Running, 0)]),
        &BTreeMap::new(),
        "h",
        "now",
    );
    assert_eq!(
        st["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert_eq!(
        st["initContainerStatuses"][0]["state"]["running"]["startedAt"],
        "t1"
    );
    let init = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(init["status"], "False");
    assert_eq!(init["message"], "containers with incomplete status: [i]");
}

#[test]
fn only_the_previous_dead_instance_is_kept() {
    let o = obs(vec![
        ctr("a", 0, CState::Exited, 1),
        ctr("a", 1, CState::Exited, 1),
        ctr("a", 2, CState::Running, 0),
        ctr("b", 0, CState::Exited, 0),
    ]);
    assert_eq!(garbage(&o), vec!["a-0".to_string()]);
}

#[test]
fn probes_gate_started_and_ready() {
    let p = pod("Always", &[], &["a"]);
    let mut o = obs(vec![ctr("a", 0, CState::Running, 0)]);
    o.probed.insert("a".into(), (true, false));
    let st = status(&p, &o, &BTreeMap::new(), "h", "now");
    assert_eq!(st["containerStatuses"][0]["ready"], false);
    assert_eq!(st["containerStatuses"][0]["started"], true);
    assert_eq!(st["phase"], "Running");
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    o.probed.insert("a".into(), (true, true));
    let st = status(&p, &o, &BTreeMap::new(), "h", "now");
    assert_eq!(st["containerStatuses"][0]["ready"], true);
}
