//! Newtypes for the domain values a gate decision compares, so an ODS code can never be passed
//! where an activity or a role profile id was meant: [`OdsCode`], [`Activity`],
//! [`RoleProfileId`], [`HolderUuid`] and the session [`Generation`].

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// An Organisation Data Service code: who a pharmacy is, as Spine knows it.
///
/// Validated as ODS codes are written: 3 to 6 capital letters or digits (`FA123`, `FFFFF`).
/// Lower case is refused rather than folded, so that the code in the configuration, in the
/// PMR's request and in the audit trail is always spelled the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

impl OdsCode {
    /// The generic locum organisation. Locums hold a role profile here that Spine accepts at
    /// any pharmacy; whether *this* workstation accepts it is
    /// [`PolicyConfig::accepts_locum_profiles`](crate::PolicyConfig::accepts_locum_profiles).
    pub const LOCUM: &'static str = "FFFFF";

    /// Checks the shape of an ODS code.
    pub fn new(value: &str) -> Result<OdsCode, PolicyError> {
        let problem = if value.is_empty() {
            Some("it is empty; an ODS code is 3 to 6 capital letters or digits, e.g. FA123".into())
        } else if !(3..=6).contains(&value.len()) || !value.is_ascii() {
            Some(format!(
                "it has {} characters; an ODS code is 3 to 6 capital letters or digits, e.g. FA123",
                value.chars().count()
            ))
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            if value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Some(format!(
                    "ODS codes are written in capitals: use {:?}",
                    value.to_ascii_uppercase()
                ))
            } else {
                Some(
                    "only capital letters and digits may appear in an ODS code (no spaces or \
                     punctuation)"
                        .into(),
                )
            }
        } else {
            None
        };
        match problem {
            Some(problem) => Err(PolicyError::InvalidOdsCode {
                value: value.to_owned(),
                problem,
            }),
            None => Ok(OdsCode(value.to_owned())),
        }
    }

    /// The generic locum organisation's code, `FFFFF`.
    pub fn locum() -> OdsCode {
        OdsCode(Self::LOCUM.to_owned())
    }

    /// Whether this is the generic locum organisation, whose profiles are accepted only where
    /// the workstation's policy says so.
    pub fn is_locum(&self) -> bool {
        self.0 == Self::LOCUM
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OdsCode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OdsCode::new(s)
    }
}

impl TryFrom<String> for OdsCode {
    type Error = PolicyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OdsCode::new(&value)
    }
}

impl From<OdsCode> for String {
    fn from(value: OdsCode) -> Self {
        value.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A permitted activity as Spine names it in a role profile (`eps.download`, `scr.view`).
///
/// The shape check is deliberately loose (1 to 64 visible ASCII characters): role profiles
/// come from Spine, and an activity this agent has never heard of must not make a whole
/// session unreadable. The configuration is stricter: it only accepts [`Activity::KNOWN`],
/// so that a typo is found when the daemon starts, not when a prescription cannot be
/// downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Activity(Cow<'static, str>);

impl Activity {
    /// Set, change or delete a patient's nominated pharmacy.
    pub const EPS_NOMINATE: Activity = Activity(Cow::Borrowed("eps.nominate"));
    /// Download prescriptions from the Spine.
    pub const EPS_DOWNLOAD: Activity = Activity(Cow::Borrowed("eps.download"));
    /// Return prescriptions to the Spine.
    pub const EPS_RETURN: Activity = Activity(Cow::Borrowed("eps.return"));
    /// Send a dispense notification (confirm a prescription as dispensed).
    pub const EPS_DISPENSE_NOTIFY: Activity = Activity(Cow::Borrowed("eps.dispense-notify"));
    /// Submit a prescription for payment.
    pub const EPS_CLAIM: Activity = Activity(Cow::Borrowed("eps.claim"));
    /// View a patient's Summary Care Record: the SCR role.
    pub const SCR_VIEW: Activity = Activity(Cow::Borrowed("scr.view"));
    /// Unlock another person's card (Sponsor/LSA).
    pub const ADMIN_UNLOCK: Activity = Activity(Cow::Borrowed("admin.unlock"));
    /// Activate and manage Temporary Access Cards (Sponsor/LSA).
    pub const ADMIN_TAC: Activity = Activity(Cow::Borrowed("admin.tac"));
    /// Renew another person's certificates (Sponsor).
    pub const ADMIN_RENEW: Activity = Activity(Cow::Borrowed("admin.renew"));

    /// Every activity in the Spine protocol, version 1 (`docs/spine-protocol.md`).
    pub const KNOWN: [Activity; 9] = [
        Activity::EPS_NOMINATE,
        Activity::EPS_DOWNLOAD,
        Activity::EPS_RETURN,
        Activity::EPS_DISPENSE_NOTIFY,
        Activity::EPS_CLAIM,
        Activity::SCR_VIEW,
        Activity::ADMIN_UNLOCK,
        Activity::ADMIN_TAC,
        Activity::ADMIN_RENEW,
    ];

    /// Checks the shape of an activity string (1 to 64 visible ASCII characters).
    pub fn new(value: &str) -> Result<Activity, PolicyError> {
        let problem = if value.is_empty() {
            Some("it is empty")
        } else if value.len() > 64 {
            Some("it is longer than 64 characters")
        } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
            Some("only visible ASCII characters may appear (no spaces)")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(PolicyError::InvalidActivity {
                value: value.to_owned(),
                problem: problem.to_owned(),
            }),
            None => Ok(Activity(Cow::Owned(value.to_owned()))),
        }
    }

    /// Whether this activity is one of [`Activity::KNOWN`].
    pub fn is_known(&self) -> bool {
        Activity::KNOWN.contains(self)
    }

    /// The activity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Activity {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Activity::new(s)
    }
}

impl TryFrom<String> for Activity {
    type Error = PolicyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Activity::new(&value)
    }
}

impl From<Activity> for String {
    fn from(value: Activity) -> Self {
        value.0.into_owned()
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one of the holder's role profiles (`RP-1001`): which role the decision was made
/// under, for the audit trail.
///
/// 1 to 64 characters from letters, digits and `-_.:`, so it can be logged and put in a
/// D-Bus reply without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleProfileId(String);

impl RoleProfileId {
    /// Checks the shape of a role profile id.
    pub fn new(value: &str) -> Result<RoleProfileId, PolicyError> {
        let problem = if value.is_empty() {
            Some("it is empty")
        } else if value.len() > 64 {
            Some("it is longer than 64 characters")
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            Some("only letters, digits and - _ . : may appear")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(PolicyError::InvalidRoleProfileId {
                value: value.to_owned(),
                problem: problem.to_owned(),
            }),
            None => Ok(RoleProfileId(value.to_owned())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RoleProfileId {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoleProfileId::new(s)
    }
}

impl TryFrom<String> for RoleProfileId {
    type Error = PolicyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        RoleProfileId::new(&value)
    }
}

impl From<RoleProfileId> for String {
    fn from(value: RoleProfileId) -> Self {
        value.0
    }
}

impl fmt::Display for RoleProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The card holder's UUID: the 12-digit number printed on the front of the card.
///
/// Every action done while a card is in use must be attributable to its holder, so a
/// decision is never `allowed` without one. (The same rule as `cardgate_piv::HolderUuid`;
/// this crate keeps its own copy to stay free of the card stack. Convert with
/// `HolderUuid::new(piv_uuid.as_str())`.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HolderUuid(String);

impl HolderUuid {
    /// Checks that `value` is exactly 12 ASCII digits.
    pub fn new(value: &str) -> Result<HolderUuid, PolicyError> {
        if value.len() != 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PolicyError::InvalidHolderUuid {
                value: value.to_owned(),
            });
        }
        Ok(HolderUuid(value.to_owned()))
    }

    /// The UUID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HolderUuid {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HolderUuid::new(s)
    }
}

impl TryFrom<String> for HolderUuid {
    type Error = PolicyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        HolderUuid::new(&value)
    }
}

impl From<HolderUuid> for String {
    fn from(value: HolderUuid) -> Self {
        value.0
    }
}

impl fmt::Display for HolderUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The session generation: a counter the daemon bumps whenever anything a decision rests on
/// changes (card removed or inserted, login, logout, role switch, session expiry).
///
/// A [`Decision`](crate::Decision) carries the generation it was made under; the moment the
/// daemon's generation moves on, that decision is void
/// ([`Decision::is_current`](crate::Decision::is_current)). This is how "the answer must turn
/// to *no* the moment the card leaves the reader" reaches PMR software that cached a *yes*.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(u64);

impl Generation {
    /// A generation with this number.
    pub const fn new(value: u64) -> Generation {
        Generation(value)
    }

    /// The number, for D-Bus replies and the audit trail.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next generation. Saturates rather than wrapping: 2^64 changes will not happen, and
    /// wrapping to 0 would be the worse failure, reviving decisions made under generation 0.
    pub const fn next(self) -> Generation {
        Generation(self.0.saturating_add(1))
    }
}

impl From<u64> for Generation {
    fn from(value: u64) -> Self {
        Generation(value)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
