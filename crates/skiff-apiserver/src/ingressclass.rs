//! kube-apiserver's DefaultIngressClass admission: an Ingress created without a class
//! (no `spec.ingressClassName`, no legacy `kubernetes.io/ingress.class` annotation)
//! gets the default IngressClass's name, the newest of those annotated
//! `ingressclass.kubernetes.io/is-default-class: "true"`, read from the watch cache.
//! Creates only: an update never gains a class this way.

use crate::state::ApiServer;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};
use skiff_ingress::class::{DEFAULT_CLASS_ANNOTATION, default_class, named};

/// Sets `spec.ingressClassName` of the Ingress being created to the default class, when
/// it names no class and there is a default.
pub fn admit_default(api: &ApiServer, ingress: &mut Value) {
    let Ok(typed) = serde_json::from_value::<Ingress>(ingress.clone()) else {
        // Undecodable: validation words the error.
        return;
    };
    if named(&typed).is_some() {
        return;
    }
    let classes = default_candidates(api);
    if let Some(name) = default_class(&classes).and_then(|c| c.metadata.name.clone()) {
        ingress["spec"]["ingressClassName"] = json!(name);
    }
}

/// The IngressClasses that may be the default: those whose stored form mentions the
/// annotation (the rest are not parsed; this runs for every Ingress created).
fn default_candidates(api: &ApiServer) -> Vec<IngressClass> {
    let ri = crate::registry::builtin("networking.k8s.io", "ingressclasses");
    let (all, _, _) = api.cache.list(&ri.prefix(None), None, None, &|_| true);
    all.iter()
        .filter(|s| crate::request::contains(&s.value, DEFAULT_CLASS_ANNOTATION.as_bytes()))
        .filter_map(|s| serde_json::from_slice::<IngressClass>(&s.value).ok())
        .collect()
}
