//! The agent core: the readers and their cards, the session state machine with its
//! generation counter, the answers to every D-Bus method, the audit trail and the timers.
//! The D-Bus layer (`dbus.rs`) only translates; everything decided is decided here.
//!
//! # Rules this module keeps
//!
//! - **Removal first.** A card removal bumps the session generation and drops (`normal`),
//!   locks (`session-lock`) or detaches (`mobility`) the session under one lock, before
//!   anything else (audit, signals, endpoint logout) happens; any decision made before is
//!   void, and any `Authorise` after that sees no card (`mobility`: except while its
//!   re-authentication timer runs, see [`Agent::authorise`]'s view).
//! - **Only the same card resumes.** A locked or away session is resumed only by the same
//!   holder, card serial and certificate serial with the passcode verified again; any other
//!   card read ends it (`card-swapped`).
//! - **A session is bound to one insertion** (reader, event count, card serial, certificate
//!   serial): a swapped card never inherits it, and an endpoint login that completes after
//!   the card left is logged out at once, never installed.
//! - **Fail closed on audit.** A decision or log-in attempt that cannot be written to the
//!   audit trail is refused with `AuditUnavailable`.
//! - **Bad input costs nothing.** Arguments are checked (passcode shape, action, ODS code,
//!   role id) before the card or the endpoint is touched.
//!
//! # Rooms
//!
//! This file holds the [`Agent`] handle, its shared parts and the audit helpers; each concern
//! has its own file: `state` (what is held under the one lock), `cards` (insertion, reading,
//! removal), `snapshot` (properties and `Status`), `gate` (`Authorise`), `session` (log-in,
//! resume, role, log-out, tickets), `passcode` (passcode change), `timers` (idle limits),
//! `errors` (the card layer's failures as named errors), `web` (the browser sign-in: origins,
//! nonces, the card-signed token) and `staff` (the staff tasks, one file per task).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cardgate_audit::{AuditEvent, AuditLog, AuditReceipt};
use cardgate_card::CardInspector;
use cardgate_ipc::SessionEndReason;
use cardgate_piv::PasscodeGuard;
use cardgate_reader::{ReaderBackend, ReaderName};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::actor::CardActor;
use crate::audit_writer::AuditWriter;
use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::CoreError;
use crate::error::DaemonError;
use crate::pending_renewals::PendingRenewals;
use crate::workstation::RemovedCard;

/// Something the D-Bus layer turns into a signal (and a `PropertiesChanged`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A card was read.
    CardInserted {
        /// The reader.
        reader: String,
        /// The card serial from the CHUID.
        card_serial: String,
        /// The holder's UUID.
        holder_uuid: String,
    },
    /// A card left a reader; `generation` is the one already bumped.
    CardRemoved {
        /// The reader.
        reader: String,
        /// The generation after the bump.
        generation: u64,
    },
    /// A log-in succeeded.
    SessionStarted {
        /// The holder's UUID.
        holder_uuid: String,
        /// The session's generation.
        generation: u64,
    },
    /// A session ended.
    SessionEnded {
        /// Why.
        reason: SessionEndReason,
        /// The generation after the end.
        generation: u64,
    },
    /// At insertion: the certificate expires soon.
    CertificateExpiring {
        /// Days left.
        days_left: i32,
        /// For the holder.
        message: String,
    },
    /// At log-in: the endpoint says the holder's passcode expires within
    /// [`PASSCODE_WARN_DAYS`] (or has expired).
    PasscodeExpiring {
        /// Days left (0 or less: expired).
        days_left: i32,
        /// For the holder, with what to do.
        message: String,
    },
    /// The workstation was idle with a card in the reader.
    CardLeftInReader {
        /// The reader.
        reader: String,
        /// How long it was idle.
        idle_seconds: u32,
    },
    /// A certificate renewal moved on (`RenewalProgress`; `agent/staff.rs`).
    RenewalProgress {
        /// One of `cardgate_ipc::RENEWAL_STEPS`.
        step: String,
        /// 0 to 100.
        percent: u32,
    },
    /// Some property changed (every signal above implies this too).
    PropertiesChanged,
}

/// The agent: cheap to clone, shared by the D-Bus layer, the reader event loop and the timers.
#[derive(Clone)]
pub struct Agent {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

struct Shared {
    config: Config,
    backend: Arc<dyn ReaderBackend>,
    inspector: Arc<CardInspector>,
    guard: Arc<PasscodeGuard>,
    endpoint: Arc<dyn Endpoint>,
    audit: AuditWriter,
    state: Mutex<State>,
    /// Woken when a timer deadline may have moved earlier (a session started, a card came
    /// in, the card-left timer re-armed), so [`Agent::run_timers`] can sleep until the next
    /// deadline instead of ticking.
    timers_changed: tokio::sync::Notify,
    actors: Mutex<HashMap<ReaderName, CardActor>>,
    events: broadcast::Sender<AgentEvent>,
    /// One log-in (or role change) at a time: the card and the endpoint see them in order.
    session_changes: tokio::sync::Mutex<()>,
    /// Where removals go after the agent's own removal work (`crate::workstation`).
    removal_hook: Mutex<Option<tokio::sync::mpsc::UnboundedSender<RemovedCard>>>,
    /// Renewals a card was pulled out of (`crate::pending_renewals`).
    renewals: PendingRenewals,
    /// The web sign-in's challenge nonces already seen (`agent/web.rs`).
    nonces: Mutex<web::SeenNonces>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Agent {
    /// Records the readers present at start, before the daemon takes its bus name, so the first
    /// answer a client gets already lists them (the monitor's own `ReaderAttached` events follow
    /// and are idempotent). Card presence still comes from the monitor.
    pub fn note_readers_at_start(&self, names: &[ReaderName]) {
        let mut state = lock(&self.shared.state);
        for name in names {
            state.readers.entry(name.clone()).or_default();
        }
    }

    /// An agent over `backend` (its monitor events come through [`Agent::handle_reader_event`]),
    /// checking cards with `inspector` (which must use the same backend and `guard`),
    /// logging in at `endpoint`, auditing to `audit` (through a writer thread that commits
    /// concurrent entries together; it fails only if that thread cannot be started).
    pub fn new(
        config: Config,
        backend: Arc<dyn ReaderBackend>,
        inspector: Arc<CardInspector>,
        guard: Arc<PasscodeGuard>,
        endpoint: Arc<dyn Endpoint>,
        audit: AuditLog,
    ) -> Result<Agent, DaemonError> {
        let (events, _) = broadcast::channel(256);
        let limits = IdleLimits {
            max_idle: config.max_idle(),
            card_left: Duration::from_secs(config.session.card_left_idle_time),
        };
        let audit = AuditWriter::spawn(audit).map_err(|source| DaemonError::Io {
            what: "starting the audit writer thread".to_owned(),
            source,
        })?;
        // Beside the passcode ledger: the state directory in production.
        let renewals = PendingRenewals::new(
            config
                .paths
                .ledger
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("pending-renewals"),
        );
        Ok(Agent {
            shared: Arc::new(Shared {
                renewals,
                config,
                backend,
                inspector,
                guard,
                endpoint,
                audit,
                state: Mutex::new(State {
                    generation: 1,
                    readers: BTreeMap::new(),
                    session: None,
                    last_activity: Instant::now(),
                    card_left_signalled: false,
                    endpoint_unreachable: false,
                    limits,
                }),
                actors: Mutex::new(HashMap::new()),
                events,
                session_changes: tokio::sync::Mutex::new(()),
                removal_hook: Mutex::new(None),
                timers_changed: tokio::sync::Notify::new(),
                nonces: Mutex::new(web::SeenNonces::default()),
            }),
        })
    }

    /// Subscribes to the agent's events (for signals).
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.shared.events.subscribe()
    }

    fn emit(&self, event: AgentEvent) {
        // Every state change emits: a deadline may have moved, so the timers look again.
        self.shared.timers_changed.notify_one();
        // No subscriber is fine (no D-Bus layer in unit tests).
        let _ = self.shared.events.send(event);
    }

    /// Appends to the audit trail, blocking until it is synced; a failure refuses the action
    /// (fail closed). Only for the synchronous paths (reader events, timers, the blocking
    /// `authorise`), where the order against the removal matters more than a worker thread;
    /// every async method uses [`Agent::audit_async`].
    fn audit(&self, event: &AuditEvent) -> Result<(), CoreError> {
        let outcome = self.shared.audit.append_blocking(now(), event);
        audit_outcome(outcome, event.kind()).map(|_| ())
    }

    /// As [`Agent::audit`], waiting without blocking a runtime worker, so that concurrent
    /// callers share one sync: every async method (the D-Bus methods) appends this way.
    async fn audit_async(&self, event: AuditEvent) -> Result<(), CoreError> {
        self.audit_receipt_async(event).await.map(|_| ())
    }

    /// As [`Agent::audit_async`], returning the entry's receipt (its seq and hash).
    async fn audit_receipt_async(&self, event: AuditEvent) -> Result<AuditReceipt, CoreError> {
        let kind = event.kind();
        let outcome = self.shared.audit.append(now(), event).await;
        audit_outcome(outcome, kind)
    }

    /// Appends where the action has already happened and cannot be refused (a removal):
    /// the failure is logged loudly.
    fn audit_after_the_fact(&self, event: &AuditEvent) {
        let _ = self.audit(event);
    }

    fn actor(&self, reader: &ReaderName) -> Result<CardActor, CoreError> {
        let mut actors = lock(&self.shared.actors);
        if let Some(actor) = actors.get(reader) {
            return Ok(actor.clone());
        }
        let actor = CardActor::spawn(
            reader.clone(),
            Arc::clone(&self.shared.inspector),
            Arc::clone(&self.shared.backend),
            Arc::clone(&self.shared.guard),
        )
        .map_err(|e| CoreError::Internal(format!("starting the card actor: {e}")))?;
        actors.insert(reader.clone(), actor.clone());
        Ok(actor)
    }

    /// Stops the agent: the session (if any) ends and the endpoint is told (for at most
    /// five seconds), and the stop is audited.
    pub async fn stop(&self) {
        let ended = {
            let mut state = lock(&self.shared.state);
            state.session.take().map(|session| {
                state.generation += 1;
                (session, state.generation)
            })
        };
        if let Some((session, generation)) = ended {
            // Stopping cannot be refused: a failure is logged loudly.
            let _ = self
                .audit_async(AuditEvent::SessionEnded {
                    caller: None,
                    card_serial: session.card_serial.clone(),
                    holder: session.holder.clone(),
                    session_generation: generation,
                    reason: cardgate_audit::SessionEndReason::AgentStopping,
                })
                .await;
            let logout = self.shared.endpoint.logout(&session.spine);
            if tokio::time::timeout(Duration::from_secs(5), logout)
                .await
                .is_err()
            {
                tracing::warn!("endpoint logout at stop timed out");
            }
        }
        let _ = self
            .audit_async(AuditEvent::DaemonStopped {
                reason: "shutdown requested".into(),
            })
            .await;
    }

    // ---------------------------------------------------------------- timers
}

/// An audit writer's outcome as the agent answers it: a failure refuses the action.
fn audit_outcome(
    outcome: crate::audit_writer::AuditOutcome,
    kind: &str,
) -> Result<AuditReceipt, CoreError> {
    outcome.map_err(|e| {
        tracing::error!(error = %e, kind, "audit trail write failed");
        CoreError::AuditUnavailable(format!(
            "the audit trail cannot be written ({e}); nothing was done"
        ))
    })
}

/// The audit trail's name for a session end.
fn audit_end_reason(reason: SessionEndReason) -> cardgate_audit::SessionEndReason {
    use cardgate_audit::SessionEndReason as A;
    match reason {
        SessionEndReason::CardRemoved => A::CardRemoved,
        SessionEndReason::CardSwapped => A::CardSwapped,
        SessionEndReason::LoggedOut => A::Logout,
        SessionEndReason::IdleTimeout => A::IdleTimeout,
        SessionEndReason::CardLeftInReader => A::CardLeftInReader,
        SessionEndReason::ReauthenticationDue => A::ReauthenticationDue,
        SessionEndReason::EndpointEnded => A::EndpointEnded,
        // A reason added to the bus vocabulary but not yet here: recorded, never lost.
        _ => A::Error,
    }
}

/// A caller's string made safe to quote in an error: at most 64 characters, control
/// characters replaced.
fn printable(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

mod cards;
mod demo_hooks;
mod gate;
mod passcode;
mod session;
mod snapshot;
mod staff;
mod state;
mod timers;
mod web;

pub use snapshot::{PASSCODE_WARN_DAYS, Snapshot};
#[cfg(test)]
use state::Session;
use state::{IdleLimits, State};
pub use web::APP_VERSION;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod modes_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The core's state machine without a bus: removal ordering, the idle timers under paused
    //! tokio time (never sleeps), and argument checks that cost nothing.

    use std::path::Path;

    use cardgate_certs::TrustAnchors;
    use cardgate_reader::VirtualBackend;
    use cardgate_spine::CardSigner;
    use cardgate_spine::wire::Secret;

    use super::*;
    use cardgate_audit::CallerIdentity;
    use cardgate_ipc::AgentState;
    use cardgate_reader::{ReaderEvent, ReaderEventKind};
    use cardgate_spine::SpineError;
    use cardgate_spine::wire::Session as SpineSession;

    use super::snapshot::passcode_expiry_warning;

    #[test]
    fn passcode_expiry_warns_within_thirty_days_and_names_what_to_do() {
        let now = time::macros::datetime!(2026-11-23 12:00:00 UTC);
        assert_eq!(
            passcode_expiry_warning(now + time::Duration::days(31), now),
            None
        );
        let (days, message) = passcode_expiry_warning(now + time::Duration::days(30), now).unwrap();
        assert_eq!(days, 30);
        assert!(message.contains("30 days") && message.contains("cardgate passcode change"));
        let (days, message) =
            passcode_expiry_warning(now + time::Duration::hours(30), now).unwrap();
        assert_eq!(
            (days, message.contains("in 1 day.")),
            (1, true),
            "{message}"
        );
        let (days, message) = passcode_expiry_warning(now + time::Duration::hours(3), now).unwrap();
        assert_eq!((days, message.contains("today")), (0, true), "{message}");
        let (days, message) = passcode_expiry_warning(now - time::Duration::days(2), now).unwrap();
        assert!(days < 0 && message.contains("has expired"), "{message}");
    }
    use crate::endpoint::BoxFuture;

    /// An endpoint that is never reached in these tests except for logouts.
    struct NoEndpoint;

    impl Endpoint for NoEndpoint {
        fn login(&self, _: Arc<dyn CardSigner>) -> BoxFuture<'_, Result<SpineSession, SpineError>> {
            Box::pin(async { Err(SpineError::SessionExpired) })
        }
        fn select_role<'a>(
            &'a self,
            _: &'a SpineSession,
            _: &'a str,
        ) -> BoxFuture<'a, Result<SpineSession, SpineError>> {
            Box::pin(async { Err(SpineError::SessionExpired) })
        }
        fn logout<'a>(&'a self, _: &'a SpineSession) -> BoxFuture<'a, Result<(), SpineError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn agent(dir: &Path, adjust: impl FnOnce(&mut Config)) -> Agent {
        let mut config = Config::demo(dir, "https://127.0.0.1:1", "https://127.0.0.1:2").unwrap();
        adjust(&mut config);
        let ca = cardgate_vcard::provision::TestCa::generate("Agent Core Test CA").unwrap();
        let backend: Arc<dyn ReaderBackend> = Arc::new(VirtualBackend::new());
        let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
        let inspector = Arc::new(CardInspector::new(
            Arc::clone(&backend),
            Arc::clone(&guard),
            cardgate_card::TrustConfig {
                anchors: TrustAnchors::from_der([ca.certificate_der()]).unwrap(),
                crl: None,
                policy: cardgate_certs::CheckPolicy::default(),
            },
        ));
        let audit = AuditLog::open(dir.join("audit.jsonl")).unwrap();
        Agent::new(
            config,
            backend,
            inspector,
            guard,
            Arc::new(NoEndpoint),
            audit,
        )
        .unwrap()
    }

    fn event(reader: &str, kind: ReaderEventKind) -> ReaderEvent {
        ReaderEvent {
            reader: ReaderName::new(reader),
            at: std::time::Instant::now(),
            kind,
        }
    }

    fn inserted(reader: &str) -> ReaderEvent {
        event(
            reader,
            ReaderEventKind::CardInserted {
                atr: vec![0x3B],
                event_count: Some(1),
            },
        )
    }

    /// Puts a session on the card now in `reader`, as a login would.
    fn install_session(agent: &Agent, reader: &str, max_idle: Duration) {
        let mut state = lock(&agent.shared.state);
        let insertion = state.readers[&ReaderName::new(reader)]
            .card
            .as_ref()
            .unwrap()
            .insertion
            .clone();
        state.generation += 1;
        state.session = Some(Session {
            reader: ReaderName::new(reader),
            insertion,
            card_serial: cardgate_piv::CardSerial::new("4455667788").unwrap(),
            holder: cardgate_piv::HolderUuid::new("555000111222").unwrap(),
            certificate_serial: "01".into(),
            spine: SpineSession {
                session_id: "s-1".into(),
                token: Secret::new("t"),
                uid: "555000111222".into(),
                name: "Asha Patel".into(),
                max_idle_time: max_idle.as_secs(),
                logout_url: "/v1/sessions/s-1".into(),
                certificate_not_after: now(),
                role_profiles: Vec::new(),
                selected_role_profile: None,
                passcode_expires_at: None,
            },
            selected: None,
            max_idle,
            detached: None,
        });
        state.last_activity = Instant::now();
    }

    fn drain(events: &mut broadcast::Receiver<AgentEvent>) -> Vec<AgentEvent> {
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            if e != AgentEvent::PropertiesChanged {
                seen.push(e);
            }
        }
        seen
    }

    fn caller() -> CallerIdentity {
        CallerIdentity {
            uid: 1000,
            pid: 42,
            executable: None,
        }
    }

    #[tokio::test]
    async fn removal_bumps_the_generation_before_the_session_ends_and_answers_turn_to_no_card() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path(), |_| {});
        let mut events = agent.subscribe();
        agent.handle_reader_event(&inserted("R"));
        install_session(&agent, "R", Duration::from_secs(900));
        let before = agent.snapshot().session_generation;
        drain(&mut events);

        agent.handle_reader_event(&event(
            "R",
            ReaderEventKind::CardRemoved {
                event_count: Some(2),
            },
        ));
        let seen = drain(&mut events);
        let after = agent.snapshot().session_generation;
        assert!(after > before);
        assert_eq!(
            seen,
            vec![
                AgentEvent::CardRemoved {
                    reader: "R".into(),
                    generation: after
                },
                AgentEvent::SessionEnded {
                    reason: SessionEndReason::CardRemoved,
                    generation: after
                },
            ]
        );
        let answer = agent.authorise(&caller(), "download", "FA123").unwrap();
        assert_eq!((answer.allowed, answer.reason.as_str()), (false, "no-card"));
        assert_eq!(answer.generation, after);
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(audit.contains("\"card_removed\"") && audit.contains("\"session_ended\""));
    }

    #[tokio::test]
    async fn a_card_arriving_in_the_sessions_reader_never_inherits_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path(), |_| {});
        agent.handle_reader_event(&inserted("R"));
        install_session(&agent, "R", Duration::from_secs(900));
        // The monitor saw only the new insertion (no removal in between).
        agent.handle_reader_event(&inserted("R"));
        assert_eq!(agent.snapshot().state, AgentState::CardPresent);
        assert!(agent.session_binding().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_session_idles_out_at_its_limit_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path(), |c| c.session.card_left_idle_time = 0);
        let mut events = agent.subscribe();
        agent.handle_reader_event(&inserted("R"));
        install_session(&agent, "R", Duration::from_secs(300));
        drain(&mut events);

        tokio::time::advance(Duration::from_secs(299)).await;
        agent.check_timers();
        assert!(drain(&mut events).is_empty());
        assert_eq!(agent.snapshot().state, AgentState::LoggedIn);

        tokio::time::advance(Duration::from_secs(1)).await;
        agent.check_timers();
        let seen = drain(&mut events);
        assert!(
            matches!(
                seen.as_slice(),
                [AgentEvent::SessionEnded {
                    reason: SessionEndReason::IdleTimeout,
                    ..
                }]
            ),
            "{seen:?}"
        );
        assert_eq!(agent.snapshot().state, AgentState::CardPresent);
    }

    #[tokio::test(start_paused = true)]
    async fn a_card_left_in_an_idle_workstation_is_signalled_once_and_ends_the_session_if_configured()
     {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path(), |c| {
            c.session.card_left_idle_time = 60;
            c.session.end_session_when_card_left = true;
        });
        let mut events = agent.subscribe();
        agent.handle_reader_event(&inserted("R"));
        install_session(&agent, "R", Duration::from_secs(900));
        drain(&mut events);

        tokio::time::advance(Duration::from_secs(59)).await;
        agent.check_timers();
        assert!(drain(&mut events).is_empty());

        tokio::time::advance(Duration::from_secs(1)).await;
        agent.check_timers();
        let seen = drain(&mut events);
        assert!(
            matches!(
                seen.as_slice(),
                [
                    AgentEvent::CardLeftInReader {
                        idle_seconds: 60,
                        ..
                    },
                    AgentEvent::SessionEnded {
                        reason: SessionEndReason::CardLeftInReader,
                        ..
                    }
                ]
            ),
            "{seen:?}"
        );

        tokio::time::advance(Duration::from_secs(600)).await;
        agent.check_timers();
        assert!(drain(&mut events).is_empty(), "signalled twice");
    }

    #[tokio::test]
    async fn web_requests_are_refused_by_origin_and_nonce_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let off = agent(dir.path(), |_| {});
        let e = off.web_origin("https://pmr.example.nhs.uk").unwrap_err();
        assert!(
            matches!(&e, CoreError::OriginNotAllowed(m) if m.contains("off")),
            "{e:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let on = agent(dir.path(), |c| {
            c.web.allowed_origins = vec!["https://pmr.example.nhs.uk".into()];
        });
        assert_eq!(
            on.web_origin("https://PMR.example.nhs.uk/")
                .unwrap()
                .as_str(),
            "https://pmr.example.nhs.uk"
        );
        let e = on.web_origin("https://evil.example").unwrap_err();
        assert!(matches!(e, CoreError::OriginNotAllowed(_)), "{e:?}");
        let e = on.web_origin("http://pmr.example.nhs.uk").unwrap_err();
        assert!(matches!(e, CoreError::OriginNotHttps(_)), "{e:?}");
        let e = on.web_origin("http://localhost:8080").unwrap_err();
        assert!(matches!(e, CoreError::OriginNotHttps(_)), "{e:?}");
        let e = on
            .web_origin("https://pmr.example.nhs.uk/login")
            .unwrap_err();
        assert!(matches!(e, CoreError::OriginNotAllowed(_)), "{e:?}");

        let e = on.take_nonce("c2hvcnQ=").unwrap_err();
        assert!(matches!(e, CoreError::NonceMalformed(_)), "{e:?}");
        let nonce = cardgate_webauth::ChallengeNonce::generate().unwrap();
        on.take_nonce(nonce.as_str()).unwrap();
        let e = on.take_nonce(nonce.as_str()).unwrap_err();
        assert!(matches!(e, CoreError::NonceReplayed(_)), "{e:?}");

        // No card: refused before anything is sent; a bad shape before the card is looked for.
        let origin = on.web_origin("https://pmr.example.nhs.uk").unwrap();
        let e = on
            .web_sign_in(&caller(), &origin, &nonce, Some("12"), false)
            .await
            .unwrap_err();
        assert!(matches!(e, CoreError::InvalidArgument(_)), "{e:?}");
        let e = on
            .web_sign_in(&caller(), &origin, &nonce, Some("1234"), false)
            .await
            .unwrap_err();
        assert!(matches!(e, CoreError::NoCard(_)), "{e:?}");
        on.audit_web_sign_in(&caller(), origin.as_str(), e.short_name())
            .await
            .unwrap();
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(
            audit.contains(r#""kind":"web_sign_in""#)
                && audit.contains(r#""origin":"https://pmr.example.nhs.uk""#)
                && audit.contains(r#""outcome":"NoCard""#)
                && !audit.contains("1234"),
            "{audit}"
        );
    }

    #[tokio::test]
    async fn bad_arguments_are_named_and_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path(), |_| {});
        let e = agent.authorise(&caller(), "fly", "FA123").unwrap_err();
        assert!(
            matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("action")),
            "{e:?}"
        );
        let e = agent.authorise(&caller(), "download", "F A").unwrap_err();
        assert!(
            matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("ods_code")),
            "{e:?}"
        );
        // The shape is checked before the card is looked for.
        let e = agent.login(&caller(), Some("12"), false).await.unwrap_err();
        assert!(
            matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("passcode")),
            "{e:?}"
        );
        assert!(!format!("{e:?}").contains("12\""));
        let e = agent
            .login(&caller(), Some("1234"), false)
            .await
            .unwrap_err();
        assert!(matches!(e, CoreError::NoCard(_)), "{e:?}");
    }
}
