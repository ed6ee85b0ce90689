//! The EPS and SCR actions PMR software asks the agent about: the functions that, by NHS
//! rules, need a smartcard (set, change or delete a nomination; download, return, dispense
//! notification, claim) and Summary Care Record access.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// One action PMR software wants to take, named in kebab-case on D-Bus and in configuration.
///
/// Setting, changing and deleting a nomination are separate actions (all three need
/// `eps.nominate` by default) because the audit trail must say which one happened, and a
/// pharmacy may choose to gate them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// `nominate-set`: set a patient's nominated pharmacy.
    NominateSet,
    /// `nominate-change`: change a patient's nominated pharmacy.
    NominateChange,
    /// `nominate-delete`: remove a patient's nomination.
    NominateDelete,
    /// `download`: download prescriptions from the Spine (including opening ones downloaded
    /// overnight without a card, which stay inaccessible until a card is presented).
    Download,
    /// `return`: return prescriptions to the Spine.
    Return,
    /// `dispense-notification`: confirm a prescription as dispensed.
    DispenseNotification,
    /// `claim`: submit a prescription for payment.
    Claim,
    /// `view-scr`: view a patient's Summary Care Record (needs an SCR role).
    ViewScr,
}

impl Action {
    /// Every action, in documentation order.
    pub const ALL: [Action; 8] = [
        Action::NominateSet,
        Action::NominateChange,
        Action::NominateDelete,
        Action::Download,
        Action::Return,
        Action::DispenseNotification,
        Action::Claim,
        Action::ViewScr,
    ];

    /// The stable kebab-case name used on D-Bus and in configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Action::NominateSet => "nominate-set",
            Action::NominateChange => "nominate-change",
            Action::NominateDelete => "nominate-delete",
            Action::Download => "download",
            Action::Return => "return",
            Action::DispenseNotification => "dispense-notification",
            Action::Claim => "claim",
            Action::ViewScr => "view-scr",
        }
    }

    /// The valid names, comma-separated: what an error tells a caller who sent a bad one.
    pub fn valid_names() -> String {
        Action::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Position in [`Action::ALL`], for table lookups without a fallible map access.
    pub(crate) const fn index(self) -> usize {
        match self {
            Action::NominateSet => 0,
            Action::NominateChange => 1,
            Action::NominateDelete => 2,
            Action::Download => 3,
            Action::Return => 4,
            Action::DispenseNotification => 5,
            Action::Claim => 6,
            Action::ViewScr => 7,
        }
    }
}

impl FromStr for Action {
    type Err = PolicyError;

    /// Parses an exact kebab-case name. No case folding or aliases: a PMR that sends
    /// `Download` gets an error listing the real names rather than a guess.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| PolicyError::UnknownAction {
                name: s.to_owned(),
                valid: Action::valid_names(),
            })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
