//! Certificate self-renewal: a new key made on the card, a request signed by it, the new
//! certificate written (kept on disk first, so a card pulled mid-way gets it at its next
//! insertion), with progress signals.

use std::time::Duration;

use cardgate_audit::{AuditEvent, CallerIdentity, Outcome, RenewalSubject};
use cardgate_card::{CardError, CardReport, Insertion};
use cardgate_certs::RenewalPath;
use cardgate_piv::{CardSerial, ManagementKey, PivError, Slot};
use cardgate_spine::SpineError;
use cardgate_spine::wire::Session as SpineSession;
use zeroize::Zeroizing;

use crate::Agent;
use crate::actor::CardActor;
use crate::agent::staff::{OLD_GENERATION, TargetCard, outcome_of};
use crate::agent::{AgentEvent, lock, now};
use crate::error::CoreError;
use crate::pending_renewals::HeldCertificate;
use crate::staff_jobs::{self, HostTyped};

/// How long a renewal's card and endpoint steps may take together before the agent gives up
/// waiting (on-card key generation takes seconds to a minute).
pub(super) const RENEWAL_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The named error for a card failure while generating the key or signing the request.
pub(super) fn renewal_card_error(e: &SpineError) -> CoreError {
    match e {
        SpineError::CardRemoved => {
            CoreError::NoCard("The card was removed during renewal: reinsert it.".into())
        }
        e => CoreError::CardFault(format!("the card could not make its new key: {e}")),
    }
}

/// Lower- or upper-case hex to bytes.
pub(super) fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Agent {
    pub(super) fn emit_progress(&self, step: &str, percent: u32) {
        self.emit(AgentEvent::RenewalProgress {
            step: step.to_owned(),
            percent,
        });
    }

    /// `RenewCertificate`: the session holder's own certificate, renewed with a new key made
    /// on the card. Every check that can refuse runs before the card's key is replaced.
    pub async fn renew_certificate(&self, caller: &CallerIdentity) -> Result<i64, CoreError> {
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
                    CoreError::NotEligible(OLD_GENERATION.into())
                } else {
                    CoreError::NotLoggedIn(
                        "Log in with your smartcard to renew its certificate.".into(),
                    )
                });
            };
            if session.detached.is_some() {
                return Err(CoreError::NoCard(
                    "Insert your smartcard to renew its certificate.".into(),
                ));
            }
            let card = state
                .readers
                .get(&session.reader)
                .and_then(|slot| slot.card.as_ref())
                .filter(|c| c.insertion == session.insertion);
            let Some(report) = card.and_then(|c| c.report.clone()) else {
                return Err(CoreError::NoCard(
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
        self.audit_async(AuditEvent::Renewal {
            caller: Some(caller.clone()),
            card_serial: Some(identity.card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            subject: RenewalSubject::Certificates,
            by: None,
            outcome,
            reason_code,
        })
        .await?;
        result
    }

    pub(super) async fn renew_checked(
        &self,
        target: &TargetCard,
        spine: &SpineSession,
    ) -> Result<i64, CoreError> {
        let report = &target.report;
        if report.identity.card_serial.is_old_generation() || report.certificate.old_generation {
            return Err(CoreError::NotEligible(OLD_GENERATION.into()));
        }
        match report.certificate.renewal {
            RenewalPath::SelfService { .. } | RenewalPath::SelfServiceOrSponsor { .. } => {}
            RenewalPath::NotYetDue { opens } => {
                return Err(CoreError::NotEligible(format!(
                    "Your certificate is not due for renewal yet: self-renewal opens on {} \
                     (90 days before it expires). Nothing was changed.",
                    opens.date()
                )));
            }
            RenewalPath::RaInPerson => {
                return Err(CoreError::NotEligible(
                    "Your certificate has expired: it can no longer be renewed at the \
                     workstation. Visit your Registration Authority (RA) in person."
                        .into(),
                ));
            }
            _ => {
                return Err(CoreError::NotEligible(
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
            .map_err(|e| CoreError::NotEligible(e.to_string()))?;
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
        .map_err(|_| CoreError::CardFault("the card took too long to generate its new key".into()))?
        .map_err(CoreError::Card)?
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
        .map_err(CoreError::Card)?
        .map_err(|e| match e {
            PivError::Channel(cardgate_piv::ChannelError::CardRemoved) => CoreError::NoCard(
                "The card was removed while its new certificate was being written: insert it \
                 again and the agent finishes the renewal."
                    .into(),
            ),
            e => CoreError::Card(CardError::Card {
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
            caller: None,
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
            // A failure is logged loudly; the certificate is on the card either way.
            let _ = self.audit_async(finished("written_before_removal")).await;
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
        // A failure is logged loudly; the certificate is on the card either way.
        let _ = self.audit_async(finished("finished_at_reinsertion")).await;
        self.shared.inspector.forget_identity(insertion);
        actor.inspect(insertion.clone()).await
    }

    /// The log-in error for a card whose signature its own certificate does not verify.
    pub(crate) fn key_does_not_match(&self, card_serial: &CardSerial) -> CoreError {
        let next_step = "The card cannot log in until your Registration Authority (RA) issues \
                         a certificate for its key: contact your RA. Your passcode was \
                         accepted; no try was used.";
        CoreError::CardFault(match self.shared.renewals.key_replaced_at(card_serial) {
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
    pub(super) fn management_key(&self) -> Result<ManagementKey, CoreError> {
        let Some(path) = &self.shared.config.renewal.management_key else {
            return Err(CoreError::NotEligible(
                "Certificate renewal is not set up on this workstation ([renewal] \
                 management_key): ask IT support, or renew at another workstation."
                    .into(),
            ));
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CoreError::Internal(format!(
                "the management key file {} cannot be read: {e}",
                path.display()
            ))
        })?);
        let bytes = Zeroizing::new(hex_bytes(text.trim()).ok_or_else(|| {
            CoreError::Internal(format!(
                "the management key file {} is not hex",
                path.display()
            ))
        })?);
        match bytes.len() {
            16 => ManagementKey::aes128(&bytes),
            _ => ManagementKey::tdes(&bytes),
        }
        .map_err(|e| CoreError::Internal(format!("the management key in {}: {e}", path.display())))
    }
}
