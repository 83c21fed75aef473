//! The controller on a node: list-watches of Ingresses and IngressClasses, one of each
//! Secret an Ingress of ours names in its `tls` (a node may read those one by one, not
//! all Secrets), and the node's Service catalog, rebuilt into the proxy's table and
//! certificates after each burst of changes that touch them (a Service change only when
//! an Ingress of ours routes to it). The listeners start at once; until everything has
//! been listed they answer 404 as for an empty table.

use crate::class;
use crate::proxy::Proxy;
use crate::server::{self, Ports};
use crate::table::Table;
use crate::tls::{self, CertResolver, Certs, KeyPair, Secrets};
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::serde::Deserialize;
use kube::api::{Api, Patch, PatchParams};
use rustls::sign::CertifiedKey;
use serde_json::json;
use skiff_catalog::{ServiceKey, Update};
use skiff_kube::reflect::{self, Change};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the controller holds of the API.
#[derive(Default)]
struct State {
    ingresses: BTreeMap<String, Ingress>,
    classes: BTreeMap<String, IngressClass>,
    secrets: Secrets,
    /// Ingresses, classes listed.
    listed: [bool; 2],
    /// Services our Ingresses route to.
    referenced: HashSet<ServiceKey>,
    problems: Vec<String>,
}

/// Runs the controller and its listeners until `shutdown`.
pub fn spawn(
    client: kube::Client,
    catalog: Arc<skiff_catalog::Shared>,
    ports: Ports,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let proxy = Proxy::new();
    let default = tls::default_certificate();
    let certs = CertResolver::new(Certs::only(default.clone()));
    let listeners = tokio::spawn(server::serve(
        proxy.clone(),
        certs.clone(),
        ports,
        shutdown.clone(),
    ));
    let watches = Watches::start(&client, &catalog);
    let secrets = SecretWatches::new(client);
    tokio::spawn(async move {
        let sink = Sink {
            proxy,
            certs,
            default,
            catalog,
        };
        follow(watches, secrets, sink, shutdown).await;
        let _ = listeners.await;
    })
}

struct Watches {
    ingresses: mpsc::Receiver<Change>,
    classes: mpsc::Receiver<Change>,
    catalog: mpsc::UnboundedReceiver<Update>,
}

impl Watches {
    fn start(client: &kube::Client, catalog: &skiff_catalog::Shared) -> Watches {
        let w = |path: &str, selector: Option<&str>| {
            reflect::watch_values(client.clone(), path, selector)
        };
        Watches {
            ingresses: w("/apis/networking.k8s.io/v1/ingresses", None),
            classes: w("/apis/networking.k8s.io/v1/ingressclasses", None),
            catalog: catalog.subscribe(),
        }
    }
}

/// Where a rebuilt table and certificate set go.
struct Sink {
    proxy: Arc<Proxy>,
    certs: Arc<CertResolver>,
    default: Arc<CertifiedKey>,
    catalog: Arc<skiff_catalog::Shared>,
}

/// One list-watch per Secret named by our Ingresses, their changes on one channel.
struct SecretWatches {
    client: kube::Client,
    tx: mpsc::UnboundedSender<(String, Change)>,
    rx: mpsc::UnboundedReceiver<(String, Change)>,
    running: BTreeMap<String, AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SecretWatches {
    fn new(client: kube::Client) -> SecretWatches {
        let (tx, rx) = mpsc::unbounded_channel();
        SecretWatches {
            client,
            tx,
            rx,
            running: BTreeMap::new(),
        }
    }

    /// Watches exactly `wanted` (`namespace/name` keys) from now on.
    fn want(&mut self, wanted: &BTreeSet<String>) {
        self.running.retain(|k, _| wanted.contains(k));
        for key in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            let path = format!("/api/v1/namespaces/{ns}/secrets");
            let selector = format!("metadata.name={name}");
            let mut changes = reflect::watch_values(self.client.clone(), &path, Some(&selector));
            let (tx, key2) = (self.tx.clone(), key.clone());
            let task = tokio::spawn(async move {
                while let Some(c) = changes.recv().await {
                    if tx.send((key2.clone(), c)).is_err() {
                        return;
                    }
                }
            });
            self.running.insert(key.clone(), AbortOnDrop(task));
        }
    }
}

async fn follow(
    mut w: Watches,
    mut secrets: SecretWatches,
    sink: Sink,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = State::default();
    let mut dirty = false;
    loop {
        // Biased: a burst of changes is taken whole before the one rebuild it needs.
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            Some(c) = w.ingresses.recv() => dirty |= state.ingresses_change(c),
            Some(c) = w.classes.recv() => dirty |= state.classes_change(c),
            Some((key, c)) = secrets.rx.recv() => dirty |= state.secret_change(&key, c),
            Some(u) = w.catalog.recv() => dirty |= state.touches(&u),
            _ = std::future::ready(()), if dirty && state.synced(&sink.catalog) => {
                let wanted = state.rebuild(&sink);
                secrets.want(&wanted);
                state.secrets.retain(|k, _| wanted.contains(k));
                dirty = false;
            }
            else => return,
        }
    }
}

impl State {
    fn synced(&self, catalog: &skiff_catalog::Shared) -> bool {
        self.listed.iter().all(|l| *l) && catalog.read().synced()
    }

    fn ingresses_change(&mut self, c: Change) -> bool {
        self.listed[0] |= matches!(c, Change::Reset(_));
        reflect::absorb(c, &mut self.ingresses, |_, i: Ingress| i);
        true
    }

    fn classes_change(&mut self, c: Change) -> bool {
        self.listed[1] |= matches!(c, Change::Reset(_));
        reflect::absorb(c, &mut self.classes, |_, i: IngressClass| i);
        true
    }

    /// A change from the watch of the one Secret `key`.
    fn secret_change(&mut self, key: &str, c: Change) -> bool {
        let items = match c {
            Change::Reset(items) => items,
            Change::Apply(o) => vec![o],
            Change::Delete(_) => Vec::new(),
        };
        self.secrets.remove(key);
        for o in items {
            if let Ok(s) = Secret::deserialize(&*o) {
                self.secrets.insert(key.to_string(), key_pair(&s));
            }
        }
        true
    }

    fn touches(&self, u: &Update) -> bool {
        match u {
            Update::Reset => true,
            Update::Changed(keys) => keys.iter().any(|k| self.referenced.contains(k)),
        }
    }

    fn ours(&self) -> Vec<&Ingress> {
        let classes: Vec<IngressClass> = self.classes.values().cloned().collect();
        self.ingresses
            .values()
            .filter(|i| class::ours(i, &classes))
            .collect()
    }

    /// Rebuilds the table and certificates; the Secrets they name.
    fn rebuild(&mut self, sink: &Sink) -> BTreeSet<String> {
        let ours = self.ours();
        let table = Table::build(&ours, &sink.catalog.read());
        let (certs, problems) = Certs::build(&ours, &self.secrets, sink.default.clone());
        let referenced = referenced(&ours);
        sink.proxy.set_table(table);
        sink.certs.set(certs);
        if problems != self.problems {
            for p in &problems {
                tracing::warn!(problem = %p, "ingress TLS");
            }
        }
        let secrets = tls_secrets(&ours);
        self.problems = problems;
        self.referenced = referenced;
        secrets
    }
}

/// The Services the Ingresses send to.
fn referenced(ingresses: &[&Ingress]) -> HashSet<ServiceKey> {
    let mut out = HashSet::new();
    for i in ingresses {
        let ns = i.metadata.namespace.as_deref().unwrap_or("");
        let Some(spec) = &i.spec else { continue };
        let paths = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| &h.paths)
            .map(|p| &p.backend);
        for b in paths.chain(&spec.default_backend) {
            if let Some(s) = &b.service {
                out.insert(ServiceKey::new(ns, &s.name));
            }
        }
    }
    out
}

/// `namespace/name` of every Secret the Ingresses' `tls` sections name.
fn tls_secrets(ingresses: &[&Ingress]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in ingresses {
        let ns = i.metadata.namespace.as_deref().unwrap_or("");
        let tls = i.spec.as_ref().and_then(|s| s.tls.as_ref());
        for t in tls.into_iter().flatten() {
            if let Some(name) = &t.secret_name {
                out.insert(format!("{ns}/{name}"));
            }
        }
    }
    out
}

fn key_pair(s: &Secret) -> KeyPair {
    let field = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .unwrap_or_default()
    };
    KeyPair {
        cert_pem: field("tls.crt"),
        key_pem: field("tls.key"),
    }
}

/// Marks the node as serving Ingresses on `ports` (or, both off, as not serving), which
/// the Ingress status controller reads; retried until the Node exists.
pub fn announce(
    client: kube::Client,
    node: String,
    ports: Ports,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let value =
        (ports != Ports { http: 0, https: 0 }).then(|| format!("{},{}", ports.http, ports.https));
    let patch = json!({"metadata": {"annotations": {class::NODE_ANNOTATION: value}}});
    tokio::spawn(async move {
        let api: Api<Node> = Api::all(client);
        loop {
            match api
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "announcing the node's ingress ports"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
