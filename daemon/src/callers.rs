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

/// Uid and pid of a connection, as the bus daemon reported them.
#[derive(Debug, Clone, Copy)]
struct Credentials {
    uid: u32,
    pid: u32,
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
        let sender = header
            .sender()
            .ok_or_else(|| not_identified("the message has no sender"))?;
        let cached = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sender.as_str())
            .copied();
        let credentials = match cached {
            Some(credentials) => credentials,
            None => {
                let credentials = ask_bus(connection, sender).await?;
                self.remember(sender.as_str(), credentials);
                credentials
            }
        };
        let executable = std::fs::read_link(format!("/proc/{}/exe", credentials.pid))
            .ok()
            .map(|p| p.display().to_string());
        Ok(CallerIdentity {
            uid: credentials.uid,
            pid: credentials.pid,
            executable,
        })
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
    Ok(Credentials { uid, pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_starts_afresh_when_full() {
        let cache = CallerCache::default();
        for i in 0..CAPACITY {
            cache.remember(&format!(":1.{i}"), Credentials { uid: 0, pid: 1 });
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.remember(":1.99999", Credentials { uid: 0, pid: 1 });
        assert_eq!(cache.len(), 1);
    }
}
