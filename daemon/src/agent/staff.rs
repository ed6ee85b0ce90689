//! The staff tasks of the agent core (`docs/ipc.md`, "Staff tasks"): the three unlock paths
//! in the guidance's order (self-service with a one-time code, a Sponsor/LSA for someone
//! else's card, an unlock code from the RA), certificate self-renewal (a new key made on the
//! card, a request signed by it, the new certificate written), and Temporary Access Cards.
//!
//! Rules kept here, as in the rest of the core: every argument is checked before the card or
//! the endpoint is touched (`InvalidArgument` names it, never quoting a secret); eligibility
//! (old-generation cards, renewal windows, a Sponsor's own card) is refused before anything is
//! sent (`NotEligible`); unlock codes released by the endpoint are used at once on the card
//! and never leave the agent; every outcome is on the audit trail, never a value.

use cardgate_audit::{Outcome, RenewalSubject, UnlockPath};
use cardgate_certs::RenewalPath;
use cardgate_ipc::{SelfServiceStarted, TacHistoryEntry, TacInfo, TacUse};
use cardgate_piv::{CardSerial, HolderUuid, ManagementKey, Slot, UnlockCode};
use cardgate_spine::SpineClient;
use cardgate_spine::wire::{
    ErrorCode, Secret, TacAction, TacActivateRequest, TacRecord, TacState, TacUsageRequest,
    activity,
};
use zeroize::Zeroizing;

use super::*;
use crate::pending_renewals::HeldCertificate;
use crate::staff_jobs::{self, HostTyped};

/// How long a renewal's card and endpoint steps may take together before the agent gives up
/// waiting (on-card key generation takes seconds to a minute).
const RENEWAL_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The card a staff task acts on: its reader, insertion and what was read from it.
struct TargetCard {
    reader: ReaderName,
    insertion: Insertion,
    report: CardReport,
}

/// The live session a Sponsor/LSA task runs under.
struct SponsorSession {
    holder: HolderUuid,
    card_serial: CardSerial,
    spine: SpineSession,
    activities: Vec<String>,
}

fn invalid(argument: &str, rule: impl std::fmt::Display) -> AgentError {
    AgentError::InvalidArgument(format!("{argument}: {rule}"))
}

fn holder_argument(argument: &str, value: &str) -> Result<HolderUuid, AgentError> {
    HolderUuid::new(value).map_err(|_| {
        invalid(
            argument,
            "must be the holder's 12-digit UUID (as on the card)",
        )
    })
}

fn tac_serial_argument(value: &str) -> Result<CardSerial, AgentError> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "tac_serial",
            "must be the TAC's card number, 1 to 20 digits",
        ));
    }
    CardSerial::new(value).map_err(|_| invalid("tac_serial", "must be 1 to 20 digits"))
}

fn text_argument(argument: &str, value: &str) -> Result<String, AgentError> {
    let len = value.chars().count();
    if len == 0 || len > 64 || value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(
            argument,
            "must be 1 to 64 characters, no control characters or surrounding spaces",
        ));
    }
    Ok(value.to_owned())
}

fn new_passcode_argument(value: &str) -> Result<Passcode, AgentError> {
    Passcode::new(value.to_owned()).map_err(|e| invalid("new_passcode", e))
}

/// What to tell a holder whose card is an older generation (no unlock, no renewal).
const OLD_GENERATION: &str = "This is an older smartcard (its number begins 01, 02 or 03): it \
     cannot be unlocked or renewed. Contact your Registration Authority (RA) for a new card.";

/// A warning's sentence for `Status`: a locked card's names the unlock paths open to its
/// holder ([`unlock_paths`]), the others their own next step.
pub(super) fn warning_text(report: &CardReport, warning: &cardgate_card::HolderWarning) -> String {
    match warning.kind {
        cardgate_card::WarningKind::PasscodeLocked => {
            format!("{} {}", warning.message, unlock_paths(report))
        }
        _ => format!("{} {}", warning.message, warning.next_step),
    }
}

/// `CardBlocked` from a log-in, with the unlock paths open to the holder added.
pub(super) fn with_unlock_paths(error: AgentError, report: &CardReport) -> AgentError {
    match error {
        AgentError::CardBlocked(message) => {
            AgentError::CardBlocked(format!("{message}. {}", unlock_paths(report)))
        }
        other => other,
    }
}

/// The unlock paths open to the holder of `report`'s card, in the guidance's order, for the
/// message a locked card gets.
pub(super) fn unlock_paths(report: &CardReport) -> String {
    if report.identity.card_serial.is_old_generation() || report.certificate.old_generation {
        return OLD_GENERATION.to_owned();
    }
    "To unlock it: (1) yourself, if you registered an email or mobile number for self-service \
     unlock: `cardgate unlock` sends you a one-time code; (2) a Sponsor or Local Smartcard \
     Administrator (LSA) at the pharmacy, with their own card: `cardgate unlock --sponsor` \
     (an LSA cannot unlock their own card); (3) the Registration Authority (RA): `cardgate \
     unlock --code` with the unlock code they give you."
        .to_owned()
}

impl Agent {
    fn spine_client(&self) -> Result<&SpineClient, AgentError> {
        self.shared.endpoint.spine_client().ok_or_else(|| {
            AgentError::EndpointUnavailable(
                "this agent's endpoint offers log-in only; staff tasks are not available".into(),
            )
        })
    }

    /// The card a holder's unlock acts on: a locked card if one is in a reader, else the card
    /// the agent acts on (a holder who forgot the passcode may reset it before it locks).
    fn unlock_target(&self) -> Result<TargetCard, AgentError> {
        let state = lock(&self.shared.state);
        let locked = state.readers.iter().find_map(|(name, slot)| {
            let card = slot.card.as_ref()?;
            let report = card.report.as_ref()?;
            (report.passcode == PasscodeStatus::Blocked).then_some((name, card, report))
        });
        let chosen = match locked {
            Some(found) => Some(found),
            None => state
                .active_card()
                .and_then(|(name, card)| card.report.as_ref().map(|r| (name, card, r))),
        };
        let Some((reader, card, report)) = chosen else {
            return Err(AgentError::NoCard(
                "Insert the smartcard to unlock (if it was just inserted, wait a moment for it \
                 to be read)."
                    .into(),
            ));
        };
        Ok(TargetCard {
            reader: reader.clone(),
            insertion: card.insertion.clone(),
            report: report.clone(),
        })
    }

    /// The live session of a Sponsor/LSA, with its card in the reader and a role selected.
    fn sponsor_session(&self, what: &str) -> Result<SponsorSession, AgentError> {
        let state = lock(&self.shared.state);
        let Some(session) = state.live_session() else {
            return Err(AgentError::NotLoggedIn(format!(
                "{what} needs a Sponsor or LSA logged in with their own card."
            )));
        };
        let Some(role) = &session.selected else {
            return Err(AgentError::NotLoggedIn(format!(
                "{what} needs the Sponsor or LSA role profile selected (`cardgate role ID`)."
            )));
        };
        Ok(SponsorSession {
            holder: session.holder.clone(),
            card_serial: session.card_serial.clone(),
            spine: session.spine.clone(),
            activities: role.activities.clone(),
        })
    }

    /// [`Agent::staff_endpoint_error`] for a call made under the session `spine`: the
    /// endpoint saying that session is over ends the local one too (`endpoint-ended`), as a
    /// role change does, and the caller is told to log in again.
    fn session_call_error(&self, spine: &SpineSession, e: SpineError) -> AgentError {
        match e {
            SpineError::SessionExpired => self.ended_by_endpoint(&spine.session_id),
            e => self.staff_endpoint_error(e),
        }
    }

    /// The named error for an endpoint refusal of a staff task.
    fn staff_endpoint_error(&self, e: SpineError) -> AgentError {
        let message = e.to_string();
        match e.code() {
            Some(
                ErrorCode::OwnCard
                | ErrorCode::OldGenerationCard
                | ErrorCode::NoRegisteredContact
                | ErrorCode::RenewalNotDue
                | ErrorCode::CertificateExpired
                | ErrorCode::TacInUse
                | ErrorCode::TacNotActive,
            ) => AgentError::NotEligible(message),
            Some(ErrorCode::ForbiddenActivity) => AgentError::NotPermitted(message),
            Some(ErrorCode::WrongOneTimeCode) => invalid("one_time_code", message),
            Some(ErrorCode::UnknownUser) => invalid("holder_uuid", message),
            Some(ErrorCode::UnknownCard) => invalid("card_serial", message),
            _ => match e {
                SpineError::CertificateExpired => AgentError::NotEligible(message),
                e => self.endpoint_error(e),
            },
        }
    }

    fn audit_unlock(
        &self,
        target: (&CardSerial, &HolderUuid),
        path: UnlockPath,
        by: Option<&HolderUuid>,
        failure: Option<&AgentError>,
    ) -> Result<(), AgentError> {
        let (outcome, reason_code) = outcome_of(failure);
        self.audit(&AuditEvent::UnlockCompleted {
            card_serial: Some(target.0.clone()),
            holder: Some(target.1.clone()),
            path,
            by: by.cloned(),
            outcome,
            reason_code,
        })
    }

    /// RESET RETRY COUNTER with `code` and `new_passcode` on `target` through its actor, then
    /// the card is read again (tries left, the lock gone).
    async fn reset_with(
        &self,
        target: &TargetCard,
        code: UnlockCode,
        new_passcode: Passcode,
        final_try: FinalTry,
    ) -> Result<(), AgentError> {
        let actor = self.actor(&target.reader)?;
        let result = staff_jobs::run(
            &actor,
            target.insertion.clone(),
            HostTyped::Yes,
            move |client| client.reset_retry_counter(&code, &new_passcode, final_try),
        )
        .await;
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(piv)) => Err(unlock_error(CardError::Card {
                reader: target.reader.clone(),
                source: piv,
            })),
            Err(card) => Err(unlock_error(card)),
        };
        self.reinspect_now(&actor, target.insertion.clone()).await;
        result
    }

    /// `StartSelfServiceUnlock`: the endpoint sends a one-time code to the holder's
    /// registered contact. Refused early for an old-generation card.
    pub async fn start_self_service_unlock(
        &self,
        caller: &CallerIdentity,
    ) -> Result<SelfServiceStarted, AgentError> {
        let target = self.unlock_target()?;
        let identity = &target.report.identity;
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            "self-service unlock requested"
        );
        self.audit(&AuditEvent::UnlockRequested {
            card_serial: Some(identity.card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            path: UnlockPath::SelfService,
            by: None,
        })?;
        let result = if identity.card_serial.is_old_generation() {
            Err(AgentError::NotEligible(OLD_GENERATION.into()))
        } else {
            self.spine_client()?
                .start_self_service_unlock(
                    identity.holder_uuid.as_str(),
                    identity.card_serial.as_str(),
                )
                .await
                .map_err(|e| self.staff_endpoint_error(e))
        };
        match result {
            Ok(started) => Ok(SelfServiceStarted {
                request_id: started.request_id,
                sent_to: started.sent_to,
            }),
            Err(e) => {
                self.audit_unlock(
                    (&identity.card_serial, &identity.holder_uuid),
                    UnlockPath::SelfService,
                    None,
                    Some(&e),
                )?;
                Err(e)
            }
        }
    }

    /// `UnlockWithOneTimeCode`: the code releases the card's unlock code, used at once.
    pub async fn unlock_with_one_time_code(
        &self,
        caller: &CallerIdentity,
        request_id: &str,
        one_time_code: &str,
        new_passcode: &str,
    ) -> Result<(), AgentError> {
        if request_id.is_empty()
            || request_id.len() > 128
            || !request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "request_id",
                "must be the id StartSelfServiceUnlock returned (letters, digits, - and _)",
            ));
        }
        if one_time_code.len() != 6 || !one_time_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "one_time_code",
                "must be the 6 digits sent to your registered email or mobile",
            ));
        }
        let new_passcode = new_passcode_argument(new_passcode)?;
        let one_time_code = Secret::new(one_time_code);
        let target = self.unlock_target()?;
        let identity = target.report.identity.clone();
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            "self-service unlock confirmed"
        );
        if identity.card_serial.is_old_generation() {
            return Err(AgentError::NotEligible(OLD_GENERATION.into()));
        }
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let result = match self
            .spine_client()?
            .confirm_self_service_unlock(request_id, &one_time_code)
            .await
        {
            Ok(code) => {
                self.reset_with(&target, code, new_passcode, FinalTry::Confirmed)
                    .await
            }
            Err(e) => Err(self.staff_endpoint_error(e)),
        };
        self.audit_unlock(
            (&identity.card_serial, &identity.holder_uuid),
            UnlockPath::SelfService,
            None,
            result.as_ref().err(),
        )?;
        result
    }

    /// `UnlockWithCode`: the RA's unlock code, typed by the holder, with a new passcode.
    pub async fn unlock_with_code(
        &self,
        caller: &CallerIdentity,
        unlock_code: &str,
        new_passcode: &str,
        confirm_final_try: bool,
    ) -> Result<(), AgentError> {
        let code =
            UnlockCode::new(unlock_code.to_owned()).map_err(|e| invalid("unlock_code", e))?;
        let new_passcode = new_passcode_argument(new_passcode)?;
        let target = self.unlock_target()?;
        let identity = target.report.identity.clone();
        tracing::info!(uid = caller.uid, pid = caller.pid, "unlock with an RA code");
        self.audit(&AuditEvent::UnlockRequested {
            card_serial: Some(identity.card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            path: UnlockPath::RegistrationAuthority,
            by: None,
        })?;
        let result = if identity.card_serial.is_old_generation() {
            Err(AgentError::NotEligible(OLD_GENERATION.into()))
        } else {
            let _one_at_a_time = self.shared.session_changes.lock().await;
            let final_try = if confirm_final_try {
                FinalTry::Confirmed
            } else {
                FinalTry::NotConfirmed
            };
            self.reset_with(&target, code, new_passcode, final_try)
                .await
        };
        self.audit_unlock(
            (&identity.card_serial, &identity.holder_uuid),
            UnlockPath::RegistrationAuthority,
            None,
            result.as_ref().err(),
        )?;
        result
    }

    /// `SponsorUnlock`: a Sponsor/LSA, logged in with their own card and a role with
    /// `admin.unlock`, unlocks another holder's card that is in a reader of this workstation,
    /// with the holder there to choose `new_passcode`. The unlock code the endpoint releases
    /// goes straight to the card and never leaves the agent.
    pub async fn sponsor_unlock(
        &self,
        caller: &CallerIdentity,
        holder_uuid: &str,
        card_serial: &str,
        new_passcode: &str,
    ) -> Result<(), AgentError> {
        let holder = holder_argument("holder_uuid", holder_uuid)?;
        let serial = CardSerial::new(card_serial).map_err(|_| {
            invalid(
                "card_serial",
                "must be the card's number, 1 to 32 letters or digits",
            )
        })?;
        let new_passcode = new_passcode_argument(new_passcode)?;
        let sponsor = self.sponsor_session("Unlocking someone else's card")?;
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            "sponsor unlock requested"
        );
        self.audit(&AuditEvent::UnlockRequested {
            card_serial: Some(serial.clone()),
            holder: Some(holder.clone()),
            path: UnlockPath::Sponsor,
            by: Some(sponsor.holder.clone()),
        })?;
        let result = self
            .sponsor_unlock_checked(&sponsor, &holder, &serial, new_passcode)
            .await;
        self.audit_unlock(
            (&serial, &holder),
            UnlockPath::Sponsor,
            Some(&sponsor.holder),
            result.as_ref().err(),
        )?;
        result
    }

    async fn sponsor_unlock_checked(
        &self,
        sponsor: &SponsorSession,
        holder: &HolderUuid,
        serial: &CardSerial,
        new_passcode: Passcode,
    ) -> Result<(), AgentError> {
        if holder == &sponsor.holder || serial == &sponsor.card_serial {
            return Err(AgentError::NotEligible(
                "A Sponsor or LSA cannot unlock their own card: ask another Sponsor or LSA, or \
                 the Registration Authority (RA)."
                    .into(),
            ));
        }
        if serial.is_old_generation() {
            return Err(AgentError::NotEligible(OLD_GENERATION.into()));
        }
        if !sponsor
            .activities
            .iter()
            .any(|a| a == activity::ADMIN_UNLOCK)
        {
            return Err(AgentError::NotPermitted(
                "the selected role profile does not allow unlocking cards (admin.unlock): select \
                 the Sponsor or LSA role"
                    .into(),
            ));
        }
        // The holder's card must be here: the code goes straight to it.
        let target = {
            let state = lock(&self.shared.state);
            state.readers.iter().find_map(|(name, slot)| {
                let card = slot.card.as_ref()?;
                let report = card.report.as_ref()?;
                (report.identity.card_serial == *serial && report.identity.holder_uuid == *holder)
                    .then(|| TargetCard {
                        reader: name.clone(),
                        insertion: card.insertion.clone(),
                        report: report.clone(),
                    })
            })
        };
        let Some(target) = target else {
            return Err(AgentError::NoCard(format!(
                "Card {} of holder {} is not in a reader here: put it in the other reader \
                 (nothing was asked of the endpoint).",
                serial.as_str(),
                holder.as_str()
            )));
        };
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let code = self
            .spine_client()?
            .sponsor_unlock(&sponsor.spine, holder.as_str(), serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        self.reset_with(&target, code, new_passcode, FinalTry::Confirmed)
            .await
    }

    // ------------------------------------------------------------------ renewal

    fn emit_progress(&self, step: &str, percent: u32) {
        self.emit(AgentEvent::RenewalProgress {
            step: step.to_owned(),
            percent,
        });
    }

    /// `RenewCertificate`: the session holder's own certificate, renewed with a new key made
    /// on the card. Every check that can refuse runs before the card's key is replaced.
    pub async fn renew_certificate(&self, caller: &CallerIdentity) -> Result<i64, AgentError> {
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let (target, spine) = {
            let state = lock(&self.shared.state);
            let Some(session) = state.live_session() else {
                // An old-generation card is told why at once, logged in or not.
                let old_card = state
                    .active_card()
                    .and_then(|(_, card)| card.report.as_ref())
                    .is_some_and(|r| r.identity.card_serial.is_old_generation());
                return Err(if old_card {
                    AgentError::NotEligible(OLD_GENERATION.into())
                } else {
                    AgentError::NotLoggedIn(
                        "Log in with your smartcard to renew its certificate.".into(),
                    )
                });
            };
            if session.detached.is_some() {
                return Err(AgentError::NoCard(
                    "Insert your smartcard to renew its certificate.".into(),
                ));
            }
            let card = state
                .readers
                .get(&session.reader)
                .and_then(|slot| slot.card.as_ref())
                .filter(|c| c.insertion == session.insertion);
            let Some(report) = card.and_then(|c| c.report.clone()) else {
                return Err(AgentError::NoCard(
                    "Insert your smartcard to renew its certificate.".into(),
                ));
            };
            (
                TargetCard {
                    reader: session.reader.clone(),
                    insertion: session.insertion.clone(),
                    report,
                },
                session.spine.clone(),
            )
        };
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            "certificate renewal requested"
        );
        let identity = target.report.identity.clone();
        let result = self.renew_checked(&target, &spine).await;
        let (outcome, reason_code) = outcome_of(result.as_ref().err());
        self.audit(&AuditEvent::Renewal {
            card_serial: Some(identity.card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            subject: RenewalSubject::Certificates,
            by: None,
            outcome,
            reason_code,
        })?;
        result
    }

    async fn renew_checked(
        &self,
        target: &TargetCard,
        spine: &SpineSession,
    ) -> Result<i64, AgentError> {
        let report = &target.report;
        if report.identity.card_serial.is_old_generation() || report.certificate.old_generation {
            return Err(AgentError::NotEligible(OLD_GENERATION.into()));
        }
        match report.certificate.renewal {
            RenewalPath::SelfService { .. } | RenewalPath::SelfServiceOrSponsor { .. } => {}
            RenewalPath::NotYetDue { opens } => {
                return Err(AgentError::NotEligible(format!(
                    "Your certificate is not due for renewal yet: self-renewal opens on {} \
                     (90 days before it expires). Nothing was changed.",
                    opens.date()
                )));
            }
            RenewalPath::RaInPerson => {
                return Err(AgentError::NotEligible(
                    "Your certificate has expired: it can no longer be renewed at the \
                     workstation. Visit your Registration Authority (RA) in person."
                        .into(),
                ));
            }
            _ => {
                return Err(AgentError::NotEligible(
                    "This card cannot be renewed: contact your Registration Authority (RA) for a \
                     new card."
                        .into(),
                ));
            }
        }
        let key = self.management_key()?;
        let client = self.spine_client()?;
        let current = report.identity.auth_certificate_der.clone();
        let algorithm = cardgate_spine::key_algorithm_of(&current)
            .map_err(|e| AgentError::NotEligible(e.to_string()))?;
        let actor = self.actor(&target.reader)?;
        let card_serial = report.identity.card_serial.clone();
        let replaces = current.clone();

        // The endpoint session must be alive before the card's key is replaced: found over (or
        // the endpoint not answering) now, it costs nothing; after the key generation it would
        // leave the card with a key no certificate names.
        client
            .session(spine)
            .await
            .map_err(|e| self.session_call_error(spine, e))?;

        self.emit_progress("generating-key", 5);
        // From here a pull may leave the card with a new key and no certificate for it.
        self.shared
            .renewals
            .key_generation_began(&card_serial, now());
        let generate_key = key.clone();
        let csr = tokio::time::timeout(
            RENEWAL_STEP_TIMEOUT,
            staff_jobs::run(&actor, target.insertion.clone(), HostTyped::No, move |c| {
                c.authenticate_management_key(&generate_key)
                    .map_err(SpineError::from_card)?;
                cardgate_spine::csr::card_certificate_request(
                    c,
                    Slot::Authentication,
                    algorithm,
                    &current,
                )
            }),
        )
        .await
        .map_err(|_| AgentError::Card("the card took too long to generate its new key".into()))?
        .map_err(card_error)?
        .map_err(|e| renewal_card_error(&e))?;

        self.emit_progress("requesting-certificate", 60);
        let certificate = client
            .renew_certificate(spine, &csr)
            .await
            .map_err(|e| self.session_call_error(spine, e))?;
        // Kept on disk first: if the card is pulled before it is written, the next insertion
        // writes it (`finish_held_renewal`) and the card is not left with a key no
        // certificate names.
        let held = HeldCertificate {
            holder: report.identity.holder_uuid.as_str().to_owned(),
            replaces,
            certificate: certificate.clone(),
        };
        if let Err(e) = self.shared.renewals.hold(&card_serial, &held) {
            tracing::warn!(error = %e, "the new certificate could not be kept for a retry");
        }

        self.emit_progress("writing-certificate", 80);
        let written = certificate.clone();
        staff_jobs::run(&actor, target.insertion.clone(), HostTyped::No, move |c| {
            c.authenticate_management_key(&key)?;
            c.write_certificate(Slot::Authentication, &written)
        })
        .await
        .map_err(card_error)?
        .map_err(|e| match e {
            PivError::Channel(cardgate_piv::ChannelError::CardRemoved) => AgentError::NoCard(
                "The card was removed while its new certificate was being written: insert it \
                 again and the agent finishes the renewal."
                    .into(),
            ),
            e => card_error(CardError::Card {
                reader: target.reader.clone(),
                source: e,
            }),
        })?;

        // The card now holds the new certificate: read it afresh and bind the session to it,
        // so this same card still counts as the session's.
        self.shared.renewals.release(&card_serial);
        self.shared.inspector.forget_identity(&target.insertion);
        let fresh = actor.inspect(target.insertion.clone()).await;
        let not_after = match &fresh {
            Ok(report) => {
                let mut state = lock(&self.shared.state);
                if let Some(session) = state
                    .session
                    .as_mut()
                    .filter(|s| s.insertion == target.insertion)
                {
                    session.certificate_serial = report.certificate.certificate_serial.clone();
                }
                report.certificate.not_after.unix_timestamp()
            }
            Err(_) => 0,
        };
        self.card_read_quietly(target.insertion.clone(), fresh);
        self.emit_progress("done", 100);
        Ok(not_after)
    }

    /// At insertion: a card pulled out of its renewal after the endpoint issued the new
    /// certificate gets that certificate written now, before the card counts as read, so the
    /// holder's next log-in uses the new key and certificate. Anything that stops it leaves
    /// `read` as it was (the log-in then explains the mismatch).
    pub(crate) async fn finish_held_renewal(
        &self,
        actor: &CardActor,
        insertion: &Insertion,
        read: Result<CardReport, CardError>,
    ) -> Result<CardReport, CardError> {
        let Ok(report) = &read else {
            return read;
        };
        let identity = &report.identity;
        let card_serial = identity.card_serial.clone();
        let Some(held) = self.shared.renewals.held(&card_serial) else {
            return read;
        };
        let finished = |reason: &str| AuditEvent::Renewal {
            card_serial: Some(card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            subject: RenewalSubject::Certificates,
            by: None,
            outcome: Outcome::Succeeded,
            reason_code: Some(reason.to_owned()),
        };
        if identity.auth_certificate_der == held.certificate {
            // Written before the pull; only the answer was lost.
            self.shared.renewals.release(&card_serial);
            self.audit_after_the_fact(&finished("written_before_removal"));
            return read;
        }
        if !held.applies_to(&identity.holder_uuid, &identity.auth_certificate_der) {
            tracing::warn!(card = %card_serial, "a held renewal certificate no longer fits this card; dropped");
            self.shared.renewals.release(&card_serial);
            return read;
        }
        let key = match self.management_key() {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(card = %card_serial, error = %e, "a held renewal certificate cannot be written");
                return read;
            }
        };
        let certificate = held.certificate.clone();
        let written = staff_jobs::run(actor, insertion.clone(), HostTyped::No, move |c| {
            c.authenticate_management_key(&key)?;
            c.write_certificate(Slot::Authentication, &certificate)
        })
        .await;
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(card = %card_serial, error = %e, "the held renewal certificate was not written; kept for the next insertion");
            return read;
        }
        tracing::info!(card = %card_serial, "renewal finished at reinsertion: the new certificate is on the card");
        self.shared.renewals.release(&card_serial);
        self.audit_after_the_fact(&finished("finished_at_reinsertion"));
        self.shared.inspector.forget_identity(insertion);
        actor.inspect(insertion.clone()).await
    }

    /// The log-in error for a card whose signature its own certificate does not verify.
    pub(crate) fn key_does_not_match(&self, card_serial: &CardSerial) -> AgentError {
        let next_step = "The card cannot log in until your Registration Authority (RA) issues \
                         a certificate for its key: contact your RA. Your passcode was \
                         accepted; no try was used.";
        AgentError::Card(match self.shared.renewals.key_replaced_at(card_serial) {
            Some(at) => format!(
                "This card's key no longer matches its certificate: the certificate renewal \
                 begun at {:02}:{:02} UTC on {} was cut short when the card was removed, after \
                 the card had made its new key and before a certificate was issued for it. \
                 {next_step}",
                at.hour(),
                at.minute(),
                at.date()
            ),
            None => format!(
                "This card's key does not match its certificate (the key was replaced without \
                 a certificate for it being written, for example by a renewal that did not \
                 finish). {next_step}"
            ),
        })
    }

    /// The cards' management key from `[renewal] management_key`.
    fn management_key(&self) -> Result<ManagementKey, AgentError> {
        let Some(path) = &self.shared.config.renewal.management_key else {
            return Err(AgentError::NotEligible(
                "Certificate renewal is not set up on this workstation ([renewal] \
                 management_key): ask IT support, or renew at another workstation."
                    .into(),
            ));
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            AgentError::Internal(format!(
                "the management key file {} cannot be read: {e}",
                path.display()
            ))
        })?);
        let bytes = Zeroizing::new(hex_bytes(text.trim()).ok_or_else(|| {
            AgentError::Internal(format!(
                "the management key file {} is not hex",
                path.display()
            ))
        })?);
        match bytes.len() {
            16 => ManagementKey::aes128(&bytes),
            _ => ManagementKey::tdes(&bytes),
        }
        .map_err(|e| AgentError::Internal(format!("the management key in {}: {e}", path.display())))
    }

    // ------------------------------------------------------------------ TACs

    /// The sponsor's session for a TAC task, with `admin.tac` checked early.
    fn tac_session(&self) -> Result<SponsorSession, AgentError> {
        let sponsor = self.sponsor_session("Temporary Access Cards")?;
        if !sponsor.activities.iter().any(|a| a == activity::ADMIN_TAC) {
            return Err(AgentError::NotPermitted(
                "the selected role profile does not allow Temporary Access Cards (admin.tac): \
                 select the Sponsor or LSA role"
                    .into(),
            ));
        }
        Ok(sponsor)
    }

    /// `TacActivate`.
    pub async fn tac_activate(
        &self,
        tac_serial: &str,
        holder_uuid: &str,
        custodian: &str,
    ) -> Result<TacInfo, AgentError> {
        let serial = tac_serial_argument(tac_serial)?;
        let holder = holder_argument("holder_uuid", holder_uuid)?;
        let custodian = text_argument("custodian", custodian)?;
        let sponsor = self.tac_session()?;
        let record = self
            .spine_client()?
            .activate_tac(
                &sponsor.spine,
                serial.as_str(),
                &TacActivateRequest {
                    holder_uid: holder.as_str().to_owned(),
                    custodian,
                },
            )
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        self.audit(&AuditEvent::TacActivated {
            tac_serial: serial,
            holder,
            sponsor: sponsor.holder,
        })?;
        Ok(tac_info(&record))
    }

    /// `TacRecordUse`.
    pub async fn tac_record_use(
        &self,
        tac_serial: &str,
        used_by: &str,
        from: i64,
        until: i64,
    ) -> Result<TacInfo, AgentError> {
        let serial = tac_serial_argument(tac_serial)?;
        let user = holder_argument("used_by", used_by)?;
        let time = |argument: &str, value: i64| {
            OffsetDateTime::from_unix_timestamp(value)
                .ok()
                .filter(|_| value > 0)
                .ok_or_else(|| invalid(argument, "must be a time in Unix seconds"))
        };
        let from_time = time("from", from)?;
        let until_time = time("until", until)?;
        if until < from {
            return Err(invalid("until", "must not be before from"));
        }
        let sponsor = self.tac_session()?;
        let record = self
            .spine_client()?
            .record_tac_usage(
                &sponsor.spine,
                serial.as_str(),
                &TacUsageRequest {
                    used_by: user.as_str().to_owned(),
                    from: from_time,
                    until: until_time,
                },
            )
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        let ods = lock(&self.shared.state)
            .live_session()
            .and_then(|s| s.selected.as_ref())
            .map(|p| p.ods_code.clone());
        self.audit(&AuditEvent::TacUsed {
            tac_serial: serial,
            holder: user,
            ods,
        })?;
        Ok(tac_info(&record))
    }

    /// `TacReturn`.
    pub async fn tac_return(&self, tac_serial: &str) -> Result<TacInfo, AgentError> {
        let serial = tac_serial_argument(tac_serial)?;
        let sponsor = self.tac_session()?;
        let client = self.spine_client()?;
        let before = client
            .tac(&sponsor.spine, serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        let record = client
            .return_tac(&sponsor.spine, serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        self.audit(&AuditEvent::TacReturned {
            tac_serial: serial,
            holder: before
                .holder_uid
                .as_deref()
                .and_then(|h| HolderUuid::new(h).ok()),
            sponsor: Some(sponsor.holder),
        })?;
        Ok(tac_info(&record))
    }

    /// `TacRead`.
    pub async fn tac_read(&self, tac_serial: &str) -> Result<TacInfo, AgentError> {
        let serial = tac_serial_argument(tac_serial)?;
        let sponsor = self.tac_session()?;
        let record = self
            .spine_client()?
            .tac(&sponsor.spine, serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        Ok(tac_info(&record))
    }
}

/// An unlock's or renewal's outcome for the audit trail: refused (a rule said no), failed, or
/// done; the reason is the error's short name, never a value.
fn outcome_of(failure: Option<&AgentError>) -> (Outcome, Option<String>) {
    match failure {
        None => (Outcome::Succeeded, None),
        Some(e @ (AgentError::NotEligible(_) | AgentError::NotPermitted(_))) => {
            (Outcome::Refused, Some(e.short_name().to_owned()))
        }
        Some(e) => (Outcome::Failed, Some(e.short_name().to_owned())),
    }
}

/// The named error for an unlock's card failure: a wrong or blocked unlock code gets the
/// passcode-style names, the rest as for any card operation.
fn unlock_error(error: CardError) -> AgentError {
    match error.piv() {
        Some(PivError::WrongUnlockCode { .. }) => AgentError::WrongPasscode(error.to_string()),
        Some(PivError::UnlockCodeBlocked { .. }) => AgentError::CardBlocked(error.to_string()),
        _ => card_error(error),
    }
}

/// The named error for a card failure while generating the key or signing the request.
fn renewal_card_error(e: &SpineError) -> AgentError {
    match e {
        SpineError::CardRemoved => {
            AgentError::NoCard("The card was removed during renewal: reinsert it.".into())
        }
        e => AgentError::Card(format!("the card could not make its new key: {e}")),
    }
}

/// Lower- or upper-case hex to bytes.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn tac_info(record: &TacRecord) -> TacInfo {
    TacInfo {
        tac_serial: record.tac_serial.clone(),
        state: match record.state {
            TacState::Blank => "blank",
            _ => "active",
        }
        .to_owned(),
        holder_uid: record.holder_uid.clone().unwrap_or_default(),
        custodian: record.custodian.clone().unwrap_or_default(),
        usage: record
            .usage
            .iter()
            .map(|u| TacUse {
                used_by: u.used_by.clone(),
                from: u.from.unix_timestamp(),
                until: u.until.unix_timestamp(),
            })
            .collect(),
        history: record
            .history
            .iter()
            .map(|h| TacHistoryEntry {
                at: h.at.unix_timestamp(),
                action: match h.action {
                    TacAction::Activated => "activated",
                    TacAction::UsageRecorded => "usage_recorded",
                    TacAction::Returned => "returned",
                    _ => "other",
                }
                .to_owned(),
                by: h.by.clone(),
                holder_uid: h.holder_uid.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The pure parts: argument rules (named, never echoing a value), the audit outcome, the
    //! management key file's hex, the TAC record's D-Bus form.

    use super::*;

    #[test]
    fn arguments_are_named_and_their_rules_given() {
        let e = tac_serial_argument("12ab").unwrap_err();
        assert!(
            matches!(&e, AgentError::InvalidArgument(m) if m.starts_with("tac_serial:")),
            "{e:?}"
        );
        assert!(tac_serial_argument("123456789012345678901").is_err());
        assert!(tac_serial_argument("4000000001").is_ok());
        let e = holder_argument("used_by", "1234").unwrap_err();
        assert!(matches!(&e, AgentError::InvalidArgument(m) if m.starts_with("used_by:")));
        assert!(text_argument("custodian", "").is_err());
        assert!(text_argument("custodian", " padded").is_err());
        assert!(text_argument("custodian", "a\u{7}b").is_err());
        assert!(text_argument("custodian", &"x".repeat(65)).is_err());
        assert_eq!(
            text_argument("custodian", "Pharmacy manager").unwrap(),
            "Pharmacy manager"
        );
        let e = new_passcode_argument("12").unwrap_err();
        assert!(matches!(&e, AgentError::InvalidArgument(m) if m.starts_with("new_passcode:")));
        assert!(!format!("{e:?}").contains("\"12\""), "{e:?}");
    }

    #[test]
    fn refusals_and_failures_are_told_apart_on_the_audit_trail() {
        assert_eq!(outcome_of(None), (Outcome::Succeeded, None));
        let refused = AgentError::NotEligible("old card".into());
        assert_eq!(
            outcome_of(Some(&refused)),
            (Outcome::Refused, Some("NotEligible".into()))
        );
        let failed = AgentError::Card("6A82".into());
        assert_eq!(
            outcome_of(Some(&failed)),
            (Outcome::Failed, Some("Card".into()))
        );
    }

    #[test]
    fn the_management_key_file_is_hex() {
        assert_eq!(hex_bytes("0aFF10"), Some(vec![0x0A, 0xFF, 0x10]));
        assert_eq!(hex_bytes("0aF"), None);
        assert_eq!(hex_bytes("zz"), None);
    }

    #[test]
    fn a_tac_record_keeps_its_register_and_history() {
        let at = OffsetDateTime::from_unix_timestamp(1_763_888_400).unwrap();
        let record = TacRecord {
            tac_serial: "4000000001".into(),
            state: TacState::Blank,
            holder_uid: None,
            custodian: None,
            usage: vec![TacUsageRequest {
                used_by: "555000121212".into(),
                from: at,
                until: at + time::Duration::hours(8),
            }],
            history: vec![cardgate_spine::wire::TacEvent {
                at,
                action: TacAction::Returned,
                by: "555000777888".into(),
                holder_uid: Some("555000121212".into()),
            }],
        };
        let info = tac_info(&record);
        assert_eq!(info.state, "blank");
        assert_eq!(info.holder_uid, "");
        assert_eq!(info.usage[0].until - info.usage[0].from, 8 * 3600);
        assert_eq!(info.history[0].action, "returned");
        assert_eq!(info.history[0].holder_uid, "555000121212");
    }
}
