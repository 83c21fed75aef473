//! skiff's Ingresses as one routing table (pure): host → paths → upstream, with every
//! upstream's endpoints resolved from the node's Service catalog.
//!
//! A request is routed by the rules of its exact host, then of the wildcard that covers
//! it (`*.example.com` covers one label: `a.example.com`, not `example.com` nor
//! `a.b.example.com`), then of the rules without a host, each trying its paths in
//! [`PathMatch::precedence`] order; no rule matching, the oldest `defaultBackend`. The
//! same host and path in two Ingresses: the older Ingress' rule is tried first.

use crate::paths::{PathMatch, PathType};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use skiff_catalog::{Catalog, Protocol, ServiceKey, ServiceType};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a matched request goes: a Service port's endpoints, or why nowhere.
#[derive(Debug)]
pub struct Upstream {
    /// `namespace/service:port`, for logs and error pages.
    pub name: String,
    /// Ready endpoints (serving terminating ones when none is ready, as kube-proxy).
    pub addrs: Vec<SocketAddr>,
    /// Why there are no endpoints to try, when there are none.
    pub problem: Option<String>,
}

impl Upstream {
    fn new(name: String, addrs: Vec<SocketAddr>, problem: Option<String>) -> Upstream {
        Upstream {
            name,
            addrs,
            problem,
        }
    }

    /// The endpoints in the order to try them: round robin, each once. The turn is
    /// counted per thread (per proxy worker, as nginx counts per worker): a counter
    /// shared by the workers would bounce between their caches on every request.
    pub fn rotation(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        thread_local! {
            static NEXT: Cell<usize> = const { Cell::new(0) };
        }
        let n = self.addrs.len();
        let turn = NEXT.with(|c| {
            let t = c.get();
            c.set(t.wrapping_add(1));
            t
        });
        let start = if n == 0 { 0 } else { turn % n };
        (0..n).map(move |i| self.addrs[(start + i) % n])
    }
}

/// A matched rule.
#[derive(Debug)]
pub struct Route {
    pub path: PathMatch,
    pub upstream: Arc<Upstream>,
    /// `namespace/name` of the Ingress it came from.
    pub ingress: Arc<str>,
}

#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, Vec<Route>>,
    /// By the domain a `*.` wildcard covers.
    wildcard: HashMap<String, Vec<Route>>,
    any: Vec<Route>,
    default: Option<Route>,
}

/// `Host` as routed: lowercase, without port or trailing dot.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: `[::1]:80`.
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    let host = host.trim_end_matches('.');
    // Hosts come lowercase nearly always; only the others are copied.
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

impl Table {
    /// The rule for a request, or the default backend, or `None` (404).
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        let host = normalize_host(host);
        let wildcard = host
            .split_once('.')
            .and_then(|(_, domain)| self.wildcard.get(domain));
        [self.exact.get(host.as_ref()), wildcard, Some(&self.any)]
            .into_iter()
            .flatten()
            .find_map(|routes| routes.iter().find(|r| r.path.matches(path)))
            .or(self.default.as_ref())
    }

    /// Every upstream the table sends to (one `Arc` per Service port).
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        let rules = self.exact.values().chain(self.wildcard.values());
        rules
            .flatten()
            .chain(&self.any)
            .chain(&self.default)
            .map(|r| &r.upstream)
    }

    /// The table of `ingresses` (those skiff serves), oldest first.
    pub fn build(ingresses: &[&Ingress], catalog: &Catalog) -> Table {
        let mut b = Builder {
            catalog,
            upstreams: HashMap::new(),
            table: Table::default(),
        };
        let mut sorted = ingresses.to_vec();
        sorted.sort_by_key(|i| {
            let m = &i.metadata;
            (
                m.creation_timestamp.clone().map(|t| t.0),
                m.namespace.clone(),
                m.name.clone(),
            )
        });
        for i in sorted {
            b.add(i);
        }
        for routes in b
            .table
            .exact
            .values_mut()
            .chain(b.table.wildcard.values_mut())
        {
            routes.sort_by(|a, b| a.path.precedence(&b.path));
        }
        b.table.any.sort_by(|a, b| a.path.precedence(&b.path));
        b.table
    }
}

struct Builder<'a> {
    catalog: &'a Catalog,
    /// One upstream per (namespace, backend), shared by the rules naming it.
    upstreams: HashMap<(String, String), Arc<Upstream>>,
    table: Table,
}

impl Builder<'_> {
    fn add(&mut self, ingress: &Ingress) {
        let ns = ingress.metadata.namespace.clone().unwrap_or_default();
        let id: Arc<str> =
            format!("{ns}/{}", ingress.metadata.name.as_deref().unwrap_or("")).into();
        let Some(spec) = &ingress.spec else { return };
        if let (None, Some(backend)) = (&self.table.default, &spec.default_backend) {
            let upstream = self.upstream(&ns, backend);
            self.table.default = Some(Route {
                path: PathMatch::new("/", PathType::Prefix),
                upstream,
                ingress: id.clone(),
            });
        }
        for rule in spec.rules.iter().flatten() {
            let Some(http) = &rule.http else { continue };
            for p in &http.paths {
                let route = Route {
                    path: PathMatch::new(
                        p.path.as_deref().unwrap_or("/"),
                        PathType::parse(&p.path_type),
                    ),
                    upstream: self.upstream(&ns, &p.backend),
                    ingress: id.clone(),
                };
                self.routes_of(rule.host.as_deref()).push(route);
            }
        }
    }

    fn routes_of(&mut self, host: Option<&str>) -> &mut Vec<Route> {
        match host.map(str::to_ascii_lowercase) {
            None => &mut self.table.any,
            Some(h) if h.is_empty() => &mut self.table.any,
            Some(h) => match h.strip_prefix("*.") {
                Some(domain) => self.table.wildcard.entry(domain.to_string()).or_default(),
                None => self.table.exact.entry(h).or_default(),
            },
        }
    }

    fn upstream(&mut self, ns: &str, backend: &IngressBackend) -> Arc<Upstream> {
        let id = (ns.to_string(), format!("{backend:?}"));
        if let Some(u) = self.upstreams.get(&id) {
            return u.clone();
        }
        let u = Arc::new(resolve(self.catalog, ns, backend));
        self.upstreams.insert(id, u.clone());
        u
    }
}

/// A backend's endpoints, or why it has none.
fn resolve(catalog: &Catalog, ns: &str, backend: &IngressBackend) -> Upstream {
    let Some(svc) = &backend.service else {
        let what = backend.resource.as_ref().map_or("", |r| r.kind.as_str());
        return Upstream::new(
            format!("{ns}/{what}"),
            Vec::new(),
            Some("resource backends are not supported; use a Service".into()),
        );
    };
    let port = svc.port.as_ref();
    let port_text = port
        .and_then(|p| p.number.map(|n| n.to_string()).or_else(|| p.name.clone()))
        .unwrap_or_default();
    let name = format!("{ns}/{}:{port_text}", svc.name);
    let fail = |why: String| Upstream::new(name.clone(), Vec::new(), Some(why));
    let key = ServiceKey::new(ns, &svc.name);
    let Some(service) = catalog.service(&key) else {
        return fail(format!("service \"{ns}/{}\" not found", svc.name));
    };
    if service.type_ == ServiceType::ExternalName {
        return fail("ExternalName services are not supported".into());
    }
    let found = service.ports.iter().find(|sp| {
        sp.protocol == Protocol::Tcp
            && port.is_some_and(|p| match (p.number, &p.name) {
                (Some(n), _) => i32::from(sp.port) == n,
                (None, Some(name)) => &sp.name == name,
                _ => false,
            })
    });
    let Some(sp) = found else {
        return fail(format!(
            "service \"{ns}/{}\" has no TCP port {port_text}",
            svc.name
        ));
    };
    let endpoints = catalog.endpoints(&key, sp);
    let pick = |f: &dyn Fn(&skiff_catalog::ResolvedEndpoint) -> bool| -> Vec<SocketAddr> {
        endpoints
            .iter()
            .filter(|e| f(e))
            .map(|e| SocketAddr::new(e.ip, e.port))
            .collect()
    };
    let mut addrs = pick(&|e| e.ready);
    if addrs.is_empty() {
        addrs = pick(&|e| e.serving && e.terminating);
    }
    let problem = addrs
        .is_empty()
        .then(|| format!("no ready endpoints for service \"{ns}/{}\"", svc.name));
    Upstream::new(name, addrs, problem)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
