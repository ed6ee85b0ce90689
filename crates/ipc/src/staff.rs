//! The staff tasks of `org.cardgate.Agent1` (`docs/ipc.md`, "Staff tasks"): the three unlock
//! paths, certificate self-renewal with its progress signal, and Temporary Access Cards, with
//! their argument and return types and a client proxy [`AgentStaffProxy`] for them.
//!
//! The methods are on the same interface and object as [`crate::AgentProxy`]'s; the proxy is
//! separate only so this group of calls reads as one piece. As in `proxy.rs`, the macro's
//! generated signal types cannot carry doc comments, hence the `missing_docs` allowance.
#![allow(missing_docs)]

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// The answer to `StartSelfServiceUnlock`: `(ss)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SelfServiceStarted {
    /// Names the request in `UnlockWithOneTimeCode`.
    pub request_id: String,
    /// Where the one-time code went, masked (`a***@nhs.example`).
    pub sent_to: String,
}

/// One entry of a TAC's register: `(sxx)` who used it, from, until (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TacUse {
    /// The UUID of the team member who used the card.
    pub used_by: String,
    /// From when, Unix seconds.
    pub from: i64,
    /// Until when, Unix seconds.
    pub until: i64,
}

/// One event of a TAC's history: `(xsss)` when, what (`activated`, `usage_recorded`,
/// `returned`), by whom (the sponsor's UUID), the holder at the time (`""` when none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TacHistoryEntry {
    /// When, Unix seconds.
    pub at: i64,
    /// What happened.
    pub action: String,
    /// The Sponsor/LSA whose session did it.
    pub by: String,
    /// The holder at the time, `""` when none.
    pub holder_uid: String,
}

/// A Temporary Access Card's record as the endpoint keeps it:
/// `(ssssa(sxx)a(xsss))`: serial, state (`blank` or `active`), holder UUID and custodian
/// (`""` when blank), the custodian's register of uses, and the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TacInfo {
    /// The TAC's card serial.
    pub tac_serial: String,
    /// `blank` or `active`.
    pub state: String,
    /// The team member it is active for, `""` when blank.
    pub holder_uid: String,
    /// Who keeps the card and its register, `""` when blank.
    pub custodian: String,
    /// The register: who used it and when (kept when the card is returned).
    pub usage: Vec<TacUse>,
    /// Everything done to the card, oldest first.
    pub history: Vec<TacHistoryEntry>,
}

/// A TAC record as the six out arguments of the Tac methods (a flat `ssssa(sxx)a(xsss)`
/// body, as the interface XML declares it).
pub type TacOutArgs = (
    String,
    String,
    String,
    String,
    Vec<TacUse>,
    Vec<TacHistoryEntry>,
);

impl TacInfo {
    /// The record as the Tac methods' out arguments, in field order.
    pub fn into_out_args(self) -> TacOutArgs {
        (
            self.tac_serial,
            self.state,
            self.holder_uid,
            self.custodian,
            self.usage,
            self.history,
        )
    }
}

impl SelfServiceStarted {
    /// As `StartSelfServiceUnlock`'s two out arguments (`request_id`, `sent_to`).
    pub fn into_out_args(self) -> (String, String) {
        (self.request_id, self.sent_to)
    }
}

/// The renewal steps `RenewalProgress` names, in order.
pub const RENEWAL_STEPS: [&str; 4] = [
    "generating-key",
    "requesting-certificate",
    "writing-certificate",
    "done",
];

/// The client side of the staff tasks of `org.cardgate.Agent1`. Every method is restricted
/// (root and the `cardgate` group).
#[zbus::proxy(
    interface = "org.cardgate.Agent1",
    default_service = "org.cardgate.Agent",
    default_path = "/org/cardgate/Agent",
    gen_blocking = false
)]
pub trait AgentStaff {
    /// Self-service unlock, step 1, for the locked card in the reader: the endpoint sends a
    /// one-time code to the holder's registered contact. `NotEligible` for an old-generation
    /// card, `EndpointUnavailable` (with the endpoint's reason) when the holder registered no
    /// contact.
    fn start_self_service_unlock(&self) -> zbus::Result<SelfServiceStarted>;

    /// Self-service unlock, step 2: the one-time code releases the card's unlock code, which
    /// the agent uses at once to unlock the card with `new_passcode`.
    fn unlock_with_one_time_code(
        &self,
        request_id: &str,
        one_time_code: &str,
        new_passcode: &str,
    ) -> zbus::Result<()>;

    /// Unlocks the locked card in the reader with an unlock code (from the RA, or given by a
    /// Sponsor/LSA) and sets `new_passcode`.
    fn unlock_with_code(
        &self,
        unlock_code: &str,
        new_passcode: &str,
        confirm_final_try: bool,
    ) -> zbus::Result<()>;

    /// As [`AgentStaffProxy::unlock_with_code`], the holder keying the unlock code and the new
    /// passcode on the reader's PIN pad.
    fn unlock_with_code_on_pin_pad(&self, confirm_final_try: bool) -> zbus::Result<()>;

    /// A Sponsor/LSA, logged in with their own card and a role with `admin.unlock`, unlocks
    /// another holder's card that is in a reader here, the holder there to choose
    /// `new_passcode`. The unlock code the endpoint releases goes straight to the card and is
    /// never returned. Never the Sponsor's own card (`NotEligible`, nothing asked of the
    /// endpoint).
    fn sponsor_unlock(
        &self,
        holder_uuid: &str,
        card_serial: &str,
        new_passcode: &str,
    ) -> zbus::Result<()>;

    /// Renews the session holder's certificate: a new key made on the card, a request signed
    /// by it, the new certificate written; returns its expiry (Unix seconds). Progress comes
    /// as `RenewalProgress` signals.
    fn renew_certificate(&self) -> zbus::Result<i64>;

    /// Activates a blank TAC for a team member, with its custodian.
    fn tac_activate(
        &self,
        tac_serial: &str,
        holder_uuid: &str,
        custodian: &str,
    ) -> zbus::Result<TacInfo>;

    /// Records in the custodian's register who used a TAC, from and until (Unix seconds).
    fn tac_record_use(
        &self,
        tac_serial: &str,
        used_by: &str,
        from: i64,
        until: i64,
    ) -> zbus::Result<TacInfo>;

    /// Returns a TAC to blank.
    fn tac_return(&self, tac_serial: &str) -> zbus::Result<TacInfo>;

    /// A TAC's record.
    fn tac_read(&self, tac_serial: &str) -> zbus::Result<TacInfo>;

    /// Renewal progress: `step` is one of [`RENEWAL_STEPS`], `percent` 0 to 100.
    #[zbus(signal)]
    fn renewal_progress(&self, step: &str, percent: u32) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_the_documented_ones() {
        assert_eq!(SelfServiceStarted::SIGNATURE.to_string(), "(ss)");
        assert_eq!(TacInfo::SIGNATURE.to_string(), "(ssssa(sxx)a(xsss))");
    }
}
