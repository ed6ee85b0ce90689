//! The argument and return types of `org.cardgate.Agent1`, each with the D-Bus signature
//! `docs/ipc.md` gives it, and the string codes (states, session-end reasons) that
//! travel as plain `s` so that clients in any language can read them.

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

/// The names of `org.cardgate.Agent1`'s properties, which are also the keys of `Status`
/// (with [`property::WARNINGS`], which is only in `Status`). One spelling for the daemon,
/// the CLI and every Rust client.
pub mod property {
    /// `a(sbb)`: each reader.
    pub const READERS: &str = "Readers";
    /// `b`: a card is in the active reader.
    pub const CARD_PRESENT: &str = "CardPresent";
    /// `s`: the holder's UUID, `""` when none.
    pub const HOLDER_UUID: &str = "HolderUuid";
    /// `s`: the holder's name, `""` when none.
    pub const HOLDER_NAME: &str = "HolderName";
    /// `s`: an [`crate::AgentState`] code.
    pub const STATE: &str = "State";
    /// `i`: tries left before the card locks, `-1` when unknown.
    pub const PASSCODE_TRIES_LEFT: &str = "PasscodeTriesLeft";
    /// `(ssss)`: the selected role profile.
    pub const SELECTED_ROLE_PROFILE: &str = "SelectedRoleProfile";
    /// `x`: the authentication certificate's expiry, Unix seconds, `0` when none.
    pub const CERTIFICATE_NOT_AFTER: &str = "CertificateNotAfter";
    /// `t`: the session generation.
    pub const SESSION_GENERATION: &str = "SessionGeneration";
    /// `as`: the ODS codes this workstation serves (constant while the agent runs).
    pub const WORKSTATION_ODS_CODES: &str = "WorkstationOdsCodes";
    /// `as`, `Status` only: sentences for the holder.
    pub const WARNINGS: &str = "Warnings";
    /// Every property, in the order the interface XML lists them.
    pub const ALL: [&str; 10] = [
        READERS,
        CARD_PRESENT,
        HOLDER_UUID,
        HOLDER_NAME,
        STATE,
        PASSCODE_TRIES_LEFT,
        SELECTED_ROLE_PROFILE,
        CERTIFICATE_NOT_AFTER,
        SESSION_GENERATION,
        WORKSTATION_ODS_CODES,
    ];
}

/// One reader as the `Readers` property lists it: `(sbb)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct ReaderInfo {
    /// The reader's PC/SC name.
    pub name: String,
    /// Whether a card is in it.
    pub card_present: bool,
    /// Whether it has a PIN pad the agent will use (then `LoginWithPinPad` is the way in).
    pub pin_pad: bool,
}

/// One of the holder's role profiles, as `Login` returns them: `(ssssas)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RoleProfileInfo {
    /// The id to pass to `SelectRoleProfile`.
    pub id: String,
    /// The job role ("Pharmacist", "Dispenser", "Locum Pharmacist").
    pub job_role: String,
    /// The organisation's ODS code (`FFFFF` for the generic locum organisation).
    pub ods_code: String,
    /// The organisation's name, for people choosing a profile.
    pub organisation_name: String,
    /// The activities it permits (`eps.download`, `scr.view`, ...).
    pub activities: Vec<String>,
}

/// The `SelectedRoleProfile` property: `(ssss)`, all empty when none is selected (D-Bus has
/// no optional values, and an empty id is never a real profile's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct SelectedRoleProfile {
    /// The profile's id.
    pub id: String,
    /// The job role.
    pub job_role: String,
    /// The ODS code.
    pub ods_code: String,
    /// The organisation's name.
    pub organisation_name: String,
}

/// The answer to `Authorise`: `(bsst)`. A well-formed request always gets one of these,
/// never an error: a refusal is `allowed = false` with a stable `reason` code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AuthoriseAnswer {
    /// Whether the action may go ahead now.
    pub allowed: bool,
    /// The stable kebab-case reason (`allowed`, `no-card`, `wrong-organisation`, ...); a
    /// client meeting a code it does not know must treat it as a refusal.
    pub reason: String,
    /// A sentence for pharmacy staff.
    pub message: String,
    /// The session generation the answer was decided under; void once `SessionGeneration`
    /// moved on.
    pub generation: u64,
}

impl AuthoriseAnswer {
    /// The answer as `Authorise`'s four out arguments (`allowed`, `reason`, `message`,
    /// `generation`): the reply body is flat `bsst`, as the interface XML declares it.
    pub fn into_out_args(self) -> (bool, String, String, u64) {
        (self.allowed, self.reason, self.message, self.generation)
    }
}

/// The answer to `GetTicket`: `(sssss)`, what a Spine call made by the PMR needs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Ticket {
    /// The session's bearer token (a secret: redacted in `Debug`).
    pub token: String,
    /// The holder's UUID.
    pub holder_uuid: String,
    /// The selected role profile's id.
    pub role_profile_id: String,
    /// Its job role.
    pub job_role: String,
    /// Its ODS code.
    pub ods_code: String,
}

impl Ticket {
    /// The ticket as `GetTicket`'s five out arguments, in field order (a flat `sssss` body).
    pub fn into_out_args(self) -> (String, String, String, String, String) {
        (
            self.token,
            self.holder_uuid,
            self.role_profile_id,
            self.job_role,
            self.ods_code,
        )
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("token", &"<redacted>")
            .field("holder_uuid", &self.holder_uuid)
            .field("role_profile_id", &self.role_profile_id)
            .field("job_role", &self.job_role)
            .field("ods_code", &self.ods_code)
            .finish()
    }
}

/// The agent's state, the `State` property (a string on the bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AgentState {
    /// No card in any reader.
    NoCard,
    /// A card is in, nobody is logged in.
    CardPresent,
    /// The card in the reader is locked (blocked passcode).
    CardLocked,
    /// A session is open.
    LoggedIn,
    /// The card left under `removal = "session-lock"`; the same holder can resume.
    SessionLocked,
    /// Logged in, but the endpoint cannot be reached.
    EndpointUnavailable,
}

impl AgentState {
    /// Every state, for clients that list them.
    pub const ALL: [AgentState; 6] = [
        AgentState::NoCard,
        AgentState::CardPresent,
        AgentState::CardLocked,
        AgentState::LoggedIn,
        AgentState::SessionLocked,
        AgentState::EndpointUnavailable,
    ];

    /// The state as spelled on the bus.
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentState::NoCard => "no-card",
            AgentState::CardPresent => "card-present",
            AgentState::CardLocked => "card-locked",
            AgentState::LoggedIn => "logged-in",
            AgentState::SessionLocked => "session-locked",
            AgentState::EndpointUnavailable => "endpoint-unavailable",
        }
    }

    /// Parses a state as spelled on the bus; `None` for a code this client does not know.
    pub fn parse(code: &str) -> Option<AgentState> {
        AgentState::ALL.into_iter().find(|s| s.as_str() == code)
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended, the first argument of `SessionEnded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEndReason {
    /// The card left the reader.
    CardRemoved,
    /// The holder (or the PMR) logged out.
    LoggedOut,
    /// No authorised activity for longer than the session's idle limit.
    IdleTimeout,
    /// The workstation was idle with the card in the reader and the configuration ends the
    /// session then.
    CardLeftInReader,
    /// The endpoint ended the session.
    EndpointEnded,
    /// Another card was read while the session's card was away (`session-lock` or
    /// `mobility`): a swap never inherits a session.
    CardSwapped,
    /// `removal = "mobility"`: the re-authentication timer ran out.
    ReauthenticationDue,
}

impl SessionEndReason {
    /// The reason as spelled on the bus.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::CardRemoved => "card-removed",
            SessionEndReason::LoggedOut => "logged-out",
            SessionEndReason::IdleTimeout => "idle-timeout",
            SessionEndReason::CardLeftInReader => "card-left-in-reader",
            SessionEndReason::EndpointEnded => "endpoint-ended",
            SessionEndReason::CardSwapped => "card-swapped",
            SessionEndReason::ReauthenticationDue => "reauthentication-due",
        }
    }
}

impl std::fmt::Display for SessionEndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zbus::zvariant::Type;

    #[test]
    fn signatures_are_the_documented_ones() {
        assert_eq!(ReaderInfo::SIGNATURE.to_string(), "(sbb)");
        assert_eq!(RoleProfileInfo::SIGNATURE.to_string(), "(ssssas)");
        assert_eq!(SelectedRoleProfile::SIGNATURE.to_string(), "(ssss)");
        assert_eq!(AuthoriseAnswer::SIGNATURE.to_string(), "(bsst)");
        assert_eq!(Ticket::SIGNATURE.to_string(), "(sssss)");
    }

    #[test]
    fn states_round_trip_and_unknown_codes_are_none() {
        for state in AgentState::ALL {
            assert_eq!(AgentState::parse(state.as_str()), Some(state));
        }
        assert_eq!(AgentState::parse("logged_in"), None);
    }

    #[test]
    fn ticket_debug_hides_the_token() {
        let ticket = Ticket {
            token: "tok-secret".into(),
            holder_uuid: "555000111222".into(),
            role_profile_id: "RP-1".into(),
            job_role: "Pharmacist".into(),
            ods_code: "FA123".into(),
        };
        assert!(!format!("{ticket:?}").contains("tok-secret"));
    }
}
