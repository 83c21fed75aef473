//! What kubectl shows of controller bookkeeping: the change-cause of DaemonSet and
//! StatefulSet revisions in `kubectl rollout history`, and the CronJob controller's
//! events (`kubectl events`, `kubectl describe cronjob`), as Kubernetes has them.

mod common;

use common::Cluster;
use std::time::Duration;

const CAUSE: &str = "kubernetes.io/change-cause";

/// `REVISION  CHANGE-CAUSE` rows of `kubectl rollout history` as (revision, cause).
fn history(c: &Cluster, what: &str) -> Vec<(String, String)> {
    c.ok(&["rollout", "history", what])
        .lines()
        .filter(|l| l.starts_with(|ch: char| ch.is_ascii_digit()))
        .map(|l| {
            let (rev, cause) = l.split_once(' ').unwrap_or((l, ""));
            (rev.to_string(), cause.trim().to_string())
        })
        .collect()
}

fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

/// A workload manifest with `image` and a change-cause annotation.
fn workload(kind: &str, name: &str, image: &str, cause: &str) -> String {
    let extra = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n  replicas: 1\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  annotations: {{{CAUSE}: '{cause}'}}\nspec:\n{extra}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: '{image}'}}]\n"
    )
}

/// Two templates, each with its change-cause; an undo renumbers the old revision and
/// keeps the cause it was recorded with (Kubernetes copies the owner's annotations when
/// it makes a revision, and only renumbers it later).
fn change_causes_follow_revisions(c: &Cluster, kind: &str, short: &str) {
    let name = format!("{short}-hist");
    let what = format!("{short}/{name}");
    c.apply(&workload(kind, &name, "app:1", "first: image app:1"));
    common::eventually(Duration::from_secs(30), || {
        (history(c, &what).len() == 1).then_some(())
    });
    c.apply(&workload(kind, &name, "app:2", "second: image app:2"));
    let rows2 = common::eventually(Duration::from_secs(30), || {
        let h = history(c, &what);
        (h.len() == 2).then_some(h)
    });
    assert_eq!(
        rows2,
        rows(&[("1", "first: image app:1"), ("2", "second: image app:2")]),
        "{kind}"
    );

    // One revision in detail: its pod template.
    let one = c.ok(&["rollout", "history", &what, "--revision=1"]);
    assert!(
        one.contains("Pod Template:") && one.contains("app:1") && !one.contains("app:2"),
        "{one}"
    );
    let missing = c.fails(&["rollout", "history", &what, "--revision=7"]);
    assert!(
        missing.contains("unable to find the specified revision"),
        "{missing}"
    );

    // Back to the first template: revision 1 becomes 3, with its own cause.
    let undo = c.ok(&["rollout", "undo", &what, "--to-revision=1"]);
    assert!(undo.contains("rolled back"), "{undo}");
    let rows3 = common::eventually(Duration::from_secs(30), || {
        let h = history(c, &what);
        (h.iter().any(|(r, _)| r == "3")).then_some(h)
    });
    assert_eq!(
        rows3,
        rows(&[("2", "second: image app:2"), ("3", "first: image app:1")]),
        "{kind}"
    );
    let image = c.ok(&[
        "get",
        short,
        &name,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "app:1");
    let err = c.fails(&["rollout", "undo", &what, "--to-revision=9"]);
    assert!(
        err.contains("unable to find specified revision 9 in history"),
        "{err}"
    );
}

#[test]
fn rollout_history_shows_change_causes() {
    let c = Cluster::start_with(&["up", "--simulate", "1"]);
    change_causes_follow_revisions(&c, "DaemonSet", "daemonset");
    change_causes_follow_revisions(&c, "StatefulSet", "statefulset");
    // The revisions carry the owner's annotations and the hash label Kubernetes gives them.
    let labels = c.ok(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=daemonset-hist",
        "-o",
        "jsonpath={.items[*].metadata.labels.controller-revision-hash}",
    ]);
    assert_eq!(labels.split_whitespace().count(), 2, "{labels}");
    let labels = c.ok(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=statefulset-hist",
        "-o",
        "jsonpath={.items[*].metadata.labels.controller\\.kubernetes\\.io/hash}",
    ]);
    assert_eq!(labels.split_whitespace().count(), 2, "{labels}");
}

/// Whether some line of `text` holds all of `parts` (a table row, whatever its widths).
fn has_row(text: &str, parts: &[&str]) -> bool {
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

fn events_of(c: &Cluster, cronjob: &str) -> String {
    c.ok(&["events", "--for", &format!("cronjob/{cronjob}")])
}

#[test]
fn cronjob_events_match_kubernetes() {
    // The CronJob controller's clock runs 60 times faster: a minute a second.
    let c = Cluster::start_with(&["up", "--simulate", "1", "--cronjob-clock-rate", "60"]);

    // February 31st never comes: Kubernetes warns and leaves the CronJob be.
    c.apply(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: never}\nspec:\n  schedule: '59 23 31 2 *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n",
    );
    let want = "invalid schedule: 59 23 31 2 * : time difference between two schedules is less than 1 second";
    let events = common::eventually(Duration::from_secs(20), || {
        let e = events_of(&c, "never");
        e.contains(want).then_some(e)
    });
    assert!(
        has_row(
            &events,
            &["Warning", "InvalidSchedule", "CronJob/never", want]
        ),
        "{events}"
    );
    let describe = c.ok(&["describe", "cronjob", "never"]);
    assert!(
        has_row(
            &describe,
            &["Warning", "InvalidSchedule", "cronjob-controller", want]
        ),
        "{describe}"
    );

    // A long run stays active; a Job made by hand from the template is not one the
    // controller made, and a deleted active Job is reported by name.
    c.apply(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n  schedule: '*/1 * * * *'\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          annotations: {skiff.io/simulate-run-seconds: '600'}\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n",
    );
    let first = common::eventually(Duration::from_secs(20), || {
        let a = c.ok(&[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.active[*].name}",
        ]);
        (!a.is_empty()).then_some(a)
    });
    let events = events_of(&c, "tick");
    assert!(events.contains(&format!("Created job {first}")), "{events}");
    c.ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    common::eventually(Duration::from_secs(20), || {
        let e = events_of(&c, "tick");
        e.contains("Saw a job that the controller did not create or forgot: by-hand")
            .then_some(())
    });
    let active = c.ok(&[
        "get",
        "cronjob",
        "tick",
        "-o",
        "jsonpath={.status.active[*].name}",
    ]);
    assert_eq!(active, first, "the hand-made Job is not counted as active");
    c.ok(&["delete", "job", &first, "--wait=false"]);
    let events = common::eventually(Duration::from_secs(20), || {
        let e = events_of(&c, "tick");
        e.contains(&format!("Active job went missing: {first}"))
            .then_some(e)
    });
    assert!(has_row(&events, &["Normal", "MissingJob"]), "{events}");
    assert!(has_row(&events, &["Warning", "UnexpectedJob"]), "{events}");
}
