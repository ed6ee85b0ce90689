//! The card lifecycle: reader events, a card read after insertion, its removal (removal
//! first: the generation is bumped and the session dropped, locked or detached before
//! anything else), a swapped card never inheriting a session, and reading a card again.

use std::sync::Arc;
use std::time::Duration;

use cardgate_audit::{AuditEvent, CallerIdentity};
use cardgate_card::{CardError, CardReport, Insertion};
use cardgate_certs::FindingKind;
use cardgate_ipc::SessionEndReason;
use cardgate_reader::{ReaderEvent, ReaderEventKind, ReaderName};
use tokio::time::Instant;

use super::state::{CardSlot, Detached, Session, State};
use super::{Agent, AgentEvent, audit_end_reason, lock};
use crate::actor::{CardActor, VerificationEnded};
use crate::config::RemovalMode;
use crate::workstation::{CardStanding, RemovedCard};

impl Agent {
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
    pub(super) fn card_gone(&self, reader: &ReaderName, detached: bool) {
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
            self.session_over(session, SessionEndReason::CardRemoved, generation, None);
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
    pub(super) fn take_swapped(state: &mut State, report: &CardReport) -> Option<(Session, u64)> {
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
    pub(super) fn swapped_over(&self, ended: Option<(Session, u64)>, report: &CardReport) {
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
            let _ = self.session_over(session, SessionEndReason::CardSwapped, generation, None);
        }
    }

    /// After a session was taken out of the state: audit, signal, endpoint logout, and the
    /// card's verified passcode dropped if the card is still in its reader. Returns that last
    /// job, for a caller that answers only once it is done (`Logout`).
    pub(super) fn session_over(
        &self,
        session: Session,
        reason: SessionEndReason,
        generation: u64,
        caller: Option<&CallerIdentity>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        tracing::info!(reason = reason.as_str(), generation, "session ended");
        self.audit_after_the_fact(&AuditEvent::SessionEnded {
            caller: caller.cloned(),
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
    /// without the passcode. A card that refuses P1 = FF is reset instead
    /// (`SCARD_RESET_CARD`), which is logged and noted on the audit trail with the status word
    /// it refused with; the session is over either way. Then the actor lets go of the
    /// connection it held open for the session.
    pub(super) fn forget_verification(
        &self,
        reader: &ReaderName,
        insertion: &Insertion,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (still_in, holder, serial) = {
            let state = lock(&self.shared.state);
            let card = state
                .readers
                .get(reader)
                .and_then(|slot| slot.card.as_ref())
                .filter(|card| &card.insertion == insertion);
            let identity = card.and_then(|c| c.report.as_ref()).map(|r| &r.identity);
            (
                card.is_some(),
                identity.map(|i| i.holder_uuid.clone()),
                identity.map(|i| i.card_serial.as_str().to_owned()),
            )
        };
        let actor = self.actor(reader).ok()?;
        if !still_in {
            actor.release(insertion.clone());
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let insertion = insertion.clone();
        let agent = self.clone();
        let reader = reader.clone();
        Some(runtime.spawn(async move {
            match actor.end_verification(insertion).await {
                Ok(VerificationEnded::Forgotten) => {
                    tracing::debug!("the card's passcode is no longer verified")
                }
                Ok(VerificationEnded::CardReset { refused_with }) => {
                    let serial = serial.unwrap_or_else(|| "unknown".into());
                    tracing::warn!(
                        %reader,
                        card_serial = %serial,
                        status = %refused_with,
                        "the card refused to forget its verified passcode (VERIFY P1 = FF); it was reset"
                    );
                    let text = format!(
                        "card {serial} in {reader} reset (SCARD_RESET_CARD) at the end of the \
                         session: it refused to forget the verified passcode (VERIFY P1 = FF \
                         answered {:04X})",
                        refused_with.to_u16()
                    );
                    // The reset has happened; a failed note is logged by the audit helper.
                    let _ = agent
                        .audit_async(AuditEvent::Note {
                            holder,
                            author: Some("cardgated".into()),
                            text,
                        })
                        .await;
                }
                Err(e) if e.is_card_gone() => {
                    tracing::debug!(error = %e, "the card left before its passcode state was dropped")
                }
                Err(e) => tracing::warn!(error = %e, "the card kept its verified passcode"),
            }
        }))
    }

    /// A new card: remember the insertion, read it on the reader's actor.
    pub(super) fn card_arrived(&self, insertion: Insertion) {
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
    pub(super) fn card_read(&self, insertion: Insertion, result: Result<CardReport, CardError>) {
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

    /// Reads the card again and waits for it, so what the card now says (tries left after
    /// an unlock) is in the properties before the method that changed it answers.
    pub(crate) async fn reinspect_now(&self, actor: &CardActor, insertion: Insertion) {
        let result = actor.inspect(insertion.clone()).await;
        if result.is_ok() {
            self.card_read_quietly(insertion, result);
        }
    }

    /// Reads the card again in the background (a newer CRL arrived).
    pub(super) fn reinspect(&self, actor: &CardActor, insertion: Insertion) {
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
    pub(super) fn card_read_quietly(
        &self,
        insertion: Insertion,
        result: Result<CardReport, CardError>,
    ) {
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
}
