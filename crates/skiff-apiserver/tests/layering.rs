//! A request flows one way through the API server (issue 19): router → per-verb
//! endpoints → the generic store (`rest`) → per-kind rules and admission → the server
//! state → plain values and storage codecs. This test reads every source file's
//! `crate::…` and `super::…` paths (one node per file, `endpoints::create` as well as
//! `router`) and fails when
//! - any files import each other in a cycle, or
//! - a module names one in a higher layer of `LAYERS`, or
//! - a module is in no layer (a new file must say where it belongs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// From the bottom up. A module may use its own layer (without cycles) and those below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "values: what a request and a kind are, bytes in and out",
        &[
            "auth",
            "cache",
            "codec",
            "conn",
            "custom",
            "decode",
            "deletion",
            "discovery",
            "flowcontrol",
            "hpa_versions",
            "httpconn",
            "metrics",
            "metricsgroup",
            "openapi",
            "registry",
            "request",
            "request_info",
            "respond",
            "scale",
            "strategy",
            "views",
        ],
    ),
    (
        "parts the state holds",
        &[
            "apiservices",
            "audit",
            "audit::policy",
            "audit::sink",
            "certificates",
            "dynamic_admission",
            "extension_client",
            "rbac",
            "secrets_encryption",
            "service_alloc",
            "serverjoin",
            "services",
        ],
    ),
    ("the server state", &["state"]),
    (
        "per-kind preparation and built-in admission plugins",
        &[
            "conversion",
            "identity",
            "ingressclass",
            "kinds",
            "nodeauth",
            "podsecurity",
            "priority",
            "serviceaccount",
            "storage",
        ],
    ),
    (
        "the generic store",
        &[
            "rest",
            "rest::admission",
            "rest::create",
            "rest::delete",
            "rest::meta",
            "rest::read",
            "rest::update",
        ],
    ),
    (
        "clients of the store: controllers inside the server, node relays, reviews",
        &[
            "agentproxy",
            "aggregator",
            "apiservers",
            "crds",
            "eventttl",
            "metricsapi",
            "namespace_defaults",
            "namespaces",
            "nodeproxy",
            "portforward",
            "rbac_bootstrap",
            "reconcile",
            "reviews",
            "watch",
        ],
    ),
    (
        "endpoints",
        &[
            "attributes",
            "bootstrap",
            "endpoints",
            "endpoints::binding",
            "endpoints::call",
            "endpoints::connect",
            "endpoints::create",
            "endpoints::delete",
            "endpoints::eviction",
            "endpoints::get",
            "endpoints::list",
            "endpoints::patch",
            "endpoints::update",
            "endpoints::watch",
            "nonresource",
        ],
    ),
    ("the router", &["router"]),
    ("wiring", &["server"]),
];

/// Source files as module paths (`audit/mod.rs` is `audit`), the crate root left out.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if name != "lib" {
                out.insert(name, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

/// The code of a file: unit tests and comments left out.
fn code(src: &str) -> String {
    let body = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The longest module named by the start of `path` (`a::b::Item` → `a::b` if a file).
fn resolve(path: &[&str], known: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains(m))
}

/// The paths after `crate::` or `super::`, with `{a, b::c}` groups expanded one level.
fn paths(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(anchor) {
        let before = rest[..i].chars().last();
        rest = &rest[i + anchor.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let head: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut segs: Vec<String> = head
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(group) = rest[head.len()..].strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let mut p = segs.clone();
                p.extend(item.trim().split("::").map(str::to_string));
                out.push(p);
            }
            segs.clear();
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

/// Module → the modules it uses.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = modules(src);
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, src) in &files {
        let code = code(src);
        let parent: Vec<&str> = m.split("::").collect();
        let parent = &parent[..parent.len() - 1];
        let mut refs = BTreeSet::new();
        for p in paths(&code, "crate::") {
            let p: Vec<&str> = p.iter().map(String::as_str).collect();
            refs.extend(resolve(&p, &known));
        }
        for p in paths(&code, "super::") {
            let mut full: Vec<&str> = parent.to_vec();
            full.extend(p.iter().map(String::as_str));
            refs.extend(resolve(&full, &known));
        }
        // `mod x;` in a parent declares its children; that is not a use.
        refs.retain(|r| r != m);
        g.insert(m.clone(), refs);
    }
    g
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn layer_of() -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for (i, (_, mods)) in LAYERS.iter().enumerate() {
        for m in *mods {
            assert!(out.insert(*m, i).is_none(), "{m} is in two layers");
        }
    }
    out
}

#[test]
fn no_module_is_in_an_import_cycle() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.len() > 60, "found only {} modules", g.len());
    let found = cycles(&g);
    assert!(found.is_empty(), "modules in import cycles: {found:?}");
}

#[test]
fn modules_only_use_their_layer_and_those_below() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let layers = layer_of();
    let unplaced: Vec<&String> = g
        .keys()
        .filter(|m| !layers.contains_key(m.as_str()))
        .collect();
    assert!(unplaced.is_empty(), "modules in no layer: {unplaced:?}");
    let gone: Vec<&&str> = layers.keys().filter(|m| !g.contains_key(**m)).collect();
    assert!(
        gone.is_empty(),
        "layers name modules that do not exist: {gone:?}"
    );
    let mut upward = Vec::new();
    for (m, uses) in &g {
        for u in uses {
            if layers[u.as_str()] > layers[m.as_str()] {
                upward.push(format!(
                    "{m} ({}) uses {u} ({})",
                    LAYERS[layers[m.as_str()]].0,
                    LAYERS[layers[u.as_str()]].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run upward:\n{}",
        upward.join("\n")
    );
}

/// The checks above can fail: a made-up cycle and upward import are found.
#[test]
fn the_checks_see_cycles_and_upward_imports() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("rest".into(), ["kinds".to_string()].into());
    g.insert("kinds".into(), ["rest::create".to_string()].into());
    g.insert("rest::create".into(), ["rest".to_string()].into());
    assert_eq!(cycles(&g).len(), 1);
    let p = paths(
        "use crate::endpoints::{call::Call, create};\nlet x = super::meta::f();",
        "crate::",
    );
    assert_eq!(p.len(), 2);
    let known: BTreeSet<String> = ["endpoints", "endpoints::call"].map(String::from).into();
    let p0: Vec<&str> = p[0].iter().map(String::as_str).collect();
    assert_eq!(resolve(&p0, &known).as_deref(), Some("endpoints::call"));
    let layers = layer_of();
    assert!(layers["rest"] > layers["kinds"] && layers["router"] > layers["endpoints"]);
}
