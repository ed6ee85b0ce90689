//! The holder's passcode change on the card (typed on the host, or keyed on the reader's PIN
//! pad), and what a passcode attempt means on the audit trail.

use cardgate_audit::{AuditEvent, CallerIdentity, EntryMethod, PasscodeOutcome};
use cardgate_card::CardError;
use cardgate_piv::{FinalTry, Passcode, PinPadEnd, PivError};

use super::{Agent, lock};
use crate::error::CoreError;

/// What a passcode attempt's result is on the audit trail (`None`: nothing about the
/// passcode happened, e.g. the card was gone).
pub(super) fn passcode_outcome(
    result: &Result<(), CardError>,
) -> (Option<PasscodeOutcome>, Option<u8>) {
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

/// Where a passcode change's values come from.
enum ChangeEntry {
    /// Typed on this computer (a reader whose pad cannot take them, or none).
    Host { current: Passcode, new: Passcode },
    /// Keyed on the reader's PIN pad: they never pass through this computer.
    PinPad,
}

/// A refusal because the values come the wrong way for this reader, naming the method that
/// takes them the right way; any other failure as the card layer said.
pub(super) fn entry_path_error(
    error: CardError,
    pad_method: &'static str,
    host_method: &'static str,
) -> CoreError {
    match error {
        e @ CardError::UsePinPad { .. } => CoreError::WrongEntryPath {
            error: e,
            instead: pad_method,
        },
        e @ CardError::NoPinPad { .. } => CoreError::WrongEntryPath {
            error: e,
            instead: host_method,
        },
        e => CoreError::Card(e),
    }
}

impl Agent {
    /// `ChangePasscode`: both shapes checked first (no try spent), then CHANGE REFERENCE
    /// DATA through the card's actor under the PIV policy (final try only when confirmed, a
    /// value that just failed never re-sent). The outcome (never a passcode) is audited.
    pub async fn change_passcode(
        &self,
        caller: &CallerIdentity,
        current: &str,
        new: &str,
        confirm_final_try: bool,
    ) -> Result<(), CoreError> {
        let current = Passcode::new(current.to_owned())
            .map_err(|e| CoreError::InvalidArgument(format!("current: {e}")))?;
        let new = Passcode::new(new.to_owned())
            .map_err(|e| CoreError::InvalidArgument(format!("new: {e}")))?;
        self.change_passcode_from(
            caller,
            ChangeEntry::Host { current, new },
            confirm_final_try,
        )
        .await
    }

    /// `ChangePasscodeWithPinPad`: the current and the new passcode keyed on the reader's PIN
    /// pad (`FEATURE_MODIFY_PIN_DIRECT`), under the same policy and audit as
    /// [`Agent::change_passcode`], the entry method `reader_keypad`.
    pub async fn change_passcode_with_pin_pad(
        &self,
        caller: &CallerIdentity,
        confirm_final_try: bool,
    ) -> Result<(), CoreError> {
        self.change_passcode_from(caller, ChangeEntry::PinPad, confirm_final_try)
            .await
    }

    async fn change_passcode_from(
        &self,
        caller: &CallerIdentity,
        entry: ChangeEntry,
        confirm_final_try: bool,
    ) -> Result<(), CoreError> {
        let final_try = if confirm_final_try {
            FinalTry::Confirmed
        } else {
            FinalTry::NotConfirmed
        };
        let (entry_method, method) = match &entry {
            ChangeEntry::Host { .. } => (EntryMethod::HostKeyboard, "ChangePasscode"),
            ChangeEntry::PinPad => (EntryMethod::ReaderKeypad, "ChangePasscodeWithPinPad"),
        };
        tracing::info!(
            uid = caller.uid,
            pid = caller.pid,
            method,
            "passcode change requested"
        );
        let _one_at_a_time = self.shared.session_changes.lock().await;
        let (reader, insertion, identity) = {
            let state = lock(&self.shared.state);
            let Some((reader, card)) = state.active_card() else {
                return Err(CoreError::NoCard(
                    "Insert your smartcard to change its passcode.".into(),
                ));
            };
            let Some(report) = &card.report else {
                return Err(CoreError::NoCard(
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
        let changed = match entry {
            ChangeEntry::Host { current, new } => {
                actor
                    .change_passcode(insertion.clone(), current, new, final_try)
                    .await
            }
            ChangeEntry::PinPad => {
                actor
                    .change_passcode_on_pad(insertion.clone(), final_try)
                    .await
            }
        };
        let (outcome, tries_left) = passcode_outcome(&changed);
        if let Some(outcome) = outcome {
            self.audit_async(AuditEvent::PasscodeAttempt {
                caller: Some(caller.clone()),
                reader: reader.to_string(),
                card_serial: Some(identity.card_serial.clone()),
                holder: Some(identity.holder_uuid.clone()),
                entry_method,
                outcome,
                tries_left,
            })
            .await?;
        }
        if changed.is_ok() {
            self.audit_async(AuditEvent::Note {
                holder: Some(identity.holder_uuid.clone()),
                author: Some("cardgated".into()),
                text: format!("passcode changed by the holder ({method})"),
            })
            .await?;
        }
        // The card's counter changed (a wrong current passcode, or reset by the change):
        // the properties say so before the answer does.
        match &changed {
            Err(e) => self.note_attempt(&insertion, &Err(e)),
            Ok(()) => self.reinspect_now(&actor, insertion).await,
        }
        changed.map_err(|e| entry_path_error(e, "ChangePasscodeWithPinPad", "ChangePasscode"))
    }
}
