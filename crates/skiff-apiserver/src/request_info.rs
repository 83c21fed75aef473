//! What a resource URL names, read without the table of served kinds (kube's
//! RequestInfoFactory): `/api/v1/...` and `/apis/<group>/<version>/...` split into
//! namespace, resource, name, subresource and the Kubernetes verb. Routing then looks
//! the resource up; requests for an extension API server are authorized from this alone.

use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub namespace: Option<&'a str>,
    pub resource: &'a str,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub verb: &'static str,
    /// For `nodes/<name>/proxy/<path>`: `/<path>`.
    pub proxy_path: String,
}

pub fn parse<'a>(segs: &[&'a str], method: &Method) -> Option<RequestInfo<'a>> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (watch_prefix, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let (namespace, resource, name, subresource) = match rest {
        // /api/v1/namespaces/<name>/status|finalize
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*ns), Some(*sub))
        }
        ["namespaces", ns, res, tail @ ..] => match tail {
            [] => (Some(*ns), *res, None, None),
            [n] => (Some(*ns), *res, Some(*n), None),
            [n, s] => (Some(*ns), *res, Some(*n), Some(*s)),
            _ => return None,
        },
        [res] => (None, *res, None, None),
        [res, n] => (None, *res, Some(*n), None),
        [res, n, "proxy", ..] => (None, *res, Some(*n), Some("proxy")),
        [res, n, s] => (None, *res, Some(*n), Some(*s)),
        _ => return None,
    };
    let proxy_path = match rest {
        [_, _, "proxy", tail @ ..] => format!("/{}", tail.join("/")),
        _ => String::new(),
    };
    let verb = match (method.as_str(), name.is_some(), watch_prefix) {
        (_, _, true) if *method == Method::GET => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        _ => return None,
    };
    Some(RequestInfo {
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
        verb,
        proxy_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_without_knowing_kinds() {
        let segs = [
            "apis",
            "metrics.example.com",
            "v1",
            "namespaces",
            "a",
            "widgets",
            "w",
            "status",
        ];
        let r = parse(&segs, &Method::PUT).unwrap();
        assert_eq!(
            (
                r.group,
                r.namespace,
                r.resource,
                r.name,
                r.subresource,
                r.verb
            ),
            (
                "metrics.example.com",
                Some("a"),
                "widgets",
                Some("w"),
                Some("status"),
                "update"
            )
        );
        let ns = parse(&["api", "v1", "namespaces", "x", "finalize"], &Method::PUT).unwrap();
        assert_eq!(
            (ns.resource, ns.name, ns.subresource),
            ("namespaces", Some("x"), Some("finalize"))
        );
        let w = parse(&["apis", "g", "v1", "watch", "things"], &Method::GET).unwrap();
        assert_eq!(w.verb, "watch");
        assert!(parse(&["apis", "g"], &Method::GET).is_none());
    }
}
