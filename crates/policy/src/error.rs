//! The crate's one error type: values and configuration that cannot be used at all (a malformed
//! ODS code, an unknown action name, a bad key in the policy configuration). A request that is
//! well formed but refused is not an error: it is a [`Decision`](crate::Decision) with a
//! [`Reason`](crate::Reason), because the PMR software and the member of staff must be told why.

/// What could not be used, and what to do about it.
///
/// Every message is written to be shown as it is: to the PMR developer who sent a bad action
/// name, or to IT support reading the daemon's refusal to start on a bad configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not an ODS code: these are 3 to 6 capital letters or digits (`FA123`, `FFFFF`).
    #[error("{value:?} is not an ODS code: {problem}")]
    InvalidOdsCode {
        /// The text as given.
        value: String,
        /// What is wrong and how to write it instead.
        problem: String,
    },
    /// Not an activity string of the shape Spine sends (`eps.download`).
    #[error("{value:?} is not an activity: {problem}")]
    InvalidActivity {
        /// The text as given.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// Not a role profile id of the shape Spine sends (`RP-1001`, `555254242105`).
    #[error("{value:?} is not a role profile id: {problem}")]
    InvalidRoleProfileId {
        /// The text as given.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// Not a holder UUID (the 12-digit number printed on the front of the card).
    #[error("{value:?} is not a smartcard holder UUID: it must be exactly 12 digits")]
    InvalidHolderUuid {
        /// The text as given.
        value: String,
    },
    /// An action name that is not one of the EPS/SCR actions the agent gates.
    ///
    /// Carries the valid names so a PMR developer can fix the call without reading the source.
    #[error("unknown action {name:?}; the actions are: {valid}")]
    UnknownAction {
        /// The name as given.
        name: String,
        /// The valid names, comma-separated, in documentation order.
        valid: String,
    },
    /// A reason code that is not one this crate defines (a client parsing a reply from a newer
    /// agent should treat it as "refused").
    #[error("unknown reason code {code:?}")]
    UnknownReason {
        /// The code as given.
        code: String,
    },
    /// A value in the policy configuration is refused.
    ///
    /// `key` is the path relative to the policy table (`workstation_ods_codes[1]`,
    /// `actions.download`); the daemon prefixes the table's own name when it reports it.
    #[error("policy configuration key `{key}`: {problem}")]
    InvalidConfig {
        /// The offending key, e.g. `workstation_ods_codes[0]` or `actions.view-scr`.
        key: String,
        /// What is wrong and what to write instead; complete on its own, because TOML
        /// parsers show only this text.
        problem: String,
    },
}
