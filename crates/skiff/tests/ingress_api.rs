//! The control-plane side of the built-in Ingress controller, with the real binary and
//! the real kubectl on simulated nodes: the bootstrap IngressClass `skiff`,
//! DefaultIngressClass admission, and the `ingress-status` controller publishing the
//! addresses of the nodes that serve Ingresses.

mod common;

use common::Cluster;
use std::time::Duration;

const NODE_ANNOTATION: &str = "ingress.skiff.io/ports";

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(words)
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"))
}

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    c.ok(&args)
}

fn class_of(c: &Cluster, ingress: &str) -> String {
    jsonpath(c, &["ingress", ingress], "{.spec.ingressClassName}")
}

fn addresses(c: &Cluster, ingress: &str) -> String {
    jsonpath(
        c,
        &["ingress", ingress],
        "{.status.loadBalancer.ingress[*].ip}",
    )
}

fn internal_ip(c: &Cluster, node: &str) -> String {
    let ip = jsonpath(
        c,
        &["node", node],
        r#"{.status.addresses[?(@.type=="InternalIP")].address}"#,
    );
    assert!(!ip.is_empty(), "{node} has no InternalIP");
    ip
}

/// Waits until `ingress` shows exactly `want` (space-separated addresses).
fn shows(c: &Cluster, ingress: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = addresses(c, ingress);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ingress} shows {got:?}, not {want:?}; server log tail:\n{}",
            common::tail(&c.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn started() -> Cluster {
    let c = Cluster::start_with(&["up", "--simulate", "2"]);
    common::eventually(Duration::from_secs(30), || {
        let out = c.ok(&["get", "nodes", "--no-headers"]);
        (out.lines()
            .filter(|l| words(l).get(1) == Some(&"Ready"))
            .count()
            == 2)
            .then_some(())
    });
    c
}

#[test]
fn the_skiff_class_is_the_default_and_ingresses_get_it() {
    let c = started();
    let classes = c.ok(&["get", "ingressclass"]);
    assert_eq!(
        words(classes.lines().next().unwrap()),
        ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    );
    assert_eq!(
        &row(&classes, "skiff")[..3],
        ["skiff", "skiff.io/ingress", "<none>"]
    );
    assert_eq!(
        jsonpath(
            &c,
            &["ingressclass", "skiff"],
            r"{.metadata.annotations.ingressclass\.kubernetes\.io/is-default-class}",
        ),
        "true"
    );

    // DefaultIngressClass admission: no class given, the default's name set.
    assert_eq!(
        c.ok(&["create", "ingress", "demo", "--rule=a.example/=svc:80"])
            .trim(),
        "ingress.networking.k8s.io/demo created"
    );
    assert_eq!(class_of(&c, "demo"), "skiff");
    assert_eq!(row(&c.ok(&["get", "ingress"]), "demo")[1], "skiff");
    // A class given is kept; so is the legacy annotation, with no class added.
    c.ok(&[
        "create",
        "ingress",
        "other",
        "--class=other",
        "--rule=b.example/=svc:80",
    ]);
    assert_eq!(class_of(&c, "other"), "other");
    c.ok(&[
        "create",
        "ingress",
        "legacy",
        "--annotation=kubernetes.io/ingress.class=nginx",
        "--rule=c.example/=svc:80",
    ]);
    assert_eq!(class_of(&c, "legacy"), "");
    // Not the default any more: new Ingresses get no class; old ones keep theirs.
    c.ok(&[
        "annotate",
        "ingressclass",
        "skiff",
        "ingressclass.kubernetes.io/is-default-class-",
    ]);
    c.ok(&["create", "ingress", "plain", "--rule=d.example/=svc:80"]);
    assert_eq!(class_of(&c, "plain"), "");
    assert_eq!(class_of(&c, "demo"), "skiff");

    // A restart keeps the user's edit of the class.
    let mut c = c;
    c.restart();
    let ann = jsonpath(&c, &["ingressclass", "skiff"], "{.metadata.annotations}");
    assert!(!ann.contains("is-default-class"), "{ann}");
}

#[test]
fn skiff_ingresses_show_the_nodes_that_serve_them() {
    let c = started();
    c.ok(&["create", "ingress", "demo", "--rule=a.example/=svc:80"]);
    c.ok(&[
        "create",
        "ingress",
        "other",
        "--class=other",
        "--rule=b.example/=svc:80",
    ]);
    c.ok(&[
        "create",
        "ingress",
        "mine",
        "--class=mine",
        "--rule=c.example/=svc:80",
    ]);
    let (ip0, ip1) = (internal_ip(&c, "sim-0"), internal_ip(&c, "sim-1"));
    // No node serves Ingresses yet: nothing to show, for a while.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(addresses(&c, "demo"), "");
    // (An empty ADDRESS column prints nothing.)
    assert_eq!(
        &row(&c.ok(&["get", "ingress"]), "demo")[..4],
        ["demo", "skiff", "a.example", "80"]
    );

    c.ok(&[
        "annotate",
        "node",
        "sim-0",
        &format!("{NODE_ANNOTATION}=80,443"),
    ]);
    shows(&c, "demo", &ip0);
    assert_eq!(row(&c.ok(&["get", "ingress"]), "demo")[3], ip0);
    c.ok(&[
        "annotate",
        "node",
        "sim-1",
        &format!("{NODE_ANNOTATION}=80,443"),
    ]);
    let mut both = [ip0.clone(), ip1.clone()];
    both.sort();
    shows(&c, "demo", &both.join(" "));
    c.ok(&["annotate", "node", "sim-0", &format!("{NODE_ANNOTATION}-")]);
    shows(&c, "demo", &ip1);

    // A class of skiff's controller made later: its Ingresses are skiff's from then on.
    assert_eq!(addresses(&c, "mine"), "");
    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: mine\nspec:\n  controller: skiff.io/ingress\n",
    );
    shows(&c, "mine", &ip1);
    // Another class's Ingress never gets them.
    assert_eq!(addresses(&c, "other"), "");
    let status = jsonpath(&c, &["ingress", "other"], "{.status}");
    assert!(!status.contains(&ip1), "{status}");
}
