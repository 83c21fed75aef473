use super::*;
use k8s_openapi::api::core::v1::PodSpec;

fn spec(v: serde_json::Value) -> PodSpec {
    serde_json::from_value(v).unwrap()
}

fn lv(level: Level) -> LevelVersion {
    LevelVersion {
        level,
        version: Version::Latest,
    }
}

fn check(level: Level, s: serde_json::Value) -> String {
    details(&evaluate(lv(level), &BTreeMap::new(), &spec(s)))
}

#[test]
fn an_unhardened_pod_in_a_restricted_namespace_reads_as_kubernetes_words_it() {
    let v = evaluate(
        lv(Level::Restricted),
        &BTreeMap::new(),
        &spec(serde_json::json!({"containers": [{"name": "nginx", "image": "nginx"}]})),
    );
    assert_eq!(
        format!(
            "pods \"nginx\" is forbidden: {}",
            violates(lv(Level::Restricted), &v)
        ),
        "pods \"nginx\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"nginx\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"nginx\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    assert_eq!(
        reasons(&v),
        "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
    // The same pod is fine at baseline.
    assert_eq!(
        check(
            Level::Baseline,
            serde_json::json!({"containers": [{"name": "nginx", "image": "nginx"}]})
        ),
        ""
    );
}

#[test]
fn a_hardened_pod_passes_restricted() {
    let s = serde_json::json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
        "volumes": [{"name": "v", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "s"}}],
    });
    assert_eq!(check(Level::Restricted, s), "");
}

#[test]
fn baseline_checks_name_what_they_refuse() {
    let s = serde_json::json!({
        "hostNetwork": true, "hostPID": true,
        "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
        "initContainers": [{"name": "i", "image": "x", "securityContext": {"privileged": true}}],
        "containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 443, "hostPort": 443}], "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}, "procMount": "Unmasked"}},
            {"name": "b", "image": "x", "securityContext": {"privileged": true, "seLinuxOptions": {"type": "spc_t", "user": "u"}, "seccompProfile": {"type": "Unconfined"}}},
        ],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    });
    assert_eq!(
        check(Level::Baseline, s.clone()),
        "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), \
         host namespaces (hostNetwork=true, hostPID=true), \
         hostPath volumes (volume \"h\"), \
         hostPort (container \"a\" uses hostPorts 443, 8080), \
         privileged (containers \"i\", \"b\" must not set securityContext.privileged=true), \
         procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\"), \
         seLinuxOptions (container \"b\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set), \
         seccompProfile (container \"b\" must not set securityContext.seccompProfile.type to \"Unconfined\"), \
         forbidden sysctls (kernel.msgmax)"
    );
    // At restricted, hostPath is a restricted volume type and capabilities are
    // restricted's; the baseline rest stays, in its order, before restricted's own.
    let r = check(Level::Restricted, s);
    assert!(
        r.starts_with("host namespaces (hostNetwork=true, hostPID=true), hostPort ("),
        "{r}"
    );
    assert!(
        r.contains(
            "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")"
        ),
        "{r}"
    );
    assert!(r.contains("unrestricted capabilities (containers \"i\", \"a\", \"b\" must set securityContext.capabilities.drop=[\"ALL\"]; container \"a\" must not include \"CHOWN\", \"NET_ADMIN\" in securityContext.capabilities.add)"), "{r}");
    assert!(
        !r.contains("non-default capabilities") && !r.contains("hostPath volumes"),
        "{r}"
    );
}

#[test]
fn explicit_settings_are_named_before_missing_ones() {
    let s = serde_json::json!({
        "securityContext": {"runAsNonRoot": false, "runAsUser": 0},
        "containers": [{"name": "a", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}}],
    });
    assert_eq!(
        check(Level::Restricted, s),
        "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false), runAsUser=0 (pod and container \"a\" must not set runAsUser=0)"
    );
}

#[test]
fn labels_read_into_a_policy_with_kubes_fallbacks() {
    let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{LABEL_PREFIX}{k}"), v.to_string()))
            .collect()
    };
    let (p, e) = Policy::from_labels(&l(&[("enforce", "restricted")]), Policy::default());
    assert!(e.is_empty());
    assert_eq!(p.enforce.to_string(), "restricted:latest");
    assert_eq!(
        p.warn.to_string(),
        "restricted:latest",
        "warn follows enforce"
    );
    assert_eq!(p.audit.to_string(), "privileged:latest");
    let (p, e) = Policy::from_labels(
        &l(&[("enforce", "bogus"), ("warn-version", "v2")]),
        Policy::default(),
    );
    assert_eq!(
        p.enforce.level,
        Level::Restricted,
        "a bad enforce level fails closed"
    );
    assert_eq!(e.len(), 2);
    assert_eq!(
        e[0].field,
        "metadata.labels[pod-security.kubernetes.io/enforce]"
    );
    assert_eq!(
        e[0].detail,
        "must be one of privileged, baseline, restricted"
    );
    assert_eq!(e[1].detail, "must be \"latest\" or \"v1.x\"");
    for bad in ["v1.01", "1.25", "v2.0", "v1.25.0", "v1."] {
        assert_eq!(Version::parse(bad), None, "{bad}");
    }
    assert_eq!(Version::parse("v1.0"), Some(Version::Minor(0)));
    assert_eq!(Version::parse("v1.99"), Some(Version::Minor(99)));
    let (p, _) = Policy::from_labels(
        &l(&[
            ("enforce", "baseline"),
            ("enforce-version", "v1.30"),
            ("warn", "restricted"),
        ]),
        Policy::default(),
    );
    assert_eq!(p.enforce.to_string(), "baseline:v1.30");
    assert_eq!(p.warn.to_string(), "restricted:latest");
}

#[test]
fn older_versions_evaluate_older_rules() {
    let bare = serde_json::json!({"containers": [{"name": "c", "image": "x"}]});
    let at = |m| {
        details(&evaluate(
            LevelVersion {
                level: Level::Restricted,
                version: Version::Minor(m),
            },
            &BTreeMap::new(),
            &spec(bare.clone()),
        ))
    };
    assert!(!at(7).contains("allowPrivilegeEscalation"));
    assert!(at(8).contains("allowPrivilegeEscalation"));
    assert!(!at(21).contains("unrestricted capabilities"));
    assert!(at(22).contains("unrestricted capabilities"));
    assert_eq!(
        at(40),
        at(33),
        "newer than skiff's rules: evaluated as the newest"
    );
}

/// A pod that meets restricted, changed by `edit`.
fn hardened(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut p = serde_json::json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "x", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
    });
    edit(&mut p);
    p
}

/// Every check, each violated alone by an otherwise restricted pod:
/// (what is changed, the violation at baseline or None, the violation at restricted).
#[test]
fn every_check_at_both_levels() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let c = |f: fn(&mut serde_json::Value)| -> Edit { Box::new(f) };
    let cases: Vec<(&str, Edit, Option<&str>, &str)> = vec![
        (
            "appArmorProfile",
            c(|p| {
                p["securityContext"]["appArmorProfile"] = serde_json::json!({"type": "Unconfined"})
            }),
            Some(
                "forbidden AppArmor profile (pod must not set AppArmor profile type to \"Unconfined\")",
            ),
            "",
        ),
        (
            "capabilities add",
            c(|p| {
                p.pointer_mut("/containers/0/securityContext/capabilities")
                    .unwrap()["add"] = serde_json::json!(["SYS_ADMIN"])
            }),
            Some(
                "non-default capabilities (container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add)",
            ),
            "unrestricted capabilities (container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add)",
        ),
        (
            "hostIPC",
            c(|p| p["hostIPC"] = serde_json::json!(true)),
            Some("host namespaces (hostIPC=true)"),
            "",
        ),
        (
            "hostPath",
            c(|p| p["volumes"] = serde_json::json!([{"name": "h", "hostPath": {"path": "/"}}])),
            Some("hostPath volumes (volume \"h\")"),
            "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")",
        ),
        (
            "hostPort",
            c(|p| {
                p["containers"][0]["ports"] =
                    serde_json::json!([{"containerPort": 80, "hostPort": 80}])
            }),
            Some("hostPort (container \"c\" uses hostPort 80)"),
            "",
        ),
        (
            "privileged",
            c(|p| {
                p.pointer_mut("/containers/0/securityContext").unwrap()["privileged"] =
                    serde_json::json!(true)
            }),
            Some("privileged (container \"c\" must not set securityContext.privileged=true)"),
            "",
        ),
        (
            "procMount",
            c(|p| {
                p.pointer_mut("/containers/0/securityContext").unwrap()["procMount"] =
                    serde_json::json!("Unmasked")
            }),
            Some(
                "procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\")",
            ),
            "",
        ),
        (
            "seLinuxOptions",
            c(|p| p["securityContext"]["seLinuxOptions"] = serde_json::json!({"role": "r"})),
            Some(
                "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: role may not be set)",
            ),
            "",
        ),
        (
            "seccomp Unconfined",
            c(
                |p| {
                    p["securityContext"]["seccompProfile"]["type"] = serde_json::json!("Unconfined")
                },
            ),
            Some(
                "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")",
            ),
            "",
        ),
        (
            "sysctls",
            c(|p| {
                p["securityContext"]["sysctls"] =
                    serde_json::json!([{"name": "kernel.sem", "value": "1"}])
            }),
            Some("forbidden sysctls (kernel.sem)"),
            "",
        ),
        (
            "hostProcess",
            c(|p| {
                p["securityContext"]["windowsOptions"] = serde_json::json!({"hostProcess": true})
            }),
            Some("hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"),
            "",
        ),
        (
            "allowPrivilegeEscalation",
            c(|p| {
                p.pointer_mut("/containers/0/securityContext").unwrap()["allowPrivilegeEscalation"] =
                    serde_json::json!(true)
            }),
            None,
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)",
        ),
        (
            "drop ALL",
            c(|p| {
                p.pointer_mut("/containers/0/securityContext/capabilities")
                    .unwrap()["drop"] = serde_json::json!(["NET_RAW"])
            }),
            None,
            "unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"])",
        ),
        (
            "nfs volume",
            c(|p| {
                p["volumes"] =
                    serde_json::json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}])
            }),
            None,
            "restricted volume types (volume \"n\" uses restricted volume type \"nfs\")",
        ),
        (
            "runAsNonRoot",
            c(|p| p["securityContext"]["runAsNonRoot"] = serde_json::json!(null)),
            None,
            "runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true)",
        ),
        (
            "runAsUser",
            c(|p| {
                p.pointer_mut("/containers/0/securityContext").unwrap()["runAsUser"] =
                    serde_json::json!(0)
            }),
            None,
            "runAsUser=0 (container \"c\" must not set runAsUser=0)",
        ),
        (
            "seccomp missing",
            c(|p| p["securityContext"]["seccompProfile"] = serde_json::json!(null)),
            None,
            "seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
        ),
    ];
    for (what, edit, at_baseline, at_restricted) in cases {
        let pod = hardened(edit);
        assert_eq!(
            check(Level::Baseline, pod.clone()),
            at_baseline.unwrap_or(""),
            "{what} at baseline"
        );
        let want = if at_restricted.is_empty() {
            at_baseline.unwrap()
        } else {
            at_restricted
        };
        assert_eq!(check(Level::Restricted, pod), want, "{what} at restricted");
    }
    // Ephemeral and init containers are checked as the others.
    let pod = hardened(|p| {
        p["initContainers"] = serde_json::json!([{"name": "i", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": true}}]);
        p["ephemeralContainers"] = serde_json::json!([{"name": "e", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": true}}]);
    });
    assert_eq!(
        check(Level::Baseline, pod),
        "privileged (containers \"i\", \"e\" must not set securityContext.privileged=true)"
    );
    // Windows pods skip restricted's Linux-only checks (from 1.25).
    let win = serde_json::json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c", "image": "x"}]});
    assert_eq!(check(Level::Restricted, win), "");
}

#[test]
fn before_1_19_seccomp_is_read_from_annotations() {
    let ann: BTreeMap<String, String> = [
        ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
        (
            "container.seccomp.security.alpha.kubernetes.io/c",
            "runtime/default",
        ),
        (
            "container.seccomp.security.alpha.kubernetes.io/gone",
            "unconfined",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = spec(serde_json::json!({"containers": [{"name": "c", "image": "x"}]}));
    let old = LevelVersion {
        level: Level::Baseline,
        version: Version::Minor(18),
    };
    assert_eq!(
        details(&evaluate(old, &ann, &s)),
        "seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod=\"unconfined\")"
    );
    // From 1.19 the fields decide and the annotations are not read.
    assert_eq!(details(&evaluate(lv(Level::Baseline), &ann, &s)), "");
}
