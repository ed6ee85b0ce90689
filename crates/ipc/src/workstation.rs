//! The client proxy [`WorkstationProxy`] of `org.cardgate.Workstation1`, the interface the
//! PAM module uses to tie a workstation login session (logind) to the card that opened it, so
//! that the card's removal locks, ends or signals that session (`docs/deployment.md`).
//!
//! It lives at the same object path as `org.cardgate.Agent1` and is served by the same daemon;
//! every method is restricted to root and the `cardgate` group. As in `proxy.rs`, the macro's
//! generated signal types cannot carry doc comments, hence the `missing_docs` allowance.
#![allow(missing_docs)]

/// The interface name.
pub const WORKSTATION_INTERFACE: &str = "org.cardgate.Workstation1";

/// The client side of `org.cardgate.Workstation1`.
#[zbus::proxy(
    interface = "org.cardgate.Workstation1",
    default_service = "org.cardgate.Agent",
    default_path = "/org/cardgate/Agent",
    gen_blocking = false
)]
pub trait Workstation {
    /// Registers the logind session `session_id` of local account `user` as opened by the
    /// card of the current agent session; returns the session's logind object path (`/` when
    /// the removal action is `signal` and logind is not asked). `NotLoggedIn` without a live
    /// agent session. Restricted.
    fn register_session(
        &self,
        session_id: &str,
        user: &str,
    ) -> zbus::Result<zbus::zvariant::OwnedObjectPath>;

    /// Forgets a registered session (at log-out); unknown ids are not an error. Restricted.
    fn unregister_session(&self, session_id: &str) -> zbus::Result<()>;

    /// The registered sessions: logind session id, user, holder UUID, card serial. Restricted.
    fn sessions(&self) -> zbus::Result<Vec<(String, String, String, String)>>;

    /// The card in the reader for the account check: holder UUID, card serial, a stable
    /// code (`usable`, `no-card`, `card-locked`, `certificate-revoked`,
    /// `certificate-expired`, `certificate-unusable`) and a sentence for the holder (for a
    /// locked card: how to get it unlocked). Restricted.
    fn card_standing(&self) -> zbus::Result<(String, String, String, String)>;

    /// The card of a registered session left its reader; `action` is what was done:
    /// `lock`, `terminate` or `signal` (this signal only).
    #[zbus(signal)]
    fn session_card_removed(&self, session_id: &str, user: &str, action: &str) -> zbus::Result<()>;
}
