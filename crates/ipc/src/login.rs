//! The prompted log-in (`docs/ipc.md`, "Prompted log-in"): `org.cardgate.Login1`, through
//! which any program of the active desktop session asks for a log-in without ever seeing the
//! passcode, and the passcode dialog of that session registers and answers; and
//! `org.cardgate.Prompt1`, which the dialog program (`cardgate-desktop`) serves and the
//! daemon calls. The polkit authentication-agent pattern: the secret goes from the dialog to
//! the agent, never through the application that asked.
#![allow(missing_docs)]

use crate::types::RoleProfileInfo;

/// The interface applications and the passcode dialog call on the agent.
pub const LOGIN_INTERFACE: &str = "org.cardgate.Login1";
/// The interface the passcode dialog serves, which the agent calls.
pub const PROMPT_INTERFACE: &str = "org.cardgate.Prompt1";
/// The introspection XML of `org.cardgate.Login1`, as installed in
/// `/usr/share/dbus-1/interfaces/`.
pub const LOGIN1_XML: &str = include_str!("../interfaces/org.cardgate.Login1.xml");
/// The introspection XML of `org.cardgate.Prompt1`, for the dialog program's authors.
pub const PROMPT1_XML: &str = include_str!("../interfaces/org.cardgate.Prompt1.xml");
/// Why the agent closes a dialog (`Prompt1.EndLogin`): the card left the reader.
pub const END_CARD_REMOVED: &str = "card-removed";
/// Why the agent closes a dialog: the application that asked has gone from the bus.
pub const END_REQUESTER_GONE: &str = "requester-gone";
/// Why the agent closes a dialog: nobody answered in time.
pub const END_TIMED_OUT: &str = "timed-out";

/// The client side of `org.cardgate.Login1`.
#[zbus::proxy(
    interface = "org.cardgate.Login1",
    default_service = "org.cardgate.Agent",
    default_path = "/org/cardgate/Agent",
    gen_blocking = false
)]
pub trait Login {
    /// Asks for a log-in on behalf of the calling program; the agent's passcode dialog in the
    /// caller's desktop session asks the holder. Returns the role profiles, or a named error
    /// (`NoPrompt`, `Cancelled`, `LoginInProgress`, `NoCard`, ...). The call waits for the
    /// holder: use a reply timeout of minutes, not the bus's default 25 s.
    fn request_login(&self, reason: &str) -> zbus::Result<Vec<RoleProfileInfo>>;

    /// Registers the caller's object at `path` (serving `org.cardgate.Prompt1`) as the
    /// passcode dialog of the caller's logind session.
    fn register_prompt(&self, path: &zbus::zvariant::ObjectPath<'_>) -> zbus::Result<()>;

    /// Withdraws a registration made by this connection.
    fn unregister_prompt(&self, path: &zbus::zvariant::ObjectPath<'_>) -> zbus::Result<()>;

    /// The dialog's answer to `BeginLogin(cookie, ...)`: the passcode typed in it.
    fn answer_login(
        &self,
        cookie: &str,
        passcode: &str,
        confirm_final_try: bool,
    ) -> zbus::Result<Vec<RoleProfileInfo>>;

    /// The dialog's answer when the holder keys the passcode on the reader's PIN pad.
    fn answer_login_with_pin_pad(
        &self,
        cookie: &str,
        confirm_final_try: bool,
    ) -> zbus::Result<Vec<RoleProfileInfo>>;

    /// The holder closed the dialog: the application gets `Cancelled`.
    fn cancel_login(&self, cookie: &str) -> zbus::Result<()>;
}

/// The agent's side of `org.cardgate.Prompt1` (the dialog program serves it).
#[zbus::proxy(interface = "org.cardgate.Prompt1", gen_blocking = false)]
pub trait Prompt {
    /// Show the passcode dialog for the request `cookie`: `requester` is the asking program in
    /// words, `reason` what it says it needs the log-in for.
    fn begin_login(&self, cookie: &str, requester: &str, reason: &str) -> zbus::Result<()>;

    /// Show the passcode dialog for a web page's sign-in (`org.cardgate.Web1.Authenticate`):
    /// "Sign in to `origin`"; `requester` is the relaying program (the web bridge) in words.
    /// Answered with `AnswerLogin` as for `BeginLogin`; no role picker follows.
    fn begin_web_sign_in(&self, cookie: &str, origin: &str, requester: &str) -> zbus::Result<()>;

    /// Close the dialog of `cookie` without an answer; `why` is one of the `END_*` codes.
    fn end_login(&self, cookie: &str, why: &str) -> zbus::Result<()>;
}
