//! What the daemon knows at the moment a request arrives, handed to [`decide`](crate::decide)
//! as a snapshot: the card, its certificate, the login and Spine session, the selected role
//! profile, and the generation all of it belongs to.

use std::collections::BTreeSet;

use crate::{Activity, Generation, HolderUuid, OdsCode, RoleProfileId};

/// The card in the reader, as the card actor last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CardState {
    /// No card in the reader (or the reader, or pcscd, is gone: every card counts as removed).
    Absent,
    /// A card is present and its passcode is not blocked.
    Present,
    /// A card is present but blocked after three wrong passcodes; it needs unlocking.
    Blocked,
}

/// The verdict on the card's authentication certificate (from `cardgate-certs`, mapped by the
/// daemon). Warnings (expiry in 90/30/7 days) are [`CertificateStatus::Usable`]: they are shown
/// at insertion, they do not gate actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateStatus {
    /// Checked and good (possibly with warnings).
    Usable,
    /// Past its end date: renewal now needs a visit to the RA.
    Expired,
    /// Listed on the CRL: the card was cancelled (lost, stolen, damaged) and can never be used
    /// again.
    Revoked,
    /// Not valid yet: usually the workstation clock is wrong.
    NotYetValid,
    /// Does not chain to the configured issuing CA, or is not fit for authentication.
    Untrusted,
    /// Revocation could not be confirmed (no CRL fresh enough) and the checks are configured to
    /// fail closed.
    RevocationUnknown,
    /// Not checked yet since this card was inserted. Never trust a check across a removal.
    Unchecked,
}

/// The selected role profile: the organisation it is at and what it permits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProfileView {
    /// Which profile, for the audit trail.
    pub id: RoleProfileId,
    /// Where the profile is: a pharmacy's code, or `FFFFF` for a locum profile.
    pub ods_code: OdsCode,
    /// What it permits. Activities the agent does not know are kept: they simply never match.
    pub activities: BTreeSet<Activity>,
}

/// A snapshot of the facts a decision rests on.
///
/// Deliberately plain fields, not a state machine: the facts come from different actors (card,
/// certificate checks, Spine client) and a snapshot can be inconsistent for a moment (a card
/// removed while the session is still marked logged in). [`decide`](crate::decide) gives every
/// combination a defined answer, and the card's absence always wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// The card in the reader.
    pub card: CardState,
    /// The card's certificate verdict.
    pub certificate: CertificateStatus,
    /// Whether the holder verified their passcode and a Spine session was established.
    pub logged_in: bool,
    /// Whether the Spine session has ended (idle longer than `max_idle_time`, or refused by
    /// Spine with `session_expired`).
    pub session_expired: bool,
    /// Whether the Spine endpoint answered recently enough to be counted on.
    pub endpoint_reachable: bool,
    /// The role profile the holder selected, if any.
    pub selected_role: Option<RoleProfileView>,
    /// The holder of the card the session belongs to. A decision is never `allowed` without
    /// one: every action must be attributable to its holder.
    pub holder: Option<HolderUuid>,
    /// The generation these facts belong to.
    pub generation: Generation,
}
