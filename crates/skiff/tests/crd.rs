//! CustomResourceDefinitions end to end, with the real kubectl against a real
//! `skiff server`: a hand-written CRD (the docs' CronTab), real-world CRDs
//! (cert-manager, prometheus-operator), name conflicts, CRD deletion and namespace
//! deletion of custom objects.

mod common;

use common::{Cluster, eventually, manifest};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

const CRONTABS: &str = "crontabs.stable.example.com";
const PATTERN: &str = r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$";

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn header(out: &str) -> Vec<&str> {
    words(out.lines().next().unwrap_or(""))
}

fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(words)
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"))
}

fn fixtures(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crds")
        .join(dir)
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The causes kubectl prints for a 422 on `kind` `name`: one after the colon, or several
/// as `* cause` lines.
fn causes(err: &str, kind: &str, name: &str) -> Vec<String> {
    let prefix = format!("The {kind} \"{name}\" is invalid: ");
    let rest = err
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("not a 422 for {kind} {name:?}: {err}"));
    let (first, more) = rest.split_once('\n').unwrap_or((rest, ""));
    if !first.trim().is_empty() {
        assert_eq!(more.trim(), "", "{err}");
        return vec![first.to_string()];
    }
    more.lines()
        .map(|l| {
            l.strip_prefix("* ")
                .unwrap_or_else(|| panic!("{err}"))
                .to_string()
        })
        .collect()
}

/// The message of the fieldless cause kube adds when CEL rules went unchecked.
const UNCHECKED: &str = "some validation rules were not checked because the object was invalid; \
                         correct the existing errors to complete validation";

/// `causes`, without that note.
fn field_causes(err: &str, kind: &str, name: &str) -> Vec<String> {
    causes(err, kind, name)
        .into_iter()
        .filter(|c| !c.ends_with(UNCHECKED))
        .collect()
}

/// `kubectl <args> -f -` with `yaml`; asserts failure, returns stderr.
fn refused(c: &Cluster, args: &[&str], yaml: &str) -> String {
    let out = c.kubectl_stdin(args, yaml);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should fail, printed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

/// `kubectl <args> -f -` with `yaml`; asserts success, returns stdout.
fn accepted(c: &Cluster, args: &[&str], yaml: &str) -> String {
    let out = c.kubectl_stdin(args, yaml);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}\nserver log tail:\n{}",
        stdout(&out),
        stderr(&out),
        common::tail(&c.log(), 40)
    );
    stdout(&out)
}

/// Forgets kubectl's discovery cache, so the next command sees the server's current
/// resource types.
fn forget_discovery(c: &Cluster) {
    let _ = std::fs::remove_dir_all(c.dir.path().join("kcache"));
}

/// Applies the CronTab CRD and waits for it to be established.
fn crontab_crd(c: &Cluster) {
    let file = manifest("crd/crontab-crd.yaml");
    assert_eq!(
        c.ok(&["apply", "-f", path(&file)]).trim(),
        format!("customresourcedefinition.apiextensions.k8s.io/{CRONTABS} created")
    );
    let crd = format!("crd/{CRONTABS}");
    assert_eq!(
        c.ok(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=30s",
            &crd
        ])
        .trim(),
        format!("customresourcedefinition.apiextensions.k8s.io/{CRONTABS} condition met")
    );
    forget_discovery(c);
}

fn crontab(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

/// The status of condition `ty` of CRD `name`, with its reason and message.
fn crd_condition(c: &Cluster, name: &str, ty: &str) -> (String, String, String) {
    let crd: Value = serde_json::from_str(&c.ok(&["get", "crd", name, "-o", "json"])).unwrap();
    let cond = crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty);
    let s = |k: &str| {
        cond.and_then(|c| c[k].as_str())
            .unwrap_or_default()
            .to_string()
    };
    (s("status"), s("reason"), s("message"))
}

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&c.ok(&a)).unwrap()
}

#[test]
fn crontab_crd_end_to_end() {
    let c = Cluster::start();
    crontab_crd(&c);

    // What the controller recorded.
    let names = c.ok(&[
        "get",
        "crd",
        CRONTABS,
        "-o",
        "jsonpath={.status.acceptedNames.kind} {.status.acceptedNames.plural} \
         {.status.acceptedNames.singular} {.status.acceptedNames.shortNames} \
         {.status.storedVersions}",
    ]);
    assert_eq!(names, r#"CronTab crontabs crontab ["ct"] ["v1"]"#);
    assert_eq!(
        crd_condition(&c, CRONTABS, "NamesAccepted").0,
        "True",
        "NamesAccepted"
    );

    // Discovery: kubectl api-resources lists it with its short name.
    let res = c.ok(&["api-resources", "--api-group=stable.example.com"]);
    assert_eq!(
        row(&res, "crontabs"),
        ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]
    );

    // Objects created with kubectl.
    assert_eq!(
        accepted(
            &c,
            &["apply", "-f", "-"],
            &crontab(
                "cron-a",
                "default",
                "  cronSpec: \"*/5 * * * *\"\n  image: my-awesome-cron-image\n  replicas: 3\n  size: 5\n"
            )
        )
        .trim(),
        "crontab.stable.example.com/cron-a created"
    );
    assert_eq!(
        accepted(
            &c,
            &["create", "-f", "-"],
            &crontab("cron-b", "default", "  cronSpec: \"0 0 * * 1\"\n")
        )
        .trim(),
        "crontab.stable.example.com/cron-b created"
    );

    // Printer columns: Name, then the columns of the version (Image only with -o wide).
    let out = c.ok(&["get", "ct"]);
    assert_eq!(
        header(&out),
        ["NAME", "SPEC", "REPLICAS", "PHASE", "AGE"],
        "{out}"
    );
    let r = row(&out, "cron-a");
    assert_eq!(&r[..7], ["cron-a", "*/5", "*", "*", "*", "*", "3"], "{out}");
    assert_eq!(r.len(), 8, "no phase yet, then the age: {out}");
    let wide = c.ok(&["get", "crontabs", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        ["NAME", "SPEC", "REPLICAS", "IMAGE", "PHASE", "AGE"],
        "{wide}"
    );
    assert_eq!(
        &row(&wide, "cron-a")[6..8],
        ["3", "my-awesome-cron-image"],
        "{wide}"
    );

    // Defaults: cron-b got replicas 1.
    let yaml = c.ok(&["get", "ct", "cron-b", "-o", "yaml"]);
    assert!(
        yaml.contains("  replicas: 1\n") && yaml.contains("kind: CronTab"),
        "{yaml}"
    );
    assert_eq!(
        c.ok(&["get", "ct", "cron-a", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );

    // Validation: the exact 422 lines kubectl prints.
    let bad = crontab("bad-spec", "default", "  cronSpec: nope\n");
    assert_eq!(
        refused(&c, &["apply", "-f", "-"], &bad).trim(),
        format!(
            "The CronTab \"bad-spec\" is invalid: spec.cronSpec: Invalid value: \"nope\": \
             spec.cronSpec in body should match '{PATTERN}'"
        )
    );
    let bad = crontab(
        "bad-replicas",
        "default",
        "  cronSpec: \"* * * * *\"\n  replicas: 0\n",
    );
    assert_eq!(
        refused(&c, &["create", "-f", "-"], &bad).trim(),
        "The CronTab \"bad-replicas\" is invalid: spec.replicas: Invalid value: 0: \
         spec.replicas in body should be greater than or equal to 1"
    );
    let bad = crontab(
        "too-many",
        "default",
        "  cronSpec: \"* * * * *\"\n  replicas: 11\n",
    );
    let err = refused(&c, &["apply", "-f", "-"], &bad);
    let cause = causes(&err, "CronTab", "too-many");
    assert_eq!(cause.len(), 1, "{err}");
    // The value kube shows for an object differs by version (see
    // kube_1_33_wording): the field and the message are what is stable.
    assert!(
        cause[0].starts_with("spec: Invalid value: ")
            && cause[0].ends_with(": replicas must be at most 10"),
        "{err}"
    );
    let bad = crontab(
        "wrong-type",
        "default",
        "  cronSpec: \"* * * * *\"\n  replicas: \"three\"\n",
    );
    let err = refused(&c, &["create", "-f", "-"], &bad);
    assert_eq!(
        field_causes(&err, "CronTab", "wrong-type"),
        [
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ],
        "{err}"
    );
    // A type error blocks the CEL rules, and kube says so in a cause of its own.
    let all = causes(&err, "CronTab", "wrong-type");
    assert_eq!(all.len(), 2, "{err}");
    assert!(all[1].ends_with(UNCHECKED), "{err}");
    // The same object at the limit is fine.
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab(
            "ten",
            "default",
            "  cronSpec: \"* * * * *\"\n  replicas: 10\n",
        ),
    );
    for name in ["bad-spec", "bad-replicas", "too-many", "wrong-type"] {
        c.gone(&["get", "ct", name]);
    }

    // Unknown fields: refused under strict validation (kubectl's default), pruned
    // (not stored) without validation.
    let extra = crontab(
        "extra",
        "default",
        "  cronSpec: \"* * * * *\"\n  extra: surprise\n",
    );
    let err = refused(&c, &["create", "-f", "-"], &extra);
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains(r#"strict decoding error: unknown field "spec.extra""#),
        "{err}"
    );
    c.gone(&["get", "ct", "extra"]);
    accepted(&c, &["create", "--validate=false", "-f", "-"], &extra);
    let spec = get_json(&c, &["ct", "extra"])["spec"].clone();
    assert_eq!(
        spec,
        serde_json::json!({"cronSpec": "* * * * *", "replicas": 1}),
        "spec.extra pruned, replicas defaulted"
    );

    // ...and a warning (still pruned) with --validate=warn.
    let warned = extra.replace("name: extra", "name: warned");
    let out = c.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], &warned);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"Warning: unknown field "spec.extra""#),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        get_json(&c, &["ct", "warned"])["spec"],
        serde_json::json!({"cronSpec": "* * * * *", "replicas": 1})
    );

    // Transition rule: size may grow, not shrink (kubectl patch --type=merge).
    c.ok(&[
        "patch",
        "ct",
        "cron-a",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":7}}"#,
    ]);
    let err = c.fails(&[
        "patch",
        "ct",
        "cron-a",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":3}}"#,
    ]);
    let cause = causes(&err, "CronTab", "cron-a");
    assert_eq!(cause.len(), 1, "{err}");
    assert!(
        cause[0].starts_with("spec.size: Invalid value: ")
            && cause[0].ends_with(": size may not shrink from 7 to 3"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["get", "ct", "cron-a", "-o", "jsonpath={.spec.size}"]),
        "7"
    );

    // Strategic merge patch is not for custom objects (kubectl patch without --type).
    let err = c.fails(&["patch", "ct", "cron-a", "-p", r#"{"spec":{"size":8}}"#]);
    assert_eq!(
        err.trim(),
        "error: application/strategic-merge-patch+json is not supported by \
         stable.example.com/v1, Kind=CronTab: the body of the request was in an unknown \
         format - accepted media types include: application/json-patch+json, \
         application/merge-patch+json, application/apply-patch+yaml"
    );

    // Generation: 1 at creation (and after the merge patch of spec.size, 2); metadata
    // and status changes leave it alone, spec changes bump it.
    let generation =
        |name: &str| c.ok(&["get", "ct", name, "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(generation("cron-b"), "1");
    assert_eq!(generation("cron-a"), "2");
    c.ok(&["label", "ct", "cron-b", "team=night"]);
    assert_eq!(generation("cron-b"), "1");

    // Status subresource: a status patch changes only status...
    c.ok(&[
        "patch",
        "ct",
        "cron-b",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"},"spec":{"image":"sneaky"}}"#,
    ]);
    let obj = get_json(&c, &["ct", "cron-b"]);
    assert_eq!(obj["status"]["phase"], "Running");
    assert_eq!(obj["spec"].get("image"), None, "{obj}");
    assert_eq!(obj["metadata"]["generation"], 1);
    // ...and the main resource cannot change status.
    c.ok(&[
        "patch",
        "ct",
        "cron-b",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Hacked"},"spec":{"image":"img:2"}}"#,
    ]);
    let obj = get_json(&c, &["ct", "cron-b"]);
    assert_eq!(obj["status"]["phase"], "Running");
    assert_eq!(obj["spec"]["image"], "img:2");
    assert_eq!(obj["metadata"]["generation"], 2);
    // The status shows in the table.
    let out = c.ok(&["get", "ct", "cron-b"]);
    assert_eq!(
        &row(&out, "cron-b")[..8],
        ["cron-b", "0", "0", "*", "*", "1", "1", "Running"],
        "{out}"
    );

    // A watch starts with ADDED events for what is there.
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs?watch=1&timeoutSeconds=2",
    ]);
    let events: Vec<Value> = raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let added = events
        .iter()
        .find(|e| e["object"]["metadata"]["name"] == "cron-a")
        .unwrap_or_else(|| panic!("no event for cron-a in {raw}"));
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["kind"], "CronTab");
    assert_eq!(added["object"]["spec"]["size"], 7);

    // The list holds exactly the objects that were accepted.
    let list = get_json(&c, &["ct"]);
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cron-a", "cron-b", "extra", "ten", "warned"]);

    // Deleting an object.
    assert_eq!(
        c.ok(&["delete", "ct", "ten"]).trim(),
        "crontab.stable.example.com \"ten\" deleted"
    );
    c.gone(&["get", "ct", "ten"]);
}

#[test]
fn real_world_crds() {
    let c = Cluster::start();
    for dir in ["cert-manager", "prometheus-operator"] {
        let out = c.ok(&["apply", "--server-side", "-f", path(&fixtures(dir))]);
        assert!(out.contains("serverside-applied"), "{out}");
    }
    let crds = c.ok(&["get", "crd", "-o", "name"]);
    let mut crds: Vec<&str> = crds.lines().collect();
    crds.sort();
    assert_eq!(
        crds,
        [
            "customresourcedefinition.apiextensions.k8s.io/certificaterequests.cert-manager.io",
            "customresourcedefinition.apiextensions.k8s.io/certificates.cert-manager.io",
            "customresourcedefinition.apiextensions.k8s.io/challenges.acme.cert-manager.io",
            "customresourcedefinition.apiextensions.k8s.io/clusterissuers.cert-manager.io",
            "customresourcedefinition.apiextensions.k8s.io/issuers.cert-manager.io",
            "customresourcedefinition.apiextensions.k8s.io/orders.acme.cert-manager.io",
            "customresourcedefinition.apiextensions.k8s.io/podmonitors.monitoring.coreos.com",
            "customresourcedefinition.apiextensions.k8s.io/prometheuses.monitoring.coreos.com",
            "customresourcedefinition.apiextensions.k8s.io/prometheusrules.monitoring.coreos.com",
            "customresourcedefinition.apiextensions.k8s.io/servicemonitors.monitoring.coreos.com",
        ]
    );
    let out = c.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd",
        "--all",
    ]);
    assert_eq!(out.lines().count(), 10, "{out}");
    for crd in crds {
        let name = crd.rsplit('/').next().unwrap();
        assert_eq!(crd_condition(&c, name, "Established").0, "True", "{name}");
        assert_eq!(crd_condition(&c, name, "NamesAccepted").0, "True", "{name}");
    }
    forget_discovery(&c);
    let res = c.ok(&["api-resources", "--api-group=cert-manager.io"]);
    assert_eq!(
        row(&res, "certificates"),
        [
            "certificates",
            "cert,certs",
            "cert-manager.io/v1",
            "true",
            "Certificate"
        ],
        "{res}"
    );

    // The sample objects apply.
    let out = c.ok(&["apply", "-f", path(&fixtures("objects"))]);
    for line in [
        "issuer.cert-manager.io/selfsigned-issuer created",
        "certificate.cert-manager.io/test1 created",
        "certificate.cert-manager.io/test2 created",
        "servicemonitor.monitoring.coreos.com/example-app created",
        "prometheusrule.monitoring.coreos.com/prometheus-example-rules created",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
    }

    // cert-manager's columns: READY, SECRET, AGE (ISSUER and STATUS are priority 1).
    let out = c.ok(&["get", "certificates"]);
    assert_eq!(header(&out), ["NAME", "READY", "SECRET", "AGE"], "{out}");
    let r = row(&out, "test1");
    assert_eq!(&r[..2], ["test1", "test1"], "no Ready condition yet: {out}");
    assert_eq!(r.len(), 3, "{out}");
    c.ok(&[
        "patch",
        "certificate",
        "test1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Ready","message":"Certificate is up to date and has not expired"}]}}"#,
    ]);
    let out = c.ok(&["get", "cert", "-o", "wide"]);
    assert_eq!(
        header(&out),
        ["NAME", "READY", "SECRET", "ISSUER", "STATUS", "AGE"],
        "{out}"
    );
    let r = row(&out, "test1");
    assert_eq!(
        &r[..r.len() - 1],
        [
            "test1",
            "True",
            "test1",
            "selfsigned-issuer",
            "Certificate",
            "is",
            "up",
            "to",
            "date",
            "and",
            "has",
            "not",
            "expired"
        ],
        "{out}"
    );

    // A Certificate with a bad field, and ones without required fields. (kube prints
    // nothing more for this CRD, which has no CEL rules: kube_1_33_wording.)
    let issuer = "  issuerRef:\n    name: selfsigned-issuer\n";
    let err = refused(
        &c,
        &["apply", "-f", "-"],
        &cert(
            "bad-duration",
            &format!("  secretName: s\n  duration: 5\n{issuer}"),
        ),
    );
    assert_eq!(
        field_causes(&err, "Certificate", "bad-duration"),
        [
            r#"spec.duration: Invalid value: "integer": spec.duration in body must be of type string: "integer""#
        ],
        "{err}"
    );
    let err = refused(
        &c,
        &["apply", "-f", "-"],
        &cert("no-issuer", "  secretName: s\n"),
    );
    assert_eq!(
        field_causes(&err, "Certificate", "no-issuer"),
        ["spec.issuerRef: Required value"],
        "{err}"
    );
    let err = refused(
        &c,
        &["create", "-f", "-"],
        &cert("no-name", "  issuerRef:\n    kind: Issuer\n"),
    );
    assert_eq!(
        field_causes(&err, "Certificate", "no-name"),
        [
            "spec.issuerRef.name: Required value",
            "spec.secretName: Required value"
        ],
        "{err}"
    );
    accepted(
        &c,
        &["apply", "-f", "-"],
        &cert(
            "good",
            &format!("  secretName: s\n  duration: 2160h\n{issuer}"),
        ),
    );
    for name in ["bad-duration", "no-issuer", "no-name"] {
        c.gone(&["get", "certificate", name]);
    }

    // A PrometheusRule with an unknown field under strict validation.
    let rule = |name: &str, extra: &str| {
        format!(
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: {name}\nspec:\n  groups:\n  - name: g\n    rules:\n    - alert: A\n      expr: vector(1)\n{extra}"
        )
    };
    let err = refused(
        &c,
        &["apply", "-f", "-"],
        &rule("typo", "      bogus: true\n"),
    );
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains(
                r#"strict decoding error: unknown field "spec.groups[0].rules[0].bogus""#
            ),
        "{err}"
    );
    c.gone(&["get", "prometheusrule", "typo"]);
    accepted(&c, &["apply", "-f", "-"], &rule("fine", "      for: 5m\n"));
    assert_eq!(
        c.ok(&[
            "get",
            "promrule",
            "fine",
            "-o",
            "jsonpath={.spec.groups[0].rules[0].for}"
        ]),
        "5m"
    );
    // Default columns (no additionalPrinterColumns): Name and Age.
    let out = c.ok(&["get", "prometheusrules"]);
    assert_eq!(header(&out), ["NAME", "AGE"], "{out}");
    row(&out, "prometheus-example-rules");
}

fn cert(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

const CT_PLURAL_CONFLICT: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ct.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: ct
    singular: ctone
    kind: Ct
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

const CT_SHORTNAME_CONFLICT: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontables.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontables
    singular: crontable
    kind: CronTable
    shortNames:
    - ct
    - ctbl
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

#[test]
fn conflicting_names() {
    let c = Cluster::start();
    crontab_crd(&c);
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("first", "default", "  cronSpec: \"* * * * *\"\n"),
    );
    // Same-second newcomers are covered by same_second_names_conflict.
    accepted(&c, &["apply", "-f", "-"], CT_PLURAL_CONFLICT);
    accepted(&c, &["apply", "-f", "-"], CT_SHORTNAME_CONFLICT);

    let plural = eventually(Duration::from_secs(20), || {
        let cond = crd_condition(&c, "ct.stable.example.com", "NamesAccepted");
        (!cond.0.is_empty()).then_some(cond)
    });
    assert_eq!(
        plural,
        (
            "False".to_string(),
            "PluralConflict".to_string(),
            r#""ct" is already in use"#.to_string()
        )
    );
    let short = eventually(Duration::from_secs(20), || {
        let cond = crd_condition(&c, "crontables.stable.example.com", "NamesAccepted");
        (!cond.0.is_empty()).then_some(cond)
    });
    assert_eq!(
        short,
        (
            "False".to_string(),
            "ShortNamesConflict".to_string(),
            r#""ct" is already in use"#.to_string()
        )
    );
    for name in ["ct.stable.example.com", "crontables.stable.example.com"] {
        assert_ne!(crd_condition(&c, name, "Established").0, "True", "{name}");
        let crd = format!("crd/{name}");
        let err = c.fails(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=2s",
            &crd,
        ]);
        assert!(err.contains("timed out"), "{err}");
    }

    // Only the first is served; ct still means crontabs.
    forget_discovery(&c);
    let res = c.ok(&["api-resources", "--api-group=stable.example.com"]);
    let types: Vec<&str> = res.lines().skip(1).map(|l| words(l)[0]).collect();
    assert_eq!(types, ["crontabs"], "{res}");
    assert_eq!(
        row(&res, "crontabs"),
        ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]
    );
    assert_eq!(
        c.ok(&["get", "ct", "-o", "name"]).trim(),
        "crontab.stable.example.com/first"
    );
    let err = c.fails(&["get", "crontables"]);
    assert!(
        err.contains(r#"the server doesn't have a resource type "crontables""#),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", "/apis/stable.example.com/v1/crontables"]);
    assert!(err.contains("NotFound"), "{err}");

    // The first is unaffected.
    assert_eq!(
        crd_condition(&c, CRONTABS, "NamesAccepted"),
        (
            "True".to_string(),
            "NoConflicts".to_string(),
            "no conflicts found".to_string()
        )
    );
    assert_eq!(crd_condition(&c, CRONTABS, "Established").0, "True");
    assert_eq!(
        c.ok(&[
            "get",
            "crd",
            CRONTABS,
            "-o",
            "jsonpath={.status.acceptedNames.shortNames}"
        ]),
        r#"["ct"]"#
    );
}

#[test]
fn deleting_a_crd_deletes_its_objects() {
    let c = Cluster::start();
    crontab_crd(&c);
    c.ok(&["create", "namespace", "team-b"]);
    for (name, ns) in [("a1", "default"), ("a2", "default"), ("b1", "team-b")] {
        accepted(
            &c,
            &["apply", "-f", "-"],
            &crontab(name, ns, "  cronSpec: \"* * * * *\"\n"),
        );
    }
    let out = c.ok(&["get", "ct", "-A"]);
    assert_eq!(header(&out)[..2], ["NAMESPACE", "NAME"], "{out}");
    assert_eq!(row(&out, "team-b")[..2], ["team-b", "b1"], "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");

    // kubectl waits until the CRD is gone.
    assert_eq!(
        c.ok(&["delete", "crd", CRONTABS, "--timeout=60s"]).trim(),
        format!("customresourcedefinition.apiextensions.k8s.io \"{CRONTABS}\" deleted")
    );
    c.gone(&["get", "crd", CRONTABS]);

    // The type is gone from discovery.
    forget_discovery(&c);
    let res = c.ok(&["api-resources"]);
    assert!(!res.contains("crontabs"), "{res}");
    assert!(res.contains("customresourcedefinitions"), "{res}");
    let err = c.fails(&["get", "ct"]);
    assert!(
        err.contains(r#"the server doesn't have a resource type "ct""#),
        "{err}"
    );
    let err = c.fails(&["get", "--raw", "/apis/stable.example.com/v1/crontabs"]);
    assert!(err.contains("NotFound"), "{err}");
    let groups = c.ok(&["get", "--raw", "/apis"]);
    assert!(!groups.contains("stable.example.com"), "{groups}");

    // The same CRD again: none of the old objects.
    crontab_crd(&c);
    let out = c.kubectl(&["get", "ct", "-A"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out).trim(), "No resources found");
    let out = c.kubectl(&["get", "ct", "-n", "team-b"]);
    assert_eq!(
        stderr(&out).trim(),
        "No resources found in team-b namespace."
    );
}

/// An object with a finalizer of its own holds a CRD's deletion: the CRD is
/// Terminating, new objects are refused, and it goes once the object does.
#[test]
fn crd_deletion_waits_for_its_objects() {
    let c = Cluster::start();
    crontab_crd(&c);
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("plain", "default", "  cronSpec: \"* * * * *\"\n"),
    );
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("held", "default", "  cronSpec: \"* * * * *\"\n").replace(
            "  namespace: default\n",
            "  namespace: default\n  finalizers: [example.com/hold]\n",
        ),
    );
    assert_eq!(
        c.ok(&["delete", "crd", CRONTABS, "--wait=false"]).trim(),
        format!("customresourcedefinition.apiextensions.k8s.io \"{CRONTABS}\" deleted")
    );

    let cond = eventually(Duration::from_secs(20), || {
        let cond = crd_condition(&c, CRONTABS, "Terminating");
        (cond.0 == "True").then_some(cond)
    });
    assert_eq!(
        cond,
        (
            "True".to_string(),
            "InstanceDeletionInProgress".to_string(),
            "CustomResource deletion is in progress".to_string()
        )
    );
    let crd = get_json(&c, &["crd", CRONTABS]);
    assert!(crd["metadata"]["deletionTimestamp"].is_string(), "{crd}");
    assert_eq!(
        crd["metadata"]["finalizers"],
        serde_json::json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    // The objects are being deleted: the plain one is gone, the held one waits.
    eventually(Duration::from_secs(20), || {
        c.absent(&["get", "ct", "plain"]).then_some(())
    });
    let held = get_json(&c, &["ct", "held"]);
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");

    // No new objects while it terminates.
    let err = refused(
        &c,
        &["create", "-f", "-"],
        &crontab("late", "default", "  cronSpec: \"* * * * *\"\n"),
    );
    assert!(
        err.starts_with("Error from server (MethodNotAllowed): error when creating \"STDIN\": "),
        "{err}"
    );
    c.gone(&["get", "ct", "late"]);
    c.gone(&["get", "ct", "plain"]);
    assert_eq!(crd_condition(&c, CRONTABS, "Terminating").0, "True");

    // Releasing the object lets the CRD go.
    c.ok(&[
        "patch",
        "ct",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    eventually(Duration::from_secs(30), || {
        c.absent(&["get", "crd", CRONTABS]).then_some(())
    });
    let err = c.fails(&["get", "--raw", "/apis/stable.example.com/v1/crontabs"]);
    assert!(err.contains("NotFound"), "{err}");
}

/// A CRD of group legacy.example.com with one version, v1, `deprecated` as given.
fn legacy_crd(plural: &str, kind: &str, deprecation: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.legacy.example.com
spec:
  group: legacy.example.com
  scope: Namespaced
  names:
    plural: {plural}
    kind: {kind}
  versions:
  - name: v1
    served: true
    storage: true
{deprecation}    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"
    )
}

#[test]
fn deprecated_versions_warn() {
    let c = Cluster::start();
    accepted(
        &c,
        &["apply", "-f", "-"],
        &legacy_crd("widgets", "Widget", "    deprecated: true\n"),
    );
    accepted(
        &c,
        &["apply", "-f", "-"],
        &legacy_crd(
            "gadgets",
            "Gadget",
            "    deprecated: true\n    deprecationWarning: gadgets are going away\n",
        ),
    );
    accepted(
        &c,
        &["apply", "-f", "-"],
        &legacy_crd("things", "Thing", ""),
    );
    c.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/widgets.legacy.example.com",
        "crd/gadgets.legacy.example.com",
        "crd/things.legacy.example.com",
    ]);
    forget_discovery(&c);

    for (kind, plural, warning) in [
        (
            "Widget",
            "widgets",
            Some("Warning: legacy.example.com/v1 Widget is deprecated"),
        ),
        ("Gadget", "gadgets", Some("Warning: gadgets are going away")),
        ("Thing", "things", None),
    ] {
        let obj = format!(
            "apiVersion: legacy.example.com/v1\nkind: {kind}\nmetadata:\n  name: one\n  namespace: default\n"
        );
        let out = c.kubectl_stdin(&["create", "-f", "-"], &obj);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("{}.legacy.example.com/one created", kind.to_lowercase())
        );
        let got: Vec<String> = stderr(&out).lines().map(str::to_string).collect();
        assert_eq!(
            got,
            warning.map(str::to_string).into_iter().collect::<Vec<_>>(),
            "{kind}"
        );
        let out = c.kubectl(&["get", plural, "one", "-o", "name"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().next(), warning, "kubectl get {plural}");
    }
}

#[test]
fn namespace_deletion_removes_custom_objects() {
    let c = Cluster::start();
    crontab_crd(&c);
    c.ok(&["create", "namespace", "doomed"]);
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("in-doomed", "doomed", "  cronSpec: \"* * * * *\"\n"),
    );
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("survivor", "default", "  cronSpec: \"* * * * *\"\n"),
    );
    assert_eq!(
        c.ok(&["get", "ct", "-n", "doomed", "-o", "name"]).trim(),
        "crontab.stable.example.com/in-doomed"
    );

    assert_eq!(
        c.ok(&["delete", "namespace", "doomed", "--timeout=60s"])
            .trim(),
        "namespace \"doomed\" deleted"
    );
    c.gone(&["get", "namespace", "doomed"]);

    let out = c.ok(&["get", "ct", "-A", "-o", "name"]);
    assert_eq!(out.trim(), "crontab.stable.example.com/survivor");
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/doomed/crontabs",
    ]);
    let list: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["items"], serde_json::json!([]), "{raw}");
}

/// Wording and behaviour of kube 1.33 (the version skiff reports) that skiff does not
/// match yet. Sources: apiextensions-apiserver v0.33.0
/// `pkg/apiserver/schema/cel/validation.go` (a failed rule's value is the schema type;
/// `field.OmitValueType{}` for objects and the value itself for scalars came in v0.35),
/// `pkg/registry/customresource/strategy.go` (`hasBlockingErr`: the note is
/// `field.Invalid(nil, nil, …)`, field `<nil>`, value `"null"`, and only when the schema
/// has CEL rules: `cel.NewValidator` is nil otherwise), apiserver's
/// `endpoints/handlers/rest.go` `transformDecodeError` for strict decoding errors.
#[test]
fn kube_1_33_wording() {
    let c = Cluster::start();
    crontab_crd(&c);
    let certs = fixtures("cert-manager").join("cert-manager.io_certificates.yaml");
    c.ok(&["apply", "--server-side", "-f", path(&certs)]);
    c.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/certificates.cert-manager.io",
    ]);
    forget_discovery(&c);

    let err = refused(
        &c,
        &["create", "-f", "-"],
        &crontab(
            "extra",
            "default",
            "  cronSpec: \"* * * * *\"\n  extra: surprise\n",
        ),
    );
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): error when creating \"STDIN\": CronTab in version \
         \"v1\" cannot be handled as a CronTab: strict decoding error: unknown field \"spec.extra\""
    );

    let err = refused(
        &c,
        &["apply", "-f", "-"],
        &crontab(
            "too-many",
            "default",
            "  cronSpec: \"* * * * *\"\n  replicas: 11\n",
        ),
    );
    assert_eq!(
        err.trim(),
        r#"The CronTab "too-many" is invalid: spec: Invalid value: "object": replicas must be at most 10"#
    );

    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab(
            "shrink",
            "default",
            "  cronSpec: \"* * * * *\"\n  size: 7\n",
        ),
    );
    let err = c.fails(&[
        "patch",
        "ct",
        "shrink",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":3}}"#,
    ]);
    assert_eq!(
        err.trim(),
        r#"The CronTab "shrink" is invalid: spec.size: Invalid value: "integer": size may not shrink from 7 to 3"#
    );

    let err = refused(
        &c,
        &["create", "-f", "-"],
        &crontab(
            "wrong-type",
            "default",
            "  cronSpec: \"* * * * *\"\n  replicas: \"three\"\n",
        ),
    );
    assert_eq!(
        err,
        format!(
            "The CronTab \"wrong-type\" is invalid: \n\
             * spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type \
             integer: \"string\"\n\
             * <nil>: Invalid value: \"null\": {UNCHECKED}\n"
        )
    );

    let err = refused(
        &c,
        &["apply", "-f", "-"],
        &cert(
            "bad-duration",
            "  secretName: s\n  duration: 5\n  issuerRef:\n    name: x\n",
        ),
    );
    assert_eq!(
        err.trim(),
        r#"The Certificate "bad-duration" is invalid: spec.duration: Invalid value: "integer": spec.duration in body must be of type string: "integer""#
    );
    let err = refused(
        &c,
        &["apply", "-f", "-"],
        &cert("no-issuer", "  secretName: s\n"),
    );
    assert_eq!(
        err.trim(),
        r#"The Certificate "no-issuer" is invalid: spec.issuerRef: Required value"#
    );
}

/// CRD termination as kube 1.33 does it (apiextensions-apiserver v0.33.0
/// `pkg/apiserver/customresource_handler.go` and `pkg/controller/finalizer/crd_finalizer.go`).
#[test]
fn crd_termination() {
    let c = Cluster::start();
    crontab_crd(&c);

    // An object holding the CRD's deletion.
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("held", "default", "  cronSpec: \"* * * * *\"\n").replace(
            "  namespace: default\n",
            "  namespace: default\n  finalizers: [example.com/hold]\n",
        ),
    );
    c.ok(&["delete", "crd", CRONTABS, "--wait=false"]);
    eventually(Duration::from_secs(20), || {
        (crd_condition(&c, CRONTABS, "Terminating").0 == "True").then_some(())
    });
    let err = refused(
        &c,
        &["create", "-f", "-"],
        &crontab("late", "default", "  cronSpec: \"* * * * *\"\n"),
    );
    assert_eq!(
        err.trim(),
        "Error from server (MethodNotAllowed): error when creating \"STDIN\": create not \
         allowed while custom resource definition is terminating"
    );
    c.ok(&[
        "patch",
        "ct",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    eventually(Duration::from_secs(30), || {
        c.absent(&["get", "crd", CRONTABS]).then_some(())
    });

    // A CRD held by a finalizer of our own: once its objects are deleted, the cleanup
    // finalizer goes and the Terminating condition says the instances are removed.
    crontab_crd(&c);
    accepted(
        &c,
        &["apply", "-f", "-"],
        &crontab("doomed", "default", "  cronSpec: \"* * * * *\"\n"),
    );
    c.ok(&[
        "patch",
        "crd",
        CRONTABS,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    c.ok(&["delete", "crd", CRONTABS, "--wait=false"]);
    eventually(Duration::from_secs(20), || {
        c.absent(&["get", "ct", "doomed"]).then_some(())
    });
    let cond = eventually(Duration::from_secs(20), || {
        let crd = get_json(&c, &["crd", CRONTABS]);
        (crd["metadata"]["finalizers"] == serde_json::json!(["example.com/hold"]))
            .then(|| crd_condition(&c, CRONTABS, "Terminating"))
    });
    assert_eq!(
        cond,
        (
            "False".to_string(),
            "InstanceDeletionCompleted".to_string(),
            "removed all instances".to_string()
        )
    );
    c.ok(&[
        "patch",
        "crd",
        CRONTABS,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    eventually(Duration::from_secs(20), || {
        c.absent(&["get", "crd", CRONTABS]).then_some(())
    });
}

/// A CRD created in the same second as an established one that holds its short name:
/// kube's naming controller keeps the names the first one was accepted with
/// (`equalToAcceptedOrFresh` in apiextensions-apiserver
/// `pkg/controller/status/naming_controller.go`); the newcomer conflicts.
#[test]
fn same_second_names_conflict() {
    let c = Cluster::start();
    let crd = std::fs::read_to_string(manifest("crd/crontab-crd.yaml")).unwrap();
    for i in 0..10 {
        let group = format!("g{i}.example.com");
        let first = format!("crontabs.{group}");
        let second = format!("crontables.{group}");
        accepted(
            &c,
            &["apply", "-f", "-"],
            &crd.replace("stable.example.com", &group),
        );
        c.ok(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=30s",
            &format!("crd/{first}"),
        ]);
        accepted(
            &c,
            &["apply", "-f", "-"],
            &CT_SHORTNAME_CONFLICT.replace("stable.example.com", &group),
        );
        let created = |name: &str| {
            c.ok(&[
                "get",
                "crd",
                name,
                "-o",
                "jsonpath={.metadata.creationTimestamp}",
            ])
        };
        if created(&first) != created(&second) {
            continue; // not the case under test; try again
        }
        let conflict = eventually(Duration::from_secs(20), || {
            let cond = crd_condition(&c, &second, "NamesAccepted");
            (!cond.0.is_empty()).then_some(cond)
        });
        assert_eq!(
            conflict,
            (
                "False".to_string(),
                "ShortNamesConflict".to_string(),
                r#""ct" is already in use"#.to_string()
            )
        );
        assert_eq!(crd_condition(&c, &first, "NamesAccepted").0, "True");
        let res = c.ok(&["api-resources", &format!("--api-group={group}")]);
        let types: Vec<&str> = res.lines().skip(1).map(|l| words(l)[0]).collect();
        assert_eq!(types, ["crontabs"], "{res}");
        return;
    }
    panic!("never created both CRDs in the same second");
}

const ROUTERS_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: routers.net.example.com
spec:
  group: net.example.com
  scope: Namespaced
  names: {plural: routers, singular: router, kind: Router}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              routes:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [host, port]
                items:
                  type: object
                  required: [host, port]
                  properties:
                    host: {type: string}
                    port: {type: integer}
                    backend: {type: string}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              args:
                type: array
                items: {type: string}
"#;

fn router(routes: &str, tags: &str, args: &str) -> String {
    format!(
        "apiVersion: net.example.com/v1\nkind: Router\nmetadata:\n  name: edge\nspec:\n  routes: {routes}\n  tags: {tags}\n  args: {args}\n"
    )
}

/// Server-side apply merges a custom kind's lists as its schema says: a map list by
/// all its keys, a set by value, and a list without a list-type as one atomic value.
#[test]
fn server_side_apply_follows_crd_list_types() {
    let c = Cluster::start();
    accepted(&c, &["apply", "-f", "-"], ROUTERS_CRD);
    c.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/routers.net.example.com",
    ]);
    forget_discovery(&c);
    let apply = |manager: &str, yaml: &str| {
        c.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                manager,
                "-f",
                "-",
            ],
            yaml,
        )
    };
    let a = router(r#"[{host: a, port: 80, backend: svc-x}]"#, "[t1]", "[--a]");
    assert!(apply("alice", &a).status.success());
    // Same host, other port: another entry of the map list, and another tag of the set.
    let b = router(r#"[{host: a, port: 443, backend: svc-y}]"#, "[t2]", "[]");
    let b = b.replace("  args: []\n", "");
    let out = apply("bob", &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec = get_json(&c, &["router", "edge"])["spec"].clone();
    let routes: Vec<(String, i64, String)> = spec["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().into(),
                r["port"].as_i64().unwrap(),
                r["backend"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("a".into(), 80, "svc-x".into()),
            ("a".into(), 443, "svc-y".into())
        ]
    );
    assert_eq!(spec["tags"], serde_json::json!(["t1", "t2"]));
    let fields =
        get_json(&c, &["router", "edge", "--show-managed-fields"])["metadata"]["managedFields"]
            .to_string();
    assert!(
        fields.contains(r#"k:{\"host\":\"a\",\"port\":443}"#),
        "{fields}"
    );

    // An atomic list belongs to its last applier: another manager changing it conflicts.
    let take_args = router(r#"[{host: a, port: 443, backend: svc-y}]"#, "[t2]", "[--b]");
    let err = stderr(&apply("bob", &take_args));
    assert!(
        err.contains("conflict") && err.contains(".spec.args"),
        "{err}"
    );

    // Alice stops applying her route: hers goes, Bob's stays.
    let a2 = router("[]", "[t1]", "[--a]").replace("  routes: []\n", "");
    assert!(apply("alice", &a2).status.success());
    let spec = get_json(&c, &["router", "edge"])["spec"].clone();
    assert_eq!(spec["routes"].as_array().unwrap().len(), 1, "{spec}");
    assert_eq!(spec["routes"][0]["port"], 443);
}

const WEBAPPS_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: webapps.apps.example.com
spec:
  group: apps.example.com
  scope: Namespaced
  names: {plural: webapps, singular: webapp, kind: WebApp}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

/// A HorizontalPodAutoscaler scales a custom kind through its scale subresource, found
/// by discovery: its pods' usage (simulated) drives the custom object's spec.replicas.
#[test]
fn autoscaling_a_custom_kind() {
    let c = Cluster::start_with(&["up", "--simulate", "1", "--metric-resolution=2s"]);
    accepted(&c, &["apply", "-f", "-"], WEBAPPS_CRD);
    c.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/webapps.apps.example.com",
    ]);
    forget_discovery(&c);
    accepted(
        &c,
        &["apply", "-f", "-"],
        "apiVersion: apps.example.com/v1\nkind: WebApp\nmetadata:\n  name: web\nspec:\n  replicas: 1\n",
    );
    c.ok(&[
        "patch",
        "webapp",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"app=web"}}"#,
    ]);
    // The pod the WebApp stands for, using 400m against a 100m request.
    accepted(
        &c,
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  labels:\n    app: web\n  annotations:\n    skiff.io/simulate-cpu: 400m\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources:\n      requests:\n        cpu: 100m\n",
    );
    let scale = c.ok(&[
        "get",
        "--raw",
        "/apis/apps.example.com/v1/namespaces/default/webapps/web/scale",
    ]);
    assert!(scale.contains(r#""selector":"app=web""#), "{scale}");
    c.ok(&[
        "autoscale",
        "webapp",
        "web",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    eventually(Duration::from_secs(60), || {
        let r = c.ok(&["get", "webapp", "web", "-o", "jsonpath={.spec.replicas}"]);
        (r == "3").then_some(())
    });
    let hpa = c.ok(&[
        "get",
        "hpa",
        "web",
        "-o",
        "jsonpath={.status.desiredReplicas} {.spec.scaleTargetRef.kind}",
    ]);
    assert_eq!(hpa, "3 WebApp");
}

/// A rule naming a field the schema does not have is refused with the CRD, worded as
/// kube's CEL checker words it; the same CRD with the field spelled right is created.
#[test]
fn crd_rules_naming_undefined_fields_are_refused() {
    let c = Cluster::start();
    let crd = |name: &str, rule: &str| {
        serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{name}s.rules.example.com")},
            "spec": {"group": "rules.example.com", "scope": "Namespaced",
                "names": {"plural": format!("{name}s"), "kind": name.to_uppercase()},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                        "type": "object", "properties": {"size": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": rule}]}}}}}]},
        })
        .to_string()
    };
    accepted(&c, &["apply", "-f", "-"], &crd("good", "self.size >= 0"));
    let err = refused(&c, &["apply", "-f", "-"], &crd("typo", "self.sise >= 0"));
    // A schema all versions share is named as kube's internal version hoists it.
    assert!(
        err.starts_with(
            "The CustomResourceDefinition \"typos.rules.example.com\" is invalid: \
             spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: \
             Invalid value: "
        )
            && err.trim_end().ends_with(
            ": compilation failed: ERROR: <input>:1:5: undefined field 'sise'\n | self.sise >= 0\n | ....^"
        ),
        "{err}"
    );
    assert!(
        c.fails(&["get", "crd", "typos.rules.example.com"])
            .contains("NotFound")
    );
}
