//! Workstation login sessions (issue 7): the interface `org.cardgate.Workstation1`, which the
//! PAM module uses to tie a logind session to the card that opened it, and the removal action
//! that locks (`Session.Lock`), ends (`Session.Terminate`) or only signals that session when
//! its card leaves the reader (`[workstation] removal_action`).
//!
//! Order on removal: the agent bumps the generation and ends (or locks) its own session
//! first; only then does its removal hook hand the card to [`run_removal_actions`] over a
//! channel, so logind is never asked before every earlier decision is void. The logind
//! session's object path is resolved once at registration (`Manager.GetSession`), so the
//! removal costs one D-Bus call.
//!
//! Every method is restricted to root and the `cardgate` group (the daemon checks the
//! caller's uid from the bus, whatever the bus policy did). logind is reached on the bus the
//! daemon serves on: the system bus in production, a private bus with a stand-in logind in
//! the tests.

use std::sync::{Arc, Mutex, PoisonError};

use cardgate_ipc::AgentError;
use cardgate_policy::{CardState, CertificateStatus};
use tokio::sync::mpsc;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, interface};

use crate::agent::Agent;
use crate::callers::CallerCache;
use crate::config::RemovalAction;

/// logind's bus name.
pub const LOGIND: &str = "org.freedesktop.login1";
/// logind's manager object.
const LOGIND_MANAGER_PATH: &str = "/org/freedesktop/login1";
/// logind's manager interface.
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";
/// logind's session interface.
const LOGIND_SESSION: &str = "org.freedesktop.login1.Session";

/// A card that left its reader, handed over by the agent after its own removal work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedCard {
    /// The reader it left.
    pub reader: String,
    /// Its card serial (CHUID), when it had been read.
    pub card_serial: Option<String>,
    /// Its holder's UUID, when it had been read.
    pub holder_uuid: Option<String>,
    /// The session generation after the removal's bump.
    pub generation: u64,
}

/// The card in the active reader as the login and account checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStanding {
    /// The reader holding it.
    pub reader: String,
    /// The holder's UUID.
    pub holder_uuid: String,
    /// The card serial (CHUID).
    pub card_serial: String,
    /// Present or blocked, as the policy sees it.
    pub card: CardState,
    /// The certificate's standing, as the policy sees it.
    pub certificate: CertificateStatus,
    /// Whether an agent session is live on this card.
    pub logged_in: bool,
}

impl CardStanding {
    /// A stable kebab-case code and a sentence for the holder: `usable` when the account
    /// may be used, otherwise why not.
    pub fn verdict(&self) -> (&'static str, &'static str) {
        if self.card == CardState::Blocked {
            return (
                "card-locked",
                "Your smartcard is locked after too many wrong passcodes. Ask your Registration Authority sponsor or IT support to unlock it.",
            );
        }
        match self.certificate {
            CertificateStatus::Usable => ("usable", "The smartcard may be used."),
            CertificateStatus::Revoked => (
                "certificate-revoked",
                "Your smartcard has been revoked. Contact your Registration Authority.",
            ),
            CertificateStatus::Expired => (
                "certificate-expired",
                "Your smartcard's certificate has expired. Contact your Registration Authority to renew it.",
            ),
            _ => (
                "certificate-unusable",
                "Your smartcard's certificate could not be checked; it cannot be used to log in now. Call IT support.",
            ),
        }
    }
}

/// One registered workstation login session.
#[derive(Debug, Clone)]
struct Registration {
    session_id: String,
    user: String,
    holder_uuid: String,
    card_serial: String,
    reader: String,
    /// logind's object for the session; `None` under `removal_action = "signal"`.
    object: Option<OwnedObjectPath>,
}

/// The registered sessions, shared by the interface and the removal task.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<Vec<Registration>>>);

impl Registry {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<Registration>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The served object of `org.cardgate.Workstation1`.
#[derive(Debug)]
pub struct WorkstationInterface {
    agent: Agent,
    registry: Registry,
    action: RemovalAction,
    restricted_group: String,
    /// Who is calling, per connection (`callers.rs`).
    callers: CallerCache,
}

impl WorkstationInterface {
    /// Serves registrations into `registry` for `agent`; `action` decides whether logind is
    /// asked for the session's object at registration.
    pub fn new(
        agent: Agent,
        registry: Registry,
        action: RemovalAction,
        restricted_group: String,
    ) -> Self {
        WorkstationInterface {
            agent,
            registry,
            action,
            restricted_group,
            callers: CallerCache::default(),
        }
    }

    /// Refuses callers outside root and the restricted group.
    async fn restricted(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<u32, AgentError> {
        let caller = self
            .callers
            .identify_in_group(connection, header, &self.restricted_group)
            .await?;
        let uid = caller.identity.uid;
        if caller.member {
            Ok(uid)
        } else {
            tracing::warn!(uid, method, "workstation method refused");
            Err(AgentError::NotPermitted(format!(
                "{method} is only for root and members of the \"{}\" group",
                self.restricted_group
            )))
        }
    }
}

/// Whether `text` is a plausible logind session id or user name (no control characters, no
/// separators that could confuse a log line), at most 64 bytes.
fn plain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

// The macro adds signal helpers that cannot carry doc comments.
#[allow(missing_docs)]
#[interface(name = "org.cardgate.Workstation1")]
impl WorkstationInterface {
    /// Ties logind session `session_id` of `user` to the card of the live agent session.
    #[zbus(out_args("session_path"))]
    async fn register_session(
        &self,
        session_id: String,
        user: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedObjectPath, AgentError> {
        self.restricted(connection, &header, "RegisterSession")
            .await?;
        for (name, value) in [("session_id", &session_id), ("user", &user)] {
            if !plain(value) {
                return Err(AgentError::InvalidArgument(format!(
                    "{name}: 1 to 64 letters, digits or _-.@"
                )));
            }
        }
        let standing = self
            .agent
            .card_standing()
            .filter(|s| s.logged_in)
            .ok_or_else(|| {
                AgentError::NotLoggedIn(
                    "no smartcard session to tie the workstation session to; log in with the card first"
                        .into(),
                )
            })?;
        let object = match self.action {
            RemovalAction::Signal => None,
            RemovalAction::Lock | RemovalAction::Terminate => {
                let reply = connection
                    .call_method(
                        Some(LOGIND),
                        LOGIND_MANAGER_PATH,
                        Some(LOGIND_MANAGER),
                        "GetSession",
                        &(session_id.as_str(),),
                    )
                    .await
                    .map_err(|e| {
                        AgentError::Internal(format!(
                            "logind does not know session {session_id}: {e}"
                        ))
                    })?;
                let path: OwnedObjectPath = reply.body().deserialize().map_err(|e| {
                    AgentError::Internal(format!("logind's GetSession answer: {e}"))
                })?;
                Some(path)
            }
        };
        tracing::info!(
            session_id,
            user,
            holder = standing.holder_uuid,
            reader = standing.reader,
            "workstation session registered"
        );
        let answer = object.clone().unwrap_or_else(|| {
            OwnedObjectPath::from(zbus::zvariant::ObjectPath::from_static_str_unchecked("/"))
        });
        self.registry.with(|all| {
            all.retain(|r| r.session_id != session_id);
            all.push(Registration {
                session_id,
                user,
                holder_uuid: standing.holder_uuid,
                card_serial: standing.card_serial,
                reader: standing.reader,
                object,
            });
        });
        Ok(answer)
    }

    /// Forgets a registered session.
    async fn unregister_session(
        &self,
        session_id: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        self.restricted(connection, &header, "UnregisterSession")
            .await?;
        self.registry
            .with(|all| all.retain(|r| r.session_id != session_id));
        Ok(())
    }

    /// The registered sessions: id, user, holder UUID, card serial.
    #[zbus(out_args("sessions"))]
    async fn sessions(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<(String, String, String, String)>, AgentError> {
        self.restricted(connection, &header, "Sessions").await?;
        Ok(self.registry.with(|all| {
            all.iter()
                .map(|r| {
                    (
                        r.session_id.clone(),
                        r.user.clone(),
                        r.holder_uuid.clone(),
                        r.card_serial.clone(),
                    )
                })
                .collect()
        }))
    }

    /// The card in the reader for the account check: holder UUID, card serial, a stable
    /// code (`usable`, `no-card`, `card-locked`, `certificate-revoked`,
    /// `certificate-expired`, `certificate-unusable`) and a sentence for the holder.
    #[zbus(out_args("holder_uuid", "card_serial", "standing", "message"))]
    async fn card_standing(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, String, String, String), AgentError> {
        self.restricted(connection, &header, "CardStanding").await?;
        Ok(match self.agent.card_standing() {
            None => (
                String::new(),
                String::new(),
                "no-card".into(),
                "Insert your smartcard.".into(),
            ),
            Some(standing) => {
                let (code, message) = standing.verdict();
                (
                    standing.holder_uuid.clone(),
                    standing.card_serial.clone(),
                    code.into(),
                    message.into(),
                )
            }
        })
    }

    /// The card of a registered session left its reader.
    #[zbus(signal)]
    async fn session_card_removed(
        emitter: &SignalEmitter<'_>,
        session_id: &str,
        user: &str,
        action: &str,
    ) -> zbus::Result<()>;
}

/// Carries out the removal action for every registered session whose card is `removed`.
/// Runs until the agent drops its end of the channel.
pub async fn run_removal_actions(
    connection: Connection,
    registry: Registry,
    action: RemovalAction,
    mut removed: mpsc::UnboundedReceiver<RemovedCard>,
) {
    while let Some(card) = removed.recv().await {
        let hit: Vec<Registration> = registry.with(|all| {
            all.iter()
                .filter(|r| {
                    r.reader == card.reader
                        && card
                            .card_serial
                            .as_ref()
                            .is_none_or(|s| *s == r.card_serial)
                })
                .cloned()
                .collect()
        });
        for registration in hit {
            let done = match (&registration.object, action) {
                (Some(object), RemovalAction::Lock | RemovalAction::Terminate) => {
                    let method = if action == RemovalAction::Lock {
                        "Lock"
                    } else {
                        "Terminate"
                    };
                    connection
                        .call_method(
                            Some(LOGIND),
                            object.as_str(),
                            Some(LOGIND_SESSION),
                            method,
                            &(),
                        )
                        .await
                        .map(|_| ())
                }
                _ => Ok(()),
            };
            match done {
                Ok(()) => tracing::info!(
                    session_id = registration.session_id,
                    user = registration.user,
                    action = action.as_str(),
                    generation = card.generation,
                    "workstation session's card removed"
                ),
                Err(e) => tracing::error!(
                    session_id = registration.session_id,
                    action = action.as_str(),
                    error = %e,
                    "logind did not take the removal action"
                ),
            }
            if action == RemovalAction::Terminate {
                registry.with(|all| all.retain(|r| r.session_id != registration.session_id));
            }
            let signalled = async {
                let iface = connection
                    .object_server()
                    .interface::<_, WorkstationInterface>(cardgate_ipc::OBJECT_PATH)
                    .await?;
                WorkstationInterface::session_card_removed(
                    iface.signal_emitter(),
                    &registration.session_id,
                    &registration.user,
                    action.as_str(),
                )
                .await
            };
            if let Err(e) = signalled.await {
                tracing::warn!(error = %e, "SessionCardRemoved not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_and_user_names_are_plain() {
        assert!(plain("c7"));
        assert!(plain("asha.patel"));
        assert!(!plain(""));
        assert!(!plain("a b"));
        assert!(!plain("x\ny"));
        assert!(!plain(&"a".repeat(65)));
    }

    #[test]
    fn a_blocked_card_is_locked_whatever_its_certificate() {
        let standing = CardStanding {
            reader: "r".into(),
            holder_uuid: "555000111222".into(),
            card_serial: "s".into(),
            card: CardState::Blocked,
            certificate: CertificateStatus::Usable,
            logged_in: false,
        };
        assert_eq!(standing.verdict().0, "card-locked");
        let revoked = CardStanding {
            card: CardState::Present,
            certificate: CertificateStatus::Revoked,
            ..standing
        };
        assert_eq!(revoked.verdict().0, "certificate-revoked");
    }
}
