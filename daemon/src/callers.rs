//! Who is calling: the sender's Unix user and process, asked of the bus daemon once per
//! connection and remembered.
//!
//! Identifying a caller costs a round trip to the bus daemon (`GetConnectionCredentials`),
//! as much as the whole `Authorise` call it accompanies. The answer cannot change for a
//! connection: the bus daemon takes uid and pid from the socket when the client connects, and
//! a unique bus name (`:1.42`) is never given to another connection while the bus runs. So it
//! is cached per unique name. The executable is read from `/proc/PID/exe` on every call (a
//! `readlink`, no round trip), so a process that `exec`s another program is recorded as what
//! it is now.
//!
//! Group membership (the restricted methods) comes from the same answer: the bus daemon
//! reports the connection's group ids (`UnixGroupIDs`, taken from the socket when it
//! connected), and the group's id is looked up through NSS (`getgrnam_r`), so a group that
//! lives in SSSD, LDAP or AD works like one in `/etc/group`. A bus daemon too old to report
//! group ids falls back to the user's groups from NSS (`getgrouplist`). `/etc/group` is never
//! parsed by hand.
//!
//! Departed names are not tracked (watching `NameOwnerChanged` on the system bus would wake
//! the daemon for every client of every service); the cache is bounded instead and starts
//! afresh when full. A stale entry is harmless: its name can never send again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use cardgate_audit::CallerIdentity;
use cardgate_ipc::AgentError;
use zbus::Connection;
use zbus::message::Header;

/// The most connections remembered before the cache starts afresh.
const CAPACITY: usize = 1024;

/// Uid, pid and groups of a connection, as the bus daemon reported them.
#[derive(Debug, Clone)]
struct Credentials {
    uid: u32,
    pid: u32,
    /// The connection's group ids; `None` when the bus daemon does not report them.
    group_ids: Option<Vec<u32>>,
}

/// Who is calling, and whether they are root or a member of the group asked about.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// For the audit trail.
    pub(crate) identity: CallerIdentity,
    /// Root, or the group is among the caller's groups.
    pub(crate) member: bool,
}

/// The per-connection cache of caller credentials.
#[derive(Debug, Default)]
pub(crate) struct CallerCache {
    known: Mutex<HashMap<String, Credentials>>,
}

impl CallerCache {
    /// Who sent the message `header` belongs to: from the cache, else from the bus daemon.
    /// Never from an argument and never the daemon's own process.
    pub(crate) async fn identify(
        &self,
        connection: &Connection,
        header: &Header<'_>,
    ) -> Result<CallerIdentity, AgentError> {
        Ok(self.credentials(connection, header).await?.0)
    }

    /// As [`CallerCache::identify`], with whether the caller is root or in `group` (looked up
    /// through NSS; a group that does not exist has no members).
    pub(crate) async fn identify_in_group(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        group: &str,
    ) -> Result<Caller, AgentError> {
        let (identity, credentials) = self.credentials(connection, header).await?;
        let group = group.to_owned();
        // NSS may ask a directory service: off the runtime's workers.
        let member = tokio::task::spawn_blocking(move || is_member(&credentials, &group))
            .await
            .map_err(|e| AgentError::Internal(format!("group lookup: {e}")))?;
        Ok(Caller { identity, member })
    }

    async fn credentials(
        &self,
        connection: &Connection,
        header: &Header<'_>,
    ) -> Result<(CallerIdentity, Credentials), AgentError> {
        let sender = header
            .sender()
            .ok_or_else(|| not_identified("the message has no sender"))?;
        let cached = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sender.as_str())
            .cloned();
        let credentials = match cached {
            Some(credentials) => credentials,
            None => {
                let credentials = ask_bus(connection, sender).await?;
                self.remember(sender.as_str(), credentials.clone());
                credentials
            }
        };
        let executable = std::fs::read_link(format!("/proc/{}/exe", credentials.pid))
            .ok()
            .map(|p| p.display().to_string());
        let identity = CallerIdentity {
            uid: credentials.uid,
            pid: credentials.pid,
            executable,
        };
        Ok((identity, credentials))
    }

    fn remember(&self, unique_name: &str, credentials: Credentials) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(unique_name.to_owned(), credentials);
    }

    /// How many connections are remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn not_identified(what: &str) -> AgentError {
    AgentError::NotPermitted(format!("the caller could not be identified ({what})"))
}

/// One `GetConnectionCredentials` call: uid and pid together.
async fn ask_bus(
    connection: &Connection,
    sender: &zbus::names::UniqueName<'_>,
) -> Result<Credentials, AgentError> {
    let bus = zbus::fdo::DBusProxy::new(connection)
        .await
        .map_err(|e| AgentError::Internal(format!("bus daemon proxy: {e}")))?;
    let credentials = bus
        .get_connection_credentials(zbus::names::BusName::Unique(sender.to_owned()))
        .await
        .map_err(|e| not_identified(&format!("the bus daemon did not say who it is: {e}")))?;
    let uid = credentials
        .unix_user_id()
        .ok_or_else(|| not_identified("no Unix user"))?;
    let pid = credentials
        .process_id()
        .ok_or_else(|| not_identified("no process id"))?;
    let group_ids = credentials.unix_group_ids().cloned();
    Ok(Credentials {
        uid,
        pid,
        group_ids,
    })
}

/// Whether the caller is root or in `group`: the group's id from NSS, the caller's groups from
/// the bus daemon (else from NSS).
fn is_member(credentials: &Credentials, group: &str) -> bool {
    if credentials.uid == 0 {
        return true;
    }
    let gid = match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => found.gid.as_raw(),
        Ok(None) => {
            tracing::warn!(
                group,
                "the restricted group does not exist (NSS): nobody is in it"
            );
            return false;
        }
        Err(e) => {
            tracing::warn!(group, error = %e, "the restricted group could not be looked up");
            return false;
        }
    };
    match &credentials.group_ids {
        Some(ids) => ids.contains(&gid),
        None => nss_group_ids(credentials.uid).contains(&gid),
    }
}

/// The user's groups as NSS lists them (primary and supplementary); empty if unknown.
fn nss_group_ids(uid: u32) -> Vec<u32> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Credentials {
        Credentials {
            uid: 0,
            pid: 1,
            group_ids: None,
        }
    }

    #[test]
    fn membership_is_the_groups_the_bus_reported_and_root() {
        // `root` (gid 0) exists everywhere; a user id that is no one's.
        let caller = |group_ids| Credentials {
            uid: 4_000_000,
            pid: 1,
            group_ids,
        };
        assert!(is_member(&caller(Some(vec![100, 0])), "root"));
        assert!(!is_member(&caller(Some(vec![100])), "root"));
        assert!(!is_member(&caller(Some(vec![0])), "no-such-group-cardgate"));
        // Not reported by the bus, and unknown to NSS: no groups.
        assert!(!is_member(&caller(None), "root"));
        assert!(is_member(&root(), "no-such-group-cardgate"));
    }

    #[test]
    fn the_cache_is_bounded_and_starts_afresh_when_full() {
        let cache = CallerCache::default();
        for i in 0..CAPACITY {
            cache.remember(&format!(":1.{i}"), root());
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.remember(":1.99999", root());
        assert_eq!(cache.len(), 1);
    }
}
