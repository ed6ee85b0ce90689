//! The one error type of the web sign-in contract.

use thiserror::Error;

/// Why an origin, a nonce or a token was refused; each says what was wrong and what to do.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebAuthError {
    /// The text is not a web origin (`scheme://host[:port]`, nothing after it).
    #[error(
        "'{given}' is not a web origin ({why}); give scheme, host and port only, such as https://pmr.example.nhs.uk"
    )]
    NotAnOrigin {
        /// What was given (origins are not secret).
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// An origin that is not HTTPS.
    #[error(
        "{origin} is not an HTTPS origin; only https:// pages may sign in with the card (http://localhost only where development origins are switched on)"
    )]
    NotHttps {
        /// The refused origin.
        origin: String,
    },
    /// The nonce is malformed.
    #[error(
        "the challenge nonce is malformed ({why}); the identity provider must send at least {min} random bytes, base64-encoded"
    )]
    NonceMalformed {
        /// What is wrong with it.
        why: String,
        /// The least number of random bytes accepted.
        min: usize,
    },
    /// The system's random source failed (a nonce could not be made).
    #[error("the system random source failed; no challenge nonce could be made")]
    RandomUnavailable,
    /// The token is not JSON of the expected shape, or too large.
    #[error("the authentication token is malformed ({why})")]
    TokenMalformed {
        /// What is wrong with it.
        why: String,
    },
    /// The token names a format this side does not know.
    #[error(
        "the authentication token's format is '{found}', expected '{expected}'; update the agent or the provider"
    )]
    UnknownFormat {
        /// The format the token names.
        found: String,
        /// The format this side speaks.
        expected: &'static str,
    },
    /// The token's certificate cannot be read.
    #[error("the token's certificate cannot be read ({why})")]
    CertificateMalformed {
        /// What is wrong with it.
        why: String,
    },
    /// The certificate's key is not one the card signs with (ECDSA P-256 or RSA).
    #[error(
        "the token's certificate holds a key the sign-in does not support ({what}); the card must hold ECDSA P-256 or RSA"
    )]
    UnsupportedKey {
        /// The key found.
        what: String,
    },
    /// The token's algorithm does not fit its certificate's key.
    #[error("the token says {algorithm} but its certificate holds a {key} key")]
    AlgorithmMismatch {
        /// The algorithm the token names.
        algorithm: &'static str,
        /// The certificate's key type.
        key: &'static str,
    },
    /// The signature does not verify over this origin and nonce: made for another site, for
    /// another nonce, or by another key.
    #[error(
        "the card's signature does not match origin {origin} and this nonce: the token was made for another site or another challenge, or altered"
    )]
    SignatureInvalid {
        /// The origin it was checked against.
        origin: String,
    },
    /// The card returned an ECDSA signature that is not a DER `ECDSA-Sig-Value`.
    #[error("the card's ECDSA signature is not DER ({why})")]
    EcdsaSignatureMalformed {
        /// What is wrong with it.
        why: String,
    },
}
