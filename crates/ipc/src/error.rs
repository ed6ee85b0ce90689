//! The crate's one error type, [`AgentError`]: every named D-Bus error the daemon replies
//! with (`org.cardgate.Agent1.Error.*`). Clients match on the variant (the error name), and
//! show the message to people; the message never holds a passcode.
//!
//! The enum derives `zbus::DBusError`, which also writes its `Display` ("name: message") and
//! `std::error::Error`, so it is not a `thiserror` enum; it is still the only error type here.

/// A named error of `org.cardgate.Agent1`. The `String` of each variant is the message for
/// people (D-Bus carries it as the error's first argument).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.cardgate.Agent1.Error")]
#[non_exhaustive]
pub enum AgentError {
    /// Failure of the bus itself (the connection, a malformed message): not the agent's
    /// answer. Kept so that clients have one error type for every call.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument broke its rule; the message names the argument and the rule. No card try
    /// was spent.
    InvalidArgument(String),
    /// No card is in the reader.
    NoCard(String),
    /// The card is locked; the message says how to unlock it.
    CardBlocked(String),
    /// The passcode was wrong; the message carries the tries left.
    WrongPasscode(String),
    /// One try is left and `confirm_final_try` was false: nothing was sent to the card.
    FinalTryNotConfirmed(String),
    /// The passcode just failed on this card and was not sent again.
    RepeatedPasscode(String),
    /// The call needs a session and there is none.
    NotLoggedIn(String),
    /// `SelectRoleProfile` with an id the holder does not have.
    UnknownRoleProfile(String),
    /// A restricted method and a caller outside the `cardgate` group (or the caller could not
    /// be identified).
    NotPermitted(String),
    /// The endpoint could not be reached or refused the request.
    EndpointUnavailable(String),
    /// The audit trail cannot be written, so the agent refuses (fails closed).
    AuditUnavailable(String),
    /// The card or reader failed; the message carries the card's status word when it gave one.
    Card(String),
    /// Anything else; a bug or an environment problem, worth a support ticket.
    Internal(String),
    /// The card or holder cannot take this path (an old-generation card, a renewal not yet
    /// due or already too late, a Sponsor's own card); the message says what to do instead.
    /// Nothing was sent to the card.
    NotEligible(String),
    /// `RequestLogin`: the holder closed the passcode dialog, or the dialog program ended
    /// without an answer. Nothing more was sent to the card.
    Cancelled(String),
    /// `RequestLogin`: no passcode dialog is registered for the caller's desktop session
    /// (`cardgate-desktop` is not running there). Nothing was sent to the card.
    NoPrompt(String),
    /// `RequestLogin`: another program's log-in request is being answered; ask again when it
    /// is done.
    LoginInProgress(String),
    /// `org.cardgate.Web1`: the page's origin is not on the workstation's allow-list
    /// (`[web] allowed_origins`; empty: web sign-in is off), or is not a web origin at all.
    /// Nothing was asked of the holder or sent to the card.
    OriginNotAllowed(String),
    /// `org.cardgate.Web1`: the page's origin is not HTTPS (plain `http://` is accepted only
    /// for loopback, and only with `[web] allow_http_loopback`). Nothing was sent.
    OriginNotHttps(String),
    /// `Web1.Authenticate`: the challenge nonce is not at least 256 bits in base64.
    /// Nothing was sent.
    NonceMalformed(String),
    /// `Web1.Authenticate`: the agent has seen this nonce before (each is taken once, whatever
    /// became of the first request); the page must ask its identity provider for a fresh
    /// challenge. Nothing was sent.
    NonceReplayed(String),
}

impl AgentError {
    /// The error's name without the prefix (`NoCard`), for logs and audit entries.
    pub fn short_name(&self) -> &'static str {
        match self {
            AgentError::ZBus(_) => "ZBus",
            AgentError::InvalidArgument(_) => "InvalidArgument",
            AgentError::NoCard(_) => "NoCard",
            AgentError::CardBlocked(_) => "CardBlocked",
            AgentError::WrongPasscode(_) => "WrongPasscode",
            AgentError::FinalTryNotConfirmed(_) => "FinalTryNotConfirmed",
            AgentError::RepeatedPasscode(_) => "RepeatedPasscode",
            AgentError::NotLoggedIn(_) => "NotLoggedIn",
            AgentError::UnknownRoleProfile(_) => "UnknownRoleProfile",
            AgentError::NotPermitted(_) => "NotPermitted",
            AgentError::EndpointUnavailable(_) => "EndpointUnavailable",
            AgentError::AuditUnavailable(_) => "AuditUnavailable",
            AgentError::Card(_) => "Card",
            AgentError::Internal(_) => "Internal",
            AgentError::NotEligible(_) => "NotEligible",
            AgentError::Cancelled(_) => "Cancelled",
            AgentError::NoPrompt(_) => "NoPrompt",
            AgentError::LoginInProgress(_) => "LoginInProgress",
            AgentError::OriginNotAllowed(_) => "OriginNotAllowed",
            AgentError::OriginNotHttps(_) => "OriginNotHttps",
            AgentError::NonceMalformed(_) => "NonceMalformed",
            AgentError::NonceReplayed(_) => "NonceReplayed",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn names_carry_the_documented_prefix() {
        let e = AgentError::NoCard("Insert your smartcard.".into());
        assert_eq!(e.name().as_str(), "org.cardgate.Agent1.Error.NoCard");
        assert_eq!(e.description(), Some("Insert your smartcard."));
        assert_eq!(e.short_name(), "NoCard");
        let e = AgentError::InvalidArgument("passcode must be 4 to 8 letters or digits".into());
        assert_eq!(
            e.name().as_str(),
            "org.cardgate.Agent1.Error.InvalidArgument"
        );
    }
}
