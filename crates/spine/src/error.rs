//! The crate's one error type, [`SpineError`]: every way a login or a call to the endpoint
//! can fail, each variant one the agent can turn into advice (plug the cable in, fix the
//! clock, see the RA, reinsert the card, log in again). No variant carries a token, an unlock
//! code or a passcode.

use std::time::Duration;

use cardgate_piv::PivError;

use crate::wire::ErrorCode;

/// What the client was doing when a time limit ran out: the user (and the service desk) need
/// to know whether the network, the server or the card was slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Opening the TCP connection.
    Connect,
    /// The whole request: TLS handshake, sending, and the server's complete answer.
    Request,
    /// Waiting for the card to sign.
    CardSignature,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connect => "connecting to the national endpoint",
            Step::Request => "waiting for the national endpoint to answer",
            Step::CardSignature => "waiting for the smartcard to sign",
        })
    }
}

/// Everything that can go wrong between the card, this client and the Spine-like endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpineError {
    /// The configuration cannot work (no service CA, a malformed endpoint address). Nothing
    /// was sent.
    #[error("the Spine client configuration is not usable: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// No connection could be made: the network, a firewall or the service is down.
    #[error("the national endpoint {endpoint} cannot be reached: {source}")]
    Unreachable {
        /// The `host:port` tried.
        endpoint: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A time limit ran out.
    #[error("timed out after {after:?} {step}")]
    TimedOut {
        /// What was being waited for.
        step: Step,
        /// The limit that ran out.
        after: Duration,
    },
    /// The card's certificate is revoked (a lost, stolen or damaged card the RA cancelled).
    /// It can never be used again: the holder needs a new card from the RA.
    #[error(
        "this smartcard has been cancelled (its certificate is revoked); it cannot be used \
         again: contact your Registration Authority for a new card"
    )]
    CardRevoked,
    /// The card's certificate has expired: renewal now needs a visit to the RA.
    #[error(
        "this smartcard's certificate has expired; it can no longer be renewed at the \
         workstation: contact your Registration Authority"
    )]
    CertificateExpired,
    /// The workstation's clock and the server's differ by more than the configured limit;
    /// certificates and sessions are judged by time, so the clock must be fixed first.
    #[error(
        "the workstation clock is {} than the national endpoint's by {} s; \
         correct the date and time settings (or ask IT support) and try again",
        if *skew_seconds > 0 { "ahead" } else { "behind" },
        skew_seconds.unsigned_abs()
    )]
    ClockSkew {
        /// Local time minus the server's, in seconds (positive: the workstation is ahead).
        skew_seconds: i64,
    },
    /// The session ended (idle too long, or logged out elsewhere): log in again with the card.
    #[error("the session has ended; log in again with your smartcard")]
    SessionExpired,
    /// The server refused the request with one of the protocol's error codes.
    #[error("the national endpoint refused the request ({code}, HTTP {status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The protocol's error code.
        code: ErrorCode,
        /// The server's sentence for a person.
        message: String,
    },
    /// The card was removed during the operation: reinsert it and try again.
    #[error("the smartcard was removed; reinsert it and try again")]
    CardRemoved,
    /// The card refused or failed the operation; the card's error (and status word) is the
    /// source.
    #[error("the smartcard could not sign: {source}")]
    Card {
        /// What the card said.
        #[source]
        source: PivError,
    },
    /// The card's signing service is not running any more (its thread or actor ended).
    #[error("the smartcard is no longer available to sign: {reason}")]
    CardUnavailable {
        /// Why.
        reason: &'static str,
    },
    /// The card's certificate or key cannot be used for login (an algorithm other than P-256
    /// or RSA-2048, or a signature that does not match the certificate).
    #[error("the smartcard's key cannot be used to log in: {reason}")]
    UnsupportedCard {
        /// What is wrong.
        reason: String,
    },
    /// The card signed, but not with the key its certificate names: its key was replaced
    /// without the matching certificate being written (a certificate renewal cut short after
    /// the card made its new key). Only the RA can issue a certificate for the new key.
    #[error(
        "the card's signature does not match its certificate: the key on the card and the \
         certificate do not belong together"
    )]
    KeyDoesNotMatchCertificate,
    /// The TLS connection failed for another reason (the server's certificate is not from the
    /// pinned service CA, or the server refused the handshake).
    #[error("the secure connection to the national endpoint failed: {source}")]
    Tls {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The server answered something the protocol does not allow.
    #[error("the national endpoint's answer is not valid: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
}

impl SpineError {
    /// The protocol error code, when the server refused with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SpineError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Maps a card error: removal gets its own variant (the advice differs), the rest keep
    /// the card's error as the source.
    pub fn from_card(error: PivError) -> Self {
        match error {
            PivError::Channel(cardgate_piv::ChannelError::CardRemoved) => SpineError::CardRemoved,
            source => SpineError::Card { source },
        }
    }

    /// Maps the server's error body to the variant a user acts on.
    pub(crate) fn from_server(status: u16, code: ErrorCode, message: String) -> Self {
        match code {
            ErrorCode::CertificateRevoked => SpineError::CardRevoked,
            ErrorCode::CertificateExpired => SpineError::CertificateExpired,
            ErrorCode::SessionExpired => SpineError::SessionExpired,
            _ => SpineError::Refused {
                status,
                code,
                message,
            },
        }
    }
}
