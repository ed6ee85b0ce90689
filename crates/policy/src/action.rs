//! The EPS and SCR actions PMR software asks the agent about: the functions that, by NHS
//! rules, need a smartcard (set, change or delete a nomination; download, return, dispense
//! notification, claim) and Summary Care Record access.
//!
//! **This table is the one definition of the action list.** The bus name, the order, the
//! default activity and the documentation of every action are written once, in the
//! `actions!` invocation below; the enum, [`Action::ALL`], [`Action::name`] and
//! [`Action::default_activity`] are generated from it, so they cannot disagree. The IPC
//! crate, the CLI and the daemon take the list from here. What cannot be generated (the
//! documentation pages and the shipped example configuration) is held to this table by
//! `crates/policy/tests/contracts.rs`, which names the file to update when they drift.
//! CONTRIBUTING.md says how to add an action.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Activity, PolicyError};

/// Generates [`Action`] and its tables from one list of
/// `doc, Variant = "bus-name" needs ACTIVITY_CONSTANT`.
macro_rules! actions {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal needs $activity:ident,)+) => {
        /// One action PMR software wants to take, named in kebab-case on D-Bus and in
        /// configuration.
        ///
        /// Setting, changing and deleting a nomination are separate actions (all three need
        /// `eps.nominate` by default) because the audit trail must say which one happened,
        /// and a pharmacy may choose to gate them differently.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum Action {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl Action {
            /// Every action, in documentation order.
            pub const ALL: [Action; Action::COUNT] = [$(Action::$variant),+];

            /// How many actions there are.
            pub const COUNT: usize = [$($name),+].len();

            /// The stable kebab-case name used on D-Bus and in configuration.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }

            /// The activity a role profile must hold for this action unless the
            /// configuration maps it elsewhere (`docs/spine-protocol.md`).
            pub const fn default_activity(self) -> Activity {
                match self {
                    $(Action::$variant => Activity::$activity,)+
                }
            }
        }
    };
}

actions! {
    /// `nominate-set`: set a patient's nominated pharmacy.
    NominateSet = "nominate-set" needs EPS_NOMINATE,
    /// `nominate-change`: change a patient's nominated pharmacy.
    NominateChange = "nominate-change" needs EPS_NOMINATE,
    /// `nominate-delete`: remove a patient's nomination.
    NominateDelete = "nominate-delete" needs EPS_NOMINATE,
    /// `download`: download prescriptions from the Spine (including opening ones downloaded
    /// overnight without a card, which stay inaccessible until a card is presented).
    Download = "download" needs EPS_DOWNLOAD,
    /// `return`: return prescriptions to the Spine.
    Return = "return" needs EPS_RETURN,
    /// `dispense-notification`: confirm a prescription as dispensed.
    DispenseNotification = "dispense-notification" needs EPS_DISPENSE_NOTIFY,
    /// `claim`: submit a prescription for payment.
    Claim = "claim" needs EPS_CLAIM,
    /// `view-scr`: view a patient's Summary Care Record (needs an SCR role).
    ViewScr = "view-scr" needs SCR_VIEW,
}

impl Action {
    /// The valid names, comma-separated: what an error tells a caller who sent a bad one.
    pub fn valid_names() -> String {
        Action::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Position in [`Action::ALL`], for table lookups without a fallible map access
    /// (the variants are declared in the order of `ALL`, so the discriminant is the index).
    pub(crate) const fn index(self) -> usize {
        self as usize
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_action_at_its_index() {
        for (i, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(action.index(), i, "{action} is out of place in Action::ALL");
        }
    }

    #[test]
    fn names_round_trip_through_parsing_and_serde() {
        for action in Action::ALL {
            assert_eq!(action.name().parse::<Action>().ok(), Some(action));
            let from_serde: Action = toml::Value::String(action.name().to_owned())
                .try_into()
                .unwrap_or_else(|e| panic!("serde refuses {action}: {e}"));
            assert_eq!(from_serde, action);
        }
    }
}
