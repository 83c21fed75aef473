//! Which Ingresses the built-in controller serves, as Kubernetes decides an Ingress'
//! class: `spec.ingressClassName`, else the deprecated `kubernetes.io/ingress.class`
//! annotation, else (no class at all) the controller of the default IngressClass.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// `spec.controller` of skiff's IngressClass.
pub const CONTROLLER: &str = "skiff.io/ingress";
/// The IngressClass every cluster starts with.
pub const CLASS_NAME: &str = "skiff";
/// Marks the IngressClass that Ingresses without one get (DefaultIngressClass admission).
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// On a Node whose agent serves Ingresses: `"<http port>,<https port>"` (a port 0 when
/// that listener is off). The Ingress status lists the Ready nodes that carry it.
pub const NODE_ANNOTATION: &str = "ingress.skiff.io/ports";
/// The class as Ingresses named it before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether the class is marked as the cluster's default.
pub fn is_default(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The class an Ingress names, if any.
pub fn named(ingress: &Ingress) -> Option<&str> {
    let by_spec = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    by_spec.or_else(|| {
        ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
            .map(String::as_str)
    })
}

/// Whether skiff's controller serves `ingress`, given the cluster's IngressClasses: its
/// class is one whose controller is ours, or it names none and a default class is ours
/// (the newest default when there are several, as DefaultIngressClass admission picks).
pub fn ours(ingress: &Ingress, classes: &[IngressClass]) -> bool {
    let controller_is_ours = |c: &IngressClass| {
        c.spec
            .as_ref()
            .and_then(|s| s.controller.as_deref())
            .is_some_and(|ctl| ctl == CONTROLLER)
    };
    match named(ingress) {
        Some(name) => classes
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name) && controller_is_ours(c)),
        None => default_class(classes).is_some_and(controller_is_ours),
    }
}

/// The default IngressClass: of those marked default, the newest (then by name).
pub fn default_class(classes: &[IngressClass]) -> Option<&IngressClass> {
    classes.iter().filter(|c| is_default(c)).max_by(|a, b| {
        let created = |c: &IngressClass| c.metadata.creation_timestamp.clone().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, controller: &str, default: bool, created: &str) -> IngressClass {
        let ann = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": ann, "creationTimestamp": created},
            "spec": {"controller": controller},
        }))
        .unwrap()
    }

    fn ingress(class_name: Option<&str>, annotation: Option<&str>) -> Ingress {
        let mut ann = serde_json::Map::new();
        if let Some(a) = annotation {
            ann.insert(LEGACY_CLASS_ANNOTATION.into(), a.into());
        }
        serde_json::from_value(json!({
            "metadata": {"name": "i", "annotations": ann},
            "spec": {"ingressClassName": class_name},
        }))
        .unwrap()
    }

    #[test]
    fn an_ingress_is_ours_by_its_class_or_the_default() {
        let ours_default = class("skiff", CONTROLLER, true, "2026-01-01T00:00:00Z");
        let other = class(
            "nginx",
            "k8s.io/ingress-nginx",
            false,
            "2026-01-01T00:00:00Z",
        );
        let classes = vec![ours_default.clone(), other.clone()];
        assert!(ours(&ingress(Some("skiff"), None), &classes));
        assert!(!ours(&ingress(Some("nginx"), None), &classes));
        assert!(!ours(&ingress(Some("missing"), None), &classes));
        assert!(ours(&ingress(None, Some("skiff")), &classes));
        assert!(!ours(&ingress(None, Some("nginx")), &classes));
        // The spec's class wins over the annotation.
        assert!(ours(&ingress(Some("skiff"), Some("nginx")), &classes));
        assert!(ours(&ingress(None, None), &classes));
        // Not the default any more: a classless Ingress is nobody's.
        let plain = class("skiff", CONTROLLER, false, "2026-01-01T00:00:00Z");
        assert!(!ours(&ingress(None, None), &[plain, other.clone()]));
        // A newer default of another controller takes classless Ingresses.
        let newer = class(
            "nginx",
            "k8s.io/ingress-nginx",
            true,
            "2026-02-01T00:00:00Z",
        );
        assert!(!ours(&ingress(None, None), &[ours_default, newer]));
    }
}
