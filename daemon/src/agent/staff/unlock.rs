//! The three unlock paths, in the guidance's order: self-service with a one-time code sent
//! to the holder, an unlock code from the RA, and a Sponsor/LSA unlocking someone else's card
//! under their own session. The code is used on the card at once and never leaves the agent.
//! On a reader whose PIN pad takes changes, the RA's unlock code and the new passcode are
//! keyed on the pad instead (`UnlockWithCodeOnPinPad`) and never reach this computer.

use cardgate_audit::{AuditEvent, CallerIdentity, UnlockPath};
use cardgate_card::CardError;
use cardgate_ipc::SelfServiceStarted;
use cardgate_piv::{CardSerial, FinalTry, HolderUuid, Passcode, UnlockCode};
use cardgate_policy::Activity;
use cardgate_reader::PivModify;
use cardgate_spine::wire::Secret;

use crate::Agent;
use crate::agent::lock;
use crate::agent::passcode::entry_path_error;
use crate::agent::staff::{
    OLD_GENERATION, SponsorSession, TargetCard, holder_argument, invalid, new_passcode_argument,
    outcome_of,
};
use crate::error::CoreError;
use crate::staff_jobs::{self, HostTyped};

impl Agent {
    pub(super) async fn audit_unlock(
        &self,
        caller: &CallerIdentity,
        target: (&CardSerial, &HolderUuid),
        path: UnlockPath,
        by: Option<&HolderUuid>,
        failure: Option<&CoreError>,
    ) -> Result<(), CoreError> {
        let (outcome, reason_code) = outcome_of(failure);
        self.audit_async(AuditEvent::UnlockCompleted {
            caller: Some(caller.clone()),
            card_serial: Some(target.0.clone()),
            holder: Some(target.1.clone()),
            path,
            by: by.cloned(),
            outcome,
            reason_code,
        })
        .await
    }

    /// RESET RETRY COUNTER with `code` and `new_passcode` on `target` through its actor, then
    /// the card is read again (tries left, the lock gone).
    pub(super) async fn reset_with(
        &self,
        target: &TargetCard,
        code: UnlockCode,
        new_passcode: Passcode,
        final_try: FinalTry,
    ) -> Result<(), CoreError> {
        let actor = self.actor(&target.reader)?;
        let result = staff_jobs::run(
            &actor,
            target.insertion.clone(),
            HostTyped::Yes,
            move |client| client.reset_retry_counter(&code, &new_passcode, final_try),
        )
        .await;
        self.reinspect_now(&actor, target.insertion.clone()).await;
        unlock_outcome(target, result)
    }

    /// RESET RETRY COUNTER on `target` with the unlock code and the new passcode keyed on the
    /// reader's PIN pad, through its actor; then the card is read again.
    async fn reset_on_pad(
        &self,
        target: &TargetCard,
        final_try: FinalTry,
    ) -> Result<(), CoreError> {
        let actor = self.actor(&target.reader)?;
        let result =
            staff_jobs::run_on_pad(&actor, target.insertion.clone(), move |client, prompts| {
                client.reset_retry_counter_on_reader(final_try, |channel| {
                    channel.modify_on_pin_pad(PivModify::ResetRetryCounter, prompts)
                })
            })
            .await;
        self.reinspect_now(&actor, target.insertion.clone()).await;
        unlock_outcome(target, result)
    }

    /// `StartSelfServiceUnlock`: the endpoint sends a one-time code to the holder's
    /// registered contact. Refused early for an old-generation card.
    pub async fn start_self_service_unlock(
        &self,
        caller: &CallerIdentity,
    ) -> Result<SelfServiceStarted, CoreError> {
        let target = self.unlock_target()?;
        let identity = &target.report.identity;
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            "self-service unlock requested"
        );
        self.audit_async(AuditEvent::UnlockRequested {
            caller: Some(caller.clone()),
            card_serial: Some(identity.card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            path: UnlockPath::SelfService,
            by: None,
        })
        .await?;
        let result = if identity.card_serial.is_old_generation() {
            Err(CoreError::NotEligible(OLD_GENERATION.into()))
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
                    caller,
                    (&identity.card_serial, &identity.holder_uuid),
                    UnlockPath::SelfService,
                    None,
                    Some(&e),
                )
                .await?;
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
    ) -> Result<(), CoreError> {
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
            return Err(CoreError::NotEligible(OLD_GENERATION.into()));
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
            caller,
            (&identity.card_serial, &identity.holder_uuid),
            UnlockPath::SelfService,
            None,
            result.as_ref().err(),
        )
        .await?;
        result
    }

    /// `UnlockWithCode`: the RA's unlock code, typed by the holder, with a new passcode.
    pub async fn unlock_with_code(
        &self,
        caller: &CallerIdentity,
        unlock_code: &str,
        new_passcode: &str,
        confirm_final_try: bool,
    ) -> Result<(), CoreError> {
        let code =
            UnlockCode::new(unlock_code.to_owned()).map_err(|e| invalid("unlock_code", e))?;
        let new_passcode = new_passcode_argument(new_passcode)?;
        self.unlock_with_ra_code(caller, Some((code, new_passcode)), confirm_final_try)
            .await
    }

    /// `UnlockWithCodeOnPinPad`: the RA's unlock code and the new passcode keyed by the holder
    /// on the reader's PIN pad, under the same policy and audit as [`Agent::unlock_with_code`].
    pub async fn unlock_with_code_on_pin_pad(
        &self,
        caller: &CallerIdentity,
        confirm_final_try: bool,
    ) -> Result<(), CoreError> {
        self.unlock_with_ra_code(caller, None, confirm_final_try)
            .await
    }

    /// Path 3 with the values typed on the host (`Some`) or keyed on the pad (`None`).
    async fn unlock_with_ra_code(
        &self,
        caller: &CallerIdentity,
        typed: Option<(UnlockCode, Passcode)>,
        confirm_final_try: bool,
    ) -> Result<(), CoreError> {
        let target = self.unlock_target()?;
        let identity = target.report.identity.clone();
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            on_pin_pad = typed.is_none(),
            "unlock with an RA code"
        );
        self.audit_async(AuditEvent::UnlockRequested {
            caller: Some(caller.clone()),
            card_serial: Some(identity.card_serial.clone()),
            holder: Some(identity.holder_uuid.clone()),
            path: UnlockPath::RegistrationAuthority,
            by: None,
        })
        .await?;
        let result = if identity.card_serial.is_old_generation() {
            Err(CoreError::NotEligible(OLD_GENERATION.into()))
        } else {
            let _one_at_a_time = self.shared.session_changes.lock().await;
            let final_try = if confirm_final_try {
                FinalTry::Confirmed
            } else {
                FinalTry::NotConfirmed
            };
            let reset = match typed {
                Some((code, new_passcode)) => {
                    self.reset_with(&target, code, new_passcode, final_try)
                        .await
                }
                None => self.reset_on_pad(&target, final_try).await,
            };
            // The values came the wrong way for this reader: name the method that takes them.
            reset.map_err(|e| match e {
                CoreError::Unlock(
                    card @ (CardError::UsePinPad { .. } | CardError::NoPinPad { .. }),
                ) => entry_path_error(card, "UnlockWithCodeOnPinPad", "UnlockWithCode"),
                other => other,
            })
        };
        self.audit_unlock(
            caller,
            (&identity.card_serial, &identity.holder_uuid),
            UnlockPath::RegistrationAuthority,
            None,
            result.as_ref().err(),
        )
        .await?;
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
    ) -> Result<(), CoreError> {
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
        self.audit_async(AuditEvent::UnlockRequested {
            caller: Some(caller.clone()),
            card_serial: Some(serial.clone()),
            holder: Some(holder.clone()),
            path: UnlockPath::Sponsor,
            by: Some(sponsor.holder.clone()),
        })
        .await?;
        let result = self
            .sponsor_unlock_checked(&sponsor, &holder, &serial, new_passcode)
            .await;
        self.audit_unlock(
            caller,
            (&serial, &holder),
            UnlockPath::Sponsor,
            Some(&sponsor.holder),
            result.as_ref().err(),
        )
        .await?;
        result
    }

    pub(super) async fn sponsor_unlock_checked(
        &self,
        sponsor: &SponsorSession,
        holder: &HolderUuid,
        serial: &CardSerial,
        new_passcode: Passcode,
    ) -> Result<(), CoreError> {
        if holder == &sponsor.holder || serial == &sponsor.card_serial {
            return Err(CoreError::NotEligible(
                "A Sponsor or LSA cannot unlock their own card: ask another Sponsor or LSA, or \
                 the Registration Authority (RA)."
                    .into(),
            ));
        }
        if serial.is_old_generation() {
            return Err(CoreError::NotEligible(OLD_GENERATION.into()));
        }
        if !sponsor
            .activities
            .iter()
            .any(|a| a == Activity::ADMIN_UNLOCK.as_str())
        {
            return Err(CoreError::NotPermitted(
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
            return Err(CoreError::NoCard(format!(
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
}

/// A RESET RETRY COUNTER job's outcome for the caller: the card's refusal (a wrong or blocked
/// unlock code) or the card layer's failure, named as an unlock's.
fn unlock_outcome(
    target: &TargetCard,
    result: Result<Result<(), cardgate_piv::PivError>, CardError>,
) -> Result<(), CoreError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(piv)) => Err(CoreError::Unlock(CardError::Card {
            reader: target.reader.clone(),
            source: piv,
        })),
        Err(card) => Err(CoreError::Unlock(card)),
    }
}
