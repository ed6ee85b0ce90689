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
//!
//! This file holds what the tasks share (the target card, the Sponsor's session, argument
//! rules, the unlock paths a locked card's messages list); each task has its own file:
//! `unlock`, `renewal`, `tac`.

use cardgate_audit::Outcome;
use cardgate_card::{CardError, CardReport, Insertion};
use cardgate_piv::{CardSerial, HolderUuid, Passcode, PasscodeStatus, PivError};
use cardgate_reader::ReaderName;
use cardgate_spine::wire::{ErrorCode, Session as SpineSession};
use cardgate_spine::{SpineClient, SpineError};

use crate::Agent;
use crate::agent::lock;
use crate::error::CoreError;

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

fn invalid(argument: &str, rule: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(format!("{argument}: {rule}"))
}

fn holder_argument(argument: &str, value: &str) -> Result<HolderUuid, CoreError> {
    HolderUuid::new(value).map_err(|_| {
        invalid(
            argument,
            "must be the holder's 12-digit UUID (as on the card)",
        )
    })
}

fn tac_serial_argument(value: &str) -> Result<CardSerial, CoreError> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "tac_serial",
            "must be the TAC's card number, 1 to 20 digits",
        ));
    }
    CardSerial::new(value).map_err(|_| invalid("tac_serial", "must be 1 to 20 digits"))
}

fn text_argument(argument: &str, value: &str) -> Result<String, CoreError> {
    let len = value.chars().count();
    if len == 0 || len > 64 || value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(
            argument,
            "must be 1 to 64 characters, no control characters or surrounding spaces",
        ));
    }
    Ok(value.to_owned())
}

fn new_passcode_argument(value: &str) -> Result<Passcode, CoreError> {
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

/// A log-in's card failure: a locked card's names the unlock paths open to its holder.
pub(super) fn with_unlock_paths(error: CardError, report: &CardReport) -> CoreError {
    match error.piv() {
        Some(PivError::CardBlocked { .. }) => CoreError::Locked {
            error,
            unlock_paths: unlock_paths(report),
        },
        _ => CoreError::Card(error),
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
    fn spine_client(&self) -> Result<&SpineClient, CoreError> {
        self.shared.endpoint.spine_client().ok_or_else(|| {
            CoreError::EndpointUnavailable(
                "this agent's endpoint offers log-in only; staff tasks are not available".into(),
            )
        })
    }

    /// The card a holder's unlock acts on: a locked card if one is in a reader, else the card
    /// the agent acts on (a holder who forgot the passcode may reset it before it locks).
    fn unlock_target(&self) -> Result<TargetCard, CoreError> {
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
            return Err(CoreError::NoCard(
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
    fn sponsor_session(&self, what: &str) -> Result<SponsorSession, CoreError> {
        let state = lock(&self.shared.state);
        let Some(session) = state.live_session() else {
            return Err(CoreError::NotLoggedIn(format!(
                "{what} needs a Sponsor or LSA logged in with their own card."
            )));
        };
        let Some(role) = &session.selected else {
            return Err(CoreError::NotLoggedIn(format!(
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
    fn session_call_error(&self, spine: &SpineSession, e: SpineError) -> CoreError {
        match e {
            SpineError::SessionExpired => self.ended_by_endpoint(&spine.session_id),
            e => self.staff_endpoint_error(e),
        }
    }

    /// The named error for an endpoint refusal of a staff task.
    fn staff_endpoint_error(&self, e: SpineError) -> CoreError {
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
            ) => CoreError::NotEligible(message),
            Some(ErrorCode::ForbiddenActivity) => CoreError::NotPermitted(message),
            Some(ErrorCode::WrongOneTimeCode) => invalid("one_time_code", message),
            Some(ErrorCode::UnknownUser) => invalid("holder_uuid", message),
            Some(ErrorCode::UnknownCard) => invalid("card_serial", message),
            _ => match e {
                SpineError::CertificateExpired => CoreError::NotEligible(message),
                e => self.endpoint_error(e),
            },
        }
    }

    // ------------------------------------------------------------------ renewal

    // ------------------------------------------------------------------ TACs
}

/// An unlock's or renewal's outcome for the audit trail: refused (a rule said no), failed, or
/// done; the reason is the error's short name, never a value.
fn outcome_of(failure: Option<&CoreError>) -> (Outcome, Option<String>) {
    match failure {
        None => (Outcome::Succeeded, None),
        Some(e @ (CoreError::NotEligible(_) | CoreError::NotPermitted(_))) => {
            (Outcome::Refused, Some(e.short_name().to_owned()))
        }
        Some(e) => (Outcome::Failed, Some(e.short_name().to_owned())),
    }
}

mod renewal;
mod tac;
mod unlock;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The pure parts: argument rules (named, never echoing a value), the audit outcome, the
    //! management key file's hex, the TAC record's D-Bus form.

    use super::*;
    use cardgate_spine::wire::{TacAction, TacRecord, TacState, TacUsageRequest};
    use time::OffsetDateTime;

    use super::renewal::hex_bytes;
    use super::tac::tac_info;

    #[test]
    fn arguments_are_named_and_their_rules_given() {
        let e = tac_serial_argument("12ab").unwrap_err();
        assert!(
            matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("tac_serial:")),
            "{e:?}"
        );
        assert!(tac_serial_argument("123456789012345678901").is_err());
        assert!(tac_serial_argument("4000000001").is_ok());
        let e = holder_argument("used_by", "1234").unwrap_err();
        assert!(matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("used_by:")));
        assert!(text_argument("custodian", "").is_err());
        assert!(text_argument("custodian", " padded").is_err());
        assert!(text_argument("custodian", "a\u{7}b").is_err());
        assert!(text_argument("custodian", &"x".repeat(65)).is_err());
        assert_eq!(
            text_argument("custodian", "Pharmacy manager").unwrap(),
            "Pharmacy manager"
        );
        let e = new_passcode_argument("12").unwrap_err();
        assert!(matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("new_passcode:")));
        assert!(!format!("{e:?}").contains("\"12\""), "{e:?}");
    }

    #[test]
    fn refusals_and_failures_are_told_apart_on_the_audit_trail() {
        assert_eq!(outcome_of(None), (Outcome::Succeeded, None));
        let refused = CoreError::NotEligible("old card".into());
        assert_eq!(
            outcome_of(Some(&refused)),
            (Outcome::Refused, Some("NotEligible".into()))
        );
        let failed = CoreError::CardFault("6A82".into());
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
