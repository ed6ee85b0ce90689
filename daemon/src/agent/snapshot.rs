//! What the properties and `Status` report, read under one lock, with the holder's warnings
//! (the card's, its problems, the endpoint's passcode expiry).

use cardgate_ipc::{AgentState, ReaderInfo, SelectedRoleProfile};
use cardgate_piv::PasscodeStatus;
use time::OffsetDateTime;

use super::state::Session;
use super::{Agent, lock, now, staff};

/// Warn at log-in (and in `Status`) when the passcode expires within this many days.
pub const PASSCODE_WARN_DAYS: i64 = 30;

/// The warning for a passcode expiring at `expires_at`, if it is due by `now`.
pub(super) fn passcode_expiry_warning(
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

impl Agent {
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
}
