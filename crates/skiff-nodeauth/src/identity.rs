//! Which node a user is, as kube's default `NodeIdentifier` tells it.

/// Prefix of a kubelet's user name: `system:node:<nodeName>`.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group every kubelet's credentials carry.
pub const NODES_GROUP: &str = "system:nodes";

/// The node a user is: `Some(name)` for `system:node:<name>` in group `system:nodes`
/// (`Some("")` for the bare prefix: a node, but an unknown one), `None` for anyone else.
pub fn node_name<'a>(user: &'a str, groups: &[String]) -> Option<&'a str> {
    let name = user.strip_prefix(NODE_USER_PREFIX)?;
    groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}
