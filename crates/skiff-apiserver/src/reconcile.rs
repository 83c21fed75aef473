//! Objects the server owns, put right at every start: created when missing, their
//! server-owned fields restored when changed (the rest is the user's).

use crate::request::Target;
use crate::request::system_write_options;
use crate::state::ApiServer;
use serde_json::Value;
use skiff_types::ApiError;

/// Creates `obj`, or brings the existing one's `fields` (top-level) to `obj`'s: what
/// the server owns is put right at every start, the rest is the user's.
pub(crate) async fn reconcile_one(
    api: &ApiServer,
    group: &str,
    plural: &str,
    ns: &str,
    obj: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let ri = crate::registry::builtin(group, plural);
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let created = ensure_one(api, group, plural, Some(ns), obj.clone()).await;
    created?;
    let t = Target {
        ri,
        namespace: Some(ns.to_string()),
        name: Some(name),
        sub: None,
    };
    api.write_existing(&t, None, &system_write_options(), |current| {
        let mut next = current.clone();
        for f in fields {
            next[*f] = obj[*f].clone();
        }
        Ok(next)
    })
    .await
    .map(drop)
}

pub(crate) async fn ensure_one(
    api: &ApiServer,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    let ri = crate::registry::builtin(group, plural);
    let t = Target {
        ri,
        namespace: ns.map(str::to_string),
        name: None,
        sub: None,
    };
    match api.create(&t, obj, &system_write_options()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
