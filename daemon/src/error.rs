//! The daemon's two error types, one per audience. [`DaemonError`]: what stops the service
//! from starting or running (configuration, files, the bus, the endpoint set-up), for the
//! journal. [`CoreError`]: what the agent core refuses or fails with, for a caller; the card
//! layer's failures stay whole in it (tries left, the card's status word) until the D-Bus
//! edge names them, here and only here (`From<CoreError> for AgentError`).

use cardgate_card::CardError;
use cardgate_ipc::AgentError;
use cardgate_piv::PivError;

/// Why the daemon cannot start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration cannot be read or is wrong; the text names the file, the key and
    /// the rule.
    #[error(transparent)]
    Config(#[from] cardgate_config::ConfigError),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The audit trail cannot be opened or written: the agent refuses to run without it.
    #[error("the audit trail cannot be used: {0}")]
    Audit(#[from] cardgate_audit::AuditError),
    /// The passcode ledger or another card-layer set-up failed.
    #[error("card layer: {0}")]
    Piv(#[from] cardgate_piv::PivError),
    /// The certificate trust configuration (card CA, CRL) is unusable.
    #[error("card trust: {0}")]
    Certs(#[from] cardgate_certs::CertsError),
    /// The endpoint client could not be set up, or the CRL not fetched.
    #[error("endpoint: {0}")]
    Spine(#[from] cardgate_spine::SpineError),
    /// The reader backend could not start.
    #[error("readers: {0}")]
    Reader(#[from] cardgate_reader::ReaderError),
    /// The bus connection or name could not be set up.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The bus went away under the running agent (the bus daemon stopped or restarted, or the
    /// name was taken): no client can reach it, so it stops with this error and the service
    /// manager (`Restart=on-failure`) starts it again on the new bus.
    #[error(
        "the D-Bus connection was lost ({reason}); exiting so that the service manager restarts cardgated"
    )]
    BusLost {
        /// What happened.
        reason: String,
    },
}

/// What the agent core answers a caller with when it does not do what was asked. Refusals
/// the core decides carry the sentence for the holder; failures of the card layer are kept as
/// the layer's typed error, so what the card said (tries left, its status word, a removal) is
/// data until [`AgentError::from`] names it for the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An argument broke its rule; the text names the argument and the rule. Nothing was
    /// touched and no card try was spent.
    #[error("{0}")]
    InvalidArgument(String),
    /// No card (or not the card the call needs) is in a reader.
    #[error("{0}")]
    NoCard(String),
    /// The card layer failed (a wrong or blocked passcode, the final try unconfirmed, a card
    /// removed, a reader fault, a card refusal with its status word).
    #[error(transparent)]
    Card(CardError),
    /// The values came the wrong way for this reader (typed on the host where the reader's
    /// PIN pad takes them, or the pad asked of a reader without a usable one): nothing was
    /// sent; `instead` is the D-Bus method that takes them the right way.
    #[error("{error}; call {instead}")]
    WrongEntryPath {
        /// What the card layer said (`UsePinPad` or `NoPinPad`).
        error: CardError,
        /// The method to call instead.
        instead: &'static str,
    },
    /// An unlock's card step failed: a wrong or blocked unlock code is named as a passcode
    /// would be; anything else as for [`CoreError::Card`].
    #[error(transparent)]
    Unlock(CardError),
    /// The card is locked; `unlock_paths` names the ways out open to its holder.
    #[error("{error}. {unlock_paths}")]
    Locked {
        /// What the card layer said (the card's refusal).
        error: CardError,
        /// The unlock paths, in the guidance's order, for this holder.
        unlock_paths: String,
    },
    /// The card failed in a way the card layer does not describe (it took too long, its new
    /// key does not match its certificate); the text says what to do.
    #[error("{0}")]
    CardFault(String),
    /// The call needs a session and there is none.
    #[error("{0}")]
    NotLoggedIn(String),
    /// A role profile id the holder does not have.
    #[error("{0}")]
    UnknownRoleProfile(String),
    /// The caller may not do this.
    #[error("{0}")]
    NotPermitted(String),
    /// The endpoint could not be reached or refused.
    #[error("{0}")]
    EndpointUnavailable(String),
    /// The audit trail cannot be written: refused (fail closed).
    #[error("{0}")]
    AuditUnavailable(String),
    /// The card or holder cannot take this path; the text says what to do instead.
    #[error("{0}")]
    NotEligible(String),
    /// A bug or an environment problem.
    #[error("{0}")]
    Internal(String),
    /// A web page's origin that may not use the card (not on `[web] allowed_origins`, web
    /// sign-in off, or not an origin at all). Nothing was asked or sent.
    #[error("{0}")]
    OriginNotAllowed(String),
    /// A web page's origin that is not HTTPS. Nothing was asked or sent.
    #[error("{0}")]
    OriginNotHttps(String),
    /// A challenge nonce of the wrong shape. Nothing was asked or sent.
    #[error("{0}")]
    NonceMalformed(String),
    /// A challenge nonce seen before. Nothing was asked or sent.
    #[error("{0}")]
    NonceReplayed(String),
}

impl CoreError {
    /// The D-Bus error name it is answered with, without the prefix (`WrongPasscode`): the
    /// audit trail's reason code. (A unit test holds it to [`AgentError::from`].)
    pub fn short_name(&self) -> &'static str {
        match self {
            CoreError::Card(e) | CoreError::Locked { error: e, .. } => card_error(e).short_name(),
            CoreError::Unlock(e) => unlock_error(e).short_name(),
            CoreError::InvalidArgument(_) | CoreError::WrongEntryPath { .. } => "InvalidArgument",
            CoreError::NoCard(_) => "NoCard",
            CoreError::CardFault(_) => "Card",
            CoreError::NotLoggedIn(_) => "NotLoggedIn",
            CoreError::UnknownRoleProfile(_) => "UnknownRoleProfile",
            CoreError::NotPermitted(_) => "NotPermitted",
            CoreError::EndpointUnavailable(_) => "EndpointUnavailable",
            CoreError::AuditUnavailable(_) => "AuditUnavailable",
            CoreError::NotEligible(_) => "NotEligible",
            CoreError::Internal(_) => "Internal",
            CoreError::OriginNotAllowed(_) => "OriginNotAllowed",
            CoreError::OriginNotHttps(_) => "OriginNotHttps",
            CoreError::NonceMalformed(_) => "NonceMalformed",
            CoreError::NonceReplayed(_) => "NonceReplayed",
        }
    }
}

impl From<CardError> for CoreError {
    fn from(error: CardError) -> CoreError {
        CoreError::Card(error)
    }
}

/// The D-Bus edge: every core error becomes its named bus error here, and only here.
impl From<CoreError> for AgentError {
    fn from(error: CoreError) -> AgentError {
        match error {
            CoreError::InvalidArgument(m) => AgentError::InvalidArgument(m),
            e @ CoreError::WrongEntryPath { .. } => AgentError::InvalidArgument(e.to_string()),
            CoreError::NoCard(m) => AgentError::NoCard(m),
            CoreError::Card(e) => card_error(&e),
            CoreError::Unlock(e) => unlock_error(&e),
            CoreError::Locked {
                error,
                unlock_paths,
            } => match card_error(&error) {
                AgentError::CardBlocked(m) => {
                    AgentError::CardBlocked(format!("{m}. {unlock_paths}"))
                }
                other => other,
            },
            CoreError::CardFault(m) => AgentError::Card(m),
            CoreError::NotLoggedIn(m) => AgentError::NotLoggedIn(m),
            CoreError::UnknownRoleProfile(m) => AgentError::UnknownRoleProfile(m),
            CoreError::NotPermitted(m) => AgentError::NotPermitted(m),
            CoreError::EndpointUnavailable(m) => AgentError::EndpointUnavailable(m),
            CoreError::AuditUnavailable(m) => AgentError::AuditUnavailable(m),
            CoreError::NotEligible(m) => AgentError::NotEligible(m),
            CoreError::Internal(m) => AgentError::Internal(m),
            CoreError::OriginNotAllowed(m) => AgentError::OriginNotAllowed(m),
            CoreError::OriginNotHttps(m) => AgentError::OriginNotHttps(m),
            CoreError::NonceMalformed(m) => AgentError::NonceMalformed(m),
            CoreError::NonceReplayed(m) => AgentError::NonceReplayed(m),
        }
    }
}

/// The named bus error for a card-layer failure (its text never holds a passcode).
fn card_error(error: &CardError) -> AgentError {
    if error.is_card_gone() {
        return AgentError::NoCard(format!("{error}"));
    }
    match error {
        CardError::UsePinPad { .. } => {
            return AgentError::InvalidArgument(format!("{error}; call LoginWithPinPad"));
        }
        CardError::NoPinPad { .. } => {
            return AgentError::InvalidArgument(format!("{error}; call Login"));
        }
        _ => {}
    }
    let message = error.to_string();
    match error.piv() {
        Some(PivError::WrongPasscode { .. }) => AgentError::WrongPasscode(message),
        Some(PivError::CardBlocked { .. }) => AgentError::CardBlocked(message),
        Some(PivError::FinalTryNotConfirmed { .. }) => AgentError::FinalTryNotConfirmed(format!(
            "{message}; call again with confirm_final_try = true"
        )),
        Some(PivError::RepeatedFailedValue { .. }) => AgentError::RepeatedPasscode(message),
        Some(PivError::InvalidPasscode { .. }) => {
            AgentError::InvalidArgument(format!("passcode: {message}"))
        }
        Some(PivError::Ledger { .. }) => AgentError::Internal(message),
        _ => AgentError::Card(message),
    }
}

/// As [`card_error`] for an unlock: a wrong or blocked unlock code is named as a passcode.
fn unlock_error(error: &CardError) -> AgentError {
    match error.piv() {
        Some(PivError::WrongUnlockCode { .. }) => AgentError::WrongPasscode(error.to_string()),
        Some(PivError::UnlockCodeBlocked { .. }) => AgentError::CardBlocked(error.to_string()),
        _ => card_error(error),
    }
}

#[cfg(test)]
mod tests {
    use cardgate_apdu::StatusWord;
    use cardgate_piv::PasscodeTriesLeft;
    use cardgate_reader::ReaderName;

    use super::*;

    fn reader() -> ReaderName {
        ReaderName::new("Reader 00")
    }

    fn refused(source: PivError) -> CardError {
        CardError::Card {
            reader: reader(),
            source,
        }
    }

    #[test]
    fn the_audit_name_is_the_bus_name() {
        let errors = || {
            vec![
                CoreError::InvalidArgument("a".into()),
                CoreError::NoCard("a".into()),
                CoreError::CardFault("a".into()),
                CoreError::NotLoggedIn("a".into()),
                CoreError::UnknownRoleProfile("a".into()),
                CoreError::NotPermitted("a".into()),
                CoreError::EndpointUnavailable("a".into()),
                CoreError::AuditUnavailable("a".into()),
                CoreError::NotEligible("a".into()),
                CoreError::Internal("a".into()),
                CoreError::OriginNotAllowed("a".into()),
                CoreError::OriginNotHttps("a".into()),
                CoreError::NonceMalformed("a".into()),
                CoreError::NonceReplayed("a".into()),
            ]
        };
        for (e, named) in errors().into_iter().zip(errors()) {
            assert_eq!(e.short_name(), AgentError::from(named).short_name());
        }
    }

    #[test]
    fn what_the_card_said_stays_data_until_the_edge() {
        let wrong = CoreError::from(refused(PivError::WrongPasscode {
            tries_left: PasscodeTriesLeft::new(1),
            status: StatusWord::from(0x63C1),
        }));
        // Inside the core the tries left and the status word are still there to act on.
        assert!(matches!(
            &wrong,
            CoreError::Card(CardError::Card {
                source: PivError::WrongPasscode { tries_left, status },
                ..
            }) if tries_left.get() == 1 && *status == StatusWord::from(0x63C1)
        ));
        assert_eq!(wrong.short_name(), "WrongPasscode");
        assert!(matches!(AgentError::from(wrong), AgentError::WrongPasscode(m) if m.contains('1')));

        let locked = CoreError::Locked {
            error: refused(PivError::CardBlocked {
                by_agent: false,
                status: Some(StatusWord::from(0x6983)),
            }),
            unlock_paths: "To unlock it: (1) yourself".into(),
        };
        assert_eq!(locked.short_name(), "CardBlocked");
        let AgentError::CardBlocked(message) = AgentError::from(locked) else {
            panic!("a locked card is answered CardBlocked");
        };
        assert!(
            message.ends_with(". To unlock it: (1) yourself"),
            "{message}"
        );

        let unlock = CoreError::Unlock(refused(PivError::WrongUnlockCode {
            tries_left: PasscodeTriesLeft::new(4),
            status: StatusWord::from(0x63C4),
        }));
        assert_eq!(unlock.short_name(), "WrongPasscode");
    }
}
