//! A stand-in logind on a private bus, for the suites whose daemon asks logind who may prompt
//! and who may ask (`tests/prompted_login.rs`, `tests/desktop_dialog.rs`): the manager's
//! `GetSessionByPID` and three sessions with `Id`, `User` and `Active`. The processes in
//! [`ActiveSession`] (this test's own process, and any child it adds) are in root's active
//! session `c1`, the desktop at the counter; those it marks [`ActiveSession::add_foreign`] are
//! in `c3`, another user's (uid 1000) session; every other process is in `c2`, a background
//! session of root.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use libtest_mimic::Failed;
use zbus::Connection;
use zbus::zvariant::OwnedObjectPath;

use crate::daemon_harness::fail;

/// The processes in the active session (this process is always one of them), and those in
/// another user's session.
#[derive(Clone, Debug, Default)]
pub struct ActiveSession {
    ours: Arc<Mutex<HashSet<u32>>>,
    foreign: Arc<Mutex<HashSet<u32>>>,
}

impl ActiveSession {
    /// Puts `pid` (a child this test started) in the active session.
    pub fn add(&self, pid: u32) {
        self.ours.lock().unwrap().insert(pid);
    }

    /// Puts `pid` in another user's session (`c3`, uid 1000).
    pub fn add_foreign(&self, pid: u32) {
        self.foreign.lock().unwrap().insert(pid);
    }

    fn session_of(&self, pid: u32) -> &'static str {
        if pid == std::process::id() || self.ours.lock().unwrap().contains(&pid) {
            "c1"
        } else if self.foreign.lock().unwrap().contains(&pid) {
            "c3"
        } else {
            "c2"
        }
    }
}

/// The uid of the other user whose session `c3` is.
pub const OTHER_UID: u32 = 1000;

struct Manager {
    active: ActiveSession,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Manager {
    #[zbus(name = "GetSessionByPID")]
    fn get_session_by_pid(&self, pid: u32) -> zbus::fdo::Result<OwnedObjectPath> {
        let id = self.active.session_of(pid);
        OwnedObjectPath::try_from(format!("/org/freedesktop/login1/session/{id}"))
            .map_err(|e| zbus::fdo::Error::InvalidArgs(e.to_string()))
    }
}

/// One session: root's, active (the desktop at the counter) or not (a background one), or
/// another user's.
struct Session {
    id: &'static str,
    uid: u32,
    active: bool,
}

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl Session {
    #[zbus(property)]
    fn id(&self) -> String {
        self.id.to_owned()
    }

    #[zbus(property)]
    fn user(&self) -> (u32, OwnedObjectPath) {
        (
            self.uid,
            OwnedObjectPath::try_from(format!("/org/freedesktop/login1/user/_{}", self.uid))
                .unwrap(),
        )
    }

    #[zbus(property)]
    fn active(&self) -> bool {
        self.active
    }
}

/// Serves the stand-in as `org.freedesktop.login1` on the bus at `address`; it lives as long
/// as the returned connection.
pub async fn stand_in_logind(address: &str, active: ActiveSession) -> Result<Connection, Failed> {
    zbus::connection::Builder::address(address)
        .map_err(|e| fail("bus address", e))?
        .serve_at("/org/freedesktop/login1", Manager { active })
        .map_err(|e| fail("logind manager", e))?
        .serve_at(
            "/org/freedesktop/login1/session/c1",
            Session {
                id: "c1",
                uid: 0,
                active: true,
            },
        )
        .map_err(|e| fail("logind session", e))?
        .serve_at(
            "/org/freedesktop/login1/session/c2",
            Session {
                id: "c2",
                uid: 0,
                active: false,
            },
        )
        .map_err(|e| fail("logind session", e))?
        .serve_at(
            "/org/freedesktop/login1/session/c3",
            Session {
                id: "c3",
                uid: OTHER_UID,
                active: true,
            },
        )
        .map_err(|e| fail("logind session", e))?
        .name("org.freedesktop.login1")
        .map_err(|e| fail("logind name", e))?
        .build()
        .await
        .map_err(|e| fail("stand-in logind", e))
}
