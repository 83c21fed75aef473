//! The etcd cluster's members as servers see them: listed with who leads, and one
//! removed when its server leaves for good, so the quorum counts only servers that
//! will come back (three members with one gone for good lose quorum at the next
//! failure). etcd itself refuses a removal that would leave fewer started members than
//! a quorum.

use crate::{Error, Member, RECONFIG_TRIES, Result, connect, refused_for_now};

/// One member, as `etcd-member ls` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub id: u64,
    /// Empty until the member first starts.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub leader: bool,
    pub learner: bool,
}

/// Every member, asked of `me`'s own member.
pub async fn list(me: &Member) -> Result<Vec<Info>> {
    let mut client = connect(me).await?;
    let leader = client
        .status()
        .await
        .map(|s| s.leader())
        .map_err(|e| Error::Etcd(e.to_string()))?;
    let resp = client
        .member_list()
        .await
        .map_err(|e| Error::Etcd(e.to_string()))?;
    Ok(resp
        .members()
        .iter()
        .map(|m| Info {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            leader: m.id() == leader,
            learner: m.is_learner(),
        })
        .collect())
}

/// The member `which` names: its name, its hex id, or one of its peer URLs.
pub fn find<'a>(members: &'a [Info], which: &str) -> Option<&'a Info> {
    members.iter().find(|m| {
        m.name == which || format!("{:x}", m.id) == which || m.peer_urls.iter().any(|u| u == which)
    })
}

/// Removes the member `which` names; which one that was.
pub async fn remove(me: &Member, which: &str) -> Result<Info> {
    let members = list(me).await?;
    let Some(target) = find(&members, which).cloned() else {
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        return Err(Error::Etcd(format!(
            "no member named {which:?} (members: {})",
            names.join(", ")
        )));
    };
    let mut client = connect(me).await?;
    let mut tries = 0;
    loop {
        match client.member_remove(target.id).await {
            Ok(_) => return Ok(target),
            Err(e) if tries < RECONFIG_TRIES && refused_for_now(&e) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(Error::Etcd(format!("removing {}: {e}", target.name))),
        }
    }
}

/// Whether an etcd log (what one run printed) says its member was removed from the
/// cluster: it will never start again on this data dir.
pub fn says_removed(log: &str) -> bool {
    log.contains("permanently removed from the cluster") || log.contains("has already been removed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64, name: &str, peer: &str) -> Info {
        Info {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: Vec::new(),
            leader: false,
            learner: false,
        }
    }

    #[test]
    fn a_member_is_found_by_name_hex_id_or_peer_url() {
        let ms = [
            info(0xabc, "s1-2380", "https://127.0.0.1:2380"),
            info(0xdef, "", "https://127.0.0.1:2480"),
        ];
        assert_eq!(find(&ms, "s1-2380").unwrap().id, 0xabc);
        assert_eq!(find(&ms, "def").unwrap().id, 0xdef);
        assert_eq!(find(&ms, "https://127.0.0.1:2480").unwrap().id, 0xdef);
        assert!(find(&ms, "s2").is_none());
    }

    #[test]
    fn removal_is_read_from_the_members_log() {
        let removed =
            r#"{"level":"warn","msg":"the member has been permanently removed from the cluster"}"#;
        assert!(says_removed(removed));
        assert!(!says_removed(r#"{"msg":"ready to serve client requests"}"#));
    }
}
