//! The catalog kept from one list-watch of Services and one of EndpointSlices, shared by
//! the node's service proxy and DNS; each subscriber is told which Services changed.

use crate::model::{Service, ServiceKey, Slice};
use crate::{Catalog, Update};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::serde::Deserialize;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde_json::Value;
use skiff_kube::reflect::{self, Change};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The catalog and its subscribers.
#[derive(Default)]
pub struct Shared {
    catalog: RwLock<Catalog>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Update>>>,
}

impl Shared {
    /// Reads take a shared lock: hold it briefly (the feed waits for it to write).
    pub fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read()
    }

    /// Changes from now on; a `Reset` first if the catalog is already synced.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Update> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self.subscribers.lock();
        if self.catalog.read().synced() {
            let _ = tx.send(Update::Reset);
        }
        subs.push(tx);
        rx
    }

    /// Applies `f` to the catalog and tells subscribers what it says changed (nothing
    /// before the catalog is synced; a `Reset` when it becomes so).
    pub fn update(&self, f: impl FnOnce(&mut Catalog) -> Option<Update>) {
        let mut subs = self.subscribers.lock();
        let (update, synced) = {
            let mut c = self.catalog.write();
            let was = c.synced();
            let u = f(&mut c);
            let synced = c.synced();
            let u = match (was, synced) {
                (false, true) => Some(Update::Reset),
                (_, true) => u,
                _ => None,
            };
            (u, synced)
        };
        if let (Some(u), true) = (update, synced) {
            subs.retain(|s| s.send(u.clone()).is_ok());
        }
    }

    pub fn apply_services(&self, change: Change) {
        self.update(|c| match change {
            Change::Reset(items) => {
                Some(c.reset_services(items.into_iter().filter_map(service).collect()))
            }
            Change::Apply(v) => service(v)
                .and_then(|s| c.apply_service(s))
                .map(|k| Update::Changed(vec![k])),
            Change::Delete(v) => key_of(&v)
                .and_then(|(ns, name)| c.delete_service(&ServiceKey::new(&ns, &name)))
                .map(|k| Update::Changed(vec![k])),
        })
    }

    pub fn apply_slices(&self, change: Change) {
        self.update(|c| match change {
            Change::Reset(items) => {
                Some(c.reset_slices(items.into_iter().filter_map(slice).collect()))
            }
            Change::Apply(v) => {
                let touched = match (key_of(&v), slice(v)) {
                    (_, Some(s)) => c.apply_slice(s),
                    // No longer filed under a Service: as if deleted.
                    (Some((ns, name)), None) => c.delete_slice(&ns, &name).into_iter().collect(),
                    (None, None) => Vec::new(),
                };
                (!touched.is_empty()).then_some(Update::Changed(touched))
            }
            Change::Delete(v) => key_of(&v)
                .and_then(|(ns, name)| c.delete_slice(&ns, &name))
                .map(|k| Update::Changed(vec![k])),
        })
    }
}

fn key_of(v: &Value) -> Option<(String, String)> {
    match reflect::names(v) {
        (Some(ns), name) if !name.is_empty() => Some((ns.into(), name.into())),
        _ => None,
    }
}

fn service(v: Arc<Value>) -> Option<Service> {
    match core::Service::deserialize(&*v) {
        Ok(s) => Service::from_api(s),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable Service skipped");
            None
        }
    }
}

fn slice(v: Arc<Value>) -> Option<Slice> {
    match discovery::EndpointSlice::deserialize(&*v) {
        Ok(s) => Slice::from_api(s),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable EndpointSlice skipped");
            None
        }
    }
}

/// Starts the two list-watches; the catalog follows them until `shutdown`.
pub fn spawn(client: kube::Client, mut shutdown: watch::Receiver<bool>) -> Arc<Shared> {
    let shared = Arc::new(Shared::default());
    let mut services = reflect::watch_values(client.clone(), "/api/v1/services", None);
    let mut slices =
        reflect::watch_values(client, "/apis/discovery.k8s.io/v1/endpointslices", None);
    let s = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                c = services.recv() => match c {
                    Some(c) => s.apply_services(c),
                    None => return,
                },
                c = slices.recv() => match c {
                    Some(c) => s.apply_slices(c),
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    });
    shared
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscribers_hear_nothing_until_synced_then_each_change() {
        let shared = Shared::default();
        let mut rx = shared.subscribe();
        let svc = json!({"metadata": {"name": "web", "namespace": "d"},
                         "spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}});
        shared.apply_services(Change::reset(vec![svc.clone()]));
        assert!(rx.try_recv().is_err(), "slices not listed yet");
        shared.apply_slices(Change::reset(vec![]));
        assert_eq!(rx.try_recv().unwrap(), Update::Reset);
        shared.apply_services(Change::apply(svc.clone()));
        assert!(rx.try_recv().is_err(), "an unchanged Service is no change");
        let slice = json!({"metadata": {"name": "web-x", "namespace": "d",
                                        "labels": {"kubernetes.io/service-name": "web"}},
                           "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.9"]}],
                           "ports": [{"port": 8080}]});
        shared.apply_slices(Change::apply(slice.clone()));
        let web = ServiceKey::new("d", "web");
        assert_eq!(rx.try_recv().unwrap(), Update::Changed(vec![web.clone()]));
        // Its label removed: the slice leaves the Service.
        let mut unlabelled = slice.clone();
        unlabelled["metadata"]["labels"] = json!({});
        shared.apply_slices(Change::apply(unlabelled));
        assert_eq!(rx.try_recv().unwrap(), Update::Changed(vec![web.clone()]));
        assert_eq!(shared.read().slices_of(&web).count(), 0);
        shared.apply_services(Change::delete(svc));
        assert_eq!(rx.try_recv().unwrap(), Update::Changed(vec![web]));
        // A late subscriber starts with a Reset.
        assert_eq!(shared.subscribe().try_recv().unwrap(), Update::Reset);
    }
}
