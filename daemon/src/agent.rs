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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cardgate_audit::{AuditEvent, AuditLog, CallerIdentity, EntryMethod, PasscodeOutcome};
use cardgate_card::{CardError, CardInspector, CardReport, Insertion, PasscodeSource};
use cardgate_certs::{FindingKind, Verdict};
use cardgate_ipc::{
    AgentError, AgentState, AuthoriseAnswer, ReaderInfo, RoleProfileInfo, SelectedRoleProfile,
    SessionEndReason, Ticket,
};
use cardgate_piv::{FinalTry, Passcode, PasscodeGuard, PasscodeStatus, PinPadEnd, PivError};
use cardgate_policy::Decision;
use cardgate_policy::{
    Action, Activity, CardState, CertificateStatus, Generation, OdsCode, RoleProfileId,
    RoleProfileView, SessionView, decide,
};
use cardgate_reader::{ReaderBackend, ReaderEvent, ReaderEventKind, ReaderName};
use cardgate_spine::SpineError;
use cardgate_spine::wire::{RoleProfile, Session as SpineSession};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::actor::CardActor;
use crate::audit_writer::AuditWriter;
use crate::config::{Config, RemovalMode};
use crate::endpoint::Endpoint;
use crate::error::DaemonError;
use crate::pending_renewals::PendingRenewals;
use crate::workstation::{CardStanding, RemovedCard};

/// Warn at log-in (and in `Status`) when the passcode expires within this many days.
pub const PASSCODE_WARN_DAYS: i64 = 30;

/// The warning for a passcode expiring at `expires_at`, if it is due by `now`.
fn passcode_expiry_warning(
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<(i32, String)> {
    let days_left = (expires_at - now).whole_days();
    if days_left > PASSCODE_WARN_DAYS {
        return None;
    }
    let days = i32::try_from(days_left).unwrap_or(i32::MIN);
    let message = if expires_at <= now {
        "Your passcode has expired. Change it now with `cardgate passcode change`; \
         if that is refused, ask your RA or Sponsor."
            .to_owned()
    } else if days_left == 0 {
        "Your passcode expires today. Change it now with `cardgate passcode change`.".to_owned()
    } else {
        format!(
            "Your passcode expires in {days_left} day{}. Change it with `cardgate passcode change`.",
            if days_left == 1 { "" } else { "s" }
        )
    };
    Some((days, message))
}

/// How long the card may take to sign during a login before the login gives up.
const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Everything the properties and `Status` report, read under one lock.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Each reader.
    pub readers: Vec<ReaderInfo>,
    /// A card is in the active reader.
    pub card_present: bool,
    /// The holder's UUID, `""` when none.
    pub holder_uuid: String,
    /// The holder's name, `""` when none.
    pub holder_name: String,
    /// The state.
    pub state: AgentState,
    /// Tries left, `-1` when unknown.
    pub passcode_tries_left: i32,
    /// The selected role profile (empty when none).
    pub selected_role_profile: SelectedRoleProfile,
    /// Certificate expiry, Unix seconds, `0` when none.
    pub certificate_not_after: i64,
    /// The session generation.
    pub session_generation: u64,
    /// Warnings for the holder (certificate expiry, few tries left, card problems).
    pub warnings: Vec<String>,
    /// The ODS codes this workstation serves (the configuration's; constant).
    pub workstation_ods_codes: Vec<String>,
}

/// The card in one reader, as far as it has been read.
#[derive(Debug)]
struct CardSlot {
    insertion: Insertion,
    report: Option<CardReport>,
    /// Why the card could not be read, for `Status`.
    problem: Option<String>,
}

#[derive(Debug, Default)]
struct ReaderSlot {
    card: Option<CardSlot>,
    pin_pad: bool,
}

/// A session: the endpoint's session bound to one insertion of one card.
#[derive(Debug)]
struct Session {
    reader: ReaderName,
    insertion: Insertion,
    card_serial: cardgate_piv::CardSerial,
    holder: cardgate_piv::HolderUuid,
    certificate_serial: String,
    spine: SpineSession,
    selected: Option<RoleProfile>,
    max_idle: Duration,
    /// Set when the card left under `session-lock` or `mobility`: the session is kept for
    /// the same holder but no longer bound to a card in a reader.
    detached: Option<Detached>,
}

/// A session whose card left the reader under `session-lock` or `mobility`.
#[derive(Debug, Clone, Copy)]
struct Detached {
    /// `mobility` only: until when the session counts as live without its card (the
    /// re-authentication deadline). `None` under `session-lock`: locked, never live.
    mobility_until: Option<Instant>,
}

impl Session {
    /// Whether the card in `report` is this session's: same holder, same card serial, same
    /// authentication certificate. Only such a card may resume a locked session.
    fn same_card(&self, report: &CardReport) -> bool {
        report.identity.holder_uuid == self.holder
            && report.identity.card_serial == self.card_serial
            && report.certificate.certificate_serial == self.certificate_serial
    }

    /// Whether the session is locked (`session-lock`, card gone): kept, but answers nothing.
    fn is_locked(&self) -> bool {
        self.detached.is_some_and(|d| d.mobility_until.is_none())
    }
}

#[derive(Debug)]
struct State {
    generation: u64,
    readers: BTreeMap<ReaderName, ReaderSlot>,
    session: Option<Session>,
    /// The last authorised activity (log-in, role selection, an allowed `Authorise`, a card
    /// insertion): the start of every idle timer.
    last_activity: Instant,
    /// `CardLeftInReader` was signalled for the current idle period.
    card_left_signalled: bool,
    /// The last endpoint call failed for want of the endpoint.
    endpoint_unreachable: bool,
    /// The configuration's idle limits (`max_idle_time`, `card_left_idle_time`; zero: off),
    /// here so the demo's controls can shorten them (`agent/demo_hooks.rs`).
    limits: IdleLimits,
}

/// The configured idle limits the timers apply.
#[derive(Debug, Clone, Copy)]
struct IdleLimits {
    /// The longest a session may idle (the endpoint's own limit may be shorter).
    max_idle: Duration,
    /// How long an idle workstation may hold a card before `CardLeftInReader`; zero: never.
    card_left: Duration,
}

impl State {
    /// The reader the agent acts on: the session's, else the first with a card in it.
    fn active_card(&self) -> Option<(&ReaderName, &CardSlot)> {
        if let Some(session) = &self.session
            && let Some(card) = self
                .readers
                .get(&session.reader)
                .and_then(|slot| slot.card.as_ref())
        {
            return Some((&session.reader, card));
        }
        self.readers
            .iter()
            .find_map(|(name, slot)| slot.card.as_ref().map(|card| (name, card)))
    }

    /// The session, if it is bound to the card now in its reader, or (`mobility`) its card
    /// left and the re-authentication timer is still running.
    fn live_session(&self) -> Option<&Session> {
        let session = self.session.as_ref()?;
        if let Some(detached) = session.detached {
            return detached
                .mobility_until
                .is_some_and(|until| Instant::now() < until)
                .then_some(session);
        }
        let card = self.readers.get(&session.reader)?.card.as_ref()?;
        (card.insertion == session.insertion).then_some(session)
    }

    /// The live session whose card is away (`mobility`, timer running).
    fn away_session(&self) -> Option<&Session> {
        self.live_session().filter(|s| s.detached.is_some())
    }
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

    /// Appends to the audit trail; a failure refuses the action (fail closed).
    fn audit(&self, event: &AuditEvent) -> Result<(), AgentError> {
        let outcome = self.shared.audit.append_blocking(now(), event);
        audit_outcome(outcome, event.kind())
    }

    /// As [`Agent::audit`], waiting without blocking a runtime worker, so that concurrent
    /// callers share one sync (the D-Bus `Authorise` path).
    async fn audit_async(&self, event: AuditEvent) -> Result<(), AgentError> {
        let kind = event.kind();
        let outcome = self.shared.audit.append(now(), event).await;
        audit_outcome(outcome, kind)
    }

    /// Appends where the action has already happened and cannot be refused (a removal):
    /// the failure is logged loudly.
    fn audit_after_the_fact(&self, event: &AuditEvent) {
        let _ = self.audit(event);
    }

    fn actor(&self, reader: &ReaderName) -> Result<CardActor, AgentError> {
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
        .map_err(|e| AgentError::Internal(format!("starting the card actor: {e}")))?;
        actors.insert(reader.clone(), actor.clone());
        Ok(actor)
    }

    // ---------------------------------------------------------------- reader events

    /// Takes one monitor event. Every event of the backend's monitor must come through here,
    /// in order.
    pub fn handle_reader_event(&self, event: &ReaderEvent) {
        match &event.kind {
            ReaderEventKind::CardRemoved { .. } | ReaderEventKind::ReaderDetached => {
                // The generation is bumped (and the session dropped) before the card layer
                // even hears of it.
                self.card_gone(
                    &event.reader,
                    matches!(event.kind, ReaderEventKind::ReaderDetached),
                );
                self.shared.inspector.track(event);
            }
            ReaderEventKind::ServiceLost => {
                let readers: Vec<ReaderName> = lock(&self.shared.state)
                    .readers
                    .iter()
                    .filter(|(_, slot)| slot.card.is_some())
                    .map(|(name, _)| name.clone())
                    .collect();
                for reader in readers {
                    self.card_gone(&reader, false);
                }
                self.shared.inspector.track(event);
            }
            ReaderEventKind::ReaderAttached => {
                self.shared.inspector.track(event);
                lock(&self.shared.state)
                    .readers
                    .entry(event.reader.clone())
                    .or_default();
                self.emit(AgentEvent::PropertiesChanged);
            }
            ReaderEventKind::CardInserted { .. } => {
                // A card arriving where a session's card was (a swap the monitor saw only as
                // an insertion) ends that session first.
                self.card_gone(&event.reader, false);
                if let Some(insertion) = self.shared.inspector.track(event) {
                    self.card_arrived(insertion);
                }
            }
            _ => {
                self.shared.inspector.track(event);
            }
        }
    }

    /// A card left `reader` (or the reader itself went). Generation first. Then, by the
    /// configured removal mode: `normal` ends the session; `session-lock` locks it (kept for
    /// the same card and passcode); `mobility` keeps it live until the re-authentication
    /// deadline. A session already detached from its card is not touched here.
    fn card_gone(&self, reader: &ReaderName, detached: bool) {
        let mode = self.shared.config.session.removal;
        let (generation, removed, session, kept) = {
            let mut state = lock(&self.shared.state);
            let had_card = state
                .readers
                .get(reader)
                .is_some_and(|slot| slot.card.is_some());
            let session_here = state
                .session
                .as_ref()
                .is_some_and(|s| &s.reader == reader && s.detached.is_none());
            if !had_card && !session_here {
                if detached {
                    state.readers.remove(reader);
                }
                return;
            }
            state.generation += 1;
            let generation = state.generation;
            let removed = state
                .readers
                .get_mut(reader)
                .and_then(|slot| slot.card.take());
            let bound = session_here
                && removed.as_ref().is_some_and(|card| {
                    state
                        .session
                        .as_ref()
                        .is_some_and(|s| s.insertion == card.insertion)
                });
            let (session, kept) = match mode {
                RemovalMode::SessionLock | RemovalMode::Mobility if bound => {
                    let mobility_until = (mode == RemovalMode::Mobility).then(|| {
                        Instant::now()
                            + Duration::from_secs(self.shared.config.session.mobility_grace)
                    });
                    if let Some(session) = state.session.as_mut() {
                        session.detached = Some(Detached { mobility_until });
                    }
                    (None, Some(mode))
                }
                _ if session_here => (state.session.take(), None),
                _ => (None, None),
            };
            if detached {
                state.readers.remove(reader);
            }
            (generation, removed, session, kept)
        };
        tracing::info!(%reader, generation, "card removed");
        let identity = removed
            .as_ref()
            .and_then(|card| card.report.as_ref())
            .map(|report| &report.identity);
        self.audit_after_the_fact(&AuditEvent::CardRemoved {
            reader: reader.to_string(),
            card_serial: identity.map(|i| i.card_serial.clone()),
            holder: identity.map(|i| i.holder_uuid.clone()),
        });
        self.emit(AgentEvent::CardRemoved {
            reader: reader.to_string(),
            generation,
        });
        if let Some(kept) = kept {
            let text = match kept {
                RemovalMode::Mobility => format!(
                    "session kept without the card (mobility) at generation {generation}; re-authentication due within {} s",
                    self.shared.config.session.mobility_grace
                ),
                _ => format!(
                    "session locked (session-lock) at generation {generation}; the same card and its passcode resume it"
                ),
            };
            self.audit_after_the_fact(&AuditEvent::Note {
                holder: identity.map(|i| i.holder_uuid.clone()),
                author: Some("cardgated".into()),
                text,
            });
        }
        if let Some(session) = session {
            self.session_over(session, SessionEndReason::CardRemoved, generation);
        }
        // Workstation sessions (lock, terminate, signal) only now: after the generation bump
        // and the session's end or lock, never before.
        if let Some(hook) = lock(&self.shared.removal_hook).as_ref() {
            let _ = hook.send(RemovedCard {
                reader: reader.to_string(),
                card_serial: identity.map(|i| i.card_serial.as_str().to_owned()),
                holder_uuid: identity.map(|i| i.holder_uuid.as_str().to_owned()),
                generation,
            });
        }
        self.emit(AgentEvent::PropertiesChanged);
    }

    /// Sends every card removal, after the agent's own removal work, to `hook`
    /// (`crate::workstation::run_removal_actions`).
    pub fn set_removal_hook(&self, hook: tokio::sync::mpsc::UnboundedSender<RemovedCard>) {
        *lock(&self.shared.removal_hook) = Some(hook);
    }

    /// The card in the active reader, read, as the workstation login sees it; `None` when no
    /// card has been read.
    pub fn card_standing(&self) -> Option<CardStanding> {
        let state = lock(&self.shared.state);
        let (reader, card) = state.active_card()?;
        let report = card.report.as_ref()?;
        let view = self.view(&state);
        let logged_in = state
            .live_session()
            .is_some_and(|s| s.detached.is_none() && s.insertion == card.insertion);
        Some(CardStanding {
            reader: reader.to_string(),
            holder_uuid: report.identity.holder_uuid.as_str().to_owned(),
            card_serial: report.identity.card_serial.as_str().to_owned(),
            card: view.card,
            certificate: view.certificate,
            logged_in,
        })
    }

    /// A card was read while a session is detached from its card: any card but the
    /// session's own ends it (a swap never inherits a session). Called under the state lock
    /// that stores the card's report, so no answer ever sees both.
    fn take_swapped(state: &mut State, report: &CardReport) -> Option<(Session, u64)> {
        let swapped = state
            .session
            .as_ref()
            .is_some_and(|s| s.detached.is_some() && !s.same_card(report));
        if !swapped {
            return None;
        }
        state.generation += 1;
        let generation = state.generation;
        state.session.take().map(|s| (s, generation))
    }

    /// After [`Agent::take_swapped`]: the audit note (`card-swapped`), the signal, the
    /// endpoint logout.
    fn swapped_over(&self, ended: Option<(Session, u64)>, report: &CardReport) {
        if let Some((session, generation)) = ended {
            self.audit_after_the_fact(&AuditEvent::Note {
                holder: Some(session.holder.clone()),
                author: Some("cardgated".into()),
                text: format!(
                    "session ended: card-swapped (card {} read while the session of card {} was away)",
                    report.identity.card_serial.as_str(),
                    session.card_serial.as_str()
                ),
            });
            // The swapped-in card is another insertion: nothing of this one to forget.
            let _ = self.session_over(session, SessionEndReason::CardSwapped, generation);
        }
    }

    /// After a session was taken out of the state: audit, signal, endpoint logout, and the
    /// card's verified passcode dropped if the card is still in its reader. Returns that last
    /// job, for a caller that answers only once it is done (`Logout`).
    fn session_over(
        &self,
        session: Session,
        reason: SessionEndReason,
        generation: u64,
    ) -> Option<tokio::task::JoinHandle<()>> {
        tracing::info!(reason = reason.as_str(), generation, "session ended");
        self.audit_after_the_fact(&AuditEvent::SessionEnded {
            card_serial: session.card_serial.clone(),
            holder: session.holder.clone(),
            session_generation: generation,
            reason: audit_end_reason(reason),
        });
        self.emit(AgentEvent::SessionEnded { reason, generation });
        let forgotten = if session.detached.is_none() {
            self.forget_verification(&session.reader, &session.insertion)
        } else {
            None
        };
        let endpoint = Arc::clone(&self.shared.endpoint);
        // The endpoint is told without holding anything up; a failure is logged (the session
        // idles out there).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = endpoint.logout(&session.spine).await {
                    tracing::warn!(error = %e, "endpoint logout failed; the session will idle out there");
                }
            });
        }
        forgotten
    }

    /// Drops the passcode's verified state on the card of `insertion` if it is still in
    /// `reader` (PIV VERIFY with P1 = FF), on the reader's actor after anything queued: once
    /// no session uses it, no other program sharing the reader can use the card's keys
    /// without the passcode. A card that refuses is logged; the session is over either way.
    fn forget_verification(
        &self,
        reader: &ReaderName,
        insertion: &Insertion,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let still_in = lock(&self.shared.state)
            .readers
            .get(reader)
            .and_then(|slot| slot.card.as_ref())
            .is_some_and(|card| &card.insertion == insertion);
        if !still_in {
            return None;
        }
        let actor = self.actor(reader).ok()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let insertion = insertion.clone();
        Some(runtime.spawn(async move {
            let done = crate::staff_jobs::run(
                &actor,
                insertion,
                crate::staff_jobs::HostTyped::No,
                |c| c.forget_verification(),
            )
            .await;
            match done {
                Ok(Ok(())) => tracing::debug!("the card's passcode is no longer verified"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the card kept its verified passcode"),
                Err(e) => tracing::debug!(error = %e, "the card left before its passcode state was dropped"),
            }
        }))
    }

    /// A new card: remember the insertion, read it on the reader's actor.
    fn card_arrived(&self, insertion: Insertion) {
        let reader = insertion.reader().clone();
        {
            let mut state = lock(&self.shared.state);
            state.readers.entry(reader.clone()).or_default().card = Some(CardSlot {
                insertion: insertion.clone(),
                report: None,
                problem: None,
            });
            state.last_activity = Instant::now();
            state.card_left_signalled = false;
        }
        self.emit(AgentEvent::PropertiesChanged);
        let actor = match self.actor(&reader) {
            Ok(actor) => actor,
            Err(e) => {
                tracing::error!(error = %e, "no card actor");
                return;
            }
        };
        let agent = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let result = actor.inspect(insertion.clone()).await;
                // A renewal this card was pulled out of is finished before it counts as read.
                let result = agent.finish_held_renewal(&actor, &insertion, result).await;
                agent.card_read(insertion, result);
            });
        }
    }

    /// The card of `insertion` has been read (or could not be).
    fn card_read(&self, insertion: Insertion, result: Result<CardReport, CardError>) {
        let reader = insertion.reader().clone();
        let swapped = {
            let mut state = lock(&self.shared.state);
            let Some(slot) = state.readers.get_mut(&reader) else {
                return;
            };
            let Some(card) = slot.card.as_mut().filter(|c| c.insertion == insertion) else {
                return; // removed meanwhile
            };
            match &result {
                Ok(report) => {
                    card.report = Some(report.clone());
                    slot.pin_pad = report.pin_pad;
                    Agent::take_swapped(&mut state, report)
                }
                Err(e) => {
                    card.problem = Some(e.to_string());
                    None
                }
            }
        };
        match result {
            Ok(report) => {
                tracing::info!(%reader, card = %report.identity.card_serial.as_str(), "card read");
                self.swapped_over(swapped, &report);
                self.audit_after_the_fact(&AuditEvent::CardInserted {
                    reader: reader.to_string(),
                    card_serial: Some(report.identity.card_serial.clone()),
                    holder: Some(report.identity.holder_uuid.clone()),
                });
                self.emit(AgentEvent::CardInserted {
                    reader: reader.to_string(),
                    card_serial: report.identity.card_serial.as_str().to_owned(),
                    holder_uuid: report.identity.holder_uuid.as_str().to_owned(),
                });
                // The same whole-days count (rounded up) the finding's sentence says.
                if let cardgate_certs::Validity::Valid { days_left } = report.certificate.validity
                    && let Ok(days_left) = i32::try_from(days_left)
                    && report
                        .certificate
                        .findings
                        .iter()
                        .any(|f| matches!(f.kind, FindingKind::ExpiresSoon(_)))
                {
                    let message = report
                        .certificate
                        .findings
                        .iter()
                        .find(|f| matches!(f.kind, FindingKind::ExpiresSoon(_)))
                        .map(|f| format!("{} {}", f.message, f.next_step))
                        .unwrap_or_default();
                    self.emit(AgentEvent::CertificateExpiring { days_left, message });
                }
            }
            Err(e) => {
                tracing::warn!(%reader, error = %e, "card could not be read");
                self.audit_after_the_fact(&AuditEvent::CardInserted {
                    reader: reader.to_string(),
                    card_serial: None,
                    holder: None,
                });
            }
        }
        self.emit(AgentEvent::PropertiesChanged);
    }

    // ---------------------------------------------------------------- read side

    /// Everything the properties say, under one lock.
    pub fn snapshot(&self) -> Snapshot {
        let state = lock(&self.shared.state);
        let readers = state
            .readers
            .iter()
            .map(|(name, slot)| ReaderInfo {
                name: name.to_string(),
                card_present: slot.card.is_some(),
                pin_pad: slot.pin_pad,
            })
            .collect();
        let active = state.active_card();
        let report = active.and_then(|(_, card)| card.report.as_ref());
        let session = state.live_session();
        let blocked = report.is_some_and(|r| r.passcode == PasscodeStatus::Blocked);
        let locked = state.session.as_ref().is_some_and(Session::is_locked);
        let agent_state = match (active, session) {
            (_, Some(_)) if state.endpoint_unreachable => AgentState::EndpointUnavailable,
            (_, Some(_)) => AgentState::LoggedIn,
            (_, None) if locked => AgentState::SessionLocked,
            (None, None) => AgentState::NoCard,
            (Some(_), None) if blocked => AgentState::CardLocked,
            (Some(_), None) => AgentState::CardPresent,
        };
        let mut warnings: Vec<String> = report
            .map(|r| {
                r.warnings
                    .iter()
                    .map(|w| staff::warning_text(r, w))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((_, card)) = active
            && let Some(problem) = &card.problem
        {
            warnings.push(problem.clone());
        }
        if let Some((_, message)) = session
            .and_then(|s| s.spine.passcode_expires_at)
            .and_then(|at| passcode_expiry_warning(at, now()))
        {
            warnings.push(message);
        }
        let selected = session
            .and_then(|s| s.selected.as_ref())
            .map(|p| SelectedRoleProfile {
                id: p.id.clone(),
                job_role: p.job_role.clone(),
                ods_code: p.ods_code.clone(),
                organisation_name: p.organisation_name.clone(),
            })
            .unwrap_or_default();
        Snapshot {
            readers,
            card_present: active.is_some(),
            holder_uuid: report
                .map(|r| r.identity.holder_uuid.as_str().to_owned())
                .unwrap_or_default(),
            holder_name: report
                .map(|r| r.identity.holder_name.clone())
                .unwrap_or_default(),
            state: agent_state,
            passcode_tries_left: match report.map(|r| r.passcode) {
                Some(PasscodeStatus::TriesLeft(t)) => i32::from(t.get()),
                Some(PasscodeStatus::Blocked) => 0,
                // A successful VERIFY resets the card's counter and the agent's ledger, so
                // the tries left are the agent's limit (the card may allow more; the agent
                // never does). Read again at the next insertion.
                Some(PasscodeStatus::Verified) => {
                    i32::from(cardgate_piv::AGENT_MAX_CONSECUTIVE_FAILURES)
                }
                None => -1,
            },
            selected_role_profile: selected,
            certificate_not_after: report
                .map(|r| r.certificate.not_after.unix_timestamp())
                .unwrap_or(0),
            session_generation: state.generation,
            warnings,
            workstation_ods_codes: self
                .shared
                .config
                .policy
                .workstation_ods_codes()
                .iter()
                .map(|ods| ods.as_str().to_owned())
                .collect(),
        }
    }

    // ---------------------------------------------------------------- methods

    /// `Authorise`: the policy's answer under the current generation, audited. Blocks the
    /// calling thread for the audit sync; the D-Bus layer uses [`Agent::authorise_async`].
    pub fn authorise(
        &self,
        caller: &CallerIdentity,
        action: &str,
        ods_code: &str,
    ) -> Result<AuthoriseAnswer, AgentError> {
        let (decision, entry) = self.decide(caller, action, ods_code)?;
        self.audit(&entry)?;
        Ok(self.answer(&decision))
    }

    /// [`Agent::authorise`] without blocking a runtime worker during the audit sync; many
    /// concurrent callers share one sync.
    pub async fn authorise_async(
        &self,
        caller: &CallerIdentity,
        action: &str,
        ods_code: &str,
    ) -> Result<AuthoriseAnswer, AgentError> {
        let (decision, entry) = self.decide(caller, action, ods_code)?;
        self.audit_async(entry).await?;
        Ok(self.answer(&decision))
    }

    /// The policy's decision and the audit entry that records it; arguments are checked
    /// first.
    fn decide(
        &self,
        caller: &CallerIdentity,
        action: &str,
        ods_code: &str,
    ) -> Result<(Decision, AuditEvent), AgentError> {
        let parsed_action: Action = action.parse().map_err(|_| {
            AgentError::InvalidArgument(format!(
                "action: \"{}\" is not one of {}",
                printable(action),
                Action::valid_names()
            ))
        })?;
        let ods = OdsCode::new(ods_code)
            .map_err(|e| AgentError::InvalidArgument(format!("ods_code: {e}")))?;
        let decision = {
            let state = lock(&self.shared.state);
            let view = self.view(&state);
            decide(&self.shared.config.policy, &view, parsed_action, &ods)
        };
        let entry = AuditEvent::AuthorisationDecision {
            holder: decision
                .holder()
                .and_then(|h| cardgate_piv::HolderUuid::new(h.as_str()).ok()),
            caller: caller.clone(),
            action: parsed_action.name().to_owned(),
            ods: Some(ods.as_str().to_owned()),
            allowed: decision.is_allowed(),
            reason_code: decision.reason().code().to_owned(),
            session_generation: Some(decision.generation().get()),
        };
        Ok((decision, entry))
    }

    /// The answer to a decision whose audit entry is on disk; an allowed one still current
    /// counts as activity.
    fn answer(&self, decision: &Decision) -> AuthoriseAnswer {
        if decision.is_allowed() {
            let mut state = lock(&self.shared.state);
            if state.generation == decision.generation().get() {
                state.last_activity = Instant::now();
                if state.card_left_signalled {
                    // The card-left timer re-arms: tell the timers.
                    state.card_left_signalled = false;
                    self.shared.timers_changed.notify_one();
                }
            }
        }
        AuthoriseAnswer {
            allowed: decision.is_allowed(),
            reason: decision.reason().code().to_owned(),
            message: decision.message().to_owned(),
            generation: decision.generation().get(),
        }
    }

    /// The policy's snapshot of the state.
    ///
    /// `mobility`: while a session's card is away and the re-authentication timer runs (and
    /// no other card is in), the card counts as present-by-mobility, its certificate as
    /// checked at log-in, the holder as the session's; once the timer ran out (or under
    /// `normal` and `session-lock`) an absent card is absent and the policy answers `no-card`.
    fn view(&self, state: &State) -> SessionView {
        let active = state.active_card();
        if active.is_none()
            && let Some(session) = state.away_session()
        {
            return SessionView {
                card: CardState::Present,
                certificate: if session.spine.certificate_not_after > now() {
                    CertificateStatus::Usable
                } else {
                    CertificateStatus::Expired
                },
                logged_in: true,
                session_expired: state.last_activity.elapsed() >= session.max_idle,
                endpoint_reachable: !state.endpoint_unreachable,
                selected_role: session.selected.as_ref().and_then(role_view),
                holder: cardgate_policy::HolderUuid::new(session.holder.as_str()).ok(),
                generation: Generation::new(state.generation),
            };
        }
        let report = active.and_then(|(_, card)| card.report.as_ref());
        let card = match (active, report) {
            (None, _) => CardState::Absent,
            (Some(_), Some(r)) if r.passcode == PasscodeStatus::Blocked => CardState::Blocked,
            (Some(_), _) => CardState::Present,
        };
        let certificate = match report.map(|r| r.certificate.verdict()) {
            None => CertificateStatus::Unchecked,
            Some(Verdict::Unusable { reason }) => match reason.kind {
                FindingKind::Expired => CertificateStatus::Expired,
                FindingKind::Revoked => CertificateStatus::Revoked,
                FindingKind::NotYetValid => CertificateStatus::NotYetValid,
                FindingKind::ChainNotVerified => CertificateStatus::Untrusted,
                FindingKind::RevocationUnknown => CertificateStatus::RevocationUnknown,
                _ => CertificateStatus::Unchecked,
            },
            Some(_) => CertificateStatus::Usable,
        };
        let session = state.live_session();
        let session_expired = session.is_some_and(|s| state.last_activity.elapsed() >= s.max_idle);
        SessionView {
            card,
            certificate,
            logged_in: session.is_some(),
            session_expired,
            endpoint_reachable: !state.endpoint_unreachable,
            selected_role: session
                .and_then(|s| s.selected.as_ref())
                .and_then(role_view),
            holder: report.and_then(|r| {
                cardgate_policy::HolderUuid::new(r.identity.holder_uuid.as_str()).ok()
            }),
            generation: Generation::new(state.generation),
        }
    }

    /// `Login` / `LoginWithPinPad`: verify the passcode on the card, log in at the endpoint
    /// with the card signing, and bind the session to this insertion.
    pub async fn login(
        &self,
        caller: &CallerIdentity,
        passcode: Option<&str>,
        confirm_final_try: bool,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        // The shape first: a malformed passcode never costs a try, nor a queue slot.
        let source = match passcode {
            Some(value) => PasscodeSource::Host(
                Passcode::new(value.to_owned())
                    .map_err(|e| AgentError::InvalidArgument(format!("passcode: {e}")))?,
            ),
            None => PasscodeSource::PinPad,
        };
        let method = match source {
            PasscodeSource::Host(_) => EntryMethod::HostKeyboard,
            PasscodeSource::PinPad => EntryMethod::ReaderKeypad,
        };
        let final_try = if confirm_final_try {
            FinalTry::Confirmed
        } else {
            FinalTry::NotConfirmed
        };
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            ?method,
            "log-in requested"
        );
        let _one_at_a_time = self.shared.session_changes.lock().await;

        let (reader, insertion, report, generation) = {
            let state = lock(&self.shared.state);
            let Some((reader, card)) = state.active_card() else {
                return Err(AgentError::NoCard(
                    "Insert your smartcard to log in.".into(),
                ));
            };
            let Some(report) = card.report.clone() else {
                return Err(AgentError::NoCard(match &card.problem {
                    Some(problem) => format!("The card could not be read: {problem}"),
                    None => "The card is still being read; try again in a moment.".into(),
                }));
            };
            if state.live_session().is_some_and(|s| s.detached.is_none()) {
                return Err(AgentError::InvalidArgument(
                    "Login: a session is already open for this card; log out first".into(),
                ));
            }
            (
                reader.clone(),
                card.insertion.clone(),
                report,
                state.generation,
            )
        };
        if let Verdict::Unusable { reason } = report.certificate.verdict() {
            return Err(AgentError::Card(format!(
                "{} {} (no passcode try was used)",
                reason.message, reason.next_step
            )));
        }
        let identity = &report.identity;
        let actor = self.actor(&reader)?;

        let verified = actor.verify(insertion.clone(), source, final_try).await;
        let (outcome, tries_left) = passcode_outcome(&verified);
        if let Some(outcome) = outcome {
            self.audit(&AuditEvent::PasscodeAttempt {
                reader: reader.to_string(),
                card_serial: Some(identity.card_serial.clone()),
                holder: Some(identity.holder_uuid.clone()),
                entry_method: method,
                outcome,
                tries_left,
            })?;
        }
        if let Err(e) = verified {
            // The tries left changed: the properties say so before the answer does.
            self.note_attempt(&insertion, &Err(&e));
            return Err(staff::with_unlock_paths(card_error(e), &report));
        }
        self.note_attempt(&insertion, &Ok(()));

        if let Some(resumed) = self.resume(&reader, &insertion, &report)? {
            self.emit(AgentEvent::PropertiesChanged);
            return Ok(resumed);
        }

        let signer = actor
            .signer(
                insertion.clone(),
                identity.auth_certificate_der.clone(),
                SIGN_TIMEOUT,
            )
            .map_err(|e| AgentError::Card(e.to_string()))?;
        let spine = match self.shared.endpoint.login(Arc::new(signer)).await {
            Ok(session) => {
                lock(&self.shared.state).endpoint_unreachable = false;
                session
            }
            // No session: the passcode verified above must not stay verified on the card.
            Err(SpineError::KeyDoesNotMatchCertificate) => {
                let _ = self.forget_verification(&reader, &insertion);
                return Err(self.key_does_not_match(&identity.card_serial));
            }
            Err(e) => {
                let _ = self.forget_verification(&reader, &insertion);
                return Err(self.endpoint_error(e));
            }
        };
        // The card signed with the key its certificate names: no half-renewal to explain.
        self.shared
            .renewals
            .forget_key_replaced(&identity.card_serial);

        // Install the session only if the card of this insertion is still in the reader.
        let installed = {
            let mut state = lock(&self.shared.state);
            let still_here = state
                .readers
                .get(&reader)
                .and_then(|slot| slot.card.as_ref())
                .is_some_and(|card| card.insertion == insertion);
            if still_here && self.shared.inspector.is_current(&insertion) {
                state.generation += 1;
                let max_idle =
                    Duration::from_secs(spine.max_idle_time.max(1)).min(state.limits.max_idle);
                let selected = spine
                    .selected_role_profile
                    .as_ref()
                    .and_then(|id| spine.role_profiles.iter().find(|p| &p.id == id).cloned());
                state.session = Some(Session {
                    reader: reader.clone(),
                    insertion: insertion.clone(),
                    card_serial: identity.card_serial.clone(),
                    holder: identity.holder_uuid.clone(),
                    certificate_serial: report.certificate.certificate_serial.clone(),
                    spine: spine.clone(),
                    selected,
                    max_idle,
                    detached: None,
                });
                state.last_activity = Instant::now();
                state.card_left_signalled = false;
                Some(state.generation)
            } else {
                None
            }
        };
        let Some(session_generation) = installed else {
            let endpoint = Arc::clone(&self.shared.endpoint);
            tokio::spawn(async move {
                let _ = endpoint.logout(&spine).await;
            });
            return Err(AgentError::NoCard(
                "The card was removed during log-in; insert it and log in again.".into(),
            ));
        };
        tracing::info!(
            generation = session_generation,
            previous = generation,
            "session started"
        );
        if let Err(e) = self.audit(&AuditEvent::SessionStarted {
            card_serial: identity.card_serial.clone(),
            holder: identity.holder_uuid.clone(),
            session_generation,
        }) {
            // Fail closed: a session that is not on the audit trail must not exist.
            self.end_session(SessionEndReason::LoggedOut);
            return Err(e);
        }
        self.emit(AgentEvent::SessionStarted {
            holder_uuid: identity.holder_uuid.as_str().to_owned(),
            generation: session_generation,
        });
        if let Some((days_left, message)) = spine
            .passcode_expires_at
            .and_then(|at| passcode_expiry_warning(at, now()))
        {
            self.emit(AgentEvent::PasscodeExpiring { days_left, message });
        }
        self.emit(AgentEvent::PropertiesChanged);
        Ok(spine.role_profiles.iter().map(role_info).collect())
    }

    /// After the passcode was verified on the card of `insertion`: if a session is detached
    /// from its card (`session-lock`, `mobility`) and this is the same card (holder, card
    /// serial, certificate serial), the session is bound to this insertion again with its
    /// endpoint session and selected role unchanged (no endpoint log-in), and its role
    /// profiles are returned. Another card's log-in ends the detached session first
    /// (`card-swapped`) and goes on as a fresh log-in (`None`).
    fn resume(
        &self,
        reader: &ReaderName,
        insertion: &Insertion,
        report: &CardReport,
    ) -> Result<Option<Vec<RoleProfileInfo>>, AgentError> {
        let resumed = {
            let mut state = lock(&self.shared.state);
            let still_here = state
                .readers
                .get(reader)
                .and_then(|slot| slot.card.as_ref())
                .is_some_and(|card| &card.insertion == insertion);
            match state.session.as_ref() {
                Some(s) if s.detached.is_some() && s.same_card(report) && still_here => {
                    state.generation += 1;
                    let generation = state.generation;
                    state.last_activity = Instant::now();
                    state.card_left_signalled = false;
                    state.session.as_mut().map(|session| {
                        session.reader = reader.clone();
                        session.insertion = insertion.clone();
                        session.detached = None;
                        (
                            session.holder.clone(),
                            session.card_serial.clone(),
                            session.spine.session_id.clone(),
                            session
                                .spine
                                .role_profiles
                                .iter()
                                .map(role_info)
                                .collect::<Vec<_>>(),
                            generation,
                        )
                    })
                }
                _ => None,
            }
        };
        let Some((holder, card_serial, session_id, profiles, generation)) = resumed else {
            // A detached session of another card never survives a log-in.
            let swapped = Agent::take_swapped(&mut lock(&self.shared.state), report);
            self.swapped_over(swapped, report);
            return Ok(None);
        };
        tracing::info!(generation, "session resumed");
        let audited = self
            .audit(&AuditEvent::SessionStarted {
                card_serial,
                holder: holder.clone(),
                session_generation: generation,
            })
            .and_then(|()| {
                self.audit(&AuditEvent::Note {
                    holder: Some(holder.clone()),
                    author: Some("cardgated".into()),
                    text: format!(
                        "session resumed by the same card and its passcode (endpoint session {session_id} kept)"
                    ),
                })
            });
        if let Err(e) = audited {
            self.end_session(SessionEndReason::LoggedOut);
            return Err(e);
        }
        self.emit(AgentEvent::SessionStarted {
            holder_uuid: holder.as_str().to_owned(),
            generation,
        });
        Ok(Some(profiles))
    }

    /// Records at once what a passcode attempt on the card of `insertion` told about its
    /// passcode: verified, or the tries left a wrong one leaves, or blocked. So the
    /// properties (and their `PropertiesChanged`) are right before the method answers,
    /// without reading the card again. Other failures tell nothing and change nothing.
    fn note_attempt(&self, insertion: &Insertion, result: &Result<(), &CardError>) {
        let status = match result {
            Ok(()) => PasscodeStatus::Verified,
            Err(e) => match e.piv() {
                // The last try gone: the card is locked, as a read of it would say.
                Some(PivError::WrongPasscode { tries_left, .. }) if tries_left.get() == 0 => {
                    PasscodeStatus::Blocked
                }
                Some(PivError::WrongPasscode { tries_left, .. }) => {
                    PasscodeStatus::TriesLeft(*tries_left)
                }
                Some(PivError::CardBlocked { .. }) => PasscodeStatus::Blocked,
                _ => return,
            },
        };
        let mut state = lock(&self.shared.state);
        if let Some(report) = state
            .readers
            .get_mut(insertion.reader())
            .and_then(|slot| slot.card.as_mut())
            .filter(|card| &card.insertion == insertion)
            .and_then(|card| card.report.as_mut())
        {
            report.passcode = status;
            // The warnings follow the passcode: few tries left, or locked with the ways out.
            report.warnings = cardgate_card::holder_warnings(&report.certificate, status);
        }
        drop(state);
        self.emit(AgentEvent::PropertiesChanged);
    }

    /// Reads the card again and waits for it, so what the card now says (tries left after
    /// an unlock) is in the properties before the method that changed it answers.
    pub(crate) async fn reinspect_now(&self, actor: &CardActor, insertion: Insertion) {
        let result = actor.inspect(insertion.clone()).await;
        if result.is_ok() {
            self.card_read_quietly(insertion, result);
        }
    }

    /// Reads the card again in the background (a newer CRL arrived).
    fn reinspect(&self, actor: &CardActor, insertion: Insertion) {
        let agent = self.clone();
        let actor = actor.clone();
        tokio::spawn(async move {
            let result = actor.inspect(insertion.clone()).await;
            if result.is_ok() {
                agent.card_read_quietly(insertion, result);
            }
        });
    }

    /// Checks every card in a reader again (a newer CRL arrived): a card revoked while it sits
    /// in the reader is refused from then on, and a card read while no CRL was held
    /// (revocation unknown) becomes usable without being taken out.
    pub(crate) fn recheck_cards(&self) {
        let present: Vec<(ReaderName, Insertion)> = lock(&self.shared.state)
            .readers
            .iter()
            .filter_map(|(name, slot)| {
                slot.card
                    .as_ref()
                    .map(|c| (name.clone(), c.insertion.clone()))
            })
            .collect();
        for (reader, insertion) in present {
            match self.actor(&reader) {
                Ok(actor) => self.reinspect(&actor, insertion),
                Err(e) => tracing::warn!(%reader, error = %e, "card not checked again"),
            }
        }
    }

    /// Like [`Agent::card_read`] without the insertion signals (the same card, read again).
    fn card_read_quietly(&self, insertion: Insertion, result: Result<CardReport, CardError>) {
        if let Ok(report) = result {
            let mut state = lock(&self.shared.state);
            if let Some(card) = state
                .readers
                .get_mut(insertion.reader())
                .and_then(|slot| slot.card.as_mut())
                .filter(|c| c.insertion == insertion)
            {
                card.report = Some(report);
            }
        }
        self.emit(AgentEvent::PropertiesChanged);
    }

    /// The endpoint answered that session `session_id` is over (idle there, or logged out
    /// elsewhere): the local session ends too (`endpoint-ended`), if it is still that one.
    pub(crate) fn ended_by_endpoint(&self, session_id: &str) -> AgentError {
        let same = lock(&self.shared.state)
            .session
            .as_ref()
            .is_some_and(|s| s.spine.session_id == session_id);
        if same {
            self.end_session(SessionEndReason::EndpointEnded);
        }
        AgentError::NotLoggedIn(
            "The national service has ended the session (idle there, or logged out elsewhere); \
             log in again with your smartcard."
                .into(),
        )
    }

    fn endpoint_error(&self, e: SpineError) -> AgentError {
        match e {
            SpineError::CardRemoved => {
                AgentError::NoCard("The card was removed during log-in.".into())
            }
            e => {
                tracing::warn!(error = %e, "endpoint call failed");
                if matches!(
                    e,
                    SpineError::Unreachable { .. } | SpineError::TimedOut { .. }
                ) {
                    lock(&self.shared.state).endpoint_unreachable = true;
                    self.emit(AgentEvent::PropertiesChanged);
                }
                AgentError::EndpointUnavailable(e.to_string())
            }
        }
    }

    /// `SelectRoleProfile`: selects or switches the role within the session.
    pub async fn select_role_profile(
        &self,
        _caller: &CallerIdentity,
        id: &str,
    ) -> Result<(), AgentError> {
        if id.is_empty() || id.len() > 128 {
            return Err(AgentError::InvalidArgument(
                "id: a role profile id from Login's answer (1 to 128 characters)".into(),
            ));
        }
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let (spine, generation) = {
            let state = lock(&self.shared.state);
            let Some(session) = state.live_session() else {
                return Err(AgentError::NotLoggedIn(
                    "Log in before choosing a role.".into(),
                ));
            };
            if session.detached.is_some() {
                // Mobility keeps work going without the card; changing who one acts as
                // needs the card back.
                return Err(AgentError::NoCard(
                    "Insert your smartcard to change role.".into(),
                ));
            }
            if !session.spine.role_profiles.iter().any(|p| p.id == id) {
                return Err(AgentError::UnknownRoleProfile(format!(
                    "id: the holder has no role profile \"{}\"",
                    printable(id)
                )));
            }
            (session.spine.clone(), state.generation)
        };
        let updated = match self.shared.endpoint.select_role(&spine, id).await {
            Ok(session) => session,
            Err(SpineError::SessionExpired) => {
                return Err(self.ended_by_endpoint(&spine.session_id));
            }
            Err(e) => return Err(self.endpoint_error(e)),
        };
        let (holder, profile, previous, new_generation) = {
            let mut state = lock(&self.shared.state);
            if state.generation != generation {
                return Err(AgentError::NoCard(
                    "The card was removed while the role was being selected.".into(),
                ));
            }
            state.generation += 1;
            let new_generation = state.generation;
            state.last_activity = Instant::now();
            let Some(session) = state.session.as_mut() else {
                return Err(AgentError::NotLoggedIn("The session has ended.".into()));
            };
            let profile = updated
                .role_profiles
                .iter()
                .find(|p| p.id == id)
                .cloned()
                .ok_or_else(|| AgentError::UnknownRoleProfile(format!("id: {}", printable(id))))?;
            let previous = session.selected.replace(profile.clone());
            session.spine = updated;
            (session.holder.clone(), profile, previous, new_generation)
        };
        let audit_profile = |p: &RoleProfile| cardgate_audit::RoleProfile {
            role: p.job_role.clone(),
            ods: p.ods_code.clone(),
        };
        self.audit(&AuditEvent::RoleSelected {
            holder,
            session_generation: new_generation,
            profile: audit_profile(&profile),
            previous: previous.as_ref().map(audit_profile),
        })?;
        self.emit(AgentEvent::PropertiesChanged);
        Ok(())
    }

    /// `Logout`.
    pub async fn logout(&self, _caller: &CallerIdentity) -> Result<(), AgentError> {
        let _one_at_a_time = self.shared.session_changes.lock().await;
        if lock(&self.shared.state).session.is_none() {
            return Err(AgentError::NotLoggedIn(
                "There is no session to log out of.".into(),
            ));
        }
        // Answered once the card no longer holds the verified passcode.
        if let Some(forgotten) = self.end_session(SessionEndReason::LoggedOut) {
            let _ = forgotten.await;
        }
        Ok(())
    }

    /// Ends the session (if any) for `reason`: generation first. Returns the job dropping the
    /// card's verified passcode, if the card is still in.
    fn end_session(&self, reason: SessionEndReason) -> Option<tokio::task::JoinHandle<()>> {
        let ended = {
            let mut state = lock(&self.shared.state);
            state.session.take().map(|session| {
                state.generation += 1;
                (session, state.generation)
            })
        };
        let (session, generation) = ended?;
        let forgotten = self.session_over(session, reason, generation);
        self.emit(AgentEvent::PropertiesChanged);
        forgotten
    }

    /// `GetTicket`.
    pub fn ticket(&self) -> Result<Ticket, AgentError> {
        let state = lock(&self.shared.state);
        let Some(session) = state.live_session() else {
            return Err(AgentError::NotLoggedIn("Log in to get a ticket.".into()));
        };
        let Some(role) = &session.selected else {
            return Err(AgentError::NotLoggedIn(
                "Choose a role profile before asking for a ticket.".into(),
            ));
        };
        Ok(Ticket {
            token: session.spine.token.expose().to_owned(),
            holder_uuid: session.holder.as_str().to_owned(),
            role_profile_id: role.id.clone(),
            job_role: role.job_role.clone(),
            ods_code: role.ods_code.clone(),
        })
    }

    /// `ChangePasscode`: both shapes checked first (no try spent), then CHANGE REFERENCE
    /// DATA through the card's actor under the PIV policy (final try only when confirmed, a
    /// value that just failed never re-sent). The outcome (never a passcode) is audited.
    pub async fn change_passcode(
        &self,
        caller: &CallerIdentity,
        current: &str,
        new: &str,
        confirm_final_try: bool,
    ) -> Result<(), AgentError> {
        let current = Passcode::new(current.to_owned())
            .map_err(|e| AgentError::InvalidArgument(format!("current: {e}")))?;
        let new = Passcode::new(new.to_owned())
            .map_err(|e| AgentError::InvalidArgument(format!("new: {e}")))?;
        let final_try = if confirm_final_try {
            FinalTry::Confirmed
        } else {
            FinalTry::NotConfirmed
        };
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            "passcode change requested"
        );
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let (reader, insertion, identity) = {
            let state = lock(&self.shared.state);
            let Some((reader, card)) = state.active_card() else {
                return Err(AgentError::NoCard(
                    "Insert your smartcard to change its passcode.".into(),
                ));
            };
            let Some(report) = &card.report else {
                return Err(AgentError::NoCard(
                    "The card is still being read (or could not be read); try again in a moment."
                        .into(),
                ));
            };
            (
                reader.clone(),
                card.insertion.clone(),
                report.identity.clone(),
            )
        };
        let actor = self.actor(&reader)?;
        let changed = actor
            .change_passcode(insertion.clone(), current, new, final_try)
            .await;
        let (outcome, tries_left) = passcode_outcome(&changed);
        if let Some(outcome) = outcome {
            self.audit(&AuditEvent::PasscodeAttempt {
                reader: reader.to_string(),
                card_serial: Some(identity.card_serial.clone()),
                holder: Some(identity.holder_uuid.clone()),
                entry_method: EntryMethod::HostKeyboard,
                outcome,
                tries_left,
            })?;
        }
        if changed.is_ok() {
            self.audit(&AuditEvent::Note {
                holder: Some(identity.holder_uuid.clone()),
                author: Some("cardgated".into()),
                text: "passcode changed by the holder (ChangePasscode)".into(),
            })?;
        }
        // The card's counter changed (a wrong current passcode, or reset by the change):
        // the properties say so before the answer does.
        match &changed {
            Err(e) => self.note_attempt(&insertion, &Err(e)),
            Ok(()) => self.reinspect_now(&actor, insertion).await,
        }
        changed.map_err(card_error)
    }

    /// The certificate serial bound to the session (diagnostics).
    pub fn session_binding(&self) -> Option<(String, String, Option<u16>)> {
        let state = lock(&self.shared.state);
        state.session.as_ref().map(|s| {
            (
                s.card_serial.as_str().to_owned(),
                s.certificate_serial.clone(),
                s.insertion.event_count(),
            )
        })
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
            self.audit_after_the_fact(&AuditEvent::SessionEnded {
                card_serial: session.card_serial.clone(),
                holder: session.holder.clone(),
                session_generation: generation,
                reason: cardgate_audit::SessionEndReason::AgentStopping,
            });
            let logout = self.shared.endpoint.logout(&session.spine);
            if tokio::time::timeout(Duration::from_secs(5), logout)
                .await
                .is_err()
            {
                tracing::warn!("endpoint logout at stop timed out");
            }
        }
        self.audit_after_the_fact(&AuditEvent::DaemonStopped {
            reason: "shutdown requested".into(),
        });
    }

    // ---------------------------------------------------------------- timers

    /// Checks the idle timers once: the session's idle limit and a card left in an idle
    /// workstation. Called by [`Agent::run_timers`] at each deadline; public so tests can drive
    /// it under paused time.
    pub fn check_timers(&self) {
        let config = &self.shared.config.session;
        let (idle_out, card_left, reauthentication_due) = {
            let mut state = lock(&self.shared.state);
            let idle = state.last_activity.elapsed();
            let idle_out = state.session.as_ref().is_some_and(|s| idle >= s.max_idle);
            let reauthentication_due = state.session.as_ref().is_some_and(|s| {
                s.detached
                    .and_then(|d| d.mobility_until)
                    .is_some_and(|until| Instant::now() >= until)
            });
            let card_left = if !state.limits.card_left.is_zero()
                && !state.card_left_signalled
                && idle >= state.limits.card_left
            {
                state
                    .active_card()
                    .map(|(reader, _)| (reader.to_string(), idle))
            } else {
                None
            };
            if card_left.is_some() {
                state.card_left_signalled = true;
            }
            (idle_out, card_left, reauthentication_due)
        };
        if reauthentication_due && !idle_out {
            self.end_session(SessionEndReason::ReauthenticationDue);
        }
        if idle_out {
            self.end_session(SessionEndReason::IdleTimeout);
        }
        if let Some((reader, idle)) = card_left {
            self.emit(AgentEvent::CardLeftInReader {
                reader,
                idle_seconds: u32::try_from(idle.as_secs()).unwrap_or(u32::MAX),
            });
            if config.end_session_when_card_left {
                self.end_session(SessionEndReason::CardLeftInReader);
            }
        }
    }

    /// When [`Agent::check_timers`] next has something to do: the session's idle limit, the
    /// `mobility` re-authentication deadline, or the card-left time; `None` when no timer
    /// runs. A deadline that moved later (activity) only costs one early look.
    pub fn next_timer_deadline(&self) -> Option<Instant> {
        let state = lock(&self.shared.state);
        let card_left_idle = state.limits.card_left;
        let idle_limit = state
            .session
            .as_ref()
            .map(|s| state.last_activity + s.max_idle);
        let mobility = state
            .session
            .as_ref()
            .and_then(|s| s.detached)
            .and_then(|d| d.mobility_until);
        let card_left = (!card_left_idle.is_zero()
            && !state.card_left_signalled
            && state.active_card().is_some())
        .then(|| state.last_activity + card_left_idle);
        [idle_limit, mobility, card_left]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers until the task is dropped: sleeps until the next deadline (or until a
    /// state change may have moved one earlier), so an idle workstation costs no wake-ups.
    pub async fn run_timers(self) {
        loop {
            // Registered before the deadline is read: a change in between is not missed.
            let changed = self.shared.timers_changed.notified();
            match self.next_timer_deadline() {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
            self.check_timers();
        }
    }
}

/// An audit writer's outcome as the agent answers it: a failure refuses the action.
fn audit_outcome(outcome: crate::audit_writer::AuditOutcome, kind: &str) -> Result<(), AgentError> {
    outcome.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, kind, "audit trail write failed");
        AgentError::AuditUnavailable(format!(
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

/// What a passcode attempt's result is on the audit trail (`None`: nothing about the
/// passcode happened, e.g. the card was gone).
fn passcode_outcome(result: &Result<(), CardError>) -> (Option<PasscodeOutcome>, Option<u8>) {
    let error = match result {
        Ok(()) => return (Some(PasscodeOutcome::Accepted), None),
        Err(e) => e,
    };
    match error.piv() {
        Some(PivError::WrongPasscode { tries_left, .. }) => {
            (Some(PasscodeOutcome::Wrong), Some(tries_left.get()))
        }
        Some(PivError::CardBlocked { .. }) => (Some(PasscodeOutcome::CardBlocked), Some(0)),
        Some(PivError::FinalTryNotConfirmed { .. }) => {
            (Some(PasscodeOutcome::RefusedFinalTry), Some(1))
        }
        Some(PivError::RepeatedFailedValue { .. }) => (Some(PasscodeOutcome::RefusedRepeat), None),
        Some(PivError::InvalidPasscode { .. }) => (Some(PasscodeOutcome::RefusedShape), None),
        Some(PivError::PinPadEntryEnded { how }) => (
            Some(match how {
                PinPadEnd::TimedOut => PasscodeOutcome::TimedOut,
                _ => PasscodeOutcome::Cancelled,
            }),
            None,
        ),
        _ => (None, None),
    }
}

/// The named D-Bus error for a card-layer failure (its text never holds a passcode).
fn card_error(error: CardError) -> AgentError {
    if error.is_card_gone() {
        return AgentError::NoCard(format!("{error}"));
    }
    match &error {
        CardError::UsePinPad { .. } => {
            return AgentError::InvalidArgument(format!("{error}; call LoginWithPinPad"));
        }
        CardError::NoPinPad { .. } => {
            return AgentError::InvalidArgument(format!("{error}; call Login"));
        }
        _ => {}
    }
    let message = error.to_string();
    match error.piv() {
        Some(PivError::WrongPasscode { .. }) => AgentError::WrongPasscode(message),
        Some(PivError::CardBlocked { .. }) => AgentError::CardBlocked(message),
        Some(PivError::FinalTryNotConfirmed { .. }) => AgentError::FinalTryNotConfirmed(format!(
            "{message}; call again with confirm_final_try = true"
        )),
        Some(PivError::RepeatedFailedValue { .. }) => AgentError::RepeatedPasscode(message),
        Some(PivError::InvalidPasscode { .. }) => {
            AgentError::InvalidArgument(format!("passcode: {message}"))
        }
        Some(PivError::Ledger { .. }) => AgentError::Internal(message),
        _ => AgentError::Card(message),
    }
}

fn role_info(p: &RoleProfile) -> RoleProfileInfo {
    RoleProfileInfo {
        id: p.id.clone(),
        job_role: p.job_role.clone(),
        ods_code: p.ods_code.clone(),
        organisation_name: p.organisation_name.clone(),
        activities: p.activities.clone(),
    }
}

/// The policy's view of a role profile; `None` when the endpoint sent ids the policy cannot
/// accept (then no role counts as selected, which refuses, never allows).
fn role_view(p: &RoleProfile) -> Option<RoleProfileView> {
    Some(RoleProfileView {
        id: RoleProfileId::new(&p.id).ok()?,
        ods_code: OdsCode::new(&p.ods_code).ok()?,
        activities: p
            .activities
            .iter()
            .filter_map(|a| Activity::new(a).ok())
            .collect(),
    })
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

mod demo_hooks;
mod staff;

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
    async fn bad_arguments_are_named_and_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path(), |_| {});
        let e = agent.authorise(&caller(), "fly", "FA123").unwrap_err();
        assert!(
            matches!(&e, AgentError::InvalidArgument(m) if m.starts_with("action")),
            "{e:?}"
        );
        let e = agent.authorise(&caller(), "download", "F A").unwrap_err();
        assert!(
            matches!(&e, AgentError::InvalidArgument(m) if m.starts_with("ods_code")),
            "{e:?}"
        );
        // The shape is checked before the card is looked for.
        let e = agent.login(&caller(), Some("12"), false).await.unwrap_err();
        assert!(
            matches!(&e, AgentError::InvalidArgument(m) if m.starts_with("passcode")),
            "{e:?}"
        );
        assert!(!format!("{e:?}").contains("12\""));
        let e = agent
            .login(&caller(), Some("1234"), false)
            .await
            .unwrap_err();
        assert!(matches!(e, AgentError::NoCard(_)), "{e:?}");
    }
}
