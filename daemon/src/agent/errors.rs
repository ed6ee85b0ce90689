//! The card layer's failures as named D-Bus errors.

use cardgate_card::CardError;
use cardgate_ipc::AgentError;
use cardgate_piv::PivError;

/// The named D-Bus error for a card-layer failure (its text never holds a passcode).
pub(super) fn card_error(error: CardError) -> AgentError {
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
