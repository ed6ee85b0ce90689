//! The decision itself: [`decide`], the [`Reason`] codes it answers with, and the
//! [`Decision`] that carries them together with the generation it was made under.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    Action, CardState, CertificateStatus, Generation, HolderUuid, OdsCode, PolicyConfig,
    PolicyError, RoleProfileId, SessionView,
};

/// Why a request was allowed or refused: a stable machine-readable code for PMR software
/// ([`Reason::code`]) and a sentence for the member of staff ([`Reason::message`]).
///
/// The variants are listed in the order [`decide`] checks them. Codes never change meaning
/// once published; new codes may be added (hence `#[non_exhaustive]`), and a client that
/// meets a code it does not know must treat it as a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// `allowed`: every check passed.
    Allowed,
    /// `no-card`: no card in the reader.
    NoCard,
    /// `card-locked`: the card is blocked after three wrong passcodes.
    CardLocked,
    /// `certificate-revoked`: the card was cancelled by the RA.
    CertificateRevoked,
    /// `certificate-expired`: the card's certificate has expired.
    CertificateExpired,
    /// `certificate-not-yet-valid`: the certificate is not valid yet (workstation clock?).
    CertificateNotYetValid,
    /// `certificate-untrusted`: the certificate does not chain to the configured CA.
    CertificateUntrusted,
    /// `certificate-revocation-unknown`: could not confirm the card has not been cancelled.
    CertificateRevocationUnknown,
    /// `certificate-unchecked`: the certificate has not been checked since insertion yet.
    CertificateUnchecked,
    /// `not-logged-in`: the card is in but nobody has logged in with it.
    NotLoggedIn,
    /// `session-expired`: the Spine session ended (idle too long).
    SessionExpired,
    /// `ods-not-configured`: the ODS code asked for is not one of this workstation's.
    OdsNotConfigured,
    /// `no-role-selected`: logged in, but no role profile is selected.
    NoRoleSelected,
    /// `locum-not-accepted`: the selected profile is at the locum organisation `FFFFF` and
    /// this workstation does not accept locum profiles.
    LocumNotAccepted,
    /// `wrong-organisation`: the selected profile is at a different organisation.
    WrongOrganisation,
    /// `missing-activity`: the selected profile does not permit this action.
    MissingActivity,
    /// `endpoint-unavailable`: the Spine endpoint cannot be reached.
    EndpointUnavailable,
}

impl Reason {
    /// Every reason, in the order [`decide`] checks them (with [`Reason::Allowed`] first).
    pub const ALL: [Reason; 17] = [
        Reason::Allowed,
        Reason::NoCard,
        Reason::CardLocked,
        Reason::CertificateRevoked,
        Reason::CertificateExpired,
        Reason::CertificateNotYetValid,
        Reason::CertificateUntrusted,
        Reason::CertificateRevocationUnknown,
        Reason::CertificateUnchecked,
        Reason::NotLoggedIn,
        Reason::SessionExpired,
        Reason::OdsNotConfigured,
        Reason::NoRoleSelected,
        Reason::LocumNotAccepted,
        Reason::WrongOrganisation,
        Reason::MissingActivity,
        Reason::EndpointUnavailable,
    ];

    /// The stable kebab-case code for PMR software and the audit trail.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::NoCard => "no-card",
            Reason::CardLocked => "card-locked",
            Reason::CertificateRevoked => "certificate-revoked",
            Reason::CertificateExpired => "certificate-expired",
            Reason::CertificateNotYetValid => "certificate-not-yet-valid",
            Reason::CertificateUntrusted => "certificate-untrusted",
            Reason::CertificateRevocationUnknown => "certificate-revocation-unknown",
            Reason::CertificateUnchecked => "certificate-unchecked",
            Reason::NotLoggedIn => "not-logged-in",
            Reason::SessionExpired => "session-expired",
            Reason::OdsNotConfigured => "ods-not-configured",
            Reason::NoRoleSelected => "no-role-selected",
            Reason::LocumNotAccepted => "locum-not-accepted",
            Reason::WrongOrganisation => "wrong-organisation",
            Reason::MissingActivity => "missing-activity",
            Reason::EndpointUnavailable => "endpoint-unavailable",
        }
    }

    /// A plain-English sentence for pharmacy staff: what is wrong and what to do next.
    pub const fn message(self) -> &'static str {
        match self {
            Reason::Allowed => "Allowed.",
            Reason::NoCard => "Insert your smartcard to do this. Smartcards are never shared.",
            Reason::CardLocked => {
                "Your smartcard is locked after three wrong passcodes. Unlock it with \
                 self-service unlock if you registered an email, mobile or photo, or ask your \
                 Sponsor or Local Smartcard Administrator, or the Registration Authority."
            }
            Reason::CertificateRevoked => {
                "This smartcard has been cancelled and can never be used again. Contact your \
                 Registration Authority for a new card."
            }
            Reason::CertificateExpired => {
                "The certificate on your smartcard has expired. Renewal now needs a visit to \
                 your Registration Authority."
            }
            Reason::CertificateNotYetValid => {
                "Your smartcard's certificate is not valid yet. This usually means the \
                 computer's date or time is wrong: contact IT support."
            }
            Reason::CertificateUntrusted => {
                "Your smartcard's certificate was not issued by a trusted authority for this \
                 system. Contact IT support and give them your card number."
            }
            Reason::CertificateRevocationUnknown => {
                "The system could not confirm that your smartcard is still valid (the list of \
                 cancelled cards is out of date). Contact IT support."
            }
            Reason::CertificateUnchecked => {
                "Your smartcard is still being checked. Try again in a moment."
            }
            Reason::NotLoggedIn => "Log in with your smartcard and passcode to do this.",
            Reason::SessionExpired => {
                "Your session has ended because it was idle. Log in again with your passcode."
            }
            Reason::OdsNotConfigured => {
                "This request is for a pharmacy (ODS code) this workstation is not set up for. \
                 Check the pharmacy selected in your PMR system, or contact IT support."
            }
            Reason::NoRoleSelected => "Select a role to do this.",
            Reason::LocumNotAccepted => {
                "Locum role profiles are not accepted at this workstation. Select a role at \
                 this pharmacy, or ask the pharmacy to accept locum profiles."
            }
            Reason::WrongOrganisation => {
                "Your selected role is for a different pharmacy. Switch to your role at this \
                 pharmacy (its ODS code may have changed: choose the role with the new code)."
            }
            Reason::MissingActivity => {
                "Your selected role does not allow this. Switch to a role that does, or ask \
                 your Sponsor to add it to your access."
            }
            Reason::EndpointUnavailable => {
                "The national service (Spine) cannot be reached. Try again shortly; if it \
                 continues, contact IT support."
            }
        }
    }
}

impl FromStr for Reason {
    type Err = PolicyError;

    /// Parses a code, for clients reading the agent's replies.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.code() == s)
            .ok_or_else(|| PolicyError::UnknownReason { code: s.to_owned() })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The answer to one request: allowed or not, why, and under which generation.
///
/// Its fields are private so that `is_allowed()` and `reason() == Reason::Allowed` can never
/// disagree. The holder and role profile are recorded as the snapshot had them, so the audit
/// trail can attribute refusals as well as permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    allowed: bool,
    reason: Reason,
    generation: Generation,
    holder: Option<HolderUuid>,
    role_profile: Option<RoleProfileId>,
}

impl Decision {
    /// Whether the action may go ahead (and only while [`Decision::is_current`] holds).
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The staff message for [`Decision::reason`].
    pub fn message(&self) -> &'static str {
        self.reason.message()
    }

    /// The generation the decision was made under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The card holder in the snapshot, if any.
    pub fn holder(&self) -> Option<&HolderUuid> {
        self.holder.as_ref()
    }

    /// The selected role profile in the snapshot, if any.
    pub fn role_profile(&self) -> Option<&RoleProfileId> {
        self.role_profile.as_ref()
    }

    /// Whether this decision still stands: only while the daemon's generation is the one it
    /// was made under. Any change since (card removed, logout, role switch, expiry) voids it,
    /// whether or not the new facts would give the same answer; the caller must ask again.
    pub fn is_current(&self, current_generation: Generation) -> bool {
        self.generation == current_generation
    }
}

/// Decides whether `action` may be done for the pharmacy `requested_ods` right now.
///
/// Pure: the answer depends only on the arguments. Checks run in this order and the first
/// that fails gives the reason (so the reason is always the most fundamental thing to fix,
/// and an inconsistent snapshot still gets one defined answer):
///
/// 1. **Card**: absent → `no-card`; blocked → `card-locked`. First, because removal must win
///    over everything: a stale "logged in" flag must never outlive the card.
/// 2. **Certificate**: anything but usable → `certificate-revoked`, `certificate-expired`,
///    `certificate-not-yet-valid`, `certificate-untrusted`, `certificate-revocation-unknown`
///    or `certificate-unchecked`. Before login, because logging in again cannot fix them.
/// 3. **Login**: not logged in, or no holder UUID to attribute the action to →
///    `not-logged-in`.
/// 4. **Session**: expired → `session-expired`.
/// 5. **Workstation**: `requested_ods` not one of the configured codes → `ods-not-configured`.
///    Before the role checks, because no choice of role can fix it.
/// 6. **Role**: none selected → `no-role-selected`.
/// 7. **Organisation**: the profile is at `requested_ods` → fine; the profile is at `FFFFF` →
///    fine if locum profiles are accepted, else `locum-not-accepted`; otherwise
///    `wrong-organisation`. Exact match, also during an ODS code change: a profile at the old
///    code acts for the old code, so Spine's audit trail names the organisation the holder was
///    acting for.
/// 8. **Activity**: the profile lacks the activity the config maps `action` to →
///    `missing-activity`.
/// 9. **Endpoint**: Spine unreachable → `endpoint-unavailable`. Last, because every fact above
///    is known locally and would still stand once Spine is back: telling staff to wait for the
///    network when their role cannot do the action anyway would waste their time.
pub fn decide(
    config: &PolicyConfig,
    view: &SessionView,
    action: Action,
    requested_ods: &OdsCode,
) -> Decision {
    let reason = first_failure(config, view, action, requested_ods).unwrap_or(Reason::Allowed);
    Decision {
        allowed: reason == Reason::Allowed,
        reason,
        generation: view.generation,
        holder: view.holder.clone(),
        role_profile: view.selected_role.as_ref().map(|r| r.id.clone()),
    }
}

fn first_failure(
    config: &PolicyConfig,
    view: &SessionView,
    action: Action,
    requested_ods: &OdsCode,
) -> Option<Reason> {
    match view.card {
        CardState::Absent => return Some(Reason::NoCard),
        CardState::Blocked => return Some(Reason::CardLocked),
        CardState::Present => {}
    }
    match view.certificate {
        CertificateStatus::Usable => {}
        CertificateStatus::Revoked => return Some(Reason::CertificateRevoked),
        CertificateStatus::Expired => return Some(Reason::CertificateExpired),
        CertificateStatus::NotYetValid => return Some(Reason::CertificateNotYetValid),
        CertificateStatus::Untrusted => return Some(Reason::CertificateUntrusted),
        CertificateStatus::RevocationUnknown => {
            return Some(Reason::CertificateRevocationUnknown);
        }
        CertificateStatus::Unchecked => return Some(Reason::CertificateUnchecked),
    }
    if !view.logged_in || view.holder.is_none() {
        return Some(Reason::NotLoggedIn);
    }
    if view.session_expired {
        return Some(Reason::SessionExpired);
    }
    if !config.serves(requested_ods) {
        return Some(Reason::OdsNotConfigured);
    }
    let Some(role) = &view.selected_role else {
        return Some(Reason::NoRoleSelected);
    };
    if role.ods_code != *requested_ods {
        if !role.ods_code.is_locum() {
            return Some(Reason::WrongOrganisation);
        }
        if !config.accepts_locum_profiles() {
            return Some(Reason::LocumNotAccepted);
        }
    }
    if !role.activities.contains(config.activity_for(action)) {
        return Some(Reason::MissingActivity);
    }
    if !view.endpoint_reachable {
        return Some(Reason::EndpointUnavailable);
    }
    None
}
