//! Log-in, resume of a locked or away session by the same card, role selection, log-out,
//! tickets and the session's end; the endpoint's answers mapped to what the holder can do.

use std::sync::Arc;
use std::time::Duration;

use cardgate_audit::{AuditEvent, AuditReceipt, CallerIdentity, EntryMethod};
use cardgate_card::{CardError, CardReport, Insertion, PasscodeSource};
use cardgate_certs::Verdict;
use cardgate_ipc::{RoleProfileInfo, SessionEndReason, Ticket};
use cardgate_piv::{FinalTry, Passcode, PasscodeStatus, PivError};
use cardgate_reader::ReaderName;
use cardgate_spine::SpineError;
use cardgate_spine::wire::{AuditAnchor, RoleProfile, Session as SpineSession};
use tokio::time::Instant;

use super::passcode::passcode_outcome;
use super::snapshot::passcode_expiry_warning;
use super::state::Session;
use super::{Agent, AgentEvent, lock, now, printable, staff};
use crate::error::CoreError;

/// A passcode as it reaches the card (typed on the host, or on the reader's PIN pad), with
/// the holder's word on the final try; its shape checked before anything else.
pub(super) struct PasscodeEntry {
    source: PasscodeSource,
    method: EntryMethod,
    final_try: FinalTry,
}

impl PasscodeEntry {
    /// `passcode` `None`: the PIN pad. A malformed passcode never costs a try, nor a queue
    /// slot: refused here (`InvalidArgument`, the value never quoted).
    pub(super) fn new(passcode: Option<&str>, confirm_final_try: bool) -> Result<Self, CoreError> {
        let source = match passcode {
            Some(value) => PasscodeSource::Host(
                Passcode::new(value.to_owned())
                    .map_err(|e| CoreError::InvalidArgument(format!("passcode: {e}")))?,
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
        Ok(PasscodeEntry {
            source,
            method,
            final_try,
        })
    }
}

/// A passcode verified on the card of one insertion: what the session or the signature that
/// follows needs.
pub(super) struct Verified {
    pub(super) reader: ReaderName,
    pub(super) insertion: Insertion,
    pub(super) report: CardReport,
    /// The generation when the card was looked at.
    pub(super) generation: u64,
    pub(super) actor: crate::actor::CardActor,
}

/// How long the card may take to sign during a login before the login gives up.
pub(super) const SIGN_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn role_info(p: &RoleProfile) -> RoleProfileInfo {
    RoleProfileInfo {
        id: p.id.clone(),
        job_role: p.job_role.clone(),
        ods_code: p.ods_code.clone(),
        organisation_name: p.organisation_name.clone(),
        activities: p.activities.clone(),
    }
}

impl Agent {
    /// `Login` / `LoginWithPinPad`: verify the passcode on the card, log in at the endpoint
    /// with the card signing, and bind the session to this insertion.
    pub async fn login(
        &self,
        caller: &CallerIdentity,
        passcode: Option<&str>,
        confirm_final_try: bool,
    ) -> Result<Vec<RoleProfileInfo>, CoreError> {
        let entry = PasscodeEntry::new(passcode, confirm_final_try)?;
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            method = ?entry.method,
            "log-in requested"
        );
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let verified = self.verify_holder(caller, entry, true).await?;
        self.open_session(caller, &verified).await
    }

    /// Verifies the holder's passcode on the card the agent acts on, under the card layer's
    /// policy, audited as a passcode attempt. With `refuse_open_session`, a card whose
    /// session is already open is refused before anything is sent (`Login`); a web sign-in
    /// asks the passcode again in an open session. The caller holds `session_changes`.
    pub(super) async fn verify_holder(
        &self,
        caller: &CallerIdentity,
        entry: PasscodeEntry,
        refuse_open_session: bool,
    ) -> Result<Verified, CoreError> {
        let PasscodeEntry {
            source,
            method,
            final_try,
        } = entry;
        let (reader, insertion, report, generation) = {
            let state = lock(&self.shared.state);
            let Some((reader, card)) = state.active_card() else {
                return Err(CoreError::NoCard("Insert your smartcard to log in.".into()));
            };
            let Some(report) = card.report.clone() else {
                return Err(CoreError::NoCard(match &card.problem {
                    Some(problem) => format!("The card could not be read: {problem}"),
                    None => "The card is still being read; try again in a moment.".into(),
                }));
            };
            if refuse_open_session && state.live_session().is_some_and(|s| s.detached.is_none()) {
                return Err(CoreError::InvalidArgument(
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
            return Err(CoreError::CardFault(format!(
                "{} {} (no passcode try was used)",
                reason.message, reason.next_step
            )));
        }
        let identity = &report.identity;
        let actor = self.actor(&reader)?;

        let verified = actor.verify(insertion.clone(), source, final_try).await;
        let (outcome, tries_left) = passcode_outcome(&verified);
        if let Some(outcome) = outcome {
            self.audit_async(AuditEvent::PasscodeAttempt {
                caller: Some(caller.clone()),
                reader: reader.to_string(),
                card_serial: Some(identity.card_serial.clone()),
                holder: Some(identity.holder_uuid.clone()),
                entry_method: method,
                outcome,
                tries_left,
            })
            .await?;
        }
        if let Err(e) = verified {
            // The tries left changed: the properties say so before the answer does.
            self.note_attempt(&insertion, &Err(&e));
            return Err(staff::with_unlock_paths(e, &report));
        }
        self.note_attempt(&insertion, &Ok(()));
        Ok(Verified {
            reader,
            insertion,
            report,
            generation,
            actor,
        })
    }

    /// After the passcode was verified: resumes the detached session of this card, or logs
    /// in at the endpoint with the card signing and binds the new session to this insertion.
    /// The caller holds `session_changes`.
    pub(super) async fn open_session(
        &self,
        caller: &CallerIdentity,
        verified: &Verified,
    ) -> Result<Vec<RoleProfileInfo>, CoreError> {
        let Verified {
            reader,
            insertion,
            report,
            generation,
            actor,
        } = verified;
        let (reader, insertion, report, generation) = (reader, insertion, report, *generation);
        let identity = &report.identity;
        if let Some(resumed) = self.resume(reader, insertion, report, caller).await? {
            self.emit(AgentEvent::PropertiesChanged);
            return Ok(resumed);
        }

        let signer = actor
            .signer(
                insertion.clone(),
                identity.auth_certificate_der.clone(),
                SIGN_TIMEOUT,
            )
            .map_err(|e| CoreError::CardFault(e.to_string()))?;
        let spine = match self.shared.endpoint.login(Arc::new(signer)).await {
            Ok(session) => {
                lock(&self.shared.state).endpoint_unreachable = false;
                session
            }
            // No session: the passcode verified above must not stay verified on the card.
            Err(SpineError::KeyDoesNotMatchCertificate) => {
                let _ = self.forget_verification(reader, insertion);
                return Err(self.key_does_not_match(&identity.card_serial));
            }
            Err(e) => {
                let _ = self.forget_verification(reader, insertion);
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
                .get(reader)
                .and_then(|slot| slot.card.as_ref())
                .is_some_and(|card| &card.insertion == insertion);
            if still_here && self.shared.inspector.is_current(insertion) {
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
            return Err(CoreError::NoCard(
                "The card was removed during log-in; insert it and log in again.".into(),
            ));
        };
        tracing::info!(
            generation = session_generation,
            previous = generation,
            "session started"
        );
        let audited = self
            .audit_receipt_async(AuditEvent::SessionStarted {
                caller: Some(caller.clone()),
                card_serial: identity.card_serial.clone(),
                holder: identity.holder_uuid.clone(),
                session_generation,
            })
            .await;
        let started = match audited {
            Ok(receipt) => receipt,
            Err(e) => {
                // Fail closed: a session that is not on the audit trail must not exist.
                self.end_session(SessionEndReason::LoggedOut, Some(caller));
                return Err(e);
            }
        };
        self.anchor_at_the_endpoint(&spine, started);
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

    /// Hands the endpoint the chain head at this log-in (the `session_started` entry) in the
    /// background: the log-in does not wait for it, and an endpoint that refuses it (an older
    /// one) costs a warning in the log, not the session.
    fn anchor_at_the_endpoint(&self, spine: &SpineSession, started: AuditReceipt) {
        let endpoint = Arc::clone(&self.shared.endpoint);
        let spine = spine.clone();
        tokio::spawn(async move {
            let anchor = AuditAnchor {
                seq: started.seq,
                hash: started.hash.to_string(),
            };
            match endpoint.anchor_audit(&spine, &anchor).await {
                Ok(()) => tracing::info!(
                    seq = anchor.seq,
                    "audit chain head anchored at the endpoint"
                ),
                Err(e) => tracing::warn!(
                    seq = anchor.seq,
                    error = %e,
                    "the endpoint did not keep the audit chain head"
                ),
            }
        });
    }

    /// After the passcode was verified on the card of `insertion`: if a session is detached
    /// from its card (`session-lock`, `mobility`) and this is the same card (holder, card
    /// serial, certificate serial), the session is bound to this insertion again with its
    /// endpoint session and selected role unchanged (no endpoint log-in), and its role
    /// profiles are returned. Another card's log-in ends the detached session first
    /// (`card-swapped`) and goes on as a fresh log-in (`None`).
    pub(super) async fn resume(
        &self,
        reader: &ReaderName,
        insertion: &Insertion,
        report: &CardReport,
        caller: &CallerIdentity,
    ) -> Result<Option<Vec<RoleProfileInfo>>, CoreError> {
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
        let mut audited = self
            .audit_async(AuditEvent::SessionStarted {
                caller: Some(caller.clone()),
                card_serial,
                holder: holder.clone(),
                session_generation: generation,
            })
            .await;
        if audited.is_ok() {
            audited = self
                .audit_async(AuditEvent::Note {
                    holder: Some(holder.clone()),
                    author: Some("cardgated".into()),
                    text: format!(
                        "session resumed by the same card and its passcode (endpoint session {session_id} kept)"
                    ),
                })
                .await;
        }
        if let Err(e) = audited {
            self.end_session(SessionEndReason::LoggedOut, Some(caller));
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
    pub(super) fn note_attempt(&self, insertion: &Insertion, result: &Result<(), &CardError>) {
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

    /// The endpoint answered that session `session_id` is over (idle there, or logged out
    /// elsewhere): the local session ends too (`endpoint-ended`), if it is still that one.
    pub(crate) fn ended_by_endpoint(&self, session_id: &str) -> CoreError {
        let same = lock(&self.shared.state)
            .session
            .as_ref()
            .is_some_and(|s| s.spine.session_id == session_id);
        if same {
            self.end_session(SessionEndReason::EndpointEnded, None);
        }
        CoreError::NotLoggedIn(
            "The national service has ended the session (idle there, or logged out elsewhere); \
             log in again with your smartcard."
                .into(),
        )
    }

    pub(super) fn endpoint_error(&self, e: SpineError) -> CoreError {
        match e {
            SpineError::CardRemoved => {
                CoreError::NoCard("The card was removed during log-in.".into())
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
                CoreError::EndpointUnavailable(e.to_string())
            }
        }
    }

    /// `SelectRoleProfile`: selects or switches the role within the session.
    pub async fn select_role_profile(
        &self,
        caller: &CallerIdentity,
        id: &str,
    ) -> Result<(), CoreError> {
        if id.is_empty() || id.len() > 128 {
            return Err(CoreError::InvalidArgument(
                "id: a role profile id from Login's answer (1 to 128 characters)".into(),
            ));
        }
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let (spine, generation) = {
            let state = lock(&self.shared.state);
            let Some(session) = state.live_session() else {
                return Err(CoreError::NotLoggedIn(
                    "Log in before choosing a role.".into(),
                ));
            };
            if session.detached.is_some() {
                // Mobility keeps work going without the card; changing who one acts as
                // needs the card back.
                return Err(CoreError::NoCard(
                    "Insert your smartcard to change role.".into(),
                ));
            }
            if !session.spine.role_profiles.iter().any(|p| p.id == id) {
                return Err(CoreError::UnknownRoleProfile(format!(
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
                return Err(CoreError::NoCard(
                    "The card was removed while the role was being selected.".into(),
                ));
            }
            state.generation += 1;
            let new_generation = state.generation;
            state.last_activity = Instant::now();
            let Some(session) = state.session.as_mut() else {
                return Err(CoreError::NotLoggedIn("The session has ended.".into()));
            };
            let profile = updated
                .role_profiles
                .iter()
                .find(|p| p.id == id)
                .cloned()
                .ok_or_else(|| CoreError::UnknownRoleProfile(format!("id: {}", printable(id))))?;
            let previous = session.selected.replace(profile.clone());
            session.spine = updated;
            (session.holder.clone(), profile, previous, new_generation)
        };
        let audit_profile = |p: &RoleProfile| cardgate_audit::RoleProfile {
            role: p.job_role.clone(),
            ods: p.ods_code.clone(),
        };
        self.audit_async(AuditEvent::RoleSelected {
            caller: Some(caller.clone()),
            holder,
            session_generation: new_generation,
            profile: audit_profile(&profile),
            previous: previous.as_ref().map(audit_profile),
        })
        .await?;
        self.emit(AgentEvent::PropertiesChanged);
        Ok(())
    }

    /// The role profiles of the live session bound to the card in the reader, if there is
    /// one: what `RequestLogin` answers without asking for the passcode again.
    pub fn live_role_profiles(&self) -> Option<Vec<RoleProfileInfo>> {
        let state = lock(&self.shared.state);
        state
            .live_session()
            .filter(|s| s.detached.is_none())
            .map(|s| s.spine.role_profiles.iter().map(role_info).collect())
    }

    /// `Logout`.
    pub async fn logout(&self, caller: &CallerIdentity) -> Result<(), CoreError> {
        let _one_at_a_time = self.shared.session_changes.lock().await;
        if lock(&self.shared.state).session.is_none() {
            return Err(CoreError::NotLoggedIn(
                "There is no session to log out of.".into(),
            ));
        }
        // Answered once the card no longer holds the verified passcode.
        if let Some(forgotten) = self.end_session(SessionEndReason::LoggedOut, Some(caller)) {
            let _ = forgotten.await;
        }
        Ok(())
    }

    /// Ends the session (if any) for `reason`: generation first. Returns the job dropping the
    /// card's verified passcode, if the card is still in.
    pub(super) fn end_session(
        &self,
        reason: SessionEndReason,
        caller: Option<&CallerIdentity>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let ended = {
            let mut state = lock(&self.shared.state);
            state.session.take().map(|session| {
                state.generation += 1;
                (session, state.generation)
            })
        };
        let (session, generation) = ended?;
        let forgotten = self.session_over(session, reason, generation, caller);
        self.emit(AgentEvent::PropertiesChanged);
        forgotten
    }

    /// `GetTicket`.
    pub fn ticket(&self) -> Result<Ticket, CoreError> {
        let state = lock(&self.shared.state);
        let Some(session) = state.live_session() else {
            return Err(CoreError::NotLoggedIn("Log in to get a ticket.".into()));
        };
        let Some(role) = &session.selected else {
            return Err(CoreError::NotLoggedIn(
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
}
