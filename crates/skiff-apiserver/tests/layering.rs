//! The API server's modules must come to call one way only (router → handlers →
//! strategies → storage; issue 19). Today many still reach each other in a circle
//! through `ApiServer`; this test keeps that circle from growing: a module outside
//! `KNOT` that joins a cycle fails it, and a module that leaves the cycle must be taken
//! off the list (so the list only shrinks). The leaves named in `LEAVES` may not depend
//! on anything in the knot at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules in import cycles today. Shrink it as they are untangled.
const KNOT: &[&str] = &[
    "agentproxy",
    "aggregator",
    "apiservers",
    "audit",
    "bootstrap",
    "crds",
    "discovery",
    "dynamic_admission",
    "eventttl",
    "handlers",
    "identity",
    "ingressclass",
    "kinds",
    "metricsapi",
    "nodeauth",
    "nodeproxy",
    "object",
    "patching",
    "podsecurity",
    "portforward",
    "rbac_bootstrap",
    "reviews",
    "secrets_encryption",
    "server",
    "serverjoin",
    "serviceaccount",
    "storage",
    "watch",
];

/// Modules that must stay below the pipeline: kinds and their rules, URL parsing.
const LEAVES: &[&str] = &[
    "registry",
    "custom",
    "strategy",
    "scale",
    "request_info",
    "services",
];

/// `crate::x` references of one file, tests and comments left out.
fn references(src: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let body = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    let code: String = body
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                add(&mut out, item.trim(), modules);
            }
        } else {
            add(&mut out, rest, modules);
        }
    }
    out
}

fn add(out: &mut BTreeSet<String>, path: &str, modules: &BTreeSet<String>) {
    let name: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let name = match name.as_str() {
        "ApiServer" | "Config" | "RunningServer" => "server".to_string(),
        _ => name,
    };
    if modules.contains(&name) {
        out.insert(name);
    }
}

/// Module → the sibling modules it uses.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            for f in std::fs::read_dir(&p).unwrap() {
                files.push((
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    f.unwrap().path(),
                ));
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            let m = p.file_stem().unwrap().to_string_lossy().to_string();
            files.push((m, p));
        }
    }
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(m, _)| m.clone())
        .filter(|m| m != "lib")
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, p) in files.iter().filter(|(m, _)| m != "lib") {
        let src = std::fs::read_to_string(p).unwrap();
        let mut refs = references(&src, &modules);
        refs.remove(m);
        g.entry(m.clone()).or_default().extend(refs);
    }
    g
}

/// Modules that sit on a cycle (Tarjan's strongly connected components of size > 1).
fn cyclic(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: BTreeSet<String>,
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
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.extend(scc.into_iter().map(str::to_string));
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: BTreeSet::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_module_knot_only_shrinks_and_leaves_stay_leaves() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.len() > 30, "found only {} modules", g.len());
    let knot: BTreeSet<String> = KNOT.iter().map(|s| s.to_string()).collect();
    let now = cyclic(&g);
    let joined: Vec<&String> = now.difference(&knot).collect();
    assert!(
        joined.is_empty(),
        "modules that joined an import cycle: {joined:?}"
    );
    let left: Vec<&String> = knot.difference(&now).collect();
    assert!(
        left.is_empty(),
        "no longer in a cycle, take them off KNOT: {left:?}"
    );
    for leaf in LEAVES {
        let bad: Vec<&String> = g[*leaf].intersection(&knot).collect();
        assert!(bad.is_empty(), "{leaf} depends on {bad:?}");
    }
}

#[test]
fn a_cycle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    g.entry("c".into()).or_default().insert("a".into());
    let c = cyclic(&g);
    assert_eq!(c, ["a", "b"].iter().map(|s| s.to_string()).collect());
    let modules: BTreeSet<String> = ["object", "server"].iter().map(|s| s.to_string()).collect();
    let refs = references(
        "use crate::{object::Target, ApiServer};\n// crate::nope\n",
        &modules,
    );
    assert_eq!(refs, modules);
}
