//! The browser sign-in's interface, `org.cardgate.Web1` (`docs/ipc.md`, "Web sign-in";
//! `docs/web.md`): what `cardgate-web-bridge` calls on the agent for a web page, each call
//! carrying the page's origin as the browser reported it.
#![allow(missing_docs)]

use crate::types::AuthoriseAnswer;

/// The interface the web bridge calls.
pub const WEB_INTERFACE: &str = "org.cardgate.Web1";
/// The introspection XML of `org.cardgate.Web1`, as installed in
/// `/usr/share/dbus-1/interfaces/`.
pub const WEB1_XML: &str = include_str!("../interfaces/org.cardgate.Web1.xml");

/// What `Web1.Status` tells a page: no holder data, only what a page needs to decide
/// whether to offer "Sign in with smartcard" or lock its screen.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize, zbus::zvariant::Type,
)]
pub struct WebStatus {
    /// A card is in the reader.
    pub card_present: bool,
    /// The agent's state code (`crate::AgentState::as_str`).
    pub state: String,
    /// The session generation (compare with the one an `Authorise` answer carries).
    pub generation: u64,
}

/// The client side of `org.cardgate.Web1`.
#[zbus::proxy(
    interface = "org.cardgate.Web1",
    default_service = "org.cardgate.Agent",
    default_path = "/org/cardgate/Agent",
    gen_blocking = false
)]
pub trait Web {
    /// The card signs a sign-in for `origin` over the identity provider's `nonce`, once the
    /// holder typed the passcode in the agent's dialog ("Sign in to `origin`"). Returns the
    /// token (JSON, `cardgate_webauth::AuthToken`). Waits for the holder: use a reply timeout
    /// of minutes. Named errors: `OriginNotAllowed`, `OriginNotHttps`, `NonceMalformed`,
    /// `NonceReplayed`, `Cancelled`, `NoCard`, `NoPrompt`, `CardBlocked`, `LoginInProgress`,
    /// `EndpointUnavailable`, ...
    fn authenticate(&self, origin: &str, nonce: &str) -> zbus::Result<String>;

    /// Selects the role the holder chose at the identity provider (its `selected_roleid`).
    fn select_role(&self, origin: &str, role_id: &str) -> zbus::Result<()>;

    /// The gate, as `Agent1.Authorise`, audited with the origin.
    fn authorise(&self, origin: &str, action: &str, ods: &str) -> zbus::Result<AuthoriseAnswer>;

    /// Card presence, the agent's state and the session generation.
    fn status(&self, origin: &str) -> zbus::Result<WebStatus>;
}
