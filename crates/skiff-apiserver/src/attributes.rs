//! What a request is, before it is served: the attributes authorizers and the audit
//! policy see, and for the resource API its target and Kubernetes verb, resolved
//! against the kinds served now.

use crate::auth::{Attributes, UserInfo};
use crate::registry::Snapshot;
use crate::request::{Target, parse_query};
use axum::body::Body;
use http::{Method, Request};
use skiff_types::Subresource;

/// What authorizers and the audit policy see of a request, and where it routes (None:
/// outside the resource API).
pub(crate) fn request_attributes(
    served: &Snapshot,
    user: UserInfo,
    req: &Request<Body>,
) -> (Attributes, Option<PathInfo>) {
    let path = req.uri().path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method();
    if let Some(t) = crate::metricsgroup::target(&segs) {
        // Served here, not by the registry's kinds, but authorized as resources.
        let attrs = Attributes {
            user,
            verb: t.verb().to_string(),
            group: crate::metricsgroup::GROUP.to_string(),
            resource: t.resource.to_string(),
            subresource: String::new(),
            namespace: t.namespace.unwrap_or_default(),
            name: t.name.unwrap_or_default(),
            path: None,
            field_selector: fields_of(req),
        };
        return (attrs, None);
    }
    if let Some(r) = crate::request_info::parse(&segs, method)
        && served.remote(r.group, r.version).is_some()
    {
        // An extension API server's: authorized here as a resource, served there.
        let attrs = Attributes {
            user,
            verb: r.verb.to_string(),
            group: r.group.to_string(),
            resource: r.resource.to_string(),
            subresource: r.subresource.unwrap_or("").to_string(),
            namespace: r.namespace.unwrap_or("").to_string(),
            name: r.name.unwrap_or("").to_string(),
            path: None,
            field_selector: fields_of(req),
        };
        return (attrs, None);
    }
    let Some(info) = parse_resource_path(served, &segs, method) else {
        let verb = method.as_str().to_lowercase();
        return (
            Attributes::non_resource(user, &verb, &path_or_root(path)),
            None,
        );
    };
    let t = &info.target;
    let attrs = Attributes {
        user,
        verb: verb_of(&info, req).to_string(),
        group: t.ri.group.to_string(),
        resource: t.ri.plural.to_string(),
        subresource: t.sub.map(|s| s.name().to_string()).unwrap_or_default(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
        path: None,
        field_selector: fields_of(req),
    };
    (attrs, Some(info))
}

/// The `fieldSelector` of a request, if any.
fn fields_of(req: &Request<Body>) -> Option<String> {
    parse_query(req.uri().query())
        .map
        .get("fieldSelector")
        .filter(|s| !s.is_empty())
        .cloned()
}

/// `list` with `?watch=true` is a watch.
pub(crate) fn verb_of(info: &PathInfo, req: &Request<Body>) -> &'static str {
    let watching = parse_query(req.uri().query())
        .map
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    if info.verb == "list" && watching {
        "watch"
    } else {
        info.verb
    }
}

/// The path as authorizers see it: `/` for the root, no trailing slash otherwise.
fn path_or_root(trimmed: &str) -> String {
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

pub(crate) struct PathInfo {
    pub(crate) target: Target,
    pub(crate) verb: &'static str,
    /// For `nodes/<name>/proxy/<path>`: `/<path>`.
    pub(crate) proxy_path: String,
}

/// Maps `/api/v1/...` and `/apis/<g>/<v>/...` onto a target and a Kubernetes verb.
fn parse_resource_path(served: &Snapshot, segs: &[&str], method: &Method) -> Option<PathInfo> {
    let crate::request_info::RequestInfo {
        group,
        version,
        namespace,
        resource,
        name,
        subresource: sub,
        verb,
        proxy_path,
    } = crate::request_info::parse(segs, method)?;
    let ri = served.get(group, version, resource)?;
    if namespace.is_some() && !ri.namespaced() {
        return None;
    }
    let sub = match sub {
        None => None,
        Some("finalize") if ri.plural == "namespaces" => Some(Subresource::Status),
        Some(s) => {
            let s = Subresource::from_name(s)?;
            if !ri.has_subresource(s) {
                return None;
            }
            Some(s)
        }
    };
    Some(PathInfo {
        target: Target {
            ri,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            sub,
        },
        verb,
        proxy_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plural, namespace, name, subresource, verb)
    type Parsed = (
        String,
        Option<String>,
        Option<String>,
        Option<&'static str>,
        &'static str,
    );

    fn p(path: &str, m: Method) -> Option<Parsed> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let served = crate::registry::Registry::default().snapshot();
        parse_resource_path(&served, &segs, &m).map(|i| {
            (
                i.target.ri.plural.to_string(),
                i.target.namespace,
                i.target.name,
                i.target.sub.map(Subresource::name),
                i.verb,
            )
        })
    }

    #[test]
    fn url_space() {
        assert_eq!(
            p("/api/v1/namespaces/default/pods", Method::GET),
            Some(("pods".into(), Some("default".into()), None, None, "list"))
        );
        assert_eq!(
            p("/api/v1/namespaces/default/pods/x/status", Method::PUT),
            Some((
                "pods".into(),
                Some("default".into()),
                Some("x".into()),
                Some("status"),
                "update"
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/kube-system", Method::GET),
            Some((
                "namespaces".into(),
                None,
                Some("kube-system".into()),
                None,
                "get"
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/foo/status", Method::PUT),
            Some((
                "namespaces".into(),
                None,
                Some("foo".into()),
                Some("status"),
                "update"
            ))
        );
        assert_eq!(
            p("/api/v1/namespaces/foo/finalize", Method::PUT),
            Some((
                "namespaces".into(),
                None,
                Some("foo".into()),
                Some("status"),
                "update"
            ))
        );
        assert_eq!(
            p("/api/v1/pods", Method::GET),
            Some(("pods".into(), None, None, None, "list"))
        );
        assert_eq!(
            p(
                "/apis/apps/v1/namespaces/d/deployments/web/scale",
                Method::PATCH
            )
            .unwrap()
            .3,
            Some("scale")
        );
        assert_eq!(
            p("/api/v1/watch/namespaces/d/pods", Method::GET).unwrap().4,
            "watch"
        );
        assert_eq!(
            p("/api/v1/namespaces/d/pods", Method::DELETE).unwrap().4,
            "deletecollection"
        );
        assert!(p("/apis/apps/v2/deployments", Method::GET).is_none());
        assert!(p("/api/v1/namespaces/d/nodes", Method::GET).is_none());
        assert!(p("/api/v1/namespaces/d/pods/x/bogus", Method::GET).is_none());
        assert!(p("/api/v1/namespaces/d/configmaps/x/scale", Method::GET).is_none());
    }
}
